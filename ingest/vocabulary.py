"""The one place where Vapi's message types, statuses and our outcome labels are spelled."""

from __future__ import annotations

from enum import StrEnum


class MessageType(StrEnum):
    STATUS_UPDATE = "status-update"
    END_OF_CALL_REPORT = "end-of-call-report"
    TRANSCRIPT = "transcript"
    # What Vapi sends instead of "transcript" to a server subscribed to final transcripts only.
    TRANSCRIPT_FINAL = 'transcript[transcriptType="final"]'
    CONVERSATION_UPDATE = "conversation-update"
    SPEECH_UPDATE = "speech-update"
    HANG = "hang"
    USER_INTERRUPTED = "user-interrupted"
    MODEL_OUTPUT = "model-output"
    TOOL_CALLS = "tool-calls"
    FUNCTION_CALL = "function-call"  # legacy, still in serverMessages, no current schema
    ASSISTANT_REQUEST = "assistant-request"
    TRANSFER_DESTINATION_REQUEST = "transfer-destination-request"
    HANDOFF_DESTINATION_REQUEST = "handoff-destination-request"
    KNOWLEDGE_BASE_REQUEST = "knowledge-base-request"
    TRANSFER_UPDATE = "transfer-update"
    PHONE_CALL_CONTROL = "phone-call-control"
    LANGUAGE_CHANGE_DETECTED = "language-change-detected"
    LANGUAGE_CHANGED = "language-changed"  # legacy name, no schema
    VOICE_INPUT = "voice-input"
    CALL_DELETED = "call.deleted"
    CALL_DELETE_FAILED = "call.delete.failed"
    CALL_ARTIFACT_UPLOAD = "call.artifact.upload"
    SESSION_CREATED = "session.created"
    SESSION_UPDATED = "session.updated"
    SESSION_DELETED = "session.deleted"
    CHAT_CREATED = "chat.created"
    CHAT_DELETED = "chat.deleted"
    # Not a server message: a Call object read from Vapi's API by reconciliation, recorded
    # and applied like one (``{"type": "api.call", "timestamp": <updatedAt ms>, "call": …}``).
    API_CALL = "api.call"


# Messages Vapi waits on: the HTTP response body is the answer.
REQUEST_TYPES = frozenset(
    {
        MessageType.ASSISTANT_REQUEST,
        MessageType.TOOL_CALLS,
        MessageType.FUNCTION_CALL,
        MessageType.TRANSFER_DESTINATION_REQUEST,
        MessageType.HANDOFF_DESTINATION_REQUEST,
        MessageType.KNOWLEDGE_BASE_REQUEST,
    }
)

# Where the answer this service gave to an ``assistant-request`` is recorded with that message
# (``{"assistantId": …}``), so the worker knows the call's assistant even when Vapi's later
# messages omit it. Vapi never sends this field.
ANSWER_FIELD = "ingestAnswer"


class AssistantKind(StrEnum):
    """What runs a call: ``metadata.assistants[<id>].kind`` (``ingest.mapping.assistant``)."""

    SAVED = "saved"  # an assistant with an id of its own
    ANSWERED = "answered"  # the id this service answered to the call's assistant-request
    TRANSIENT = "transient"  # an inline assistant without an id: a name-based id
    SQUAD = "squad"
    WORKFLOW = "workflow"


# Transcript types seen on the wire, including the single-quoted variant of early 2025.
# Messages the service records itself, never Vapi: a webhook naming one is refused (a holder of
# the webhook secret must not outrank the platform's own answer).
INTERNAL_TYPES = frozenset({MessageType.API_CALL})

TRANSCRIPT_TYPES = frozenset(
    {MessageType.TRANSCRIPT, MessageType.TRANSCRIPT_FINAL, "transcript[transcriptType='final']"}
)


class DeliveryOutcome(StrEnum):
    """What the endpoint did with a delivery: logged and counted (``vapi_ingest_deliveries_total``)."""

    QUEUED = "queued"
    STORED = "stored"  # Redis failed: kept in Postgres, queued later by the drainer
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"  # failed authentication from an address past its failure limit: 429
    INVALID = "invalid"
    TOO_LARGE = "too_large"
    TIMED_OUT = "timed_out"  # the body did not arrive within BODY_TIMEOUT_SECONDS: 408
    BUSY = "busy"  # MAX_UNVERIFIED_BODIES signed bodies already being read: 503
    UNAVAILABLE = "unavailable"  # neither Redis nor Postgres took it: 503
    ANSWERED_NOT_RECORDED = "answered_not_recorded"  # a live call got its answer, the event is lost


class MergeOutcome(StrEnum):
    """What ``ingest_apply_patch`` did with a patch (its ``outcome`` column)."""

    INSERTED = "inserted"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    MISSING = "missing"  # the row cannot exist yet (no assistant): the event waits


class CallStatus(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    FORWARDING = "forwarding"
    ENDED = "ended"
    NOT_FOUND = "not-found"
    DELETION_FAILED = "deletion-failed"


class CallOutcome(StrEnum):
    """``call_outcome`` labels derived from the ended reason when the assistant gives none."""

    COMPLETED = "completed"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"
    TRANSFERRED = "transferred"
    FAILED = "failed"


class Sentiment(StrEnum):
    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


class EventState(StrEnum):
    """``call_events.state``: where a received event is in its life."""

    PENDING = "pending"  # recorded, not applied yet (queued, or kept in Postgres while Redis was down)
    WAITING = "waiting"  # cannot be applied yet (e.g. no assistant known); retried when the call changes
    APPLIED = "applied"
    FAILED = "failed"  # can never be applied; the error is kept
    IGNORED = "ignored"  # recorded only (unknown or informational type)


class ReconcileResult(StrEnum):
    """What reconciliation found of one Call from Vapi's API (``ingest.ops.reconcile``)."""

    COMPLETE = "complete"  # the row already had everything the Call has
    FILLED = "filled"  # the row lacked its end, cost, analysis or transcript
    MISSING = "missing"  # no row at all: none of its webhooks arrived
    ERASED = "erased"  # erased on request: nothing of it applied
    FAILED = "failed"  # could not be mapped or applied: kept as a failed api.call event


class AuditAction(StrEnum):
    """``data_access_log.action``: a read of session data or an administrative action (``ingest.audit``)."""

    VIEW_CALL = "view_call"
    LIST_CALLS = "list_calls"
    VIEW_EVENT = "view_event"
    LIST_EVENTS = "list_events"
    REAPPLY = "reapply"
    DISCARD = "discard"
    DLQ_REQUEUE = "dlq_requeue"
    DLQ_PURGE = "dlq_purge"
    REBUILD = "rebuild"
    REVEAL = "reveal"  # a sealed value shown in clear; always with a reason
    EXPORT = "export"
    ERASE = "erase"  # a caller's sessions or one call erased on request; always with a reason
    KEYS_ROTATE = "keys_rotate"
    RETENTION_RUN = "retention_run"  # a retention run that removed data: its counts in details
    ANOMALY_ACK = "anomaly_ack"  # an anomaly acknowledged; always with a reason
    CALLER_BLOCKED = "caller_blocked"  # an assistant-request refused under BLOCK_FLAGGED_CALLERS


class AuditSurface(StrEnum):
    """``data_access_log.surface``: where the access came through."""

    CLI = "cli"  # the ingest command
    OPS = "ops"  # the /ops page
    WORKER = "worker"  # the workers' own scheduled tasks (retention)
    WEBHOOK = "webhook"  # the endpoint itself (a flagged caller refused)


class AuditActorKind(StrEnum):
    """``data_access_log.actor_kind``: what ``actor`` names."""

    OS_USER = "os_user"  # the operating-system user running the ingest command
    OPS_USER = "ops_user"  # the /ops page's basic-auth user (INGEST_OPS_USER)
    OPS_BEARER = "ops_bearer"  # the /ops page's bearer token (INGEST_OPS_TOKEN), by name, never its value
    SERVICE = "service"  # the service itself: a worker process, by host and pid


class AuditTargetKind(StrEnum):
    """``data_access_log.target_kind``: what ``target`` is."""

    CALL = "call"
    SESSION = "session"
    EVENT = "event"
    DEAD_LETTER = "dead_letter"
    BULK = "bulk"  # several items or rows: ``target_count`` says how many
    ANOMALY = "anomaly"  # a call_anomalies row, by id


class AnomalyKind(StrEnum):
    """``call_anomalies.kind``: what a detector found (``ingest.ops.anomalies``, docs/abuse.md)."""

    VOLUME = "volume"  # calls per client per hour far above its own baseline
    REPEAT_CALLER = "repeat_caller"  # one caller number calling one client many times in the window
    SHORT_CALLS = "short_calls"  # a burst of very short calls to one client or phone number
    COST = "cost"  # cost per client per hour far above its own baseline
    OUTBOUND_DESTINATION = "outbound_destination"  # outbound calls to premium, shared-cost or unexpected countries
    VAPI_SIGNAL = "vapi_signal"  # Vapi ended calls for fraud checks or limits


class AnomalySubject(StrEnum):
    """``call_anomalies.subject_kind``: what ``subject`` names (never a raw phone number)."""

    CLIENT = "client"  # a client id
    PHONE_NUMBER = "phone_number"  # a Vapi phone number id
    CALLER = "caller"  # a caller's (or dialled number's) pseudonym, ``anon:<hex>``
