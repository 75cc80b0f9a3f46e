"""The jobs: ETF lists, daily prices, and replay of a snapshot.

Each job fetches into the run's snapshot first, then transforms and loads from
what it wrote, so ``replay`` is the same code minus the network.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import polars as pl

from etl import transform
from etl.api import Fetched, TsanghiClient
from etl.db import Database
from etl.errors import DatabaseError, SnapshotError
from etl.extract import fetch_all
from etl.load import Loader, etf_context, existing_keys
from etl.plan import Plan, PriceOptions, build_plan
from etl.settings import Settings
from etl.snapshot import Snapshot, fetched_frame
from etl.sqlfiles import query
from etl.symbols import MARKETS

log = logging.getLogger(__name__)

Progress = Callable[[int, int, int], None]  # (symbols done, symbols in all, rows fetched)


@dataclass
class Job:
    """What a job needs: where to read and write, and how to talk to the API."""

    db: Database
    loader: Loader
    snapshot: Snapshot
    settings: Settings  # workers, batch_rows, max_failed_share, latest_max_days
    client: TsanghiClient | None = None  # None when replaying
    progress: Progress | None = None
    warnings: list[str] = field(default_factory=list)


# -- ETF lists ------------------------------------------------------------------


def sync_lists(job: Job, exchanges: Iterable[str]) -> dict[str, Any]:
    """Fetch each exchange's ETF list into the snapshot, then apply it."""
    assert job.client is not None
    results: dict[str, dict[str, Any]] = {}
    for exchange in exchanges:
        fetched = job.client.etf_list(exchange)  # AuthError ends the run here
        job.snapshot.append_raw("list", [fetched])
        results[exchange] = apply_list(job, fetched_frame([fetched]), exchange)
    return list_summary(results)


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


def list_summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    statuses = [r["status"] for r in results.values()]
    if statuses and all(s == "failed" for s in statuses):
        status = "failed"
    elif any(s != "ok" for s in statuses):
        status = "partial"
    else:
        status = "ok"
    total = {
        k: sum(r.get(k, 0) for r in results.values())
        for k in ("listed", "new", "updated", "deactivated", "rejected")
    }
    return {
        "status": status,
        "etfs_listed": total["listed"],
        "etfs_new": total["new"],
        "etfs_updated": total["updated"],
        "etfs_deactivated": total["deactivated"],
        "list_rows_rejected": total["rejected"],
        "exchanges": results,
    }


# -- daily prices ---------------------------------------------------------------


@dataclass
class PriceTally:
    rows_fetched: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_rejected: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> reason
    done: int = 0


class _BatchLoader:
    """Store batches on a thread of its own while the next is fetched and transformed.

    The queue holds one batch, so a slow database holds the fetching back
    instead of letting answers pile up in memory. After a database error it
    stops loading; the extract still completes so the snapshot can be replayed.
    """

    def __init__(self, apply: Callable[[pl.DataFrame], None]) -> None:
        self._apply = apply
        self._queue: queue.Queue[pl.DataFrame | None] = queue.Queue(maxsize=1)
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="loader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self._apply(batch)
                except Exception as exc:  # reported by finish(), in the main thread
                    self.error = exc

    def put(self, batch: pl.DataFrame) -> None:
        self._queue.put(batch)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()


@dataclass
class PriceBatches:
    """The two halves of a price batch: transform (CPU) and store (database).

    During a sync they run on different threads, so polars works on the next
    batch while PostgreSQL takes the previous one.
    """

    job: Job
    context: pl.DataFrame
    end: date
    overwrite: bool
    tally: PriceTally

    def prepare(self, raw: pl.DataFrame) -> pl.DataFrame:
        """Raw answers -> typed rows; rejects go to the snapshot."""
        started = time.monotonic()
        result = transform.daily_rows(raw, self.context, self.end)
        if not result.rejects.is_empty():
            self.job.snapshot.append("rejects", result.rejects)
        self.tally.rows_rejected += result.rejects.height
        log.debug(
            "batch: %d rows transformed in %.2fs", result.rows.height, time.monotonic() - started
        )
        return result.rows

    def store(self, rows: pl.DataFrame) -> None:
        """Anti-join against the stored keys, then one load transaction."""
        started = time.monotonic()
        if not self.overwrite:
            rows = transform.anti_join(rows, existing_keys(self.job.db, rows))
        joined = time.monotonic()
        counts = self.job.loader.load_daily(rows, overwrite=self.overwrite)
        self.tally.rows_inserted += counts.inserted
        self.tally.rows_updated += counts.updated
        log.debug(
            "batch: %d new rows (anti-join %.2fs), %d inserted in %.2fs",
            rows.height,
            joined - started,
            counts.inserted,
            time.monotonic() - joined,
        )


def _latest_day(fetched: Fetched) -> date | None:
    """The latest trading day an undated /daily/latest answer speaks of."""
    if not fetched.ok or not fetched.rows:
        return None
    dates = transform.explode_bodies(fetched_frame([fetched]), ["date"])["date"]
    parsed = dates.str.strip_chars().str.to_date("%Y-%m-%d", strict=False).drop_nulls()
    return parsed.max() if not parsed.is_empty() else None


def _broken_days(answers: list[Fetched], latest: dict[str, date | None]) -> list[str]:
    """Exchanges whose per-day answers cannot be trusted to be complete.

    A request that failed, or an empty answer for a day on which the other
    exchange traded: XSHG and XSHE share one calendar, so that day was not a
    holiday but an answer missing its records.
    """

    def day(f: Fetched) -> str | None:
        undated = latest.get(f.exchange)
        return f.params.get("date") or (undated.isoformat() if undated else None)

    traded = {day(f) for f in answers if f.ok and f.rows}
    return sorted({f.exchange for f in answers if not f.ok or (not f.rows and day(f) in traded)})


def sync_prices(job: Job, options: PriceOptions) -> dict[str, Any]:
    """Plan, fetch into the snapshot in batches, and load each batch as it lands."""
    assert job.client is not None
    started = time.monotonic()
    before = (
        datetime.combine(options.start, datetime.min.time())
        if options.full and options.start
        else None
    )
    context = etf_context(job.db, before)

    # /daily/latest names each exchange's latest trading day and already holds
    # its rows: symbols holding that day cost nothing, one day behind costs nothing more.
    answers: list[Fetched] = []
    latest: dict[str, date | None] = {}
    if not options.full and options.start is None and not options.symbols:
        for exchange in options.exchanges:
            fetched = job.client.latest(exchange)
            answers.append(fetched)
            latest[exchange] = _latest_day(fetched)
    plan = build_plan(context, options, latest, job.settings.latest_max_days)
    day_requests = [r for r in plan.requests if r.endpoint == "latest"]
    answers += list(fetch_all(job.client, day_requests, job.settings.workers))
    broken = _broken_days(answers, latest)
    if broken:
        # A missing day would leave a gap behind the next day's rows: fetch
        # those exchanges per ticker instead.
        log.warning(
            "per-day answers failed or came back empty for a trading day on %s; "
            "fetching those ETFs per ticker",
            ", ".join(broken),
        )
        latest = {ex: d for ex, d in latest.items() if ex not in broken}
        plan = build_plan(context, options, latest, job.settings.latest_max_days)
        answers = [f for f in answers if f.exchange not in broken]
    job.snapshot.write("plan.parquet", plan.context())
    job.snapshot.update_manifest(
        plan={
            "symbols": plan.symbols.height,
            "up_to_date": plan.up_to_date,
            "latest_days": {ex: [d.isoformat() for d in days] for ex, days in plan.days.items()},
            "requests": len(plan.requests),
        }
    )
    tally = PriceTally()
    batches = PriceBatches(job, plan.context(), options.end, options.overwrite, tally)
    loader = _BatchLoader(batches.store)
    try:
        _extract_prices(job, plan, answers, batches, loader)
    finally:
        loader.finish()
    job.snapshot.update_manifest(extract_complete=True)
    if loader.error is not None:
        raise _load_failed(job, loader.error)
    return price_summary(job, plan, tally, time.monotonic() - started)


def _extract_prices(
    job: Job, plan: Plan, answers: list[Fetched], batches: PriceBatches, loader: _BatchLoader
) -> None:
    assert job.client is not None
    tally = batches.tally
    ticker_requests = [r for r in plan.requests if r.endpoint == "daily"]
    buffer: list[Fetched] = list(answers)
    buffered = sum(f.rows for f in buffer)
    tally.rows_fetched += buffered
    by_day = plan.symbols.filter(pl.col("by_day")).height
    tally.done += by_day
    total = by_day + len(ticker_requests)

    def flush() -> None:
        nonlocal buffer, buffered
        if buffer:
            job.snapshot.append_raw("prices", buffer)
            loader.put(batches.prepare(fetched_frame(buffer)))
        buffer, buffered = [], 0

    for fetched in fetch_all(job.client, ticker_requests, job.settings.workers):
        tally.done += 1
        if fetched.ok:
            tally.rows_fetched += fetched.rows
        else:
            symbol = f"{MARKETS[fetched.exchange]}.{fetched.ticker}"
            tally.failed[symbol] = fetched.error or "failed"
            log.warning("%s skipped: %s", symbol, fetched.error)
        buffer.append(fetched)
        buffered += fetched.rows
        if job.progress:
            job.progress(tally.done, total, tally.rows_fetched)
        if buffered >= job.settings.batch_rows:
            flush()
    flush()


def _load_failed(job: Job, error: Exception) -> DatabaseError:
    detail = str(error)
    return DatabaseError(
        f"loading into the database failed: {detail}. Every answer was saved in "
        f"{job.snapshot.path}; once the database is back, load it with: etl replay {job.snapshot.path}"
    )


def price_summary(job: Job, plan: Plan, tally: PriceTally, seconds: float) -> dict[str, Any]:
    total = plan.symbols.height
    attempted = total - plan.up_to_date
    failed = len(tally.failed)
    if attempted and failed / attempted > job.settings.max_failed_share:
        status = "failed"
    elif failed:
        status = "partial"
    else:
        status = "ok"
    return {
        "status": status,
        "symbols_total": total,
        "symbols_ok": attempted - failed,
        "symbols_failed": failed,
        "symbols_up_to_date": plan.up_to_date,
        "failed": [{"symbol": s, "reason": r} for s, r in sorted(tally.failed.items())],
        "rows_fetched": tally.rows_fetched,
        "rows_inserted": tally.rows_inserted,
        "rows_updated": tally.rows_updated,
        "rows_rejected": tally.rows_rejected,
        "price_seconds": round(seconds, 3),
    }


def sync_all(job: Job, options: PriceOptions) -> dict[str, Any]:
    """The nightly job: ETF lists first, so new listings get their prices too."""
    lists = sync_lists(job, options.exchanges)
    prices = sync_prices(job, options)
    return {**lists, **prices, "status": _worst(lists["status"], prices["status"])}


# -- replay ---------------------------------------------------------------------


def replay(job: Job) -> dict[str, Any]:
    """Transform and load a snapshot's answers again: lists first, then prices."""
    manifest = job.snapshot.manifest()
    summary: dict[str, Any] = {"status": "ok", "replayed_run": manifest.get("run_id")}
    # The transform refuses the same rows again; its rejects replace these once written.
    earlier_rejects = job.snapshot.parts("rejects")
    list_parts = list(job.snapshot.raw_parts("list"))
    if list_parts:
        raw = pl.concat(list_parts)
        results = {
            ex: apply_list(job, raw.filter(pl.col("exchange") == ex), ex)
            for ex in raw["exchange"].unique(maintain_order=True).to_list()
        }
        summary.update(list_summary(results))
    plan_frame = job.snapshot.read("plan.parquet")
    price_parts = job.snapshot.parts("kind=prices")
    if price_parts and plan_frame is None:
        raise SnapshotError(f"{job.snapshot.path} has price answers but no plan.parquet")
    if plan_frame is not None:
        started = time.monotonic()
        options = manifest.get("options", {})
        end = date.fromisoformat(options["end"]) if options.get("end") else date.today()
        context = plan_frame.cast(transform.PLAN_SCHEMA)
        tally = PriceTally()
        batches = PriceBatches(job, context, end, bool(options.get("overwrite")), tally)
        loader = _BatchLoader(batches.store)  # as in a sync: transform beside the load
        try:
            for raw in job.snapshot.raw_parts("prices"):
                tally.rows_fetched += int(raw.filter(pl.col("error").is_null())["rows"].sum())
                for row in raw.filter(
                    pl.col("error").is_not_null() & (pl.col("endpoint") == "daily")
                ).iter_rows(named=True):
                    tally.failed[f"{MARKETS[row['exchange']]}.{row['ticker']}"] = row["error"]
                loader.put(batches.prepare(raw))
        finally:
            loader.finish()
        if loader.error is not None:
            raise _load_failed(job, loader.error)
        plan = Plan(context, [], int(manifest.get("plan", {}).get("up_to_date", 0)), {})
        prices = price_summary(job, plan, tally, time.monotonic() - started)
        summary.update({k: v for k, v in prices.items() if k != "status"})
        summary["status"] = _worst(summary["status"], prices["status"])
    if not list_parts and plan_frame is None:
        raise SnapshotError(f"{job.snapshot.path} holds no list or price answers to replay")
    for part in earlier_rejects:
        part.unlink(missing_ok=True)
    return summary


_RANK = {"ok": 0, "partial": 1, "failed": 2}


def _worst(*statuses: str) -> str:
    return max(statuses, key=_RANK.__getitem__)
