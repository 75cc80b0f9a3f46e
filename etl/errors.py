"""Named errors of the library. Only the CLI turns them into exit codes."""

from __future__ import annotations


class EtlError(Exception):
    """Base class: a failure the user can act on; the message says how."""


class ConfigError(EtlError):
    """Configuration is missing or invalid (flags, environment, data directory)."""


class DatabaseError(EtlError):
    """The database could not be reached or refused a statement."""


class MigrationError(DatabaseError):
    """A migration file failed; nothing of it was applied."""


class ApiError(EtlError):
    """The Tsanghi API answered with an error or not at all, after retries."""


class AuthError(ApiError):
    """The API rejected the token: fatal for the whole run."""


class LockHeldError(EtlError):
    """Another sync holds this database's sync lock."""


class LockLostError(DatabaseError):
    """The connection holding the sync lock died, or the lock is no longer held."""


class NoDatabaseError(ConfigError):
    """A read command found no database to read (no embedded cluster yet)."""


class ReadOnlyError(ConfigError):
    """etl query was given a statement that writes or acts outside its transaction."""


class NothingToAudit(ConfigError):
    """etl check found no stored prices among the ETFs it was asked to audit."""


class NotMigratedError(DatabaseError):
    """The database lacks the schema, or some migrations: `etl migrate` is needed."""


class SnapshotError(EtlError):
    """A snapshot directory is missing, unreadable or incomplete."""


class StageError(EtlError):
    """A stage (extract, normalize, load) of a run failed; what it wrote is kept."""

    def __init__(self, stage: str, run_id: str, detail: str) -> None:
        super().__init__(f"{stage} stage of run {run_id}: {detail}")
        self.stage, self.run_id, self.detail = stage, run_id, detail
