"""etl check: the audit of stored ETF history, against a real database synced from the
local test API, with holes, bad rows and share splits planted the way they happen.

Expected holes are computed from the universe itself (its suspensions and the
rows the tests delete), independently of etl/check.py: a set difference against
the test API's calendar.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from fakeapi.universe import STANDARD_ACTIONS, Universe
from test_shared_tables import old_system_writes

from etl.check import audit
from etl.db import Database
from etl.read import read_only_url

D = date.fromisoformat
# ETFs of the tests' universe (etlfixtures: 30 ETFs, 2024-01-02..2024-03-29, seed 7)
# that trade every day and have no share split: each gets one planted problem.
MIDDLE = "SH.510374"  # one trading day deleted
RUN = "SH.510500"  # three trading days deleted, over a weekend
LAST = "SH.512227"  # the last trading day deleted while active
SIXTEEN = "SH.513879"  # a row rewritten by the older system at 16:00 the day before
HIGH_LOW = "SH.515719"  # a row rewritten with high below close
ZEROS = "SZ.159075"  # five consecutive rows with volume 0
FOUR_ZEROS = "SZ.159190"  # four: not a streak
SATURDAY = "SZ.159234"  # an extra row on a Saturday
UNTOUCHED = "SZ.159307"


def expected_holes(universe: Universe, deleted: dict[str, set[date]]) -> list[dict]:
    """Runs of trading days without a row, as the test API serves them, less `deleted`."""
    calendar = universe.trading_days()
    stored: dict[str, set[date]] = {}
    exchange_of: dict[str, str] = {}
    for etf in universe.etfs():
        symbol = ("SH." if etf.exchange == "XSHG" else "SZ.") + etf.ticker
        days = {D(r["date"]) for r in universe.daily_rows(etf.exchange, etf.ticker)}
        stored[symbol] = days - deleted.get(symbol, set())
        exchange_of[symbol] = etf.exchange
    latest: dict[str, date] = {}
    for symbol, days in stored.items():
        if days:
            ex = exchange_of[symbol]
            latest[ex] = max(latest.get(ex, min(days)), max(days))
    holes = []
    for etf in universe.etfs():
        symbol = ("SH." if etf.exchange == "XSHG" else "SZ.") + etf.ticker
        days = stored[symbol]
        if not days:
            continue
        end = latest[etf.exchange] if etf.is_active else max(days)
        run: list[date] = []
        for day in [d for d in calendar if min(days) <= d <= end] + [None]:
            if day is not None and day not in days:
                run.append(day)
                continue
            if run:
                holes.append(
                    {"symbol": symbol, "start": str(run[0]), "end": str(run[-1]), "days": len(run)}
                )
            run = []
    return sorted(holes, key=lambda h: (h["symbol"], h["start"]))


def _rows(db: Database, symbol: str, days: list[str]) -> list[dict]:
    """Stored rows of `symbol` on these trading days, as the test API's dicts."""
    out = []
    for day in days:
        ((o, h, low, c, v),) = db.fetch(
            "SELECT open_price::text, high_price::text, low_price::text, close_price::text, "
            "volume FROM stock_daily_data WHERE symbol = $1 "
            "AND (trade_date + interval '8 hours')::date = $2::date",
            (symbol, day),
        )
        # As the API's dicts: floats of at most four decimals (their str() is exact).
        prices = {"open": float(o), "high": float(h), "low": float(low), "close": float(c)}
        out.append({"date": day, **prices, "volume": v})
    return out


def _delete(db: Database, symbol: str, days: list[str]) -> None:
    db.execute(
        "DELETE FROM stock_daily_data WHERE symbol = $1 "
        "AND (trade_date + interval '8 hours')::date = ANY($2::date[])",
        (symbol, "{" + ",".join(days) + "}"),
    )


def _name(db: Database, symbol: str) -> str:
    return db.fetch("SELECT stock_name FROM stock_info WHERE symbol = $1", (symbol,))[0][0]


def _actions(db: Database) -> list[dict]:
    """What the check must list for the test API's standard actions: the recorded row
    where there is one, else the detected round ratio."""
    recorded = {
        (s, str(d)): (r, src)
        for s, d, r, src in db.fetch(
            "SELECT symbol, ex_date, ratio::text, source FROM etl_corporate_actions"
        )
    }
    out = []
    for action in STANDARD_ACTIONS:
        key = (action.symbol, str(action.ex_date))
        ratio, source = recorded.get(key, (str(action.ratio), "detected"))
        out.append(
            {
                "symbol": action.symbol,
                "ex_date": str(action.ex_date),
                "ratio": Decimal(ratio),
                "source": source,
                "recorded": key in recorded,
            }
        )
    return sorted(out, key=lambda a: (a["symbol"], a["ex_date"]))


def _decimals(actions: list[dict]) -> list[dict]:
    return [{**a, "ratio": Decimal(str(a["ratio"]))} for a in actions]


def _fingerprint(db: Database) -> list[tuple]:
    """Row versions and catalog of the database: any write changes them."""
    return db.fetch(
        "SELECT 'daily', count(*), sum(xmin::text::bigint) FROM stock_daily_data "
        "UNION ALL SELECT 'info', count(*), sum(xmin::text::bigint) FROM stock_info "
        "UNION ALL SELECT 'actions', count(*), sum(xmin::text::bigint) FROM etl_corporate_actions "
        "UNION ALL SELECT 'confirmed', count(*), sum(xmin::text::bigint) FROM etl_check_confirmed "
        "UNION ALL SELECT 'migrations', count(*), sum(xmin::text::bigint) FROM schema_migrations "
        "UNION ALL SELECT 'classes', count(*), sum(xmin::text::bigint) FROM pg_class "
        "ORDER BY 1"
    )


@pytest.fixture
def synced(etl, db, universe):
    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    # The conversion 1:3.8165 is recorded from the fund's announcement: an estimate
    # from the prices could never give its exact ratio.
    conversion = next(a for a in STANDARD_ACTIONS if a.ratio == Decimal("3.8165"))
    db.execute(
        "INSERT INTO etl_corporate_actions (symbol, ex_date, ratio, source, recorded_at) "
        "VALUES ($1, $2::date, $3::numeric, 'official', now()) ON CONFLICT (symbol, ex_date) "
        "DO UPDATE SET ratio = EXCLUDED.ratio, source = 'official'",
        (conversion.symbol, str(conversion.ex_date), str(conversion.ratio)),
    )
    return db


def plant(db: Database) -> dict[str, set[date]]:
    """Every problem of this module's ETFs; returns the trading days deleted."""
    deleted = {
        MIDDLE: ["2024-02-06"],
        RUN: ["2024-03-01", "2024-03-04", "2024-03-05"],
        LAST: ["2024-03-29"],
    }
    for symbol, days in deleted.items():
        _delete(db, symbol, days)
    # The older system's writes: a +08:00 timestamp from a UTC session is stored at
    # 16:00 of the day before; from a Shanghai session at midnight.
    row = _rows(db, SIXTEEN, ["2024-02-20"])
    _delete(db, SIXTEEN, ["2024-02-20"])
    old_system_writes(db, "UTC", SIXTEEN, _name(db, SIXTEEN), row, last_sync=False)
    (row,) = _rows(db, HIGH_LOW, ["2024-02-21"])
    _delete(db, HIGH_LOW, ["2024-02-21"])
    bad = {**row, "high": float(Decimal(str(row["close"])) - Decimal("0.001"))}
    old_system_writes(db, "Asia/Shanghai", HIGH_LOW, _name(db, HIGH_LOW), [bad], last_sync=False)
    (friday,) = _rows(db, SATURDAY, ["2024-03-15"])
    saturday = {**friday, "date": "2024-03-16"}
    old_system_writes(db, "Asia/Shanghai", SATURDAY, _name(db, SATURDAY), [saturday], False)
    for symbol, first, last in (
        (ZEROS, "2024-03-11", "2024-03-15"),
        (FOUR_ZEROS, "2024-03-11", "2024-03-14"),
    ):
        db.execute(
            "UPDATE stock_daily_data SET volume = 0, turnover = 0 WHERE symbol = $1 "
            "AND (trade_date + interval '8 hours')::date BETWEEN $2::date AND $3::date",
            (symbol, first, last),
        )
    return {s: {D(d) for d in days} for s, days in deleted.items()}


SUSPECT = [
    {"symbol": SIXTEEN, "trade_date": "2024-02-20", "reason": "not_midnight"},
    {"symbol": HIGH_LOW, "trade_date": "2024-02-21", "reason": "ohlc"},
    *(
        {"symbol": ZEROS, "trade_date": f"2024-03-{d}", "reason": "zero_volume"}
        for d in (11, 12, 13, 14, 15)
    ),
    {"symbol": SATURDAY, "trade_date": "2024-03-16", "reason": "not_trading_day"},
]


def _sorted(items: list[dict]) -> list[dict]:
    return sorted(items, key=lambda s: (s["symbol"], s["trade_date"], s["reason"]))


def test_check_reports_exactly_the_planted_holes_rows_and_splits(etl, synced, universe):
    db = synced
    deleted = plant(db)
    before = _fingerprint(db)
    out = etl("check")
    assert out.exit_code == 3, out.stderr
    report = out.summary
    holes = expected_holes(universe, deleted)
    # The planted ones are among them, exactly as planted.
    for hole in (
        {"symbol": MIDDLE, "start": "2024-02-06", "end": "2024-02-06", "days": 1},
        {"symbol": RUN, "start": "2024-03-01", "end": "2024-03-05", "days": 3},
        {"symbol": LAST, "start": "2024-03-29", "end": "2024-03-29", "days": 1},
    ):
        assert hole in holes
    assert report["holes"] == holes
    assert _sorted(report["suspect_rows"]) == _sorted(SUSPECT)
    assert report["suspect_rows"] == sorted(
        report["suspect_rows"], key=lambda s: (s["symbol"], s["trade_date"])
    )
    assert _decimals(report["corporate_actions"]) == _actions(db)
    unrecorded = sum(not a["recorded"] for a in report["corporate_actions"])
    assert report["counts"] == {
        "etfs": 30,
        "holes": len(holes),
        "hole_days": sum(h["days"] for h in holes),
        "suspect_rows": len(SUSPECT),
        "corporate_actions": 3,
        "unrecorded_corporate_actions": unrecorded,
        "needs_official_ratio": 0,
    }
    assert report["clean"] is False and report["status"] == "findings"
    assert report["latest"] == {"XSHE": "2024-03-29", "XSHG": "2024-03-29"}
    assert _fingerprint(db) == before  # the check wrote nothing

    # One exchange, or some symbols: only their findings.
    out = etl("check", "--exchange", "XSHE")
    assert out.summary["holes"] == [h for h in holes if h["symbol"].startswith("SZ.")]
    assert _sorted(out.summary["suspect_rows"]) == _sorted(
        [s for s in SUSPECT if s["symbol"].startswith("SZ.")]
    )
    out = etl("check", "--symbol", RUN, "--symbol", SIXTEEN.lower())
    assert out.exit_code == 3
    assert out.summary["holes"] == [h for h in holes if h["symbol"] == RUN]
    assert out.summary["suspect_rows"] == [s for s in SUSPECT if s["symbol"] == SIXTEEN]
    assert out.summary["counts"]["etfs"] == 2


def test_confirmed_findings_are_not_reported_again(etl, synced, universe):
    db = synced
    deleted = plant(db)
    holes = expected_holes(universe, deleted)
    suspended = sorted({h["symbol"] for h in holes} - set(deleted))
    assert suspended  # the universe's suspensions: holes until the source confirms them
    rows = [(s, "hole", "2024-01-01", "2024-03-31") for s in suspended]
    rows += [
        (ZEROS, "zero_volume", "2024-03-11", "2024-03-15"),
        # Confirms only the first two days of RUN's three: the third stays a hole.
        (RUN, "hole", "2024-03-01", "2024-03-04"),
        (HIGH_LOW, "zero_volume", "2024-02-21", "2024-02-21"),  # another finding: no effect
    ]
    for row in rows:
        db.execute(
            "INSERT INTO etl_check_confirmed (symbol, finding, first_day, last_day, "
            "confirmed_at) VALUES ($1, $2, $3::date, $4::date, now())",
            row,
        )
    out = etl("check")
    assert out.exit_code == 3
    assert out.summary["holes"] == [
        {"symbol": MIDDLE, "start": "2024-02-06", "end": "2024-02-06", "days": 1},
        {"symbol": RUN, "start": "2024-03-05", "end": "2024-03-05", "days": 1},
        {"symbol": LAST, "start": "2024-03-29", "end": "2024-03-29", "days": 1},
    ]
    assert _sorted(out.summary["suspect_rows"]) == _sorted(
        [s for s in SUSPECT if s["reason"] != "zero_volume"]
    )


def test_a_clean_etf_exits_0_and_the_human_output_fits_80_columns(etl, synced):
    out = etl("check", "--symbol", UNTOUCHED)
    assert out.exit_code == 0, out.stdout
    assert out.summary["clean"] is True and out.summary["status"] == "ok"
    assert (out.summary["holes"], out.summary["suspect_rows"]) == ([], [])
    assert out.summary["corporate_actions"] == []

    # The human output: a summary, capped lists.
    text = etl("check", as_json=False)
    assert text.exit_code == 3
    lines = text.stdout.splitlines()
    assert lines[0].startswith("check: FINDINGS, 30 ETFs")
    assert all(len(line) <= 80 for line in lines), lines
    assert any(re.fullmatch(r"  SZ\.159915  2024-02-26 +0\.1  \w+.*", line) for line in lines)


def test_the_picture_is_self_contained_and_counts_a_known_month(etl, synced, universe, tmp_path):
    db = synced
    deleted = plant(db)
    path = tmp_path / "out" / "coverage.html"
    out = etl("check", "--picture", str(path))
    assert out.exit_code == 3
    assert out.summary["picture"] == str(path)
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    assert not re.search(r"https?:", html)
    assert "<script" not in html and "<link" not in html and "url(" not in html
    # February 2024 on XSHG: every active XSHG ETF was listed and has rows; the ETFs with
    # holes that month are those of the expected holes.
    active = [e for e in universe.etfs("XSHG") if e.is_active]
    holed = {
        h["symbol"]
        for h in expected_holes(universe, deleted)
        if h["symbol"].startswith("SH.") and h["start"] <= "2024-02-29" and h["end"] >= "2024-02-01"
    }
    assert MIDDLE in holed
    assert (
        f'data-month="2024-02" data-expected="{len(active)}" data-present="{len(active)}" '
        f'data-holes="{len(holed)}"'
    ) in html
    # A month no stored row reaches shows what is expected and nothing present: ETF 560514
    # (delisted in 2023) if stock_info has its listing dates.
    listed = db.fetch("SELECT list_date IS NOT NULL FROM stock_info WHERE symbol = 'SH.560514'")
    if listed and listed[0][0]:
        assert re.search(r'data-month="2023-06" data-expected="\d+" data-present="0"', html)


def test_the_check_works_on_a_read_only_connection(etl, synced, universe):
    db = synced
    plant(db)
    writable = etl("check").summary
    out = etl("check", env={"DATABASE_URL": read_only_url(db.url)})
    assert out.exit_code == 3, out.stdout + out.stderr
    read_only = out.summary
    writable.pop("seconds"), read_only.pop("seconds")
    assert read_only == writable
    report = audit(Database(read_only_url(db.url)))
    assert [h.symbol for h in report.holes] == [h["symbol"] for h in writable["holes"]]


def test_check_needs_a_migrated_database(etl, db):
    out = etl("check")
    assert out.exit_code == 1
    assert out.summary["status"] == "failed"
    assert "etl migrate" in out.summary["error"]


def test_check_refuses_a_bad_symbol(etl):
    out = etl("check", "--symbol", "510050")
    assert out.exit_code == 2
    assert out.summary["status"] == "usage_error"
    assert "--symbol" in out.summary["error"]


NOTHING = "nothing to audit: no prices stored for any ETF; run 'etl sync' first"


def test_check_on_a_database_without_prices_says_there_is_nothing_to_audit(etl, db):
    assert etl("migrate").exit_code == 0
    out = etl("check")
    assert out.exit_code == 1
    assert out.summary == {
        "status": "failed",
        "exit_code": 1,
        "error": NOTHING,
        "reasons": [NOTHING],
    }
    human = etl("check", as_json=False)
    assert human.exit_code == 1
    assert human.stdout == "" and human.stderr == f"Error: {NOTHING}\n"
    # ETFs listed, none priced yet: still nothing to audit.
    assert etl("sync-list").exit_code == 0
    out = etl("check", "--exchange", "XSHE")
    assert out.exit_code == 1
    assert out.summary["error"] == (
        "nothing to audit: no prices stored for the ETFs of XSHE; run 'etl sync' first"
    )
    out = etl("check", "--symbol", UNTOUCHED)
    assert out.summary["error"] == (
        f"nothing to audit: no prices stored for {UNTOUCHED}; run 'etl sync' first"
    )


def test_check_refuses_unknown_symbols_as_sync_prices_does(etl, synced):
    refused = (
        "not an ETF of the chosen exchanges in stock_info: SH.999999; "
        "run 'etl sync-list' first, or check the symbol"
    )
    out = etl("check", "--symbol", "SH.999999", "--symbol", UNTOUCHED)
    assert out.exit_code == 1
    assert out.summary == {
        "status": "failed",
        "exit_code": 1,
        "error": refused,
        "reasons": [refused],
    }
    prices = etl("sync-prices", "--symbol", "SH.999999")
    assert prices.exit_code == 1 and prices.summary["error"] == refused
    # A known ETF of another exchange than the one chosen is refused the same way.
    out = etl("check", "--exchange", "XSHG", "--symbol", UNTOUCHED)
    assert out.exit_code == 1
    assert out.summary["error"] == refused.replace("SH.999999", UNTOUCHED)


def test_the_calendar_agrees_with_the_holiday_tables_day_by_day():
    """is_trading_day answers from chinese_calendar's tables without its per-call scan:
    the same answer for every day they cover but the five weekdays the exchanges
    closed although the State Council's table has them as working days, None for a
    weekday beyond them."""
    import chinese_calendar

    from etl.calendar import is_trading_day

    exchange_only = {D("2005-02-07"), D("2005-02-08"), D("2006-01-26"), D("2006-01-27")}
    exchange_only.add(D("2024-02-09"))
    years = sorted({d.year for d in chinese_calendar.holidays})
    day, checked = date(years[0], 1, 1), 0
    while day.year <= years[-1]:
        expected = day.weekday() < 5 and not chinese_calendar.is_holiday(day)
        if day in exchange_only:
            assert expected and is_trading_day(day) is False, day
        else:
            assert is_trading_day(day) is expected, day
        day += timedelta(days=1)
        checked += 1
    assert checked > 365 * 15
    monday = date(years[-1] + 1, 3, 6)
    monday -= timedelta(days=monday.weekday())
    assert is_trading_day(monday) is None
    assert is_trading_day(monday + timedelta(days=5)) is False  # a Saturday: never


def test_reading_in_parallel_parts_finds_the_same(synced, monkeypatch):
    """Many ETFs are read in parts on several connections sharing one snapshot: the
    report is the same as from one query."""
    from etl import check

    db = synced
    plant(db)
    monkeypatch.setattr(check, "PARALLEL_MIN_ETFS", 10**9)
    alone = check.audit(db)
    monkeypatch.setattr(check, "PARALLEL_MIN_ETFS", 1)
    monkeypatch.setattr(check, "MAX_WORKERS", 3)
    monkeypatch.setattr(check.os, "cpu_count", lambda: 3)
    queries: list[str] = []
    frame = check._frame
    monkeypatch.setattr(
        check, "_frame", lambda cur, sql, *a: queries.append(sql) or frame(cur, sql, *a)
    )
    parts = check.audit(db)
    assert queries.count(check.query("check_rows")) == 3
    assert alone.suspect_rows and alone.holes and alone.corporate_actions
    assert (parts.holes, parts.suspect_rows, parts.corporate_actions) == (
        alone.holes,
        alone.suspect_rows,
        alone.corporate_actions,
    )
    # Read-only all the way: the parts' connections too.
    parts_ro = check.audit(Database(read_only_url(db.url)))
    assert parts_ro.holes == alone.holes
