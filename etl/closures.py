"""Weekdays beyond the holiday table, settled in one request per exchange.

Within the State Council table (etl/calendar.py) the nightly knows every day.
Beyond it, a weekday may be a holiday nobody has published yet, and asking
``/daily/latest`` for each of them costs one request per exchange and day: 14
requests on the evening after a Golden Week. Instead, when that would cost
more, one ETF per exchange that traded on both sides of the unknown span (on
the day before it, its watermark, and on the latest day, the undated answer)
is asked for its own bars over the span. XSHG and XSHE share one calendar, so
a day on which neither reference has a bar was a closure; a day one of them
traded is asked of each exchange as before. With one exchange, two of its
ETFs are the references. Two ETFs each suspended on the same trading day,
having traded on both sides of it, is what this takes for a holiday.

The references' answers are kept in the snapshot (``kind=calendar``), and
the days they settled in its manifest. A failed reference settles nothing:
every unknown day is then asked per exchange, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date

import polars as pl

from etl import transform
from etl.answers import Fetched
from etl.calendar import is_trading_day
from etl.context import Job
from etl.extract import Request, fetch_all
from etl.plan import Plan
from etl.snapshot import fetched_frame

log = logging.getLogger(__name__)

REFERENCES = 2  # requests a probe costs, whatever the number of exchanges


def unknown_days(plan: Plan, latest: dict[str, date | None]) -> dict[str, list[date]]:
    """Exchange -> the days the plan asks of /daily/latest that the table does not
    know, apart from the latest day (its answer is at hand)."""
    out = {
        exchange: [d for d in days if is_trading_day(d) is None and d != latest.get(exchange)]
        for exchange, days in plan.days.items()
    }
    return {exchange: days for exchange, days in out.items() if days}


def references(
    plan: Plan, unknown: dict[str, list[date]], latest_answers: Iterable[Fetched]
) -> list[Request]:
    """The probe's requests: ``REFERENCES`` ETFs, spread over the exchanges with
    unknown days, each asked over the whole unknown span. A reference is an ETF
    of the plan's per-day pack (it traded on the day before the span) that the
    undated /daily/latest answer lists (it traded on the latest day); [] when an
    exchange has none."""
    first = min(d for days in unknown.values() for d in days)
    last = max(d for days in unknown.values() for d in days)
    traded_latest: dict[str, set[str]] = {}
    answers = [f for f in latest_answers if f.ok and f.rows and not f.params.get("date")]
    if answers:
        rows = transform.explode_bodies(fetched_frame(answers), ["ticker"])
        for exchange, ticker in rows.select("exchange", "ticker").iter_rows():
            traded_latest.setdefault(exchange, set()).add(str(ticker))
    exchanges = sorted(unknown)
    picks: list[Request] = []
    for k in range(REFERENCES):
        exchange = exchanges[k % len(exchanges)]
        taken = {r.ticker for r in picks}
        candidates = (
            plan.symbols.filter(
                pl.col("by_day")
                & (pl.col("exchange") == exchange)
                & pl.col("ticker").is_in(sorted(traded_latest.get(exchange, ())))
                & ~pl.col("ticker").is_in(sorted(t for t in taken if t))
            )
            .sort("symbol")["ticker"]
            .to_list()
        )
        if not candidates:
            return []
        picks.append(Request("daily", exchange, candidates[0], first, last))
    return picks


def closed_days(unknown: dict[str, list[date]], answers: list[Fetched]) -> frozenset[date]:
    """The unknown days on which no reference has a bar; none unless every
    reference answered."""
    if not answers or not all(f.ok for f in answers):
        return frozenset()
    good = [f for f in answers if f.rows]
    traded = set(transform.answer_dates(fetched_frame(good)).to_list()) if good else set()
    return frozenset(d for days in unknown.values() for d in days if d not in traded)


def worth_probing(unknown: dict[str, list[date]]) -> bool:
    """Whether asking the references costs fewer requests than asking each day."""
    return sum(len(days) for days in unknown.values()) > REFERENCES


def settle(
    job: Job, plan: Plan, latest: dict[str, date | None], answers: list[Fetched]
) -> frozenset[date]:
    """The unknown weekdays of ``plan`` that were closures, asked of the
    references when that is cheaper than asking each day (else none)."""
    unknown = unknown_days(plan, latest)
    if not worth_probing(unknown) or job.client is None:
        return frozenset()
    probes = references(plan, unknown, answers)
    if not probes:
        return frozenset()
    fetched = [f for f in fetch_all(job.client, probes, job.settings.workers) if f]
    job.snapshot.append_raw("calendar", fetched)
    closed = closed_days(unknown, fetched)
    job.snapshot.update_manifest(closed_beyond_table=sorted(d.isoformat() for d in closed))
    log.info(
        "weekdays beyond the holiday table: %d asked of %s, %d of them closed",
        len({d for days in unknown.values() for d in days}),
        ", ".join(f"{r.exchange} {r.ticker}" for r in probes),
        len(closed),
    )
    return closed
