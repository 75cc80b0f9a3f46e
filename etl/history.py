"""The tool's own record of what its runs completed, in tables of its own.

An inactive ETF is priced until its whole history has been fetched once; then
it is recorded in etl_etf_history and left out of later runs (``--symbol``
still reaches it). Per active ETF, the latest trading day an ordinary run of
ours asked it up to is kept in etl_etf_days: days after it are looked at for
holes behind watermarks another writer moved (``watermark_holes``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal

import polars as pl

from etl.db import Database
from etl.schema import HOLES_SCHEMA
from etl.sqlfiles import query
from etl.symbols import EXCHANGES


def mark_complete(
    db: Database, symbols: list[str], before_commit: Callable[[], None] | None = None
) -> None:
    """Record the history of these inactive ETFs as complete; `before_commit` is the
    run's lock check, as for every commit under the sync lock."""
    if not symbols:
        return
    db.execute(query("history_complete"), (symbols,), before_commit)


def asked_days(db: Database) -> dict[str, tuple[date | None, bool]]:
    """Exchange -> (the earliest day through which a run of ours asked each of its
    active ETFs, whether some active ETF was never asked yet)."""
    return {
        EXCHANGES[m]: (date.fromisoformat(d) if d else None, bool(unrecorded))
        for m, d, unrecorded in db.fetch(query("etf_days_oldest"))
        if m in EXCHANGES
    }


def mark_days_complete(
    db: Database,
    days: dict[str, date],
    run_id: str,
    before_commit: Callable[[], None] | None = None,
) -> None:
    """Record that this run asked these ETFs up to these days (symbol -> day);
    `before_commit` is the run's lock check."""
    if days:
        symbols = sorted(days)
        db.execute(
            query("etf_days_complete"), (symbols, [days[s] for s in symbols], run_id), before_commit
        )


def watermark_holes(db: Database, candidates: dict[str, list[tuple[date, bool]]]) -> pl.DataFrame:
    """Days active ETFs miss behind their own watermark, among ``candidates``
    (market -> (day, among the last few)), in one query; HOLES_SCHEMA."""
    asked = [(m, d, recent) for m, days in sorted(candidates.items()) for d, recent in days]
    rows = (
        db.fetch(query("watermark_holes"), tuple(list(c) for c in zip(*asked, strict=True)))
        if asked
        else []
    )
    return pl.DataFrame(
        [
            (
                symbol,
                market,
                date.fromisoformat(day),
                traded,
                datetime.fromisoformat(prev_date),
                Decimal(prev_close),
            )
            for symbol, market, day, traded, prev_date, prev_close in rows
        ],
        schema=HOLES_SCHEMA,
        orient="row",
    )
