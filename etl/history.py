"""The tool's own record of what its runs completed, in tables of its own.

An inactive ETF is priced until its whole history has been fetched once; then
it is recorded in etl_etf_history and left out of later runs (``--symbol``
still reaches it). Per exchange, the latest trading day an ordinary run of ours
completed is kept in etl_exchange_days: days after it are looked at for holes
behind watermarks another writer moved (``watermark_holes``).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

import polars as pl

from etl.db import Database
from etl.plan import HOLES_SCHEMA
from etl.sqlfiles import query
from etl.symbols import EXCHANGES, MARKETS, SYMBOL_RE

_SYMBOL = re.compile(SYMBOL_RE)


def mark_complete(db: Database, symbols: list[str]) -> None:
    """Record the history of these inactive ETFs as complete."""
    if not symbols:
        return
    for symbol in symbols:
        if not _SYMBOL.fullmatch(symbol):
            raise ValueError(f"not a symbol: {symbol!r}")
    db.execute(query("history_complete"), (",".join(symbols),))


def complete_days(db: Database) -> dict[str, date]:
    """Exchange -> the latest trading day an ordinary run of ours completed there."""
    rows = db.fetch(query("exchange_days"))
    return {EXCHANGES[m]: date.fromisoformat(d) for m, d in rows if m in EXCHANGES}


def mark_days_complete(db: Database, days: dict[str, date], run_id: str) -> None:
    """Record that this run asked every active ETF of these exchanges up to these days."""
    if days:
        pairs = ",".join(f"{MARKETS[ex]}:{d.isoformat()}" for ex, d in sorted(days.items()))
        db.execute(query("exchange_days_complete"), (pairs, run_id))


def watermark_holes(db: Database, candidates: dict[str, list[date]]) -> pl.DataFrame:
    """Days active ETFs miss behind their own watermark, among ``candidates``
    (market -> days), in one query; HOLES_SCHEMA."""
    pairs = ",".join(f"{m}:{d.isoformat()}" for m, days in sorted(candidates.items()) for d in days)
    rows = db.fetch(query("watermark_holes"), (pairs,)) if pairs else []
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
