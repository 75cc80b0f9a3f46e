"""Daily price sync against the local API and a real PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from etlfixtures import TOKEN, suspend

from etl.db import Database

ROOT = Path(__file__).resolve().parent.parent
MARKET = {"XSHG": "SH", "XSHE": "SZ"}
BUSINESS = (
    "trade_date, symbol, stock_name, close_price, open_price, high_price, low_price, volume, "
    "turnover, price_change, price_change_pct, premium_rate, market_code"
)


def stored_prices(db: Database) -> list[tuple]:
    """Every business column as text: exact decimals, the timestamp as PostgreSQL shows it."""
    cols = ", ".join(f"{c.strip()}::text" for c in BUSINESS.split(","))
    return db.fetch(f"SELECT {cols} FROM stock_daily_data ORDER BY symbol, trade_date")


def source_rows(universe) -> dict[tuple[str, str], dict]:
    out = {}
    for exchange, market in MARKET.items():
        for row in universe.list_rows(exchange):  # inactive ETFs keep their history too
            for r in universe.daily_rows(exchange, row["ticker"]):
                out[(f"{market}.{row['ticker']}", r["date"])] = r
    return out


def test_every_stored_row_equals_its_source_row(etl, db, universe):
    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    s = out.summary
    source = source_rows(universe)
    assert s["rows_inserted"] == len(source) > 500
    assert s["symbols_failed"] == 0 and s["rows_rejected"] == 0

    stored = stored_prices(db)
    assert len(stored) == len(source)
    names = dict(db.fetch("SELECT symbol, stock_name FROM stock_info"))
    for (
        trade_date,
        symbol,
        name,
        close,
        open_,
        high,
        low,
        volume,
        turnover,
        _,
        _,
        premium,
        market,
    ) in stored:
        src = source[(symbol, trade_date[:10])]
        assert trade_date == f"{src['date']} 00:00:00"  # midnight, never shifted by a zone
        assert Decimal(close) == Decimal(str(src["close"]))
        assert Decimal(open_) == Decimal(str(src["open"]))
        assert Decimal(high) == Decimal(str(src["high"]))
        assert Decimal(low) == Decimal(str(src["low"]))
        assert int(volume) == src["volume"]
        assert Decimal(turnover) == (Decimal(str(src["close"])) * src["volume"]).quantize(
            Decimal("0.01"), rounding="ROUND_HALF_UP"
        )
        assert (name, market, premium) == (names[symbol], symbol[:2], None)
    # price_change chains through each symbol's history; on the ex-date of a share
    # split (the test API has three) against the previous close in new shares.
    changes = db.read(
        "SELECT d.symbol, d.close_price, d.price_change, a.ratio, "
        "lag(d.close_price) OVER w AS prev FROM stock_daily_data AS d "
        "LEFT JOIN etl_corporate_actions AS a "
        "ON a.symbol = d.symbol AND a.ex_date = (d.trade_date + interval '8 hours')::date "
        "WINDOW w AS (PARTITION BY d.symbol ORDER BY d.trade_date)"
    ).filter(pl.col("prev").is_not_null())
    plain = changes.filter(pl.col("ratio").is_null())
    assert (plain["close_price"] - plain["prev"] == plain["price_change"]).all()
    ex_dates = changes.filter(pl.col("ratio").is_not_null())
    assert ex_dates.height == 3
    for row in ex_dates.iter_rows(named=True):
        base = (row["prev"] / row["ratio"]).quantize(Decimal("0.0001"), rounding="ROUND_HALF_UP")
        assert row["price_change"] == row["close_price"] - base, row
    last = db.fetch(
        "SELECT count(*) FROM stock_info i WHERE is_etf = 'Y' AND "
        "last_sync_date = (SELECT max(trade_date) FROM stock_daily_data d WHERE d.symbol = i.symbol)"
    )
    with_rows = db.fetch("SELECT count(DISTINCT symbol) FROM stock_daily_data")[0][0]
    assert last[0][0] == with_rows and s["symbols_total"] == universe.n_etfs


def test_next_evening_fetches_only_the_new_day_in_a_few_requests(etl, db, api, universe):
    assert etl("sync").exit_code == 0
    before = {
        row[1]: row
        for row in db.fetch(
            "SELECT DISTINCT ON (symbol) close_price::text, symbol FROM stock_daily_data ORDER BY symbol, trade_date DESC"
        )
    }
    (new_day,) = universe.advance(1)
    api.reset_log()
    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    s = out.summary
    active = s["symbols_total"]
    assert s["rows_inserted"] == active  # one row per active ETF, nothing else
    assert api.request_count() <= 6 and s["requests"] == api.request_count()
    assert api.request_count("daily") == 0
    rows = db.fetch(
        "SELECT symbol, close_price::text, price_change::text FROM stock_daily_data "
        "WHERE trade_date = $1::timestamp",
        (new_day.isoformat(),),
    )
    assert len(rows) == active
    for symbol, close, change in rows:  # the first new row chains to the close stored before
        assert Decimal(change) == Decimal(close) - Decimal(before[symbol][0])

    api.reset_log()
    again = etl("sync").summary
    assert again["rows_inserted"] == 0 and api.request_count() <= 4
    # A run that brought nothing new leaves its manifest alone, not another copy of the lists.
    kept = [p.name for p in Path(again["snapshot"]).rglob("*")]
    assert kept == ["manifest.json"], kept
    # The evening before, with new rows, kept everything it fetched.
    assert (Path(s["snapshot"]) / "kind=prices").is_dir()


def test_a_suspended_etf_costs_no_request_of_its_own_evening_after_evening(etl, db, api, universe):
    """Missing from the per-day answers of its suspension, an ETF is as current as
    the day a run asked it up to: it rejoins the per-day answers when it trades
    again, with its change against its last close."""
    assert etl("sync").exit_code == 0
    etf = next(e for e in universe.etfs("XSHE") if e.is_active)
    suspended: set[str] = set()
    for evening in range(4):
        (day,) = universe.advance(1)
        if evening < 2:  # suspended on the first two evenings, trading again after
            suspended.add(day.isoformat())
        suspend(universe, etf.exchange, etf.ticker, suspended)
        api.reset_log()
        s = etl("sync").summary
        assert s["status"] == "ok", s
        assert api.request_count("daily") == 0 and api.request_count() == 4, api.requests
        assert s["rows_inserted"] == s["symbols_total"] - (1 if evening < 2 else 0)
    rows = db.fetch(
        "SELECT trade_date::date::text, close_price::text, price_change::text "
        "FROM stock_daily_data WHERE symbol = $1 ORDER BY trade_date DESC LIMIT 3",
        (f"SZ.{etf.ticker}",),
    )
    (last, _, last_change), (first_back, _, _), (before, before_close, _) = rows
    assert {last, first_back} & suspended == set() and before < min(suspended) < first_back
    stored = {r["date"]: r for r in universe.daily_rows(etf.exchange, etf.ticker)}
    back = Decimal(str(stored[first_back]["close"]))
    assert Decimal(rows[1][2]) == back - Decimal(before_close)
    # The check sees the suspension as what it is: two days without a row.
    holes = [h for h in etl("check").summary["holes"] if h["symbol"] == f"SZ.{etf.ticker}"]
    assert holes == [
        {"symbol": f"SZ.{etf.ticker}", "start": min(suspended), "end": max(suspended), "days": 2}
    ]


def test_per_ticker_incremental_when_far_behind(etl, db, api, universe):
    assert etl("sync").exit_code == 0
    universe.advance(8)  # more trading days than ETL_LATEST_MAX_DAYS: per ticker
    api.reset_log()
    s = etl("sync").summary
    assert s["status"] == "ok"
    assert api.request_count("daily") == s["symbols_total"]
    assert s["rows_inserted"] == 8 * s["symbols_total"]
    assert all(r.params.get("start_date") for r in api.requests if r.kind == "daily")


def test_replay_into_an_empty_database_rebuilds_the_same_rows(etl, db, pg_server, data_dir):
    out = etl("sync")
    assert out.exit_code == 0
    snapshot = out.summary["snapshot"]
    empty = pg_server.create_database()
    try:
        replayed = etl(
            "replay",
            snapshot,
            env={
                "DATABASE_URL": empty.url,
                "TSANGHI_TOKEN": None,
                "TSANGHI_BASE_URL": "http://127.0.0.1:9/unreachable",
            },
        )
        assert replayed.exit_code == 0, replayed.stderr
        assert replayed.summary["rows_inserted"] == out.summary["rows_inserted"]
        assert stored_prices(empty) == stored_prices(db)
        info = (
            "SELECT symbol, stock_name, stock_code, market_code, stock_type, is_active, is_etf, "
            "last_sync_date FROM stock_info ORDER BY symbol"
        )
        assert empty.fetch(info) == db.fetch(info)
        again = etl("replay", snapshot, env={"DATABASE_URL": empty.url})
        assert again.summary["rows_inserted"] == 0 and stored_prices(empty) == stored_prices(db)
    finally:
        pg_server.drop_database(empty)


def test_a_failing_ticker_is_skipped_and_the_rest_load(etl, db, api, universe):
    ticker = universe.list_rows("XSHE")[0]["ticker"]
    api.add_fault("502", endpoint="daily", ticker=ticker, times=None)
    out = etl("sync")
    assert out.exit_code == 3
    s = out.summary
    assert s["status"] == "partial" and s["symbols_failed"] == 1
    assert s["failed"][0]["symbol"] == f"SZ.{ticker}" and "HTTP 502" in s["failed"][0]["reason"]
    assert (
        db.fetch("SELECT count(*) FROM stock_daily_data WHERE symbol = $1", (f"SZ.{ticker}",))[0][0]
        == 0
    )
    assert s["rows_inserted"] == len(source_rows(universe)) - len(
        universe.daily_rows("XSHE", ticker)
    )

    api.clear_faults()
    api.reset_log()
    healed = etl("sync").summary  # the next run fetches just what is missing
    assert healed["status"] == "ok" and healed["rows_inserted"] == len(
        universe.daily_rows("XSHE", ticker)
    )
    assert api.request_count("daily") == 1


def test_rejected_rows_are_counted_and_kept_in_the_snapshot(etl, db, universe):
    ticker = universe.list_rows("XSHG")[0]["ticker"]
    rows = universe.daily_rows("XSHG", ticker)
    bad = [dict(rows[0], close="abc"), dict(rows[1], volume=-1), *rows[2:]]
    universe.set_rows("XSHG", ticker, bad)
    out = etl("sync")
    assert out.exit_code == 3, out.stderr  # a rejected row is news: partial, not ok
    s = out.summary
    assert s["rows_rejected"] == 2
    assert s["status"] == "partial"
    (reason,) = s["reasons"]
    assert re.fullmatch(r"2 of [\d,]+ rows rejected", reason)
    rejects = pl.read_parquet(Path(s["snapshot"]) / "rejects" / "*.parquet")
    assert sorted(rejects["reason"].to_list()) == [
        "close is not a number that fits NUMERIC(10,4)",
        "volume is not a non-negative whole number",
    ]
    stored = db.fetch("SELECT count(*) FROM stock_daily_data WHERE symbol = $1", (f"SH.{ticker}",))
    assert stored[0][0] == len(rows) - 2


def test_overwrite_corrects_changed_rows_and_reports_them(etl, db, universe):
    ticker = universe.list_rows("XSHG")[0]["ticker"]
    assert etl("sync").exit_code == 0
    rows = universe.daily_rows("XSHG", ticker)
    fixed = [dict(r) for r in rows]
    fixed[5]["close"] = fixed[5]["high"]
    universe.set_rows("XSHG", ticker, fixed)
    plain = etl("sync-prices", "--symbol", f"SH.{ticker}", "--full").summary
    assert (plain["rows_inserted"], plain["rows_updated"]) == (0, 0)
    out = etl("sync-prices", "--symbol", f"SH.{ticker}", "--full", "--overwrite").summary
    # The corrected close changes that row, and the next row's price_change.
    assert out["rows_updated"] == 2 and out["rows_inserted"] == 0
    close = db.fetch(
        "SELECT close_price::text FROM stock_daily_data WHERE symbol = $1 AND trade_date = $2::timestamp",
        (f"SH.{ticker}", fixed[5]["date"]),
    )
    assert Decimal(close[0][0]) == Decimal(str(fixed[5]["high"]))


def test_full_fills_gaps_and_never_duplicates(etl, db, universe):
    assert etl("sync").exit_code == 0
    total = db.fetch("SELECT count(*) FROM stock_daily_data")[0][0]
    db.execute(
        "DELETE FROM stock_daily_data WHERE trade_date BETWEEN '2024-02-01' AND '2024-02-07'"
    )
    gap = total - db.fetch("SELECT count(*) FROM stock_daily_data")[0][0]
    assert gap > 0
    s = etl("sync", "--full").summary
    assert s["rows_inserted"] == gap  # exactly the gap, nothing stored twice
    assert db.fetch("SELECT count(*) FROM stock_daily_data")[0][0] == total
    dupes = db.fetch(
        "SELECT count(*) FROM (SELECT symbol, trade_date FROM stock_daily_data "
        "GROUP BY 1, 2 HAVING count(*) > 1) d"
    )
    assert dupes[0][0] == 0


def test_symbol_and_date_flags_narrow_the_sync(etl, db, universe):
    assert etl("sync-list").exit_code == 0
    ticker = universe.list_rows("XSHG")[0]["ticker"]
    out = etl(
        "sync-prices",
        "--symbol",
        f"sh.{ticker}",
        "--start-date",
        "2024-02-01",
        "--end-date",
        "2024-02-29",
    )
    assert out.exit_code == 0, out.stderr
    dates = db.fetch(
        "SELECT min(trade_date)::date::text, max(trade_date)::date::text, count(DISTINCT symbol) "
        "FROM stock_daily_data"
    )
    assert dates[0][0] >= "2024-02-01" and dates[0][1] <= "2024-02-29" and dates[0][2] == 1
    bad = etl("sync-prices", "--symbol", "SH.51005'; DROP TABLE stock_info; --")
    assert bad.exit_code == 2 and "invalid symbol" in bad.stderr
    unknown = etl("sync-prices", "--symbol", "SH.999999")
    assert unknown.exit_code == 1 and "not an ETF of the chosen exchanges" in unknown.stderr


def test_etf_and_stock_prices_come_back_from_one_query(etl, db):
    assert etl("sync").exit_code == 0
    db.execute(
        "INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, stock_type, is_active, is_etf, "
        "created_at, updated_at) VALUES ('SH.600000', '浦发银行', '600000', 'SH', 'STOCK', 'Y', 'N', now(), now())"
    )
    db.execute(
        "INSERT INTO stock_daily_data (trade_date, symbol, stock_name, close_price, volume, turnover, "
        "market_code, created_at, updated_at) VALUES ('2024-01-08', 'SH.600000', '浦发银行', 7.0100, 100, "
        "701.00, 'SH', now(), now())"
    )
    rows = db.fetch(
        "SELECT i.is_etf, count(*), min(d.close_price)::text FROM stock_daily_data d "
        "JOIN stock_info i USING (symbol) WHERE d.trade_date = '2024-01-08' GROUP BY i.is_etf ORDER BY 1"
    )
    assert rows[0][0] == "N" and rows[0][1] == 1 and rows[0][2] == "7.0100"
    assert rows[1][0] == "Y" and rows[1][1] > 1


@pytest.mark.slow
def test_make_sync_etf_fills_an_embedded_database_from_nothing(api, tmp_path, universe):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MAKEFLAGS", "MFLAGS")}
    env.update(
        TSANGHI_TOKEN=TOKEN,
        TSANGHI_BASE_URL=api.base_url,
        ETL_DATA_DIR=str(tmp_path / "data"),
        FLAGS="--quiet",
    )
    done = subprocess.run(
        ["make", "-s", "sync-etf"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "SUCCESS" not in done.stderr and "OK" in done.stdout
    assert (tmp_path / "data" / "pg").is_dir()
    status = subprocess.run(
        [sys.executable, "-m", "etl", "--json", "status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert '"status": "ok"' in status.stdout
    assert TOKEN not in done.stdout + done.stderr
