"""Key rotation and missing keys: everything ends under the new key, nothing is lost or left."""

from __future__ import annotations

import os
import threading
from typing import Any

import orjson
import psycopg
import pytest
from psycopg_pool import ConnectionPool
from support.apply import RECEIVED_AT_MS, apply_bodies, queued_body
from support.fixtures import fixture_path, load_call
from support.rows import ENVELOPE, stored_messages

from ingest import queries
from ingest.apply import apply_event
from ingest.body import loads_storable
from ingest.cli import main
from ingest.event import Event
from ingest.ops import keys
from ingest.privacy import Privacy
from ingest.sealing import Keyring, generate_key
from ingest.vocabulary import EventState
from worker.sweeper import sweep_once

Conn = psycopg.Connection[Any]
A, B, C = generate_key(), generate_key(), generate_key()
SUITE_KEYS = os.environ["INGEST_ENCRYPTION_KEYS"]
EXPECTED = orjson.loads(fixture_path("expected_rows.json").read_bytes())


def privacy(raw: str, *, redact: bool = True) -> Privacy:
    return Privacy(phone_region="NZ", redact=redact, keyring=Keyring.parse(raw))


def usage(conn: Conn) -> dict[tuple[str, str | None], int]:
    return {(u.table, u.key_id): u.count for u in keys.key_usage(conn)}


def kid(raw: str) -> str:
    return raw.split(":")[0]


def test_rotation_moves_everything_to_the_new_key_while_deliveries_flow(db: Conn, db_url: str) -> None:
    """A → A,B → rotate (events applied meanwhile) → B alone opens every value and nothing is left under A."""
    legacy, under_a, during = load_call("long_call"), load_call("voicemail"), load_call("inbound_booking")
    plain = Privacy(phone_region="NZ", redact=False)  # rows written before sealing and redaction existed
    for body in legacy:
        apply_event(db, Event.from_body(loads_storable(queued_body(body)), RECEIVED_AT_MS), plain)
    for body in under_a:
        apply_event(db, Event.from_body(loads_storable(queued_body(body)), RECEIVED_AT_MS), privacy(A))
    before = usage(db)
    assert before[("call_events", None)] == len(legacy)
    assert before[("call_events", kid(A))] == len(under_a)

    both = privacy(f"{B},{A}")
    delivered = threading.Event()

    def deliver() -> None:  # the live worker, sealing under B while the rotation runs
        with psycopg.connect(db_url, autocommit=True) as conn:
            for body in during:
                apply_event(conn, Event.from_body(loads_storable(queued_body(body)), RECEIVED_AT_MS), both)
        delivered.set()

    worker = threading.Thread(target=deliver)
    worker.start()
    with psycopg.connect(db_url, autocommit=True) as conn:
        counts = keys.rotate(conn, both, batch=7)
        worker.join()
        again = keys.rotate(conn, both, batch=7)  # resumable: a second run finds nothing left
    assert delivered.is_set()
    assert counts.events == len(legacy) + len(under_a)
    assert counts.sessions == 2  # the legacy call (redacted now, its original sealed); the voicemail's original
    assert counts.unopened == again.unopened == 0
    assert (again.events, again.sessions) == (0, 0)

    after = usage(db)
    assert set(after) == {("call_events", kid(B)), ("user_sessions", kid(B))}
    assert after[("call_events", kid(B))] == len(legacy) + len(under_a) + len(during)
    only_b = privacy(B)
    opened = [
        only_b.open_message(m, b, v)
        for m, b, v in db.execute(f"SELECT message, body, {ENVELOPE} FROM call_events ORDER BY id")
    ]
    assert [m["type"] for m in opened] == [orjson.loads(b)["message"]["type"] for b in legacy + under_a + during]
    # The legacy call now reads as the live path writes it: redacted, its original sealed under B.
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = {str(r["call_id"]): only_b.open_row(r) for r in cur.execute("SELECT * FROM user_sessions")}
    assert len(rows) == 3
    legacy_id = orjson.loads(legacy[0])["message"]["call"]["id"]
    for column in ("call_transcript", "call_transcript_original", "call_summary", "call_summary_original"):
        assert rows[legacy_id][column] == EXPECTED["rows"][legacy_id][column]
    assert "[PHONE]" in rows[legacy_id]["call_transcript"]


def test_a_body_under_a_missing_key_waits_and_is_applied_once_the_key_is_given(db: Conn, db_url: str) -> None:
    """An event sealed under a key this process lacks stays pending with an error naming it, then applies."""
    [report] = [b for b in load_call("voicemail") if orjson.loads(b)["message"]["type"] == "end-of-call-report"]
    event = Event.from_body(loads_storable(queued_body(report)), RECEIVED_AT_MS)
    db.execute(queries.STORE_PENDING_EVENT, event.row(EventState.PENDING, privacy(C)))
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        sweep_once(pool, privacy(A), grace=0, unqueued_grace=0)
        state, error = db.execute("SELECT state, last_error FROM call_events").fetchone()
        assert state == "pending"
        assert f"sealed under key {kid(C)!r}" in error
        assert "voicemail" not in error.lower()
        sweep_once(pool, privacy(f"{A},{C}"), grace=0, unqueued_grace=0)
    assert db.execute("SELECT state, last_error FROM call_events").fetchone() == ("applied", None)
    assert db.execute("SELECT count(*) FROM user_sessions").fetchone() == (1,)


def test_rotate_command_reports_progress_counts_and_audits(
    db: Conn, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ingest keys rotate` seals what is left, says how much, writes one audit row; `status` shows the keys."""
    apply_bodies(db, load_call("voicemail"))  # under the suite's key
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("INGEST_ENCRYPTION_KEYS", f"{B},{SUITE_KEYS}")
    assert main(["keys", "rotate", "--json"]) == 0
    result = orjson.loads(capsys.readouterr().out)
    assert result == {"key_id": kid(B), "events": len(load_call("voicemail")), "sessions": 1, "unopened": 0}
    assert main(["keys", "status"]) == 0
    out = capsys.readouterr().out
    assert f"configured: {kid(B)}" in out
    assert "call_events" in out
    assert "NOT CONFIGURED" not in out
    assert db.execute("SELECT action, target_count FROM data_access_log").fetchall() == [
        ("keys_rotate", len(load_call("voicemail")) + 1)
    ]
    kept = db.execute(f"SELECT message, body, {ENVELOPE} FROM call_events ORDER BY id").fetchall()
    expected = [orjson.loads(queued_body(b))["message"] for b in load_call("voicemail")]
    assert [privacy(B).open_message(m, b, v) for m, b, v in kept] == expected


def test_generate_prints_a_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    """`ingest keys generate` prints one kid:base64 line that INGEST_ENCRYPTION_KEYS accepts."""
    assert main(["keys", "generate"]) == 0
    line = capsys.readouterr().out.strip()
    assert Keyring.parse(line).current == line.split(":")[0]


def test_rotation_keeps_everything_but_how_a_body_is_kept(db: Conn) -> None:
    """Rotation changes only the seal: received time, state, dedupe key and the opened message stay."""
    apply_bodies(db, load_call("voicemail"))
    columns = "id, received_at, state, dedupe_key, final_transcript, status, event_at"
    before = db.execute(f"SELECT {columns} FROM call_events ORDER BY id").fetchall()
    messages = stored_messages(db)
    rotated = keys.rotate(db, privacy(f"{B},{SUITE_KEYS}"))
    assert rotated.events == len(before)
    assert db.execute(f"SELECT {columns} FROM call_events ORDER BY id").fetchall() == before
    assert [
        privacy(B).open_message(m, b, v)
        for m, b, v in db.execute(f"SELECT message, body, {ENVELOPE} FROM call_events ORDER BY id")
    ] == messages
