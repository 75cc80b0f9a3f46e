"""Replay treats a snapshot as a read-only input: it writes typed parts, rejects
and its manifest under its own run directory, so one snapshot can be replayed
from an archive, twice at once, into two databases, and stays byte-for-byte
the same."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from pathlib import Path

import pytest
from crashhelper import checksums, child_env, spawn
from etlfixtures import TOKEN


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included) with its SHA-256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_only_copy(snapshot: Path, into: Path) -> Path:
    copy = into / snapshot.name
    shutil.copytree(snapshot, copy)
    for path in [copy, *copy.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return copy


@pytest.mark.slow
def test_two_replays_of_a_read_only_snapshot_at_once_into_two_databases(
    etl, db, pg_server, api, data_dir, tmp_path
):
    out = etl("sync", env={"ETL_BATCH_ROWS": "150"})  # several parts to replay
    assert out.exit_code == 0, out.stderr
    source = read_only_copy(Path(out.summary["snapshot"]), tmp_path / "archive")
    before = fingerprint(source)
    assert sum(name.startswith("kind=prices/") for name in before) >= 2

    targets = [pg_server.create_database(), pg_server.create_database()]
    try:
        env = child_env(None, "http://127.0.0.1:9/unused", TOKEN, data_dir)
        del env["TSANGHI_TOKEN"]  # a replay needs no token
        procs = [
            spawn(
                ["--json", "replay", str(source)],
                {**env, "DATABASE_URL": t.url},
                tmp_path / f"r{i}",
            )
            for i, t in enumerate(targets)
        ]
        summaries = []
        for i, proc in enumerate(procs):
            assert proc.wait(120) == 0, (tmp_path / f"r{i}.err").read_text()
            summaries.append(json.loads((tmp_path / f"r{i}.out").read_text()))
        for target in targets:
            assert checksums(target) == checksums(db)
    finally:
        for target in targets:
            pg_server.drop_database(target)

    assert fingerprint(source) == before  # not a byte changed, nothing added
    own = [Path(s["snapshot"]) for s in summaries]
    assert own[0] != own[1] and all(p.parent == data_dir / "raw" for p in own)
    for summary, path in zip(summaries, own, strict=True):
        assert summary["source"] == str(source)
        assert summary["rows_inserted"] == out.summary["rows_inserted"]
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["source"] == str(source.resolve()) and manifest["loaded"] is True
        typed = list((path / "typed").glob("part-*.parquet"))
        assert len(typed) >= 2  # the replay's own normalize output


def test_a_replayed_failed_run_is_not_resumed_by_the_next_sync(pg_server, db, etl, monkeypatch):
    """A sync loses its database mid-load; `etl replay` of its snapshot loads the
    rest; the next sync then has nothing of that run left to resume."""
    from crashhelper import runs, sync_losing_its_database

    failed, _ = sync_losing_its_database(pg_server, db, etl, monkeypatch)
    assert failed.exit_code == 1 and failed.summary["status"] == "failed"
    stored = db.fetch("SELECT count(*) FROM stock_daily_data")[0][0]

    replayed = etl("replay", failed.summary["snapshot"], env={"TSANGHI_TOKEN": None})
    assert replayed.exit_code == 0, replayed.stderr
    assert replayed.summary["replayed_run"] == failed.summary["run_id"]
    assert replayed.summary["rows_inserted"] > 0
    total = db.fetch("SELECT count(*) FROM stock_daily_data")[0][0]
    assert total == stored + replayed.summary["rows_inserted"]

    again = etl("sync")
    assert again.exit_code == 0, again.stderr
    assert (again.summary["answers_resumed"], again.summary["rows_resumed"]) == (0, 0)
    assert again.summary["rows_inserted"] == 0
    assert db.fetch("SELECT count(*) FROM stock_daily_data")[0][0] == total
    # The failed run's record is kept as it was: only the replay's row names it.
    assert [r[1] for r in runs(db)] == ["sync", "replay", "sync"]
    assert runs(db)[0][2] in ("failed", "running")
