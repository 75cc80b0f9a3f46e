"""Read-side queries over the ETF marker: which ETFs there are, counts, freshness, runs."""

from __future__ import annotations

import polars as pl

from etl.db import Database
from etl.ledger import SYNC_LOCK_KEY
from etl.sqlfiles import query


def etfs(db: Database, market: str | None = None, active: bool | None = None) -> pl.DataFrame:
    """ETFs in stock_info, optionally of one market ('SH'/'SZ') and activity."""
    frame = db.read(query("etfs_to_sync"))
    if market is not None:
        frame = frame.filter(pl.col("market_code") == market)
    if active is not None:
        frame = frame.filter(pl.col("is_active") == ("Y" if active else "N"))
    return frame


def etf_counts(db: Database) -> pl.DataFrame:
    """Per market: active and inactive ETFs, latest trade date, active ETFs behind it."""
    return db.read(query("status_etfs"))


def recent_runs(db: Database) -> pl.DataFrame:
    """The last runs; one still 'running' whose process holds no sync lock shows 'dead'."""
    return db.frame(query("status_runs"), (SYNC_LOCK_KEY,))
