"""Snapshot retention: remove old run directories under <data_dir>/raw.

A snapshot may go only when all of these hold:

- its ``manifest.json`` says ``"loaded": true`` (every answer it holds is in the
  database), so a run still going, a killed one, or one whose load failed and
  waits for ``etl replay``, is always kept;
- it is not the newest snapshot;
- it is outside every rule given: older than ``keep_days`` days (by the UTC
  time in its run id) and not among the ``keep`` newest snapshots.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from etl.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class PruneResult:
    removed: list[str] = field(default_factory=list)
    kept: int = 0
    kept_unloaded: int = 0  # kept because their rows are not known to be loaded
    bytes_freed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "removed": self.removed,
            "kept": self.kept,
            "kept_unloaded": self.kept_unloaded,
            "bytes_freed": self.bytes_freed,
        }


def _started(path: Path) -> datetime:
    """The UTC start of a run, from its run id (``20261126T103000Z-1a2b3c``)."""
    try:
        return datetime.strptime(path.name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp((path / "manifest.json").stat().st_mtime, UTC)


def _loaded(path: Path) -> bool:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("loaded") is True


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prune(
    raw_dir: Path,
    keep_days: int | None = None,
    keep: int | None = None,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    """Remove the snapshots under ``raw_dir`` that no rule keeps (see the module doc)."""
    if keep_days is None and keep is None:
        raise ConfigError("say how much to keep: --keep-days N and/or --keep N")
    if (keep_days is not None and keep_days < 0) or (keep is not None and keep < 0):
        raise ConfigError("--keep-days and --keep must be 0 or more")
    result = PruneResult()
    if not raw_dir.is_dir():
        return result
    snapshots = sorted(
        (p for p in raw_dir.iterdir() if p.is_dir() and (p / "manifest.json").is_file()),
        key=lambda p: (_started(p), p.name),
        reverse=True,
    )
    cutoff = (
        (now or datetime.now(UTC)) - timedelta(days=keep_days) if keep_days is not None else None
    )
    for rank, path in enumerate(snapshots):
        kept_by_rule = (keep is not None and rank < keep) or (
            cutoff is not None and _started(path) >= cutoff
        )
        if rank == 0 or kept_by_rule:
            result.kept += 1
        elif not _loaded(path):
            result.kept += 1
            result.kept_unloaded += 1
        else:
            result.bytes_freed += _size(path)
            if not dry_run:
                shutil.rmtree(path)
            result.removed.append(str(path))
            log.info("%s %s", "would remove" if dry_run else "removed", path)
    return result
