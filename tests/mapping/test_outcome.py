"""ingest.mapping.outcome: Vapi's ended reasons as outcome labels, and assistant-provided outcomes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fixtures import load_call, parse_body, vapi_schema

from ingest.mapping.outcome import normalise_outcome, outcome_from_ended_reason
from ingest.vocabulary import Outcome


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        # normal ends
        ("assistant-ended-call", Outcome.COMPLETED),
        ("assistant-ended-call-after-message-spoken", Outcome.COMPLETED),
        ("assistant-said-end-call-phrase", Outcome.COMPLETED),
        ("customer-ended-call", Outcome.COMPLETED),
        ("customer-ended-call-during-transfer", Outcome.COMPLETED),
        ("customer-ended-call-after-warm-transfer-attempt", Outcome.COMPLETED),
        ("silence-timed-out", Outcome.COMPLETED),
        ("exceeded-max-duration", Outcome.COMPLETED),
        ("manually-canceled", Outcome.COMPLETED),
        ("scheduled-call-deleted", Outcome.COMPLETED),
        ("call-deleted", Outcome.COMPLETED),
        ("call.in-progress.twilio-completed-call", Outcome.COMPLETED),
        ("call.in-progress.sip-completed-call", Outcome.COMPLETED),
        ("vonage-completed", Outcome.COMPLETED),
        ("call.ringing.hook-executed-say", Outcome.COMPLETED),
        ("call.ending.hook-executed-say", Outcome.COMPLETED),
        ("hangup", Outcome.COMPLETED),  # docs example, not in the enum
        ("assistantEndedCall", Outcome.COMPLETED),  # docs example, not in the enum
        # nobody answered
        ("customer-did-not-answer", Outcome.NO_ANSWER),
        ("call.forwarding.no-answer", Outcome.NO_ANSWER),
        ("customer-did-not-give-microphone-permission", Outcome.NO_ANSWER),
        ("call.ringing.sip-inbound-caller-hungup-before-call-connect", Outcome.NO_ANSWER),
        ("call.in-progress.error-providerfault-outbound-sip-408-request-timeout", Outcome.NO_ANSWER),
        ("call.in-progress.error-providerfault-outbound-sip-480-temporarily-unavailable", Outcome.NO_ANSWER),
        # busy, voicemail, transferred
        ("customer-busy", Outcome.BUSY),
        ("call.forwarding.operator-busy", Outcome.BUSY),
        ("voicemail", Outcome.VOICEMAIL),
        ("assistant-forwarded-call", Outcome.TRANSFERRED),
        ("call.ringing.hook-executed-transfer", Outcome.TRANSFERRED),
        ("call.ending.hook-executed-transfer", Outcome.TRANSFERRED),
        ("assistant-request-returned-forwarding-phone-number", Outcome.TRANSFERRED),
        # technical failures
        ("pipeline-error-openai-llm-failed", Outcome.FAILED),
        ("call.in-progress.error-providerfault-openai-llm-failed", Outcome.FAILED),
        ("call.in-progress.error-vapifault-worker-died", Outcome.FAILED),
        ("call.in-progress.error-vapifault-transport-never-connected", Outcome.FAILED),
        ("call.in-progress.error-providerfault-outbound-sip-503-service-unavailable", Outcome.FAILED),
        ("call.in-progress.error-transfer-failed", Outcome.FAILED),
        ("call.in-progress.error-warm-transfer-silence-timeout", Outcome.FAILED),
        ("call.in-progress.error-assistant-did-not-receive-customer-audio", Outcome.FAILED),
        ("call.start.error-subscription-insufficient-credits", Outcome.FAILED),
        ("call.start.assistant-version-error-validation", Outcome.FAILED),
        ("call-start-error-neither-assistant-nor-server-set", Outcome.FAILED),
        ("call.ringing.error-sip-inbound-call-failed-to-connect", Outcome.FAILED),
        ("assistant-request-failed", Outcome.FAILED),
        ("assistant-request-returned-error", Outcome.FAILED),
        ("assistant-request-returned-no-assistant", Outcome.FAILED),
        ("assistant-not-found", Outcome.FAILED),
        ("assistant-not-valid", Outcome.FAILED),
        ("assistant-join-timed-out", Outcome.FAILED),
        ("twilio-failed-to-connect-call", Outcome.FAILED),
        ("twilio-reported-customer-misdialed", Outcome.FAILED),
        ("vonage-rejected", Outcome.FAILED),
        ("phone-call-provider-closed-websocket", Outcome.FAILED),
        ("phone-call-provider-bypass-enabled-but-no-call-received", Outcome.FAILED),
        ("worker-shutdown", Outcome.FAILED),
        ("vapifault-transport-never-connected", Outcome.FAILED),
        ("database-error", Outcome.FAILED),
        ("db-error", Outcome.FAILED),
        ("unknown-error", Outcome.FAILED),
        ("license-check-failed", Outcome.FAILED),
        ("no-server-available", Outcome.FAILED),
        ("pipeline-no-available-model", Outcome.FAILED),
        # unknown future values, read by their shape
        ("call.in-progress.error-providerfault-newvoice-500-server-error", Outcome.FAILED),
        ("call.start.error-something-new", Outcome.FAILED),
        ("call.ringing.customer-unanswered", Outcome.NO_ANSWER),
        ("call.forwarding.destination-busy", Outcome.BUSY),
        ("call.in-progress.voicemail-detected", Outcome.VOICEMAIL),
        ("call.in-progress.customer-said-goodbye", Outcome.COMPLETED),
        # spacing and case
        ("  Customer-Busy ", Outcome.BUSY),
    ],
)
def test_outcome_from_ended_reason(reason: str, outcome: Outcome) -> None:
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
    assert all(isinstance(outcome, Outcome) for outcome in outcomes.values())
    for reason, outcome in outcomes.items():
        if re.search(r"error|fault|failed", reason) and not re.search(r"-sip-(408|480)-", reason):
            assert outcome is Outcome.FAILED, reason
    assert {reason for reason, outcome in outcomes.items() if outcome is Outcome.VOICEMAIL} == {"voicemail"}
    completed = {reason for reason, outcome in outcomes.items() if outcome is Outcome.COMPLETED}
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
        ("inbound_booking", Outcome.COMPLETED),
        ("outbound_no_answer", Outcome.NO_ANSWER),
        ("voicemail", Outcome.VOICEMAIL),
        ("transferred", Outcome.TRANSFERRED),
        ("provider_error", Outcome.FAILED),
        ("no_report_finals_only", Outcome.COMPLETED),
    ],
)
def test_recorded_calls_end_with_their_outcome(call: str, outcome: Outcome) -> None:
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
