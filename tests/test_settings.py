"""Every setting is checked at start-up, with a message naming where the value came from."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from etl.errors import ConfigError
from etl.settings import Settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ETL_HTTP_BACKOFF": "-1"}, "ETL_HTTP_BACKOFF=-1: the backoff must be from 0 to 600"),
        ({"ETL_RATE_LIMIT": "-5"}, "ETL_RATE_LIMIT=-5: the rate limit must be 0 (no limit)"),
        ({"ETL_RATE_LIMIT": "nan"}, "ETL_RATE_LIMIT=nan: the rate limit"),
        ({"ETL_HTTP_ATTEMPTS": "0"}, "ETL_HTTP_ATTEMPTS=0: attempts per request must be"),
        ({"ETL_HTTP_ATTEMPTS": "-3"}, "ETL_HTTP_ATTEMPTS=-3: attempts per request must be"),
        ({"ETL_HTTP_TIMEOUT": "0"}, "ETL_HTTP_TIMEOUT=0: the HTTP timeout must be more than 0"),
        ({"ETL_HTTP_TIMEOUT": "inf"}, "ETL_HTTP_TIMEOUT=inf: the HTTP timeout"),
        ({"ETL_HTTP_CONNECT_TIMEOUT": "-1"}, "ETL_HTTP_CONNECT_TIMEOUT=-1: the connect timeout"),
        ({"ETL_WORKERS": "0"}, "ETL_WORKERS=0: workers must be a whole number from 1 to 64"),
        ({"ETL_WORKERS": "500"}, "ETL_WORKERS=500: workers must be"),
        ({"ETL_BATCH_ROWS": "0"}, "ETL_BATCH_ROWS=0: rows per load batch must be at least 1"),
        ({"ETL_MAX_FAILED_SHARE": "1.5"}, "ETL_MAX_FAILED_SHARE=1.5: the failed share"),
        ({"ETL_LATEST_MAX_DAYS": "-1"}, "ETL_LATEST_MAX_DAYS=-1: the latest-day window"),
        ({"ETL_WORKERS": "four"}, "ETL_WORKERS='four' is not a valid int"),
    ],
)
def test_bad_environment_values_are_refused_with_their_source(env, message):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert str(err.value).startswith(message), str(err.value)


def test_flags_are_checked_and_named_too():
    with pytest.raises(ConfigError, match=r"^--rate-limit -1.0: the rate limit must be 0"):
        Settings.from_env({}, rate_limit=-1.0)
    # A flag wins over the environment, also when the environment's value was bad.
    assert Settings.from_env({"ETL_WORKERS": "2"}, workers=3).workers == 3


def test_the_defaults_and_the_edges_pass():
    Settings.from_env({})
    edges = {"ETL_RATE_LIMIT": "0", "ETL_HTTP_BACKOFF": "0", "ETL_HTTP_ATTEMPTS": "1",
             "ETL_WORKERS": "64", "ETL_MAX_FAILED_SHARE": "1", "ETL_LATEST_MAX_DAYS": "0"}  # fmt: skip
    settings = Settings.from_env(edges)
    assert settings.rate_limit == 0 and settings.max_attempts == 1


def test_the_cli_refuses_a_negative_rate_limit_before_any_request(etl, api):
    """Before: a negative --rate-limit meant "unlimited", and a negative backoff raised
    inside a worker thread."""
    refused = etl("sync", "--rate-limit", "-1", as_json=False)
    assert refused.exit_code == 1
    assert "--rate-limit -1.0: the rate limit must be 0 (no limit)" in refused.stderr
    backoff = etl("sync", env={"ETL_HTTP_BACKOFF": "-0.5"}, as_json=False)
    assert backoff.exit_code == 1
    assert "ETL_HTTP_BACKOFF=-0.5: the backoff must be from 0 to 600 seconds" in backoff.stderr
    assert api.request_count() == 0


# What a fresh interpreter that imports etl first reports about its allocators:
# pyarrow's pool, and the jemalloc options polars hands its allocator.
ALLOCATORS = (
    "import etl, polars, pyarrow, os; "
    "print(pyarrow.default_memory_pool().backend_name); print(os.environ['_RJEM_MALLOC_CONF'])"
)
ALLOCATOR_VARS = ("ARROW_DEFAULT_MEMORY_POOL", "_RJEM_MALLOC_CONF")


def _allocators(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_VARS}
    done = subprocess.run(
        [sys.executable, "-c", ALLOCATORS], env={**clean, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_allocators_hand_freed_memory_back_unless_told_otherwise():
    # polars puts its own decay times first; ours come after them, and win.
    assert _allocators() == [
        "system",
        "dirty_decay_ms:500,muzzy_decay_ms:1000,"
        "narenas:1,background_thread:true,dirty_decay_ms:20,muzzy_decay_ms:0",
    ]
    assert _allocators(ARROW_DEFAULT_MEMORY_POOL="mimalloc", _RJEM_MALLOC_CONF="narenas:4") == [
        "mimalloc",
        "dirty_decay_ms:500,muzzy_decay_ms:1000,narenas:4",
    ]
