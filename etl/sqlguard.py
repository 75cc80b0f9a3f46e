"""What ``etl query`` refuses before a statement reaches the server.

The query runs in a read-only transaction, so the server itself refuses every
write (INSERT, UPDATE, DELETE, DDL, nextval, ...). A few things a read-only
transaction does not stop, and this module refuses by reading the statement:

- statements other than a query: ``etl query`` runs one SELECT, WITH, VALUES or
  TABLE statement (``COPY ... TO PROGRAM``, ``DO``, ``CALL``, ``SET`` or a second
  statement would act outside the rows it returns);
- calls of server functions that act outside the transaction even when it is
  read-only (``DENIED``: end or cancel sessions, reload the configuration,
  change settings, large objects, other databases through dblink, session
  locks), and of functions that run SQL given as text, which could hide such a
  call (``query_to_xml``, ``ts_stat``).

Names are compared case-insensitively, quoted or not, schema-qualified or not,
and also inside string literals and dollar-quoted text. The limit: a function
defined in the database that calls one of them is not seen; a role without
those privileges is the only complete answer there.
"""

from __future__ import annotations

import re

from etl.errors import ReadOnlyError

# Names (or name prefixes, ending in "_") of functions refused anywhere in a query.
DENIED = (
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_log_backend_memory_contexts",
    "pg_signal_backend",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_wal_replay_",
    "pg_stat_reset",
    "pg_stat_reset_",
    "pg_create_",
    "pg_drop_replication_slot",
    "pg_replication_origin_",
    "pg_copy_",
    "pg_logical_emit_message",
    "pg_notify",
    "pg_file_",
    "pg_advisory_",
    "pg_try_advisory_",
    "set_config",
    "lo_",
    "lowrite",
    "dblink",
    "dblink_",
    # They run SQL given as text, where any of the above could be spelled in pieces.
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "ts_stat",
)
# The first word of a statement that only returns rows.
QUERIES = ("select", "with", "values", "table")

_TOKEN = re.compile(
    r"""
      (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<estring>[eE]'(?:[^'\\]|\\.|'')*(?:'|\Z))
    | (?P<string>'(?:[^']|'')*(?:'|\Z))
    | (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?(?:\$(?P=tag)?\$|\Z))
    | (?P<quoted>"(?:[^"]|"")*(?:"|\Z))
    | (?P<word>[A-Za-z_][\w$]*)
    | (?P<other>\S)
    """,
    re.S | re.X,
)


def _tokens(sql: str) -> list[tuple[str, str]]:
    """(kind, text) of each token: word (lowercased), quoted (its name), string
    (its content), or the character; comments are dropped."""
    out: list[tuple[str, str]] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup or "other"
        text = m.group(kind)
        if kind == "comment":
            continue
        if kind == "word":
            out.append(("word", text.lower()))
        elif kind == "quoted":
            out.append(("word", text[1:].removesuffix('"').replace('""', '"').lower()))
        elif kind in ("string", "estring"):
            body = text[2:] if kind == "estring" else text[1:]
            out.append(("string", body.removesuffix("'").replace("''", "'")))
        elif kind in ("dollar", "tag"):
            tag = f"${m.group('tag') or ''}$"
            out.append(("string", text[len(tag) :].removesuffix(tag)))
        else:
            out.append(("other", text))
    return out


def _denied(name: str) -> bool:
    return any(name == d or (d.endswith("_") and name.startswith(d)) for d in DENIED)


def _calls(tokens: list[tuple[str, str]], depth: int = 0) -> list[str]:
    """Denied function names called in ``tokens``, and in the SQL of their strings."""
    found = []
    for i, (kind, text) in enumerate(tokens):
        if kind == "word" and _denied(text):
            following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
            if following == ("other", "("):
                found.append(text)
        elif kind == "string" and depth < 4:
            found += _calls(_tokens(text), depth + 1)
    return found


def refuse_writes(sql: str) -> None:
    """Raise ReadOnlyError, one line, for what a read-only transaction would not stop."""
    tokens = _tokens(sql)
    statements = [[]]  # type: list[list[tuple[str, str]]]
    for token in tokens:
        if token == ("other", ";"):
            statements.append([])
        else:
            statements[-1].append(token)
    statements = [s for s in statements if s]
    if not statements:
        raise ReadOnlyError(
            "etl query needs one SQL statement, e.g. SELECT count(*) FROM stock_info"
        )
    if len(statements) > 1:
        raise ReadOnlyError(
            f"etl query is read-only: it runs one statement, this text has {len(statements)}"
        )
    first = next((text for kind, text in statements[0] if text != "("), "")
    if first not in QUERIES:
        raise ReadOnlyError(
            f"etl query is read-only: it runs one SELECT, WITH, VALUES or TABLE statement, "
            f"not {first.upper() or 'this'}"
        )
    calls = sorted(set(_calls(tokens)))
    if calls:
        raise ReadOnlyError(
            f"etl query is read-only: it refuses {', '.join(c + '()' for c in calls)}, "
            "a server function that acts outside a read-only transaction or runs SQL text"
        )
