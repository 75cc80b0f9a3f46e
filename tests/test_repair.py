"""`etl check --repair`: one range per ticker, the table back to the source's
values, nothing twice, and a second check that is clean."""

from __future__ import annotations

from datetime import date

import pytest
from crashhelper import checksums
from fakeapi.universe import Universe

from etl.db import Database

START, END = date(2024, 1, 2), date(2024, 3, 29)


@pytest.fixture
def universe() -> Universe:
    """Thirty ETFs over one quarter, three share splits; some ETFs are suspended on some days."""
    return Universe(n_etfs=30, start=START, end=END, seed=7)


def suspension_holes(universe: Universe) -> dict[str, list[str]]:
    """Per symbol, the trading days the source has no row for while it is listed
    between its first and last row: what a check reports before any repair."""
    days = [d.isoformat() for d in universe.trading_days()]
    out: dict[str, list[str]] = {}
    for exchange, market in (("XSHG", "SH"), ("XSHE", "SZ")):
        for etf in universe.etfs(exchange):
            have = [r["date"] for r in universe.daily_rows(exchange, etf.ticker)]
            if not have:
                continue
            span = days[days.index(have[0]) : days.index(have[-1]) + 1]
            missing = sorted(set(span) - set(have))
            if missing:
                out[f"{market}.{etf.ticker}"] = missing
    return out


def hole_days(report: dict) -> dict[str, list[str]]:
    """The check's holes as trading days per symbol."""
    out: dict[str, list[str]] = {}
    for hole in report["holes"]:
        first, last = hole["start"], hole["end"]
        for day in (d.isoformat() for d in trading_days(first, last)):
            out.setdefault(hole["symbol"], []).append(day)
    return out


def trading_days(first: str, last: str) -> list[date]:
    """As the test API's own calendar has them (never etl.calendar's)."""
    from fakeapi.universe import trading_days_between

    return trading_days_between(date.fromisoformat(first), date.fromisoformat(last))


def official_conversion(etl) -> None:
    """Record the conversion 1:3.8165 from the fund's announcement: its estimate from
    the prices is no round ratio, so until then every check lists it as
    needs_official_ratio."""
    out = etl("record-action", "SH.510300", "2024-03-11", "3.8165")
    assert out.exit_code == 0, out.stdout


def one_row_per_day(db: Database) -> None:
    assert db.fetch(
        "SELECT count(*) FROM (SELECT symbol, (trade_date + interval '8 hours')::date "
        "FROM stock_daily_data GROUP BY 1, 2 HAVING count(*) > 1) AS d"
    ) == [(0,)]


def daily_requests(api) -> list[tuple[str, str, str]]:
    return sorted(
        (r.ticker, r.params.get("start_date"), r.params.get("end_date"))
        for r in api.requests
        if r.kind == "daily"
    )


def test_suspensions_are_holes_until_the_source_confirms_them(etl, db, api, universe):
    assert etl("sync").exit_code == 0
    official_conversion(etl)
    expected = suspension_holes(universe)
    assert expected, "the universe must have suspended days for this test to mean anything"

    first = etl("check")
    assert first.exit_code == 3
    assert hole_days(first.summary) == expected

    api.reset_log()
    repaired = etl("check", "--repair")
    assert repaired.exit_code == 0, repaired.stdout
    # One request per ticker with holes, from its first to its last missing day.
    assert daily_requests(api) == sorted((s[3:], days[0], days[-1]) for s, days in expected.items())
    assert repaired.summary["repair"]["rows_inserted"] == 0
    again = etl("check")
    assert again.exit_code == 0, again.stdout
    assert again.summary["holes"] == []


def test_a_repair_whose_requests_failed_confirms_nothing(etl, db, api, universe):
    """An API that cannot be reached confirms no suspension: the holes stay findings."""
    assert etl("sync").exit_code == 0
    first = etl("check")
    assert first.exit_code == 3
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}/api/fin"
    repaired = etl("check", "--repair", env={"TSANGHI_BASE_URL": down})
    assert repaired.exit_code == 1, repaired.stdout
    assert repaired.summary["repair"]["status"] == "failed"
    assert repaired.summary["repair"]["findings_confirmed"] == 0
    assert repaired.summary["holes"] == first.summary["holes"]
    assert db.fetch("SELECT count(*) FROM etl_check_confirmed") == [(0,)]


def test_repair_brings_back_deleted_and_damaged_rows_exactly(etl, db, api, universe):
    assert etl("sync").exit_code == 0
    official_conversion(etl)
    assert etl("check", "--repair").exit_code == 0  # the suspensions, confirmed once
    reference = checksums(db)

    # Plant: a run of three days, one day, the last day of an active ETF, and a
    # row whose high another writer stored below its close.
    db.execute(
        "DELETE FROM stock_daily_data WHERE symbol = 'SH.510050' "
        "AND trade_date BETWEEN '2024-02-20' AND '2024-02-22'"
    )
    db.execute(
        "DELETE FROM stock_daily_data WHERE symbol = 'SZ.159915' AND trade_date = '2024-03-05'"
    )
    db.execute(
        "DELETE FROM stock_daily_data WHERE symbol = 'SH.510300' AND trade_date = '2024-03-29'"
    )
    db.execute(
        "UPDATE stock_daily_data SET high_price = close_price - 0.01 "
        "WHERE symbol = 'SZ.159919' AND trade_date = '2024-01-10'"
    )
    found = etl("check")
    assert found.exit_code == 3
    assert found.summary["holes"] == [
        {"symbol": "SH.510050", "start": "2024-02-20", "end": "2024-02-22", "days": 3},
        {"symbol": "SH.510300", "start": "2024-03-29", "end": "2024-03-29", "days": 1},
        {"symbol": "SZ.159915", "start": "2024-03-05", "end": "2024-03-05", "days": 1},
    ]
    assert [(r["symbol"], r["trade_date"], r["reason"]) for r in found.summary["suspect_rows"]] == [
        ("SZ.159919", "2024-01-10", "ohlc")
    ]

    api.reset_log()
    repaired = etl("check", "--repair")
    assert repaired.exit_code == 0, repaired.stdout
    assert daily_requests(api) == [
        ("159915", "2024-03-05", "2024-03-05"),
        ("159919", "2024-01-10", "2024-01-10"),
        ("510050", "2024-02-20", "2024-02-22"),
        ("510300", "2024-03-29", "2024-03-29"),
    ]
    assert repaired.summary["repair"]["rows_inserted"] == 5
    assert repaired.summary["repair"]["rows_updated"] == 1
    assert checksums(db) == reference
    one_row_per_day(db)

    # Nothing left to ask: a second repair makes no request and changes nothing.
    api.reset_log()
    assert etl("check", "--repair").exit_code == 0
    assert api.request_count("daily") == 0
    assert checksums(db) == reference


def test_repair_records_a_split_found_in_rows_it_did_not_load(etl, db, universe):
    """Rows stored before splits were detected (or by another writer) carry a change
    against the unadjusted close; the repair records the split and fixes that day."""
    assert etl("sync").exit_code == 0
    official_conversion(etl)
    assert etl("check", "--repair").exit_code == 0
    fixed = db.fetch(
        "SELECT price_change::text, price_change_pct::text FROM stock_daily_data "
        "WHERE symbol = 'SH.510050' AND trade_date = '2024-01-15'"
    )
    db.execute("DELETE FROM etl_corporate_actions")
    db.execute(
        "UPDATE stock_daily_data AS t SET price_change = t.close_price - p.close_price, "
        "price_change_pct = round((t.close_price - p.close_price) * 100 / p.close_price, 4) "
        "FROM stock_daily_data AS p WHERE t.symbol = 'SH.510050' AND p.symbol = t.symbol "
        "AND t.trade_date = '2024-01-15' AND p.trade_date = '2024-01-12'"
    )
    found = etl("check")
    assert found.exit_code == 3
    assert [
        (a["symbol"], a["ex_date"], a["recorded"]) for a in found.summary["corporate_actions"]
    ] == [
        ("SH.510050", "2024-01-15", False),
        ("SH.510300", "2024-03-11", False),
        ("SZ.159915", "2024-02-26", False),
    ]
    repaired = etl("check", "--repair")
    # Recorded, but the conversion's estimate is no round ratio: the check says so.
    assert repaired.exit_code == 3, repaired.stdout
    assert repaired.summary["counts"]["unrecorded_corporate_actions"] == 0
    assert [
        (a["symbol"], a["ex_date"], a["source"]) for a in repaired.summary["needs_official_ratio"]
    ] == [("SH.510300", "2024-03-11", "detected")]
    assert repaired.summary["holes"] == [] and repaired.summary["suspect_rows"] == []
    assert repaired.summary["repair"]["splits_recorded"] == 3
    assert repaired.summary["repair"]["requests"] == 0  # nothing to fetch for a split
    assert db.fetch(
        "SELECT symbol, ex_date::text, trim_scale(ratio)::text, source FROM etl_corporate_actions "
        "WHERE ratio IN (2, 0.1) ORDER BY symbol"
    ) == [
        ("SH.510050", "2024-01-15", "2", "detected"),
        ("SZ.159915", "2024-02-26", "0.1", "detected"),
    ]
    assert (
        db.fetch(
            "SELECT price_change::text, price_change_pct::text FROM stock_daily_data "
            "WHERE symbol = 'SH.510050' AND trade_date = '2024-01-15'"
        )
        == fixed
    )
