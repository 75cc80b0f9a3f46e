"""Installs as an operator makes them: the built wheel in a fresh virtualenv, and make.

The wheel test is what `pip install .` and `pipx install` do on a server: no source tree
beside the package, so every SQL file must travel inside the wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from etlfixtures import TOKEN

ROOT = Path(__file__).resolve().parent.parent


def clean_env(tmp_path: Path) -> dict[str, str]:
    # As from a shell, not from inside `make test` (MAKELEVEL makes make print
    # "Entering directory" on stdout).
    drop = ("DATABASE_URL", "STOCK_API_TOKEN", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "FLAGS", "ARGS",
            "PYTHONPATH", "VIRTUAL_ENV")  # fmt: skip
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith(("ETL_", "TSANGHI_", "PG"))}  # fmt: skip
    env["HOME"] = str(tmp_path / "home")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv holding the built wheel and its runtime dependencies only.

    pip's own cache serves the dependencies, so a warm machine needs no download."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("etf_sync-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "etl/sql/migrations/0001_base_tables.sql" in names
    assert "etl/sql/queries/daily_insert.sql" in names
    assert not any(n.startswith(("tests/", "fakeapi/")) for n in names)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return venv


@pytest.mark.slow
def test_the_wheel_installs_migrates_and_syncs_without_the_source_tree(
    installed, tmp_path, db_embedded_only, api
):
    venv = installed
    listed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=json"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    packages = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "etf-sync" in packages
    assert not packages & {"pytest", "ruff"}  # a server install carries no test tools

    env = clean_env(tmp_path)
    env.update(
        DATABASE_URL=db_embedded_only.url,
        TSANGHI_TOKEN=TOKEN,
        TSANGHI_BASE_URL=api.base_url,
        ETL_DATA_DIR=str(tmp_path / "data"),
        ETL_HTTP_BACKOFF="0.01",
    )
    etl = str(venv / "bin" / "etl")
    # Run from elsewhere, so nothing can come from the repository's own files.
    migrated = subprocess.run([etl, "migrate"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    assert "Applied 0001_base_tables.sql" in migrated.stdout
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import etl.sqlfiles as s; print(s.SQL_DIR)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(venv)

    synced = subprocess.run([etl, "--json", "--quiet", "sync"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert synced.returncode == 0, synced.stderr
    summary = json.loads(synced.stdout)
    assert summary["status"] == "ok" and summary["rows_inserted"] > 0
    stored = db_embedded_only.fetch("SELECT count(*) FROM stock_daily_data")[0][0]
    assert stored == summary["rows_inserted"]


@pytest.mark.slow
def test_make_sync_etf_with_json_flags_prints_only_json(tmp_path, db_url, api):
    env = clean_env(tmp_path)
    env.update(
        DATABASE_URL=db_url,
        TSANGHI_TOKEN=TOKEN,
        TSANGHI_BASE_URL=api.base_url,
        ETL_DATA_DIR=str(tmp_path / "data"),
        ETL_HTTP_BACKOFF="0.01",
    )
    done = subprocess.run(["make", "sync-etf", "FLAGS=--json --quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)  # the whole of stdout: no echoed recipe line
    assert summary["command"] == "sync" and summary["status"] == "ok"

    # make turns etl's own exit code into 2; the README says so and cron uses the wrapper.
    env["TSANGHI_TOKEN"] = "not-the-token"
    refused = subprocess.run(["make", "sync-etf", "FLAGS=--quiet"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stdout == "" or "$(ETL)" not in refused.stdout
