"""ingest.mapping.costs: the reported cost as numeric(10,4), and the breakdown kept in metadata."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fixtures import load_call, load_event, parse_body

from ingest.mapping.costs import cost_metadata, raw_cost, reported_cost


def report(call: str) -> dict[str, Any]:
    """The end-of-call report's ``message`` of a recorded call."""
    messages = [parse_body(raw)["message"] for raw in load_call(call)]
    return next(message for message in messages if message["type"] == "end-of-call-report")


@pytest.mark.parametrize(
    ("call", "cost"),
    [
        ("inbound_booking", "0.0986"),  # 0.098628
        ("web_call_support", "0.1367"),  # 0.136696
        ("voicemail", "0.0282"),  # 0.028216
        ("provider_error", "0.0426"),  # 0.042618
        ("dst_spring", "0.4015"),  # 0.401514
        ("outbound_no_answer", "0.0000"),  # an integer 0: a cost, not a missing one
    ],
)
def test_reported_cost_of_recorded_reports(call: str, cost: str) -> None:
    """The recorded reports' ``cost`` as a Decimal quantized to four places, half up."""
    assert reported_cost(report(call)) == Decimal(cost)


def test_reported_cost_of_the_legacy_report() -> None:
    """The 2024-shaped report with only legacy fields still has its top-level cost."""
    assert reported_cost(parse_body(load_event("eocr_legacy_only"))["message"]) == Decimal("0.0283")


@pytest.mark.parametrize(
    ("message", "cost"),
    [
        ({"cost": 0.069}, "0.0690"),
        ({"cost": 0.00005}, "0.0001"),  # half up, not half even
        ({"cost": 0.00015}, "0.0002"),
        ({"cost": 0.1 + 0.2}, "0.3000"),  # no binary noise
        ({"cost": 3}, "3.0000"),
        ({"costBreakdown": {"total": 0.069}}, "0.0690"),
        ({"cost": None, "costBreakdown": {"total": 0.069}}, "0.0690"),
        ({"cost": "0.07", "costBreakdown": {"total": 0.069}}, "0.0690"),
        ({"cost": -0.5, "costBreakdown": {"total": 0.069}}, "0.0690"),
        ({"cost": 0.05, "costBreakdown": {"total": 0.069}}, "0.0500"),
    ],
)
def test_reported_cost_prefers_cost_then_breakdown_total(message: dict[str, Any], cost: str) -> None:
    """``cost`` wins; ``costBreakdown.total`` is used only when ``cost`` is missing or unusable."""
    assert reported_cost(message) == Decimal(cost)


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"cost": True},
        {"cost": float("nan")},
        {"cost": float("inf")},
        {"cost": 1e12},
        {"costBreakdown": "0.07"},
        {"costBreakdown": {"total": None}},
        {"call": {"cost": 0.069, "costBreakdown": {"total": 0.069}}},
    ],
)
def test_reported_cost_is_none_without_a_usable_amount(message: dict[str, Any]) -> None:
    """No usable top-level amount gives None; the embedded (possibly stale) ``call`` is never read for it."""
    assert reported_cost(message) is None


@given(st.decimals(min_value=0, max_value=999_999, places=6, allow_nan=False, allow_infinity=False))
def test_reported_cost_quantizes_the_float_vapi_sends(amount: Decimal) -> None:
    """For any six-place USD amount sent as a JSON float, the result equals rounding its decimal text half up."""
    sent = float(amount)
    expected = Decimal(repr(sent)).quantize(Decimal("0.0001"), rounding="ROUND_HALF_UP")
    assert reported_cost({"cost": sent}) == expected


def test_cost_metadata_keeps_the_breakdown_as_given() -> None:
    """``costs`` and ``cost_breakdown`` are copies of the report's, including off-schema keys."""
    message = report("inbound_booking")
    metadata = cost_metadata(message)
    assert set(metadata) == {"costs", "cost_breakdown"}
    assert metadata["costs"] == message["costs"]
    assert {item["type"] for item in metadata["costs"]} >= {"transport", "model", "knowledge-base", "analysis"}
    assert metadata["cost_breakdown"] == message["costBreakdown"]
    assert metadata["cost_breakdown"]["knowledgeBaseCost"] == 0.000412
    metadata["costs"].clear()
    assert message["costs"]  # a copy: the caller cannot change the message through it


def test_cost_metadata_falls_back_to_the_call_breakdown() -> None:
    """Without a top-level ``costBreakdown``, ``call.costBreakdown`` is kept; keys appear only when there is data."""
    breakdown = {"total": 0.05, "llm": 0.01}
    assert cost_metadata({"call": {"costBreakdown": breakdown}}) == {"cost_breakdown": breakdown}
    assert cost_metadata({"costs": [], "call": {"costBreakdown": None}}) == {"costs": []}
    assert cost_metadata({}) == {}
    assert cost_metadata({"costs": "x", "costBreakdown": [1], "call": "x"}) == {}


def test_cost_metadata_of_the_voicemail_call() -> None:
    """The voicemail call's detection cost item and breakdown figure are kept."""
    metadata = cost_metadata(report("voicemail"))
    assert any(item["type"] == "voicemail-detection" for item in metadata["costs"])
    assert metadata["cost_breakdown"]["voicemailDetectionCost"] == 0.0042


@pytest.mark.parametrize("cost", ["NaN", "Infinity", "0.07", -1, 1e12, 10**400, True, {"usd": 0.07}])
def test_unusable_cost_is_kept_raw_in_metadata(cost: object) -> None:
    """A cost that is no storable amount is skipped for ``costBreakdown.total`` and kept as sent."""
    message = {"cost": cost, "costBreakdown": {"total": 0.069}}
    assert reported_cost(message) == Decimal("0.0690")
    assert cost_metadata(message) == {"raw_cost": cost, "cost_breakdown": {"total": 0.069}}


def test_usable_or_missing_cost_is_not_kept_raw() -> None:
    """``raw_cost`` appears only for a cost that was given and could not be used."""
    assert raw_cost(0.069) == raw_cost(0) == raw_cost(None) == {}
    assert raw_cost("NaN") == {"raw_cost": "NaN"}
