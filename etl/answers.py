"""The record of one API answer, as the client returns it and extract keeps it.

A leaf: the HTTP client (``etl.api``) makes these, the snapshot writes them
as raw parts (``RAW_SCHEMA``), the jobs read their status; none of them needs
the others to know what an answer is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class Fetched:
    """One request's final outcome: the raw answer as received, or why it failed."""

    endpoint: str  # "list", "daily" or "latest"
    exchange: str
    ticker: str | None
    params: dict[str, str]  # request parameters, token excluded
    fetched_at: datetime
    attempts: int
    http_status: int | None = None
    body: str | None = None  # the response text as received
    rows: int = 0  # len(data) of a good envelope
    error: str | None = None  # None when the answer was good

    @property
    def ok(self) -> bool:
        return self.error is None
