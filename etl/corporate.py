"""Share splits, merges and conversions (份额拆分 / 合并 / 折算), seen in the prices.

An A-share ETF trades within a daily limit of its previous close: 10% for most,
20% for the ETFs of the ChiNext and STAR boards (``daily_limit``). An open
beyond that limit cannot be a day's trading: the number of shares changed
overnight. A 2-for-1 split opens near half the previous close, a 10-to-1 merge
near ten times it, a 1:1.1454 split of a 10%-limit ETF at 0.87 of it.

A day is an ex-date only where

* its previous stored row is the previous trading day, or at most
  ``MAX_SUSPENSION_DAYS`` trading days back (a fund is often suspended a day
  or two before its split; a sync asked the source for those days and got no
  row), not counting the days of a suspension the source confirmed
  (``etl check --repair`` records them). After a longer gap nobody confirmed
  (days lost at the source, or a suspension of weeks not yet confirmed) no
  estimate is made;
* its open lies beyond the ETF's own limit from the previous close; and
* the whole bar agrees with one ratio: in new shares (prices times the ratio)
  its high and low lie within the limit of the previous close, allowing the
  estimate's own error. An open printed off while the rest of the day traded
  normally is no split.

The ratio is the number of new shares per old share (2, 0.1, 3.8165),
estimated as previous close / open and snapped to a round ratio when it lies
within ``SNAP_TOLERANCE`` of one. A ratio that stays unsnapped (a conversion,
a split whose first trade opened a few percent off, a large cash dividend,
whose proportional factor the estimate also is) is recorded as detected and
``etl check`` lists it as needing the official ratio (``etl record-action``):
an estimate never becomes a factor without anybody being told.

Detected actions are estimated again whenever a load writes rows around them
(``reestimate``): one whose jump is gone (a filled gap) is dropped.

The change of an ex-date row (``adjusted_prev_close``, ``change_pct``) has an SQL
twin, the functions of sql/migrations/0009_exdate_change.sql that the queries
recomputing a stored change call; tests/test_exdate_rule.py holds the two equal.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl

from etl.calendar import trading_days_between
from etl.schema import PCT, PRICE, RATIO
from etl.sqlfiles import query

# Daily limits, as a share of the previous close; the exchange rounds a limit
# price to the tick, so a price may lie up to one tick beyond.
LIMIT = 0.10
WIDE_LIMIT = 0.20
TICK = 0.001
# An ETF whose name says it tracks a ChiNext (创业板) or STAR (科创) index, or both
# (双创), has the wide limit.
WIDE_LIMIT_NAMES = ("创业", "科创", "双创")
# A first cheap pass over every row keeps only opens beyond the narrowest limit
# from the previous close: the candidates the rules below look at.
CANDIDATE_FLOOR = 1 - LIMIT
CANDIDATE_CEILING = 1 + LIMIT
# Trading days without a row between the previous stored row and an ex-date
# (beyond the suspensions the source confirmed).
MAX_SUSPENSION_DAYS = 2
# The finding of a suspension in etl_check_confirmed.
SUSPENSION = "hole"
# An estimate within this share of a round ratio is taken as that ratio: the
# open differs from the exchange's reference price by the first trade's move.
SNAP_TOLERANCE = 0.03
# Round ratios funds announce. Reciprocals only where they are exact decimals,
# so the cumulative factor stays exact NUMERIC.
ROUND_RATIOS = (*range(2, 11), 0.5, 0.25, 0.2, 0.1, 0.05)


def daily_limit(stock_name: pl.Expr) -> pl.Expr:
    """The ETF's daily limit as a share of the previous close (from its name)."""
    wide = pl.lit(False)
    for word in WIDE_LIMIT_NAMES:
        wide = wide | stock_name.str.contains(word, literal=True).fill_null(False)
    return pl.when(wide).then(pl.lit(WIDE_LIMIT)).otherwise(pl.lit(LIMIT))


def is_round(ratio: Decimal) -> bool:
    """Whether a ratio is one funds announce as such (2, 0.1): not to be checked."""
    return any(ratio == Decimal(str(r)) for r in ROUND_RATIOS)


# Per symbol, the (first, last) days of the suspensions the source confirmed
# (etl_check_confirmed, finding 'hole': written by ``etl check --repair``).
Suspensions = dict[str, list[tuple[date, date]]]


def missing_trading_days(
    prev_day: pl.Series,
    day: pl.Series,
    symbol: pl.Series | None = None,
    suspended: Suspensions | None = None,
) -> pl.Series:
    """Per pair, the trading days strictly between ``prev_day`` and ``day`` (the
    calendar's; unknown weekdays count), less the days of a ``suspended`` range of
    the pair's ``symbol``. Vectorised over one calendar span; only pairs further
    apart than MAX_SUSPENSION_DAYS with a confirmed suspension are looked at one
    by one (a few, at most)."""
    both = pl.concat([prev_day.drop_nulls(), day.drop_nulls()])
    if both.is_empty():
        return pl.Series([None] * len(day), dtype=pl.Int64)
    lo, hi = both.min(), both.max()
    days = pl.Series(trading_days_between(lo, hi), dtype=pl.Date)  # type: ignore[arg-type]
    after = days.search_sorted(prev_day, side="right")
    before = days.search_sorted(day, side="left")
    missing = pl.select(
        pl.when(prev_day.is_not_null() & day.is_not_null()).then(
            (before.cast(pl.Int64) - after.cast(pl.Int64)).clip(lower_bound=0)
        )
    ).to_series()
    if not suspended or symbol is None:
        return missing
    far = (missing > MAX_SUSPENSION_DAYS).fill_null(False) & symbol.is_in(list(suspended))
    calendar = days.to_list()
    for i in far.arg_true().to_list():
        ranges = suspended[symbol[i]]
        gap = calendar[after[i] : before[i]]
        missing[i] = sum(1 for d in gap if not any(a <= d <= b for a, b in ranges))
    return missing


def estimated_ratio(
    prev_close: pl.Expr,
    open_price: pl.Expr,
    high_price: pl.Expr,
    low_price: pl.Expr,
    limit: pl.Expr,
    missing: pl.Expr,
) -> pl.Expr:
    """New shares per old share where the row is an ex-date (see the module's rules),
    else null. ``missing``: trading days without a row since the previous close."""
    f = pl.Float64
    prev, opn = prev_close.cast(f), open_price.cast(f)
    high, low = high_price.cast(f), low_price.cast(f)
    estimate = prev / opn
    snapped = pl.lit(None, f)
    for r in ROUND_RATIOS:
        snapped = (
            pl.when((estimate / r - 1).abs() <= SNAP_TOLERANCE)
            .then(pl.lit(float(r)))
            .otherwise(snapped)
        )
    ratio = pl.coalesce(snapped, estimate.round(4))
    jump = (opn < prev * (1 - limit) - TICK) | (opn > prev * (1 + limit) + TICK)
    # The ratios under which the whole bar is a legal day: low * r >= prev * (1 - limit)
    # and high * r <= prev * (1 + limit), a tick allowed; widened by the estimate's error.
    lowest = prev * (1 - limit) / (low + TICK) * (1 - SNAP_TOLERANCE)
    highest = prev * (1 + limit) / (high - TICK) * (1 + SNAP_TOLERANCE)
    agrees = (ratio >= lowest) & (ratio <= highest)
    found = (
        pl.when(
            jump
            & agrees
            & (missing <= MAX_SUSPENSION_DAYS)
            & (prev > 0)
            & (opn > 0)
            & (low > 0)
            & (high > TICK)
        )
        .then(ratio)
        .cast(RATIO, strict=False)
    )
    # A jump of 20,000 times and more rounds to a ratio of 0: no fund does that.
    return pl.when(found > 0).then(found)


def estimate_rows(rows: pl.DataFrame, suspended: Suspensions | None = None) -> pl.Series:
    """``estimated_ratio`` of every row of ``rows`` (prev_day, day, prev_close,
    open_price, high_price, low_price, stock_name; symbol with ``suspended``), as a
    RATIO series. Days of a ``suspended`` range do not count as missing."""
    symbol = rows["symbol"] if suspended else None
    missing = missing_trading_days(rows["prev_day"], rows["day"], symbol, suspended)
    return (
        rows.with_columns(_missing=missing)
        .select(
            estimated_ratio(
                pl.col("prev_close"),
                pl.col("open_price"),
                pl.col("high_price"),
                pl.col("low_price"),
                daily_limit(pl.col("stock_name")),
                pl.col("_missing"),
            )
        )
        .to_series()
    )


def adjusted_prev_close(prev_close: pl.Expr, ratio: pl.Expr) -> pl.Expr:
    """The previous close in the new shares: prev / ratio, to the price's scale, halves
    away from zero; ratio null (no action) is 1; null where it does not fit PRICE
    (SQL: etl_base_in_new_shares, sql/migrations/0009)."""
    divisor = ratio.fill_null(1).cast(pl.Decimal(38, 12))
    exact = prev_close.cast(pl.Decimal(38, 12)) / divisor
    return exact.round(PRICE.scale, mode="half_away_from_zero").cast(PRICE, strict=False)


def change_pct(close: pl.Expr, base: pl.Expr) -> pl.Expr:
    """price_change_pct: (close - base) * 100 / base to PCT's 4 decimals, halves away
    from zero; null where base is not above 0 or the result does not fit NUMERIC(8,4)
    (SQL: etl_change_pct, sql/migrations/0009)."""
    # Divides by null rather than 0 (a close divided by a huge ratio rounds to 0.0000):
    # polars evaluates both branches of a when.
    divisor = pl.when(base > 0).then(base)
    pct = (close - base).cast(pl.Decimal(38, 20)) * 100 / divisor
    return pct.round(PCT.scale, mode="half_away_from_zero").cast(PCT, strict=False)


def recompute(actions: list[tuple[str, date]], cur: Any, own_rows: bool = False) -> None:
    """Recompute the change of the stored row on each (symbol, ex-date) from the
    ratio recorded for it, on the caller's transaction; with ``own_rows`` (a load)
    only where that row is one the transaction wrote."""
    stage = pl.DataFrame(actions, schema={"symbol": pl.String, "ex_date": pl.Date}, orient="row")
    cur.adbc_ingest("etl_stage_recompute", stage.to_arrow(), mode="replace", temporary=True)
    # A temporary table has no statistics: the planner takes it for a thousand rows
    # and reads stock_daily_data whole, twice (seconds), instead of a few index probes.
    cur.execute("ANALYZE etl_stage_recompute")
    cur.execute(query("corporate_recompute"), (own_rows,))


def reestimate(cur: Any) -> int:
    """Estimate again, on the caller's transaction, the detected actions around the
    rows it wrote (the batch staged in etl_stage_sync: see corporate_neighbours.sql).
    One whose jump is gone (a filled gap now gives the previous trading day) is
    dropped and its ex-date row gets its raw change back; one whose estimate moved
    takes the new one and its change follows. Returns the actions changed."""
    cur.execute(query("corporate_neighbours"))
    near = pl.from_arrow(cur.fetch_arrow_table())
    assert isinstance(near, pl.DataFrame)
    if near.is_empty():
        return 0
    near = near.select(
        pl.col("symbol").cast(pl.String),
        pl.col("ex_date").cast(pl.Date),
        pl.col("ex_date").cast(pl.Date).alias("day"),
        pl.col("ratio").cast(pl.String).cast(pl.Decimal(38, 10)).alias("old"),
        pl.col("stock_name").cast(pl.String),
        pl.col("prev_day").cast(pl.Date),
        *(pl.col(c).cast(pl.String).cast(PRICE) for c in ("prev_close", "open_price")),
        *(pl.col(c).cast(pl.String).cast(PRICE) for c in ("high_price", "low_price")),
    )
    near = near.with_columns(ratio=estimate_rows(near, _suspensions(cur, near)))
    moved = near.filter(pl.col("ratio").cast(pl.Decimal(38, 10)).ne_missing(pl.col("old")))
    if moved.is_empty():
        return 0
    stage = moved.select("symbol", "ex_date", "ratio")
    cur.adbc_ingest("etl_stage_reestimate", stage.to_arrow(), mode="replace", temporary=True)
    cur.execute(query("corporate_reestimate"))
    recompute(list(stage.select("symbol", "ex_date").iter_rows()), cur)
    return moved.height


def suspensions(confirmed: list[tuple]) -> Suspensions:
    """The confirmed suspensions among (symbol, finding, first_day, last_day) rows."""
    out: Suspensions = {}
    for symbol, finding, first, last in confirmed:
        if finding == SUSPENSION:
            out.setdefault(symbol, []).append((first, last))
    return out


def _suspensions(cur: Any, near: pl.DataFrame) -> Suspensions | None:
    """The confirmed suspensions of the symbols of ``near`` whose previous row lies
    too far back to count otherwise; None (no query) where none does."""
    missing = missing_trading_days(near["prev_day"], near["day"])
    far = near.filter((missing > MAX_SUSPENSION_DAYS).fill_null(False))
    if far.is_empty():
        return None
    symbols = "{" + ",".join(far["symbol"].unique().sort().to_list()) + "}"
    cur.execute(query("check_confirmed"), (symbols,))
    return suspensions(cur.fetchall())
