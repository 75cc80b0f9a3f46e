"""Dates as the exchanges see them: the one trading calendar of every part of etl.

The trading day lives in Asia/Shanghai. XSHG and XSHE share one calendar: they
trade on weekdays that are not public holidays, as the State Council publishes
them (``chinesecalendar``; make-up working days on weekends are no trading
days), except on the few weekdays the exchanges closed although the State
Council's table calls them working days (``EXCHANGE_ONLY_CLOSURES``).

The table covers the years of its package release. China publishes next year's
holidays late in the year, so for a weekday of a year the installed table does
not cover, ``is_trading_day`` answers None (unknown): the nightly asks the API's
per-day answer for such a day, and an empty answer for a whole exchange (while a
later day has rows) is a closure; ``etl check`` counts such a day as a trading
day only where an ETF of that exchange has a stored row on it (``trading_days``).
``stale_table_warning`` says when today is already past the table.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta, timezone
from functools import cache

import chinese_calendar

# Asia/Shanghai: UTC+8 all year (no daylight saving time since 1991), so a
# fixed offset needs no time-zone database on the machine.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

# Weekdays SSE and SZSE were closed although the State Council's table has them
# as working days (exchange-calendars' XSHG and the exchanges' own notices agree;
# chinesecalendar 1.11 does not list them):
EXCHANGE_ONLY_CLOSURES = frozenset(
    {
        date(2005, 2, 7),  # Spring Festival 2005: the exchanges closed from Monday 7 February
        date(2005, 2, 8),
        date(2006, 1, 26),  # Spring Festival 2006: closed from Thursday 26 January
        date(2006, 1, 27),
        date(2024, 2, 9),  # Spring Festival Eve 2024, a Friday
    }
)


def shanghai_today() -> date:
    """Today's date in Asia/Shanghai, whatever the machine's own zone."""
    return datetime.now(SHANGHAI).date()


def is_trading_day(day: date) -> bool | None:
    """Whether XSHG and XSHE trade on ``day``; None where the holiday table does
    not reach (a weekday of a year not published yet)."""
    if day.weekday() >= 5 or day in EXCHANGE_ONLY_CLOSURES:
        return False
    first, last = table_years()
    if not first <= day.year <= last:
        return None
    # chinese_calendar.is_holiday(day) for a weekday, without its per-call scan of the
    # whole table for the years it covers (etl check asks for every day of 20 years).
    return day not in chinese_calendar.holidays or day in chinese_calendar.workdays


@cache
def table_years() -> tuple[int, int]:
    """The first and last year of the installed holiday table."""
    years = [d.year for d in chinese_calendar.holidays]
    return min(years), max(years)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def trading_days_between(after: date, until: date) -> list[date]:
    """Days in (after, until] that are, or may be, trading days: the known ones,
    and the weekdays the table does not reach. Known closures are left out."""
    return [d for d in _days(after + timedelta(days=1), until) if is_trading_day(d) is not False]


def unknown_days(first: date, last: date) -> list[date]:
    """Weekdays in [first, last] the table does not reach (trading day or not: unknown)."""
    return [d for d in _days(first, last) if is_trading_day(d) is None]


def trading_days(first: date, last: date, traded: Collection[date] = ()) -> list[date]:
    """An exchange's trading days in [first, last]: the known ones, and of the weekdays
    beyond the table those in ``traded`` (days it is known to have traded, e.g. an
    ETF of it has a row). An unknown weekday nobody traded on is a closure."""
    return [d for d in _days(first, last) if is_trading_day(d) or d in traded]


def closed_days(first: date, last: date) -> list[date]:
    """Days in [first, last] known to be no trading day: weekends and known closures."""
    return [d for d in _days(first, last) if is_trading_day(d) is False]


def stale_table_warning(today: date | None = None) -> str | None:
    """A warning when today (Asia/Shanghai) is past the holiday table's last year."""
    today = today or shanghai_today()
    last = table_years()[1]
    if today.year <= last:
        return None
    return (
        f"the installed chinesecalendar knows the exchanges' holidays up to {last} only: "
        f"{today.year}'s holidays are unknown to it, so each weekday of {today.year} is "
        "asked of the API and an empty answer is taken for a closure. Upgrade it "
        "(pip install --upgrade chinesecalendar) once it publishes the holidays of "
        f"{today.year}"
    )
