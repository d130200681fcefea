"""JSON numbers as exact Decimals, and the one rounding rule for money.

Vapi writes amounts, durations and offsets as JSON numbers (``0.098628``, ``30695.0009765625``).
They become ``Decimal`` through their shortest round-trip text (``repr``), never through
float arithmetic, so ``0.1 + 0.2`` reads as ``0.3``. Nothing else is a number here: not a
bool (an ``int`` to Python), not NaN or an infinity (the standard library's JSON parser
accepts those literals), not a string, even a numeric one (``"0.07"``, ``"NaN"``). Callers
treat such a value as missing and keep it raw where their docstring says so.

Money is ``numeric(10,4)`` and rounded half up (ties away from zero), as Postgres' own
``round()`` and numeric casts do, so an amount rounded here and one rounded in SQL agree to
the last place.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

__all__ = ["json_number", "money"]

_MONEY_QUANTUM: Final = Decimal("0.0001")
_MAX_MONEY: Final = Decimal("999999.9999")  # the largest numeric(10,4)


def json_number(value: object) -> Decimal | None:
    """A finite JSON number as an exact Decimal; None for anything else (bool, NaN, inf, str …)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return Decimal(value)
    return Decimal(repr(value)) if math.isfinite(value) else None


def money(value: object) -> Decimal | None:
    """A JSON number of USD as ``numeric(10,4)``, rounded half up.

    None when ``value`` is not a number (see :func:`json_number`), is negative, or does not
    fit ``numeric(10,4)`` once rounded (``999999.99995`` rounds to a million: too large).
    ``0`` is an amount, not a missing one.
    """
    amount = json_number(value)
    if amount is None or amount < 0 or amount > _MAX_MONEY + 1:  # bounded first: quantizing 1e300 raises
        return None
    rounded = amount.quantize(_MONEY_QUANTUM, rounding=ROUND_HALF_UP)
    return rounded if rounded <= _MAX_MONEY else None
