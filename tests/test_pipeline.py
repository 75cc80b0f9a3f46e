"""The library under the CLI, called the way a Python user calls it: settings
in, typed results out, the same runs the commands make."""

from __future__ import annotations

from pathlib import Path

import pytest
from crashhelper import checksums

from etl import pipeline
from etl.errors import LockHeldError, StageError
from etl.load import Loader
from etl.plan import PriceOptions
from etl.settings import Settings


def test_sync_replay_and_status_as_library_calls(etl_env, db, pg_server, universe):
    settings = Settings.from_env(env=etl_env)

    lists = pipeline.sync_lists(settings, ["XSHG"])
    assert isinstance(lists, pipeline.RunResult)
    assert (lists.command, lists.status, lists.exit_code) == ("sync-list", "ok", 0)
    assert lists.summary["etfs_new"] == len(universe.list_rows("XSHG"))

    result = pipeline.sync(settings, PriceOptions())
    assert (result.command, result.status, result.exit_code) == ("sync", "ok", 0)
    assert result.rows_inserted > 0 and result.rows_rejected == 0 and result.failed_symbols == {}
    assert result.snapshot.is_dir() and result.snapshot.parent == settings.raw_dir
    assert result.requests == result.summary["requests"] > 0

    status = pipeline.status(settings)
    assert set(status.markets["market_code"]) == {"SH", "SZ"}
    assert status.runs["run_id"].to_list()[:2] == [result.run_id, lists.run_id]

    other = pg_server.create_database()
    try:
        again = pipeline.replay(
            Settings.from_env(env={**etl_env, "DATABASE_URL": other.url}), result.snapshot
        )
        assert (again.command, again.status, again.rows_inserted) == (
            "replay",
            "ok",
            result.rows_inserted,
        )
        assert again.summary["source"] == str(result.snapshot)
        assert checksums(other)["stock_daily_data"] == checksums(db)["stock_daily_data"]
    finally:
        pg_server.drop_database(other)


def test_a_failure_names_its_stage_and_run(etl_env, db, monkeypatch):
    settings = Settings.from_env(env=etl_env)

    def broken(self, typed, overwrite=False, rows=None):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Loader, "load_part", broken)
    with pytest.raises(pipeline.RunFailed) as caught:
        pipeline.sync(settings)
    error, summary = caught.value.error, caught.value.summary
    assert isinstance(error, StageError)
    assert (error.stage, error.run_id) == ("load", summary["run_id"])
    assert str(error).startswith(f"load stage of run {summary['run_id']}: ")
    assert "disk on fire" in str(error) and f"etl replay {summary['snapshot']}" in str(error)
    assert summary["status"] == "failed"
    assert list(Path(summary["snapshot"]).glob("kind=prices/part-*.parquet"))  # kept on disk


def test_a_second_run_while_one_holds_the_lock(etl_env, db):
    from etl.db import open_database
    from etl.ledger import RunLedger

    settings = Settings.from_env(env=etl_env)
    pipeline.sync_lists(settings)
    with open_database(settings.database_url, settings.data_dir) as database:
        holder = RunLedger(database, "holder", "sync", None)
        try:
            holder.acquire()
            with pytest.raises(LockHeldError, match="another sync is running"):
                pipeline.sync_prices(settings)
        finally:
            holder.close()


def test_a_short_token_never_cuts_the_data(etl_env, db, universe):
    """The token is scrubbed from answers by its place in a quoted URL, not by
    its text: the documented 'demo' token, or a one-letter one, must not turn
    "ticker" into "***icker" in a good answer."""
    from fakeapi import FakeTsanghi

    server = FakeTsanghi(universe, token="t").start()
    try:
        env = {**etl_env, "TSANGHI_TOKEN": "t", "TSANGHI_BASE_URL": server.base_url}
        result = pipeline.sync(Settings.from_env(env=env))
    finally:
        server.stop()
    assert result.status == "ok" and result.rows_inserted > 0
    assert result.summary["etfs_new"] == len(universe.list_rows("XSHG")) + len(
        universe.list_rows("XSHE")
    )
