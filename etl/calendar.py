"""Dates as the exchanges see them.

The trading day lives in Asia/Shanghai. XSHG and XSHE share one calendar: they
trade on weekdays that are not public holidays, as the State Council publishes
them (make-up working days on weekends are not trading days). The holiday
tables come from ``chinesecalendar``, kept current each year; for a year they
do not cover yet (next year's holidays are published late in the year) a day
is unknown, and the caller asks the API rather than skip it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from functools import cache

import chinese_calendar

# Asia/Shanghai: UTC+8 all year (no daylight saving time since 1991), so a
# fixed offset needs no time-zone database on the machine.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def shanghai_today() -> date:
    """Today's date in Asia/Shanghai, whatever the machine's own zone."""
    return datetime.now(SHANGHAI).date()


def is_trading_day(day: date) -> bool | None:
    """Whether XSHG and XSHE trade on ``day``; None where the holiday tables do
    not reach (a weekday of a year not published yet)."""
    if day.weekday() >= 5:
        return False
    first, last = _table_years()
    if not first <= day.year <= last:
        return None
    # chinese_calendar.is_holiday(day) for a weekday, without its per-call scan of the
    # whole table for the years it covers (etl check asks for every day of 20 years).
    return day not in chinese_calendar.holidays or day in chinese_calendar.workdays


@cache
def _table_years() -> tuple[int, int]:
    """The first and last year of the holiday tables."""
    years = [d.year for d in chinese_calendar.holidays]
    return min(years), max(years)


def trading_days_between(after: date, until: date) -> list[date]:
    """Days in (after, until] that are, or may be, trading days: the known ones,
    and the weekdays the tables do not reach. Known holidays are left out."""
    days, day = [], after + timedelta(days=1)
    while day <= until:
        if is_trading_day(day) is not False:
            days.append(day)
        day += timedelta(days=1)
    return days
