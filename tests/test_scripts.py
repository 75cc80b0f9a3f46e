"""The operational scripts: the cron wrapper, `make demo` and `make bench`, run for real."""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from etlfixtures import TOKEN

ROOT = Path(__file__).resolve().parent.parent
CRON = ROOT / "scripts" / "cron-sync-etf.sh"
CHINA = timezone(timedelta(hours=8))
BENCH_KEYS = ["1a", "1e", "1b", "1c", "1d", "1f", "7a", "7b", "7c", "2a", "2b", "2c", "2d", "3a", "3b", "3c", "4a",
              "4b", "5a", "5b", "6a", "6b"]  # fmt: skip


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The caller's environment without anything that would point the scripts elsewhere."""
    drop = ("DATABASE_URL", "STOCK_API_TOKEN", "ETF_SYNC_ENV", "DEMO_DATA_DIR", "MAKEFLAGS", "MAKELEVEL",
            "MFLAGS", "FLAGS", "ARGS")  # fmt: skip
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith(("ETL_", "TSANGHI_"))}  # fmt: skip
    env["HOME"] = str(tmp_path / "home")  # no personal ~/.config/etf-sync.env
    return env


@pytest.fixture
def cron_env(tmp_path, db_url, api) -> dict[str, str]:
    env = clean_env(tmp_path)
    env.update(
        DATABASE_URL=db_url,
        TSANGHI_BASE_URL=api.base_url,
        ETL_DATA_DIR=str(tmp_path / "data"),
        ETL_HTTP_BACKOFF="0.01",
        ETL_HTTP_TIMEOUT="2",
        ETL_WORKERS="4",
    )
    # The token comes from the env file only, as with a crontab that names none.
    env_file = tmp_path / "etf-sync.env"
    env_file.write_text(f"TSANGHI_TOKEN={TOKEN}\n")
    env["ETF_SYNC_ENV"] = str(env_file)
    return env


def run_cron(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # Started from elsewhere: the script finds its repository by itself.
    return subprocess.run(["bash", str(CRON)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def todays_log(env: dict[str, str]) -> Path:
    """The log of the China trading day; either side of midnight if the run straddled it."""
    logs = Path(env["ETL_DATA_DIR"]) / "logs"
    days = {datetime.now(CHINA).date(), (datetime.now(CHINA) - timedelta(minutes=10)).date()}
    found = [logs / f"sync-etf-{day}.log" for day in sorted(days, reverse=True)]
    return next((p for p in found if p.exists()), found[0])


def test_cron_wrapper_syncs_logs_the_day_and_stays_silent(cron_env, tmp_path, db):
    done = run_cron(cron_env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""  # cron mails nothing on success
    log = todays_log(cron_env)
    text = log.read_text()
    assert re.search(r"start: etl --quiet sync", text)
    assert re.search(r"^sync \S+: OK in ", text, re.M), text
    assert text.rstrip().endswith("exit 0")
    assert TOKEN not in text
    assert db.fetch("SELECT count(*) FROM stock_daily_data")[0][0] > 0

    again = run_cron(cron_env, tmp_path)  # the same day appends to the same file
    assert again.returncode == 0
    assert log.read_text().count("start: etl --quiet sync") == 2


def test_cron_wrapper_passes_the_exit_code_on(cron_env, tmp_path, api, universe):
    Path(cron_env["ETF_SYNC_ENV"]).write_text("TSANGHI_TOKEN=not-the-token\n")
    refused = run_cron(cron_env, tmp_path)
    assert refused.returncode == 1
    assert "exited with 1" in refused.stderr and refused.stdout == ""
    log = todays_log(cron_env)
    assert "Error:" in log.read_text() and log.read_text().rstrip().endswith("exit 1")

    Path(cron_env["ETF_SYNC_ENV"]).write_text(f"TSANGHI_TOKEN={TOKEN}\n")
    ticker = universe.list_rows("XSHE")[0]["ticker"]
    api.add_fault("502", endpoint="daily", ticker=ticker, times=None)
    partial = run_cron(cron_env, tmp_path)
    assert partial.returncode == 3, partial.stderr
    assert "exited with 3" in partial.stderr
    assert log.read_text().rstrip().endswith("exit 3")


def test_cron_wrapper_exits_4_while_a_previous_run_holds_the_lock(cron_env, tmp_path, api):
    data = Path(cron_env["ETL_DATA_DIR"])
    data.mkdir(parents=True)
    with open(data / "cron-sync-etf.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        blocked = run_cron(cron_env, tmp_path)
        assert blocked.returncode == 4
        assert "did not start" in blocked.stderr
        assert "holds" in todays_log(cron_env).read_text()
        assert api.request_count() == 0  # nothing ran
    after = run_cron(cron_env, tmp_path)  # the lock was the only obstacle
    assert after.returncode == 0, after.stderr


@pytest.mark.slow
def test_make_demo_syncs_offline_and_shows_status(tmp_path):
    env = clean_env(tmp_path)
    env["DEMO_DATA_DIR"] = str(tmp_path / "demo")
    done = subprocess.run(["make", "-s", "demo"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^sync \S+: OK in ", out, re.M), out
    assert "ETFs by market:" in out and re.search(r"^  SH: \d+ active", out, re.M)
    assert re.search(r"^  SZ: \d+ active", out, re.M)
    assert (tmp_path / "demo" / "pg").is_dir()
    # make status finds it the way the demo says.
    hint = re.search(r"^See it again: (ETL_DATA_DIR=\S+) make status", out, re.M)
    assert hint, out
    status = subprocess.run(["make", "-s", "status"], cwd=ROOT, capture_output=True, text=True,
                            env={**env, hint[1].split("=")[0]: hint[1].split("=", 1)[1]}, timeout=120)  # fmt: skip
    assert status.returncode == 0 and re.search(r"^  SH: \d+ active", status.stdout, re.M)
    # The local API was stopped on the way out.
    url = urlsplit(re.search(r"http://\S+/api/fin", out)[0])
    with pytest.raises(OSError):
        socket.create_connection((url.hostname, url.port), timeout=2).close()


@pytest.mark.slow
def test_bench_prints_every_figure_on_a_small_universe(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--etfs", "20", "--json"],
        cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for key in BENCH_KEYS:
        line = next((x for x in lines if x.startswith(f"[{key}] ")), None)
        assert line is not None, f"no figure [{key}] in:\n{done.stdout}"
        assert "<- " in line  # every figure names the command that measured it
    assert any(x.startswith("machine: ") for x in lines)
    report = json.loads(lines[-1])
    assert report["complete"] is True
    assert [f["key"] for f in report["figures"]] == BENCH_KEYS
    assert report["machine"]["postgresql"]
    by_key = {f["key"]: f for f in report["figures"]}
    assert by_key["1a"]["value"] > 0 and by_key["3b"]["value"] == 0
    # The backfill is measured beside each floor, the first one on the fresh server shown too.
    assert by_key["1c"]["value"] > 0 and "3 pairs: " in by_key["1c"]["detail"]
    assert "the first backfill (1a), on the fresh server: " in by_key["1c"]["detail"]
    assert by_key["7a"]["target"] == "< 5 s" and 0 < by_key["7b"]["value"] < by_key["7a"]["value"]
