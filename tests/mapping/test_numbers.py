"""ingest.mapping.numbers: JSON numbers as exact Decimals, and money as numeric(10,4) half up."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.mapping.numbers import json_number, money

NOT_NUMBERS = [
    float("nan"),
    float("inf"),
    float("-inf"),
    "NaN",
    "Infinity",
    "0.07",
    "",
    None,
    True,
    False,
    [0.07],
    {"amount": 0.07},
    Decimal("0.07"),  # not what a JSON parser gives
]


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (0, "0"),
        (3, "3"),
        (-2, "-2"),
        (0.098628, "0.098628"),
        (0.1 + 0.2, "0.30000000000000004"),  # the float's own shortest text, not binary noise
        (30695.0009765625, "30695.0009765625"),
        (1e-7, "1E-7"),
        (1e300, "1E+300"),
        (10**400, "1" + "0" * 400),
    ],
)
def test_json_number_is_exact(value: float, number: str) -> None:
    """Integers and finite floats become the Decimal of their shortest text, however large."""
    assert json_number(value) == Decimal(number)


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
def test_json_number_rejects_everything_else(value: object) -> None:
    """Bools, NaN, infinities, numeric text and containers are not JSON numbers."""
    assert json_number(value) is None


@pytest.mark.parametrize(
    ("value", "amount"),
    [
        (0, "0.0000"),
        (0.069, "0.0690"),
        (0.00005, "0.0001"),  # half up; half even would give 0.0000
        (0.00015, "0.0002"),
        (0.00025, "0.0003"),  # half even would give 0.0002
        (0.1 + 0.2, "0.3000"),
        (3, "3.0000"),
        (999999.9999, "999999.9999"),
        (999999.99994, "999999.9999"),
    ],
)
def test_money_rounds_half_up_to_four_places(value: float, amount: str) -> None:
    """USD amounts are quantized to numeric(10,4) with ties rounded up."""
    assert money(value) == Decimal(amount)


@pytest.mark.parametrize(
    "value",
    [*NOT_NUMBERS, -0.01, -0.00001, 999999.99995, 1_000_000, 1e12, 1e300, 10**400],
    ids=repr,
)
def test_money_is_none_for_what_numeric_10_4_cannot_hold(value: object) -> None:
    """Non-numbers, negatives and amounts that round past 999999.9999 are no amount (never an exception)."""
    assert money(value) is None


@given(st.decimals(min_value=0, max_value=999_999, places=6, allow_nan=False, allow_infinity=False))
def test_money_of_any_six_place_float(amount: Decimal) -> None:
    """For any six-place amount sent as a float, money() rounds its decimal text half up."""
    sent = float(amount)
    assert money(sent) == Decimal(repr(sent)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def test_money_rounds_as_postgres_does(db: psycopg.Connection[Any]) -> None:
    """Ties and their neighbours round the same here as in Postgres' round() and numeric(10,4) cast."""
    values = ["0.00005", "0.00015", "0.00025", "0.12345", "0.12355", "1.99995", "0.000049", "12.34565"]
    rows = db.execute(
        "SELECT round(v::numeric, 4)::text, v::numeric(10,4)::text FROM unnest(%s::text[]) AS v", (values,)
    ).fetchall()
    for value, (rounded, cast) in zip(values, rows, strict=True):
        assert str(money(float(value))) == rounded == cast, value
