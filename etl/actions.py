"""etl record-action: the official ratio of a share split, merge or conversion.

Not a run (no snapshot, no ledger row) but it takes the sync lock as a sync
does: validate the ratio, record it in place of the detected estimate, and
recompute the ex-date row from it, all in one transaction::

    from etl import actions

    recorded = actions.record_action(settings, "SH.510300", date(2024, 3, 11), "3.8165")
    print(recorded.previous_ratio, "->", recorded.ratio)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from etl.corporate import recompute
from etl.db import open_database
from etl.errors import ConfigError, DatabaseError, EtlError
from etl.ledger import RunLedger
from etl.migrate import apply_migrations
from etl.settings import Settings
from etl.snapshot import new_run_id
from etl.sqlfiles import query
from etl.symbols import check_symbol

log = logging.getLogger(__name__)

__all__ = ["ActionRecorded", "check_ratio", "record_action"]


@dataclass(frozen=True)
class ActionRecorded:
    """What ``record_action`` changed: the action's ratio and the ex-date row's change."""

    symbol: str
    ex_date: date
    ratio: Decimal  # the official ratio now recorded
    previous_ratio: Decimal | None  # the ratio recorded before (None: none was)
    previous_source: str | None  # 'detected' or 'official'
    detected_ratio: Decimal | None  # the estimate from the prices, kept
    note: str | None
    trade_date: datetime  # the ex-date row as stored
    price_change: tuple[Decimal | None, Decimal | None]  # before, after
    price_change_pct: tuple[Decimal | None, Decimal | None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "ex_date": self.ex_date,
            "ratio": self.ratio,
            "source": "official",
            "previous": None
            if self.previous_ratio is None
            else {"ratio": self.previous_ratio, "source": self.previous_source},
            "detected_ratio": self.detected_ratio,
            "note": self.note,
            "trade_date": self.trade_date,
            "price_change": {"before": self.price_change[0], "after": self.price_change[1]},
            "price_change_pct": {
                "before": self.price_change_pct[0],
                "after": self.price_change_pct[1],
            },
        }


def _first_line(text: str) -> str:
    """A server error in one line: its details and the statement stay out of the message."""
    return (text.strip().splitlines() or [""])[0]


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


# A ratio a user records: new shares per old share, an exact decimal. The range
# holds every split, merge and conversion funds announce (1:1000 to 1000:1) and
# keeps the ex-date's recomputed change inside its NUMERIC columns. The ratio
# column is NUMERIC without a scale; announcements give at most 8 places.
RATIO_MIN = Decimal("0.001")
RATIO_MAX = Decimal("1000")
RATIO_PLACES = 8
_PLAIN_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_RATIO_RULE = (
    f"an exact decimal from {RATIO_MIN} to {RATIO_MAX} with at most {RATIO_PLACES} "
    "decimal places (2 for a 2-for-1 split, 0.1 for a 10-to-1 merge)"
)


def check_ratio(value: Decimal | str | float) -> Decimal:
    """A ratio from a user (new shares per old share): a plain decimal, no exponent,
    nan or inf, within RATIO_MIN..RATIO_MAX, at most RATIO_PLACES places."""
    if isinstance(value, Decimal) and value.is_finite():
        text = format(value, "f")
    else:
        text = str(value).strip()
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise ConfigError(f"invalid ratio {value!r}: expected {_RATIO_RULE}")
    ratio = Decimal(text)
    if not RATIO_MIN <= ratio <= RATIO_MAX:
        raise ConfigError(f"ratio {text} is out of range: expected {_RATIO_RULE}")
    if -ratio.normalize().as_tuple().exponent > RATIO_PLACES:  # type: ignore[operator]
        raise ConfigError(f"ratio {text} has too many decimal places: expected {_RATIO_RULE}")
    return ratio


def record_action(
    settings: Settings,
    symbol: str,
    ex_date: date,
    ratio: Decimal | str | float,
    note: str | None = None,
    *,
    wait: bool = False,
) -> ActionRecorded:
    """Record the official ratio of a share split, merge or conversion from the fund's
    announcement: it replaces a detected estimate (kept as detected_ratio) or is
    inserted, and the ex-date row's price_change and price_change_pct are recomputed
    from it in the same transaction (etf_daily_adjusted follows by itself).

    ``ex_date`` is the first trading day at the new price; the ETF must have a stored
    row on it. Takes the sync lock as a sync does (``wait`` as there). Raises
    ConfigError for an invalid symbol or ratio, an unknown symbol, a symbol that is
    not an ETF, or a day without a stored row; nothing is written then.
    """
    symbol = check_symbol(symbol)
    value = check_ratio(ratio)
    day = ex_date.isoformat()
    with open_database(settings.database_url, settings.data_dir, create=False) as db:
        ledger = RunLedger(db, new_run_id(), "record-action", None)
        try:
            ledger.lock(settings.wait_timeout if settings.wait_timeout is not None else wait)
            apply_migrations(db, echo=log.info)
            conn = db.connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(query("corporate_target"), (symbol, day))
                    before = cur.fetchall()
                    _check_target(symbol, ex_date, before)
                    cur.execute(query("corporate_official"), (symbol, day, str(value), note or ""))
                    recompute([(symbol, ex_date)], cur)
                    cur.execute(query("corporate_target"), (symbol, day))
                    after = cur.fetchall()
                ledger.check()  # nothing is committed once the lock is gone
                conn.commit()
            except EtlError:
                conn.rollback()
                raise
            except Exception as exc:
                conn.rollback()
                raise DatabaseError(
                    f"recording the action of {symbol} on {day} failed and was rolled back: "
                    f"{_first_line(db.scrub(str(exc)))}"
                ) from None
            finally:
                conn.close()
        finally:
            ledger.close()
    _, trade_date, _, change0, pct0, old_ratio, old_source, _, _ = before[0]
    _, _, _, change1, pct1, new_ratio, _, detected, stored_note = after[0]
    return ActionRecorded(
        symbol=symbol,
        ex_date=ex_date,
        ratio=Decimal(new_ratio),
        previous_ratio=_dec(old_ratio),
        previous_source=old_source,
        detected_ratio=_dec(detected),
        note=stored_note,
        trade_date=trade_date,
        price_change=(_dec(change0), _dec(change1)),
        price_change_pct=(_dec(pct0), _dec(pct1)),
    )


def _check_target(symbol: str, ex_date: date, rows: list[tuple]) -> None:
    if not rows:
        raise ConfigError(
            f"unknown symbol {symbol}: it is not in stock_info (run `etl sync-list` first?)"
        )
    is_etf, trade_date = rows[0][0], rows[0][1]
    if is_etf != "Y":
        raise ConfigError(f"{symbol} is not an ETF (stock_info.is_etf = {is_etf!r})")
    if trade_date is None:
        raise ConfigError(
            f"{symbol} has no stored row on {ex_date.isoformat()}: the ex-date is the first "
            "trading day at the new price, and its row must be stored (run a sync first)"
        )
