"""What a finished call's record says: times, ended reason, cost, transcript, analysis, recordings.

Two things carry it, with the same field names at their top level: the end-of-call report
(``ingest.handlers.end_of_call_report``) and the Call object read from Vapi's API
(``ingest.handlers.api_call``). Both put ``startedAt`` / ``endedAt`` / ``endedReason``,
``cost`` / ``costs`` / ``costBreakdown``, ``analysis`` and ``artifact`` there; the caller
names the source the values rank as. Sentiment, outcome and keywords come from the
assistant's ``structuredData`` when it has them (source ``structured`` whoever carries
them), otherwise they are derived from what was said and rank as the caller's source.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.handlers.common import Context, redacted, redacted_strings, with_metadata
from ingest.mapping.artifacts import performance_metrics, stable_recording_urls
from ingest.mapping.costs import cost_metadata, reported_cost
from ingest.mapping.identity import obj
from ingest.mapping.keywords import extract_keywords, normalise_keywords
from ingest.mapping.outcome import normalise_outcome, outcome_from_ended_reason
from ingest.mapping.sentiment import normalise_sentiment, sentiment_of
from ingest.mapping.timing import note_implausible, plausible_instant
from ingest.mapping.transcript import customer_lines, customer_utterances, transcript_from_messages
from ingest.patch import Patch, Source

__all__ = ["conversation", "given_times", "results", "results_metadata", "text", "transcript_of"]


def text(value: Any) -> str | None:
    """``value`` when it is a string with something in it; else None."""
    return value if isinstance(value, str) and value.strip() else None


def conversation(fields: dict[str, Any]) -> list[Any]:
    """The conversation's messages: ``artifact.messages``, else the legacy top-level ``messages``."""
    artifact = obj(fields.get("artifact"))
    for items in (artifact.get("messages"), fields.get("messages")):
        if isinstance(items, list) and items:
            return items
    return []


def transcript_of(fields: dict[str, Any]) -> str | None:
    artifact = obj(fields.get("artifact"))
    return (
        text(artifact.get("transcript"))
        or text(fields.get("transcript"))
        or transcript_from_messages(conversation(fields))
    )


def given_times(
    patch: Patch, fields: dict[str, Any], received_at: datetime
) -> tuple[Patch, datetime | None, datetime | None]:
    """``startedAt`` and ``endedAt`` when plausible; an end before the start drops both.

    What is not used is kept, with why, in ``metadata.implausible_times``.
    """
    patch, started = plausible_instant(patch, "startedAt", fields.get("startedAt"), received_at)
    patch, ended = plausible_instant(patch, "endedAt", fields.get("endedAt"), received_at)
    if started is not None and ended is not None and ended < started:
        for field in ("startedAt", "endedAt"):
            patch = note_implausible(patch, field, fields.get(field), "endedAt is before startedAt")
        started = ended = None
    return patch, started, ended


def _analysis(
    patch: Patch,
    fields: dict[str, Any],
    transcript: str | None,
    reason: str | None,
    context: Context,
    source: Source,
) -> Patch:
    """Summary, sentiment, outcome, keywords; keywords come from the redacted transcript."""
    analysis = obj(fields.get("analysis"))
    structured = obj(analysis.get("structuredData"))
    summary = text(analysis.get("summary")) or text(fields.get("summary"))
    patch = patch.with_text("call_summary", summary, source, redacted(summary, context))

    sentiment = normalise_sentiment(structured.get("sentiment"))
    if sentiment:
        patch = patch.with_value("sentiment", sentiment.value, Source.STRUCTURED)
    else:
        said = customer_utterances(conversation(fields)) or customer_lines(transcript or "")
        derived = sentiment_of(said)
        patch = patch.with_value("sentiment", derived.value if derived else None, source)

    outcome = normalise_outcome(structured.get("outcome", structured.get("call_outcome")))
    if outcome:
        patch = patch.with_value("call_outcome", outcome, Source.STRUCTURED)
    else:
        from_reason = outcome_from_ended_reason(reason)
        patch = patch.with_value("call_outcome", from_reason.value if from_reason else None, source)

    keywords = normalise_keywords(redacted_strings(structured.get("keywords"), context))
    if keywords:
        return patch.with_value("keywords", keywords, Source.STRUCTURED)
    searchable = redacted(transcript, context)
    return patch.with_value("keywords", extract_keywords(searchable) if searchable else None, source)


def results(patch: Patch, fields: dict[str, Any], reason: str | None, context: Context, source: Source) -> Patch:
    """``patch`` plus the ended reason, cost, transcript (redacted) and analysis, ranked as ``source``."""
    patch = patch.with_value("ended_reason", reason, source)
    patch = patch.with_value("cost_total", reported_cost(fields), source)
    transcript = transcript_of(fields)
    patch = patch.with_text("call_transcript", transcript, source, redacted(transcript, context))
    return _analysis(patch, fields, transcript, reason, context, source)


def results_metadata(patch: Patch, fields: dict[str, Any], context: Context, ended_message: Any = None) -> Patch:
    """``patch`` plus the cost breakdown, the analysis kept as given (redacted), recordings, performance."""
    analysis = obj(fields.get("analysis"))
    report = {
        key: value
        for key, value in {
            # free-form text the assistant wrote: kept redacted, like the transcript
            "success_evaluation": redacted_strings(analysis.get("successEvaluation"), context),
            "structured_data": redacted_strings(analysis.get("structuredData"), context) or None,
            "structured_outputs": redacted_strings(obj(fields.get("artifact")).get("structuredOutputs"), context)
            or None,
            "ended_message": redacted_strings(ended_message, context),
            "destination": fields.get("destination"),
        }.items()
        if value is not None
    }
    return with_metadata(
        patch,
        **cost_metadata(fields),
        analysis=report,
        recordings=stable_recording_urls(fields),
        performance=performance_metrics(fields),
    )
