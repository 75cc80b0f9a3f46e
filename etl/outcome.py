"""One outcome policy: what a run's figures mean for its status.

``decide`` is pure: counts in, ``ok`` / ``partial`` / ``failed`` and the
reasons out. The worst finding wins:

- the circuit breaker stopped the extract (``stopped``): failed;
- every unit failed (all symbols, or both exchanges' lists): failed;
- more than ``max_failed_share`` of the units failed: failed; fewer: partial.
  The units are all the run covers (every ETF of the run, up to date or not,
  asked per ticker or by day), so one ETF that fails every evening leaves each
  evening partial, never failed because few others needed a request;
- every row rejected, or more than ``reject_failed_share`` of the rows: failed;
  more than ``reject_partial_share`` (default 0: any rejected row): partial;
- anything else that leaves the run incomplete (``degraded``): partial.

The CLI turns failed into exit 1 and partial into exit 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from etl.api import UNREACHABLE
from etl.settings import Settings

_RANK = {"ok": 0, "partial": 1, "failed": 2}
NAMED = 5  # failed units a reason names; the summary's `failed` list has them all


@dataclass(frozen=True)
class Policy:
    max_failed_share: float = 0.10  # share of failed units above which a run fails
    reject_partial_share: float = 0.0  # share of rejected rows above which it is partial
    reject_failed_share: float = 0.5  # ... and above which it fails

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            settings.max_failed_share,
            settings.reject_partial_share,
            settings.reject_failed_share,
        )


@dataclass(frozen=True)
class Outcome:
    status: str  # ok, partial or failed
    reasons: tuple[str, ...] = ()  # why it is not ok, worst first


def decide(
    policy: Policy,
    *,
    units: int = 0,
    failed: int = 0,
    rows_ok: int = 0,
    rows_rejected: int = 0,
    stopped: str | None = None,
    degraded: tuple[str, ...] = (),
    what: str = "symbols",
    names: Sequence[str] = (),
) -> Outcome:
    """The status of a run (or of one step of it) from its figures.

    ``units``/``failed``: what was attempted and how much of it failed (symbols,
    or exchanges for the lists); ``rows_ok``/``rows_rejected``: rows that passed
    the checks and rows refused; ``stopped``: the circuit breaker's reason;
    ``names``: the failed units, named in the reason (the first few).
    """
    found: list[tuple[str, str]] = []
    if stopped:
        found.append(("failed", f"stopped fetching: {stopped}"))
    if units and failed:
        share = failed / units
        named = ""
        if names:
            more = f" and {len(names) - NAMED} more" if len(names) > NAMED else ""
            named = f" ({', '.join(names[:NAMED])}{more})"
        text = f"{failed} of {units} {what} failed{named}"
        if failed == units:
            found.append(("failed", f"all {units} {what} failed{named}"))
        elif share > policy.max_failed_share:
            found.append(("failed", f"{text}, more than {policy.max_failed_share:.0%}"))
        else:
            found.append(("partial", text))
    total = rows_ok + rows_rejected
    if rows_rejected:
        share = rows_rejected / total
        text = f"{rows_rejected:,} of {total:,} rows rejected"
        if not rows_ok:
            found.append(("failed", f"all {total:,} rows were rejected"))
        elif share > policy.reject_failed_share:
            found.append(("failed", f"{text}, more than {policy.reject_failed_share:.0%}"))
        elif share > policy.reject_partial_share:
            found.append(("partial", text))
    found += [("partial", reason) for reason in degraded]
    found.sort(key=lambda f: -_RANK[f[0]])
    return Outcome(found[0][0] if found else "ok", tuple(reason for _, reason in found))


def worst(*statuses: str) -> str:
    return max(statuses, key=_RANK.__getitem__)


def no_lists_message(exchanges: dict[str, dict[str, Any]], base_url: str) -> str:
    """What to check when not one ETF list could be fetched: the run stops there."""
    errors = [str(r.get("error", r.get("status"))) for r in exchanges.values()]
    said = "; ".join(f"{ex}: {e}" for ex, e in zip(exchanges, errors, strict=True))
    check = f"Check TSANGHI_BASE_URL (now {_without_userinfo(base_url)}) and the network"
    if all(e.startswith(UNREACHABLE) for e in errors):
        # No server answered at all: neither the API nor the token is to blame yet.
        advice = f"{check}: no server answered there"
    else:
        advice = (
            f"{check}; if both are right, the API is down or refusing this token: try again later"
        )
    return (
        f"no ETF list could be fetched ({said}). Nothing was changed and no prices were "
        f"asked for. {advice}"
    )


def _without_userinfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    host, at, tail = rest.partition("@")
    return f"{scheme}{sep}***@{tail}" if at and "/" not in host else url
