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
