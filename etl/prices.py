"""The daily price job: resume, plan, then extract while normalize and load
work through the raw parts as they are written.

``extract_and_load`` runs the three stages of a price run (also for a repair);
``price_summary`` turns what they returned into the job's summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import polars as pl

from etl import closures, history, transform
from etl.answers import Fetched
from etl.calendar import is_trading_day, stale_table_warning
from etl.context import Job
from etl.errors import StageError
from etl.extract import ExtractResult, Request, extract_prices, fetch_all
from etl.load import etf_context
from etl.normalize import Normalizer
from etl.outcome import Policy, decide
from etl.plan import Plan, PriceOptions, build_plan, hole_candidates
from etl.resume import finish_pending
from etl.snapshot import fetched_frame
from etl.stages import Stages, StagesResult
from etl.symbols import EXCHANGES, MARKETS

log = logging.getLogger(__name__)


def _latest_day(fetched: Fetched) -> date | None:
    """The latest trading day an undated /daily/latest answer speaks of."""
    if not fetched.ok or not fetched.rows:
        return None
    parsed = transform.answer_dates(fetched_frame([fetched]))
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
    done_before = finish_pending(job)
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
    # Weekdays beyond the holiday table: a Golden Week settled in two requests.
    closed = closures.settle(job, plan, latest, answers)
    if closed:
        plan = build_plan(context, options, latest, max_days, holes, closed)
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
        plan = build_plan(context, options, latest, max_days, holes, closed)
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
    stages = Stages(job, normalizer, options.overwrite)
    done = plan.symbols.filter(pl.col("by_day")).height + len(ticker_requests) - len(requests)
    extracted, loaded = extract_and_load(job, requests, answers, stages, done, done + len(requests))
    if not job.stop.is_set() and not extracted.requests_not_made:  # else some were never asked
        completed = plan.completed_inactive(loaded.failed, options)
        history.mark_complete(job.db, completed, job.loader.before_commit)
        days = completed_days(plan, options, latest, set(loaded.failed) | extracted.empty)
        history.mark_days_complete(job.db, days, job.run_id, job.loader.before_commit)
    counts = PriceCounts.of(extracted, loaded, done_before.resumed)
    return price_summary(job, plan, counts, time.monotonic() - started)


def completed_days(
    plan: Plan, options: PriceOptions, latest: dict[str, date | None], skip: Collection[str]
) -> dict[str, date]:
    """Active ETF -> the day this run asked it up to and got an answer: in an
    ordinary run (no --symbol, no --full), the day /daily/latest named for its
    exchange (its per-day answers whole), for every active ETF of the plan but
    those in ``skip``: failed, or whose own /daily answer held no record (a
    source that left out its rows must not make it look current: etl/plan.py)."""
    if options.symbols or options.full or "is_active" not in plan.symbols.columns:
        return {}
    days = {ex: min(day, options.end) for ex, day in latest.items() if day is not None}
    active = plan.symbols.filter(pl.col("is_active") == "Y")
    return {
        symbol: days[EXCHANGES[market]]
        for symbol, market in active.select("symbol", "market_code").iter_rows()
        if EXCHANGES[market] in days and symbol not in skip
    }


def extract_and_load(
    job: Job,
    requests: list[Request],
    answers: list[Fetched],
    stages: Stages,
    done: int,
    total: int,
) -> tuple[ExtractResult, StagesResult]:
    """Fetch ``requests`` (after ``answers`` already at hand) through ``stages`` to
    the database, marking the snapshot's manifest as each step completes. A failed
    load raises once the extract is complete and everything fetched is on disk.
    ``done`` of ``total`` symbols were done before (progress)."""
    try:
        extracted = extract_prices(job, requests, answers, stages.put, done, total)
    finally:
        loaded = stages.finish()
    job.snapshot.update_manifest(extract_complete=True)
    if loaded.error is not None:
        raise _load_failed(job, loaded.error)
    job.snapshot.update_manifest(loaded=True)
    return extracted, loaded


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


@dataclass(frozen=True)
class PriceCounts:
    """The counts of a price job's summary, built once, on the job's own thread,
    from what its extract, its stages and the resume of runs that died returned."""

    rows_fetched: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_rejected: int = 0
    rows_valid: int = 0  # rows that passed the checks, stored already or not
    rows_pct_out_of_range: int = 0  # stored with price_change_pct NULL
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> reason
    not_fetched: int = 0  # requests never made: interrupted, or the breaker opened
    answers_resumed: int = 0  # answers a run that died left on disk, loaded by this one
    rows_resumed: int = 0  # rows of those answers this run inserted

    @classmethod
    def of(
        cls,
        extracted: ExtractResult | None,
        loaded: StagesResult,
        resumed: StagesResult | None = None,
    ) -> PriceCounts:
        """Without an extract (a replay), what was fetched is what the parts hold."""
        resumed = resumed or StagesResult()
        return cls(
            rows_fetched=extracted.rows_fetched if extracted else loaded.rows_on_disk,
            rows_inserted=resumed.rows_inserted + loaded.rows_inserted,
            rows_updated=loaded.rows_updated,
            rows_rejected=resumed.rows_rejected + loaded.rows_rejected,
            rows_valid=loaded.rows_valid,
            rows_pct_out_of_range=loaded.rows_pct_out_of_range,
            failed=loaded.failed,
            not_fetched=extracted.requests_not_made if extracted else 0,
            answers_resumed=resumed.answers,
            rows_resumed=resumed.rows_inserted,
        )


def price_summary(job: Job, plan: Plan, counts: PriceCounts, seconds: float) -> dict[str, Any]:
    total = plan.symbols.height
    attempted = total - plan.up_to_date - counts.not_fetched
    failed = len(counts.failed)
    # The failed share is over every ETF of the run, up to date or not: an ETF
    # failing every evening must not fail the evenings when few others needed a request.
    outcome = decide(
        Policy.from_settings(job.settings),
        units=total,
        failed=failed,
        rows_ok=counts.rows_valid,
        rows_rejected=counts.rows_rejected,
        stopped=job.client.breaker.reason if job.client else None,
        names=sorted(counts.failed),
    )
    if counts.rows_pct_out_of_range:
        job.warnings.append(
            f"{counts.rows_pct_out_of_range} rows changed by 10,000% or more against the "
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
        "symbols_not_fetched": counts.not_fetched,
        "failed": [{"symbol": s, "reason": r} for s, r in sorted(counts.failed.items())],
        "rows_fetched": counts.rows_fetched,
        "rows_inserted": counts.rows_inserted,
        "rows_updated": counts.rows_updated,
        "rows_rejected": counts.rows_rejected,
        "rows_pct_out_of_range": counts.rows_pct_out_of_range,
        "answers_resumed": counts.answers_resumed,
        "rows_resumed": counts.rows_resumed,
        **plan.counts(),
        "price_seconds": round(seconds, 3),
    }
