"""Load: typed parts in, rows in PostgreSQL out, through ADBC.

A part's rows are anti-joined against the stored keys of each symbol's own
window, matched by trading day (a row some other writer stored at 16:00 of the
day before is the same day as ours at midnight), then COPYed into the table
with the bookkeeping in the same transaction. A part is committed whole or not
at all.

A part's rows on an ex-date (a share split normalize detected: ``action_ratio``)
that the load inserted or corrected are recorded in etl_corporate_actions in the
same transaction; where an official ratio was recorded before, the ex-date row's
change is recomputed from it. Detected actions around the rows written are then
estimated again from the stored rows (``corporate.reestimate``): a filled gap
drops a jump it explained. A part near no detected action pays one index probe.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from etl import corporate
from etl.db import Database
from etl.errors import DatabaseError, EtlError
from etl.schema import DAILY_SCHEMA, LIST_SCHEMA, PRICE, RATIO, TS
from etl.sqlfiles import query
from etl.transform import anti_join

log = logging.getLogger(__name__)


@dataclass
class DailyCounts:
    inserted: int = 0
    updated: int = 0


@dataclass(frozen=True)
class LoadResult:
    """What one typed part did to the table."""

    typed: Path
    rows: int  # rows in the part
    inserted: int
    updated: int
    seconds: float


def _ts_literal(value: datetime) -> str:
    return f"'{value.strftime('%Y-%m-%d %H:%M:%S')}'::timestamp"


def etf_context(db: Database, before: datetime | None) -> pl.DataFrame:
    """Every ETF in stock_info with its last stored row before ``before`` (None: ever)."""
    bound = "'infinity'::timestamp" if before is None else _ts_literal(before)
    frame = db.read(query("etf_context").format(before=bound))
    return frame.with_columns(
        pl.col("prev_date").cast(TS),
        pl.col("prev_close").cast(PRICE),
        pl.col("asked_through").cast(pl.Date),
    )


def detected_actions(rows: pl.DataFrame) -> pl.DataFrame | None:
    """(symbol, ex_date, ratio) of the rows normalize found a share split on, or None
    when there are none (or the part predates ``action_ratio``): a null count, no scan."""
    if "action_ratio" not in rows.columns:
        return None
    ratio = rows["action_ratio"]
    if ratio.null_count() == ratio.len():
        return None
    return rows.filter(pl.col("action_ratio").is_not_null()).select(
        pl.col("symbol").cast(pl.String),
        pl.col("trade_date").cast(pl.Date).alias("ex_date"),
        pl.col("action_ratio").cast(RATIO).alias("ratio"),
    )


UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE, as ADBC's errors carry it


class Loader:
    """The run's write connection."""

    before_commit = staticmethod(lambda: None)  # the run sets RunLedger.check: lock still held?

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn = db.connect()

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # closing a dead connection must not hide the first error
            pass

    def _stage(self, name: str, frame: pl.DataFrame):  # noqa: ANN202
        cur = self._conn.cursor()
        cur.adbc_ingest(name, frame.to_arrow(), mode="replace", temporary=True)
        return cur

    def _rollback(self) -> None:
        try:
            self._conn.rollback()
        except Exception:  # a dead connection: the server rolled back already
            pass

    def _fail(self, what: str, exc: Exception) -> DatabaseError:
        self._rollback()
        return DatabaseError(
            f"{what} failed and was rolled back: {self._db.scrub(str(exc)).strip()}"
        )

    def load_part(
        self, typed: Path, overwrite: bool = False, rows: pl.DataFrame | None = None
    ) -> LoadResult:
        """One typed part (normalize's output) into stock_daily_data; ``rows``: its
        rows, when the caller holds them already (not read from disk again)."""
        started = time.monotonic()
        if rows is None:
            try:
                rows = pl.read_parquet(typed)
            except Exception as exc:
                raise DatabaseError(f"cannot read {typed}: {exc}") from None
        counts = self.load_daily(rows, overwrite=overwrite)
        return LoadResult(
            typed, rows.height, counts.inserted, counts.updated, time.monotonic() - started
        )

    def existing_keys(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Trading days already stored for each symbol of ``rows``, within that
        symbol's own first and last day (never the batch's whole span), read on
        the load transaction. The windows travel as array parameters, not SQL text."""
        windows = rows.group_by("symbol").agg(
            pl.col("trade_date").min().cast(pl.Date).alias("first_day"),
            pl.col("trade_date").max().cast(pl.Date).alias("last_day"),
        )
        # One row of three lists: the three array parameters of the query.
        arrays = windows.select(pl.all().implode()).to_arrow()
        cur = self._conn.cursor()
        try:
            cur.execute(query("existing_keys"), parameters=arrays)
            keys = pl.from_arrow(cur.fetch_arrow_table())
        finally:
            cur.close()
        return keys.select(pl.col("symbol").cast(pl.String), pl.col("day").cast(pl.Date))

    def load_daily(self, rows: pl.DataFrame, overwrite: bool = False) -> DailyCounts:
        """Store a batch of daily rows in one transaction, with its bookkeeping.

        Without ``overwrite``, rows whose trading day is stored already are
        dropped first. The rest are new under the sync lock, so they are
        COPYed straight into stock_daily_data: the fastest path PostgreSQL has.
        Should a row have been written meanwhile by something outside this
        tool, that COPY fails on the primary key (SQLSTATE 23505, and only
        then), is rolled back whole, and the batch goes again through a staging
        table with ON CONFLICT DO NOTHING.
        ``overwrite`` always takes the staging path, to compare stored values.
        """
        counts = DailyCounts()
        if rows.is_empty():
            return counts
        actions = detected_actions(rows)
        frame = rows.select(list(DAILY_SCHEMA)).cast(DAILY_SCHEMA)
        sync = frame.group_by("symbol").agg(
            pl.col("trade_date").min().alias("min_date"),
            pl.col("trade_date").max().alias("max_date"),
        )
        if not overwrite:
            try:
                stored = self.existing_keys(frame)
                if not stored.is_empty():  # a backfill's windows hold nothing to drop
                    frame = anti_join(frame, stored)
                if frame.is_empty():
                    self._conn.rollback()
                    return counts
                cur = self._conn.cursor()
                # The transaction's own clock, as LOCALTIMESTAMP gives the SQL path.
                cur.execute("SELECT LOCALTIMESTAMP")
                now = pl.lit(cur.fetchone()[0]).cast(TS)
                cur.adbc_ingest(
                    "stock_daily_data",
                    frame.with_columns(created_at=now, updated_at=now).to_arrow(),
                    mode="append",
                )
                self._finish_daily(cur, sync, actions)
                counts.inserted = frame.height
                return counts
            except Exception as exc:
                # Only a key someone else wrote meanwhile is worth the staging path;
                # anything else (the lock gone, a bad value, the server lost) fails now.
                if isinstance(exc, EtlError):
                    self._rollback()
                    raise
                if getattr(exc, "sqlstate", None) != UNIQUE_VIOLATION:
                    raise self._fail(f"loading {frame.height} daily rows", exc) from None
                self._rollback()
                log.info(
                    "direct load of %d rows failed (%s); retrying through staging",
                    frame.height,
                    self._db.scrub(str(exc)).splitlines()[0][:200],
                )
        try:
            cur = self._stage("etl_stage_daily", frame)
            if overwrite:
                cur.execute(query("daily_overwrite"))
                counts.updated = max(cur.rowcount, 0)
            cur.execute(query("daily_insert"))
            counts.inserted = max(cur.rowcount, 0)
            self._finish_daily(cur, sync, actions)
        except Exception as exc:
            raise self._fail(f"loading {frame.height} daily rows", exc) from None
        return counts

    def _finish_daily(self, cur, sync: pl.DataFrame, actions: pl.DataFrame | None) -> None:  # noqa: ANN001
        """Bookkeeping for the batch's symbols, then the one commit of the batch."""
        if actions is not None:
            cur.adbc_ingest("etl_stage_actions", actions.to_arrow(), mode="replace", temporary=True)
            cur.execute(query("corporate_record"), (True,))  # only rows this load wrote
            # An action recorded earlier (an official ratio) overrides the estimate.
            ex_dates = list(actions.select("symbol", "ex_date").iter_rows())
            corporate.recompute(ex_dates, cur, own_rows=True)
        cur.adbc_ingest("etl_stage_sync", sync.to_arrow(), mode="replace", temporary=True)
        cur.execute(query("daily_rechain"))  # before sync_dates: it reads the old watermark
        corporate.reestimate(cur)  # after the rechain: it may give a row back its raw change
        cur.execute(query("sync_dates"))
        cur.close()
        self.before_commit()
        self._conn.commit()

    def load_list(self, stage: pl.DataFrame) -> None:
        """Apply one exchange's list changes (LIST_SCHEMA + action) in one transaction."""
        if stage.is_empty():
            return
        frame = stage.select([*LIST_SCHEMA, "action"]).cast({**LIST_SCHEMA, "action": pl.String})
        try:
            cur = self._stage("etl_stage_list", frame)
            cur.execute(query("list_upsert"))
            cur.execute(query("list_deactivate"))
            cur.close()
            self.before_commit()
            self._conn.commit()
        except Exception as exc:
            raise self._fail(f"saving {frame.height} ETF list changes", exc) from None
