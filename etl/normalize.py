"""Normalize: raw price parts on disk in, typed parts and rejects on disk out.

The same code serves a sync, the resume of a run that died, and a replay: it
reads one part of raw answers, maps them onto the exact column types of
``stock_daily_data`` (``transform.daily_rows``, pure polars) and writes the
typed rows and the rejects as parts of the output snapshot, which may be
another directory than the one read (a replay never writes into its source).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from etl import transform
from etl.snapshot import REJECTS, TYPED, Snapshot, read_raw
from etl.symbols import MARKETS


@dataclass(frozen=True)
class NormalizeResult:
    """What one raw part became."""

    raw: Path
    typed: Path | None  # None: no row of the part is to be loaded
    answers: int  # API answers in the part
    rows_fetched: int  # records in its good answers
    rows: int  # typed rows written
    rejected: int
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> why its request failed
    seconds: float = 0.0


@dataclass(frozen=True)
class Normalizer:
    """The per-run inputs of the price transform."""

    context: pl.DataFrame  # transform.PLAN_SCHEMA: the symbols wanted, their last close
    end: date  # the run's last trade date
    out: Snapshot  # where typed parts and rejects go

    def run(self, raw_path: Path) -> NormalizeResult:
        started = time.monotonic()
        raw = read_raw(raw_path)
        good = raw.filter(pl.col("error").is_null())
        failed = {
            f"{MARKETS[row['exchange']]}.{row['ticker']}": row["error"]
            for row in raw.filter(
                pl.col("error").is_not_null() & (pl.col("endpoint") == "daily")
            ).iter_rows(named=True)
        }
        result = transform.daily_rows(raw, self.context, self.end)
        typed = self.out.append(TYPED, result.rows) if not result.rows.is_empty() else None
        if not result.rejects.is_empty():
            self.out.append(REJECTS, result.rejects)
        return NormalizeResult(
            raw=raw_path,
            typed=typed,
            answers=raw.height,
            rows_fetched=int(good["rows"].sum()),
            rows=result.rows.height,
            rejected=result.rejects.height,
            failed=failed,
            seconds=time.monotonic() - started,
        )
