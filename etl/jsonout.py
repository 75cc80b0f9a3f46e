"""One JSON encoding for everything the CLI prints with --json.

Typed values: numbers as JSON numbers (a Decimal keeps every digit: it is written
as the number it is, never through a float), dates as ISO dates, timestamps as
ISO 8601, missing values as null.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

# A Decimal travels through json.dumps as a marked string and is unquoted after.
_MARK = "\x00decimal:"
_MARKED = re.compile(r'"\\u0000decimal:([-+0-9.eE]+)"')


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _MARK + format(value, "f") if value.is_finite() else None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """NaN and infinity are not JSON: null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pl.DataFrame):
        return _clean(value.to_dicts())
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """`value` as one line of JSON with typed values."""
    text = json.dumps(_clean(value), ensure_ascii=False, default=_default, allow_nan=False)
    return _MARKED.sub(r"\1", text)
