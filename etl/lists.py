"""The ETF list job: each exchange's list answer into stock_info.

The answer goes into the run's snapshot first, then is transformed and
applied from there, so a replay applies a snapshot's lists with the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import polars as pl

from etl import transform
from etl.context import Job
from etl.errors import ApiError
from etl.outcome import Policy, decide, no_lists_message
from etl.snapshot import fetched_frame
from etl.sqlfiles import query
from etl.symbols import MARKETS

log = logging.getLogger(__name__)


def sync_lists(job: Job, exchanges: Iterable[str]) -> dict[str, Any]:
    """Fetch each exchange's ETF list into the snapshot, then apply it."""
    assert job.client is not None
    results: dict[str, dict[str, Any]] = {}
    for exchange in exchanges:
        if job.stop.is_set():
            break
        fetched = job.client.etf_list(exchange)  # AuthError ends the run here
        job.snapshot.append_raw("list", [fetched])
        results[exchange] = apply_list(job, fetched_frame([fetched]), exchange)
    failed = [r["status"] == "failed" and "error" in r for r in results.values()]
    if all(failed) and not job.stop.is_set():  # a stopped run is interrupted, not failed
        # Not one list came: a wrong base URL, a dead API or a used-up quota.
        # Thousands of price requests would fail the same way: stop here.
        raise ApiError(
            job.client.breaker.reason or no_lists_message(results, job.settings.base_url)
        )
    return list_summary(results, Policy.from_settings(job.settings))


def apply_list(job: Job, raw: pl.DataFrame, exchange: str) -> dict[str, Any]:
    """One exchange's list answer into stock_info, in one transaction."""
    failed = raw.filter(pl.col("error").is_not_null())
    if not failed.is_empty() or raw.is_empty():
        reason = failed["error"][0] if not failed.is_empty() else "no answer in the snapshot"
        log.warning("%s list: %s", exchange, reason)
        return {"status": "failed", "error": reason}
    result = transform.list_rows(raw)
    seen = transform.explode_bodies(raw, ["ticker"])["ticker"].drop_nulls()
    stored = job.db.read(query("stock_info_flags"))
    changes = transform.list_changes(result.rows, stored, MARKETS[exchange], seen)
    job.loader.load_list(changes.stage)
    if not result.rejects.is_empty():
        job.snapshot.append("rejects", result.rejects)
    status = "ok"
    if changes.guarded:
        status = "partial"
        job.warnings.append(
            f"{exchange}: the list has {changes.listed} ETFs, fewer than 90% of the active ones "
            "stored; it looks truncated, so no ETF was deactivated"
        )
        log.warning(job.warnings[-1])
    log.info(
        "%s list: %d listed, %d new, %d updated, %d deactivated, %d rejected",
        exchange,
        changes.listed,
        changes.new,
        changes.updated,
        changes.deactivated,
        result.rejects.height,
    )
    return {
        "status": status,
        "listed": changes.listed,
        "new": changes.new,
        "updated": changes.updated,
        "deactivated": changes.deactivated,
        "rejected": result.rejects.height,
    }


def list_summary(results: dict[str, dict[str, Any]], policy: Policy) -> dict[str, Any]:
    total = {
        k: sum(r.get(k, 0) for r in results.values())
        for k in ("listed", "new", "updated", "deactivated", "rejected")
    }
    # One exchange's list failing leaves the run partial; both failing fail it.
    outcome = decide(
        Policy(1.0, policy.reject_partial_share, policy.reject_failed_share),
        units=len(results),
        failed=sum(r["status"] == "failed" for r in results.values()),
        rows_ok=total["listed"],
        rows_rejected=total["rejected"],
        degraded=tuple(
            f"the {ex} list looks truncated: no ETF was deactivated"
            for ex, r in results.items()
            if r["status"] == "partial"
        ),
        what="ETF lists",
        names=[ex for ex, r in results.items() if r["status"] == "failed"],
    )
    return {
        "status": outcome.status,
        **({"reasons": list(outcome.reasons)} if outcome.reasons else {}),
        "etfs_listed": total["listed"],
        "etfs_new": total["new"],
        "etfs_updated": total["updated"],
        "etfs_deactivated": total["deactivated"],
        "list_rows_rejected": total["rejected"],
        "exchanges": results,
    }
