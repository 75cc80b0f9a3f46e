"""Which ETFs a price sync covers and which dates it asks for: delisted ETFs, the
date options, today's date, and an empty stock_info."""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import polars as pl
import pytest
from etlfixtures import plan_etf, suspend

from etl.calendar import shanghai_today
from etl.db import Database
from etl.plan import HOLE_DAYS_MAX, PriceOptions, build_plan, hole_candidates
from etl.queries import etf_counts
from etl.schema import HOLES_SCHEMA


def changes_follow_the_previous_stored_day(db: Database) -> None:
    """price_change and price_change_pct of every row against the row before it: its
    close, or on the ex-date of a share split that close in new shares, round(close /
    ratio, 4)."""
    rows = db.fetch(
        "SELECT symbol, day, price_change::text, price_change_pct::text, "
        "(close_price - prev)::text, round((close_price - prev) * 100 / prev, 4)::text FROM ("
        "  SELECT d.symbol, d.trade_date::text AS day, d.close_price, d.price_change, "
        "  d.price_change_pct, CASE WHEN a.ratio IS NULL THEN lag(d.close_price) OVER w "
        "  ELSE round(lag(d.close_price) OVER w / a.ratio, 4) END AS prev "
        "  FROM stock_daily_data AS d LEFT JOIN etl_corporate_actions AS a "
        "  ON a.symbol = d.symbol AND a.ex_date = (d.trade_date + interval '8 hours')::date "
        "  WINDOW w AS (PARTITION BY d.symbol ORDER BY d.trade_date)) AS r"
    )
    wrong = [r for r in rows if r[4] is not None and (r[2], r[3]) != (r[4], r[5])]
    assert wrong == []


def stored_count(db: Database, symbol: str | None = None) -> int:
    if symbol is None:
        return db.fetch("SELECT count(*) FROM stock_daily_data")[0][0]
    return db.fetch("SELECT count(*) FROM stock_daily_data WHERE symbol = $1", (symbol,))[0][0]


def source_count(universe) -> int:
    return sum(
        len(universe.daily_rows(ex, r["ticker"]))
        for ex in ("XSHG", "XSHE")
        for r in universe.list_rows(ex)
    )


# -- the date options ------------------------------------------------------------


def test_a_start_date_after_the_watermark_leaves_no_gap(etl, db, universe):
    """Measured: --start-date after the watermark stored nothing for the months between,
    the next run and etl status called it up to date, and the first new row's
    price_change_pct referred to the close before the hole."""
    assert etl("sync", "--end-date", "2024-02-15").exit_code == 0
    out = etl("sync-prices", "--start-date", "2024-03-01")
    assert out.exit_code == 0, out.stderr
    assert stored_count(db) == source_count(universe)
    changes_follow_the_previous_stored_day(db)
    rows = universe.daily_rows("XSHG", "510050")
    feb16 = next(i for i, r in enumerate(rows) if r["date"] >= "2024-02-16")
    pct = db.fetch(
        "SELECT price_change_pct::text FROM stock_daily_data WHERE symbol = 'SH.510050' "
        "AND trade_date = $1::timestamp",
        (rows[feb16]["date"],),
    )[0][0]
    prev, close = Decimal(str(rows[feb16 - 1]["close"])), Decimal(str(rows[feb16]["close"]))
    assert Decimal(pct) == ((close - prev) * 100 / prev).quantize(
        Decimal("0.0001"), "ROUND_HALF_UP"
    )
    counts = etf_counts(db)
    assert counts["behind"].to_list() == [0, 0]


def test_a_start_date_on_an_up_to_date_database_costs_no_extra_request(etl, db, api, universe):
    """Measured: one request per ETF on every run with --start-date (57 instead of 2)."""
    assert etl("sync").exit_code == 0
    api.reset_log()
    plain = etl("sync-prices").summary
    plain_requests = api.request_count()
    api.reset_log()
    dated = etl("sync-prices", "--start-date", "2024-01-15").summary
    assert api.request_count() <= plain_requests and api.request_count("daily") == 0
    assert plain["rows_inserted"] == dated["rows_inserted"] == 0

    universe.advance(1)  # the next evening, with --start-date still in the crontab
    api.reset_log()
    s = etl("sync-prices", "--start-date", "2024-01-15").summary
    assert s["rows_inserted"] == s["symbols_total"] - s["inactive_synced"]
    assert api.request_count("daily") == 0 and api.request_count() <= 4


def test_full_fills_a_gap_and_the_row_after_it_refers_to_the_filled_day(etl, db, universe):
    """Measured: --full filled the rows but kept the change computed across the hole."""
    assert etl("sync").exit_code == 0
    symbol = "SH.510050"
    db.execute(
        "DELETE FROM stock_daily_data WHERE symbol = $1 AND trade_date BETWEEN "
        "'2024-02-01' AND '2024-02-07'",
        (symbol,),
    )
    # What a run that jumped the hole stored: the change against the close before it.
    db.execute(
        "UPDATE stock_daily_data AS d SET price_change = d.close_price - p.close_price, "
        "price_change_pct = round((d.close_price - p.close_price) * 100 / p.close_price, 4) "
        "FROM stock_daily_data AS p WHERE d.symbol = $1 AND p.symbol = $1 "
        "AND d.trade_date = (SELECT min(trade_date) FROM stock_daily_data "
        "WHERE symbol = $1 AND trade_date > '2024-02-07') "
        "AND p.trade_date = (SELECT max(trade_date) FROM stock_daily_data "
        "WHERE symbol = $1 AND trade_date < '2024-02-01')",
        (symbol,),
    )
    changes_follow_the_previous_stored_day(db)  # true of the table with its hole
    out = etl("sync-prices", "--full")
    assert out.exit_code == 0, out.stderr
    assert stored_count(db) == source_count(universe)
    changes_follow_the_previous_stored_day(db)


def test_overwrite_without_full_corrects_nothing_already_stored_and_says_so(etl, db, universe):
    """Measured: --overwrite alone does nothing on an up-to-date database; the help says so."""
    assert etl("sync").exit_code == 0
    fixed = [dict(r) for r in universe.daily_rows("XSHG", "510050")]
    fixed[3]["close"] = fixed[3]["high"]
    universe.set_rows("XSHG", "510050", fixed)
    alone = etl("sync-prices", "--overwrite", "--symbol", "SH.510050").summary
    assert alone["rows_updated"] == 0
    both = etl("sync-prices", "--overwrite", "--full", "--symbol", "SH.510050").summary
    assert both["rows_updated"] == 2
    help_text = etl("sync-prices", "--help", as_json=False).stdout
    assert "with --full" in help_text


# -- delisted ETFs ---------------------------------------------------------------


def test_delisted_etfs_get_their_whole_history_once(etl, db, api, universe):
    universe.set_active("XSHG", "510300", False)  # delisted at the end of the quarter
    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    s = out.summary
    assert s["inactive_synced"] == 2 and s["inactive_complete"] == 0  # 560514 has no rows
    assert stored_count(db, "SH.510300") == len(universe.daily_rows("XSHG", "510300")) > 50
    assert stored_count(db) == source_count(universe)
    done = db.fetch("SELECT symbol FROM etl_etf_history ORDER BY symbol")
    assert done == [("SH.510300",), ("SH.560514",)]

    # An ETF delisted after we synced it is asked once more, then left alone.
    universe.set_active("XSHE", "159915", False)
    universe.advance(1)
    api.reset_log()
    s = etl("sync").summary
    assert (s["inactive_synced"], s["inactive_complete"]) == (1, 2)
    asked = {r.params.get("ticker") for r in api.requests if r.kind == "daily"}
    assert asked == {"159915"}

    api.reset_log()
    s = etl("sync").summary
    assert (s["inactive_synced"], s["inactive_complete"]) == (0, 3)
    assert api.request_count("daily") == 0
    assert etf_counts(db).select("market_code", "inactive").rows() == [("SH", 2), ("SZ", 1)]

    # --symbol reaches an inactive ETF, complete or not.
    named = etl("sync-prices", "--symbol", "SH.510300", "--full")
    assert named.exit_code == 0, named.stderr
    assert named.summary["symbols_total"] == 1 and named.summary["rows_inserted"] == 0


def test_a_delisted_etf_whose_fetch_failed_is_asked_again(etl, db, api, universe):
    universe.set_active("XSHG", "510300", False)
    api.add_fault("502", endpoint="daily", ticker="510300", times=None)
    assert etl("sync").exit_code == 3
    assert db.fetch("SELECT symbol FROM etl_etf_history WHERE symbol = 'SH.510300'") == []
    api.clear_faults()
    s = etl("sync").summary
    assert s["status"] == "ok" and s["inactive_synced"] == 1
    assert stored_count(db, "SH.510300") == len(universe.daily_rows("XSHG", "510300"))


def test_a_start_date_backfill_completes_the_delisted_etfs_it_asked(etl, db, api, universe):
    """Measured: a run with --start-date never marked a delisted ETF complete, so every
    later run with --start-date asked each one again (15 requests where 4 do), and the
    first evening after a --start-date backfill asked 40 requests instead of 4."""
    universe.set_active("XSHG", "510300", False)  # delisted at the end of the quarter
    out = etl("sync", "--start-date", "2024-02-01")
    assert out.exit_code == 0, out.stderr
    assert (out.summary["inactive_synced"], out.summary["inactive_complete"]) == (2, 0)
    done = db.fetch("SELECT symbol FROM etl_etf_history ORDER BY symbol")
    assert done == [("SH.510300",), ("SH.560514",)]
    asked = [r for r in universe.daily_rows("XSHG", "510300") if r["date"] >= "2024-02-01"]
    assert stored_count(db, "SH.510300") == len(asked) > 30
    first = db.fetch(
        "SELECT min(trade_date)::date::text FROM stock_daily_data WHERE symbol = 'SH.510300'"
    )
    assert first == [(asked[0]["date"],)]

    # The first evening after the backfill costs what any evening costs: two lists
    # and one /daily/latest per exchange, no delisted ETF asked again.
    universe.advance(1)
    api.reset_log()
    evening = etl("sync")
    assert evening.exit_code == 0, evening.stderr
    assert (api.request_count("list"), api.request_count("latest")) == (2, 2)
    assert api.request_count() == 4
    s = evening.summary
    assert (s["inactive_synced"], s["inactive_complete"]) == (0, 2)
    assert s["rows_inserted"] == s["symbols_total"]

    # A second run with --start-date (still in the crontab) asks none again either.
    universe.advance(1)
    api.reset_log()
    again = etl("sync", "--start-date", "2024-02-01")
    assert again.exit_code == 0, again.stderr
    assert api.request_count("daily") == 0 and api.request_count() == 4
    assert (again.summary["inactive_synced"], again.summary["inactive_complete"]) == (0, 2)
    assert stored_count(db, "SH.510300") == len(asked)


# -- days missed behind a watermark another writer moved ------------------------------


def _hole(code: str, day: date, traded: bool, prev: date, close: str) -> dict:
    return {
        "symbol": f"SZ.{code}",
        "market_code": "SZ",
        "day": day,
        "traded": traded,
        "prev_date": datetime.combine(prev, datetime.min.time()),
        "prev_close": Decimal(close),
    }


def test_a_hole_behind_a_watermark_is_asked_once_per_day_or_per_ticker_where_cheaper():
    jan = [date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10)]  # trading days
    pack = [plan_etf(f"1599{i:02d}", jan[5]) for i in range(4)]  # at Jan 9, latest Jan 10
    ahead = plan_etf("159950", jan[6])  # the old system stored Jan 10: up to date
    context = pl.DataFrame([*pack, ahead])
    opts = PriceOptions(exchanges=("XSHE",), end=date(2024, 1, 31))
    latest = {"XSHE": jan[6]}
    holes = pl.DataFrame(
        [
            _hole("159950", jan[3], True, jan[2], "1.2340"),  # Jan 5, a day others stored
            _hole("159950", jan[4], False, jan[2], "1.2340"),  # Jan 8, no row of anybody
        ],
        schema=HOLES_SCHEMA,
    )
    p = build_plan(context, opts, latest, 5, holes)
    # Jan 8 is no proof of a trading day (nobody stored it) and the run does not ask
    # it anyway: only Jan 5 counts, and costs one request for the exchange.
    assert [(r.endpoint, r.day) for r in p.requests] == [("latest", jan[3])]
    assert p.days == {"XSHE": [jan[3], jan[6]]}
    assert p.up_to_date == 0
    row = p.symbols.filter(pl.col("symbol") == "SZ.159950").row(0, named=True)
    assert (row["by_day"], row["prev_date"].date(), row["prev_close"]) == (
        True,
        jan[2],
        Decimal("1.2340"),
    )

    # A hole on a day the run asks anyway costs nothing more.
    behind = [plan_etf(f"1599{i:02d}", jan[2]) for i in range(4)]  # the pack at Jan 4
    p = build_plan(pl.DataFrame([*behind, ahead]), opts, latest, 5, holes)
    assert sorted(r.day for r in p.requests) == [jan[3], jan[4], jan[5]]
    assert p.days == {"XSHE": jan[3:]}
    assert p.symbols.filter(pl.col("by_day")).height == 5

    # An ETF that also needs days past its watermark asks its own range from the
    # hole on: per-day rows around a stored day the answers lack would chain wrong.
    lagging = plan_etf("159950", jan[5])
    p = build_plan(pl.DataFrame([*pack, lagging]), opts, latest, 5, holes)
    assert [(r.endpoint, r.ticker, r.start) for r in p.requests] == [("daily", "159950", jan[3])]
    assert p.symbols.filter(pl.col("by_day")).height == 4

    # One ETF missing three days: one request for it beats three for the exchange.
    three = pl.DataFrame(
        [_hole("159950", d, True, jan[0], "1.2340") for d in jan[1:4]], schema=HOLES_SCHEMA
    )
    p = build_plan(context, opts, latest, 5, three)
    assert [(r.endpoint, r.ticker, r.start) for r in p.requests] == [("daily", "159950", jan[1])]
    # Without the latest day (its answer failed) the ETF goes per ticker too.
    p = build_plan(context, opts, {}, 5, holes)
    assert ("daily", "159950", jan[3]) in [(r.endpoint, r.ticker, r.start) for r in p.requests]


def test_holes_are_looked_for_after_the_last_day_our_runs_asked():
    jan = [date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10)]  # trading days
    opts = PriceOptions(end=date(2024, 1, 31))
    latest = {"XSHG": jan[6], "XSHE": jan[6]}
    asked = {"XSHG": (jan[4], False), "XSHE": (jan[6], False)}
    assert hole_candidates(opts, latest, asked) == {"SH": [(jan[5], True), (jan[6], True)]}
    # Nothing asked yet (a database from before the record): the last five days.
    assert hole_candidates(opts, latest, {})["SZ"] == [(d, True) for d in jan[2:]]
    # An ETF asked long ago (its fetch keeps failing) beside one never asked (listed
    # today): the days after the first, the last five flagged for the second.
    mixed = hole_candidates(opts, latest, {"XSHG": (date(2023, 12, 28), True)})["SH"]
    assert mixed == [(date(2023, 12, 29), False), *((d, d >= jan[2]) for d in jan)]
    assert hole_candidates(PriceOptions(full=True), latest, {}) == {}
    # Long ago, and the latest day unknown: the days right after it come first.
    far = hole_candidates(opts, {}, {"XSHG": (date(2023, 1, 3), False)})["SH"]
    assert (len(far), far[0]) == (HOLE_DAYS_MAX, (date(2023, 1, 4), False))


@pytest.mark.parametrize("session_tz", ["UTC", "Asia/Shanghai"])
def test_a_day_the_old_system_stored_past_our_missed_day_costs_no_extra_request(
    etl, db, api, universe, session_tz
):
    """Measured: an evening that failed, then one on which the old system stored the
    next day first, left that ETF's missed day behind its watermark for good."""
    from test_shared_tables import old_system_writes

    assert etl("sync").exit_code == 0
    missed, d2 = universe.advance(2)  # our evening of `missed` never ran
    symbol, rows = "SH.510050", universe.daily_rows("XSHG", "510050", d2, d2)
    name = db.fetch("SELECT stock_name FROM stock_info WHERE symbol = $1", (symbol,))[0][0]
    old_system_writes(db, session_tz, symbol, name, rows)
    api.reset_log()
    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    assert api.request_count() == 6 and api.request_count("daily") == 0  # as without it
    assert stored_count(db) == source_count(universe)
    (change,) = db.fetch(
        "SELECT price_change::text FROM stock_daily_data WHERE symbol = $1 "
        "AND (trade_date + interval '8 hours')::date = $2::date",
        (symbol, missed.isoformat()),
    )[0]
    before, day = universe.daily_rows("XSHG", "510050")[-3:-1]
    assert day["date"] == missed.isoformat()
    assert Decimal(change) == Decimal(str(day["close"])) - Decimal(str(before["close"]))
    assert db.fetch("SELECT DISTINCT complete_through FROM etl_etf_days") == [(d2,)]

    universe.advance(1)
    api.reset_log()
    assert etl("sync").exit_code == 0
    assert api.request_count() == 4


def test_an_etf_whose_fetch_keeps_failing_asks_no_suspension_of_others_again(
    etl, db, api, universe
):
    """A suspension our run saw (the source had no row that day) is no hole to ask
    again, even while another ETF of the exchange keeps failing evening after evening."""
    assert etl("sync").exit_code == 0
    # SH.510300 fell two days behind and its own request now keeps failing.
    db.execute(
        "DELETE FROM stock_daily_data WHERE symbol = 'SH.510300' AND trade_date >= "
        "(SELECT max(trade_date) - interval '2 days' FROM stock_daily_data "
        "WHERE symbol = 'SH.510300')"
    )
    api.add_fault("502", endpoint="daily", ticker="510300", times=None)

    # SH.510050 is suspended on the next evening's day and trades again the day after.
    (d1,) = universe.advance(1)
    suspend(universe, "XSHG", "510050", {d1.isoformat()})
    first = etl("sync")
    assert first.exit_code == 3, first.stderr
    assert first.summary["failed"][0]["symbol"] == "SH.510300"
    asked = dict(db.fetch("SELECT symbol, complete_through FROM etl_etf_days"))
    assert asked["SH.510050"] == d1 and asked["SH.510300"] < d1

    (d2,) = universe.advance(1)
    suspend(universe, "XSHG", "510050", {d1.isoformat()})
    assert etl("sync").exit_code == 3  # SH.510050 behind the others: its own request
    days = holding_days(db, "SH.510050")
    assert d1.isoformat() not in days and days[-1] == d2.isoformat()

    # Its suspension now lies behind its watermark, on a day the failing ETF's
    # record still reaches back to. Two lists, the two latest answers, and the
    # failing ETF's own request (with its retries): the suspension is not asked again.
    universe.advance(1)
    suspend(universe, "XSHG", "510050", {d1.isoformat()})
    api.reset_log()
    third = etl("sync")
    assert third.exit_code == 3, third.stderr
    assert [r.params.get("date") for r in api.requests if r.kind == "latest"] == [None, None]
    assert {r.ticker for r in api.requests if r.kind == "daily"} == {"510300"}
    assert third.summary["rows_inserted"] == third.summary["symbols_ok"]


def holding_days(db: Database, symbol: str) -> list[str]:
    return [
        d
        for (d,) in db.fetch(
            "SELECT (trade_date + interval '8 hours')::date::text FROM stock_daily_data "
            "WHERE symbol = $1 ORDER BY trade_date",
            (symbol,),
        )
    ]


# -- an empty stock_info, and today --------------------------------------------------


def test_sync_prices_with_no_etfs_says_to_sync_the_lists_first(etl, db):
    out = etl("sync-prices")
    assert out.exit_code == 1
    assert "run 'etl sync-list' first" in out.stderr
    assert '"status": "ok"' not in out.stdout


def test_the_default_end_date_is_today_in_shanghai_whatever_the_machine_zone(monkeypatch):
    now_china = datetime.now(timezone(timedelta(hours=8)))
    # A zone whose date differs from Shanghai's right now (18 h behind, or 6 h ahead).
    zone = "Pacific/Honolulu" if now_china.hour < 18 else "Pacific/Kiritimati"
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert date.today() != now_china.date()  # the machine's today is another day
        assert PriceOptions().end == shanghai_today() == now_china.date()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert "TZ" not in os.environ


def test_an_etf_whose_own_answer_comes_back_empty_is_asked_again(etl, db, api, universe):
    """An ETF behind the others asks for its own range; an answer without a record
    (a glitch of the source) must not make it look current: the next evening asks
    again from its watermark, and every day comes back."""
    assert etl("sync").exit_code == 0
    full = holding_days(db, "SH.510300")
    db.execute(
        "DELETE FROM stock_daily_data WHERE symbol = 'SH.510300' AND trade_date >= "
        "(SELECT max(trade_date) - interval '2 days' FROM stock_daily_data "
        "WHERE symbol = 'SH.510300')"
    )
    gone = len(full) - len(holding_days(db, "SH.510300"))
    assert gone >= 1
    api.add_fault("empty", endpoint="daily", ticker="510300", times=1)
    (d1,) = universe.advance(1)
    api.reset_log()
    assert etl("sync").exit_code == 0
    assert [r.ticker for r in api.requests if r.kind == "daily"] == ["510300"]
    assert holding_days(db, "SH.510300") == full[:-gone]

    (d2,) = universe.advance(1)
    api.reset_log()
    assert etl("sync").exit_code == 0
    assert [r.ticker for r in api.requests if r.kind == "daily"] == ["510300"]
    assert holding_days(db, "SH.510300") == [*full, d1.isoformat(), d2.isoformat()]
