"""The library under the command line: one function per job, typed results.

Each function runs one job as a run of its own (ledger row, sync lock,
snapshot directory) and returns a ``RunResult``; the CLI only parses options,
calls one of these and prints what comes back::

    from etl import pipeline
    from etl.plan import PriceOptions
    from etl.settings import Settings

    settings = Settings.from_env()            # DATABASE_URL, TSANGHI_TOKEN, ...
    result = pipeline.sync(settings)          # lists, then prices
    print(result.status, result.rows_inserted, result.snapshot)
    pipeline.replay(settings, result.snapshot)   # again, with no API call

A run that cannot finish raises ``RunFailed`` (its ``summary`` says how far it
got); configuration and connection problems raise the other errors of
``etl.errors`` before anything is written.

Recording the official ratio of a share split is not a run: see etl/actions.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from etl import lists, prices, queries
from etl import replay as replays
from etl.check import CheckReport, audit
from etl.context import Job, Progress
from etl.db import open_database
from etl.migrate import require_schema
from etl.plan import PriceOptions
from etl.run import RunFailed, execute, exit_code
from etl.settings import Settings
from etl.symbols import MARKETS
from etl.sync import sync_all

__all__ = [
    "RunFailed",
    "RunResult",
    "CheckReport",
    "Status",
    "check",
    "repair",
    "replay",
    "status",
    "sync",
    "sync_lists",
    "sync_prices",
]


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run, as recorded in the etl_runs ledger."""

    run_id: str
    command: str
    status: str  # "ok", "partial", "failed" or "interrupted" (SIGINT, SIGTERM)
    snapshot: Path  # the run's own directory
    seconds: float
    requests: int  # API requests made
    summary: dict[str, Any]  # every figure of the run, as `etl --json` prints it

    @classmethod
    def of(cls, summary: dict[str, Any]) -> RunResult:
        return cls(
            run_id=summary["run_id"],
            command=summary["command"],
            status=summary["status"],
            snapshot=Path(summary["snapshot"]),
            seconds=float(summary.get("seconds", 0.0)),
            requests=int(summary.get("requests", 0)),
            summary=summary,
        )

    @property
    def exit_code(self) -> int:
        return exit_code(self.summary)

    @property
    def rows_inserted(self) -> int:
        return int(self.summary.get("rows_inserted", 0))

    @property
    def rows_rejected(self) -> int:
        return int(self.summary.get("rows_rejected", 0))

    @property
    def failed_symbols(self) -> dict[str, str]:
        return {f["symbol"]: f["reason"] for f in self.summary.get("failed", [])}


def _options_of(options: PriceOptions) -> dict[str, Any]:
    return {
        "exchanges": list(options.exchanges),
        "symbols": list(options.symbols),
        "start": options.start.isoformat() if options.start else None,
        "end": options.end.isoformat(),
        "full": options.full,
        "overwrite": options.overwrite,
    }


def sync(
    settings: Settings,
    options: PriceOptions | None = None,
    *,
    wait: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """The nightly job: ETF lists, then daily prices."""
    return _prices(settings, "sync", sync_all, options, wait, progress)


def sync_lists(
    settings: Settings, exchanges: Iterable[str] = tuple(MARKETS), *, wait: bool = False
) -> RunResult:
    """The ETF lists of the exchanges into stock_info."""
    chosen = tuple(exchanges)
    summary = execute(
        settings,
        "sync-list",
        lambda job: lists.sync_lists(job, chosen),
        needs_api=True,
        options={"exchanges": list(chosen)},
        wait=wait,
    )
    return RunResult.of(summary)


def sync_prices(
    settings: Settings,
    options: PriceOptions | None = None,
    *,
    wait: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Daily prices into stock_daily_data, from each ETF's watermark on."""
    return _prices(settings, "sync-prices", prices.sync_prices, options, wait, progress)


def _prices(
    settings: Settings,
    command: str,
    job: Callable[[Job, PriceOptions], dict[str, Any]],
    options: PriceOptions | None,
    wait: bool,
    progress: Progress | None,
) -> RunResult:
    chosen = options or PriceOptions()
    summary = execute(
        settings,
        command,
        lambda run: job(run, chosen),
        needs_api=True,
        options=_options_of(chosen),
        wait=wait,
        progress=progress,
    )
    return RunResult.of(summary)


def repair(
    settings: Settings,
    exchanges: Iterable[str] = tuple(MARKETS),
    symbols: Iterable[str] = (),
    *,
    wait: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Fetch again what ``etl check`` finds missing or suspect, one range per ETF,
    and record what the source confirms (etl/repair.py). Check again afterwards
    to see what is left."""
    from etl import repair as repairs  # imports the check, which only a repair needs here

    chosen, named = tuple(exchanges), tuple(symbols)
    summary = execute(
        settings,
        "check-repair",
        lambda job: repairs.repair(job, chosen, named),
        needs_api=True,
        options={"exchanges": list(chosen), "symbols": list(named), "overwrite": True},
        wait=wait,
        progress=progress,
    )
    return RunResult.of(summary)


def replay(settings: Settings, snapshot: Path | str, *, wait: bool = False) -> RunResult:
    """Normalize and load a snapshot again, with no API call. The snapshot is
    only read; the replay writes under its own run directory."""
    summary = execute(
        settings, "replay", replays.replay, needs_api=False, snapshot=Path(snapshot), wait=wait
    )
    return RunResult.of(summary)


@dataclass(frozen=True)
class Status:
    """What ``etl status`` shows: ETFs per market and the latest runs."""

    markets: pl.DataFrame  # market_code, active, inactive, latest_trade_date, behind
    runs: pl.DataFrame  # the latest runs of the etl_runs ledger, newest first


def status(settings: Settings) -> Status:
    """Read the ETF counts and the run ledger. A read: it never creates the
    embedded database nor changes the schema (NoDatabaseError, NotMigratedError)."""
    with open_database(settings.database_url, settings.data_dir, create=False) as db:
        require_schema(db)
        return Status(queries.etf_counts(db), queries.recent_runs(db))


def check(
    settings: Settings,
    exchanges: Iterable[str] | None = None,
    symbols: Iterable[str] | None = None,
) -> CheckReport:
    """Audit the stored ETF history (etl.check.audit): holes, suspect rows, share splits.
    A read, like ``status``: it never creates the embedded database nor changes the
    schema, and it writes nothing."""
    with open_database(settings.database_url, settings.data_dir, create=False) as db:
        require_schema(db)
        return audit(db, exchanges=exchanges, symbols=symbols)
