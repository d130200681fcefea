"""end-of-call-report: sent once post-processing is done; the authority for what it carries.

Its top-level ``startedAt`` / ``endedAt`` / ``endedReason`` / ``cost`` outrank status
updates and the (stale) call snapshot; only the API's Call object of an ended call
(``ingest.handlers.api_call``) outranks them. Analysis sits under ``analysis`` and the
conversation under ``artifact``; 2024-era reports put ``summary``, ``transcript``,
``messages`` and recording URLs at the top level instead, and are still read. Sentiment,
outcome and keywords come from the assistant's ``structuredData`` when it has them,
otherwise they are derived from what was said (``ingest.handlers.post_call``). Presigned recording URLs change on
every delivery and are never kept; the stable ones are.
"""

from __future__ import annotations

from typing import Any

from ingest.handlers.common import Context, call_event, timeline_entry, with_timeline
from ingest.handlers.post_call import conversation, given_times, results, results_metadata, text
from ingest.mapping.identity import obj
from ingest.mapping.timing import conversation_span, implausible, plausible_instant, reported_duration_seconds
from ingest.patch import Patch, Source


def _times(patch: Patch, message: dict[str, Any], context: Context) -> Patch:
    """Start and end: the report's own, else read off its messages, its timestamp, its arrival.

    2024 reports carry no ``startedAt`` / ``endedAt`` (only ``timestamp``, sometimes not even
    that, and ``messages`` with their own times). A report means the call is over, so it
    always ends the row; each fallback is ranked below a status update's end and keeps its
    source in ``metadata.provenance``. Implausible instants (before 2015, more than a day
    after the report arrived) and an end before the start are not used: their raw values
    and the reason are kept in ``metadata.implausible_times``.
    """
    received = context.received_at
    patch, started, ended = given_times(patch, message, received)
    patch = patch.with_value("started_at_utc", started, Source.REPORT)
    patch = patch.with_value("ended_at_utc", ended, Source.REPORT)
    if started is not None and ended is not None:
        return patch
    first, last = conversation_span(conversation(message))
    first = None if first is None or implausible(first, received) else first
    last = None if last is None or implausible(last, received) else last
    if started is None:
        patch = patch.with_value("started_at_utc", first, Source.MESSAGES)
    if ended is None:
        patch, stamped = plausible_instant(patch, "timestamp", message.get("timestamp"), received)
        if last is not None:
            patch = patch.with_value("ended_at_utc", last, Source.MESSAGES)
        elif stamped is not None:
            patch = patch.with_value("ended_at_utc", stamped, Source.TIMESTAMP)
        else:
            patch = patch.with_value("ended_at_utc", context.received_at, Source.RECEIVED)
    return patch


def handle(message: dict[str, Any], context: Context) -> Patch:
    reason = text(message.get("endedReason"))
    patch = with_timeline(call_event(message, context), timeline_entry(message, endedReason=reason))
    patch = _times(patch, message, context)
    patch = patch.with_value("duration", reported_duration_seconds(message), Source.REPORT)
    patch = results(patch, message, reason, context, Source.REPORT)
    ended_message = message.get("endedMessage") or obj(message.get("call")).get("endedMessage")
    return results_metadata(patch, message, context, ended_message)
