"""The platform's reported cost of a call, and the breakdown kept in ``metadata``.

Vapi reports USD as JSON floats (``0.098628``); ``ingest.mapping.numbers.money`` reads
them. ``message.call.cost`` is not read: the embedded call is the POST /call snapshot and
may be stale or absent (reference §1, §8.8).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ingest.mapping.numbers import money

__all__ = ["cost_metadata", "raw_cost", "reported_cost"]


def raw_cost(value: object) -> dict[str, Any]:
    """``{"raw_cost": value}`` for a cost that is given but is no storable amount; else ``{}``.

    ``"NaN"``, ``"0.07"``, ``-1`` or ``1e12`` leave ``cost_total`` alone and are kept in
    ``metadata`` as sent, so nothing the platform said is lost and the event still applies.
    """
    if value is None or money(value) is not None:
        return {}
    return {"raw_cost": copy.deepcopy(value)}


def reported_cost(message: Mapping[str, Any]) -> Decimal | None:
    """The report's total in USD as numeric(10,4): ``cost``, else ``costBreakdown.total``.

    None when neither is a usable number; the caller then computes the cost from the
    duration and the client's rate plan (DESIGN.md, "Cost").
    """
    cost = money(message.get("cost"))
    if cost is not None:
        return cost
    breakdown = message.get("costBreakdown")
    if isinstance(breakdown, Mapping):
        return money(breakdown.get("total"))
    return None


def cost_metadata(message: Mapping[str, Any]) -> dict[str, Any]:
    """``costs`` (the report's ``costs[]`` as given), ``cost_breakdown`` and ``raw_cost``, for ``metadata``.

    The breakdown is the message's legacy top-level ``costBreakdown``, else the embedded
    ``call.costBreakdown`` (a breakdown has no better source, and a stale one is still
    labelled as what it is). ``raw_cost`` is an unusable top-level ``cost`` (see
    :func:`raw_cost`). Keys are present only when there is something to keep; values are
    deep copies, amounts untouched (jsonb keeps the exact numbers).
    """
    metadata: dict[str, Any] = raw_cost(message.get("cost"))
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
