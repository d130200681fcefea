"""api.call: a Call object read from Vapi's API (``GET /call``, ``GET /call/{id}``) by reconciliation.

Not a server message. Reconciliation wraps each Call the API returns with
``api_call_message`` and applies it like a webhook, so it is recorded (sealed) in
``call_events`` and replayed by ``rebuild`` / ``events reapply`` like any other event. Its
dedupe key (``ingest.mapping.event_key``) depends on the call id and ``updatedAt`` alone
(``call`` is envelope, outside the digest): the same state fetched twice is one event, a
call changed since is a new one.

The Call object of an ended call (``status: ended``) is the platform's final word on the
call's times, ended reason, cost and analysis: those rank as ``api``, above the
end-of-call report; only the assistant's structured analysis ranks higher (it is the same
analysis whoever carries it). It may lack what a report carries (the legacy durations, a
transcript when the artifact plan kept none); the report's values stand there. Its field
names are the report's, so both are read by ``ingest.handlers.post_call``.

A Call of a call still going is a snapshot, like ``message.call``: its cost grows, its
artifact is partial. Only who is on it and when it started are taken (ranked ``call``);
a later reconciliation reads the rest once the call has ended.
"""

from __future__ import annotations

from typing import Any

from ingest.handlers.common import Context, call_event, timeline_entry, with_timeline
from ingest.handlers.post_call import given_times, results, results_metadata, text
from ingest.mapping.identity import obj
from ingest.mapping.timing import parse_instant, plausible_instant
from ingest.patch import Patch, Source
from ingest.vocabulary import CallStatus, MessageType


def api_call_message(call: dict[str, Any]) -> dict[str, Any]:
    """The event message for a Call object: its ``updatedAt`` (epoch ms) as the timestamp."""
    message: dict[str, Any] = {"type": MessageType.API_CALL.value}
    updated = parse_instant(call.get("updatedAt"))
    if updated is not None:
        message["timestamp"] = round(updated.timestamp() * 1000)
    message["call"] = call
    return message


def handle(message: dict[str, Any], context: Context) -> Patch:
    call = obj(message.get("call"))
    status = text(call.get("status"))
    reason = text(call.get("endedReason"))
    patch = with_timeline(call_event(message, context), timeline_entry(message, status=status, endedReason=reason))
    if status != CallStatus.ENDED:
        patch, started = plausible_instant(patch, "call.startedAt", call.get("startedAt"), context.received_at)
        return patch.with_value("started_at_utc", started, Source.CALL)

    patch, started, ended = given_times(patch, call, context.received_at)
    patch = patch.with_value("started_at_utc", started, Source.API)
    patch = patch.with_value("ended_at_utc", ended, Source.API)
    patch = results(patch, call, reason, context, Source.API)
    return results_metadata(patch, call, context, call.get("endedMessage"))
