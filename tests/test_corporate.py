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

from etl.db import Database
from etl.load import Loader
from etl.schema import DAILY_SCHEMA

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
