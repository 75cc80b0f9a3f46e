"""Pure polars: raw API answers in, rows typed exactly like the target tables out.

No I/O here. Every field of an API row is first decoded as text, so prices keep
the decimals the API sent (never a trip through float), then cast to the exact
column types of ``stock_info`` / ``stock_daily_data`` (gotchas.md: COPY sends
Arrow types as they are). Rows that fail a check leave with a reason, as
rejects; they never reach a table. Daily answers are first offered to pyarrow
(``etl/decode.py``), which reads numbers from their digits into the same
decimals the text gives; the text path takes whatever it declines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from etl import decode
from etl.corporate import (
    CANDIDATE_CEILING,
    CANDIDATE_FLOOR,
    adjusted_prev_close,
    change_pct,
    estimate_rows,
)
from etl.envelope import (
    DAILY_FIELDS,
    DAILY_NUMBERS,
    DAILY_TEXTS,
    LIST_FIELDS,
    decode_bodies,
)
from etl.schema import (
    LIST_SCHEMA,
    PCT,
    PLAN_SCHEMA,
    PRICE,
    RATIO,
    REJECT_SCHEMA,
    TS,
    TURNOVER,
    TYPED_SCHEMA,
)
from etl.symbols import MARKETS, TICKER_RE

# Digits kept after the point when text becomes a number: enough that rounding
# to 4 places later is exact (see _decimal), and the cast itself rounds nothing.
_FRACTION = 10
# Only a plain decimal is cut: the digits of a mantissa before an exponent are
# not decimals of the value (1.23456789012345e14 is a whole number), so such a
# number is cast whole.
_TRUNCATE = rf"^(-?[0-9]*\.[0-9]{{{_FRACTION}}})[0-9]+$"
# What _decimal makes of number text, and what decode.records reads numbers into.
DECODED = pl.Decimal(38, _FRACTION)


def _decimal(text: pl.Expr) -> pl.Expr:
    """Number text -> Decimal(38, 10), never rounded on the way.

    A cast to a scale rounds the digits beyond it, so 1.00004999999 would
    become 1.0000500000 and then 1.0001 where PostgreSQL's round() gives
    1.0000. Digits past the tenth are cut instead: truncating never moves a
    value across a rounding boundary of 4 places.
    """
    cut = text.str.strip_chars().str.replace(_TRUNCATE, "${1}")
    return cut.cast(DECODED, strict=False)


@dataclass
class Result:
    rows: pl.DataFrame
    rejects: pl.DataFrame
    # Rows stored with price_change_pct NULL because the change does not fit
    # NUMERIC(8,4) (10,000% or more): counted and reported, never silent.
    pct_out_of_range: int = 0


def explode_bodies(raw: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """One row per record of every good answer, fields as text, plus its request."""
    good = raw.filter(pl.col("error").is_null() & pl.col("body").is_not_null())
    rows = (
        decode_bodies(
            good.rename({"ticker": "req_ticker"}), fields, "endpoint", "exchange", "req_ticker"
        )
        .select("endpoint", "exchange", "req_ticker", pl.col("env").struct.field("data").alias("r"))
        .explode("r")
        .filter(pl.col("r").is_not_null())
    )
    # The record itself rides along as a struct ("row"): turned back into JSON
    # text only for the few rows that end up rejected.
    return rows.with_columns(pl.col("r").struct.unnest()).rename({"r": "row"})


def answer_dates(raw: pl.DataFrame) -> pl.Series:
    """The trading days the records of good answers speak of (unparseable ones left out)."""
    dates = explode_bodies(raw, ["date"])["date"]
    return dates.str.strip_chars().str.to_date("%Y-%m-%d", strict=False).drop_nulls()


def _first_reason(checks: list[tuple[pl.Expr, str]]) -> pl.Expr:
    expr = pl.when(checks[0][0]).then(pl.lit(checks[0][1]))
    for cond, reason in checks[1:]:
        expr = expr.when(cond).then(pl.lit(reason))
    return expr.otherwise(pl.lit(None, pl.String)).alias("reason")


def _rejects(frame: pl.DataFrame, ticker: str, trade_date: str | None) -> pl.DataFrame:
    return frame.select(
        pl.col("endpoint"),
        pl.col("exchange"),
        pl.col(ticker).cast(pl.String).alias("ticker"),
        (pl.col(trade_date) if trade_date else pl.lit(None, pl.String)).alias("trade_date"),
        pl.col("reason"),
        pl.col("row").struct.json_encode(),
    ).cast(REJECT_SCHEMA)


def _split_duplicates(
    frame: pl.DataFrame, keys: list[str], values: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Identical repeats of a key count once; differing ones are all rejected."""
    reason = pl.lit("conflicting rows for the same key in one answer").alias("reason")
    repeated = frame.filter(pl.struct(keys).is_duplicated())
    if repeated.is_empty():  # the usual case: skip the costlier grouping below
        return frame, frame.clear().with_columns(reason)
    distinct = pl.struct(values).n_unique().over(keys)
    conflicting = frame.filter(distinct > 1).with_columns(reason)
    kept = frame.filter(distinct == 1).unique(subset=keys, keep="first", maintain_order=True)
    return kept, conflicting


def round_half_up(expr: pl.Expr, dtype: pl.Decimal) -> pl.Expr:
    """Round to dtype's scale, halves away from zero as PostgreSQL's round() does.

    A plain cast to a smaller scale rounds half-to-even (2.335 -> 2.34 but
    2.345 -> 2.34), so round explicitly first; the cast is then exact.
    """
    return expr.round(dtype.scale, mode="half_away_from_zero").cast(dtype, strict=False)


# -- ETF lists ----------------------------------------------------------------


def list_rows(raw: pl.DataFrame) -> Result:
    """API list answers -> stock_info rows for ETFs, and rejects."""
    rows = explode_bodies(raw.filter(pl.col("endpoint") == "list"), LIST_FIELDS)
    name = pl.col("name").str.strip_chars()
    active = pl.col("is_active").str.strip_chars().str.to_lowercase()
    checks = [
        (pl.col("ticker").is_null(), "ticker missing"),
        (~pl.col("ticker").str.contains(TICKER_RE), "ticker is not six digits"),
        (name.is_null() | (name == ""), "name empty"),
        (name.str.len_chars() > 100, "name longer than 100 characters"),
        (
            pl.col("exchange_code").is_not_null() & (pl.col("exchange_code") != pl.col("exchange")),
            "exchange_code does not match the exchange requested",
        ),
        (~active.is_in(["1", "0", "true", "false"]) | active.is_null(), "is_active not 1 or 0"),
    ]
    rows = rows.with_columns(_first_reason(checks))
    bad = rows.filter(pl.col("reason").is_not_null())
    market = pl.col("exchange").replace_strict(MARKETS, return_dtype=pl.String)
    good = rows.filter(pl.col("reason").is_null()).select(
        (market + "." + pl.col("ticker")).alias("symbol"),
        pl.col("ticker").alias("stock_code"),
        market.alias("market_code"),
        name.alias("stock_name"),
        pl.lit("ETF").alias("stock_type"),
        pl.when(active.is_in(["1", "true"]))
        .then(pl.lit("Y"))
        .otherwise(pl.lit("N"))
        .alias("is_active"),
        pl.lit("Y").alias("is_etf"),
        "endpoint",
        "exchange",
        "row",
    )
    good, dupes = _split_duplicates(good, ["symbol"], ["stock_name", "is_active"])
    rejects = pl.concat(
        [_rejects(bad, "ticker", None), _rejects(dupes, "stock_code", None)], how="vertical"
    )
    return Result(good.select(list(LIST_SCHEMA)).cast(LIST_SCHEMA), rejects)


# -- daily prices -------------------------------------------------------------


def daily_rows(raw: pl.DataFrame, plan: pl.DataFrame, end_date: date, arrow: bool = True) -> Result:
    """API daily answers (/daily and /daily/latest) -> stock_daily_data rows, and rejects.

    ``plan`` (PLAN_SCHEMA) names the symbols wanted: rows of /daily/latest for
    other symbols are not this run's business and are dropped without a reject.

    With ``arrow`` the answers are first read by pyarrow (``decode.records``),
    numbers straight into decimals. Where it declines, or where any row is
    rejected (a reject carries its record as the text path decoded it), the
    text path decodes them instead: the result is the same either way.
    """
    answers = raw.filter(pl.col("endpoint").is_in(["daily", "latest"]))
    if arrow:
        records = decode.records(answers, DAILY_TEXTS, DAILY_NUMBERS, DECODED)
        if records is not None:
            result = _daily_rows(records, plan, end_date)
            if result.rejects.is_empty():
                return result
    return _daily_rows(explode_bodies(answers, DAILY_FIELDS), plan, end_date)


def _daily_rows(rows: pl.DataFrame, plan: pl.DataFrame, end_date: date) -> Result:
    """``daily_rows`` from the records of the answers, numbers as text or decoded."""

    def number(field: str) -> pl.Expr:
        text = rows.schema[field] == pl.String
        return _decimal(pl.col(field)) if text else pl.col(field)

    market = pl.col("exchange").replace_strict(MARKETS, return_dtype=pl.String)
    ticker = pl.col("ticker").str.strip_chars()
    rows = rows.with_columns(
        pl.coalesce(ticker, pl.col("req_ticker")).alias("tk"),
        market.alias("market_code"),
        pl.col("date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias("d"),
        *[
            round_half_up(number(f), PRICE).alias(f"{f}_n")
            for f in ("open", "high", "low", "close")
        ],
        number("volume").alias("volume_d"),
    ).with_columns(
        (pl.col("market_code") + "." + pl.col("tk")).alias("symbol"),
        # close × volume as turnover will store it (Decimal(38,4) holds any product
        # of a NUMERIC(10,4) and a whole volume below 10^28); null if it does not fit.
        round_half_up(
            pl.col("close_n") * pl.col("volume_d").cast(pl.Decimal(38, 0), strict=False),
            TURNOVER,
        ).alias("turnover_n"),
    )
    rows = rows.join(plan.select(list(PLAN_SCHEMA)), on="symbol", how="left")
    # A per-exchange answer also carries symbols this run fetches by range, or
    # not at all, days a symbol already has, and (asked undated) a day after an
    # explicit --end-date: those rows are not wanted, and not errors either.
    wanted_day = pl.col("d").is_null() | (
        (pl.col("prev_date") < pl.col("d").cast(TS)) & (pl.col("d") <= pl.lit(end_date))
    )
    rows = rows.filter((pl.col("endpoint") != "latest") | (pl.col("by_day") & wanted_day))

    def bad_number(field: str, required: bool) -> list[tuple[pl.Expr, str]]:
        raw_v, num = pl.col(field), pl.col(f"{field}_n")
        checks = [(raw_v.is_null(), f"{field} missing")] if required else []
        return checks + [
            (
                raw_v.is_not_null() & num.is_null(),
                f"{field} is not a number that fits NUMERIC(10,4)",
            )
        ]

    vol = pl.col("volume_d")
    checks = [
        (
            pl.col("tk").is_null() | ~pl.col("tk").str.contains(TICKER_RE),
            "ticker is not six digits",
        ),
        (
            pl.col("req_ticker").is_not_null() & (pl.col("tk") != pl.col("req_ticker")),
            "ticker does not match the ticker requested",
        ),
        (pl.col("date").is_null(), "date missing"),
        (pl.col("d").is_null(), "date is not a yyyy-mm-dd date"),
        (pl.col("d") > pl.lit(end_date), f"date after the run's end date {end_date}"),
        *bad_number("close", required=True),
        *bad_number("open", required=False),
        *bad_number("high", required=False),
        *bad_number("low", required=False),
        (pl.col("volume").is_null(), "volume missing"),
        (
            vol.is_null() | (vol < 0) | (vol != vol.round(0)) | (vol >= 2**63),
            "volume is not a non-negative whole number",
        ),
        (pl.col("close_n") <= 0, "close is not above 0"),
        (
            pl.col("close_n").is_not_null() & pl.col("turnover_n").is_null(),
            "turnover (close × volume) does not fit NUMERIC(20,2)",
        ),
        (pl.col("high_n") < pl.col("low_n"), "high below low"),
        (
            (pl.col("open_n") < pl.col("low_n")) | (pl.col("open_n") > pl.col("high_n")),
            "open outside low..high",
        ),
        (
            (pl.col("close_n") < pl.col("low_n")) | (pl.col("close_n") > pl.col("high_n")),
            "close outside low..high",
        ),
        (pl.col("stock_name").is_null(), "symbol is not an ETF this run syncs"),
    ]
    rows = rows.with_columns(_first_reason(checks))
    bad = rows.filter(pl.col("reason").is_not_null())
    good = rows.filter(pl.col("reason").is_null()).select(
        pl.col("d").cast(TS).alias("trade_date"),
        "symbol",
        "stock_name",
        pl.col("close_n").alias("close_price"),
        pl.col("open_n").alias("open_price"),
        pl.col("high_n").alias("high_price"),
        pl.col("low_n").alias("low_price"),
        pl.col("volume_d").cast(pl.Int64).alias("volume"),
        "market_code",
        "prev_date",
        "prev_close",
        "endpoint",
        "exchange",
        "date",
        "row",
    )
    value_cols = ["close_price", "open_price", "high_price", "low_price", "volume"]
    good, dupes = _split_duplicates(good, ["symbol", "trade_date"], value_cols)
    rejects = pl.concat(
        [
            _rejects(bad, "tk", "date"),
            _rejects(dupes.with_columns(pl.col("symbol").str.slice(3).alias("tk")), "tk", "date"),
        ],
        how="vertical",
    )
    derived = _derive(good)
    return Result(
        derived.select(list(TYPED_SCHEMA)).cast(TYPED_SCHEMA),
        rejects,
        int(derived["pct_out_of_range"].sum()),
    )


def _derive(rows: pl.DataFrame) -> pl.DataFrame:
    """The derived columns, plus ``pct_out_of_range``: True where the change in
    percent did not fit NUMERIC(8,4) and price_change_pct is left NULL, and
    ``action_ratio``: the estimated ratio where the row is an ex-date (a share
    split, merge or conversion: an open beyond the ETF's daily limit from the
    previous close that the whole bar agrees with; see etl/corporate.py), else
    null. The previous close is the row before in the batch (the source answered
    nothing for the days between) or the stored one before the fetched range.

    On such an ex-date the change refers to the previous close in the new
    shares, round(previous close / ratio, 4), never to the unadjusted close.

    turnover always fits here: daily_rows rejects a row whose turnover would
    not. price_change always fits: both closes are NUMERIC(10,4) and above 0.
    """
    rows = rows.sort("symbol", "trade_date")
    in_batch = pl.col("close_price").shift(1).over("symbol").is_not_null()
    stored_before = pl.col("prev_date") < pl.col("trade_date")
    prev = pl.coalesce(
        pl.col("close_price").shift(1).over("symbol"),
        pl.when(stored_before).then(pl.col("prev_close")),
    )
    prev_day = (
        pl.when(in_batch)
        .then(pl.col("trade_date").shift(1).over("symbol"))
        .when(stored_before)
        .then(pl.col("prev_date"))
    )
    rows = _with_actions(rows.with_columns(prev.alias("_prev"), prev_day.alias("_prev_day")))
    change = pl.col("close_price") - pl.col("_base")
    return (
        rows.with_columns(
            round_half_up(pl.col("close_price") * pl.col("volume"), TURNOVER).alias("turnover"),
            change.cast(PRICE, strict=False).alias("price_change"),
            change_pct(pl.col("close_price"), pl.col("_base")).alias("price_change_pct"),
            pl.lit(None, PCT).alias("premium_rate"),
        )
        .with_columns(
            ((pl.col("price_change_pct").is_null() & (pl.col("_base") > 0)).fill_null(False)).alias(
                "pct_out_of_range"
            )
        )
        .drop("_prev", "_prev_day", "_base")
    )


def _with_actions(rows: pl.DataFrame) -> pl.DataFrame:
    """``action_ratio`` (etl/corporate.py: the estimated ratio where the row is an
    ex-date, else null) and ``_base``, the close the change refers to: ``_prev``,
    or on an ex-date ``_prev`` in new shares.

    A cheap test on every row picks the few candidates (an open beyond the
    narrowest daily limit); only those pay for the estimate (polars would evaluate
    it on every row of a when/then: four times the whole derive).
    """
    jump = pl.col("open_price").cast(pl.Float64) / pl.col("_prev").cast(pl.Float64)
    candidates = rows.select(
        ((jump < CANDIDATE_FLOOR) | (jump > CANDIDATE_CEILING)).fill_null(False).arg_true()
    ).to_series()
    ratio = pl.repeat(None, rows.height, dtype=RATIO, eager=True)
    base = rows["_prev"]
    if candidates.len():
        some = rows[candidates].select(
            pl.col("_prev_day").cast(pl.Date).alias("prev_day"),
            pl.col("trade_date").cast(pl.Date).alias("day"),
            pl.col("_prev").alias("prev_close"),
            "open_price",
            "high_price",
            "low_price",
            "stock_name",
        )
        some = some.with_columns(r=estimate_rows(some))
        adjusted = some.select(adjusted_prev_close(pl.col("prev_close"), pl.col("r"))).to_series()
        ratio = ratio.scatter(candidates, some["r"])
        base = base.clone().scatter(candidates, adjusted)
    return rows.with_columns(ratio.alias("action_ratio"), base.alias("_base"))


def anti_join(candidates: pl.DataFrame, existing: pl.DataFrame) -> pl.DataFrame:
    """Candidates whose trading day is not stored yet for their symbol; order kept.

    ``existing`` holds (symbol, day): the trading days stored, whatever clock
    time their writer gave ``trade_date`` (see sql/queries/existing_keys.sql).
    """
    keys = existing.select(pl.col("symbol").cast(pl.String), pl.col("day").cast(pl.Date))
    day = pl.col("trade_date").cast(pl.Date).alias("day")
    return (
        candidates.with_columns(day)
        .join(keys, on=["symbol", "day"], how="anti", maintain_order="left")
        .drop("day")
    )


@dataclass
class ListChanges:
    stage: pl.DataFrame  # LIST_SCHEMA + action ("upsert" or "deactivate")
    new: int
    updated: int
    deactivated: int
    listed: int
    guarded: bool  # True: the list looked truncated, nobody was deactivated


def list_changes(
    listed: pl.DataFrame,
    stored: pl.DataFrame,
    market: str,
    seen_tickers: pl.Series,
    min_share: float = 0.9,
) -> ListChanges:
    """Diff one exchange's fetched list against stock_info.

    ``stored`` holds stock_info's symbol, stock_name, stock_type, is_active and
    is_etf for every row (stocks included). A known symbol is staged only when
    something the list owns changed, so a rerun touches nothing. ETFs of this
    market missing from the answer are retired, unless the answer is shorter
    than ``min_share`` of the active ETFs stored: then it is taken as truncated
    and nobody is retired. Tickers the answer named, even in rejected rows,
    are not "missing".
    """
    cols = ["stock_name", "stock_type", "is_active", "is_etf"]
    joined = listed.join(
        stored.select("symbol", *[pl.col(c).alias(f"old_{c}") for c in cols]),
        on="symbol",
        how="left",
    )
    is_new = pl.col("old_is_etf").is_null() & pl.col("old_stock_name").is_null()
    changed = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"old_{c}")) for c in cols])
    upserts = joined.filter(is_new | changed)
    new = upserts.filter(is_new).height

    active_etfs = stored.filter(
        (pl.col("is_etf") == "Y")
        & (pl.col("is_active") == "Y")
        & pl.col("symbol").str.starts_with(f"{market}.")
    )
    seen = (market + "." + seen_tickers.cast(pl.String)).implode()
    missing = active_etfs.filter(~pl.col("symbol").is_in(seen))
    guarded = listed.height < min_share * active_etfs.height and missing.height > 0
    if guarded:
        missing = missing.clear()
    retire = missing.select(
        "symbol",
        pl.col("symbol").str.slice(3).alias("stock_code"),
        pl.lit(market).alias("market_code"),
        "stock_name",
        "stock_type",
        pl.lit("N").alias("is_active"),
        pl.lit("Y").alias("is_etf"),
    ).cast(LIST_SCHEMA)
    stage = pl.concat(
        [
            upserts.select(list(LIST_SCHEMA)).with_columns(pl.lit("upsert").alias("action")),
            retire.with_columns(pl.lit("deactivate").alias("action")),
        ],
        how="vertical",
    )
    return ListChanges(stage, new, upserts.height - new, retire.height, listed.height, guarded)
