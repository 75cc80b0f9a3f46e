"""Snapshot retention: remove old run directories under <data_dir>/raw.

Rules are given as ``keep_days`` (keep snapshots younger than that, by the UTC
time in the run id) and ``keep`` (keep the N newest *loaded* snapshots); a
snapshot goes only when no rule given keeps it, and then only if one of these
holds:

- its ``manifest.json`` says ``"loaded": true`` (every answer it holds is in the
  database) and it is not the newest loaded snapshot: ``keep=1`` keeps that one,
  never a failed run's newer snapshot in its place;
- its manifest says ``"status": "failed"`` (the run ended in an error) and it is
  older than the newest loaded snapshot, so a later sync has had its chance to
  resume it (etl/resume.py).

Always kept: the newest snapshot of all, and any that says neither (a run still
going, a killed one), which the next sync resumes or ``etl replay`` loads.
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
    kept_unloaded: int = 0  # kept, and their rows are not known to be loaded
    removed_failed: int = 0  # of the removed: snapshots of failed runs
    bytes_freed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "removed": self.removed,
            "kept": self.kept,
            "kept_unloaded": self.kept_unloaded,
            "removed_failed": self.removed_failed,
            "bytes_freed": self.bytes_freed,
        }


def _started(path: Path) -> datetime:
    """The UTC start of a run, from its run id (``20261126T103000Z-1a2b3c``)."""
    try:
        return datetime.strptime(path.name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp((path / "manifest.json").stat().st_mtime, UTC)


def _state(path: Path) -> str:
    """'loaded', 'failed' or 'unknown', from the snapshot's manifest."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    if not isinstance(manifest, dict):
        return "unknown"
    if manifest.get("loaded") is True:
        return "loaded"
    return "failed" if manifest.get("status") == "failed" else "unknown"


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
    states = {path: _state(path) for path in snapshots}
    loaded = [p for p in snapshots if states[p] == "loaded"]
    # --keep N keeps what is as new as the Nth newest loaded snapshot: with fewer
    # loaded ones than N, everything.
    count_floor: Path | None = None
    if keep:
        count_floor = loaded[keep - 1] if keep <= len(loaded) else snapshots[-1]

    def newer(path: Path, than: Path) -> bool:
        return (_started(path), path.name) >= (_started(than), than.name)

    for rank, path in enumerate(snapshots):
        kept_by_rule = (count_floor is not None and newer(path, count_floor)) or (
            cutoff is not None and _started(path) >= cutoff
        )
        state = states[path]
        if state == "loaded":
            may_go = path is not loaded[0]
        elif state == "failed":
            may_go = bool(loaded) and not newer(path, loaded[0])
        else:
            may_go = False
        if rank == 0 or kept_by_rule or not may_go:
            result.kept += 1
            result.kept_unloaded += state != "loaded"
            continue
        result.bytes_freed += _size(path)
        if not dry_run:
            shutil.rmtree(path)
        result.removed.append(str(path))
        result.removed_failed += state == "failed"
        log.info("%s %s", "would remove" if dry_run else "removed", path)
    return result
