"""The worker's code path against real Postgres: record, map, merge — order and duplicates aside."""

from __future__ import annotations

import copy
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from support.apply import PRIVACY, RECEIVED_AT_MS, apply_bodies
from support.fixtures import all_calls, fixture_path, iter_bodies, load_call, load_event
from support.rows import event_states, session_rows, stored_messages, usage

from ingest.apply import apply_event
from ingest.errors import Unmappable
from ingest.event import Event
from ingest.handlers import HANDLERS
from ingest.mapping.assistant import derived_id
from ingest.vocabulary import AssistantKind, EventState, MessageType

EXPECTED = orjson.loads(fixture_path("expected_rows.json").read_bytes())
BOOKING = "44447e38-9fd3-4025-bc93-2132b1b437d0"


def kind(body: bytes) -> str:
    return str(orjson.loads(body)["message"]["type"])


def test_every_message_type_has_a_handler() -> None:
    """The dispatch table covers every type in the vocabulary."""
    missing = {t.value for t in MessageType} - set(HANDLERS)
    assert missing == set()


def test_recorded_calls_give_the_expected_rows(db: psycopg.Connection[Any]) -> None:
    """Every recorded call, applied in the order Vapi sent it, gives its expected row and usage."""
    for path in all_calls():
        apply_bodies(db, iter_bodies(path))
    assert session_rows(db) == EXPECTED["rows"]
    assert [list(u) for u in usage(db)] == EXPECTED["usage"]
    assert event_states(db) == {"applied": sum(len(list(iter_bodies(p))) for p in all_calls())}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_and_duplicated_calls_give_the_same_rows(db: psycopg.Connection[Any], seed: int) -> None:
    """All calls' events interleaved in a random order, a third of them twice, give the same rows and usage."""
    bodies = [body for path in all_calls() for body in iter_bodies(path)]
    rng = random.Random(seed)
    stream = bodies + rng.sample(bodies, len(bodies) // 3)
    rng.shuffle(stream)
    apply_bodies(db, stream)
    assert session_rows(db) == EXPECTED["rows"]
    assert [list(u) for u in usage(db)] == EXPECTED["usage"]


def test_booking_row_field_by_field(db: psycopg.Connection[Any]) -> None:
    """The inbound booking call: report times, cost, analysis from structured data, E.164 numbers."""
    apply_bodies(db, load_call("inbound_booking"))
    row = session_rows(db)[BOOKING]
    assert row["assistant_id"] == "359ecb8e-2b18-470f-b38b-2b3e375752bb"
    assert row["type"] == "inbound"
    assert row["source"] == "vapi"
    assert (row["business_number"], row["customer_number"]) == ("+6493001122", "+64211234567")
    assert row["client_id"] == "client-harbourside-dental"
    assert row["started_at_utc"] == "2026-03-10T21:14:05.334000+00:00"
    assert row["started_at_nz"] == "2026-03-11T10:14:05.334000+00:00"  # NZDT, UTC+13
    assert row["ended_reason"] == "customer-ended-call"
    assert (row["duration_seconds"], row["duration_minutes"]) == ("62.900", "1.05")
    assert row["cost_total"] == "0.0986"
    assert (row["sentiment"], row["call_outcome"]) == ("positive", "appointment_booked")
    assert row["keywords"] == ["check-up", "clean", "sore tooth", "appointment", "thursday"]
    assert row["call_summary"].startswith("Hemi Walker called to book")
    assert row["call_transcript"].startswith("AI: ")
    metadata = row["metadata"]
    assert metadata["cost_source"] == "reported"
    assert {"costs", "cost_breakdown", "analysis", "recordings", "performance"} <= set(metadata)
    assert not any("presigned" in key or "Signature" in url for key, url in metadata["recordings"].items())
    statuses = [e.get("status") for e in row["server_messages"]["timeline"] if e["type"] == "status-update"]
    assert statuses == ["queued", "ringing", "in-progress", "ended"]


def test_late_in_progress_never_undoes_an_end(db: psycopg.Connection[Any]) -> None:
    """An in-progress status applied after the report leaves end, reason and duration as the report set them."""
    bodies = load_call("inbound_booking")
    in_progress = [
        b for b in bodies if kind(b) == "status-update" and orjson.loads(b)["message"]["status"] == "in-progress"
    ]
    apply_bodies(db, [b for b in bodies if b not in in_progress])
    before = session_rows(db)[BOOKING]
    apply_bodies(db, in_progress)
    after = session_rows(db)[BOOKING]
    for column in ("ended_at_utc", "ended_reason", "duration_seconds", "cost_total", "started_at_utc"):
        assert after[column] == before[column]


def test_duplicate_delivery_is_a_no_op(db: psycopg.Connection[Any]) -> None:
    """The same event delivered twice is applied once; the second returns None."""
    body = load_call("voicemail")[0]
    assert apply_bodies(db, [body, body]) == [EventState.APPLIED, None]
    assert db.execute("SELECT count(*), max(attempts) FROM call_events").fetchone() == (1, 1)


def test_presigned_urls_do_not_make_a_new_event(db: psycopg.Connection[Any]) -> None:
    """A retried report whose presigned URLs changed is recognised as the same event."""
    report = next(b for b in load_call("inbound_booking") if kind(b) == "end-of-call-report")
    retried = report.replace(b"X-Amz-Signature=", b"X-Amz-Signature=ffff")
    assert retried != report
    assert apply_bodies(db, [report, retried])[1] is None


def without_inline_assistant(raw: bytes) -> bytes:
    body = orjson.loads(raw)
    body["message"].pop("assistant", None)
    return orjson.dumps(body)


def test_events_before_the_assistant_is_known_wait_then_apply(db: psycopg.Connection[Any]) -> None:
    """Events naming no assistant at all wait in call_events and are applied when a later event names it."""
    bodies = load_call("assistant_request_first")
    first_known = next(i for i, b in enumerate(bodies) if b'"assistantId":"afe02bab' in b)
    bodies = [without_inline_assistant(b) for b in bodies[:first_known]] + bodies[first_known:]
    states = apply_bodies(db, bodies[:first_known])
    assert set(states) == {EventState.WAITING}
    assert session_rows(db) == {}
    apply_bodies(db, bodies[first_known:])
    assert event_states(db) == {"applied": len(bodies)}
    row = session_rows(db)["e0b9afa2-56ad-4ccd-8dec-38a1666fb01b"]
    assert row["server_messages"]["timeline"][0]["type"] == "assistant-request"


TRANSIENT_CALLS = ("00000000-0000-4000-8000-0000000000a1", "00000000-0000-4000-8000-0000000000a2")
ORG = "a1984baa-e6d2-4596-9058-a4648bb74a95"


def transient_call(call_id: str, *, beside: bool = False) -> list[bytes]:
    """A small call run by an inline assistant without an id; ``beside``: 2024's ``call`` beside ``message``."""
    call = {"id": call_id, "orgId": ORG, "type": "inboundPhoneCall", "metadata": {"client_id": "client-transient"}}
    assistant = {"name": "Evening reception", "model": {"provider": "openai", "model": "gpt-4o"}}
    messages = [
        {"type": "status-update", "status": "in-progress", "timestamp": 1790000000000},
        {"type": "status-update", "status": "ended", "endedReason": "customer-ended-call", "timestamp": 1790000030000},
    ]
    bodies = []
    for message in messages:
        message["assistant"] = assistant
        body = {"message": message, "call": call} if beside else {"message": {**message, "call": call}}
        bodies.append(orjson.dumps(body))
    return bodies


def test_transient_assistant_calls_land_under_one_derived_id(db: psycopg.Connection[Any]) -> None:
    """Calls by the same inline assistant land (no waiting), share one id, and its placeholder has the name."""
    derived = derived_id(AssistantKind.TRANSIENT, ORG, "Evening reception")
    for call_id in TRANSIENT_CALLS:
        assert set(apply_bodies(db, transient_call(call_id))) == {EventState.APPLIED}
    rows = session_rows(db)
    assert {rows[c]["assistant_id"] for c in TRANSIENT_CALLS} == {derived}
    assert rows[TRANSIENT_CALLS[0]]["metadata"]["assistants"] == {
        derived: {"kind": "transient", "name": "Evening reception"}
    }
    assert rows[TRANSIENT_CALLS[0]]["duration_seconds"] == "30.000"
    assert db.execute("SELECT name FROM assistants WHERE id = %s", (derived,)).fetchone() == ("Evening reception",)


def test_call_beside_the_message_is_read(db: psycopg.Connection[Any]) -> None:
    """A 2024 body with ``call`` beside ``message`` maps like one with it inside."""
    apply_bodies(db, transient_call(TRANSIENT_CALLS[0], beside=True))
    apply_bodies(db, transient_call(TRANSIENT_CALLS[1]))
    rows = session_rows(db)
    first, second = rows[TRANSIENT_CALLS[0]], rows[TRANSIENT_CALLS[1]]
    for column in ("assistant_id", "client_id", "ended_at_utc", "duration_seconds", "type"):
        assert first[column] == second[column]


def test_web_call_has_no_phone_data(db: psycopg.Connection[Any]) -> None:
    """A web call stores no numbers and no phone number id, and derives sentiment and keywords itself."""
    apply_bodies(db, load_call("web_call_support"))
    row = session_rows(db)["e71df43f-5d20-421a-9dea-04629ce1a27b"]
    assert (row["type"], row["business_number"], row["customer_number"], row["phone_number_id"]) == (
        "web",
        None,
        None,
        None,
    )
    assert row["sentiment"] in {"positive", "neutral", "negative"}
    assert row["metadata"]["provenance"]["sentiment"] == "report"
    assert 0 < len(row["keywords"]) <= 10


def test_transcript_is_rebuilt_from_finals_when_no_report_comes(db: psycopg.Connection[Any]) -> None:
    """With only final transcripts and status updates, the transcript is built from the finals, in order."""
    bodies = load_call("no_report_finals_only")
    apply_bodies(db, list(reversed(bodies)))
    row = session_rows(db)["1f7e3495-e965-493b-a783-65eadfe2fc96"]
    assert row["metadata"]["provenance"]["call_transcript"] == "transcripts"
    finals = [orjson.loads(b)["message"] for b in bodies if kind(b).startswith("transcript")]
    finals.sort(key=lambda m: m["timestamp"])
    assert row["call_transcript"].splitlines()[0].endswith(finals[0]["transcript"])
    assert len(row["call_transcript"].splitlines()) == len(finals)


def test_nul_byte_in_a_transcript_is_stored(db: psycopg.Connection[Any]) -> None:
    """A final transcript containing U+0000 is recorded and applied, with U+FFFD in its place."""
    assert apply_bodies(db, [load_event("transcript_nul_byte.json")]) == [EventState.APPLIED]
    [stored] = stored_messages(db)
    assert "\ufffd" in stored["transcript"]
    assert "\x00" not in stored["transcript"]


def test_session_only_stream(db: psycopg.Connection[Any]) -> None:
    """Session and chat events with no call make one row keyed by the session id."""
    apply_bodies(db, load_call("session_chat"))
    rows = session_rows(db)
    assert list(rows) == ["sess_tui_7YqK2mWc9LpR4xVb"]
    row = rows["sess_tui_7YqK2mWc9LpR4xVb"]
    assert (row["call_id"], row["type"], row["client_id"]) == (None, "chat", "client-tui-broadband")
    assert row["cost_total"] == "0.0114"  # the session's final cost, not the first event's 0
    assert "1b7936a3-1502-491f-9b0b-80b2e2a055f5" in row["metadata"]["chats"]


def with_cost(raw: bytes, cost: object) -> bytes:
    """The body with its report's or session's ``cost`` replaced, and no breakdown total to fall back on."""
    body = orjson.loads(raw)
    message = body["message"]
    if message["type"] == "end-of-call-report":
        message["cost"] = cost
        message.pop("costBreakdown", None)
        message["call"].pop("costBreakdown", None)
    elif "session" in message:
        message["session"]["cost"] = cost
    return orjson.dumps(body)


def test_report_with_a_nan_cost_applies_everything_else(db: psycopg.Connection[Any]) -> None:
    """A report whose cost is "NaN" is applied: no cost_total, the raw cost in metadata, every other field as usual."""
    states = apply_bodies(db, [with_cost(raw, "NaN") for raw in load_call("inbound_booking")])
    assert set(states) == {EventState.APPLIED}
    row = session_rows(db)[BOOKING]
    expected = copy.deepcopy(EXPECTED["rows"][BOOKING])
    assert (row["cost_total"], row["metadata"]["raw_cost"]) == (None, "NaN")
    assert {k: v for k, v in row.items() if k not in ("cost_total", "metadata")} == {
        k: v for k, v in expected.items() if k not in ("cost_total", "metadata")
    }
    for metadata in (row["metadata"], expected["metadata"]):
        for key in ("raw_cost", "cost_source", "cost_breakdown"):
            metadata.pop(key, None)
        metadata["provenance"].pop("cost_total", None)
    assert row["metadata"] == expected["metadata"]


def test_session_with_a_nan_cost_applies_everything_else(db: psycopg.Connection[Any]) -> None:
    """Session events whose cost is "NaN" are applied, not failed: the row is built, the cost kept raw."""
    states = apply_bodies(db, [with_cost(raw, "NaN") for raw in load_call("session_chat")])
    assert set(states) == {EventState.APPLIED}
    row = session_rows(db)["sess_tui_7YqK2mWc9LpR4xVb"]
    assert (row["type"], row["client_id"], row["cost_total"]) == ("chat", "client-tui-broadband", None)
    assert row["metadata"]["raw_cost"] == "NaN"
    assert "1b7936a3-1502-491f-9b0b-80b2e2a055f5" in row["metadata"]["chats"]


def test_unknown_type_is_recorded_and_ignored(db: psycopg.Connection[Any]) -> None:
    """A type we do not know is kept in call_events as ignored and touches no row."""
    assert apply_bodies(db, [load_event("unknown_type.json"), load_event("assistant-started.json")]) == [
        EventState.IGNORED,
        EventState.IGNORED,
    ]
    assert session_rows(db) == {}
    assert event_states(db) == {"ignored": 2}


def test_handoff_request_is_on_its_call_s_timeline(db: psycopg.Connection[Any]) -> None:
    """A handoff-destination-request is applied, not ignored: its call's row records it on the timeline."""
    assert apply_bodies(db, [load_event("handoff-destination-request.json")]) == [EventState.APPLIED]
    row = session_rows(db)["e4d514f4-cc05-4037-bf43-61de204d3589"]
    assert [entry["type"] for entry in row["server_messages"]["timeline"]] == ["handoff-destination-request"]


def test_non_uuid_call_id_is_unmappable(db: psycopg.Connection[Any]) -> None:
    """A call id that is not a UUID can never map: a permanent error, and nothing is half-written."""
    body = orjson.loads(load_event("status_update_bad_call_id.json"))
    with pytest.raises(Unmappable, match="not a UUID"):
        apply_event(db, Event.from_body(body, RECEIVED_AT_MS), PRIVACY)
    assert db.execute("SELECT count(*) FROM call_events").fetchone() == (0,)


def test_usage_counts_once_however_often_a_call_is_replayed(db: psycopg.Connection[Any], tmp_path: Path) -> None:
    """Replaying a whole call three times leaves its client's usage at one call."""
    for _ in range(3):
        apply_bodies(db, load_call("long_call"))
    assert usage(db) == [("client-coastal-realty", "2026-10-01", 1, "2.08", "0.1896")]


def test_rate_plan_prices_a_call_without_a_reported_cost(db: psycopg.Connection[Any]) -> None:
    """A call that ends with no report is priced from its client's rate, then re-priced by a report's cost."""
    db.execute(
        "INSERT INTO client_subscriptions (client_id, plan, rate_per_minute)"
        " VALUES ('client-kauri-vets', 'pay-as-you-go', 0.5)"
    )
    call_id = "1f7e3495-e965-493b-a783-65eadfe2fc96"
    apply_bodies(db, load_call("no_report_finals_only"))
    row = session_rows(db)[call_id]
    assert row["cost_total"] == "0.3520"  # 42.237 s at 0.50 per minute
    assert row["metadata"]["cost_source"] == "rate_plan"
    late_report = {"message": {"type": "end-of-call-report", "cost": 0.0871, "call": {"id": call_id}}}
    apply_bodies(db, [orjson.dumps(late_report)])
    row = session_rows(db)[call_id]
    assert (row["cost_total"], row["metadata"]["cost_source"]) == ("0.0871", "reported")
    assert usage(db) == [("client-kauri-vets", "2026-02-01", 1, "0.70", "0.0871")]


ERA_CALLS = sorted(p for p in all_calls() if p.name.startswith("era_"))


@pytest.mark.parametrize("path", ERA_CALLS, ids=lambda path: path.stem)
def test_every_era_call_lands_ended_costed_and_counted_once(db: psycopg.Connection[Any], path: Path) -> None:
    """Each payload era, shuffled with repeats, ends with its row: ended, costed, one usage row of one call."""
    bodies = list(iter_bodies(path))
    call_id = next(str(uuid) for uuid in EXPECTED["rows"] if uuid in b"".join(bodies).decode())
    expected = EXPECTED["rows"][call_id]
    client = expected["client_id"]
    db.execute(
        "INSERT INTO client_subscriptions (client_id, plan, rate_per_minute) VALUES (%s, 'pay-as-you-go', 0.30)",
        (client,),
    )
    rng = random.Random(path.name)
    stream = bodies + rng.sample(bodies, len(bodies) // 2)
    rng.shuffle(stream)
    apply_bodies(db, stream)
    row = session_rows(db)[call_id]
    assert row["ended_at_utc"] is not None
    assert row["duration_seconds"] is not None
    assert row["cost_total"] is not None
    for column in ("assistant_id", "started_at_utc", "ended_at_utc", "duration_seconds", "call_outcome", "type"):
        assert row[column] == expected[column], column
    [(usage_client, _, calls, _, cost)] = usage(db)
    assert (usage_client, calls, cost) == (client, 1, str(Decimal(row["cost_total"]).quantize(Decimal("0.0001"))))


def test_2024_report_without_times_is_priced_from_the_rate_plan(db: psycopg.Connection[Any]) -> None:
    """A 2024 call known only from its report ends at its messages' end and is priced by the rate plan."""
    db.execute(
        "INSERT INTO client_subscriptions (client_id, plan, rate_per_minute)"
        " VALUES ('client-era-kereru-accounting', 'pay-as-you-go', 0.30)"
    )
    apply_bodies(db, load_call("era_2024_report"))
    row = session_rows(db)["d6e14447-3989-4553-9fbd-3823c6a328b7"]
    assert (row["started_at_utc"], row["ended_at_utc"]) == (
        "2024-11-14T00:28:53.241000+00:00",
        "2024-11-14T00:29:20.161000+00:00",
    )
    assert row["metadata"]["provenance"]["ended_at_utc"] == "messages"
    assert (row["duration_seconds"], row["cost_total"], row["metadata"]["cost_source"]) == (
        "26.920",
        "0.1346",
        "rate_plan",
    )
    assert usage(db) == [("client-era-kereru-accounting", "2024-11-01", 1, "0.45", "0.1346")]


def test_answered_assistant_wins_in_any_order(db: psycopg.Connection[Any]) -> None:
    """The assistant this service answered names the call, even when every later message lacks it."""
    bodies = load_call("era_transient_assistant_request")
    apply_bodies(db, list(reversed(bodies)))
    row = session_rows(db)["1d0ae8ee-f6b3-40a7-a335-9d61a49f2c90"]
    assert row["assistant_id"] == "18003048-2fe5-4a45-9299-d06afbf2ef98"
    assert row["metadata"]["assistants"]["18003048-2fe5-4a45-9299-d06afbf2ef98"] == {"kind": "answered"}


@pytest.mark.parametrize(
    ("started", "ended"),
    [
        ("0001-01-01T00:00:00.000Z", "0001-01-01T00:10:00.000Z"),
        ("9999-01-01T00:00:00.000Z", "9999-01-01T00:10:00.000Z"),
        ("2026-03-10T21:15:08.234Z", "2026-03-10T21:14:05.334Z"),
    ],
    ids=["year-0001", "year-9999", "end-before-start"],
)
def test_implausible_times_give_no_duration_and_no_usage_in_their_month(
    db: psycopg.Connection[Any], started: str, ended: str
) -> None:
    """A report timed in year 0001 or 9999, or ending before it starts: no duration, usage only in real months."""
    call_id = "6f1c2b9e-8d4a-4e3b-9a7c-1d2e3f4a5b6c"
    message = {
        "type": "end-of-call-report",
        "startedAt": started,
        "endedAt": ended,
        "endedReason": "customer-ended-call",
        "call": {"id": call_id, "assistantId": "0b5e3c1a-2d4f-4a6b-8c9d-1e2f3a4b5c6d", "metadata": {"client_id": "c1"}},
    }
    assert apply_bodies(db, [orjson.dumps({"message": message})]) == [EventState.APPLIED]
    row = db.execute(
        "SELECT started_at_utc, duration_seconds, metadata -> 'implausible_times' FROM user_sessions"
    ).fetchone()
    assert row is not None
    assert row[0] is None
    assert row[1] is None
    assert set(row[2]) == {"startedAt", "endedAt"}
    months = [month.year for (month,) in db.execute("SELECT month FROM client_monthly_usage")]
    assert all(2015 <= year <= 2027 for year in months)
    minutes = [m for (m,) in db.execute("SELECT minutes FROM client_monthly_usage")]
    assert all(m >= 0 for m in minutes)
