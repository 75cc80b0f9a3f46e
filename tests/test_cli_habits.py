"""CLI habits: global options anywhere, -h, every help example runs, one JSON object
for every outcome with typed values, the progress bar fits the terminal, -v detail."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import pytest
from click.testing import CliRunner
from etlfixtures import TOKEN

from etl.cli import cli
from etl.ledger import SYNC_LOCK_KEY

ROOT = Path(__file__).resolve().parent.parent


def invoke(args: list[str], env: dict[str, str | None]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def one_json(stdout: str) -> dict:
    """stdout holds exactly one JSON object, on one line."""
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_h_is_help_for_every_command(name):
    code, out, _ = invoke([name, "-h"], {})
    assert code == 0
    assert out.startswith(f"Usage: cli {name}") or out.startswith(f"Usage: etl {name}")
    assert "--json" in out and "--quiet" in out and "--verbose" in out
    assert invoke(["-h"], {})[0] == 0


def test_global_options_work_after_the_command(etl_env):
    code, out, err = invoke(["sync", "--json"], etl_env)
    assert code == 0, err
    assert one_json(out)["status"] == "ok"
    code, out, err = invoke(["sync-prices", "--symbol", "SH.510050", "-q"], etl_env)
    assert code == 0, err
    assert "INFO" not in err and "OK" in out
    code, out, err = invoke(["status", "--json"], etl_env)
    assert code == 0, err
    assert {m["market_code"] for m in one_json(out)["markets"]} == {"SH", "SZ"}
    code, _, err = invoke(["status", "-v"], etl_env)
    assert code == 0 and "DEBUG" in err


def test_status_json_has_typed_values(etl_env):
    assert invoke(["sync-list"], etl_env)[0] == 0  # a run without rows_inserted
    assert invoke(["sync-prices"], etl_env)[0] == 0
    code, out, _ = invoke(["--json", "status"], etl_env)
    assert code == 0
    status = one_json(out)
    for market in status["markets"]:
        assert market["latest_trade_date"] == "2024-03-29"
        assert isinstance(market["active"], int) and isinstance(market["behind"], int)
    prices, lists = status["runs"]
    assert isinstance(prices["rows_inserted"], int) and prices["rows_inserted"] > 0
    assert lists["rows_inserted"] is None
    assert prices["error"] is None and isinstance(prices["seconds"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*", prices["started"])


def test_every_outcome_is_one_json_object(etl_env, db, tmp_path):
    cases = [
        (["sync", "--json"], {"TSANGHI_TOKEN": None}, 1, "no API token"),
        (["--json", "sync"], {"DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/x"}, 1, "connect"),
        (["sync-prices", "--workers", "0", "--json"], {}, 2, "--workers"),
        (["sync-prices", "--symbol", "XX.1", "--json"], {}, 2, "invalid symbol"),
        (["--json", "no-such-command"], {}, 2, "No such command"),
        (["sync", "--json"], {"ETL_WORKERS": "many"}, 1, "ETL_WORKERS"),
        (["query", "SELECT nonsense FROM nowhere", "--json"], {}, 1, "nowhere"),
        (["prune", "--json"], {}, 1, "--keep"),
    ]
    for args, env, code, words in cases:
        got, out, err = invoke(args, {**etl_env, **env})
        assert got == code, (args, out, err)
        outcome = one_json(out)
        assert outcome["exit_code"] == code and words in outcome["error"], outcome
        assert outcome["status"] == {1: "failed", 2: "usage_error"}[code]
        assert "pw" not in out
        assert f"Error: {outcome['error']}" in err  # the cron mail's error line


def test_a_held_lock_is_one_json_object_with_exit_4(etl_env, db):
    with adbc.connect(db.url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock($1)", (SYNC_LOCK_KEY,))
        assert cur.fetchall() == [(True,)]
        code, out, _ = invoke(["sync", "--json"], etl_env)
    assert code == 4
    outcome = one_json(out)
    assert outcome["status"] == "locked" and "another sync" in outcome["error"]


def test_a_run_that_fails_prints_its_summary_alone(etl_env, api):
    code, out, _ = invoke(["sync", "--json"], {**etl_env, "TSANGHI_TOKEN": "wrong-token"})
    assert code == 1
    summary = one_json(out)
    assert summary["status"] == "failed" and "token" in summary["error"]
    assert isinstance(summary["requests"], int) and summary["run_id"]


def _help_examples() -> list[tuple[str, str]]:
    found = []
    for name, command in sorted(cli.commands.items()):
        for line in (command.help or "").splitlines():
            if line.strip().startswith("Example:"):
                found.append((name, line.split("Example:", 1)[1].strip()))
    return found


EXAMPLES = _help_examples()
# The order a user would run them in: a database first, data next, reads last.
ORDER = [
    "migrate",
    "sync-list",
    "sync",
    "sync-prices",
    "status",
    "replay",
    "query",
    "export",
    "check",
]
# Exit codes an example may end with besides 0: `etl check` exits 3 when it finds
# something, and the test API's universe has suspensions and share splits.
FINDINGS = {"check": 3}


def test_every_command_has_an_example():
    assert {name for name, _ in EXAMPLES} == set(cli.commands)


def test_every_help_example_runs(etl_env, data_dir, tmp_path, monkeypatch):
    """Each `Example:` line, as written, against the test API and a test database.
    Placeholders are filled in: `VAR=...` by the test's environment, a snapshot path
    by the snapshot of the sync before it, a relative data path under a temp dir."""
    monkeypatch.chdir(tmp_path)
    ranked = sorted(EXAMPLES, key=lambda e: ORDER.index(e[0]) if e[0] in ORDER else len(ORDER))
    snapshot = None
    for name, example in ranked:
        words = shlex.split(example)
        env = dict(etl_env)
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            var, value = words.pop(0).split("=", 1)
            if var not in env:  # a variable the test sets already keeps the test's value
                env[var] = value
        assert words[0] == "etl", example
        args = words[1:]
        if name == "replay":
            assert snapshot, "no snapshot to replay"
            args = [snapshot if a.startswith("data/raw/") else a for a in args]
        code, out, err = invoke(args, env)
        assert code in (0, FINDINGS.get(name, 0)), f"{example}\n{out}\n{err}"
        if "--json" in args:
            outcome = one_json(out)
            snapshot = outcome.get("snapshot", snapshot)
    assert snapshot


def _terminal_run(args: list[str], env: dict[str, str], columns: int) -> tuple[int, str, bytes]:
    """`python -m etl` with stderr on a pseudo-terminal `columns` wide, stdout a pipe."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl", *args],
        env={**os.environ, **env, "COLUMNS": "200"},  # the bar must ask the terminal, not this
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.stdout.read().decode()
    proc.wait(timeout=120)
    os.close(leader)
    return proc.returncode, stdout, b"".join(chunks)


@pytest.mark.parametrize("columns", [80, 60])
def test_the_progress_bar_fits_the_terminal_and_updates_one_line(etl_env, api, universe, columns):
    api.latency_ms = 20  # a few updates per ETF
    middle = universe.etfs("XSHG")[len(universe.etfs("XSHG")) // 2]
    api.add_fault("502", endpoint="daily", ticker=middle.ticker, times=None)  # a warning midway
    env = {k: v for k, v in etl_env.items() if v is not None}
    code, stdout, raw = _terminal_run(["sync"], env, columns)
    assert code == 3, raw.decode(errors="replace")
    # "\r\x1b[K" wipes the line before a log line; other escapes take no room.
    text = re.sub(r"\r\x1b\[K", "\r\n", raw.decode())
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    lines = text.split("\r\n")
    bar_lines = [line for line in lines if "prices [" in line]
    assert bar_lines, text
    for line in bar_lines:
        updates = [u for u in line.split("\r") if u]
        assert all(u.startswith("prices [") for u in updates), updates  # nothing glued on
        assert max(len(u) for u in updates) <= columns, updates
    assert sum(len(line.split("\r")) for line in bar_lines) > 10  # redrawn in place
    warning = next(line for line in lines if "WARNING" in line)
    assert (
        warning.lstrip("\r").split(" ")[1] == "WARNING" and f".{middle.ticker} skipped" in warning
    )
    assert "PARTIAL" in stdout and "prices [" not in stdout


def test_no_progress_bar_with_json_on_a_terminal(etl_env):
    env = {k: v for k, v in etl_env.items() if v is not None}
    code, stdout, raw = _terminal_run(["sync", "--json"], env, 80)
    assert code == 0
    assert b"\r" not in raw.replace(b"\r\n", b"\n")
    assert json.loads(stdout)["status"] == "ok"


def test_verbose_shows_the_plan_each_request_and_the_database_masked(etl_env, db_url):
    code, _, err = invoke(["sync", "-v"], etl_env)
    assert code == 0
    assert re.search(r"plan: \d+ ETFs: 0 up to date, \d+ by range .*\d+ by day", err), err
    assert re.search(r"GET http://\S+/etf/XSHG/daily\?ticker=\d{6}", err)
    assert "target database: postgresql://" in err
    assert TOKEN not in err
    password = re.match(r"postgresql://[^:/]*:([^@]*)@", db_url)
    if password and password[1]:  # the system server's role has one
        assert password[1] not in err and ":***@" in err
    code, _, err = invoke(["sync", "-v"], etl_env)  # the next evening: by day
    assert re.search(r"plan: \d+ ETFs: \d+ up to date", err)


def test_make_style_options_before_and_after_agree(etl_env):
    before = invoke(["--json", "-q", "sync"], etl_env)
    after = invoke(["sync", "--json", "-q"], etl_env)
    assert before[0] == after[0] == 0
    assert one_json(before[1])["status"] == one_json(after[1])["status"] == "ok"


def test_migrate_with_json_prints_one_object_naming_the_files(etl_env, db):
    code, out, err = invoke(["migrate", "--json"], etl_env)
    assert code == 0, err
    first = one_json(out)
    assert first["status"] == "ok" and first["applied"][0].startswith("0001_")
    assert first["database"].startswith("postgresql://") and "Applying:" in err
    code, out, _ = invoke(["--json", "migrate"], etl_env)
    assert code == 0 and one_json(out)["applied"] == []
