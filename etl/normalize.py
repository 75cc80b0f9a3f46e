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
from etl.calendar import shanghai_today
from etl.schema import PLAN_SCHEMA
from etl.snapshot import REJECTS, TYPED, Snapshot, read_raw
from etl.symbols import MARKETS

# JSON bodies decoded at once: decoding holds about ten times the text in
# memory, so a part is decoded in slices of about this size, which bounds the
# memory of a run by this rather than by --batch-rows.
SLICE_BYTES = 4_000_000


def slices(raw: pl.DataFrame, max_bytes: int = SLICE_BYTES) -> list[pl.DataFrame]:
    """``raw`` cut between answers into slices of at most ``max_bytes`` of body
    (an answer larger than that is a slice of its own). The per-exchange day
    answers stay together in the first slice: the change of one day is computed
    from the close of the day before, found in the same slice."""
    by_day = raw.filter(pl.col("endpoint") == "latest")
    rest = raw.filter(pl.col("endpoint") != "latest")
    sizes = rest["body"].str.len_bytes().fill_null(0).to_list()
    out = [by_day] if not by_day.is_empty() else []
    start, size = 0, 0
    for i, n in enumerate(sizes):
        if size and size + n > max_bytes:
            out.append(rest.slice(start, i - start))
            start, size = i, 0
        size += n
    if start < rest.height:
        out.append(rest.slice(start))
    return out or [raw]


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
    pct_out_of_range: int = 0  # rows stored with price_change_pct NULL (beyond NUMERIC(8,4))
    # The typed rows as written, handed to load as they are: reading back and
    # decoding the part just written would cost the load thread time for nothing.
    frame: pl.DataFrame | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Normalizer:
    """The per-run inputs of the price transform."""

    context: pl.DataFrame  # PLAN_SCHEMA: the symbols wanted, their last close
    end: date  # the run's last trade date
    out: Snapshot  # where typed parts and rejects go

    @classmethod
    def of(cls, source: Snapshot, out: Snapshot) -> Normalizer | None:
        """The normalizer of the run that wrote ``source`` (its plan and end
        date), writing into ``out``; None where that run made no plan."""
        plan = source.read("plan.parquet")
        if plan is None:
            return None
        end = source.manifest().get("options", {}).get("end")
        return cls(
            plan.cast(PLAN_SCHEMA), date.fromisoformat(end) if end else shanghai_today(), out
        )

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
        results = [transform.daily_rows(s, self.context, self.end) for s in slices(raw)]
        rows = pl.concat([r.rows for r in results], how="vertical")
        rejects = pl.concat([r.rejects for r in results], how="vertical")
        typed = self.out.append(TYPED, rows) if not rows.is_empty() else None
        if not rejects.is_empty():
            self.out.append(REJECTS, rejects)
        return NormalizeResult(
            raw=raw_path,
            typed=typed,
            answers=raw.height,
            rows_fetched=int(good["rows"].sum()),
            rows=rows.height,
            rejected=rejects.height,
            failed=failed,
            seconds=time.monotonic() - started,
            pct_out_of_range=sum(r.pct_out_of_range for r in results),
            frame=rows if typed is not None else None,
        )
