"""The nightly job: the ETF lists (etl/lists.py), then daily prices (etl/prices.py)."""

from __future__ import annotations

from typing import Any

from etl.context import Job
from etl.lists import sync_lists
from etl.outcome import worst
from etl.plan import PriceOptions
from etl.prices import sync_prices


def sync_all(job: Job, options: PriceOptions) -> dict[str, Any]:
    """The nightly job: ETF lists first, so new listings get their prices too."""
    lists = sync_lists(job, options.exchanges)
    prices = sync_prices(job, options)
    reasons = lists.get("reasons", []) + prices.get("reasons", [])
    return {
        **lists,
        **prices,
        "status": worst(lists["status"], prices["status"]),
        **({"reasons": reasons} if reasons else {}),
    }
