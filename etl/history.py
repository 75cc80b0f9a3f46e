"""The tool's own record of ETF histories, in a table of its own (etl_etf_history).

An inactive ETF is priced until its whole history has been fetched once; then
it is recorded here and left out of later runs (``--symbol`` still reaches it).
"""

from __future__ import annotations

from collections.abc import Callable

from etl.db import Database
from etl.sqlfiles import query


def mark_complete(
    db: Database, symbols: list[str], before_commit: Callable[[], None] | None = None
) -> None:
    """Record the history of these inactive ETFs as complete; `before_commit` is the
    run's lock check, as for every commit under the sync lock."""
    if not symbols:
        return
    db.execute(query("history_complete"), (symbols,), before_commit)
