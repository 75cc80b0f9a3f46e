"""Plain-SQL migrations, dbmate style: numbered files in sql/migrations, applied in order,
each in one transaction together with its row in schema_migrations.

A file whose leading comments hold the line `-- transaction:false` (dbmate's
`transaction:false`) runs outside a transaction instead, one statement at a time, for
what PostgreSQL refuses inside one (CREATE INDEX CONCURRENTLY on a live table). Such a
file is not atomic: write it so that running it again after a failure is safe
(IF NOT EXISTS; and drop an INVALID index a failed concurrent build leaves behind).

Only `etl migrate` and a sync holding the sync lock apply migrations; read commands
call `require_schema`, which only looks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from adbc_driver_manager.dbapi import Cursor

from etl.db import Database
from etl.errors import DatabaseError, MigrationError, NotMigratedError
from etl.sqlfiles import MIGRATIONS_DIR

__all__ = ["MIGRATIONS_DIR", "apply_migrations", "migration_files", "split_statements"]

# Fixed advisory-lock key ("etlmigr" in ASCII) serialising migrations across processes.
# Distinct from the sync lock, so a migration never waits for a running sync's lock.
MIGRATION_LOCK_KEY = 0x65746C6D696772

_FILE_NAME = re.compile(r"^(\d+)_[\w.-]+\.sql$")
_NO_TRANSACTION = re.compile(r"^--\s*transaction\s*:\s*false\s*$", re.I)

_CREATE_LEDGER = """
CREATE TABLE schema_migrations (
    version TEXT PRIMARY KEY,
    name TEXT,
    applied_at TIMESTAMP NOT NULL
)"""


def split_statements(sql: str) -> list[str]:
    """Split a SQL file into single statements.

    The ADBC PostgreSQL driver prepares every statement, and PostgreSQL refuses to
    prepare more than one command ("cannot insert multiple commands into a prepared
    statement"), so a file cannot be sent whole. This scanner splits on `;` outside of
    quoted text: '...' (with '' and E'\\' escapes), "identifiers", $tag$ dollar-quoted
    bodies (DO blocks, functions), -- line comments and nested /* */ comments.
    Comments before a statement are dropped with it, so error messages show the SQL.
    """
    statements: list[str] = []
    i = 0
    n = len(sql)
    code = -1  # where the current statement's first real token starts, -1 if none yet
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c == "/" and sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        if c == ";":
            if code >= 0:
                statements.append(sql[code:i].strip())
            i, code = i + 1, -1
            continue
        if code < 0 and not c.isspace():
            code = i
        if c == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not _ident_char(sql[i - 2]))
            i += 1
            while i < n:
                if escapes and sql[i] == "\\":
                    i += 2
                elif sql[i] == "'":
                    if sql.startswith("''", i):
                        i += 2
                    else:
                        break
                else:
                    i += 1
            i += 1
        elif c == '"':
            end = sql.find('"', i + 1)
            while end >= 0 and sql.startswith('""', end):
                end = sql.find('"', end + 2)
            i = n if end < 0 else end + 1
        elif c == "$" and not (i > 0 and _ident_char(sql[i - 1])):
            m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])
            if m:  # $1 and friends are parameters, not quotes
                end = sql.find(m.group(0), i + len(m.group(0)))
                i = n if end < 0 else end + len(m.group(0))
            else:
                i += 1
        else:
            i += 1
    if code >= 0:
        statements.append(sql[code:].strip())
    return statements


def _ident_char(c: str) -> bool:
    return c.isalnum() or c in "_$"


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """The migration files in `directory`, in version order."""
    files = [p for p in directory.iterdir() if _FILE_NAME.match(p.name)]
    return sorted(files, key=lambda p: (int(_version(p)), p.name))


def apply_migrations(
    db: Database,
    echo: Callable[[str], None] = print,
    directory: Path | None = None,
) -> list[str]:
    """Apply every pending migration in order; return the file names applied.

    Each file runs in one transaction with its schema_migrations row, after taking a
    transaction-scoped advisory lock and re-checking the ledger, so two processes
    starting at once apply each file exactly once and the second one just waits.
    """
    files = migration_files(directory or MIGRATIONS_DIR)
    applied: list[str] = []
    with db.connect() as conn, conn.cursor() as cur:
        done = _ensure_ledger(db, cur)
        for path in files:
            if _version(path) not in done and _apply_one(db, cur, path, echo):
                applied.append(path.name)
    if not applied:
        echo("Schema up to date")
    return applied


def in_transaction(sql: str) -> bool:
    """False when the file's leading comment lines say `-- transaction:false`."""
    for line in sql.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break
        if _NO_TRANSACTION.match(line):
            return False
    return True


def pending_migrations(db: Database, directory: Path | None = None) -> list[str] | None:
    """The migration files not applied yet, or None when the database has no
    schema_migrations at all. Only reads: for commands that must not change anything."""
    try:
        (exists,) = db.fetch("SELECT to_regclass('schema_migrations') IS NOT NULL")[0]
        done = {r[0] for r in db.fetch("SELECT version FROM schema_migrations")} if exists else None
    except DatabaseError as exc:
        raise DatabaseError(f"cannot read schema_migrations: {exc}") from None
    if done is None:
        return None
    return [p.name for p in migration_files(directory or MIGRATIONS_DIR) if _version(p) not in done]


def require_schema(db: Database) -> None:
    """Raise NotMigratedError, saying what to run, unless every migration is applied."""
    pending = pending_migrations(db)
    if pending is None:
        raise NotMigratedError(
            f"the database {db.display_url} has no etf-sync schema yet: "
            "run `etl migrate` (or a sync, which migrates) first"
        )
    if pending:
        raise NotMigratedError(
            f"the database {db.display_url} is not migrated: {len(pending)} migration(s) "
            f"pending ({', '.join(pending)}); run `etl migrate`"
        )


def _version(path: Path) -> str:
    return _FILE_NAME.match(path.name)[1]


def _lock(cur: Cursor) -> None:
    # pg_advisory_xact_lock returns void, which ADBC hands back as opaque bytes: wrap it.
    cur.execute("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked", (MIGRATION_LOCK_KEY,))
    cur.fetchall()


def _ensure_ledger(db: Database, cur: Cursor) -> set[str]:
    """Create schema_migrations if missing and return the versions already applied.

    The lock comes before the first look at the table: a backend caches "no such
    relation" and refreshes that cache only at transaction start or when it takes a
    table lock (an advisory lock does not count), so a look taken before waiting would
    miss a ledger another process created meanwhile. When the ledger exists nothing is
    written, so an up-to-date database sees only reads.
    """
    try:
        _lock(cur)
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            cur.execute(_CREATE_LEDGER)
        cur.execute("SELECT version FROM schema_migrations")
        versions = {row[0] for row in cur.fetchall()}
        cur.connection.commit()
    except Exception as exc:
        cur.connection.rollback()
        raise DatabaseError(
            f"cannot read schema_migrations on {db.display_url}: {_db_message(db, exc)}"
        ) from None
    return versions


def _apply_one(db: Database, cur: Cursor, path: Path, echo: Callable[[str], None]) -> bool:
    """Apply one file in its own transaction; False if another process applied it first."""
    version = _version(path)
    sql = path.read_text(encoding="utf-8")
    if not in_transaction(sql):
        return _apply_outside_transaction(db, path, sql, echo)
    statements = split_statements(sql)
    statement = "(taking the migration lock)"
    try:
        _lock(cur)
        cur.execute("SELECT 1 FROM schema_migrations WHERE version = $1", (version,))
        if cur.fetchall():
            cur.connection.rollback()
            return False
        echo(f"Applying: {path.name}")
        started = time.perf_counter()
        for statement in statements:
            cur.execute(statement)
        statement = "(recording it in schema_migrations)"
        cur.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) "
            "VALUES ($1, $2, now() AT TIME ZONE 'UTC')",
            (version, path.name),
        )
        cur.connection.commit()
    except Exception as exc:
        cur.connection.rollback()
        raise MigrationError(
            f"{path.name} failed; nothing of it was applied.\n"
            f"  statement: {_shorten(statement)}\n"
            f"  database said: {_db_message(db, exc)}"
        ) from None
    echo(f"Applied {path.name} in {(time.perf_counter() - started) * 1000:.0f}ms")
    return True


def _apply_outside_transaction(
    db: Database, path: Path, sql: str, echo: Callable[[str], None]
) -> bool:
    """Apply a `-- transaction:false` file on an autocommit connection of its own.

    The migration lock is the session-level form of the same advisory key, held until
    the file is recorded, so other processes still apply each file once."""
    version = _version(path)
    statement = "(taking the migration lock)"
    done: list[str] = []
    with db.connect(autocommit=True) as conn, conn.cursor() as cur:
        try:
            cur.execute(
                "SELECT 1 FROM (SELECT pg_advisory_lock($1)) AS locked", (MIGRATION_LOCK_KEY,)
            )
            cur.fetchall()
            cur.execute("SELECT 1 FROM schema_migrations WHERE version = $1", (version,))
            if cur.fetchall():
                return False
            echo(f"Applying: {path.name} (outside a transaction)")
            started = time.perf_counter()
            for statement in split_statements(sql):
                cur.execute(statement)
                done.append(statement)
            statement = "(recording it in schema_migrations)"
            cur.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) "
                "VALUES ($1, $2, now() AT TIME ZONE 'UTC')",
                (version, path.name),
            )
        except Exception as exc:
            raise MigrationError(
                f"{path.name} failed after {len(done)} of its statements; it runs outside a "
                "transaction (-- transaction:false), so those stay applied. Fix it and run "
                "`etl migrate` again (a failed CREATE INDEX CONCURRENTLY leaves an INVALID "
                "index to drop first).\n"
                f"  statement: {_shorten(statement)}\n"
                f"  database said: {_db_message(db, exc)}"
            ) from None
        finally:
            try:
                cur.execute("SELECT pg_advisory_unlock($1)", (MIGRATION_LOCK_KEY,))
                cur.fetchall()
            except Exception:
                pass  # a dead connection released it already
    echo(f"Applied {path.name} in {(time.perf_counter() - started) * 1000:.0f}ms")
    return True


def _shorten(statement: str, limit: int = 200) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _db_message(db: Database, exc: Exception) -> str:
    """PostgreSQL's own message from an ADBC error, without the query ADBC echoes."""
    fields = {k.decode(): v.decode() for k, v in getattr(exc, "details", None) or []}
    primary = fields.get("PG_DIAG_MESSAGE_PRIMARY")
    if not primary:
        return db.scrub(str(exc)).strip()
    parts = [primary]
    parts += [fields[k] for k in ("PG_DIAG_MESSAGE_DETAIL", "PG_DIAG_MESSAGE_HINT") if k in fields]
    if "PG_DIAG_SQLSTATE" in fields:
        parts.append(f"(SQLSTATE {fields['PG_DIAG_SQLSTATE']})")
    return db.scrub(" ".join(parts))
