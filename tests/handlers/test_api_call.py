"""ingest.handlers.api_call: a Call object read from Vapi's API, mapped like the report it stands for."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from support.fixtures import load_event

from ingest.handlers import HANDLERS, Context
from ingest.handlers.api_call import api_call_message, handle
from ingest.mapping.event_key import event_key
from ingest.mapping.timing import parse_instant
from ingest.patch import ORIGINALS, Source
from ingest.vocabulary import MessageType

RECEIVED = datetime(2026, 6, 1, tzinfo=UTC)
CONTEXT = Context(received_at=RECEIVED)
RECORDED = orjson.loads(load_event("api_call"))["message"]


def ended_call(**fields: Any) -> dict[str, Any]:
    """The recorded Call object (an ended call), with ``fields`` replaced."""
    return {**copy.deepcopy(RECORDED["call"]), **fields}


def test_the_recorded_event_is_what_api_call_message_builds() -> None:
    """The fixture is the Call wrapped by api_call_message: its updatedAt in epoch ms is the timestamp."""
    assert api_call_message(RECORDED["call"]) == RECORDED
    assert parse_instant(RECORDED["timestamp"]) == parse_instant(RECORDED["call"]["updatedAt"])
    assert isinstance(RECORDED["timestamp"], int)
    assert HANDLERS[MessageType.API_CALL] is handle


def test_an_ended_call_ranks_as_the_api_for_what_it_carries() -> None:
    """Times, ended reason, cost, transcript and summary of an ended call are the API's."""
    call = RECORDED["call"]
    values = handle(RECORDED, CONTEXT).values
    assert values["started_at_utc"] == (parse_instant(call["startedAt"]), Source.API)
    assert values["ended_at_utc"] == (parse_instant(call["endedAt"]), Source.API)
    assert values["ended_reason"] == ("customer-ended-call", Source.API)
    assert values["cost_total"] == (Decimal("0.0255"), Source.API)  # 0.02546 USD as numeric(10,4)
    assert values["call_transcript"] == (call["artifact"]["transcript"], Source.API)
    assert values["call_summary"] == (call["analysis"]["summary"], Source.API)
    assert "duration" not in values  # the Call has no duration of its own: the database derives it


def test_structured_analysis_keeps_its_own_rank() -> None:
    """Sentiment and outcome from structuredData rank as structured, as they do in a report."""
    values = handle(RECORDED, CONTEXT).values
    assert values["sentiment"] == ("positive", Source.STRUCTURED)
    assert values["call_outcome"] == ("information_given", Source.STRUCTURED)


def test_identity_comes_from_the_call_object() -> None:
    """Call id, assistant, phone number id, customer number and call type are read off the Call."""
    patch = handle(RECORDED, CONTEXT)
    call = RECORDED["call"]
    assert patch.call_id == call["id"]
    assert patch.values["assistant_id"][0] == call["assistantId"]
    assert patch.values["phone_number_id"][0] == call["phoneNumberId"]
    assert patch.values["customer_number"][0] == call["customer"]["number"]
    assert patch.values["type"][0] == "inbound"


def test_metadata_keeps_costs_analysis_and_stable_recordings() -> None:
    """costs[], the breakdown, the analysis as given and only the stable recording URLs go to metadata."""
    call = ended_call()
    call["artifact"]["presignedMonoUrl"] = "https://x.s3.amazonaws.com/a.wav?X-Amz-Signature=abc&X-Amz-Expires=3600"
    metadata = handle(api_call_message(call), CONTEXT).metadata
    assert metadata["costs"] == call["costs"]
    assert metadata["cost_breakdown"] == call["costBreakdown"]
    assert metadata["analysis"]["structured_data"] == call["analysis"]["structuredData"]
    assert metadata["analysis"]["success_evaluation"] == "true"
    assert metadata["recordings"]["recording_url"] == call["artifact"]["recordingUrl"]
    assert "X-Amz" not in orjson.dumps(metadata).decode()


def test_transcript_and_summary_are_redacted_with_their_originals_beside() -> None:
    """Personal data in the API's transcript and summary is redacted; the original travels for sealing."""
    said = "User: call me back on 021 555 0147 please\n"
    summary = "Caller asked to be called back on 021 555 0147."
    call = ended_call(analysis={"summary": summary}, artifact={"transcript": said})
    values = handle(api_call_message(call), CONTEXT).values
    for column, text in (("call_transcript", said), ("call_summary", summary)):
        assert "0147" not in values[column][0]
        assert values[ORIGINALS[column]] == (text, Source.API)
    unredacted = handle(api_call_message(call), Context(received_at=RECEIVED, redact=False)).values
    assert unredacted["call_transcript"] == (said, Source.API)
    assert ORIGINALS["call_transcript"] not in unredacted


def test_an_ended_call_lacking_fields_supplies_only_what_it_has() -> None:
    """No artifact, analysis or cost: those columns are left to the report; the ended reason still gives an outcome."""
    call = ended_call()
    for field in ("artifact", "analysis", "cost", "costs", "costBreakdown"):
        del call[field]
    values = handle(api_call_message(call), CONTEXT).values
    assert not {"call_transcript", "call_summary", "cost_total", "sentiment", "keywords"} & set(values)
    assert values["call_outcome"] == ("completed", Source.API)
    assert values["ended_at_utc"][1] == Source.API


def test_a_call_still_going_gives_only_identity_and_start() -> None:
    """An in-progress Call's partial cost and artifact are not taken; its start ranks as a call snapshot."""
    call = ended_call(status="in-progress", endedReason=None)
    del call["endedAt"]
    patch = handle(api_call_message(call), CONTEXT)
    assert patch.values["started_at_utc"] == (parse_instant(call["startedAt"]), Source.CALL)
    assert not {"ended_at_utc", "cost_total", "call_transcript", "call_summary", "sentiment"} & set(patch.values)
    assert "costs" not in patch.metadata
    assert patch.timeline[-1]["status"] == "in-progress"


def test_implausible_times_are_kept_aside() -> None:
    """An end before the start drops both; the raw values and why are in metadata.implausible_times."""
    call = ended_call(startedAt="2026-05-06T00:41:33.411Z", endedAt="2026-05-06T00:41:14.211Z")
    patch = handle(api_call_message(call), CONTEXT)
    assert not {"started_at_utc", "ended_at_utc"} & set(patch.values)
    assert set(patch.metadata["implausible_times"]) == {"startedAt", "endedAt"}


def test_timeline_entry_is_the_call_state_at_updated_at() -> None:
    """The row's timeline gets {at: updatedAt, type: api.call, status, endedReason}."""
    assert handle(RECORDED, CONTEXT).timeline == (
        {
            "type": "api.call",
            "at": RECORDED["call"]["updatedAt"],
            "status": "ended",
            "endedReason": "customer-ended-call",
        },
    )


def test_the_dedupe_key_is_the_call_and_its_updated_at() -> None:
    """The same Call state fetched twice is one event; a newer updatedAt is a new one."""
    first = api_call_message(ended_call())
    refetched = ended_call()
    refetched["artifact"]["presignedMonoUrl"] = "https://x.s3.amazonaws.com/a.wav?X-Amz-Signature=other"
    assert event_key(api_call_message(refetched)) == event_key(first)
    newer = ended_call(updatedAt="2026-05-06T00:52:00.000Z", cost=0.031)
    assert event_key(api_call_message(newer)) != event_key(first)
    other_call = ended_call(id="00000000-0000-4000-8000-0000000000aa")
    assert event_key(api_call_message(other_call)) != event_key(first)
