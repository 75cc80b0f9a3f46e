"""The API token and the database password never leave the process: not on
stdout or stderr (also with -v), not in the snapshot files, not in a table.

Runs against the system PostgreSQL, whose role logs in with a password that
needs percent-encoding in DATABASE_URL (tests/pg.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import polars as pl
import pytest
from crashhelper import ROOT, child_env, cut_off, dbname
from etlfixtures import TOKEN

from etl.load import Loader
from etl.secrets import mask_url, scrub

pytestmark = pytest.mark.system_pg

WRONG_TOKEN = "tok-0b5e11-WRONG"  # a user's mistyped token is a secret too
WRONG_PASSWORD = "wr0ng-pa55-4c2e"


@pytest.fixture
def db(system_pg):
    """The system server: its role has a password (the embedded one trusts the socket)."""
    database = system_pg.create_database()
    yield database
    system_pg.drop_database(database)


def secrets_of(url: str) -> list[str]:
    password = unquote(urlsplit(url).password or "")
    assert len(password) > 10
    return [
        TOKEN,
        TOKEN.split("-")[1],
        WRONG_TOKEN,
        password,
        quote(password, safe=""),
        password.split(":")[-1],  # the random part alone
        WRONG_PASSWORD,
    ]


def with_password(url: str, password: str | None = None, port: int | None = None) -> str:
    parts = urlsplit(url)
    user = parts.username
    netloc = f"{user}:{quote(password, safe='')}@" if password else f"{user}@"
    netloc += f"{parts.hostname}:{port or parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def texts_under(directory: Path) -> dict[str, str]:
    """Every file as text: raw bytes, and Parquet decoded (its pages are compressed)."""
    out = {}
    for file in sorted(directory.rglob("*")):
        if not file.is_file():
            continue
        out[str(file)] = file.read_bytes().decode("utf-8", "replace")
        if file.suffix == ".parquet":
            frame = pl.read_parquet(file)
            out[f"{file} (decoded)"] = frame.select(pl.all().cast(pl.String)).write_csv()
    return out


def table_texts(db) -> dict[str, str]:
    tables = ("stock_info", "stock_daily_data", "etl_runs", "schema_migrations")
    return {t: "\n".join(r[0] for r in db.fetch(f"SELECT t::text FROM {t} AS t")) for t in tables}


@pytest.mark.slow
def test_token_and_password_appear_in_no_output_file_or_table(
    db, etl, api, universe, data_dir, tmp_path, system_pg, monkeypatch
):
    url = db.url
    secrets = secrets_of(url)
    outputs: dict[str, str] = {}

    def child(name: str, *args: str, expect: int, **env: str) -> str:
        run_env = child_env(url, api.base_url, TOKEN, data_dir, ETL_HTTP_ATTEMPTS="3", **env)
        done = subprocess.run(
            [sys.executable, "-m", "etl", "-v", *args],
            cwd=ROOT,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        outputs[f"{name} stdout"], outputs[f"{name} stderr"] = done.stdout, done.stderr
        assert done.returncode == expect, (name, done.stderr)
        return done.stdout + done.stderr

    # A night with every kind of API trouble, one ticker never answering.
    down = [r["ticker"] for r in universe.list_rows("XSHE") if r["is_active"]][0]
    api.add_fault("429", endpoint="list", times=1)
    api.add_fault("503", endpoint="daily", times=3)
    api.add_fault("drop", endpoint="daily", times=1)
    api.add_fault("envelope", endpoint="latest", times=1)
    api.add_fault("502", endpoint="daily", ticker=down, times=None)
    child("faulty night", "sync", expect=3)
    api.clear_faults()

    # The token rejected half-way (by the prices endpoint), and a wrong token.
    api.add_fault("auth", endpoint="daily", times=None)
    assert "check TSANGHI_TOKEN" in child("token rejected", "--json", "sync-prices", expect=1)
    api.clear_faults()
    child("wrong token", "sync", expect=1, TSANGHI_TOKEN=WRONG_TOKEN)

    # The database: down, refusing the password, and fine (migrate, status show its URL).
    dead = with_password(url, unquote(urlsplit(url).password), port=1)
    stderr = child("database down", "sync", expect=1, DATABASE_URL=dead)
    assert f"{urlsplit(url).username}:***@127.0.0.1:1/" in stderr
    child("wrong password", "sync", expect=1, DATABASE_URL=with_password(url, WRONG_PASSWORD))
    assert ":***@" in child("migrate", "migrate", expect=0)
    child("status", "--json", "status", expect=0)

    # The database lost in the middle of a load, then the replay (in process).
    universe.advance(8)
    original = Loader.load_daily

    def load_daily(self, rows, overwrite=False):
        if not rows.is_empty():
            cut_off(system_pg, db)
        return original(self, rows, overwrite)

    monkeypatch.setattr(Loader, "load_daily", load_daily)
    lost = etl("-v", "sync", env={"ETL_BATCH_ROWS": "60"})
    monkeypatch.undo()
    system_pg.admin(f'ALTER DATABASE "{dbname(db)}" ALLOW_CONNECTIONS true')
    assert lost.exit_code == 1 and "etl replay" in lost.stderr
    outputs["lost stdout"], outputs["lost stderr"] = lost.stdout, lost.stderr
    replayed = etl("-v", "replay", lost.summary["snapshot"], env={"TSANGHI_TOKEN": None})
    assert replayed.exit_code == 0, replayed.stderr
    outputs["replay stdout"], outputs["replay stderr"] = replayed.stdout, replayed.stderr

    # -v really was verbose, so the check below covered the debug lines too.
    assert " DEBUG " in outputs["faulty night stderr"]
    files = texts_under(data_dir)
    assert any("kind=prices" in f for f in files) and any("manifest.json" in f for f in files)
    tables = table_texts(db)
    assert tables["stock_daily_data"] and tables["etl_runs"].count("\n") == 5 - 1  # 5 runs
    for where, text in {**outputs, **files, **tables}.items():
        for secret in secrets:
            assert secret not in text, f"a secret in {where}"


def test_the_one_scrubber_masks_each_secret_by_its_place():
    """etl.secrets.scrub serves the API client, the database and the run ledger alike:
    passwords and `token=` by their place, a named token wherever it is, a given URL
    as its shown form; a short secret elsewhere in the words is left alone."""
    text = (
        "GET https://api.example/etf/XSHG/list?token=tok-0b5e11-WRONG&x=1 failed; "
        "connect postgresql://u:pa55@h/d host=h password='p w'; "
        "echoed tok-0b5e11-WRONG; postgresql://u:secret@@sock/d; user e demo"
    )
    assert scrub(
        text, ["tok-0b5e11-WRONG", None, ""], {"postgresql://u:secret@@sock/d": "<embedded>"}
    ) == (
        "GET https://api.example/etf/XSHG/list?token=***&x=1 failed; "
        "connect postgresql://u:***@h/d host=h password=***; "
        "echoed ***; <embedded>; user e demo"
    )
    assert scrub("?token=demo&ticker=510050 demo") == "?token=***&ticker=510050 demo"
    assert mask_url("postgresql://u:e@h/d user e") == "postgresql://u:***@h/d user e"
