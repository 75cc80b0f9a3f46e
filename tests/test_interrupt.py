"""Ctrl-C and SIGTERM stop the fetching, load what already arrived, record the
run as interrupted, print the summary and exit 130 or 143: nothing fetched is
lost, nothing is left half done, and the next run finishes the job."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import polars as pl
import pytest
from crashhelper import (
    assert_consistent,
    assert_same_as,
    child_env,
    hold_writes,
    price_parts,
    runs,
    spawn,
    wait_for,
)
from etlfixtures import TOKEN


@pytest.fixture
def db(embedded_pg):
    database = embedded_pg.create_database()
    yield database
    embedded_pg.drop_database(database)


def answered_symbols(snapshot: Path) -> set[str]:
    parts = price_parts(snapshot)
    if not parts:
        return set()
    good = pl.concat(parts).filter(
        pl.col("error").is_null() & (pl.col("endpoint") == "daily") & (pl.col("rows") > 0)
    )
    return {
        ("SH." if ex == "XSHG" else "SZ.") + t
        for ex, t in zip(good["exchange"], good["ticker"], strict=True)
    }


def interrupted_run(db, api, data_dir, tmp_path, sig, *, during_load=False):
    """Start `etl --json sync`, send ``sig`` mid-fetch (or while a load waits on
    a lock), and return (exit code, summary, snapshot)."""
    api.latency_ms = 80  # a few seconds of fetching with two workers
    env = child_env(db.url, api.base_url, TOKEN, data_dir, ETL_BATCH_ROWS="100", ETL_WORKERS="2")
    log = tmp_path / "interrupted"
    proc = spawn(["--json", "sync"], env, log)
    admin = None
    try:
        if during_load:
            admin = hold_writes(db, proc)
        else:
            wait_for(lambda: api.request_count("daily") >= 4, proc=proc)
        proc.send_signal(sig)
        if admin is not None:
            admin.rollback()  # the waiting load goes on once the lock is gone
            admin.close()
            admin = None
        code = proc.wait(30)
    finally:
        if admin is not None:
            admin.rollback()
            admin.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.with_suffix(".out").read_text()
    summary = json.loads(out)
    return code, summary, Path(summary["snapshot"]), log.with_suffix(".err").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "name"), [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_a_signal_mid_fetch_loads_what_arrived_and_exits_with_its_code(
    sig, code, name, db, api, universe, etl, data_dir, tmp_path, reference
):
    exit_code, s, snapshot, err = interrupted_run(db, api, data_dir, tmp_path, sig)
    assert exit_code == code, err
    assert s["status"] == "interrupted" and s["interrupted_by"] == name
    assert "Aborted!" not in err and "Traceback" not in err
    assert "interrupted" in err  # the log says what happened and what to do
    # Everything that arrived is in the table, whole; nothing more.
    stored = assert_consistent(db, universe, whole=True)
    arrived = answered_symbols(snapshot)
    assert arrived and set(stored) == arrived
    assert s["rows_inserted"] == sum(map(len, stored.values()))
    assert s["symbols_ok"] < s["symbols_total"]  # it did stop early
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert manifest["loaded"] is True and manifest["interrupted"] is True
    ((run_id, command, status, error),) = runs(db)
    assert (run_id, command, status) == (s["run_id"], "sync", "interrupted")
    assert name in error
    finished = db.fetch("SELECT finished_at IS NOT NULL FROM etl_runs")[0][0]
    assert finished

    # The next run asks only for what the interrupted one never received.
    api.latency_ms = 0
    seen = len(api.requests)
    again = etl("sync")
    assert again.exit_code == 0, again.stderr
    asked = {
        ("SH." if r.exchange == "XSHG" else "SZ.") + r.ticker
        for r in api.requests[seen:]
        if r.kind == "daily"
    }
    assert not asked & arrived
    assert_same_as(db, universe, reference)


@pytest.mark.slow
def test_a_signal_while_a_load_waits_finishes_that_load(
    db, api, universe, etl, data_dir, tmp_path, reference
):
    exit_code, s, snapshot, err = interrupted_run(
        db, api, data_dir, tmp_path, signal.SIGINT, during_load=True
    )
    assert exit_code == 130, err
    assert s["status"] == "interrupted"
    stored = assert_consistent(db, universe, whole=True)
    assert set(stored) == answered_symbols(snapshot)
    assert etl("sync").exit_code == 0
    assert_same_as(db, universe, reference)


def test_human_summary_on_ctrl_c(db, api, data_dir, tmp_path):
    api.latency_ms = 80
    env = child_env(db.url, api.base_url, TOKEN, data_dir, ETL_WORKERS="2")
    log = tmp_path / "human"
    proc = spawn(["sync"], env, log)
    try:
        wait_for(lambda: api.request_count("daily") >= 2, proc=proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.with_suffix(".out").read_text()
    assert out.startswith("sync ") and ": INTERRUPTED (SIGINT)" in out.splitlines()[0]
    assert "Aborted!" not in log.with_suffix(".err").read_text()


def test_status_tells_a_dead_run_from_a_running_one(db, api, etl, data_dir, tmp_path):
    from etl import ledger, queries
    from etl.sqlfiles import query

    assert etl("sync-list").exit_code == 0
    # The SQL takes the lock's key from the one definition, never a copy of it.
    assert str(ledger.SYNC_LOCK_KEY) not in query("status_runs")
    alive = ledger.RunLedger(db, "run-alive", "sync", None)
    try:
        alive.acquire()  # holds the lock, row 'running'
        assert {r["run_id"]: r["status"] for r in queries.recent_runs(db).to_dicts()}[
            "run-alive"
        ] == "running"
    finally:
        alive.close()  # the process is gone: no lock holder, the row still says running
    statuses = {r["run_id"]: r["status"] for r in queries.recent_runs(db).to_dicts()}
    assert statuses["run-alive"] == "dead"
    out = etl("status")
    assert "dead" in out.stdout and "run-alive" in out.stdout


@pytest.mark.parametrize(
    ("second", "code", "name"), [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_a_second_signal_while_the_first_is_handled_exits_with_its_code(
    second, code, name, db, api, universe, etl, data_dir, tmp_path, reference
):
    """The first Ctrl-C waits for a load held on a lock; the second one stops at once,
    with the shell's code of that signal, never 1 and "Aborted!"."""
    api.latency_ms = 80
    env = child_env(db.url, api.base_url, TOKEN, data_dir, ETL_BATCH_ROWS="100", ETL_WORKERS="2")
    log = tmp_path / "twice"
    proc = spawn(["--json", "sync"], env, log)
    admin = None
    try:
        admin = hold_writes(db, proc)
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "SIGINT: interrupted" in log.with_suffix(".err").read_text(), proc=proc)
        proc.send_signal(second)
        admin.rollback()  # the held load returns, and the second signal is handled
        admin.close()
        admin = None
        exit_code = proc.wait(30)
    finally:
        if admin is not None:
            admin.rollback()
            admin.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = log.with_suffix(".err").read_text()
    assert exit_code == code, err
    message = f"aborted by a second {name}: what was committed stays"
    assert json.loads(log.with_suffix(".out").read_text()) == {
        "status": "interrupted",
        "exit_code": code,
        "error": message,
        "reasons": [message],
    }
    assert f"Error: {message}\n" in err
    assert "Aborted!" not in err and "Traceback" not in err
    # The run is recorded as stopped by that signal; what was committed is whole.
    ((_, command, status, error),) = runs(db)
    assert (command, status, error) == ("sync", "interrupted", message)
    assert_consistent(db, universe, whole=True)
    # The next run loads what the aborted one left on disk and fetches the rest.
    api.latency_ms = 0
    again = etl("sync")
    assert again.exit_code == 0, again.stderr
    assert again.summary["answers_resumed"] > 0
    assert_same_as(db, universe, reference)
