"""The progress line itself; tests/test_cli_habits.py runs it on a real terminal."""

from __future__ import annotations

from etl.progress import bar_line


def test_the_bar_takes_what_the_figures_leave_of_the_line():
    line = bar_line("prices", 3, 12, "3/12 ETFs", 40)
    assert line == "prices [#####---------------] 3/12 ETFs"
    assert len(line) == 39  # the last column stays free: no wrap
    assert bar_line("prices", 12, 12, "12/12 ETFs", 30) == "prices [#########] 12/12 ETFs"
    assert bar_line("prices", 0, 12, "0/12 ETFs", 10) == "prices [] 0/12 ETFs"
