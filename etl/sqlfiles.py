"""The SQL files: statements under queries/, migrations under migrations/, read once.

In an installed wheel they sit inside the package (etl/sql, mapped from the top-level
sql/ at build time); in a source checkout or an editable install, the package has no
sql/ of its own and they are read from the repository's sql/ beside it.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import as_file, files
from pathlib import Path


def _sql_dir() -> Path:
    packaged = files("etl").joinpath("sql")
    if packaged.is_dir():
        # A wheel installs as plain files, so this is a real path that outlives the context.
        with as_file(packaged) as path:
            return Path(path)
    return Path(__file__).resolve().parent.parent / "sql"


SQL_DIR = _sql_dir()
MIGRATIONS_DIR = SQL_DIR / "migrations"


@cache
def query(name: str) -> str:
    return (SQL_DIR / "queries" / f"{name}.sql").read_text(encoding="utf-8")
