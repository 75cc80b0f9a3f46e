"""libpq's habits for every connection, ADBC and connectorx alike: PGPASSWORD, PGPASSFILE /
~/.pgpass and sslmode; refused at start-up where they cannot work; passwords masked by
their place in the URL.

Runs against the system PostgreSQL, whose role logs in with a password (tests/pg.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.db import Database, open_database, resolve_url
from etl.errors import ConfigError, DatabaseError
from etl.secrets import mask_url

pytestmark = pytest.mark.system_pg


@pytest.fixture
def db(system_pg):
    database = system_pg.create_database()
    yield database
    system_pg.drop_database(database)


def without_password(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))


def password_of(url: str) -> str:
    return unquote(urlsplit(url).password)


def pgpass_line(url: str, password: str | None = None) -> str:
    """A ~/.pgpass line for `url`, `:` and `\\` escaped as libpq wants."""
    parts = urlsplit(url)
    secret = (password or password_of(url)).replace("\\", "\\\\").replace(":", "\\:")
    return f"{parts.hostname}:{parts.port}:*:{parts.username}:{secret}\n"


def run_etl(env: dict[str, str], *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr, time.monotonic() - started


def clean_pg_env(tmp_path: Path, **extra: str) -> dict[str, str | None]:
    """No PG* variable of the caller's, and a HOME without a ~/.pgpass of its own."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PG")}
    env.update(HOME=str(tmp_path), ETL_DATA_DIR=str(tmp_path / "data"), **extra)
    return env


def test_pgpassword_reaches_both_drivers(db, tmp_path):
    """Before: the ADBC check passed, then connectorx logged `password missing` for 30 s."""
    env = clean_pg_env(tmp_path, DATABASE_URL=without_password(db.url))
    env["PGPASSWORD"] = password_of(db.url)
    code, out, _ = run_etl(env, "migrate")
    assert code == 0, out
    code, out, seconds = run_etl(env, "status")  # reads through connectorx
    assert code == 0, out
    assert seconds < 10 and "r2d2" not in out and "password missing" not in out
    assert password_of(db.url) not in out


@pytest.mark.parametrize("where", ["PGPASSFILE", "~/.pgpass"])
def test_password_file_reaches_both_drivers(db, tmp_path, where):
    passfile = tmp_path / ".pgpass"
    # A comment, a line for another host, then ours with the password's `:` escaped.
    passfile.write_text("# ours below\nelsewhere:5432:*:*:nope\n" + pgpass_line(db.url))
    passfile.chmod(0o600)
    env = clean_pg_env(tmp_path, DATABASE_URL=without_password(db.url))
    if where == "PGPASSFILE":
        env["HOME"] = str(tmp_path / "nohome")
        env["PGPASSFILE"] = str(passfile)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.delenv(key, raising=False) if value is None else mp.setenv(key, value)
        resolved = Database(without_password(db.url))
        assert password_of(resolved.url) == password_of(db.url)
        assert ":***@" in resolved.display_url or "@" in resolved.display_url
        assert password_of(db.url) not in resolved.display_url
        resolved.execute("CREATE TABLE t (x int)")  # ADBC
        resolved.execute("INSERT INTO t VALUES (7)")
        assert resolved.read("SELECT x FROM t")["x"].to_list() == [7]  # connectorx


def test_a_password_file_others_may_read_is_ignored_and_fails_fast(db, tmp_path):
    passfile = tmp_path / "pgpass"
    passfile.write_text(pgpass_line(db.url))
    passfile.chmod(0o644)
    env = clean_pg_env(tmp_path, DATABASE_URL=without_password(db.url), PGPASSFILE=str(passfile))
    code, out, seconds = run_etl(env, "status")
    assert code == 1
    assert seconds < 10  # libpq's own refusal, not connectorx's 30 s of retries
    assert "no password supplied" in out and "check DATABASE_URL" in out


def test_url_password_wins_over_the_environment(db):
    url = db.url
    assert resolve_url(url, {"PGPASSWORD": "other"}) == url
    bare = without_password(url)
    assert password_of(resolve_url(bare, {"PGPASSWORD": "p:w@x"})) == "p:w@x"
    assert resolve_url(bare, {}) == bare or password_of(resolve_url(bare, {}))


def test_pgsslmode_reaches_connectorx_and_unsupported_modes_are_refused(db, tmp_path):
    bare = db.url
    assert resolve_url(bare, {"PGSSLMODE": "disable"}).endswith("?sslmode=disable")
    assert "sslmode=require" in resolve_url(bare + "?sslmode=require", {"PGSSLMODE": "disable"})
    for mode in ("verify-full", "verify-ca", "bogus"):
        with pytest.raises(ConfigError, match=f"sslmode='{mode}'"):
            Database(bare, env={"PGSSLMODE": mode})
    # The test server has no TLS: `require` fails at once in the start-up check.
    started = time.monotonic()
    with pytest.raises(DatabaseError, match="SSL"):
        with open_database(bare + "?sslmode=require", tmp_path):
            pass
    assert time.monotonic() - started < 10
    works = Database(bare, env={"PGSSLMODE": "prefer"})
    assert "sslmode=prefer" in works.cx_url
    assert works.read("SELECT 1 AS x")["x"].to_list() == [1]


def test_sslmode_verify_full_is_refused_at_start_up_by_the_cli(db, tmp_path):
    env = clean_pg_env(tmp_path, DATABASE_URL=db.url + "?sslmode=verify-full")
    code, out, seconds = run_etl(env, "migrate")
    assert code == 1 and seconds < 5
    assert "sslmode='verify-full'" in out and "require" in out
    assert password_of(db.url) not in out


def test_a_one_letter_password_masks_the_url_and_nothing_else(system_pg, tmp_path):
    """Before: with password `e`, `Fail***d to conn***ct ... for us***r`."""
    parts = urlsplit(system_pg.url)
    url = urlunsplit(parts._replace(netloc=f"{parts.username}:e@{parts.hostname}:{parts.port}"))
    with pytest.raises(DatabaseError) as err:
        with open_database(url, tmp_path):
            pass
    message = str(err.value)
    assert f"cannot connect to postgresql://{parts.username}:***@" in message
    assert f'password authentication failed for user "{parts.username}"' in message
    assert "***" not in message.replace(f"{parts.username}:***@", "")
    assert ":e@" not in message
    assert mask_url(url) == url.replace(":e@", ":***@")
    assert Database(url).scrub("Failed to connect: user e") == "Failed to connect: user e"


def test_password_file_rules_follow_libpq(tmp_path):
    passfile = tmp_path / "pgpass"
    passfile.write_text(
        "# comment\n"
        "db.example:5432:other:etl:wrong-db\n"
        "db.example:*:stocks:etl:pa\\:ss\\\\word\n"  # `\:` and `\\` escapes
        "localhost:5432:*:*:on-the-socket\n"
    )
    passfile.chmod(0o600)
    env = {"PGPASSFILE": str(passfile)}
    tcp = resolve_url("postgresql://etl@db.example:6543/stocks", env)
    assert password_of(tcp) == "pa:ss\\word"
    assert resolve_url("postgresql://etl@db.example/nomatch", env).endswith(
        "etl@db.example/nomatch"
    )
    # libpq's default socket directory matches a `localhost` line; user from PGUSER.
    sock = resolve_url("postgresql:///stocks?host=/var/run/postgresql", {**env, "PGUSER": "u"})
    assert password_of(sock) == "on-the-socket" and urlsplit(sock).username == "u"
    # A password in the URL, even an empty one, is never looked up.
    assert resolve_url("postgresql://etl:@db.example/stocks", env).count(":@") == 1
