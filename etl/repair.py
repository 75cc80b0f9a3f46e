"""``etl check --repair``: ask the source again for exactly what the check found.

For each ETF with findings, one /daily request covers its holes and its
suspect rows (the first day of the first to the last day of the last). The
answers go through the same normalize and load stages as a sync, loading with
``--overwrite`` semantics: a missing day is inserted, a stored row whose
source fields differ from the answer is corrected, and nothing is ever
inserted twice. The change of the first day filled refers to the stored day
before the range (its context, read once for every ETF of the repair).

What the source then confirms is recorded in ``etl_check_confirmed``, so the
next check is quiet about it: trading days the API has no row for (a
suspension) and suspect rows the API gives as they are. A day the API
answered with a row that was rejected is not confirmed: it stays a finding.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl

from etl import transform
from etl.calendar import trading_days_between
from etl.check import CheckReport, CorporateAction, audit
from etl.context import Job
from etl.corporate import recompute
from etl.extract import Request
from etl.normalize import Normalizer
from etl.plan import Plan
from etl.prices import PriceCounts, extract_and_load, price_summary
from etl.schema import PLAN_SCHEMA, PRICE, RATIO, TS
from etl.snapshot import read_raw
from etl.sqlfiles import query
from etl.stages import Stages
from etl.symbols import EXCHANGES, MARKETS

log = logging.getLogger(__name__)

# Suspect rows worth asking the source about: their values may be wrong. A row
# at 16:00 or on a holiday was placed by its writer; the source cannot say more.
REFETCHED_REASONS = frozenset({"zero_volume", "ohlc"})


@dataclass(frozen=True)
class Range:
    """One request of the repair: a ticker from its first to its last finding."""

    symbol: str
    first: date
    last: date

    @property
    def request(self) -> Request:
        exchange = EXCHANGES[self.symbol[:2]]
        return Request("daily", exchange, self.symbol[3:], self.first, self.last)


def ranges_of(report: CheckReport) -> list[Range]:
    """One range per ETF, spanning its holes and its refetchable suspect rows."""
    spans: dict[str, tuple[date, date]] = {}

    def widen(symbol: str, first: date, last: date) -> None:
        lo, hi = spans.get(symbol, (first, last))
        spans[symbol] = (min(lo, first), max(hi, last))

    for hole in report.holes:
        widen(hole.symbol, hole.start, hole.end)
    for row in report.suspect_rows:
        if row.reason in REFETCHED_REASONS:
            widen(row.symbol, row.trade_date, row.trade_date)
    return [Range(s, lo, hi) for s, (lo, hi) in sorted(spans.items())]


def repair_context(job: Job, ranges: list[Range]) -> pl.DataFrame:
    """PLAN_SCHEMA per ETF of the repair: its name, and the last stored row
    before its range, for the change of the first day filled. One query."""
    stage = pl.DataFrame(
        {"symbol": [r.symbol for r in ranges], "first_day": [r.first for r in ranges]},
        schema={"symbol": pl.String, "first_day": pl.Date},
    )
    conn = job.db.connect()
    try:
        with conn.cursor() as cur:
            cur.adbc_ingest("etl_stage_repair", stage.to_arrow(), mode="replace", temporary=True)
            cur.execute(query("repair_context"))
            frame = pl.from_arrow(cur.fetch_arrow_table())
        conn.rollback()
    finally:
        conn.close()
    assert isinstance(frame, pl.DataFrame)
    return frame.select(
        pl.col("symbol").cast(pl.String),
        pl.col("stock_name").cast(pl.String),
        pl.col("prev_date").cast(TS),
        pl.col("prev_close").cast(pl.String).cast(PRICE),
        pl.lit(False).alias("by_day"),
    ).cast(PLAN_SCHEMA)


def repair(job: Job, exchanges: tuple[str, ...], symbols: tuple[str, ...]) -> dict[str, Any]:
    """The body of a repair run: check, fetch the findings' ranges, load, confirm."""
    assert job.client is not None
    started = time.monotonic()
    before = audit(job.db, exchanges=exchanges, symbols=symbols)
    ranges = ranges_of(before)
    counts = PriceCounts()
    confirmed = 0
    if ranges and not job.stop.is_set():
        context = repair_context(job, ranges)
        job.snapshot.write("plan.parquet", context)
        job.snapshot.update_manifest(
            plan={"symbols": len(ranges), "up_to_date": 0, "requests": len(ranges)}
        )
        normalizer = Normalizer(context, max(r.last for r in ranges), job.snapshot)
        stages = Stages(job, normalizer, True)
        counts = PriceCounts.of(
            *extract_and_load(job, [r.request for r in ranges], [], stages, 0, len(ranges))
        )
    after = audit(job.db, exchanges=exchanges, symbols=symbols) if ranges else before
    if ranges:
        # Only an ETF the API answered can confirm anything: a failed or unasked
        # request is no evidence that a day had no trading.
        good = answered_symbols(job)
        answered = [r for r in ranges if r.symbol in good]
        confirmed = record_confirmed(job, confirmations(after, answered, answered_days(job)))
        if confirmed:  # a suspension now confirmed may make the day after it an ex-date
            after = audit(job.db, exchanges=exchanges, symbols=symbols)
    splits = record_splits(job, after.unrecorded_actions)
    plan = Plan(
        pl.DataFrame({"symbol": [r.symbol for r in ranges]}, schema={"symbol": pl.String}),
        [r.request for r in ranges],
        0,
        {},
    )
    summary = price_summary(job, plan, counts, time.monotonic() - started)
    return {
        **summary,
        "findings_before": before.counts,
        "repair_ranges": [
            {"symbol": r.symbol, "start": r.first.isoformat(), "end": r.last.isoformat()}
            for r in ranges
        ],
        "findings_confirmed": confirmed,
        "splits_recorded": splits,
    }


def answered_symbols(job: Job) -> set[str]:
    """Symbols with a good /daily answer (no error) in this run's snapshot."""
    frames = [
        pl.read_parquet(p, columns=["endpoint", "exchange", "ticker", "error"])
        for p in job.snapshot.parts("kind=prices")
    ]
    if not frames:
        return set()
    good = pl.concat(frames).filter((pl.col("endpoint") == "daily") & pl.col("error").is_null())
    market = pl.col("exchange").replace_strict(MARKETS, return_dtype=pl.String)
    return set(good.select(market + "." + pl.col("ticker")).to_series().to_list())


def answered_days(job: Job) -> pl.DataFrame:
    """(symbol, day) of every record the API sent in this run's good answers,
    rejected or not: a day with a record is not a day without trading."""
    frames = [read_raw(p) for p in job.snapshot.parts("kind=prices")]
    if not frames:
        return pl.DataFrame(schema={"symbol": pl.String, "day": pl.Date})
    rows = transform.explode_bodies(pl.concat(frames, how="diagonal_relaxed"), ["date"])
    market = pl.col("exchange").replace_strict(MARKETS, return_dtype=pl.String)
    return rows.select(
        (market + "." + pl.col("req_ticker")).alias("symbol"),
        pl.col("date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias("day"),
    ).drop_nulls()


def confirmations(
    report: CheckReport, ranges: list[Range], answered: pl.DataFrame
) -> list[tuple[str, str, date, date]]:
    """(symbol, finding, first_day, last_day) the source has now confirmed: the
    runs of hole days it has no record for, and the refetched suspect rows it
    still gives as they are, inside the range asked for that ETF."""
    asked = {r.symbol: r for r in ranges}
    have = {(s, d) for s, d in answered.iter_rows()}
    out: list[tuple[str, str, date, date]] = []
    for hole in report.holes:
        r = asked.get(hole.symbol)
        if r is None:
            continue
        run: list[date] = []
        days = trading_days_between(hole.start - timedelta(days=1), hole.end)
        for day in [*days, None]:
            quiet = day is not None and r.first <= day <= r.last and (hole.symbol, day) not in have
            if quiet:
                run.append(day)  # type: ignore[arg-type]
            elif run:
                out.append((hole.symbol, "hole", run[0], run[-1]))
                run = []
    for row in report.suspect_rows:
        r = asked.get(row.symbol)
        if (
            r is not None
            and row.reason in REFETCHED_REASONS
            and r.first <= row.trade_date <= r.last
            and (row.symbol, row.trade_date) in have
        ):
            out.append((row.symbol, row.reason, row.trade_date, row.trade_date))
    return out


def record_splits(job: Job, actions: list[CorporateAction]) -> int:
    """Record share splits the check found in stored rows but nobody recorded (rows
    others wrote, or stored before splits were detected) as 'detected', and compute
    the change of their ex-date rows against the adjusted previous close."""
    if not actions:
        return 0
    stage = pl.DataFrame(
        [(a.symbol, a.ex_date, a.ratio) for a in actions],
        schema={"symbol": pl.String, "ex_date": pl.Date, "ratio": RATIO},
        orient="row",
    )
    conn = job.db.connect()
    try:
        with conn.cursor() as cur:
            cur.adbc_ingest("etl_stage_actions", stage.to_arrow(), mode="replace", temporary=True)
            cur.execute(query("corporate_record"), (False,))
            recompute([(a.symbol, a.ex_date) for a in actions], cur)
        job.loader.before_commit()  # nothing is committed once the lock is gone
        conn.commit()
    finally:
        conn.close()
    log.info("recorded %d share splits found in stored rows", len(actions))
    return len(actions)


def record_confirmed(job: Job, found: list[tuple[str, str, date, date]]) -> int:
    """Add confirmed findings to etl_check_confirmed, in one transaction."""
    if not found:
        return 0
    stage = pl.DataFrame(
        found,
        schema={
            "symbol": pl.String,
            "finding": pl.String,
            "first_day": pl.Date,
            "last_day": pl.Date,
        },
        orient="row",
    ).with_columns(confirmed_at=pl.lit(datetime.now().astimezone()))
    conn = job.db.connect()
    try:
        with conn.cursor() as cur:
            cur.adbc_ingest("etl_stage_confirmed", stage.to_arrow(), mode="replace", temporary=True)
            cur.execute(query("check_confirm"))
        job.loader.before_commit()  # nothing is committed once the lock is gone
        conn.commit()
    finally:
        conn.close()
    log.info("recorded %d findings the source confirmed", len(found))
    return len(found)
