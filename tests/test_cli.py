"""The command line: every command documents itself, with an example and the exit codes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from etl.cli import cli

COMMANDS = sorted(cli.commands)


def test_the_expected_commands_exist():
    assert {"migrate", "sync", "sync-list", "sync-prices", "replay", "status"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert cli.commands[name].help and len(cli.commands[name].help) > 20
    assert "Example:" in result.output


def test_group_help_lists_exit_codes():
    out = CliRunner().invoke(cli, ["--help"]).output
    for line in ("0  ok", "1  failed", "3  partial", "4  another sync"):
        assert line in out


def test_usage_errors_exit_2_with_a_clear_message():
    result = CliRunner().invoke(
        cli, ["sync-prices", "--symbol", "XX.12"], env={"TSANGHI_TOKEN": "t"}
    )
    assert result.exit_code == 2
    assert "invalid symbol 'XX.12'" in result.stderr
    result = CliRunner().invoke(cli, ["sync", "--exchange", "NYSE"])
    assert result.exit_code == 2


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run `python -m etl` with stderr on a pseudo-terminal, stdout on a pipe."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.stdout.read()
    proc.wait(timeout=120)
    os.close(leader)
    return proc.returncode, stdout, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("quiet", [False, True])
def test_a_progress_bar_on_a_terminal_only_and_never_with_quiet(etl_env, quiet):
    env = {k: v for k, v in etl_env.items() if v is not None}
    code, stdout, terminal = _run_on_a_terminal((["--quiet"] if quiet else []) + ["sync"], env)
    assert code == 0, terminal
    assert ("ETFs" in terminal and "rows/s" in terminal and "ETA" in terminal) is not quiet
    assert "OK" in stdout and "rows/s" not in stdout  # the summary alone on stdout
    assert ("INFO" in terminal) is not quiet


def test_no_progress_bar_when_stderr_is_not_a_terminal(etl):
    out = etl("sync", as_json=False)
    assert out.exit_code == 0
    assert "rows/s" not in out.stderr and "\r" not in out.stderr
    assert "INFO" in out.stderr and "OK" in out.stdout
