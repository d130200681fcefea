"""The platform's reported cost of a call, and the breakdown kept in ``metadata``.

Vapi reports USD as JSON floats (``0.098628``). They become ``Decimal`` through their
shortest text form, never through float arithmetic. ``message.call.cost`` is not read:
the embedded call is the POST /call snapshot and may be stale or absent (reference §1, §8.8).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

__all__ = ["cost_metadata", "reported_cost"]

_QUANTUM: Final = Decimal("0.0001")  # cost_total is numeric(10,4)
_MAX_COST: Final = Decimal("999999.9999")


def _amount(value: object) -> Decimal | None:
    """A non-negative finite JSON number as a Decimal (``0`` is an amount, not a missing one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    amount = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    if amount < 0 or amount > _MAX_COST:
        return None
    return amount.quantize(_QUANTUM, rounding=ROUND_HALF_UP)


def reported_cost(message: Mapping[str, Any]) -> Decimal | None:
    """The report's total in USD as numeric(10,4): ``cost``, else ``costBreakdown.total``.

    None when neither is a usable number; the caller then computes the cost from the
    duration and the client's rate plan (DESIGN.md, "Cost").
    """
    cost = _amount(message.get("cost"))
    if cost is not None:
        return cost
    breakdown = message.get("costBreakdown")
    if isinstance(breakdown, Mapping):
        return _amount(breakdown.get("total"))
    return None


def cost_metadata(message: Mapping[str, Any]) -> dict[str, Any]:
    """``costs`` (the report's ``costs[]`` as given) and ``cost_breakdown``, for ``metadata``.

    The breakdown is the message's legacy top-level ``costBreakdown``, else the embedded
    ``call.costBreakdown`` (a breakdown has no better source, and a stale one is still
    labelled as what it is). Keys are present only when there is something to keep;
    values are deep copies, amounts untouched (jsonb keeps the exact numbers).
    """
    metadata: dict[str, Any] = {}
    costs = message.get("costs")
    if isinstance(costs, list):
        metadata["costs"] = copy.deepcopy(costs)
    breakdown = message.get("costBreakdown")
    if not isinstance(breakdown, Mapping):
        call = message.get("call")
        breakdown = call.get("costBreakdown") if isinstance(call, Mapping) else None
    if isinstance(breakdown, Mapping):
        metadata["cost_breakdown"] = copy.deepcopy(dict(breakdown))
    return metadata
