"""Fixtures for end-to-end tests: the local Tsanghi API and the `etl` CLI against it.

The API is a real HTTP server on loopback (fakeapi); the CLI runs in process
through click's CliRunner with the environment a user would set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakeapi.server import FakeTsanghi
from fakeapi.universe import Universe

from etl.cli import cli

TOKEN = "tok-7f3a9c-SECRET"
START = date(2024, 1, 2)
END = date(2024, 3, 29)


@pytest.fixture
def universe() -> Universe:
    """Thirty ETFs over one quarter: small enough for every test to sync in full."""
    return Universe(n_etfs=30, start=START, end=END, seed=7)


@pytest.fixture
def api(universe: Universe) -> Iterator[FakeTsanghi]:
    with FakeTsanghi(universe, token=TOKEN) as server:
        yield server


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads(self.stdout.strip().splitlines()[-1])


EtlRunner = Callable[..., Outcome]


@pytest.fixture(scope="module")
def reference(embedded_pg, tmp_path_factory) -> dict:
    """Checksums of an uninterrupted sync of the same universe as `universe`, to
    compare interrupted, concurrent and replayed runs against."""
    from crashhelper import clean_run_checksums

    return clean_run_checksums(
        embedded_pg,
        tmp_path_factory.mktemp("reference"),
        TOKEN,
        n_etfs=30,
        start=START,
        end=END,
        seed=7,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def etl_env(db_url: str, api: FakeTsanghi, data_dir: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "TSANGHI_TOKEN": TOKEN,
        "TSANGHI_BASE_URL": api.base_url,
        "ETL_DATA_DIR": str(data_dir),
        # Retries stay real but fast: tests wait milliseconds, not seconds.
        "ETL_HTTP_BACKOFF": "0.01",
        "ETL_HTTP_TIMEOUT": "2",
        "ETL_WORKERS": "4",
    }


@pytest.fixture
def etl(etl_env: dict[str, str]) -> EtlRunner:
    """Run `etl <args>` in process; `--json` is added, the summary parsed on demand."""

    def run(*args: str, env: dict[str, str | None] | None = None, as_json: bool = True) -> Outcome:
        runner = CliRunner()
        argv = (["--json"] if as_json else []) + list(args)
        result = runner.invoke(cli, argv, env={**etl_env, **(env or {})}, catch_exceptions=False)
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return run


def suspend(universe: Universe, exchange: str, ticker: str, days: set[str]) -> None:
    """The ETF serves no row on ``days`` (ISO dates: suspended), whatever days the
    universe adds later: call it again after ``advance``."""
    universe.clear_rows(exchange, ticker)
    rows = [r for r in universe.daily_rows(exchange, ticker) if r["date"] not in days]
    universe.set_rows(exchange, ticker, rows)


def plan_etf(code: str, watermark: date) -> dict:
    """One active Shenzhen ETF of a plan's context (PLAN_SCHEMA), stored up to ``watermark``."""
    return {
        "symbol": f"SZ.{code}",
        "stock_name": code,
        "market_code": "SZ",
        "stock_code": code,
        "is_active": "Y",
        "prev_date": datetime.combine(watermark, datetime.min.time()),
        "prev_close": Decimal("1.0000"),
    }
