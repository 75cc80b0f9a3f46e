"""A Tsanghi-compatible ETF API on loopback with deterministic synthetic data.

For tests, demos and benchmarks: ``Universe`` holds the data (and can be
changed while serving), ``FakeTsanghi`` serves it over real HTTP::

    with FakeTsanghi(Universe(), token="t") as api:
        requests.get(f"{api.base_url}/etf/XSHG/list", params={"token": "t"})

``python -m fakeapi`` runs it in the foreground. A Universe carries share
splits, merges and conversions (``STANDARD_ACTIONS`` by default, see
``fakeapi.universe``).
"""

from fakeapi.server import FakeTsanghi, Fault, RequestRecord
from fakeapi.universe import EXCHANGES, STANDARD_ACTIONS, Action, Etf, Universe, is_trading_day

__all__ = [
    "EXCHANGES",
    "STANDARD_ACTIONS",
    "Action",
    "Etf",
    "FakeTsanghi",
    "Fault",
    "RequestRecord",
    "Universe",
    "is_trading_day",
]
