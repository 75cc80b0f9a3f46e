"""The jobs: ETF lists, daily prices, and replay of a snapshot.

Each job fetches into the run's snapshot first, then transforms and loads from
what it wrote, so ``replay`` is the same code minus the network.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import polars as pl

from etl import history, transform
from etl.api import Fetched, TsanghiClient
from etl.calendar import is_trading_day, stale_table_warning
from etl.db import Database
from etl.errors import ApiError, SnapshotError, StageError
from etl.extract import Request, fetch_all
from etl.load import Loader, etf_context
from etl.normalize import Normalizer
from etl.outcome import Policy, decide, no_lists_message, worst
from etl.plan import Plan, PriceOptions, build_plan, hole_candidates
from etl.resume import finish_pending
from etl.settings import Settings
from etl.snapshot import RawWriter, Snapshot, fetched_frame
from etl.sqlfiles import query
from etl.stages import PriceTally, Stages
from etl.symbols import EXCHANGES, MARKETS

log = logging.getLogger(__name__)

# How often the extract looks at the stop flag and the age of its buffer while
# no answer arrives.
STOP_CHECK_SECONDS = 0.5
Progress = Callable[[int, int, int], None]  # (symbols done, symbols in all, rows fetched)


@dataclass
class Job:
    """What a job needs: where to read and write, and how to talk to the API."""

    run_id: str
    db: Database
    loader: Loader
    snapshot: Snapshot  # the run's own directory: everything it writes goes here
    settings: Settings  # workers, batch_rows, max_failed_share, latest_max_days
    client: TsanghiClient | None = None  # None when replaying
    source: Snapshot | None = None  # the snapshot a replay reads (never written)
    stop: threading.Event = field(default_factory=threading.Event)  # set: fetch no more
    progress: Progress | None = None
    warnings: list[str] = field(default_factory=list)


# -- ETF lists ------------------------------------------------------------------


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


# -- daily prices ---------------------------------------------------------------


def _latest_day(fetched: Fetched) -> date | None:
    """The latest trading day an undated /daily/latest answer speaks of."""
    if not fetched.ok or not fetched.rows:
        return None
    dates = transform.explode_bodies(fetched_frame([fetched]), ["date"])["date"]
    parsed = dates.str.strip_chars().str.to_date("%Y-%m-%d", strict=False).drop_nulls()
    return parsed.max() if not parsed.is_empty() else None


def _broken_days(answers: list[Fetched], latest: dict[str, date | None]) -> list[str]:
    """Exchanges whose per-day answers cannot be trusted to be complete.

    A request that failed, or an empty answer for a day that was not a known
    closure: a trading day by the calendar, a day the other exchange traded
    (XSHG and XSHE share one calendar), or the undated latest day itself.
    Taking such an answer for a holiday would leave that day behind the next
    day's rows for good. A weekday beyond the calendar's table with an empty
    answer for the whole exchange, before a later day it has rows for, was a
    closure (etl/calendar.py): the data of that later day is out, so the data
    of this one would be too.
    """

    def day(f: Fetched) -> str | None:
        undated = latest.get(f.exchange)
        return f.params.get("date") or (undated.isoformat() if undated else None)

    traded = {day(f) for f in answers if f.ok and f.rows}

    def broken(f: Fetched) -> bool:
        if not f.ok:
            return True
        if f.rows:
            return False
        asked = day(f)
        if asked is None or asked in traded:
            return True
        known = is_trading_day(date.fromisoformat(asked))
        if known is None:
            undated = latest.get(f.exchange)
            return undated is None or asked >= undated.isoformat()
        return known

    return sorted({f.exchange for f in answers if broken(f)})


def sync_prices(job: Job, options: PriceOptions) -> dict[str, Any]:
    """Finish what a run that died left on disk, plan, then extract into raw
    parts while normalize and load work through them."""
    assert job.client is not None
    started = time.monotonic()
    if stale := stale_table_warning():  # every weekday of this year is asked of the API
        job.warnings.append(stale)
        log.warning(stale)
    tally = PriceTally()
    done_before = finish_pending(job, tally)
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
    if job.stop.is_set():  # interrupted before planning: fetch nothing
        options = replace(options, exchanges=(), symbols=())
    if not options.full and not options.symbols:
        for exchange in options.exchanges:
            fetched = job.client.latest(exchange)
            answers.append(fetched)
            latest[exchange] = _latest_day(fetched)
    # Days an ETF misses behind a watermark another writer moved past them: one
    # query, and at most one request per exchange and day (see plan.py).
    candidates = hole_candidates(options, latest, history.asked_days(job.db))
    holes = history.watermark_holes(job.db, candidates)
    max_days = job.settings.latest_max_days
    plan = build_plan(context, options, latest, max_days, holes)
    # An answer a run that died left on disk was loaded with that run's plan, which
    # did not want the rows of a hole: a day with holes is asked again.
    hole_days = set(zip(holes["market_code"], holes["day"], strict=True))
    day_requests = [
        r
        for r in plan.requests
        if r.endpoint == "latest"
        and (not done_before.covers(r) or (MARKETS[r.exchange], r.day) in hole_days)
    ]
    answers += [f for f in fetch_all(job.client, day_requests, job.settings.workers) if f]
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
        plan = build_plan(context, options, latest, max_days, holes)
        answers = [f for f in answers if f.exchange not in broken]
    ticker_requests = [r for r in plan.requests if r.endpoint == "daily"]
    requests = [r for r in ticker_requests if not done_before.covers(r)]
    job.snapshot.write("plan.parquet", plan.context())
    job.snapshot.update_manifest(
        plan={
            "symbols": plan.symbols.height,
            "up_to_date": plan.up_to_date,
            "latest_days": {ex: [d.isoformat() for d in days] for ex, days in plan.days.items()},
            "requests": len(plan.requests),
            "holes_behind_watermarks": holes.height,
            "answered_on_disk": len(ticker_requests) - len(requests),
        }
    )
    normalizer = Normalizer(plan.context(), options.end, job.snapshot)
    stages = Stages(job, normalizer, options.overwrite, tally)
    tally.done = plan.symbols.filter(pl.col("by_day")).height + len(ticker_requests) - len(requests)
    extract_and_load(job, requests, answers, stages, tally, tally.done + len(requests))
    if not job.stop.is_set() and not tally.not_fetched:  # else some were never asked
        completed = plan.completed_inactive(tally.failed, options)
        history.mark_complete(job.db, completed, job.loader.before_commit)
        days = completed_days(plan, options, latest, tally)
        history.mark_days_complete(job.db, days, job.run_id, job.loader.before_commit)
    return price_summary(job, plan, tally, time.monotonic() - started)


def completed_days(
    plan: Plan, options: PriceOptions, latest: dict[str, date | None], tally: PriceTally
) -> dict[str, date]:
    """Active ETF -> the day this run asked it up to and got an answer: in an
    ordinary run (no --symbol, no --full), the day /daily/latest named for its
    exchange (its per-day answers whole), for every active ETF of the plan that
    did not fail."""
    if options.symbols or options.full or "is_active" not in plan.symbols.columns:
        return {}
    days = {ex: min(day, options.end) for ex, day in latest.items() if day is not None}
    active = plan.symbols.filter(pl.col("is_active") == "Y")
    return {
        symbol: days[EXCHANGES[market]]
        for symbol, market in active.select("symbol", "market_code").iter_rows()
        if EXCHANGES[market] in days and symbol not in tally.failed
    }


def extract_and_load(
    job: Job,
    requests: list[Request],
    answers: list[Fetched],
    stages: Stages,
    tally: PriceTally,
    total: int,
) -> None:
    """Fetch ``requests`` (after ``answers`` already at hand) through ``stages`` to
    the database, marking the snapshot's manifest as each step completes. A failed
    load raises once the extract is complete and everything fetched is on disk."""
    try:
        _extract_prices(job, requests, answers, stages, tally, total)
    finally:
        stages.finish()
    job.snapshot.update_manifest(extract_complete=True)
    if stages.error is not None:
        raise _load_failed(job, stages.error)
    job.snapshot.update_manifest(loaded=True)


def _extract_prices(
    job: Job,
    requests: list[Request],
    answers: list[Fetched],
    stages: Stages,
    tally: PriceTally,
    total: int,
) -> None:
    """Fetch into raw parts, each durable within seconds, and hand each on.

    The per-day answers go first, in one part of their own: the rows of
    consecutive days must be normalized together for each day's change to
    refer to the day before.
    """
    assert job.client is not None
    writer = RawWriter(job.snapshot, "prices", job.settings.batch_rows)
    for fetched in answers:
        writer.add(fetched)
        tally.rows_fetched += fetched.rows
    if (part := writer.flush()) is not None:
        stages.put(part)
    received = 0
    for fetched in fetch_all(job.client, requests, job.settings.workers, tick=STOP_CHECK_SECONDS):
        if job.stop.is_set():
            break  # answers still in flight are dropped; the next run asks again
        if fetched is not None:
            received += 1
            tally.done += 1
            if fetched.ok:
                tally.rows_fetched += fetched.rows
            else:
                symbol = f"{MARKETS[fetched.exchange]}.{fetched.ticker}"
                log.warning("%s skipped: %s", symbol, fetched.error)
            writer.add(fetched)
            if job.progress:
                job.progress(tally.done, total, tally.rows_fetched)
        if writer.due():
            stages.put(writer.flush())  # type: ignore[arg-type]
    if (part := writer.flush()) is not None:
        stages.put(part)
    tally.not_fetched = len(requests) - received


def _load_failed(job: Job, error: StageError) -> StageError:
    if error.stage != "load":
        return error
    return StageError(
        "load",
        job.run_id,
        f"loading into the database failed: {error.detail}. Every answer was saved in "
        f"{job.snapshot.path}; the next 'etl sync' loads them first, or load them now "
        f"with: etl replay {job.snapshot.path}",
    )


def price_summary(job: Job, plan: Plan, tally: PriceTally, seconds: float) -> dict[str, Any]:
    total = plan.symbols.height
    attempted = total - plan.up_to_date - tally.not_fetched
    failed = len(tally.failed)
    # The failed share is over every ETF of the run, up to date or not: an ETF
    # failing every evening must not fail the evenings when few others needed a request.
    outcome = decide(
        Policy.from_settings(job.settings),
        units=total,
        failed=failed,
        rows_ok=tally.rows_valid,
        rows_rejected=tally.rows_rejected,
        stopped=job.client.breaker.reason if job.client else None,
        names=sorted(tally.failed),
    )
    if tally.rows_pct_out_of_range:
        job.warnings.append(
            f"{tally.rows_pct_out_of_range} rows changed by 10,000% or more against the "
            "previous close, beyond price_change_pct's NUMERIC(8,4): stored with "
            "price_change_pct NULL"
        )
    return {
        "status": outcome.status,
        **({"reasons": list(outcome.reasons)} if outcome.reasons else {}),
        "symbols_total": total,
        "symbols_ok": attempted - failed,
        "symbols_failed": failed,
        "symbols_up_to_date": plan.up_to_date,
        "symbols_not_fetched": tally.not_fetched,
        "failed": [{"symbol": s, "reason": r} for s, r in sorted(tally.failed.items())],
        "rows_fetched": tally.rows_fetched,
        "rows_inserted": tally.rows_inserted,
        "rows_updated": tally.rows_updated,
        "rows_rejected": tally.rows_rejected,
        "rows_pct_out_of_range": tally.rows_pct_out_of_range,
        "answers_resumed": tally.answers_resumed,
        "rows_resumed": tally.rows_resumed,
        **plan.counts(),
        "price_seconds": round(seconds, 3),
    }


def sync_all(job: Job, options: PriceOptions) -> dict[str, Any]:
    """The nightly job: ETF lists first, so new listings get their prices too."""
    lists = sync_lists(job, options.exchanges)
    prices = sync_prices(job, options)
    reasons = lists.get("reasons", []) + prices.get("reasons", [])
    return {
        **lists,
        **prices,
        "status": worst(lists["status"], prices["status"]),
        **({"reasons": reasons} if reasons else {}),
    }


# -- replay ---------------------------------------------------------------------


def replay(job: Job) -> dict[str, Any]:
    """Normalize and load a snapshot's answers again: lists first, then prices.

    The snapshot (``job.source``) is only read; typed parts, rejects and the
    manifest of the replay go under the replay's own run directory.
    """
    source = job.source
    assert source is not None
    manifest = source.manifest()
    summary: dict[str, Any] = {"status": "ok", "replayed_run": manifest.get("run_id")}
    list_parts = list(source.raw_parts("list"))
    if list_parts:
        raw = pl.concat(list_parts)
        results = {
            ex: apply_list(job, raw.filter(pl.col("exchange") == ex), ex)
            for ex in raw["exchange"].unique(maintain_order=True).to_list()
        }
        summary.update(list_summary(results, Policy.from_settings(job.settings)))
    normalizer = Normalizer.of(source, job.snapshot)
    price_parts = source.parts("kind=prices")
    if price_parts and normalizer is None:
        raise SnapshotError(f"{source.path} has price answers but no plan.parquet")
    if normalizer is not None:
        started = time.monotonic()
        tally = PriceTally()
        options = manifest.get("options", {})
        stages = Stages(job, normalizer, bool(options.get("overwrite")), tally)
        stages.run(price_parts)
        tally.rows_fetched = tally.rows_on_disk
        plan = Plan(normalizer.context, [], int(manifest.get("plan", {}).get("up_to_date", 0)), {})
        prices = price_summary(job, plan, tally, time.monotonic() - started)
        reasons = summary.get("reasons", []) + prices.get("reasons", [])
        summary.update({k: v for k, v in prices.items() if k != "status"})
        summary["status"] = worst(summary["status"], prices["status"])
        if reasons:
            summary["reasons"] = reasons
    if not list_parts and normalizer is None:
        raise SnapshotError(f"{source.path} holds no list or price answers to replay")
    job.snapshot.update_manifest(loaded=True)
    return summary
