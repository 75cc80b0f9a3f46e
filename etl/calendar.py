"""Dates as the exchanges see them: the trading day lives in Asia/Shanghai."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

# Asia/Shanghai: UTC+8 all year (no daylight saving time since 1991), so a
# fixed offset needs no time-zone database on the machine.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def shanghai_today() -> date:
    """Today's date in Asia/Shanghai, whatever the machine's own zone."""
    return datetime.now(SHANGHAI).date()
