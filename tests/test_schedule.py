"""Scheduling in the exchange's time zone: the systemd timer, the cron line in UTC, and
the cron wrapper's env file read as data, its failure mail carrying the reason."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest
from fakeapi.server import FakeTsanghi
from test_scripts import ROOT, clean_env, run_cron, todays_log

from etl.db import Database

SCRIPTS = ROOT / "scripts"


@pytest.fixture
def cron_env(tmp_path, db_url, api) -> dict[str, str]:
    env = clean_env(tmp_path)
    env.update(
        TSANGHI_BASE_URL=api.base_url,
        ETL_DATA_DIR=str(tmp_path / "data"),
        ETL_HTTP_BACKOFF="0.01",
        ETL_HTTP_TIMEOUT="2",
        ETL_WORKERS="4",
    )
    env["ETF_SYNC_ENV"] = str(tmp_path / "etf-sync.env")
    return env


def test_the_env_file_is_data_a_dollar_and_a_note_in_parentheses_work(
    cron_env, tmp_path, universe, db_url, db
):
    """Before: the file was sourced; `$HOME` in the token expanded, `(note)` broke bash."""
    token = "tok$HOME$(id)`x`-7f3a9c"
    with FakeTsanghi(universe, token=token) as api:
        Path(cron_env["ETF_SYNC_ENV"]).write_text(
            "# written by hand\n"
            f"TSANGHI_TOKEN={token}   (from the account page)\n"
            f"export DATABASE_URL='{db_url}'  # quoted: kept as is\n"
            f"TSANGHI_BASE_URL={api.base_url} (the local test API)\n"
        )
        done = run_cron(cron_env, tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert api.request_count() > 0
    assert db.fetch("SELECT count(*) FROM stock_daily_data")[0][0] > 0


@pytest.mark.system_pg
def test_a_dollar_in_the_database_password_survives_the_env_file(
    cron_env, tmp_path, system_pg, api
):
    database = system_pg.create_database()
    parts = urlsplit(database.url)
    original = unquote(parts.password)
    password = "pa$$w0rd$HOME(x)"
    system_pg.admin(f"ALTER ROLE {parts.username} PASSWORD '{password}'")
    try:
        url = urlunsplit(
            parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}")
        )
        Path(cron_env["ETF_SYNC_ENV"]).write_text(
            f"TSANGHI_TOKEN={api.token}\nDATABASE_URL={url}   (the test database)\n"
        )
        done = run_cron(cron_env, tmp_path)
        assert done.returncode == 0, done.stderr + todays_log(cron_env).read_text()
        assert password not in todays_log(cron_env).read_text()
        assert Database(url).fetch("SELECT count(*) FROM stock_daily_data")[0][0] > 0
    finally:
        system_pg.admin(f"ALTER ROLE {parts.username} PASSWORD '{original}'")
        system_pg.drop_database(database)


def test_a_line_that_is_not_key_value_stops_before_running(cron_env, tmp_path, api):
    Path(cron_env["ETF_SYNC_ENV"]).write_text("TSANGHI_TOKEN=x\nthis is not a setting\n")
    done = run_cron(cron_env, tmp_path)
    assert done.returncode == 1
    assert "line 2 is not KEY=value; nothing was run" in done.stderr
    assert api.request_count() == 0


def test_the_failure_mail_carries_the_error_line(cron_env, tmp_path, api, universe):
    Path(cron_env["ETF_SYNC_ENV"]).write_text("TSANGHI_TOKEN=not-the-token\n")
    refused = run_cron(cron_env, tmp_path)
    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert lines[0].startswith("etf-sync: etl sync exited with 1")
    assert re.match(r"etf-sync: Error: .*TSANGHI_TOKEN", lines[1]), refused.stderr
    assert api.token not in refused.stderr

    Path(cron_env["ETF_SYNC_ENV"]).write_text(f"TSANGHI_TOKEN={api.token}\n")
    ticker = universe.list_rows("XSHE")[0]["ticker"]
    api.add_fault("502", endpoint="daily", ticker=ticker, times=None)
    partial = run_cron(cron_env, tmp_path)
    assert partial.returncode == 3
    assert re.search(r"^etf-sync: sync \S+: PARTIAL in ", partial.stderr, re.M), partial.stderr


def test_the_cron_line_is_in_utc_and_explained():
    """Before: it relied on CRON_TZ, which Debian's cron ignores (03:30 in Shanghai)."""
    text = (SCRIPTS / "crontab.example").read_text()
    active = [x for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    jobs = [x for x in active if "cron-sync-etf.sh" in x]
    assert jobs == ["30 11 * * 1-5  /opt/etf-sync/scripts/cron-sync-etf.sh"]
    assert not any(x.startswith("CRON_TZ") for x in active)
    assert "11:30 UTC" in text and "no daylight saving" in text


def test_the_systemd_timer_fires_at_19_30_in_shanghai():
    timer = (SCRIPTS / "systemd" / "etf-sync.timer").read_text()
    (calendar,) = re.findall(r"^OnCalendar=(.+)$", timer, re.M)
    assert calendar == "Mon..Fri 19:30 Asia/Shanghai"
    service = (SCRIPTS / "systemd" / "etf-sync.service").read_text()
    assert "ExecStart=/opt/etf-sync/scripts/cron-sync-etf.sh" in service
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze to check the calendar with")
    out = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=5", calendar],
        capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, check=True,
    ).stdout  # fmt: skip
    elapses = re.findall(r"(?:Next elapse|Iter\. #\d+): (\w{3}) \S+ (\d\d:\d\d:\d\d) UTC", out)
    assert len(elapses) == 5, out
    assert {time for _, time in elapses} == {"11:30:00"}
    assert {day for day, _ in elapses} <= {"Mon", "Tue", "Wed", "Thu", "Fri"}
