"""Share splits, merges and conversions (份额拆分 / 合并 / 折算): detected by a sync,
recorded in etl_corporate_actions, the change on the ex-date against the adjusted
previous close, the backward-adjusted view, and the official ratio recorded by
`etl record-action`. Real PostgreSQL, the test API over real HTTP."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest
from crashhelper import checksums
from fakeapi import STANDARD_ACTIONS, is_trading_day

from etl.corporate import estimate_rows
from etl.db import Database
from etl.load import Loader
from etl.schema import DAILY_SCHEMA, PRICE

FOUR = Decimal("0.0001")
SPLIT, MERGE, CONVERSION = (a.symbol for a in STANDARD_ACTIONS)


def actions(db: Database) -> dict[str, tuple]:
    """symbol -> (ex_date, ratio, source, detected_ratio, note) of etl_corporate_actions,
    the ratios as Decimals (compared by value: 2 == 2.0000)."""
    rows = db.fetch(
        "SELECT symbol, ex_date::text, ratio::text, source, detected_ratio::text, note "
        "FROM etl_corporate_actions ORDER BY symbol, ex_date"
    )
    out: dict[str, tuple] = {}
    for symbol, ex, ratio, source, detected, note in rows:
        assert symbol not in out, f"{symbol}: more than one action"
        out[symbol] = (ex, Decimal(ratio), source, detected and Decimal(detected), note)
    return out


def day_rows(db: Database, symbol: str) -> list[tuple[str, Decimal, Decimal, Decimal, Decimal]]:
    """(trading day, open, close, price_change, price_change_pct) of a symbol, ascending."""
    rows = db.fetch(
        "SELECT trade_date::date::text, open_price::text, close_price::text, "
        "price_change::text, price_change_pct::text FROM stock_daily_data "
        "WHERE symbol = $1 ORDER BY trade_date",
        (symbol,),
    )
    return [(d, *(None if v is None else Decimal(v) for v in rest)) for d, *rest in rows]


def adjusted_change(prev: Decimal, close: Decimal, ratio: Decimal) -> tuple[Decimal, Decimal]:
    """The change against round(prev / ratio, 4), halves away from zero, as documented."""
    base = (prev / ratio).quantize(FOUR, rounding=ROUND_HALF_UP)
    change = close - base
    return change, (change * 100 / base).quantize(FOUR, rounding=ROUND_HALF_UP)


def change_on(db: Database, symbol: str, day: str) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(previous close, close, price_change, price_change_pct) of the row on ``day``."""
    rows = day_rows(db, symbol)
    i = [r[0] for r in rows].index(day)
    return rows[i - 1][2], rows[i][2], rows[i][3], rows[i][4]


def max_adjusted_return(db: Database) -> float:
    """The largest daily close-to-close move of adj_close over every ETF, as a share."""
    (worst,) = db.fetch(
        "SELECT max(abs(adj_close / prev - 1))::float8 FROM ("
        "  SELECT adj_close, lag(adj_close) OVER (PARTITION BY symbol ORDER BY trade_day) AS prev"
        "  FROM etf_daily_adjusted) AS r WHERE prev IS NOT NULL"
    )[0]
    return worst


def max_raw_return(db: Database) -> float:
    (worst,) = db.fetch(
        "SELECT max(abs(close_price / prev - 1))::float8 FROM ("
        "  SELECT close_price, lag(close_price) OVER (PARTITION BY symbol ORDER BY trade_date)"
        "  AS prev FROM stock_daily_data) AS r WHERE prev IS NOT NULL"
    )[0]
    return worst


def test_a_sync_records_exactly_the_three_actions_and_adjusts_the_ex_date_change(etl, db):
    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    found = actions(db)
    assert set(found) == {SPLIT, MERGE, CONVERSION}
    assert found[SPLIT] == ("2024-01-15", 2, "detected", 2, None)
    assert found[MERGE] == ("2024-02-26", Decimal("0.1"), "detected", Decimal("0.1"), None)
    ex, ratio, source, detected, note = found[CONVERSION]
    assert (ex, source, detected, note) == ("2024-03-11", "detected", ratio, None)
    assert ratio == pytest.approx(Decimal("3.8165"), rel=Decimal("0.01"))

    for symbol, (ex, ratio, *_) in found.items():
        prev, close, change, pct = change_on(db, symbol, ex)
        assert (change, pct) == adjusted_change(prev, close, ratio)
        assert abs(pct) < 2  # against the unadjusted close it would be -50%, +900%, -74%
    # Every other row: the change against the previous close as it is.
    for symbol in (SPLIT, MERGE, CONVERSION):
        rows = day_rows(db, symbol)
        for before, row in zip(rows, rows[1:], strict=False):
            if row[0] != found[symbol][0]:
                assert row[3] == row[2] - before[2], (symbol, row[0])

    # The raw closes jump; the backward-adjusted ones never move beyond the 20% limit.
    assert max_raw_return(db) > 0.7
    assert max_adjusted_return(db) < 0.2
    factors = db.fetch(
        "SELECT trade_day::text, adj_factor::text, adj_close::text, close_price::text "
        "FROM etf_daily_adjusted WHERE symbol = $1 AND trade_day IN ('2024-02-23', '2024-02-26') "
        "ORDER BY trade_day",
        (MERGE,),
    )
    (d0, f0, adj0, close0), (d1, f1, adj1, close1) = factors
    assert (Decimal(f0), Decimal(adj0)) == (1, Decimal(close0))
    assert Decimal(f1) == Decimal("0.1") and Decimal(adj1) == Decimal(close1) * Decimal("0.1")

    # A rerun changes nothing: no row, no action, no timestamp.
    tables = checksums(db)
    recorded = db.fetch("SELECT symbol, recorded_at::text FROM etl_corporate_actions ORDER BY 1")
    again = etl("sync")
    assert again.exit_code == 0 and again.summary["rows_inserted"] == 0
    assert checksums(db) == tables
    assert (
        db.fetch("SELECT symbol, recorded_at::text FROM etl_corporate_actions ORDER BY 1")
        == recorded
    )


def _next_trading_day(day: date) -> date:
    day += timedelta(days=1)
    while not is_trading_day(day):
        day += timedelta(days=1)
    return day


def test_an_action_in_a_nightly_run_is_detected(etl, db, api, universe):
    assert etl("sync").exit_code == 0
    nxt = _next_trading_day(universe.end)
    universe.add_action("XSHG", "510500", nxt, "0.25")  # a 4-to-1 merge tomorrow
    universe.advance(1)
    api.reset_log()
    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    assert api.request_count("daily") == 0  # the per-day answers, as any evening
    found = actions(db)
    assert found["SH.510500"] == (
        nxt.isoformat(),
        Decimal("0.25"),
        "detected",
        Decimal("0.25"),
        None,
    )
    prev, close, change, pct = change_on(db, "SH.510500", nxt.isoformat())
    assert close > 3 * prev
    assert (change, pct) == adjusted_change(prev, close, Decimal("0.25"))
    assert max_adjusted_return(db) < 0.2


def test_recording_the_official_ratio_replaces_the_estimate_and_recomputes(etl, db):
    assert etl("sync").exit_code == 0
    ex = "2024-03-11"
    estimate = actions(db)[CONVERSION][1]
    assert estimate != Decimal("3.8165")
    prev, close, old_change, old_pct = change_on(db, CONVERSION, ex)
    view_before = db.fetch(
        "SELECT count(*) FROM etf_daily_adjusted WHERE symbol = $1 AND adj_factor = $2::numeric",
        (CONVERSION, str(estimate)),
    )[0][0]
    assert view_before > 5

    out = etl("record-action", CONVERSION, ex, "3.8165", "--note", "announcement 2024-03-05")
    assert out.exit_code == 0, out.stderr
    result = out.summary
    official = adjusted_change(prev, close, Decimal("3.8165"))
    assert official != (old_change, old_pct)  # the test can tell the two apart
    assert result["status"] == "ok" and result["source"] == "official"
    assert Decimal(str(result["ratio"])) == Decimal("3.8165")
    assert result["previous"] == {"ratio": float(estimate), "source": "detected"}
    assert Decimal(str(result["price_change"]["before"])) == old_change
    assert Decimal(str(result["price_change"]["after"])) == official[0]
    assert Decimal(str(result["price_change_pct"]["after"])) == official[1]
    assert actions(db)[CONVERSION] == (
        ex,
        Decimal("3.8165"),
        "official",
        estimate,
        "announcement 2024-03-05",
    )
    assert change_on(db, CONVERSION, ex)[2:] == official
    # The view follows: every row from the ex-date on carries the official factor.
    factors = db.fetch(
        "SELECT DISTINCT adj_factor::text FROM etf_daily_adjusted "
        "WHERE symbol = $1 AND trade_day >= $2::date",
        (CONVERSION, ex),
    )
    assert factors == [("3.8165",)]
    assert max_adjusted_return(db) < 0.2

    # A refetch with --overwrite, twice, leaves the official values alone.
    tables = checksums(db)
    for _ in range(2):
        over = etl("sync-prices", "--full", "--overwrite", "--symbol", CONVERSION)
        assert over.exit_code == 0, over.stderr
        assert over.summary["rows_updated"] == 0
        assert change_on(db, CONVERSION, ex)[2:] == official
        assert actions(db)[CONVERSION][:3] == (ex, Decimal("3.8165"), "official")
    assert checksums(db) == tables

    # The ex-date row lost and fetched again: loaded with the estimate, corrected to
    # the official ratio in the same transaction.
    db.execute(
        "DELETE FROM stock_daily_data WHERE symbol = $1 AND trade_date = $2::timestamp",
        (CONVERSION, ex),
    )
    refill = etl("sync-prices", "--full", "--symbol", CONVERSION)
    assert refill.exit_code == 0 and refill.summary["rows_inserted"] == 1
    assert change_on(db, CONVERSION, ex)[2:] == official
    assert checksums(db) == tables

    # Text output says what changed.
    text = etl("record-action", CONVERSION, ex, "3.8165", as_json=False)
    assert text.exit_code == 0, text.stderr
    assert "ratio 3.8165 (official), was 3.8165 (official)" in text.stdout
    assert "price_change: " in text.stdout and "(unchanged)" in text.stdout


def test_an_official_ratio_where_none_was_detected_is_inserted(etl, db):
    assert etl("sync").exit_code == 0
    ex = "2024-02-01"
    prev, close, *_ = change_on(db, "SH.510500", ex)
    out = etl("record-action", "SH.510500", ex, "2")
    assert out.exit_code == 0, out.stderr
    assert out.summary["previous"] is None and out.summary["detected_ratio"] is None
    assert actions(db)["SH.510500"] == (ex, 2, "official", None, None)
    assert change_on(db, "SH.510500", ex)[2:] == adjusted_change(prev, close, Decimal(2))


def test_record_action_refuses_bad_input_and_writes_nothing(etl, db):
    assert etl("sync").exit_code == 0
    db.execute(
        "INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, stock_type, "
        "is_active, is_etf, created_at, updated_at) VALUES ('SH.600000', '浦发银行', '600000', "
        "'SH', 'stock', 'Y', 'N', now(), now())"
    )
    tables = checksums(db)
    before = actions(db)
    cases = [
        (["SH.519999", "2024-03-11", "2"], 1, "unknown symbol SH.519999"),
        (["SH.600000", "2024-03-11", "2"], 1, "SH.600000 is not an ETF"),
        ([CONVERSION, "2024-03-10", "3.8165"], 1, "no stored row on 2024-03-10"),
        ([CONVERSION, "2019-03-11", "3.8165"], 1, "no stored row on 2019-03-11"),
        (["510300", "2024-03-11", "2"], 2, "invalid symbol"),
        ([CONVERSION, "11.03.2024", "2"], 2, "EX_DATE"),
    ]
    for args, code, message in cases:
        out = etl("record-action", *args)
        assert out.exit_code == code, (args, out.stdout, out.stderr)
        assert message in out.summary["error"], (args, out.summary)
        assert out.summary["status"] == ("failed" if code == 1 else "usage_error")
    rule = (
        "expected an exact decimal from 0.001 to 1000 with at most 8 decimal places "
        "(2 for a 2-for-1 split, 0.1 for a 10-to-1 merge)"
    )
    ratios = [
        ("0", "ratio 0 is out of range"),
        ("-2", "ratio -2 is out of range"),
        ("99999999999999", "ratio 99999999999999 is out of range"),
        ("1000.0001", "ratio 1000.0001 is out of range"),
        ("0.00000000001", "ratio 0.00000000001 is out of range"),
        ("0.0009", "ratio 0.0009 is out of range"),
        ("1e400", "invalid ratio '1e400'"),
        ("2E0", "invalid ratio '2E0'"),
        ("nan", "invalid ratio 'nan'"),
        ("inf", "invalid ratio 'inf'"),
        ("-Infinity", "invalid ratio '-Infinity'"),
        ("two", "invalid ratio 'two'"),
        ("3,8165", "invalid ratio '3,8165'"),
        ("3.816500001", "ratio 3.816500001 has too many decimal places"),
    ]
    for ratio, reason in ratios:
        out = etl("record-action", "--", CONVERSION, "2024-03-11", ratio)
        assert out.exit_code == 2, (ratio, out.stdout, out.stderr)
        assert out.summary["status"] == "usage_error"
        assert out.summary["error"] == f"Invalid value for 'RATIO': {reason}: {rule}"
        human = etl("record-action", "--", CONVERSION, "2024-03-11", ratio, as_json=False)
        assert human.exit_code == 2 and human.stderr.endswith(
            f"Error: Invalid value for 'RATIO': {reason}: {rule}\n"
        )
        assert "Traceback" not in human.stderr and "SQL" not in human.stderr
    assert checksums(db) == tables and actions(db) == before


@pytest.mark.parametrize("ratio", ["0.001", "1000", "3.81652891"])
def test_record_action_takes_the_ends_of_its_range_exactly(etl, db, ratio):
    assert etl("sync").exit_code == 0
    out = etl("record-action", CONVERSION, "2024-03-11", ratio)
    assert out.exit_code == 0, out.stdout + out.stderr
    assert actions(db)[CONVERSION][1] == Decimal(ratio)


def test_a_filled_gap_before_an_ex_date_keeps_the_adjusted_change(etl, db):
    """daily_rechain recomputes the row after a filled gap: on an ex-date, against
    the adjusted previous close."""
    assert etl("sync").exit_code == 0
    ex = "2024-01-15"
    expected = change_on(db, SPLIT, ex)
    db.execute(
        "DELETE FROM stock_daily_data WHERE symbol = $1 AND trade_date IN "
        "('2024-01-11'::timestamp, '2024-01-12'::timestamp)",
        (SPLIT,),
    )
    out = etl("sync-prices", "--full", "--symbol", SPLIT)
    assert out.exit_code == 0 and out.summary["rows_inserted"] == 2
    assert change_on(db, SPLIT, ex) == expected


def test_a_replay_of_the_snapshot_gives_the_same_tables(etl, db, pg_server, data_dir):
    out = etl("sync", env={"ETL_BATCH_ROWS": "400"})  # several parts
    assert out.exit_code == 0, out.stderr
    target = pg_server.create_database()
    try:
        replayed = etl("replay", out.summary["snapshot"], env={"DATABASE_URL": target.url})
        assert replayed.exit_code == 0, replayed.stderr
        assert checksums(target) == checksums(db)
        assert actions(target) == actions(db) and len(actions(db)) == 3
    finally:
        pg_server.drop_database(target)


def test_a_typed_part_written_before_action_ratio_still_loads(migrated_db, tmp_path: Path):
    migrated_db.execute(
        "INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, stock_type, "
        "is_active, is_etf, created_at, updated_at) VALUES ('SH.510050', '50ETF', '510050', "
        "'SH', 'ETF', 'Y', 'Y', now(), now())"
    )
    price = Decimal("2.0000")
    old = pl.DataFrame(
        [
            {
                "trade_date": datetime(2024, 1, d),
                "symbol": "SH.510050",
                "stock_name": "50ETF",
                "close_price": price,
                "open_price": price,
                "high_price": price,
                "low_price": price,
                "volume": 100,
                "turnover": Decimal("200.00"),
                "price_change": None,
                "price_change_pct": None,
                "premium_rate": None,
                "market_code": "SH",
            }
            for d in (2, 3)
        ],
        schema=DAILY_SCHEMA,
    )
    part = tmp_path / "part-00000.parquet"
    old.write_parquet(part)
    loader = Loader(migrated_db)
    try:
        result = loader.load_part(part)
    finally:
        loader.close()
    assert result.inserted == 2
    assert migrated_db.fetch("SELECT count(*) FROM stock_daily_data")[0][0] == 2
    assert migrated_db.fetch("SELECT count(*) FROM etl_corporate_actions")[0][0] == 0


# -- what real ETF histories look like ---------------------------------------------
# The rule itself, on frames (etl/corporate.py): (previous trading day, day, previous
# close, open, high, low, name) -> the ratio recorded, or None.

NARROW, WIDE = "沪深300ETF华泰柏瑞", "创业板ETF易方达"  # daily limits of 10% and 20%


def _estimate(prev_day: date, day: date, prev: str, o: str, h: str, lo: str, name: str):
    frame = pl.DataFrame(
        {
            "prev_day": [prev_day],
            "day": [day],
            "prev_close": [Decimal(prev)],
            "open_price": [Decimal(o)],
            "high_price": [Decimal(h)],
            "low_price": [Decimal(lo)],
            "stock_name": [name],
        },
        schema_overrides={
            c: PRICE for c in ("prev_close", "open_price", "high_price", "low_price")
        },
    )
    value = estimate_rows(frame)[0]
    return None if value is None else value.normalize()


FRI, MON, THU, WED = date(2024, 3, 1), date(2024, 3, 4), date(2024, 2, 29), date(2024, 2, 28)
TUE = date(2024, 3, 5)


@pytest.mark.parametrize(
    ("case", "prev_day", "day", "bar", "name", "ratio"),
    [
        # 1:2 over a weekend, the first trade 1% above the reference price: snapped.
        ("split", FRI, MON, ("2.000", "1.010", "1.030", "1.000"), NARROW, Decimal(2)),
        # A 2-for-1 whose first trade opened 4% below the reference: kept unsnapped
        # (and listed by etl check as needs_official_ratio).
        ("split opening off", FRI, MON, ("2.000", "0.960", "0.990", "0.950"), NARROW,
         Decimal("2.0833")),
        # A 1:1.1454 split on a 10%-limit ETF, opening at 0.8585 of the previous close.
        ("small split", FRI, MON, ("2.000", "1.717", "1.760", "1.710"), NARROW,
         Decimal("1.1648")),
        # The same bar on a 20%-limit ETF is a day's trading.
        ("small split, wide limit", FRI, MON, ("2.000", "1.717", "1.760", "1.710"), WIDE, None),
        # A ChiNext ETF's +19.9% and -19.9% days, opening 16.5% off: markets, not splits.
        ("+19.9% day", FRI, MON, ("2.000", "2.330", "2.398", "2.300"), WIDE, None),
        ("-19.9% day", FRI, MON, ("2.398", "2.000", "2.020", "1.921"), WIDE, None),
        # A cash dividend of 0.35 on a 1.35 ETF: the whole bar agrees with 1.35, no round
        # ratio: recorded as its proportional factor, listed as needs_official_ratio.
        ("dividend", FRI, MON, ("1.350", "1.000", "1.020", "0.990"), NARROW, Decimal("1.35")),
        # An open printed 15% off while the day traded at the previous close: the bar
        # does not agree with any one ratio.
        ("bad open print", FRI, MON, ("1.000", "0.850", "1.000", "0.850"), NARROW, None),
        # Two trading days suspended before the ex-date (Thursday to Monday): detected.
        ("after a 2-day suspension", WED, MON, ("2.000", "1.010", "1.030", "1.000"), NARROW,
         Decimal(2)),
        # Three or more trading days without a row: the price may have moved anything.
        ("after a 3-day gap", date(2024, 2, 27), MON, ("2.000", "1.010", "1.030", "1.000"),
         NARROW, None),
        ("resumption weeks later", date(2024, 1, 31), MON, ("2.000", "1.400", "1.450", "1.390"),
         NARROW, None),
    ],
)  # fmt: skip
def test_the_rule_tells_splits_from_market_days_and_dividends(
    case, prev_day, day, bar, name, ratio
):
    assert _estimate(prev_day, day, *bar, name) == ratio, case


# -- the same shapes served by the test API, through a sync and etl check ----------

EX = date(2024, 3, 4)
SHAPES = {
    # symbol: (first close, {day: (open, high, low, close)}, days without a row)
    "SZ.159915": (  # ChiNext ETF (20% limit): +19.9%, then -19.9%
        "2.000",
        {EX: ("2.330", "2.398", "2.300", "2.398"), TUE: ("2.000", "2.020", "1.921", "1.921")},
        (),
    ),
    "SH.517547": ("1.350", {EX: ("1.000", "1.020", "0.990", "1.010")}, ()),  # dividend 0.35
    "SH.517656": ("2.000", {EX: ("1.010", "1.030", "1.000", "1.020")}, (THU, FRI)),  # 1:2
    "SH.560767": ("2.000", {EX: ("0.960", "0.990", "0.950", "0.980")}, ()),  # 1:2, 4% off
    "SH.562943": ("2.000", {EX: ("1.717", "1.760", "1.710", "1.745")}, ()),  # 1:1.1454
    "SZ.159711": (  # resumes after a month's suspension 30% lower
        "2.000",
        {EX: ("1.400", "1.450", "1.390", "1.420")},
        tuple(d for d in (date(2024, 2, 1) + timedelta(days=i) for i in range(30)) if d < EX),
    ),
}


def shaped_rows(universe, symbol: str, first: str, events: dict, missing=()) -> list[dict]:
    """The daily rows of a quiet ETF (open at the last close, a 0.01 range) with
    ``events`` as given and no row on the ``missing`` days."""
    close, rows = Decimal(first), []
    for day in universe.trading_days():
        if day in missing:
            continue
        if day in events:
            o, h, lo, c = (Decimal(v) for v in events[day])
        else:
            o, h, lo, c = close, close + Decimal("0.01"), close - Decimal("0.01"), close
        rows.append(
            {"ticker": symbol[3:], "date": day.isoformat(), "open": o, "high": h, "low": lo,
             "close": c, "volume": 100000}
        )  # fmt: skip
        close = c
    return rows


def shape(universe, symbol: str, first: str, events: dict, missing=()) -> None:
    exchange = "XSHG" if symbol.startswith("SH.") else "XSHE"
    universe.set_rows(exchange, symbol[3:], shaped_rows(universe, symbol, first, events, missing))


def test_real_shapes_record_splits_only_and_check_asks_for_unround_ratios(etl, db, universe):
    for symbol, (first, events, missing) in SHAPES.items():
        shape(universe, symbol, first, events, missing)
    assert etl("sync").exit_code == 0
    found = {s: a for s, a in actions(db).items() if s in SHAPES}
    ex = EX.isoformat()
    assert found == {
        "SH.517547": (ex, Decimal("1.35"), "detected", Decimal("1.35"), None),
        "SH.517656": (ex, 2, "detected", 2, None),
        "SH.560767": (ex, Decimal("2.0833"), "detected", Decimal("2.0833"), None),
        "SH.562943": (ex, Decimal("1.1648"), "detected", Decimal("1.1648"), None),
    }
    # The ex-date change against the previous close in new shares; raw elsewhere.
    assert change_on(db, "SH.517656", ex)[2:] == (Decimal("0.0200"), Decimal("2.0000"))
    assert change_on(db, "SH.517547", ex)[2:] == (Decimal("0.0100"), Decimal("1.0000"))
    assert change_on(db, "SZ.159711", ex)[2:] == (Decimal("-0.5800"), Decimal("-29.0000"))
    assert change_on(db, "SZ.159915", ex)[2:] == (Decimal("0.3980"), Decimal("19.9000"))
    assert change_on(db, "SZ.159915", TUE.isoformat())[2:] == (
        Decimal("-0.4770"),
        Decimal("-19.8916"),
    )

    symbols = [a for s in SHAPES for a in ("--symbol", s)]
    out = etl("check", *symbols)
    assert out.exit_code == 3, out.stdout
    unround = [(a["symbol"], a["ex_date"], a["ratio"]) for a in out.summary["needs_official_ratio"]]
    assert unround == [
        ("SH.517547", ex, 1.35),
        ("SH.560767", ex, 2.0833),
        ("SH.562943", ex, 1.1648),
    ]
    assert out.summary["counts"]["needs_official_ratio"] == 3
    assert out.summary["counts"]["unrecorded_corporate_actions"] == 0
    text = etl("check", *symbols, as_json=False)
    assert text.exit_code == 3
    lines = text.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "  3 detected ratios are not round: needs_official_ratio (etl record-action)" in lines
    assert f"  SH.560767  {ex}     2.0833  detected  needs_official_ratio" in lines
    assert f"  SH.517656  {ex}          2  detected" in lines

    # The official ratio from the announcement ends the finding and fixes the change.
    assert etl("record-action", "SH.560767", ex, "2").exit_code == 0
    after = etl("check", *symbols)
    assert [a["symbol"] for a in after.summary["needs_official_ratio"]] == [
        "SH.517547",
        "SH.562943",
    ]
    assert change_on(db, "SH.560767", ex)[2:] == (Decimal("-0.0200"), Decimal("-2.0000"))


def test_a_full_refetch_over_stored_rows_records_nothing(etl, db, universe):
    """An action is recorded for the rows a load writes, never for rows it skipped:
    those keep the change they were stored with."""
    shape(universe, "SH.517656", *SHAPES["SH.517656"])
    assert etl("sync").exit_code == 0
    ex = EX.isoformat()
    db.execute("DELETE FROM etl_corporate_actions WHERE symbol = 'SH.517656'")
    db.execute(
        "UPDATE stock_daily_data SET price_change = -0.98, price_change_pct = -49 "
        "WHERE symbol = 'SH.517656' AND trade_date = $1::timestamp",
        (ex,),
    )
    tables = checksums(db)
    out = etl("sync-prices", "--full", "--symbol", "SH.517656")
    assert out.exit_code == 0 and out.summary["rows_inserted"] == 0
    assert "SH.517656" not in actions(db)
    assert checksums(db) == tables


def test_a_gap_in_the_source_gives_a_false_split_that_the_fill_drops(etl, db, universe):
    """Two days missing at the source while a 10%-limit ETF fell 9.5% on each: the day
    after opens 22% below the last stored close, and the whole bar agrees with that.
    Once the source has the two days, a --full fill estimates again and drops it."""
    symbol, day = "SZ.159602", FRI.isoformat()
    falls = {
        WED: ("0.950", "0.950", "0.905", "0.905"),
        THU: ("0.860", "0.860", "0.819", "0.819"),
        FRI: ("0.778", "0.790", "0.770", "0.780"),
    }
    shape(universe, symbol, "1.000", falls, (WED, THU))
    assert etl("sync").exit_code == 0
    assert actions(db)[symbol] == (day, Decimal("1.2853"), "detected", Decimal("1.2853"), None)
    assert change_on(db, symbol, day)[2:] == adjusted_change(
        Decimal("1.000"), Decimal("0.780"), Decimal("1.2853")
    )

    shape(universe, symbol, "1.000", falls)
    out = etl("sync-prices", "--full", "--symbol", symbol)
    assert out.exit_code == 0 and out.summary["rows_inserted"] == 2
    assert symbol not in actions(db)
    assert change_on(db, symbol, day) == (
        Decimal("0.819"),
        Decimal("0.780"),
        Decimal("-0.0390"),
        Decimal("-4.7619"),
    )
    check = etl("check", "--symbol", symbol)
    assert check.exit_code == 0, check.stdout
    assert check.summary["corporate_actions"] == []


def test_an_overwrite_of_the_ex_date_row_estimates_the_action_again(etl, db, universe):
    """The source corrects the ex-date bar: --overwrite stores it, and the detected
    action follows the row: a new estimate, then none once the jump is gone."""
    symbol, ex = "SH.560767", EX.isoformat()
    first, events, missing = SHAPES[symbol]
    shape(universe, symbol, first, events, missing)
    assert etl("sync").exit_code == 0
    assert actions(db)[symbol][1] == Decimal("2.0833")

    from_ex = len([d for d in universe.trading_days() if d >= EX])  # every later close moves
    shape(universe, symbol, first, {EX: ("1.000", "1.010", "0.990", "1.000")})
    out = etl("sync-prices", "--full", "--overwrite", "--symbol", symbol)
    assert out.exit_code == 0 and out.summary["rows_updated"] == from_ex
    assert actions(db)[symbol] == (ex, 2, "detected", 2, None)
    assert change_on(db, symbol, ex)[2:] == (Decimal("0.0000"), Decimal("0.0000"))

    shape(universe, symbol, first, {EX: ("1.980", "2.000", "1.970", "1.990")})
    out = etl("sync-prices", "--full", "--overwrite", "--symbol", symbol)
    assert out.exit_code == 0 and out.summary["rows_updated"] == from_ex
    assert symbol not in actions(db)
    assert change_on(db, symbol, ex)[2:] == (Decimal("-0.0100"), Decimal("-0.5000"))


def test_a_jump_after_a_confirmed_long_suspension_is_recorded_for_an_official_ratio(
    etl, db, universe
):
    """A month without a row, then an open 30% lower: nothing is detected while the
    gap is unexplained. Once the repair has the source confirm the suspension, the
    day after it is an ex-date like any other, and its unround ratio is a finding."""
    symbol, ex = "SZ.159711", EX.isoformat()
    shape(universe, symbol, *SHAPES[symbol])
    assert etl("sync").exit_code == 0
    assert symbol not in actions(db)
    before = etl("check", "--symbol", symbol)
    assert before.exit_code == 3
    assert [(h["start"], h["end"]) for h in before.summary["holes"]] == [
        ("2024-02-01", "2024-03-01")
    ]
    assert before.summary["corporate_actions"] == []

    repaired = etl("check", "--repair", "--symbol", symbol)
    assert repaired.exit_code == 3, repaired.stdout
    assert repaired.summary["repair"]["findings_confirmed"] == 1
    assert repaired.summary["repair"]["splits_recorded"] == 1
    assert repaired.summary["holes"] == []
    assert [(a["ex_date"], a["ratio"]) for a in repaired.summary["needs_official_ratio"]] == [
        (ex, 1.4286)
    ]
    assert actions(db)[symbol] == (ex, Decimal("1.4286"), "detected", Decimal("1.4286"), None)
    assert change_on(db, symbol, ex)[2:] == adjusted_change(
        Decimal("2.000"), Decimal("1.420"), Decimal("1.4286")
    )
    # A later load around it estimates it again with the same confirmed days: it stays.
    again = etl("sync-prices", "--full", "--overwrite", "--symbol", symbol)
    assert again.exit_code == 0 and again.summary["rows_updated"] == 0
    assert actions(db)[symbol][1] == Decimal("1.4286")
