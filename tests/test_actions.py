"""etl.actions called as a Python user would: no CLI between them and the database."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from crashhelper import checksums
from test_corporate import CONVERSION, actions, adjusted_change, change_on

from etl import actions as library
from etl.errors import ConfigError
from etl.settings import Settings

RULE = (
    "expected an exact decimal from 0.001 to 1000 with at most 8 decimal places "
    "(2 for a 2-for-1 split, 0.1 for a 10-to-1 merge)"
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3.8165", "3.8165"), (" 2 ", "2"), (Decimal("0.10"), "0.10"), (0.5, "0.5"), ("1000", "1000")],
)
def test_check_ratio_keeps_the_decimal_given(value, expected):
    ratio = library.check_ratio(value)
    assert isinstance(ratio, Decimal) and str(ratio) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e3", f"invalid ratio '1e3': {RULE}"),
        (Decimal("NaN"), f"invalid ratio Decimal('NaN'): {RULE}"),
        ("0", f"ratio 0 is out of range: {RULE}"),
        ("0.123456789", f"ratio 0.123456789 has too many decimal places: {RULE}"),
    ],
)
def test_check_ratio_refuses_in_one_line(value, message):
    with pytest.raises(ConfigError) as caught:
        library.check_ratio(value)
    assert str(caught.value) == message


def test_record_action_returns_what_it_changed(etl, etl_env, db):
    assert etl("sync").exit_code == 0
    ex = "2024-03-11"
    estimate = actions(db)[CONVERSION][1]
    prev, close, old_change, old_pct = change_on(db, CONVERSION, ex)
    settings = Settings.from_env(etl_env)

    recorded = library.record_action(settings, CONVERSION, date(2024, 3, 11), "3.8165", "ann.")

    official = adjusted_change(prev, close, Decimal("3.8165"))
    assert recorded == library.ActionRecorded(
        symbol=CONVERSION,
        ex_date=date(2024, 3, 11),
        ratio=Decimal("3.8165"),
        previous_ratio=estimate,
        previous_source="detected",
        detected_ratio=estimate,
        note="ann.",
        trade_date=datetime(2024, 3, 11),
        price_change=(old_change, official[0]),
        price_change_pct=(old_pct, official[1]),
    )
    assert actions(db)[CONVERSION] == (ex, Decimal("3.8165"), "official", estimate, "ann.")

    # Refused before anything is written: the tables stay as they are.
    tables = checksums(db)
    with pytest.raises(ConfigError) as caught:
        library.record_action(settings, CONVERSION, date(2024, 3, 10), "2")
    assert str(caught.value) == (
        f"{CONVERSION} has no stored row on 2024-03-10: the ex-date is the first trading "
        "day at the new price, and its row must be stored (run a sync first)"
    )
    assert checksums(db) == tables
