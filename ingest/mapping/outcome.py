"""``call_outcome``: from Vapi's ``endedReason``, or from the assistant's own label.

Vapi has about 600 ended reasons and adds provider-specific ones most months (reference
§6, Appendix A), so only the plain values are listed here; the families are recognised by
their shape, and an unknown future value falls to "failed" when it names an error and to
"completed" otherwise. Meanings follow Vapi's "Call ended reasons" page
(docs.vapi.ai/calls/call-ended-reason).
"""

from __future__ import annotations

import re
from typing import Final

from ingest.vocabulary import CallOutcome

__all__ = ["normalise_outcome", "outcome_from_ended_reason"]

# Plain values whose outcome is not what the generic rules below would give.
_EXACT: Final[dict[str, CallOutcome]] = {
    # The callee never picked up. The two call.forwarding.* values are about the transfer
    # target (the operator), not the customer, but the caller still reached nobody.
    "customer-did-not-answer": CallOutcome.NO_ANSWER,
    "call.forwarding.no-answer": CallOutcome.NO_ANSWER,
    # Web call whose user refused the microphone: no conversation, and nothing broke.
    "customer-did-not-give-microphone-permission": CallOutcome.NO_ANSWER,
    # Inbound SIP caller gave up while it rang (an abandoned call): never answered.
    "call.ringing.sip-inbound-caller-hungup-before-call-connect": CallOutcome.NO_ANSWER,
    "customer-busy": CallOutcome.BUSY,
    "call.forwarding.operator-busy": CallOutcome.BUSY,
    "voicemail": CallOutcome.VOICEMAIL,
    "assistant-forwarded-call": CallOutcome.TRANSFERRED,
    # The assistant-request answer was a number to forward to instead of an assistant.
    "assistant-request-returned-forwarding-phone-number": CallOutcome.TRANSFERRED,
    # Technical failures whose names carry no "error"/"failed"/"fault".
    "worker-shutdown": CallOutcome.FAILED,  # Vapi deploy killed the call worker
    "assistant-join-timed-out": CallOutcome.FAILED,
    "assistant-not-found": CallOutcome.FAILED,
    "assistant-not-valid": CallOutcome.FAILED,
    "assistant-not-invalid": CallOutcome.FAILED,  # old spelling of assistant-not-valid (to 2025-02)
    "assistant-not-provided": CallOutcome.FAILED,
    "assistant-request-returned-no-assistant": CallOutcome.FAILED,
    "assistant-request-returned-invalid-assistant": CallOutcome.FAILED,
    "no-server-available": CallOutcome.FAILED,
    "pipeline-no-available-model": CallOutcome.FAILED,
    # "closed unexpectedly, the caller experiences an abrupt call drop" (Vapi's docs).
    "phone-call-provider-closed-websocket": CallOutcome.FAILED,
    # Bypass mode configured but the provider never delivered the call: a setup fault on
    # our side of the line, not a customer who did not answer.
    "phone-call-provider-bypass-enabled-but-no-call-received": CallOutcome.FAILED,
    # Twilio: the dialled number does not exist; Vonage refused to place the call.
    "twilio-reported-customer-misdialed": CallOutcome.FAILED,
    "vonage-rejected": CallOutcome.FAILED,
    # The carrier reporting that the call leg ended is a normal end, like a hang-up.
    "vonage-disconnected": CallOutcome.COMPLETED,
    "vonage-completed": CallOutcome.COMPLETED,
    "call.in-progress.twilio-completed-call": CallOutcome.COMPLETED,
    "call.in-progress.sip-completed-call": CallOutcome.COMPLETED,
    # Cancelled before it happened: not a failure, and the vocabulary has no "cancelled".
    "manually-canceled": CallOutcome.COMPLETED,
    "scheduled-call-deleted": CallOutcome.COMPLETED,
}

# SIP 408/480 on an outbound leg: Vapi's own troubleshooting table files these under
# "phone rang but no answer — callee was unavailable", although the names say "error".
_UNAVAILABLE: Final = re.compile(r"-sip-(?:408|480)-")

# Transfer hooks: call.ringing.hook-executed-transfer, call.ending.hook-executed-transfer.
_TRANSFER_HOOK: Final = re.compile(r"hook-executed-transfer$")

# Every error family: pipeline-error-*, call.in-progress.error-*, call.start.error-*,
# call-start-error-*, call.ringing.error-*, *-failed (llm-failed, license-check-failed,
# assistant-request-failed), *-failed-to-connect*, vapifault-* / providerfault-*,
# *worker-died, *transport-never-connected, db-error, database-error, unknown-error, ...
_FAILED: Final = re.compile(r"error|fail|fault|worker-died|never-connected")

# Unknown future values in the other families, read by the words they use.
_NO_ANSWER: Final = re.compile(r"no-answer|did-not-answer|unanswered")
_BUSY: Final = re.compile(r"(?:^|[-.])busy(?:$|-)")


def outcome_from_ended_reason(reason: str | None) -> CallOutcome | None:
    """The outcome an ended reason means; None when there is no reason (the call has not ended).

    Everything not recognised as no answer, busy, voicemail, transfer or a failure is
    "completed": the assistant or the customer ended it, silence or max-duration timeouts,
    a cancelled call, and docs-only values such as ``hangup`` or ``assistantEndedCall``.
    """
    if not isinstance(reason, str) or not reason.strip():
        return None
    value = reason.strip().lower()
    exact = _EXACT.get(value)
    if exact is not None:
        return exact
    if _UNAVAILABLE.search(value):
        return CallOutcome.NO_ANSWER
    if _TRANSFER_HOOK.search(value):
        return CallOutcome.TRANSFERRED
    if _FAILED.search(value):
        return CallOutcome.FAILED
    if _NO_ANSWER.search(value):
        return CallOutcome.NO_ANSWER
    if _BUSY.search(value):
        return CallOutcome.BUSY
    if "voicemail" in value:
        return CallOutcome.VOICEMAIL
    return CallOutcome.COMPLETED


_MAX_LABEL: Final = 64
_SEPARATORS: Final = re.compile(r"[\s\-]+")
_UNDERSCORES: Final = re.compile(r"_+")


def normalise_outcome(value: object) -> str | None:
    """An assistant-provided outcome as a label: ``"Appointment Booked"`` -> ``appointment_booked``.

    Lower-cased and trimmed, runs of spaces and hyphens become one underscore, at most 64
    characters; None when it is not a string or nothing is left. Free labels are kept as
    given (the assistant's vocabulary is the client's business, not Vapi's ended reasons).
    """
    if not isinstance(value, str):
        return None
    label = _SEPARATORS.sub("_", value.strip().lower())
    label = _UNDERSCORES.sub("_", label).strip("_")
    label = label[:_MAX_LABEL].rstrip("_")
    return label or None
