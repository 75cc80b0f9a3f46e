"""Every frame schema of the tool, in one place: what each stage writes and reads.

- ``RAW_SCHEMA``: extract's raw parts, one row per API answer (``kind=*/``).
- ``DAILY_SCHEMA``: exactly the column types of ``stock_daily_data`` that load
  COPYs (gotchas.md: COPY sends Arrow types as they are, so these must match
  the table).
- ``TYPED_SCHEMA``: normalize's typed parts (``typed/``): ``DAILY_SCHEMA`` and
  ``action_ratio``, a share split detected on the row's day.
- ``LIST_SCHEMA``: the columns of ``stock_info`` the ETF lists own.
- ``PLAN_SCHEMA``: ``plan.parquet``, the per-symbol context of a price run.
- ``REJECT_SCHEMA``: ``rejects/``, rows refused with a reason.
- ``HOLES_SCHEMA``: days active ETFs miss behind a watermark another writer moved.
"""

from __future__ import annotations

import polars as pl

PRICE = pl.Decimal(10, 4)
TURNOVER = pl.Decimal(20, 2)
PCT = pl.Decimal(8, 4)
TS = pl.Datetime("us")  # naive: trade dates are China dates at midnight, no zone

# Column order and types of stock_daily_data as this tool writes it.
DAILY_SCHEMA: dict[str, pl.DataType] = {
    "trade_date": TS,
    "symbol": pl.String(),
    "stock_name": pl.String(),
    "close_price": PRICE,
    "open_price": PRICE,
    "high_price": PRICE,
    "low_price": PRICE,
    "volume": pl.Int64(),
    "turnover": TURNOVER,
    "price_change": PRICE,
    "price_change_pct": PCT,
    "premium_rate": PCT,
    "market_code": pl.String(),
}
VALUE_COLUMNS = [c for c in DAILY_SCHEMA if c not in ("trade_date", "symbol")]

# New shares per old share, as etl/corporate.py estimates it (four decimals).
RATIO = pl.Decimal(18, 4)
# normalize's typed parts: the table's columns, then what load needs beside them.
# action_ratio is the estimated ratio of a share split on the row's day (the
# row is an ex-date), else null; parts written before it existed lack it.
TYPED_SCHEMA: dict[str, pl.DataType] = {**DAILY_SCHEMA, "action_ratio": RATIO}

# The ETF-list columns of stock_info this tool owns.
LIST_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "stock_code": pl.String(),
    "market_code": pl.String(),
    "stock_name": pl.String(),
    "stock_type": pl.String(),
    "is_active": pl.String(),
    "is_etf": pl.String(),
}

# Per-symbol context for the daily transform (see plan.py): the name to store
# and the last close before the fetched range, for the first price_change.
PLAN_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "stock_name": pl.String(),
    "prev_date": TS,
    "prev_close": PRICE,
    "by_day": pl.Boolean(),  # served by /daily/latest answers rather than its own range
}

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "endpoint": pl.String(),
    "exchange": pl.String(),
    "ticker": pl.String(),
    "trade_date": pl.String(),
    "reason": pl.String(),
    "row": pl.String(),  # the raw row as JSON text
}

# One row per API answer, as received; never the token.
RAW_SCHEMA: dict[str, pl.DataType] = {
    "endpoint": pl.String(),  # list, daily or latest
    "exchange": pl.String(),
    "ticker": pl.String(),  # the ticker requested (daily only)
    "params": pl.String(),  # request parameters as JSON, token excluded
    "fetched_at": pl.Datetime("us", "UTC"),
    "attempts": pl.Int32(),
    "http_status": pl.Int32(),
    "rows": pl.Int64(),  # len(data) of a good answer
    "error": pl.String(),  # why the request failed in the end; null when good
    "body": pl.String(),  # the response text as received
}

# A hole behind a watermark (see sql/queries/watermark_holes.sql): an active ETF
# with no row on a trading day though it has rows before and after it, and the
# last stored row before that day.
HOLES_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "market_code": pl.String(),
    "day": pl.Date(),
    "traded": pl.Boolean(),  # some ETF of the market has a stored row on the day
    "prev_date": PLAN_SCHEMA["prev_date"],
    "prev_close": PLAN_SCHEMA["prev_close"],
}
