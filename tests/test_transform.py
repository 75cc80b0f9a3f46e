"""Transform: frames in, frames out; no database, no network."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import polars as pl
import pytest
from etlfixtures import plan_etf

from etl import transform as T
from etl.calendar import is_trading_day, trading_days_between
from etl.errors import ConfigError
from etl.plan import PriceOptions, build_plan
from etl.schema import DAILY_SCHEMA, LIST_SCHEMA, PLAN_SCHEMA, RAW_SCHEMA, TYPED_SCHEMA


def raw(
    exchange: str,
    rows: list,
    ticker: str | None = "510050",
    endpoint: str = "daily",
    error: str | None = None,
) -> pl.DataFrame:
    body = json.dumps({"msg": "ok", "code": 200, "data": rows}, ensure_ascii=False)
    return pl.DataFrame(
        [
            {
                "endpoint": endpoint,
                "exchange": exchange,
                "ticker": ticker,
                "params": "{}",
                "fetched_at": datetime(2024, 1, 1),
                "attempts": 1,
                "http_status": 200,
                "rows": len(rows),
                "error": error,
                "body": body,
            }
        ],
        schema=RAW_SCHEMA,
    )


def plan(*symbols: tuple[str, str | None, str | None, bool]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "symbol": s,
                "stock_name": "ETF " + s,
                "prev_date": datetime.fromisoformat(d) if d else None,
                "prev_close": c,
                "by_day": by_day,
            }
            for s, d, c, by_day in symbols
        ],
        schema={**PLAN_SCHEMA, "prev_close": pl.String},
    ).cast(PLAN_SCHEMA)


def day(
    d: str,
    close: object,
    open_: object = None,
    high: object = None,
    low: object = None,
    volume: object = 100,
    ticker: str = "510050",
) -> dict:
    row = {
        "ticker": ticker,
        "date": d,
        "open": open_ if open_ is not None else close,
        "high": high if high is not None else close,
        "low": low if low is not None else close,
        "close": close,
        "volume": volume,
    }
    return row


PLAN = plan(("SH.510050", "2023-12-29", "2.3", False))
END = date(2024, 12, 31)


def test_types_match_the_table_exactly():
    result = T.daily_rows(raw("XSHG", [day("2024-01-02", 2.345)]), PLAN, END)
    assert result.rows.schema == pl.Schema(TYPED_SCHEMA)
    assert list(TYPED_SCHEMA)[: len(DAILY_SCHEMA)] == list(DAILY_SCHEMA)
    assert result.rows["action_ratio"].to_list() == [None]  # no jump from 2.3
    row = result.rows.row(0, named=True)
    assert row["trade_date"] == datetime(2024, 1, 2)  # naive midnight, not shifted
    assert row["close_price"] == Decimal("2.3450")
    assert row["market_code"] == "SH"
    assert row["stock_name"] == "ETF SH.510050"


def test_decimals_are_taken_from_the_text_not_through_float():
    # 0.1 + 0.2 style values and more digits than NUMERIC(10,4) holds.
    body = (
        '{"code":200,"msg":"ok","data":[{"ticker":"510050","date":"2024-01-02","open":1.00005,'
        '"high":12345.6789,"low":0.0001,"close":2.3449999999,"volume":123456789012}]}'
    )
    frame = raw("XSHG", []).with_columns(pl.lit(body).alias("body"))
    row = T.daily_rows(frame, PLAN, END).rows.row(0, named=True)
    assert row["open_price"] == Decimal("1.0001")  # half away from zero, as PostgreSQL
    assert row["high_price"] == Decimal("12345.6789")
    assert row["close_price"] == Decimal("2.3450")
    assert row["volume"] == 123456789012


@pytest.mark.parametrize("arrow", [True, False])
def test_a_mantissa_before_an_exponent_is_not_cut_at_ten_decimals(arrow):
    """1.23456789012345e14 is the whole number 123456789012345: its mantissa's digits
    past the tenth are not decimals of the value (cutting them stored 123456789010000)."""
    body = (
        '{"code":200,"msg":"ok","data":[{"ticker":"510050","date":"2024-01-02","open":1.5e0,'
        '"high":2.00000000000001e0,"low":1.2e0,"close":1.23456789012345e0,'
        '"volume":1.23456789012345e14}]}'
    )
    frame = raw("XSHG", []).with_columns(pl.lit(body).alias("body"))
    result = T.daily_rows(frame, PLAN, END, arrow=arrow)
    assert result.rejects.is_empty()
    row = result.rows.row(0, named=True)
    assert row["volume"] == 123456789012345
    assert row["close_price"] == Decimal("1.2346")
    assert row["high_price"] == Decimal("2.0000")


def test_turnover_and_changes_round_half_away_from_zero():
    rows = [day("2024-01-02", "2.345", volume=1), day("2024-01-03", "2.33", volume=1)]
    out = T.daily_rows(raw("XSHG", rows), PLAN, END).rows
    assert out["turnover"].to_list() == [Decimal("2.35"), Decimal("2.33")]
    # First row against the stored close 2.3: +0.045, +1.9565%; then -0.015 / 2.345.
    assert out["price_change"].to_list() == [Decimal("0.0450"), Decimal("-0.0150")]
    assert out["price_change_pct"].to_list() == [Decimal("1.9565"), Decimal("-0.6397")]


def test_first_row_without_stored_history_has_no_change():
    p = plan(("SH.510050", None, None, False))
    out = T.daily_rows(raw("XSHG", [day("2024-01-02", 2.0), day("2024-01-03", 2.2)]), p, END).rows
    assert out["price_change"].to_list() == [None, Decimal("0.2000")]
    assert out["price_change_pct"].to_list() == [None, Decimal("10.0000")]


def test_an_ex_date_is_detected_and_its_change_refers_to_the_adjusted_close():
    p = plan(("SH.510050", None, None, False))
    rows = [
        day("2024-01-02", "2.345"),
        day("2024-01-03", "1.180", open_="1.170", high="1.19", low="1.16"),  # 2-for-1 split
        day("2024-01-04", "1.190"),
        day("2024-01-05", "0.3120", open_="0.3117", high="0.313", low="0.311"),  # 1:3.8165
        day("2024-01-08", "0.3430"),  # +9.9%: a limit move of a 10% ETF, no action
    ]
    out = T.daily_rows(raw("XSHG", rows), p, END).rows
    assert out["action_ratio"].to_list() == [None, Decimal(2), None, Decimal("3.8178"), None]
    # 2.345 / 2 = 1.1725 -> 1.1725; 1.19 / 3.8178 = 0.311698... -> 0.3117.
    assert out["price_change"].to_list() == [
        None,
        Decimal("0.0075"),
        Decimal("0.0100"),
        Decimal("0.0003"),
        Decimal("0.0310"),
    ]
    assert out["price_change_pct"][1] == Decimal("0.6397")  # 0.0075 * 100 / 1.1725


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (day("2024-01-02", "abc"), "close is not a number"),
        (day("2024-01-02", None), "close missing"),
        (
            {"ticker": "510050", "date": "2024-01-02", "open": 1, "high": 1, "low": 1, "volume": 1},
            "close missing",
        ),
        (day("2024-01-02", 1.0, volume=-5), "volume is not a non-negative whole number"),
        (day("2024-01-02", 1.0, volume=1.5), "volume is not a non-negative whole number"),
        (
            {"ticker": "510050", "date": "2024-01-02", "open": 1, "high": 1, "low": 1, "close": 1},
            "volume missing",
        ),
        (day("2024-01-02", 1.0, high=0.9, low=1.1), "high below low"),
        (day("2024-01-02", 1.0, open_=2.0, high=1.5, low=0.5), "open outside low..high"),
        (day("2024-01-02", 2.0, open_=1.0, high=1.5, low=0.5), "close outside low..high"),
        (day("2024-01-02", 0), "close is not above 0"),
        (day("2025-01-02", 1.0), "date after the run's end date"),
        (day("2024-13-02", 1.0), "date is not a yyyy-mm-dd date"),
        (day("2024-01-02", 1.0, ticker="510051"), "ticker does not match"),
        (day("2024-01-02", 99999999), "close is not a number that fits"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason_and_good_ones_kept(row, reason):
    result = T.daily_rows(raw("XSHG", [row, day("2024-01-03", 1.0)]), PLAN, END)
    assert result.rows["trade_date"].to_list() == [datetime(2024, 1, 3)]
    assert result.rejects.height == 1
    assert result.rejects["reason"][0].startswith(reason)
    assert json.loads(result.rejects["row"][0])["date"] == row["date"]


def test_duplicates_identical_count_once_conflicting_are_both_rejected():
    rows = [
        day("2024-01-02", 1.0),
        day("2024-01-02", 1.0),
        day("2024-01-03", 1.0),
        day("2024-01-03", 1.1),
    ]
    result = T.daily_rows(raw("XSHG", rows), PLAN, END)
    assert result.rows["trade_date"].to_list() == [datetime(2024, 1, 2)]
    assert (
        result.rejects["reason"].to_list()
        == ["conflicting rows for the same key in one answer"] * 2
    )


def test_failed_answers_and_unplanned_symbols_are_left_out():
    frames = pl.concat(
        [
            raw("XSHG", [day("2024-01-02", 1.0)], error="HTTP 503 (after 5 attempts)"),
            raw("XSHG", [day("2024-01-02", 1.0, ticker="510300")], ticker="510300"),
        ]
    )
    result = T.daily_rows(frames, PLAN, END)
    assert result.rows.is_empty()
    assert result.rejects["reason"].to_list() == ["symbol is not an ETF this run syncs"]


def test_latest_answers_only_serve_by_day_symbols_after_their_watermark():
    p = plan(("SH.510050", "2024-01-02", "1.0", True), ("SH.510300", None, None, False))
    rows = [
        day("2024-01-02", 1.0),
        day("2024-01-03", 1.1),
        day("2024-01-03", 5.0, ticker="510300"),
        day("2024-01-03", 5.0, ticker="510999"),
    ]
    out = T.daily_rows(raw("XSHG", rows, ticker=None, endpoint="latest"), p, END)
    assert out.rows.select("symbol", "trade_date").rows() == [("SH.510050", datetime(2024, 1, 3))]
    assert out.rows["price_change"].to_list() == [Decimal("0.1000")]
    assert out.rejects.is_empty()
    # Asked with an earlier --end-date, the undated answer's later day is simply not wanted.
    earlier = T.daily_rows(raw("XSHG", rows, ticker=None, endpoint="latest"), p, date(2024, 1, 2))
    assert earlier.rows.is_empty() and earlier.rejects.is_empty()


def test_anti_join_keeps_only_new_keys():
    result = T.daily_rows(raw("XSHG", [day("2024-01-02", 1.0), day("2024-01-03", 1.0)]), PLAN, END)
    existing = pl.DataFrame({"symbol": ["SH.510050"], "day": [date(2024, 1, 2)]})
    assert T.anti_join(result.rows, existing)["trade_date"].to_list() == [datetime(2024, 1, 3)]


def list_raw(exchange: str, rows: list) -> pl.DataFrame:
    return raw(exchange, rows, ticker=None, endpoint="list")


def test_list_rows_map_and_reject():
    rows = [
        {"ticker": "510050", "name": "上证50ETF", "is_active": 1, "exchange_code": "XSHG"},
        {"ticker": "510300", "name": "沪深300ETF", "is_active": 0, "exchange_code": "XSHG"},
        {"ticker": "51005", "name": "short", "is_active": 1, "exchange_code": "XSHG"},
        {"ticker": "510500", "name": "  ", "is_active": 1, "exchange_code": "XSHG"},
        {"ticker": "159915", "name": "wrong exchange", "is_active": 1, "exchange_code": "XSHE"},
    ]
    result = T.list_rows(list_raw("XSHG", rows))
    assert result.rows.to_dicts() == [
        {
            "symbol": "SH.510050",
            "stock_code": "510050",
            "market_code": "SH",
            "stock_name": "上证50ETF",
            "stock_type": "ETF",
            "is_active": "Y",
            "is_etf": "Y",
        },
        {
            "symbol": "SH.510300",
            "stock_code": "510300",
            "market_code": "SH",
            "stock_name": "沪深300ETF",
            "stock_type": "ETF",
            "is_active": "N",
            "is_etf": "Y",
        },
    ]
    assert result.rejects["reason"].to_list() == [
        "ticker is not six digits",
        "name empty",
        "exchange_code does not match the exchange requested",
    ]


def stored(*rows: tuple[str, str, str, str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema=["symbol", "stock_name", "stock_type", "is_active", "is_etf"], orient="row"
    )


def listed(*symbols: str, name: str = "n") -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "symbol": s,
                "stock_code": s[3:],
                "market_code": s[:2],
                "stock_name": name,
                "stock_type": "ETF",
                "is_active": "Y",
                "is_etf": "Y",
            }
            for s in symbols
        ]
    ).cast(LIST_SCHEMA)


def test_list_changes_new_changed_unchanged_vanished_and_stock_turned_etf():
    db = stored(
        ("SH.510050", "n", "ETF", "Y", "Y"),
        ("SH.510300", "old", "ETF", "Y", "Y"),
        ("SH.510500", "n", "STOCK", "Y", "N"),
        ("SH.510880", "n", "ETF", "Y", "Y"),
        ("SH.600000", "bank", "STOCK", "Y", "N"),
        ("SZ.159915", "n", "ETF", "Y", "Y"),
    )
    new = listed("SH.510050", "SH.510300", "SH.510500", "SH.512000")
    changes = T.list_changes(new, db, "SH", new["stock_code"])
    actions = dict(changes.stage.select("symbol", "action").rows())
    assert actions == {
        "SH.510300": "upsert",
        "SH.510500": "upsert",
        "SH.512000": "upsert",
        "SH.510880": "deactivate",
    }
    assert (changes.new, changes.updated, changes.deactivated, changes.guarded) == (1, 2, 1, False)


def test_a_truncated_list_retires_nobody():
    db = stored(*[(f"SH.5100{i:02d}", "n", "ETF", "Y", "Y") for i in range(20)])
    new = listed(*[f"SH.5100{i:02d}" for i in range(17)])  # 85% of the active ones
    changes = T.list_changes(new, db, "SH", new["stock_code"])
    assert changes.guarded and changes.deactivated == 0 and changes.stage.is_empty()


def test_plan_incremental_by_day_and_up_to_date():
    context = pl.DataFrame(
        [
            {
                "symbol": "SH.510050",
                "stock_name": "a",
                "market_code": "SH",
                "stock_code": "510050",
                "is_active": "Y",
                "prev_date": datetime(2024, 1, 4),
                "prev_close": Decimal("1"),
            },
            {
                "symbol": "SH.510300",
                "stock_name": "b",
                "market_code": "SH",
                "stock_code": "510300",
                "is_active": "Y",
                "prev_date": datetime(2024, 1, 5),
                "prev_close": Decimal("1"),
            },
            {
                "symbol": "SH.510500",
                "stock_name": "c",
                "market_code": "SH",
                "stock_code": "510500",
                "is_active": "Y",
                "prev_date": None,
                "prev_close": None,
            },
            {
                "symbol": "SH.510880",
                "stock_name": "d",
                "market_code": "SH",
                "stock_code": "510880",
                "is_active": "Y",
                "prev_date": datetime(2023, 1, 4),
                "prev_close": Decimal("1"),
            },
            {
                "symbol": "SH.512000",
                "stock_name": "e",
                "market_code": "SH",
                "stock_code": "512000",
                "is_active": "N",
                "prev_date": None,
                "prev_close": None,
            },
        ]
    )
    opts = PriceOptions(exchanges=("XSHG",), end=date(2024, 1, 8))
    p = build_plan(context, opts, {"XSHG": date(2024, 1, 5)}, max_days_behind=5)
    assert p.up_to_date == 1
    assert p.days == {"XSHG": [date(2024, 1, 5)]}
    daily = sorted((r.ticker, r.start) for r in p.requests if r.endpoint == "daily")
    # The inactive ETF has no history yet: fetched whole, per ticker.
    assert daily == [("510500", None), ("510880", date(2023, 1, 5)), ("512000", None)]
    assert [r for r in p.requests if r.endpoint == "latest"] == []  # the undated answer is reused
    assert dict(p.symbols.select("symbol", "by_day").rows()) == {
        "SH.510050": True,
        "SH.510300": False,
        "SH.510500": False,
        "SH.510880": False,
        "SH.512000": False,
    }
    assert p.counts() == {"inactive_synced": 1, "inactive_complete": 0}

    # Once its history is complete it is left out, unless named; a --start-date
    # after a watermark never skips the days between, nor turns off the by-day path.
    done = context.with_columns(history_complete=pl.col("is_active") == "N")
    later = PriceOptions(exchanges=("XSHG",), start=date(2024, 1, 8), end=date(2024, 1, 8))
    p = build_plan(done, later, {"XSHG": date(2024, 1, 5)}, max_days_behind=5)
    daily = sorted((r.ticker, r.start) for r in p.requests if r.endpoint == "daily")
    assert daily == [("510500", date(2024, 1, 8)), ("510880", date(2023, 1, 5))]
    assert p.symbols.filter(pl.col("by_day"))["symbol"].to_list() == ["SH.510050"]
    assert p.counts() == {"inactive_synced": 0, "inactive_complete": 1}
    named = PriceOptions(exchanges=("XSHG",), symbols=("SH.512000",), end=date(2024, 1, 8))
    assert [r.ticker for r in build_plan(done, named).requests] == ["512000"]
    with pytest.raises(ConfigError, match="run 'etl sync-list' first"):
        build_plan(done.filter(pl.col("market_code") == "SZ"), later)


def test_trading_days_skip_weekends_and_official_holidays_but_not_unknown_years():
    assert trading_days_between(date(2024, 1, 5), date(2024, 1, 9)) == [
        date(2024, 1, 8),
        date(2024, 1, 9),
    ]
    # National Day week and the make-up working Sunday before it: no session.
    assert trading_days_between(date(2024, 9, 27), date(2024, 10, 9)) == [
        date(2024, 9, 30),
        date(2024, 10, 8),
        date(2024, 10, 9),
    ]
    assert is_trading_day(date(2024, 10, 1)) is False and is_trading_day(date(2024, 10, 8))
    # Beyond the official tables a weekday is unknown, never skipped.
    far = date(2100, 1, 1)  # a Friday
    assert is_trading_day(far) is None and trading_days_between(far, far.replace(day=4)) == [
        date(2100, 1, 4)
    ]


def test_plan_serves_the_pack_by_day_and_sends_laggards_per_ticker():
    pack = [plan_etf(f"1599{i:02d}", date(2024, 1, 8)) for i in range(5)]
    context = pl.DataFrame(
        [*pack, plan_etf("159950", date(2024, 1, 4)), plan_etf("159960", date(2024, 1, 9))]
    )
    opts = PriceOptions(exchanges=("XSHE",), end=date(2024, 1, 31))
    p = build_plan(context, opts, {"XSHE": date(2024, 1, 10)})
    # A suspended ETF behind the pack costs its own request, not re-asked days.
    assert [(r.endpoint, r.ticker, r.start) for r in p.requests if r.endpoint == "daily"] == [
        ("daily", "159950", date(2024, 1, 5))
    ]
    assert p.days == {"XSHE": [date(2024, 1, 9), date(2024, 1, 10)]}
    assert [r.day for r in p.requests if r.endpoint == "latest"] == [date(2024, 1, 9)]
    assert p.symbols.filter(pl.col("by_day")).height == 6  # the pack and the one ahead of it


def test_a_part_is_normalized_in_slices_with_the_day_answers_together():
    from etl.normalize import slices

    tickers = [f"51005{i}" for i in range(6)]
    answers = [raw("XSHG", [day("2024-01-02", 1.0, ticker=t)], ticker=t) for t in tickers]
    days = [
        raw("XSHG", [day(d, 1.0, ticker=t) for t in tickers], ticker=None, endpoint="latest")
        for d in ("2024-01-03", "2024-01-04")
    ]
    frame = pl.concat([answers[0], days[0], *answers[1:], days[1]])
    size = answers[0]["body"].str.len_bytes()[0]
    cut = slices(frame, max_bytes=2 * size)
    assert [s["endpoint"].to_list() for s in cut] == [["latest", "latest"]] + [["daily"] * 2] * 3
    assert pl.concat(cut).sort("body").equals(frame.sort("body"))  # nothing lost or doubled
    assert [s.height for s in slices(frame, max_bytes=1)] == [2, 1, 1, 1, 1, 1, 1]


@pytest.mark.parametrize(
    "literal",
    ["0.1", "2.345", "1.00004999999", "123456789.1234", "12345.6789012345", "9007199254740993",
     "2.34499999999999997", "0.30000000000000004", "1e-5", "100"],
)  # fmt: skip
def test_numbers_come_out_of_the_json_as_the_value_they_wrote(literal):
    """Short numbers skip the quoting pass (f64 keeps 15 digits exactly); long ones take it.
    Either way the text that comes out stands for exactly the number sent."""
    from decimal import Decimal

    body = '{"msg": "ok", "code": 200, "data": [{"ticker": "510050", "close": ' + literal + "}]}"
    frame = raw("XSHG", []).with_columns(pl.lit(body).alias("body"))
    text = T.explode_bodies(frame, T.DAILY_FIELDS)["close"][0]
    assert Decimal(text) == Decimal(literal)
