"""Bulk loads through ADBC: COPY into a temporary staging table, then one
INSERT … SELECT … ON CONFLICT into the target, bookkeeping in the same
transaction. A batch is committed whole or not at all.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from etl.db import Database
from etl.errors import DatabaseError
from etl.sqlfiles import query
from etl.symbols import SYMBOL_RE
from etl.transform import DAILY_SCHEMA, LIST_SCHEMA, PRICE, TS

log = logging.getLogger(__name__)
_SYMBOL = re.compile(SYMBOL_RE)


@dataclass
class DailyCounts:
    inserted: int = 0
    updated: int = 0


def _text_array(values: list[str]) -> str:
    """A SQL text[] literal of symbols, for connectorx, which has no bind parameters.

    Only strings matching the strict symbol pattern get in; anything else is a
    bug upstream and stops here rather than reaching SQL text.
    """
    for value in values:
        if not _SYMBOL.fullmatch(value):
            raise ValueError(f"refusing to put {value!r} into SQL text")
    return "'{" + ",".join(values) + "}'::text[]"


def _ts_literal(value: datetime) -> str:
    return f"'{value.strftime('%Y-%m-%d %H:%M:%S')}'::timestamp"


def existing_keys(db: Database, rows: pl.DataFrame) -> pl.DataFrame:
    """Stored (symbol, trade_date) keys overlapping a batch, read with connectorx."""
    if rows.is_empty():
        return pl.DataFrame(schema={"symbol": pl.String, "trade_date": TS})
    symbols = sorted(rows["symbol"].unique().to_list())
    sql = query("existing_keys").format(
        symbols=_text_array(symbols),
        first=_ts_literal(rows["trade_date"].min()),
        last=_ts_literal(rows["trade_date"].max()),
    )
    return db.read(sql).select(pl.col("symbol").cast(pl.String), pl.col("trade_date").cast(TS))


def etf_context(db: Database, before: datetime | None) -> pl.DataFrame:
    """Every ETF in stock_info with its last stored row before ``before`` (None: ever)."""
    bound = "'infinity'::timestamp" if before is None else _ts_literal(before)
    frame = db.read(query("etf_context").format(before=bound))
    return frame.with_columns(
        pl.col("prev_date").cast(TS),
        pl.col("prev_close").cast(PRICE),
    )


class Loader:
    """The run's write connection."""

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

    def _fail(self, what: str, exc: Exception) -> DatabaseError:
        try:
            self._conn.rollback()
        except Exception:
            pass
        return DatabaseError(f"{what} failed and was rolled back: {self._db.scrub(str(exc))}")

    def load_daily(self, rows: pl.DataFrame, overwrite: bool = False) -> DailyCounts:
        """Insert new rows (and with overwrite, correct changed ones) in one transaction."""
        counts = DailyCounts()
        if rows.is_empty():
            return counts
        frame = rows.select(list(DAILY_SCHEMA)).cast(DAILY_SCHEMA)
        try:
            cur = self._stage("etl_stage_daily", frame)
            if overwrite:
                cur.execute(query("daily_overwrite"))
                counts.updated = max(cur.rowcount, 0)
            cur.execute(query("daily_insert"))
            counts.inserted = max(cur.rowcount, 0)
            cur.execute(query("sync_dates"))
            cur.close()
            self._conn.commit()
        except Exception as exc:
            raise self._fail(f"loading {frame.height} daily rows", exc) from None
        return counts

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
            self._conn.commit()
        except Exception as exc:
            raise self._fail(f"saving {frame.height} ETF list changes", exc) from None
