"""Exchanges, market codes and the internal symbol form ``SH.510050``."""

from __future__ import annotations

import re

from etl.errors import ConfigError

# Tsanghi exchange code -> market code of the existing database.
MARKETS = {"XSHG": "SH", "XSHE": "SZ"}
EXCHANGES = {market: exchange for exchange, market in MARKETS.items()}
TICKER_RE = r"^[0-9]{6}$"
SYMBOL_RE = r"^(SH|SZ)\.[0-9]{6}$"
_SYMBOL = re.compile(SYMBOL_RE)


def check_symbol(symbol: str) -> str:
    """A symbol from a user or a database row, validated before it goes anywhere."""
    value = symbol.strip().upper()
    if not _SYMBOL.fullmatch(value):
        raise ConfigError(
            f"invalid symbol {symbol!r}: expected SH.<6 digits> or SZ.<6 digits>, e.g. SH.510050"
        )
    return value
