"""end-of-call-report: sent once post-processing is done; the authority for what it carries.

Its top-level ``startedAt`` / ``endedAt`` / ``endedReason`` / ``cost`` outrank status
updates and the (stale) call snapshot. Analysis sits under ``analysis`` and the
conversation under ``artifact``; 2024-era reports put ``summary``, ``transcript``,
``messages`` and recording URLs at the top level instead, and are still read. Sentiment,
outcome and keywords come from the assistant's ``structuredData`` when it has them,
otherwise they are derived here from what was said. Presigned recording URLs change on
every delivery and are never kept; the stable ones are.
"""

from __future__ import annotations

from typing import Any

from ingest.handlers.common import (
    Context,
    call_event,
    redacted,
    redacted_strings,
    timeline_entry,
    with_metadata,
    with_timeline,
)
from ingest.mapping.artifacts import performance_metrics, stable_recording_urls
from ingest.mapping.costs import cost_metadata, reported_cost
from ingest.mapping.identity import obj
from ingest.mapping.keywords import extract_keywords, normalise_keywords
from ingest.mapping.outcome import normalise_outcome, outcome_from_ended_reason
from ingest.mapping.sentiment import normalise_sentiment, sentiment_of
from ingest.mapping.timing import (
    conversation_span,
    implausible,
    note_implausible,
    plausible_instant,
    reported_duration_seconds,
)
from ingest.mapping.transcript import customer_lines, customer_utterances, transcript_from_messages
from ingest.patch import Patch, Source


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _messages(message: dict[str, Any]) -> list[Any]:
    artifact = obj(message.get("artifact"))
    for items in (artifact.get("messages"), message.get("messages")):
        if isinstance(items, list) and items:
            return items
    return []


def transcript_of(message: dict[str, Any]) -> str | None:
    artifact = obj(message.get("artifact"))
    return (
        _text(artifact.get("transcript"))
        or _text(message.get("transcript"))
        or transcript_from_messages(_messages(message))
    )


def _analysis(
    patch: Patch, message: dict[str, Any], transcript: str | None, reason: str | None, context: Context
) -> Patch:
    """Summary, sentiment, outcome, keywords; keywords come from the redacted transcript."""
    analysis = obj(message.get("analysis"))
    structured = obj(analysis.get("structuredData"))
    summary = _text(analysis.get("summary")) or _text(message.get("summary"))
    patch = patch.with_text("call_summary", summary, Source.REPORT, redacted(summary, context))

    sentiment = normalise_sentiment(structured.get("sentiment"))
    if sentiment:
        patch = patch.with_value("sentiment", sentiment.value, Source.STRUCTURED)
    else:
        said = customer_utterances(_messages(message)) or customer_lines(transcript or "")
        derived = sentiment_of(said)
        patch = patch.with_value("sentiment", derived.value if derived else None, Source.REPORT)

    outcome = normalise_outcome(structured.get("outcome", structured.get("call_outcome")))
    if outcome:
        patch = patch.with_value("call_outcome", outcome, Source.STRUCTURED)
    else:
        from_reason = outcome_from_ended_reason(reason)
        patch = patch.with_value("call_outcome", from_reason.value if from_reason else None, Source.REPORT)

    keywords = normalise_keywords(redacted_strings(structured.get("keywords"), context))
    if keywords:
        return patch.with_value("keywords", keywords, Source.STRUCTURED)
    searchable = redacted(transcript, context)
    return patch.with_value("keywords", extract_keywords(searchable) if searchable else None, Source.REPORT)


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
    patch, started = plausible_instant(patch, "startedAt", message.get("startedAt"), received)
    patch, ended = plausible_instant(patch, "endedAt", message.get("endedAt"), received)
    if started is not None and ended is not None and ended < started:
        for field in ("startedAt", "endedAt"):
            patch = note_implausible(patch, field, message.get(field), "endedAt is before startedAt")
        started = ended = None
    patch = patch.with_value("started_at_utc", started, Source.REPORT)
    patch = patch.with_value("ended_at_utc", ended, Source.REPORT)
    if started is not None and ended is not None:
        return patch
    first, last = conversation_span(_messages(message))
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
    reason = _text(message.get("endedReason"))
    patch = with_timeline(call_event(message, context), timeline_entry(message, endedReason=reason))
    patch = _times(patch, message, context)
    patch = patch.with_value("ended_reason", reason, Source.REPORT)
    patch = patch.with_value("duration", reported_duration_seconds(message), Source.REPORT)
    patch = patch.with_value("cost_total", reported_cost(message), Source.REPORT)
    transcript = transcript_of(message)
    patch = patch.with_text("call_transcript", transcript, Source.REPORT, redacted(transcript, context))
    patch = _analysis(patch, message, transcript, reason, context)

    analysis = obj(message.get("analysis"))
    call = obj(message.get("call"))
    report = {
        key: value
        for key, value in {
            # free-form text the assistant wrote: kept redacted, like the transcript
            "success_evaluation": redacted_strings(analysis.get("successEvaluation"), context),
            "structured_data": redacted_strings(analysis.get("structuredData"), context) or None,
            "structured_outputs": redacted_strings(obj(message.get("artifact")).get("structuredOutputs"), context)
            or None,
            "ended_message": redacted_strings(message.get("endedMessage") or call.get("endedMessage"), context),
            "destination": message.get("destination"),
        }.items()
        if value is not None
    }
    return with_metadata(
        patch,
        **cost_metadata(message),
        analysis=report,
        recordings=stable_recording_urls(message),
        performance=performance_metrics(message),
    )
