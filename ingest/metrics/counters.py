"""What the endpoint and the workers count, as Prometheus counters and histograms.

Every name, label and meaning is listed in docs/metrics.md. Label values are bounded:
message types outside the vocabulary are ``other``, and a delivery refused before its
type could be trusted (unauthorized, invalid, too large) is ``unknown``.

Recording sits on the hot paths (every delivery, every event), so each label combination
is resolved once and kept: a delivery then costs two increments of prometheus_client's
values (memory-mapped files in multiprocess mode), a few microseconds.

prometheus_client chooses multiprocess mode when first imported; ``ingest.metrics.multiprocess``
sets ``PROMETHEUS_MULTIPROC_DIR`` before that for ``ingest web`` and ``ingest worker``.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Histogram

from ingest.vocabulary import TRANSCRIPT_TYPES, EventState, MessageType, ReconcileResult

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # prometheus_client writes there at the first count
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

KNOWN_TYPES: frozenset[str] = frozenset(MessageType) | TRANSCRIPT_TYPES
OTHER = "other"
UNKNOWN = "unknown"

# The endpoint's outcomes (ingest.web.webhook logs the same words), grouped for the latency
# histogram: queueing and the Postgres fallback take very different times.
OUTCOME_CLASSES = {
    "queued": "queued",
    "stored": "stored",
    "unauthorized": "rejected",
    "rate_limited": "rejected",
    "invalid": "rejected",
    "too_large": "rejected",
    "timed_out": "rejected",
    "busy": "unavailable",
    "unavailable": "unavailable",
    "answered_not_recorded": "unavailable",
}
DUPLICATE = "duplicate"  # the worker's result for an event that was already applied

DELIVERY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
EVENT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

DELIVERIES = Counter(
    "vapi_ingest_deliveries", "Webhook deliveries answered, by message type and outcome.", ["type", "outcome"]
)
DELIVERY_SECONDS = Histogram(
    "vapi_ingest_delivery_duration_seconds",
    "Time from a delivery's arrival to its answer, by outcome class.",
    ["outcome_class"],
    buckets=DELIVERY_BUCKETS,
)
EVENTS_PROCESSED = Counter(
    "vapi_ingest_events_processed",
    "Queued events the workers finished, by message type and the state they reached.",
    ["type", "result"],
)
EVENTS_FAILED = Counter(
    "vapi_ingest_events_failed",
    "Attempts to apply a queued event that failed, by message type; permanent ones are not retried.",
    ["type", "permanent"],
)
EVENT_SECONDS = Histogram(
    "vapi_ingest_event_processing_seconds",
    "Time for a worker to apply a queued event and commit it, by result.",
    ["result"],
    buckets=EVENT_BUCKETS,
)

OPS_LOGIN_FAILURES = Counter(
    "vapi_ingest_ops_login_failures",
    "Refused /ops logins (wrong or malformed credentials, or too many failures), by claimed scheme and reason.",
    ["scheme", "reason"],
)
WEBHOOK_AUTH_FAILURES = Counter(
    "vapi_ingest_webhook_auth_failures",
    "Webhook requests refused for their credentials (401) or, past the failure limit, rate limited (429), by reason.",
    ["reason"],
)
REPLAYS = Counter(
    "vapi_ingest_replays",
    "Signed deliveries seen before within the tolerance window, by message type and how they were answered.",
    ["type", "answer"],
)

RECONCILED_CALLS = Counter(
    "vapi_ingest_reconciled_calls",
    "Calls reconciled with Vapi's API, by what their row lacked (complete, filled, missing, erased), or failed:"
    " the Call could not be mapped or applied and is kept as a failed api.call event.",
    ["result"],
)
for _result in ReconcileResult:  # every result scraped from the start, at 0 (an alert on failed needs the series)
    RECONCILED_CALLS.labels(_result.value)
RECONCILE_API_ERRORS = Counter(
    "vapi_ingest_reconcile_api_errors",
    "Reconciliations stopped because Vapi's API could not be read (after its bounded retries).",
)
CALLERS_BLOCKED = Counter(
    "vapi_ingest_callers_blocked",
    "assistant-requests answered with an error because the caller has an open repeat-caller anomaly"
    " (BLOCK_FLAGGED_CALLERS).",
)

_deliveries: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
_processed: dict[tuple[str, str], tuple[Counter, Histogram]] = {}


def type_label(kind: object) -> str:
    """The ``type`` label of a message type: itself when known, else ``other``; None is ``unknown``."""
    if kind is None:
        return UNKNOWN
    return kind if isinstance(kind, str) and kind in KNOWN_TYPES else OTHER


def delivery(kind: str | None, outcome: str, seconds: float) -> None:
    """Count one answered delivery and its latency."""
    key = (type_label(kind), outcome)
    children = _deliveries.get(key)
    if children is None:
        outcome_class = OUTCOME_CLASSES.get(outcome, OTHER)
        children = _deliveries[key] = (DELIVERIES.labels(*key), DELIVERY_SECONDS.labels(outcome_class))
    children[0].inc()
    children[1].observe(seconds)


def event_processed(kind: str, state: EventState | None, seconds: float) -> None:
    """Count one event the worker finished (``state`` None: a duplicate of an applied one)."""
    key = (type_label(kind), DUPLICATE if state is None else str(state))
    children = _processed.get(key)
    if children is None:
        children = _processed[key] = (EVENTS_PROCESSED.labels(*key), EVENT_SECONDS.labels(key[1]))
    children[0].inc()
    children[1].observe(seconds)


def event_failed(kind: str, *, permanent: bool, seconds: float) -> None:
    """Count one failed attempt to apply an event."""
    EVENTS_FAILED.labels(type_label(kind), "true" if permanent else "false").inc()
    EVENT_SECONDS.labels("failed").observe(seconds)


def ops_login_failure(scheme: str, reason: str) -> None:
    """Count one refused /ops login (``scheme``: basic, bearer or other)."""
    OPS_LOGIN_FAILURES.labels(scheme, reason).inc()


def webhook_auth_failure(reason: str) -> None:
    """Count one webhook request refused for its credentials (``reason``: an auth reason, or ``rate_limited``)."""
    WEBHOOK_AUTH_FAILURES.labels(reason).inc()


def replay(kind: str | None, answer: str) -> None:
    """Count one replayed signed delivery and how it was answered (``ingest.web.replays``)."""
    REPLAYS.labels(type_label(kind), answer).inc()


def reconciled(result: str, count: int = 1) -> None:
    """Count calls a reconciliation applied, by result (``ingest.ops.reconcile.RESULTS``, ``failed`` included)."""
    RECONCILED_CALLS.labels(result).inc(count)


def reconcile_api_error() -> None:
    """Count one reconciliation stopped because Vapi's API could not be read."""
    RECONCILE_API_ERRORS.inc()


def caller_blocked() -> None:
    """Count one assistant-request refused under ``BLOCK_FLAGGED_CALLERS``."""
    CALLERS_BLOCKED.inc()
