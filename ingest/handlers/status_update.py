"""status-update: the call moved to ``status``; the lifecycle's backbone.

``in-progress`` is the start and ``ended`` (with ``endedReason``) the end, unless the
end-of-call report, which outranks status updates, says otherwise. ``forwarding`` can
occur mid-call and return to ``in-progress``, so nothing here is terminal but ``ended``;
a late ``in-progress`` only offers a start, it cannot clear an end. ``not-found`` and
``deletion-failed`` arrive days later from the deletion flow. ``call.startedAt`` /
``call.endedAt`` on the snapshot outrank the message's own timestamp when present.
"""

from __future__ import annotations

from typing import Any

from ingest.handlers.common import Context, call_event, iso, timeline_entry, with_metadata, with_timeline
from ingest.mapping.identity import obj
from ingest.mapping.outcome import outcome_from_ended_reason
from ingest.mapping.timing import plausible_instant
from ingest.patch import Patch, Source
from ingest.vocabulary import CallStatus


def handle(message: dict[str, Any], context: Context) -> Patch:
    status = message.get("status") if isinstance(message.get("status"), str) else None
    reason = message.get("endedReason") if isinstance(message.get("endedReason"), str) else None
    call = obj(message.get("call"))
    patch = with_timeline(call_event(message, context), timeline_entry(message, status=status, endedReason=reason))
    # Implausible instants are kept in metadata.implausible_times, not in the columns.
    patch, at = plausible_instant(patch, "timestamp", message.get("timestamp"), context.received_at)

    patch, snapshot_start = plausible_instant(patch, "call.startedAt", call.get("startedAt"), context.received_at)
    if snapshot_start:
        patch = patch.with_value("started_at_utc", snapshot_start, Source.CALL)
    elif status == CallStatus.IN_PROGRESS:
        patch = patch.with_value("started_at_utc", at, Source.STATUS)

    if status == CallStatus.ENDED:
        patch, snapshot_end = plausible_instant(patch, "call.endedAt", call.get("endedAt"), context.received_at)
        patch = patch.with_value("ended_at_utc", snapshot_end or at, Source.CALL if snapshot_end else Source.STATUS)
        patch = patch.with_value("ended_reason", reason, Source.STATUS)
        outcome = outcome_from_ended_reason(reason)
        patch = patch.with_value("call_outcome", outcome.value if outcome else None, Source.STATUS)
    elif status in {CallStatus.NOT_FOUND, CallStatus.DELETION_FAILED}:
        patch = with_metadata(patch, deletion={status: iso(at) or True})
    return patch
