"""Share splits, merges and conversions (份额拆分 / 合并 / 折算), seen in the prices.

An A-share ETF moves at most 10% a day (20% on some boards), so its open can
never lie further than that from the previous close. A larger jump means the
number of shares changed overnight: a 2-for-1 split opens near half the
previous close, a 10-to-1 merge near ten times it. The ratio is the number of
new shares per old share (2, 0.1, 3.8165), estimated as previous close / open
and snapped to a round ratio when it lies close to one; an official ratio from
the fund's announcement replaces the estimate (``etl record-action``).

SQL that needs the same numbers (sql/queries/corporate_*.sql) follows these
definitions; keep the two in step.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl

from etl.schema import PRICE, RATIO
from etl.sqlfiles import query

# open / previous close outside [FLOOR, CEILING] cannot be a day's trading:
# the widest limit is ±20%, and a limit price is rounded to the tick.
JUMP_FLOOR = 0.75
JUMP_CEILING = 1.25
# An estimate within this share of a round ratio is taken as that ratio: the
# open differs from the exchange's reference price by the first trade's move.
SNAP_TOLERANCE = 0.03
# Round ratios funds announce. Reciprocals only where they are exact decimals,
# so the cumulative factor stays exact NUMERIC.
ROUND_RATIOS = (*range(2, 11), 0.5, 0.25, 0.2, 0.1, 0.05)


def estimated_ratio(prev_close: pl.Expr, open_price: pl.Expr) -> pl.Expr:
    """New shares per old share where the open jumps beyond any daily limit, else null."""
    prev = prev_close.cast(pl.Float64)
    jump = open_price.cast(pl.Float64) / prev
    estimate = prev / open_price.cast(pl.Float64)
    snapped = pl.lit(None, pl.Float64)
    for r in ROUND_RATIOS:
        snapped = (
            pl.when((estimate / r - 1).abs() <= SNAP_TOLERANCE)
            .then(pl.lit(float(r)))
            .otherwise(snapped)
        )
    outside = (jump < JUMP_FLOOR) | (jump > JUMP_CEILING)
    ratio = (
        pl.when(outside & (prev > 0) & (open_price.cast(pl.Float64) > 0))
        .then(pl.coalesce(snapped, estimate.round(4)))
        .cast(RATIO, strict=False)
    )
    # A jump of 20,000 times and more rounds to a ratio of 0: no fund does that.
    return pl.when(ratio > 0).then(ratio)


def adjusted_prev_close(prev_close: pl.Expr, ratio: pl.Expr) -> pl.Expr:
    """The previous close in the new shares: prev / ratio, to the price's scale, halves
    away from zero (SQL: round(prev_close / ratio, 4))."""
    exact = prev_close.cast(pl.Decimal(38, 12)) / ratio.cast(pl.Decimal(38, 12))
    return exact.round(PRICE.scale, mode="half_away_from_zero").cast(PRICE, strict=False)


def recompute(actions: list[tuple[str, date]], cur: Any) -> None:
    """Recompute the change of the stored row on each (symbol, ex-date) from the
    ratio recorded for it, on the caller's transaction."""
    stage = pl.DataFrame(actions, schema={"symbol": pl.String, "ex_date": pl.Date}, orient="row")
    cur.adbc_ingest("etl_stage_recompute", stage.to_arrow(), mode="replace", temporary=True)
    cur.execute(query("corporate_recompute"))
