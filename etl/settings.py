"""One settings object, built once at start-up: flags over environment over defaults.

Secrets (the API token, a password inside DATABASE_URL) come only from the
environment and are kept out of ``repr`` so they never reach a log line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from etl.errors import ConfigError

DEFAULT_BASE_URL = "https://tsanghi.com/api/fin"
TOKEN_VARS = ("TSANGHI_TOKEN", "STOCK_API_TOKEN")  # the second is the old system's name
# Optional tuning from the environment (flags still win): variable -> (field, type).
TUNING_VARS = {
    "ETL_WORKERS": ("workers", int),
    "ETL_RATE_LIMIT": ("rate_limit", float),
    "ETL_HTTP_ATTEMPTS": ("max_attempts", int),
    "ETL_HTTP_BACKOFF": ("backoff", float),
    "ETL_HTTP_TIMEOUT": ("read_timeout", float),
    "ETL_HTTP_CONNECT_TIMEOUT": ("connect_timeout", float),
    "ETL_BATCH_ROWS": ("batch_rows", int),
    "ETL_MAX_FAILED_SHARE": ("max_failed_share", float),
    "ETL_LATEST_MAX_DAYS": ("latest_max_days", int),
    "ETL_KEEP_DAYS": ("keep_days", int),
    "ETL_KEEP_SNAPSHOTS": ("keep_snapshots", int),
    "ETL_REJECT_PARTIAL_SHARE": ("reject_partial_share", float),
    "ETL_REJECT_FAILED_SHARE": ("reject_failed_share", float),
    "ETL_BREAKER_CONSECUTIVE": ("breaker_consecutive", int),
    "ETL_BREAKER_FAILED_SHARE": ("breaker_failed_share", float),
    "ETL_BREAKER_MIN_REQUESTS": ("breaker_min_requests", int),
    "ETL_WAIT_TIMEOUT": ("wait_timeout", float),
}


# Field -> (lowest, highest, the rule as the user reads it). NaN and infinity never pass.
_LIMITS: dict[str, tuple[float, float, str]] = {
    "workers": (1, 64, "workers must be a whole number from 1 to 64"),
    "rate_limit": (0, math.inf, "the rate limit must be 0 (no limit) or more requests a second"),
    "connect_timeout": (0.001, 3600, "the connect timeout must be more than 0 and at most 3600 s"),
    "read_timeout": (0.001, 3600, "the HTTP timeout must be more than 0 and at most 3600 s"),
    "max_attempts": (1, 100, "attempts per request must be from 1 to 100"),
    "backoff": (0, 600, "the backoff must be from 0 to 600 seconds"),
    "batch_rows": (1, math.inf, "rows per load batch must be at least 1"),
    "max_failed_share": (0, 1, "the failed share must be between 0 and 1"),
    "latest_max_days": (0, 366, "the latest-day window must be from 0 to 366 trading days"),
    "wait_timeout": (0, 7 * 86400, "the lock wait must be from 0 to 604800 seconds"),
}


@dataclass(frozen=True)
class Settings:
    # PostgreSQL URL; None means the embedded server kept in <data_dir>/pg.
    database_url: str | None = field(default=None, repr=False)
    # Tsanghi API token; None is fine for commands that never call the API.
    token: str | None = field(default=None, repr=False)
    # API base; tests and mirrors point it elsewhere.
    base_url: str = DEFAULT_BASE_URL
    # Root of snapshots (raw/<run_id>/), the embedded database (pg/) and logs.
    data_dir: Path = Path("data")
    # Concurrent HTTP requests while fetching daily histories.
    workers: int = 8
    # Upper bound on requests per second over all workers (0 = unlimited).
    rate_limit: float = 100.0
    # Seconds to wait for a connection, and for an answer once connected.
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    # Attempts per request before a ticker is given up as failed.
    max_attempts: int = 5
    # Base of the exponential backoff between attempts (seconds).
    backoff: float = 0.5
    # Daily rows per load transaction: bounds memory and the size of a rollback.
    batch_rows: int = 250_000
    # Share of symbols that may fail before a run counts as failed (the old 90% criterion).
    max_failed_share: float = 0.10
    # Use one /daily/latest request per exchange and day when ETFs are at most
    # this many trading days behind; older gaps go per ticker.
    latest_max_days: int = 5
    # Snapshot retention applied after every sync (etl prune's rules); None: keep all.
    keep_days: int | None = None
    keep_snapshots: int | None = None
    # Share of rejected rows above which a run is partial (0: any rejected row),
    # and above which it fails; a run whose every row was rejected fails too.
    reject_partial_share: float = 0.0
    reject_failed_share: float = 0.5
    # Circuit breaker: stop fetching after this many failed requests in a row
    # (0: never), or once more than breaker_failed_share of the requests failed,
    # counted from breaker_min_requests requests on. What arrived is kept.
    breaker_consecutive: int = 20
    breaker_failed_share: float = 0.5
    breaker_min_requests: int = 100
    # Seconds to wait for another sync's lock (--wait-timeout); None: plain --wait waits
    # for as long as it takes, and without --wait a run gives up at once (exit 4).
    wait_timeout: float | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Environment first, then explicit overrides (flags) that are not None."""
        env = dict(os.environ) if env is None else env
        sources: dict[str, str] = {}  # where each checked value came from, for messages
        values: dict[str, Any] = {
            "database_url": env.get("DATABASE_URL") or None,
            "token": next((env[v] for v in TOKEN_VARS if env.get(v)), None),
            "base_url": env.get("TSANGHI_BASE_URL") or DEFAULT_BASE_URL,
            "data_dir": Path(env.get("ETL_DATA_DIR") or "data"),
        }
        for name, (key, kind) in TUNING_VARS.items():
            if env.get(name):
                sources[key] = f"{name}={env[name]}"
                try:
                    values[key] = kind(env[name])
                except ValueError:
                    raise ConfigError(
                        f"{name}={env[name]!r} is not a valid {kind.__name__}"
                    ) from None
        known = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key not in known:
                raise TypeError(f"unknown setting {key!r}")
            if value is not None:
                values[key] = value
                sources[key] = f"--{key.replace('_', '-')} {value}"
        settings = cls(**values)
        settings.validate(sources)
        return settings

    def validate(self, sources: dict[str, str] | None = None) -> None:
        """Refuse, at start-up, any value the run could not honour, naming where it came from."""
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"TSANGHI_BASE_URL must start with http:// or https://, got {self.base_url!r}"
            )
        sources = sources or {}
        for key, (low, high, rule) in _LIMITS.items():
            value = getattr(self, key)
            if value is None and key == "wait_timeout":
                continue
            number_ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not number_ok or not math.isfinite(value) or value < low or value > high:
                where = sources.get(key) or f"{key} = {value!r}"
                raise ConfigError(f"{where}: {rule}")
        for name, value in (
            ("ETL_KEEP_DAYS", self.keep_days),
            ("ETL_KEEP_SNAPSHOTS", self.keep_snapshots),
        ):
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be 0 or more, got {value}")
        for name in ("reject_partial_share", "reject_failed_share", "breaker_failed_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"ETL_{name.upper()} must be between 0 and 1")
        if self.breaker_consecutive < 0 or self.breaker_min_requests < 1:
            raise ConfigError(
                "ETL_BREAKER_CONSECUTIVE must be 0 or more, ETL_BREAKER_MIN_REQUESTS 1 or more"
            )

    def require_token(self) -> str:
        if not self.token:
            raise ConfigError(
                "no API token: set TSANGHI_TOKEN (or the older STOCK_API_TOKEN) "
                "in the environment; get one at tsanghi.com"
            )
        return self.token

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"
