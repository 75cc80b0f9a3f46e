"""Export the ETF daily rows as hive-partitioned Parquet, incrementally.

Layout, for polars, DuckDB or Spark to scan as it is::

    <dir>/exchange=XSHG/year=2024/data.parquet
    <dir>/exchange=XSHE/year=2024/data.parquet
    <dir>/_export.json           what each file was written from

Each file holds one exchange's ETF rows (``is_etf = 'Y'``) of one year of
trading days, with the columns and exact types of ``etl.read.daily``. A run
asks the database for a fingerprint of every partition (row count, latest
``created_at`` and ``updated_at``, sums of close prices and volumes) and writes
only the partitions whose fingerprint differs from the one recorded in
``_export.json``: a nightly export rewrites the current year's files and
nothing else. A partition whose rows are all gone is removed. Files are
written under a temporary name and renamed, so readers never see half a file.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from etl import read
from etl.db import Database
from etl.errors import ConfigError
from etl.sqlfiles import query
from etl.symbols import EXCHANGES

log = logging.getLogger(__name__)
STATE_FILE = "_export.json"
DATA_FILE = "data.parquet"


@dataclass
class ExportResult:
    directory: Path
    written: list[str] = field(default_factory=list)  # partitions (re)written
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rows_written: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "directory": str(self.directory),
            "partitions_written": self.written,
            "partitions_unchanged": len(self.unchanged),
            "partitions_removed": self.removed,
            "rows_written": self.rows_written,
        }


def _partition(market: str, year: int) -> str:
    return f"exchange={EXCHANGES[market]}/year={year}"


def export(db: Database, directory: Path, full: bool = False) -> ExportResult:
    """Bring ``directory`` up to date with the database (``full``: rewrite everything)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory}: {exc.strerror}") from None
    state_path = directory / STATE_FILE
    state: dict[str, Any] = {}
    if state_path.is_file() and not full:
        try:
            state = json.loads(state_path.read_text(encoding="utf-8")).get("partitions", {})
        except ValueError:
            state = {}  # unreadable: everything is written again
    result = ExportResult(directory)
    current: dict[str, Any] = {}
    columns = ("rows", "max_created_at", "max_updated_at", "sum_close", "sum_volume")
    for market, year, *figures in db.fetch(query("export_partitions")):
        if market not in EXCHANGES:
            continue  # not an exchange this tool knows: not exported
        name = _partition(market, int(year))
        fingerprint = dict(zip(columns, figures, strict=True))
        current[name] = fingerprint
        target = directory / name / DATA_FILE
        if state.get(name) == fingerprint and target.is_file():
            result.unchanged.append(name)
            continue
        rows = read.daily(
            db, start=date(int(year), 1, 1), end=date(int(year), 12, 31), markets=[market]
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        rows.write_parquet(tmp, compression="zstd")
        os.replace(tmp, target)
        result.written.append(name)
        result.rows_written += rows.height
        log.info("export: %s, %d rows", name, rows.height)
    for name in sorted(set(state) - set(current)):
        (directory / name / DATA_FILE).unlink(missing_ok=True)
        for folder in (directory / name, (directory / name).parent):
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty: other partitions live there
        result.removed.append(name)
    tmp_state = state_path.with_name(f".{STATE_FILE}.tmp")
    tmp_state.write_text(
        json.dumps({"format": 1, "partitions": current}, indent=2, sort_keys=True),
        encoding="utf-8",
    )
    os.replace(tmp_state, state_path)
    return result
