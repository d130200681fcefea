"""ingest.mapping.outcome: Vapi's ended reasons as outcome labels, and assistant-provided outcomes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fixtures import load_call, parse_body, vapi_schema

from ingest.mapping.outcome import normalise_outcome, outcome_from_ended_reason
from ingest.vocabulary import CallOutcome


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        # normal ends
        ("assistant-ended-call", CallOutcome.COMPLETED),
        ("assistant-ended-call-after-message-spoken", CallOutcome.COMPLETED),
        ("assistant-said-end-call-phrase", CallOutcome.COMPLETED),
        ("customer-ended-call", CallOutcome.COMPLETED),
        ("customer-ended-call-during-transfer", CallOutcome.COMPLETED),
        ("customer-ended-call-after-warm-transfer-attempt", CallOutcome.COMPLETED),
        ("silence-timed-out", CallOutcome.COMPLETED),
        ("exceeded-max-duration", CallOutcome.COMPLETED),
        ("manually-canceled", CallOutcome.COMPLETED),
        ("scheduled-call-deleted", CallOutcome.COMPLETED),
        ("call-deleted", CallOutcome.COMPLETED),
        ("call.in-progress.twilio-completed-call", CallOutcome.COMPLETED),
        ("call.in-progress.sip-completed-call", CallOutcome.COMPLETED),
        ("vonage-completed", CallOutcome.COMPLETED),
        ("call.ringing.hook-executed-say", CallOutcome.COMPLETED),
        ("call.ending.hook-executed-say", CallOutcome.COMPLETED),
        ("hangup", CallOutcome.COMPLETED),  # docs example, not in the enum
        ("assistantEndedCall", CallOutcome.COMPLETED),  # docs example, not in the enum
        # nobody answered
        ("customer-did-not-answer", CallOutcome.NO_ANSWER),
        ("call.forwarding.no-answer", CallOutcome.NO_ANSWER),
        ("customer-did-not-give-microphone-permission", CallOutcome.NO_ANSWER),
        ("call.ringing.sip-inbound-caller-hungup-before-call-connect", CallOutcome.NO_ANSWER),
        ("call.in-progress.error-providerfault-outbound-sip-408-request-timeout", CallOutcome.NO_ANSWER),
        ("call.in-progress.error-providerfault-outbound-sip-480-temporarily-unavailable", CallOutcome.NO_ANSWER),
        # busy, voicemail, transferred
        ("customer-busy", CallOutcome.BUSY),
        ("call.forwarding.operator-busy", CallOutcome.BUSY),
        ("voicemail", CallOutcome.VOICEMAIL),
        ("assistant-forwarded-call", CallOutcome.TRANSFERRED),
        ("call.ringing.hook-executed-transfer", CallOutcome.TRANSFERRED),
        ("call.ending.hook-executed-transfer", CallOutcome.TRANSFERRED),
        ("assistant-request-returned-forwarding-phone-number", CallOutcome.TRANSFERRED),
        # technical failures
        ("pipeline-error-openai-llm-failed", CallOutcome.FAILED),
        ("call.in-progress.error-providerfault-openai-llm-failed", CallOutcome.FAILED),
        ("call.in-progress.error-vapifault-worker-died", CallOutcome.FAILED),
        ("call.in-progress.error-vapifault-transport-never-connected", CallOutcome.FAILED),
        ("call.in-progress.error-providerfault-outbound-sip-503-service-unavailable", CallOutcome.FAILED),
        ("call.in-progress.error-transfer-failed", CallOutcome.FAILED),
        ("call.in-progress.error-warm-transfer-silence-timeout", CallOutcome.FAILED),
        ("call.in-progress.error-assistant-did-not-receive-customer-audio", CallOutcome.FAILED),
        ("call.start.error-subscription-insufficient-credits", CallOutcome.FAILED),
        ("call.start.assistant-version-error-validation", CallOutcome.FAILED),
        ("call-start-error-neither-assistant-nor-server-set", CallOutcome.FAILED),
        ("call.ringing.error-sip-inbound-call-failed-to-connect", CallOutcome.FAILED),
        ("assistant-request-failed", CallOutcome.FAILED),
        ("assistant-request-returned-error", CallOutcome.FAILED),
        ("assistant-request-returned-no-assistant", CallOutcome.FAILED),
        ("assistant-not-found", CallOutcome.FAILED),
        ("assistant-not-valid", CallOutcome.FAILED),
        ("assistant-join-timed-out", CallOutcome.FAILED),
        ("twilio-failed-to-connect-call", CallOutcome.FAILED),
        ("twilio-reported-customer-misdialed", CallOutcome.FAILED),
        ("vonage-rejected", CallOutcome.FAILED),
        ("phone-call-provider-closed-websocket", CallOutcome.FAILED),
        ("phone-call-provider-bypass-enabled-but-no-call-received", CallOutcome.FAILED),
        ("worker-shutdown", CallOutcome.FAILED),
        ("vapifault-transport-never-connected", CallOutcome.FAILED),
        ("database-error", CallOutcome.FAILED),
        ("db-error", CallOutcome.FAILED),
        ("unknown-error", CallOutcome.FAILED),
        ("license-check-failed", CallOutcome.FAILED),
        ("no-server-available", CallOutcome.FAILED),
        ("pipeline-no-available-model", CallOutcome.FAILED),
        # unknown future values, read by their shape
        ("call.in-progress.error-providerfault-newvoice-500-server-error", CallOutcome.FAILED),
        ("call.start.error-something-new", CallOutcome.FAILED),
        ("call.ringing.customer-unanswered", CallOutcome.NO_ANSWER),
        ("call.forwarding.destination-busy", CallOutcome.BUSY),
        ("call.in-progress.voicemail-detected", CallOutcome.VOICEMAIL),
        ("call.in-progress.customer-said-goodbye", CallOutcome.COMPLETED),
        # spacing and case
        ("  Customer-Busy ", CallOutcome.BUSY),
    ],
)
def test_outcome_from_ended_reason(reason: str, outcome: CallOutcome) -> None:
    """Each ended-reason family maps to its outcome, and unknown values are read by their shape."""
    assert outcome_from_ended_reason(reason) is outcome


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_no_reason_no_outcome(reason: str | None) -> None:
    """No ended reason (a call still in progress) has no outcome."""
    assert outcome_from_ended_reason(reason) is None


# Ended reasons Vapi removed from its schema (reference Appendix A); old calls still carry them.
REMOVED = [
    "assistant-error",
    "assistant-not-invalid",
    "assistant-not-provided",
    "assistant-said-message-with-end-call-enabled",
    "call.in-progress.error-sip-telephony-provider-failed-to-connect-call",
    "call.start.error-get-org",
    "database-error",
    "db-error",
    "license-check-failed",
    "no-server-available",
    "pipeline-no-available-model",
    "sip-gateway-failed-to-connect-call",
    "unknown-error",
    "vapifault-phone-call-worker-could-not-find-call",
    "vapifault-transport-connected-but-call-not-active",
    "vapifault-web-call-worker-setup-failed",
]


def schema_reasons() -> list[str]:
    """Every ``endedReason`` in Vapi's copied schema (595 values) plus removed ones."""
    schema = vapi_schema()["components"]["schemas"]["ServerMessageEndOfCallReport"]
    return sorted(set(schema["properties"]["endedReason"]["enum"]) | set(REMOVED))


def test_every_known_reason_is_classified_and_errors_fail() -> None:
    """Every known ended reason gets an outcome, and every one naming an error fails (bar SIP 408/480)."""
    reasons = schema_reasons()
    assert len(reasons) > 600
    outcomes = {reason: outcome_from_ended_reason(reason) for reason in reasons}
    assert all(isinstance(outcome, CallOutcome) for outcome in outcomes.values())
    for reason, outcome in outcomes.items():
        if re.search(r"error|fault|failed", reason) and not re.search(r"-sip-(408|480)-", reason):
            assert outcome is CallOutcome.FAILED, reason
    assert {reason for reason, outcome in outcomes.items() if outcome is CallOutcome.VOICEMAIL} == {"voicemail"}
    completed = {reason for reason, outcome in outcomes.items() if outcome is CallOutcome.COMPLETED}
    assert completed == {
        "assistant-ended-call",
        "assistant-ended-call-after-message-spoken",
        "assistant-ended-call-with-hangup-task",
        "assistant-said-end-call-phrase",
        "assistant-said-message-with-end-call-enabled",
        "call-deleted",
        "call.ending.hook-executed-say",
        "call.in-progress.sip-completed-call",
        "call.in-progress.twilio-completed-call",
        "call.ringing.hook-executed-say",
        "customer-ended-call",
        "customer-ended-call-after-warm-transfer-attempt",
        "customer-ended-call-before-warm-transfer",
        "customer-ended-call-during-transfer",
        "exceeded-max-duration",
        "manually-canceled",
        "scheduled-call-deleted",
        "silence-timed-out",
        "vonage-completed",
        "vonage-disconnected",
    }


@pytest.mark.parametrize(
    ("call", "outcome"),
    [
        ("inbound_booking", CallOutcome.COMPLETED),
        ("outbound_no_answer", CallOutcome.NO_ANSWER),
        ("voicemail", CallOutcome.VOICEMAIL),
        ("transferred", CallOutcome.TRANSFERRED),
        ("provider_error", CallOutcome.FAILED),
        ("no_report_finals_only", CallOutcome.COMPLETED),
    ],
)
def test_recorded_calls_end_with_their_outcome(call: str, outcome: CallOutcome) -> None:
    """Every recorded ended reason of a call (status update and report alike) maps to the call's outcome."""
    reasons = {
        message["endedReason"]
        for message in (parse_body(raw)["message"] for raw in load_call(call))
        if message.get("endedReason")
    }
    assert reasons
    assert {outcome_from_ended_reason(reason) for reason in reasons} == {outcome}


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("appointment_booked", "appointment_booked"),
        ("Appointment Booked", "appointment_booked"),
        ("  viewing-booked ", "viewing_booked"),
        ("Transferred -- to staff", "transferred_to_staff"),
        ("not_interested", "not_interested"),
        ("_odd__label_", "odd_label"),
        ("x" * 100, "x" * 64),
    ],
)
def test_normalise_outcome(value: str, label: str) -> None:
    """Assistant outcomes become lower-case snake labels of at most 64 characters."""
    assert normalise_outcome(value) == label


@pytest.mark.parametrize("value", [None, "", "   ", " - _ ", 3, True, ["booked"], {"outcome": "booked"}])
def test_normalise_outcome_refuses_unusable_values(value: object) -> None:
    """Empty text and anything that is not a string give None."""
    assert normalise_outcome(value) is None


def test_normalise_outcome_of_recorded_structured_data() -> None:
    """The recorded reports' structuredData outcomes pass through as they are."""
    for call, expected in [("inbound_booking", "appointment_booked"), ("transferred", "transferred_to_staff")]:
        messages = [parse_body(raw)["message"] for raw in load_call(call)]
        report = next(message for message in messages if message["type"] == "end-of-call-report")
        assert normalise_outcome(report["analysis"]["structuredData"]["outcome"]) == expected


@given(st.text())
def test_normalise_outcome_is_idempotent(value: str) -> None:
    """Normalising a normalised label changes nothing, and labels never exceed 64 characters."""
    label = normalise_outcome(value)
    assert normalise_outcome(label) == label
    if label is not None:
        assert 0 < len(label) <= 64
        assert label == label.strip()
        assert " " not in label
        assert "-" not in label
