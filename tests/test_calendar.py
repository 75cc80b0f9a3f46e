"""The exchanges' trading calendar (etl/calendar.py) against the days SSE and SZSE
published as closed or open, and what it means for the nightly, the check and
the run summary: over the local test API and a real PostgreSQL.

The expected dates are written out here from the exchanges' holiday notices; the
test API's calendar (tests/fakeapi/universe.py) is its own, never etl.calendar's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import chinese_calendar
import pytest
from etlfixtures import suspend
from fakeapi import Universe
from fakeapi import is_trading_day as api_trades
from test_check import expected_holes

from etl import calendar
from etl.calendar import (
    is_trading_day,
    stale_table_warning,
    trading_days,
    trading_days_between,
)
from etl.snapshot import Snapshot

D = date.fromisoformat

# Days SSE and SZSE were closed, from their holiday notices.
CLOSED = [
    "2005-02-07",  # Spring Festival 2005: closed from Monday 7 February (the State
    "2005-02-08",  # Council's holiday began on the 9th) to the 15th
    "2005-02-15",
    "2006-01-26",  # Spring Festival 2006: closed from Thursday 26 January (the State
    "2006-01-27",  # Council's from the 28th) to 3 February
    "2006-02-03",
    "2024-02-09",  # Spring Festival Eve 2024, a Friday the State Council had as a working day
    "2024-02-12",
    "2024-02-16",
    "2024-02-04",  # a make-up working Sunday: no trading on weekends
    "2024-02-18",  # another
    *(f"2024-10-0{d}" for d in range(1, 8)),  # National Day 2024
    "2024-09-29",  # its make-up working Sunday
    "2024-10-12",  # and Saturday
    "2024-01-01",
    "2024-04-04",  # Qingming
    "2024-06-10",  # Dragon Boat
    "2024-09-17",  # Mid-Autumn
]
OPEN = [
    "2005-02-04",  # the Friday before the 2005 closure
    "2005-02-16",  # the first day after it
    "2006-01-25",
    "2006-02-06",
    "2024-02-08",  # the Thursday before Spring Festival Eve
    "2024-02-19",  # the first day after Spring Festival
    "2024-09-30",
    "2024-10-08",  # the first day after National Day
    "2024-10-11",
]
EXCHANGE_ONLY = {D(d) for d in ("2005-02-07", "2005-02-08", "2006-01-26", "2006-01-27")}
EXCHANGE_ONLY.add(D("2024-02-09"))
# The first year the installed State Council table does not cover (2027 with
# chinesecalendar 1.11): read from the package itself, not from etl.calendar.
BEYOND = max(d.year for d in chinese_calendar.holidays) + 1


@pytest.mark.parametrize("day", CLOSED)
def test_a_published_closure_is_no_trading_day(day):
    assert is_trading_day(D(day)) is False
    assert api_trades(D(day)) is False  # the test API serves no row on it either


@pytest.mark.parametrize("day", OPEN)
def test_a_published_trading_day_is_one(day):
    assert is_trading_day(D(day)) is True
    assert api_trades(D(day)) is True


def test_the_exchange_only_closures_are_the_five_the_table_calls_working_days():
    assert calendar.EXCHANGE_ONLY_CLOSURES == EXCHANGE_ONLY
    for day in EXCHANGE_ONLY:
        assert day.weekday() < 5 and chinese_calendar.is_workday(day)


def test_weekdays_beyond_the_table_are_unknown_until_someone_traded():
    first = date(BEYOND, 3, 1)  # a Monday in 2027
    first = date(BEYOND, 3, 1 + (7 - first.weekday()) % 7)
    week = [date(BEYOND, 3, first.day + k) for k in range(7)]
    assert [is_trading_day(d) for d in week] == [None] * 5 + [False, False]
    # The nightly asks every weekday it cannot rule out...
    assert trading_days_between(week[0], week[-1]) == week[1:5]
    # ...the check counts those an ETF has a row on.
    assert trading_days(week[0], week[-1], {week[1], week[3]}) == [week[1], week[3]]
    assert trading_days(D("2024-02-05"), D("2024-02-19")) == [
        D(d) for d in ("2024-02-05", "2024-02-06", "2024-02-07", "2024-02-08", "2024-02-19")
    ]


def test_the_stale_table_warning_says_what_to_do():
    last = BEYOND - 1
    assert stale_table_warning(date(last, 12, 31)) is None
    assert stale_table_warning(date(BEYOND, 1, 4)) == (
        f"the installed chinesecalendar knows the exchanges' holidays up to {last} only: "
        f"{BEYOND}'s holidays are unknown to it, so each weekday of {BEYOND} is asked of "
        "the API and an empty answer is taken for a closure. Upgrade it (pip install "
        f"--upgrade chinesecalendar) once it publishes the holidays of {BEYOND}"
    )


# -- against the test API and a database ------------------------------------------


def _clock(day: date) -> type[datetime]:
    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            evening = datetime(day.year, day.month, day.day, 19, 30, tzinfo=calendar.SHANGHAI)
            return evening.astimezone(tz) if tz else evening.replace(tzinfo=None)

    return Clock


@pytest.fixture
def universe(request) -> Universe:
    """The universe a test names with ``@pytest.mark.parametrize("universe", ...,
    indirect=True)``: (n_etfs, start, end), no share splits."""
    n, start, end = request.param
    return Universe(n_etfs=n, start=D(start), end=D(end), seed=7, actions=())


@pytest.fixture
def today(monkeypatch) -> Callable[[date], None]:
    """Set today in Asia/Shanghai (19:30, the nightly's hour) for every part of etl."""
    return lambda day: monkeypatch.setattr(calendar, "datetime", _clock(day))


def _evenings(first: str, last: str) -> list[date]:
    """Monday to Friday evenings (the cron line's days), holidays included."""
    out, day = [], D(first)
    while day <= D(last):
        if day.weekday() < 5:
            out.append(day)
        day = date.fromordinal(day.toordinal() + 1)
    return out


@pytest.mark.parametrize("universe", [(8, "2005-01-04", "2024-03-29")], indirect=True)
def test_check_is_clean_over_the_exchange_only_closures(etl, db, universe):
    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    on = dict(
        db.fetch(
            "SELECT (trade_date + interval '8 hours')::date::text, count(*) FROM stock_daily_data "
            "WHERE (trade_date + interval '8 hours')::date = ANY($1::date[]) GROUP BY 1",
            ("{" + ",".join(d.isoformat() for d in sorted(EXCHANGE_ONLY)) + ",2005-02-04,"
             "2006-01-25,2024-02-08,2024-02-19}",),
        )
    )  # fmt: skip
    # ETFs traded around each closure, and nobody on it.
    assert set(on) == {"2005-02-04", "2006-01-25", "2024-02-08", "2024-02-19"}
    assert on["2005-02-04"] >= 1 and on["2006-01-25"] >= 2 and on["2024-02-19"] == 8

    checked = etl("check")
    assert checked.exit_code == 0, checked.stdout
    assert checked.summary["status"] == "ok"
    assert checked.summary["holes"] == [] == expected_holes(universe, {})
    assert checked.summary["counts"]["etfs"] == 8


@pytest.mark.parametrize("universe", [(8, "2024-01-02", "2024-02-02")], indirect=True)
def test_every_nightly_around_spring_festival_2024_costs_four_requests(
    etl, db, api, universe, today
):
    """Lists and the latest day of both exchanges: nothing asked for the holidays,
    Spring Festival Eve included, nothing per ticker, on holiday evenings and after."""
    assert etl("sync").exit_code == 0
    costs = {}
    for evening in _evenings("2024-02-05", "2024-02-20"):
        if api_trades(evening):
            assert universe.advance(1) == [evening]
        api.reset_log()
        today(evening)
        s = etl("sync").summary
        assert s["status"] == "ok", s
        assert s["rows_inserted"] == (8 if api_trades(evening) else 0)
        assert api.request_count("daily") == 0
        costs[evening.isoformat()] = api.request_count()
    assert costs == {d.isoformat(): 4 for d in _evenings("2024-02-05", "2024-02-20")}
    assert etl("check").summary["holes"] == []


def _references(universe: Universe) -> dict[str, str]:
    """Exchange -> the ticker the nightly asks over a span of unknown weekdays: the
    first of its ETFs by symbol (all of them trade on both sides of the span)."""
    return {ex: min(e.ticker for e in universe.etfs(ex)) for ex in ("XSHG", "XSHE")}


def _national_day(etl, universe, today, days: int = 1) -> date:
    """Synced up to 30 September of the first year beyond the table; then the test
    API trades again from 8 October (it closes 1-7 October); returns the day it
    advanced to (``days`` trading days on)."""
    today(D(f"{BEYOND}-09-30"))
    assert etl("sync").exit_code == 0
    new = universe.advance(days)
    assert new[0] == D(f"{BEYOND}-10-08")
    today(new[-1])
    return new[-1]


def _daily_requests(api) -> list[tuple[str, str, str, str]]:
    return sorted(
        (r.exchange, r.params["ticker"], r.params["start_date"], r.params["end_date"])
        for r in api.requests
        if r.kind == "daily"
    )


@pytest.mark.parametrize("universe", [(8, f"{BEYOND}-09-01", f"{BEYOND}-09-30")], indirect=True)
def test_a_golden_week_beyond_the_table_costs_six_requests(etl, db, api, universe, today):
    """National Day of 2027, which the installed table does not know: one ETF per
    exchange that traded on both sides of it is asked over the unknown weekdays,
    its empty days are closures, and the check finds no hole; today past the
    table warns once."""
    reopened = _national_day(etl, universe, today)
    api.reset_log()
    out = etl("sync")
    s = out.summary
    assert out.exit_code == 0 and s["status"] == "ok", out.stderr
    # 2 lists, 2 undated latest days, and the references over 1-7 October.
    assert api.request_count() == 6 and api.request_count("latest") == 2
    span = (f"{BEYOND}-10-01", f"{BEYOND}-10-07")
    assert _daily_requests(api) == sorted((ex, t, *span) for ex, t in _references(universe).items())
    assert s["rows_inserted"] == 8
    warning = stale_table_warning(reopened)
    assert warning is not None and s["warnings"] == [warning]
    assert out.stderr.count(warning) == 1
    closed = [f"{BEYOND}-10-0{d}" for d in (1, 4, 5, 6, 7)]
    assert Snapshot.open(s["snapshot"]).manifest()["closed_beyond_table"] == closed

    checked = etl("check")
    assert checked.summary["status"] == "ok" and checked.summary["holes"] == []


@pytest.mark.parametrize("universe", [(8, f"{BEYOND}-09-01", f"{BEYOND}-09-30")], indirect=True)
def test_a_trading_day_after_an_unknown_holiday_is_asked_of_each_exchange(
    etl, db, api, universe, today
):
    """Cron missed 8 October: the references show it traded, so it is asked of each
    exchange (the holidays are not), and nothing is left behind."""
    monday = _national_day(etl, universe, today, days=2)
    api.reset_log()
    s = etl("sync").summary
    assert s["status"] == "ok" and s["rows_inserted"] == 2 * 8
    asked = sorted(r.params.get("date", "") for r in api.requests if r.kind == "latest")
    assert asked == ["", "", f"{BEYOND}-10-08", f"{BEYOND}-10-08"]
    assert len(_daily_requests(api)) == 2 and api.request_count() == 8
    assert monday == D(f"{BEYOND}-10-11")
    checked = etl("check")
    assert checked.summary["status"] == "ok" and checked.summary["holes"] == []


@pytest.mark.parametrize("universe", [(8, f"{BEYOND}-09-01", f"{BEYOND}-09-30")], indirect=True)
def test_a_reference_suspended_on_a_trading_day_leaves_no_day_behind(etl, db, api, universe, today):
    """One exchange only, so two of its ETFs are the references; the first had no
    bar on 8 October (suspended), the second did: 8 October was a trading day."""
    today(D(f"{BEYOND}-09-30"))
    assert etl("sync", "--exchange", "XSHG").exit_code == 0
    universe.advance(2)
    today(D(f"{BEYOND}-10-11"))
    first, second = sorted(e.ticker for e in universe.etfs("XSHG"))[:2]
    suspend(universe, "XSHG", first, {f"{BEYOND}-10-08"})
    api.reset_log()
    s = etl("sync", "--exchange", "XSHG").summary
    assert s["status"] == "ok", s
    assert sorted(t for _, t, *_ in _daily_requests(api)) == [first, second]
    asked = sorted(r.params.get("date", "") for r in api.requests if r.kind == "latest")
    assert asked == ["", f"{BEYOND}-10-08"]
    n = len(universe.etfs("XSHG"))
    assert s["rows_inserted"] == 2 * n - 1


@pytest.mark.parametrize("universe", [(8, f"{BEYOND}-09-01", f"{BEYOND}-09-30")], indirect=True)
def test_a_failed_reference_falls_back_to_asking_each_day(etl, db, api, universe, today):
    """A reference the API refuses settles nothing: each unknown weekday is asked of
    each exchange, and the empty answers make them closures."""
    _national_day(etl, universe, today)
    api.add_fault("400", endpoint="daily", times=None)
    api.reset_log()
    s = etl("sync").summary
    assert s["status"] == "ok" and s["rows_inserted"] == 8, s
    asked = sorted(r.params.get("date", "") for r in api.requests if r.kind == "latest")
    assert asked == ["", ""] + sorted(2 * [f"{BEYOND}-10-0{d}" for d in (1, 4, 5, 6, 7)])
    checked = etl("check")
    assert checked.summary["status"] == "ok" and checked.summary["holes"] == []


@pytest.mark.parametrize(
    "universe", [(8, f"{BEYOND - 1}-12-01", f"{BEYOND - 1}-12-31")], indirect=True
)
def test_a_one_day_holiday_beyond_the_table_costs_six_requests(etl, db, api, universe, today):
    """New Year's Day of 2027 (a Friday) and its weekend: one request per exchange for
    the holiday, nothing per ticker."""
    today(D(f"{BEYOND - 1}-12-31"))
    assert etl("sync").exit_code == 0
    (monday,) = universe.advance(1)
    assert monday == D(f"{BEYOND}-01-04")
    today(monday)
    api.reset_log()
    s = etl("sync").summary
    assert s["status"] == "ok" and s["rows_inserted"] == 8
    assert api.request_count("daily") == 0 and api.request_count() == 6


@pytest.mark.parametrize("universe", [(8, f"{BEYOND}-09-01", f"{BEYOND}-09-28")], indirect=True)
def test_beyond_the_table_an_empty_day_the_other_exchange_traded_is_a_glitch(
    etl, db, api, universe, today
):
    """Unknown to the table, but XSHG traded: XSHE's empty answer is no closure, and
    its ETFs are fetched per ticker, so no day is left behind."""
    today(D(f"{BEYOND}-09-28"))
    assert etl("sync").exit_code == 0
    first, second = universe.advance(2)
    today(second)
    api.add_fault("empty", endpoint="latest", exchange="XSHE", day=first.isoformat())
    api.reset_log()
    s = etl("sync").summary
    assert s["status"] == "ok" and s["rows_inserted"] == 2 * 8
    assert api.request_count("daily") == len(universe.etfs("XSHE")) == 3
    checked = etl("check")
    assert checked.summary["status"] == "ok" and checked.summary["holes"] == []
