"""Snapshot retention: etl prune and ETL_KEEP_DAYS / ETL_KEEP_SNAPSHOTS after a sync."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.errors import ConfigError
from etl.retention import prune

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def make_snapshot(
    raw: Path, days_ago: float, loaded: bool | None, tag: str = "aaaaaa", failed: bool = False
) -> Path:
    run_id = (NOW - timedelta(days=days_ago)).strftime("%Y%m%dT%H%M%SZ-") + tag
    path = raw / run_id
    (path / "kind=prices").mkdir(parents=True)
    (path / "kind=prices" / "part-00000.parquet").write_bytes(b"x" * 1000)
    manifest = {"run_id": run_id, "extract_complete": True}
    if loaded is not None:
        manifest["loaded"] = loaded
    if failed:
        manifest["status"] = "failed"
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def raw(tmp_path) -> Path:
    return tmp_path / "data" / "raw"


def names(paths) -> set[str]:
    return {Path(p).name for p in paths}


def test_by_age_only_loaded_snapshots_go(raw):
    old_loaded = make_snapshot(raw, 40, True, "a00001")
    old_unloaded = make_snapshot(raw, 41, None, "a00002")  # a run killed, or not yet loaded
    old_failed = make_snapshot(raw, 42, False, "a00003")  # waiting for etl replay
    young = make_snapshot(raw, 2, True, "a00004")
    newest = make_snapshot(raw, 0, True, "a00005")
    result = prune(raw, keep_days=30, now=NOW)
    assert names(result.removed) == {old_loaded.name}
    assert not old_loaded.exists()
    assert old_unloaded.exists() and old_failed.exists() and young.exists() and newest.exists()
    assert result.kept == 4 and result.kept_unloaded == 2
    assert result.bytes_freed > 1000


def test_by_count_and_never_the_newest(raw):
    paths = [make_snapshot(raw, d, True, f"b0000{d}") for d in range(5)]
    result = prune(raw, keep=2, now=NOW)
    assert names(result.removed) == {p.name for p in paths[2:]}
    result = prune(raw, keep=0, keep_days=0, now=NOW)
    assert names(result.removed) == {paths[1].name} and paths[0].exists()
    assert [p.name for p in raw.iterdir()] == [paths[0].name]


def test_failed_runs_go_by_age_once_a_newer_snapshot_is_loaded(raw):
    old_failed = make_snapshot(raw, 42, False, "g00001", failed=True)
    old_killed = make_snapshot(raw, 41, False, "g00002")  # no status: perhaps still resumable
    loaded = make_snapshot(raw, 40, True, "g00003")
    young_failed = make_snapshot(raw, 3, False, "g00004", failed=True)
    late_failed = make_snapshot(raw, 35, None, "g00005", failed=True)  # after the last load
    newest = make_snapshot(raw, 0, False, "g00006", failed=True)
    result = prune(raw, keep_days=30, now=NOW)
    # The loaded one is the newest loaded: kept. Failed ones older than it and than
    # 30 days go; the one after it waits for a sync to resume it.
    assert names(result.removed) == {old_failed.name}
    assert (result.kept, result.kept_unloaded, result.removed_failed) == (5, 4, 1)
    assert not old_failed.exists()
    assert all(p.exists() for p in (old_killed, loaded, young_failed, late_failed, newest))
    good = make_snapshot(raw, 1, True, "g00007")
    result = prune(raw, keep_days=30, now=NOW)
    assert names(result.removed) == {loaded.name, late_failed.name}
    assert result.removed_failed == 1
    assert good.exists() and young_failed.exists() and old_killed.exists()


def test_keep_1_keeps_the_newest_loaded_snapshot_not_a_failed_one(raw):
    older = make_snapshot(raw, 5, True, "h00001")
    last_good = make_snapshot(raw, 2, True, "h00002")
    failed = make_snapshot(raw, 1, False, "h00003", failed=True)
    newest = make_snapshot(raw, 0, False, "h00004", failed=True)
    result = prune(raw, keep=1, now=NOW)
    assert names(result.removed) == {older.name}
    assert last_good.exists() and failed.exists() and newest.exists()
    result = prune(raw, keep=0, keep_days=0, now=NOW)
    assert names(result.removed) == set() and last_good.exists()
    good = make_snapshot(raw, 0.5, True, "h00005")
    result = prune(raw, keep=1, now=NOW)
    assert names(result.removed) == {last_good.name, failed.name}
    assert good.exists() and newest.exists()


def test_a_failed_run_says_so_in_its_manifest(etl, data_dir):
    out = etl("sync", env={"TSANGHI_TOKEN": "wrong-token"})
    assert out.exit_code == 1, out.stderr
    manifest = json.loads((Path(out.summary["snapshot"]) / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["loaded"] is False


def test_both_rules_keep_what_either_keeps(raw):
    recent = [make_snapshot(raw, d, True, f"c0000{d}") for d in (0, 1, 2)]
    older = [make_snapshot(raw, d, True, f"c000{d}") for d in (10, 11)]
    result = prune(raw, keep_days=5, keep=4, now=NOW)
    assert names(result.removed) == {older[1].name}  # 10 days old but 4th newest: kept
    assert all(p.exists() for p in recent) and older[0].exists()


def test_dry_run_removes_nothing_and_no_rule_is_an_error(raw):
    make_snapshot(raw, 0, True, "d00001")
    old = make_snapshot(raw, 50, True, "d00002")
    result = prune(raw, keep_days=1, dry_run=True, now=NOW)
    assert names(result.removed) == {old.name} and old.exists()
    with pytest.raises(ConfigError, match="--keep"):
        prune(raw)


def test_the_cli_prunes_and_reports(raw):
    newest = make_snapshot(raw, 0, True, "e00001")
    old = make_snapshot(raw, 400, True, "e00002")  # dated in the past by its run id
    env = {"ETL_DATA_DIR": str(raw.parent)}
    run = CliRunner().invoke(cli, ["prune", "--keep-days", "30", "--json"], env=env)
    assert run.exit_code == 0, run.output
    outcome = json.loads(run.stdout)
    assert names(outcome["removed"]) == {old.name} and outcome["status"] == "ok"
    assert newest.exists() and not old.exists()
    run = CliRunner().invoke(cli, ["prune"], env={**env, "ETL_KEEP_SNAPSHOTS": "1"})
    assert run.exit_code == 0
    assert (
        run.stdout
        == "removed 0 snapshots (0 of failed runs, 0.0 MB), kept 1 (0 not known to be loaded)\n"
    )
    run = CliRunner().invoke(cli, ["prune", "--keep", "-1"], env=env)
    assert run.exit_code == 2


def test_a_sync_applies_the_retention_setting(etl, data_dir):
    raw = data_dir / "raw"
    old = make_snapshot(raw, 400, True, "f00001")
    old_unloaded = make_snapshot(raw, 401, None, "f00002")
    out = etl("sync", env={"ETL_KEEP_DAYS": "30"})
    assert out.exit_code == 0, out.stderr
    assert not old.exists()
    assert old_unloaded.exists()  # nothing says its rows are in the database
    assert Path(out.summary["snapshot"]).exists()  # this run's own: the newest
    bad = etl("sync", env={"ETL_KEEP_DAYS": "-1"})
    assert bad.exit_code == 1 and "ETL_KEEP_DAYS" in bad.summary["error"]
