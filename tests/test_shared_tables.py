"""Sharing stock_daily_data and stock_info with the existing system's code.

That code (qtfund_project_2) writes trade_date through a +08:00-aware datetime
into the naive column: from a UTC session PostgreSQL stores 16:00 of the day
before, from an Asia/Shanghai session midnight. The tests below write rows
exactly that way, under both session time zones, then run our syncs over them
against the local test API, and read everything back with the queries that
system's services run.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import adbc_driver_postgresql.dbapi as adbc
import pytest

from etl.db import Database
from etl.queries import etf_counts

UTC, SHANGHAI = "UTC", "Asia/Shanghai"
SESSIONS = [UTC, SHANGHAI]


def old_system_writes(
    db: Database,
    session_tz: str,
    symbol: str,
    name: str,
    rows: list[dict],
    last_sync: bool = True,
):
    """Store rows as the existing code does: a +08:00 datetime into trade_date, turnover
    as float volume × close, no change columns, and (its single-symbol path, not its
    ETF path) last_sync_date from the last row."""
    market = symbol[:2]
    with adbc.connect(db.url, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute(f"SET TimeZone = '{session_tz}'")  # one of two fixed names
        for r in rows:
            aware = f"{r['date']}T00:00:00+08:00"
            cur.execute(
                "INSERT INTO stock_daily_data (trade_date, symbol, stock_name, close_price, "
                "open_price, high_price, low_price, volume, turnover, market_code, created_at, "
                "updated_at) VALUES ($1::timestamptz, $2, $3, $4::numeric, $5::numeric, "
                "$6::numeric, $7::numeric, $8, $9::numeric, $10, now(), now())",
                (
                    aware,
                    symbol,
                    name,
                    str(r["close"]),
                    str(r["open"]),
                    str(r["high"]),
                    str(r["low"]),
                    int(r["volume"]),
                    str(Decimal(str(r["volume"] * r["close"]))),
                    market,
                ),
            )
        if rows and last_sync:
            cur.execute(
                "UPDATE stock_info SET last_sync_date = $1::timestamptz WHERE symbol = $2",
                (f"{rows[-1]['date']}T00:00:00+08:00", symbol),
            )
        conn.commit()


def day_rows(db: Database, symbol: str) -> list[tuple[str, str, str | None]]:
    """(trading day, stored timestamp, price_change) per stored row, by trading day."""
    return db.fetch(
        "SELECT (trade_date + interval '8 hours')::date::text, trade_date::text, "
        "price_change::text FROM stock_daily_data WHERE symbol = $1 ORDER BY trade_date",
        (symbol,),
    )


def one_row_per_trading_day(db: Database) -> None:
    dupes = db.fetch(
        "SELECT symbol, (trade_date + interval '8 hours')::date, count(*) FROM stock_daily_data "
        "GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert dupes == []


@pytest.fixture
def listed(etl):
    out = etl("sync-list")
    assert out.exit_code == 0, out.stderr


def _name(db: Database, symbol: str) -> str:
    return db.fetch("SELECT stock_name FROM stock_info WHERE symbol = $1", (symbol,))[0][0]


@pytest.mark.parametrize("session_tz", SESSIONS)
def test_our_sync_continues_the_old_rows_by_trading_day(etl, db, universe, listed, session_tz):
    """Measured: a second row for the latest trading day, and price_change 0.0000."""
    symbol, rows = "SH.510050", universe.daily_rows("XSHG", "510050")
    old, new = rows[:-2], rows[-2:]
    old_system_writes(db, session_tz, symbol, _name(db, symbol), old)
    if session_tz == UTC:  # the measured shape: 16:00 of the day before
        day_before = date.fromisoformat(old[-1]["date"]) - timedelta(days=1)
        assert day_rows(db, symbol)[-1][1] == f"{day_before} 16:00:00"

    out = etl("sync-prices")
    assert out.exit_code == 0, out.stderr
    one_row_per_trading_day(db)
    stored = day_rows(db, symbol)
    assert [d for d, _, _ in stored] == [r["date"] for r in rows]
    # Our rows at midnight; the old rows keep the timestamp they were written with.
    assert [ts for _, ts, _ in stored[-2:]] == [f"{r['date']} 00:00:00" for r in new]
    expected_old = "16:00:00" if session_tz == UTC else "00:00:00"
    assert all(ts.endswith(expected_old) for _, ts, _ in stored[:-2])
    # The first new row's change refers to the old row of the trading day before.
    change = Decimal(stored[-2][2])
    assert change == Decimal(str(new[0]["close"])) - Decimal(str(old[-1]["close"]))
    assert db.fetch("SELECT last_sync_date::text FROM stock_info WHERE symbol = $1", (symbol,)) == [
        (f"{rows[-1]['date']} 00:00:00",)
    ]

    # The next run and etl status call it up to date, and nothing is asked again for it.
    again = etl("sync-prices").summary
    assert again["rows_inserted"] == 0
    sh = etf_counts(db).filter(market_code="SH").row(0, named=True)
    assert str(sh["latest_trade_date"])[:10] == rows[-1]["date"] and sh["behind"] == 0


@pytest.mark.parametrize("session_tz", SESSIONS)
def test_full_over_old_rows_adds_no_second_row_for_a_trading_day(
    etl, db, universe, listed, session_tz
):
    """Measured: --full duplicated days written at 16:00 from a UTC session."""
    symbol, rows = "SH.510050", universe.daily_rows("XSHG", "510050")
    old_system_writes(db, session_tz, symbol, _name(db, symbol), rows[:10])
    assert etl("sync-prices").exit_code == 0
    out = etl("sync-prices", "--full", "--symbol", symbol)
    assert out.exit_code == 0, out.stderr
    assert out.summary["rows_inserted"] == 0
    one_row_per_trading_day(db)


@pytest.mark.parametrize("session_tz", SESSIONS)
def test_overwrite_matches_by_trading_day_and_compares_source_fields_only(
    etl, db, universe, listed, session_tz
):
    """Measured: turnover rounded in float flipped back and forth under --overwrite."""
    symbol, rows = "SH.510050", universe.daily_rows("XSHG", "510050")
    old_system_writes(db, session_tz, symbol, _name(db, symbol), rows[:20])
    assert etl("sync-prices").exit_code == 0
    before = day_rows(db, symbol)
    # Same source values: nothing to correct, whoever wrote the row and however it
    # rounded turnover or left the change empty.
    db.execute(
        "UPDATE stock_daily_data SET turnover = turnover + 0.01 WHERE symbol = $1 "
        "AND trade_date > (SELECT min(trade_date) + interval '30 days' FROM stock_daily_data "
        "WHERE symbol = $1)",
        (symbol,),
    )
    same = etl("sync-prices", "--symbol", symbol, "--full", "--overwrite").summary
    assert (same["rows_updated"], same["rows_inserted"]) == (0, 0)
    one_row_per_trading_day(db)

    # A corrected close on an old row is written in place, at the old row's timestamp.
    fixed = [dict(r) for r in rows]
    fixed[5]["close"] = fixed[5]["high"]
    universe.set_rows("XSHG", "510050", fixed)
    out = etl("sync-prices", "--symbol", symbol, "--full", "--overwrite").summary
    assert out["rows_inserted"] == 0
    assert out["rows_updated"] == 2  # the row, and the change of the next one
    after = day_rows(db, symbol)
    assert [(d, ts) for d, ts, _ in after] == [(d, ts) for d, ts, _ in before]
    close = db.fetch(
        "SELECT close_price::text, turnover::text FROM stock_daily_data WHERE symbol = $1 "
        "AND (trade_date + interval '8 hours')::date = $2::date",
        (symbol, fixed[5]["date"]),
    )
    assert Decimal(close[0][0]) == Decimal(str(fixed[5]["high"]))
    assert Decimal(close[0][1]) == (Decimal(close[0][0]) * fixed[5]["volume"]).quantize(
        Decimal("0.01"), rounding="ROUND_HALF_UP"
    )
    assert Decimal(after[6][2]) == Decimal(str(fixed[6]["close"])) - Decimal(str(fixed[5]["high"]))


@pytest.mark.parametrize("session_tz", SESSIONS)
def test_status_and_the_next_run_see_a_day_the_old_code_stored(etl, db, api, universe, session_tz):
    assert etl("sync").exit_code == 0
    (new_day,) = universe.advance(1)
    symbol = "SH.510050"
    row = universe.daily_rows("XSHG", "510050", new_day, new_day)
    old_system_writes(db, session_tz, symbol, _name(db, symbol), row, last_sync=False)
    counts = {r["market_code"]: r for r in etf_counts(db).iter_rows(named=True)}
    active_sh = counts["SH"]["active"]
    assert str(counts["SH"]["latest_trade_date"])[:10] == new_day.isoformat()
    assert counts["SH"]["behind"] == active_sh - 1  # all but the one the old code wrote

    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    one_row_per_trading_day(db)
    assert etf_counts(db)["behind"].to_list() == [0, 0]
    assert db.fetch(
        "SELECT count(*) FROM stock_daily_data WHERE symbol = $1 "
        "AND (trade_date + interval '8 hours')::date = $2::date",
        (symbol, new_day.isoformat()),
    ) == [(1,)]


@pytest.mark.parametrize("session_tz", SESSIONS)
def test_the_existing_read_paths_return_our_rows(etl, db, universe, listed, session_tz):
    """The queries the existing services run, over old rows and ours, in a session of
    either time zone, with dates bound as that code binds them."""
    old_symbol, rows = "SH.510050", universe.daily_rows("XSHG", "510050")
    old_system_writes(db, session_tz, old_symbol, _name(db, old_symbol), rows[:30])
    assert etl("sync").exit_code == 0
    ours = "SZ.159915"
    ours_rows = universe.daily_rows("XSHE", "159915")
    first, last = ours_rows[10]["date"], ours_rows[20]["date"]

    with adbc.connect(db.url) as conn, conn.cursor() as cur:
        cur.execute(f"SET TimeZone = '{session_tz}'")

        def q(sql: str, params: tuple = ()) -> list[tuple]:
            cur.execute(sql, params or None)
            return cur.fetchall()

        # StockDataManager.get_stock_data_by_date_range
        got = q(
            "SELECT trade_date, close_price::text FROM stock_daily_data WHERE symbol = $1 "
            "AND trade_date >= $2::date AND trade_date <= $3::date ORDER BY trade_date ASC",
            (ours, first, last),
        )
        assert [str(d)[:10] for d, _ in got] == [r["date"] for r in ours_rows[10:21]]
        assert [Decimal(c) for _, c in got] == [Decimal(str(r["close"])) for r in ours_rows[10:21]]
        # get_stock_latest_data, for our ETF and for one whose old rows we continued
        for symbol, source in ((ours, ours_rows), (old_symbol, rows)):
            latest = q(
                "SELECT trade_date, close_price::text FROM stock_daily_data WHERE symbol = $1 "
                "ORDER BY trade_date DESC LIMIT 1",
                (symbol,),
            )
            assert str(latest[0][0])[:10] == source[-1]["date"]
            assert Decimal(latest[0][1]) == Decimal(str(source[-1]["close"]))
        # get_market_data_by_date: every SH ETF that traded that day, once
        day = rows[-1]["date"]
        traded = sorted(
            f"SH.{r['ticker']}"
            for r in universe.list_rows("XSHG")
            if any(x["date"] == day for x in universe.daily_rows("XSHG", r["ticker"]))
        )
        market = q(
            "SELECT symbol FROM stock_daily_data WHERE market_code = $1 AND trade_date = $2::date "
            "ORDER BY symbol ASC",
            ("SH", day),
        )
        assert [s for (s,) in market] == traded
        # the ETF list and the count per market
        listed_etfs = q("SELECT symbol FROM stock_info WHERE is_etf = 'Y' ORDER BY symbol")
        expected = sorted(
            f"{m}.{r['ticker']}"
            for ex, m in (("XSHG", "SH"), ("XSHE", "SZ"))
            for r in universe.list_rows(ex)
        )
        assert [s for (s,) in listed_etfs] == expected
        counts = dict(
            q(
                "SELECT market_code, count(symbol) FROM stock_info WHERE is_etf = 'Y' "
                "GROUP BY market_code ORDER BY market_code"
            )
        )
        assert counts == {
            "SH": len(universe.list_rows("XSHG")),
            "SZ": len(universe.list_rows("XSHE")),
        }
    one_row_per_trading_day(db)
