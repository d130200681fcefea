"""ingest.ops.erase and the worker's tombstone check against real Postgres: what an erasure removes,
what it keeps, and what a later delivery of an erased call leaves."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from support.apply import apply_bodies
from support.fixtures import load_call
from support.ops_cli import event_of, store_pending
from support.rows import PRIVACY, stored_messages, usage

from ingest.apply import CALL_ERASED, apply_event, apply_stored_event
from ingest.ops import erase
from ingest.pseudonym import pseudonym
from ingest.settings import Settings
from ingest.vocabulary import EventState

BOOKING = "44447e38-9fd3-4025-bc93-2132b1b437d0"  # client-harbourside-dental
VOICEMAIL = "29e81e6b-26b0-4097-8509-32a0d88f1a97"  # client-kiwi-solar
PHYSIO = "e0b9afa2-56ad-4ccd-8dec-38a1666fb01b"  # client-summit-physio, another caller
CALLER = "+64211234567"  # inbound_booking's caller
FORMATS = ("+64 21 123 4567", "021 123 4567", "0211234567")
KEY = Settings.from_env().require_pseudonym_key()
Conn = psycopg.Connection[Any]
KEPT_COLUMNS = (
    "started_at_utc, ended_at_utc, started_at_nz, duration_seconds, duration_minutes, cost_total, client_id,"
    " assistant_id, business_number, type, ended_reason, call_outcome, sentiment, metadata -> 'costs'"
)


def voicemail_of_the_same_caller() -> list[bytes]:
    """The voicemail call (another client) as if the booking's caller had been called."""
    return [raw.replace(b"+64215550147", CALLER.encode()) for raw in load_call("voicemail")]


@pytest.fixture
def recorded(db: Conn) -> Conn:
    apply_bodies(db, load_call("inbound_booking"))
    apply_bodies(db, voicemail_of_the_same_caller())
    apply_bodies(db, load_call("assistant_request_first"))
    return db


def run_erasure(conn: Conn, **how: Any) -> erase.Plan:
    with conn.transaction():
        plan = erase.find(conn, **how)
        erase.erase(conn, plan, KEY)
    return plan


def analytics(conn: Conn, client: str) -> tuple[Any, ...]:
    row = conn.execute("SELECT * FROM get_client_call_analytics(%s, '2026-01-01', '2026-12-31')", (client,)).fetchone()
    assert row is not None
    return tuple(row)


def test_any_notation_finds_the_same_sessions(recorded: Conn) -> None:
    """A number given international, spaced or local finds the caller's two sessions, and only theirs."""
    found = []
    for given in FORMATS:
        numbers = erase.customer_numbers(given, "NZ", KEY)
        assert numbers == (CALLER, pseudonym(CALLER, KEY))
        found.append(sorted(t.call_id or "" for t in erase.find(recorded, numbers=numbers).targets))
    assert found == [sorted([BOOKING, VOICEMAIL])] * 3
    narrowed = erase.find(recorded, numbers=erase.customer_numbers(FORMATS[1], "NZ", KEY), client="client-kiwi-solar")
    assert [t.call_id for t in narrowed.targets] == [VOICEMAIL]
    with pytest.raises(ValueError, match="not a valid phone number"):
        erase.customer_numbers("12", "NZ", KEY)


def test_erasure_removes_personal_data_and_keeps_billing(recorded: Conn) -> None:
    """Transcript, summary, originals, keywords, links and numbers go; usage and the counts of analytics stay."""
    usage_before = usage(recorded)
    kept = recorded.execute(f"SELECT {KEPT_COLUMNS} FROM user_sessions WHERE call_id = %s", (BOOKING,)).fetchone()
    before = analytics(recorded, "client-harbourside-dental")
    events = recorded.execute("SELECT count(*) FROM call_events WHERE call_id = %s", (BOOKING,)).fetchone()
    plan = run_erasure(recorded, numbers=erase.customer_numbers(FORMATS[0], "NZ", KEY))
    assert (plan.sessions, plan.per_client()["client-harbourside-dental"]) == (2, (1, events[0] if events else 0))

    row = recorded.execute(
        "SELECT call_transcript, call_summary, call_transcript_original, call_summary_original, keywords, user_id,"
        " customer_number, metadata, server_messages FROM user_sessions WHERE call_id = %s",
        (BOOKING,),
    ).fetchone()
    assert row is not None
    assert row[:6] == (None,) * 6
    assert row[6] == pseudonym(CALLER, KEY)
    assert set(row[7]) <= erase.KEPT_METADATA
    assert "recordings" not in row[7]
    assert all(set(entry) <= erase.KEPT_TIMELINE for entry in row[8]["timeline"])
    assert (
        recorded.execute(f"SELECT {KEPT_COLUMNS} FROM user_sessions WHERE call_id = %s", (BOOKING,)).fetchone() == kept
    )
    assert recorded.execute(
        "SELECT count(*) FROM call_events WHERE call_id = ANY(%s)", ([BOOKING, VOICEMAIL],)
    ).fetchone() == (0,)
    assert recorded.execute("SELECT count(*) FROM call_events WHERE call_id = %s", (PHYSIO,)).fetchone() != (0,)
    tombstones = recorded.execute("SELECT call_id::text FROM erased_calls ORDER BY 1").fetchall()
    assert tombstones == sorted([(BOOKING,), (VOICEMAIL,)])

    assert usage(recorded) == usage_before
    after = analytics(recorded, "client-harbourside-dental")
    assert after[:6] == before[:6]  # calls, minutes, cost, average, sentiments, outcomes
    assert before[6]
    assert after[6] == []  # the keywords came from the transcript: gone with it


def test_a_second_erasure_finds_the_rows_by_their_pseudonym(recorded: Conn) -> None:
    """Rows already erased hold the pseudonym: erasing the number again finds them, and changes nothing."""
    numbers = erase.customer_numbers(FORMATS[2], "NZ", KEY)
    run_erasure(recorded, numbers=numbers)
    first = recorded.execute("SELECT * FROM user_sessions ORDER BY id").fetchall()
    again = run_erasure(recorded, numbers=numbers)
    assert sorted(t.call_id or "" for t in again.targets) == sorted([BOOKING, VOICEMAIL])
    assert again.events == 0
    assert recorded.execute("SELECT * FROM user_sessions ORDER BY id").fetchall() == first


def test_a_replay_of_an_erased_call_is_ignored_and_keeps_nothing(recorded: Conn) -> None:
    """Every event of the erased call, delivered again, is recorded ignored with the reason and a bare message."""
    run_erasure(recorded, call=BOOKING)
    erased_row = recorded.execute("SELECT * FROM user_sessions WHERE call_id = %s", (BOOKING,)).fetchone()
    bodies = load_call("inbound_booking")
    assert apply_bodies(recorded, bodies) == [EventState.IGNORED] * len(bodies)
    assert apply_bodies(recorded, bodies) == [None] * len(bodies)  # duplicates of ignored events
    rows = recorded.execute(
        "SELECT state, last_error, final_transcript, status, event_at FROM call_events WHERE call_id = %s", (BOOKING,)
    ).fetchall()
    assert len(rows) == len(bodies)
    assert set(rows) == {("ignored", CALL_ERASED, False, None, None)}
    for message in stored_messages(recorded, "call_id = %s", (BOOKING,)):
        assert message == {"type": message["type"], "erased": True}
    assert recorded.execute("SELECT * FROM user_sessions WHERE call_id = %s", (BOOKING,)).fetchone() == erased_row


def test_an_event_kept_pending_for_an_erased_call_loses_its_message(db: Conn) -> None:
    """An event the endpoint kept while Redis was down, applied after the erasure, keeps only its type."""
    bodies = load_call("inbound_booking")
    apply_bodies(db, bodies[:-1])
    late = store_pending(db, bodies[-1])
    run_erasure(db, call=BOOKING)
    assert db.execute("SELECT count(*) FROM call_events WHERE call_id = %s", (BOOKING,)).fetchone() == (0,)
    again = store_pending(db, bodies[-1])  # delivered again after the erasure, kept while Redis is down
    assert again != late
    outcome = apply_stored_event(db, again, PRIVACY)
    assert outcome.state == EventState.IGNORED
    assert stored_messages(db, "id = %s", (again,)) == [{"type": event_of(bodies[-1]).kind, "erased": True}]


def test_erasing_a_call_with_no_row_removes_its_events(db: Conn) -> None:
    """A call whose events made no row yet (kept pending) is found by its id, and its events go."""
    for raw in load_call("inbound_booking")[:2]:
        store_pending(db, raw)
    plan = run_erasure(db, call=BOOKING)
    assert (plan.sessions, plan.events) == (0, 2)
    assert db.execute("SELECT count(*) FROM call_events").fetchone() == (0,)
    assert db.execute("SELECT call_id::text FROM erased_calls").fetchall() == [(BOOKING,)]


def test_an_event_applied_during_an_erasure_waits_and_is_then_ignored(recorded: Conn, db_url: str) -> None:
    """The worker's lookup waits for an erasure of its call in progress, then sees the tombstone."""
    late = event_of(load_call("inbound_booking")[-1])
    result: list[EventState | None] = []
    with psycopg.connect(db_url, autocommit=True) as eraser, psycopg.connect(db_url, autocommit=True) as worker:
        with eraser.transaction():
            erase.erase(eraser, erase.find(eraser, call=BOOKING), KEY)
            thread = threading.Thread(target=lambda: result.append(apply_event(worker, late, PRIVACY)))
            thread.start()
            time.sleep(0.5)
            assert thread.is_alive()  # waiting on the erasure's lock
        thread.join(10)
    assert result == [EventState.IGNORED]
