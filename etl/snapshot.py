"""The run's snapshot directory: where the three stages hand off, as Parquet.

Layout (hive-style, readable by polars, DuckDB, Spark as it is)::

    <data_dir>/raw/<run_id>/
        manifest.json             what ran, with which options; "extract_complete",
                                  "loaded", and for a replay its "source"
        kind=list/part-00000.parquet     extract: /etf/{exchange}/list answers
        plan.parquet              per-symbol context of the price transform
        kind=prices/part-00000.parquet   extract: /daily and /daily/latest answers,
                                         a part every few seconds
        kind=calendar/part-00000.parquet /daily answers that settled weekdays beyond
                                         the holiday table (etl/closures.py)
        typed/part-00000.parquet  normalize: rows typed exactly as stock_daily_data
        rejects/part-00000.parquet       normalize: rows refused, with reasons

Every file is written under a temporary name, fsynced and renamed into place,
so a killed process leaves whole files or none. No file holds the token. A
snapshot is an input once written: a replay reads it and writes its own
outputs under its own run directory.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from etl.answers import Fetched
from etl.errors import ConfigError, SnapshotError
from etl.schema import RAW_SCHEMA

KINDS = ("list", "prices")
TYPED = "typed"
REJECTS = "rejects"
# Answers are made durable at most this many seconds after they arrive.
FLUSH_SECONDS = 2.0


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def fetched_frame(items: list[Fetched]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "endpoint": [f.endpoint for f in items],
            "exchange": [f.exchange for f in items],
            "ticker": [f.ticker for f in items],
            "params": [json.dumps(f.params, sort_keys=True) for f in items],
            "fetched_at": [f.fetched_at for f in items],
            "attempts": [f.attempts for f in items],
            "http_status": [f.http_status for f in items],
            "rows": [f.rows for f in items],
            "error": [f.error for f in items],
            "body": [f.body for f in items],
        },
        schema=RAW_SCHEMA,
    )


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    # The rename itself must survive a power cut too: sync the directory entry.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Snapshot:
    """One run's snapshot directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._parts: dict[str, int] = {}

    @staticmethod
    def check_writable(raw_dir: Path) -> None:
        """Fail early, before the database or the API is touched, on a data
        directory where no snapshot could be written."""
        try:
            raw_dir.mkdir(parents=True, exist_ok=True)
            probe = raw_dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"cannot write snapshots under {raw_dir}: {exc.strerror}; "
                "set ETL_DATA_DIR to a writable directory"
            ) from None

    @classmethod
    def create(cls, raw_dir: Path, run_id: str) -> Snapshot:
        cls.check_writable(raw_dir)
        path = raw_dir / run_id
        path.mkdir()
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> Snapshot:
        snap = cls(Path(path))
        if not (snap.path / "manifest.json").is_file():
            raise SnapshotError(f"{path} is not a snapshot directory (no manifest.json)")
        return snap

    # -- manifest --------------------------------------------------------------

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str, ensure_ascii=False)
        _atomic_write(self.path / "manifest.json", lambda p: p.write_text(text, encoding="utf-8"))

    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"cannot read {self.path / 'manifest.json'}: {exc}") from None

    def update_manifest(self, **changes: Any) -> None:
        self.write_manifest({**self.manifest(), **changes})

    def empty(self) -> None:
        """Keep only the manifest: for a run that brought nothing new, whose
        answers would only repeat what the database and earlier snapshots hold."""
        self.update_manifest(emptied="nothing new: the answers were not kept")
        for path in sorted(self.path.rglob("*"), reverse=True):  # files before their folders
            if path.name == "manifest.json" and path.parent == self.path:
                continue
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()

    # -- frames ----------------------------------------------------------------

    def _next_part(self, folder: str) -> Path:
        directory = self.path / folder
        directory.mkdir(exist_ok=True)
        if folder not in self._parts:
            # After the highest number present: a count would reuse a number
            # once an earlier part is gone, and overwrite a later part.
            numbers = [p.stem[5:] for p in directory.glob("part-*.parquet")]
            self._parts[folder] = max((int(n) for n in numbers if n.isdigit()), default=-1) + 1
        number = self._parts[folder]
        self._parts[folder] = number + 1
        return directory / f"part-{number:05d}.parquet"

    def append(self, folder: str, frame: pl.DataFrame) -> Path:
        """Write one more part file into folder (e.g. ``kind=prices``, ``rejects``)."""
        path = self._next_part(folder)
        _atomic_write(path, lambda p: frame.write_parquet(p, compression="zstd"))
        return path

    def append_raw(self, kind: str, items: list[Fetched]) -> Path:
        return self.append(f"kind={kind}", fetched_frame(items))

    def write(self, name: str, frame: pl.DataFrame) -> None:
        _atomic_write(self.path / name, lambda p: frame.write_parquet(p))

    def read(self, name: str) -> pl.DataFrame | None:
        path = self.path / name
        return pl.read_parquet(path) if path.is_file() else None

    def parts(self, folder: str) -> list[Path]:
        return sorted((self.path / folder).glob("part-*.parquet"))

    def raw_parts(self, kind: str) -> Iterator[pl.DataFrame]:
        for part in self.parts(f"kind={kind}"):
            yield read_raw(part)


def read_raw(part: Path) -> pl.DataFrame:
    """One part of raw answers; a damaged file names itself."""
    try:
        return pl.read_parquet(part).cast(RAW_SCHEMA)
    except Exception as exc:
        raise SnapshotError(f"cannot read {part}: {exc}") from None


class RawWriter:
    """Extract's output: answers buffered briefly, then written as one durable part.

    A part is written when the buffer holds ``max_rows`` records, or when its
    oldest answer is ``max_seconds`` old (``due()``; the extract asks between
    answers and on a timer), so a killed run loses seconds of API work.
    """

    def __init__(
        self, snapshot: Snapshot, kind: str, max_rows: int, max_seconds: float = FLUSH_SECONDS
    ) -> None:
        self._snapshot, self._kind = snapshot, kind
        self._max_rows, self._max_seconds = max_rows, max_seconds
        self._items: list[Fetched] = []
        self._rows = 0
        self._since = 0.0

    def add(self, fetched: Fetched) -> None:
        if not self._items:
            self._since = time.monotonic()
        self._items.append(fetched)
        self._rows += fetched.rows

    def due(self) -> bool:
        return bool(self._items) and (
            self._rows >= self._max_rows or time.monotonic() - self._since >= self._max_seconds
        )

    def flush(self) -> Path | None:
        """Write what is buffered as one part; its path, or None when empty."""
        if not self._items:
            return None
        path = self._snapshot.append_raw(self._kind, self._items)
        self._items, self._rows = [], 0
        return path
