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
from ingest.sealing import Keyring, Purpose, generate_key
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
    assert {key_id for _, key_id in after} == {kid(B)}  # nothing under A, nothing plain
    assert {table for table, _ in after} == {"call_events", "call_envelopes", "user_sessions"}
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
    """`ingest keys rotate` writes its one audit row before it starts (what is pending), seals
    what is left, says how much; `status` shows the keys."""
    apply_bodies(db, load_call("voicemail"))  # under the suite's key
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("INGEST_ENCRYPTION_KEYS", f"{B},{SUITE_KEYS}")
    events = len(load_call("voicemail"))
    rotate = keys.rotate
    audited_at_start: list[list[tuple[Any, ...]]] = []

    def rotate_seeing_the_log(conn: Conn, *args: Any, **kwargs: Any) -> keys.RotationCounts:
        audited_at_start.append(db.execute("SELECT action, target_count FROM data_access_log").fetchall())
        return rotate(conn, *args, **kwargs)

    monkeypatch.setattr(keys, "rotate", rotate_seeing_the_log)
    assert main(["keys", "rotate", "--json"]) == 0
    result = orjson.loads(capsys.readouterr().out)
    assert result == {"key_id": kid(B), "events": events, "sessions": 1, "unopened": 0}
    # The row was committed before the first page was sealed, and is the only one.
    assert audited_at_start == [[("keys_rotate", events + 1)]]
    [(target_count, details)] = db.execute(
        "SELECT target_count, details FROM data_access_log WHERE action = 'keys_rotate'"
    ).fetchall()
    assert target_count == events + 1
    assert details == {"key_id": kid(B), "batch": 500, "pending": {"events": events, "sessions": 1}}
    assert main(["keys", "status"]) == 0
    out = capsys.readouterr().out
    assert f"configured: {kid(B)}" in out
    assert "call_events" in out
    assert "NOT CONFIGURED" not in out
    kept = db.execute(f"SELECT message, body, {ENVELOPE} FROM call_events ORDER BY id").fetchall()
    expected = [orjson.loads(queued_body(b))["message"] for b in load_call("voicemail")]
    assert [privacy(B).open_message(m, b, v) for m, b, v in kept] == expected


def test_a_rotation_that_fails_is_still_recorded(db: Conn, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit row comes first: a rotation that stops half way has left its row."""
    apply_bodies(db, load_call("voicemail"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("INGEST_ENCRYPTION_KEYS", f"{B},{SUITE_KEYS}")

    def interrupted(*_args: Any, **_kwargs: Any) -> keys.RotationCounts:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(keys, "rotate", interrupted)
    assert main(["keys", "rotate", "--json"]) == 1  # "cannot reach a server"
    assert db.execute("SELECT action, target_count FROM data_access_log").fetchall() == [
        ("keys_rotate", len(load_call("voicemail")) + 1)
    ]


class RecordingBar:
    """Stands in for tqdm: the total the command gives it and every step it is advanced by."""

    made: list[RecordingBar] = []

    def __init__(self, *, total: int, **_options: Any) -> None:
        self.total = total
        self.steps: list[int] = []
        RecordingBar.made.append(self)

    def __enter__(self) -> RecordingBar:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        self.steps.append(n)


def test_the_progress_bar_total_is_what_advances_it(
    db: Conn, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bar's total counts the raw events and the session rows the rotation goes through:
    it ends at exactly 100 %, and the counts reported add up to it."""
    for name in ("voicemail", "era_sip_call", "long_call"):
        apply_bodies(db, load_call(name))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("INGEST_ENCRYPTION_KEYS", f"{B},{SUITE_KEYS}")
    monkeypatch.setattr("ingest.cli.keys.tqdm", RecordingBar)
    RecordingBar.made.clear()
    both = privacy(f"{B},{SUITE_KEYS}")
    todo = keys.pending(db, both)
    events = sum(len(load_call(name)) for name in ("voicemail", "era_sip_call", "long_call"))
    assert (todo.events, todo.sessions) == (events, 3)

    assert main(["keys", "rotate", "--batch", "7"]) == 0
    [bar] = RecordingBar.made
    assert bar.total == todo.total == events + 3
    assert sum(bar.steps) == bar.total
    out = capsys.readouterr().out
    assert f"{events} event(s), 3 session row(s)" in out
    assert keys.pending_events(db, both) == 0


def test_progress_of_the_api_adds_up_to_what_was_pending(db: Conn) -> None:
    """``rotate``'s progress steps sum to ``pending(...).total``, with envelopes, originals and raw numbers."""
    for name in ("era_sip_call", "long_call"):
        apply_bodies(db, load_call(name))
    both = privacy(f"{B},{SUITE_KEYS}")
    todo = keys.pending(db, both)
    steps: list[int] = []
    counts = keys.rotate(db, both, batch=5, progress=steps.append)
    assert sum(steps) == todo.total
    assert (counts.events, counts.sessions) == (todo.events, todo.sessions)


def raw_numbers(db: Conn) -> dict[str, str]:
    [(numbers,)] = db.execute(
        "SELECT metadata -> 'raw_numbers' FROM user_sessions WHERE metadata ? 'raw_numbers'"
    ).fetchall()
    assert isinstance(numbers, dict)
    return numbers


def test_rotation_reseals_the_raw_numbers_of_a_session(db: Conn, db_url: str) -> None:
    """metadata.raw_numbers (a SIP address kept beside the E.164 columns): A → A,B → rotate →
    under B alone, opens to the same number, and a second run finds nothing to do."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for body in load_call("era_sip_call"):
            apply_event(conn, Event.from_body(loads_storable(queued_body(body)), RECEIVED_AT_MS), privacy(A))
    under_a = raw_numbers(db)
    assert under_a
    assert all(value.startswith(f"v1:{kid(A)}:") for value in under_a.values())
    opened = {key: privacy(A).keyring.open_text(value, Purpose.RAW_NUMBER) for key, value in under_a.items()}
    assert opened == {"business_number": "sip:tuatara-taproom@sip.vapi.ai"}

    both = privacy(f"{B},{A}")
    assert keys.pending_sessions(db, both) == 1
    counts = keys.rotate(db, both)
    assert (counts.sessions, counts.unopened) == (1, 0)
    under_b = raw_numbers(db)
    assert all(value.startswith(f"v1:{kid(B)}:") for value in under_b.values())
    only_b = privacy(B)
    assert {key: only_b.keyring.open_text(value, Purpose.RAW_NUMBER) for key, value in under_b.items()} == opened
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        [row] = cur.execute("SELECT * FROM user_sessions").fetchall()
    assert only_b.open_row(row)["metadata"]["raw_numbers"] == opened

    again = keys.rotate(db, both)
    assert (again.events, again.sessions, again.unopened) == (0, 0, 0)
    assert raw_numbers(db) == under_b


def test_status_counts_every_kind_of_sealed_value_per_key(
    db: Conn, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Raw events, call envelopes, session originals and raw numbers under A show under A in
    `ingest keys status`; after a rotation to B, nothing is left under A (so A may go)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for body in load_call("era_sip_call") + load_call("long_call"):
            apply_event(conn, Event.from_body(loads_storable(queued_body(body)), RECEIVED_AT_MS), privacy(A))
    monkeypatch.setenv("DATABASE_URL", db_url)
    tables = {"call_events", "call_envelopes", "user_sessions", "user_sessions.raw_numbers"}

    def status() -> dict[str, dict[str | None, int]]:
        assert main(["keys", "status", "--json"]) == 0
        found: dict[str, dict[str | None, int]] = {}
        for use in orjson.loads(capsys.readouterr().out)["values"]:
            found.setdefault(use["table"], {})[use["key_id"]] = use["count"]
        return found

    monkeypatch.setenv("INGEST_ENCRYPTION_KEYS", A)
    before = status()
    assert set(before) == tables
    assert all(set(per_key) == {kid(A)} for per_key in before.values())
    assert before["user_sessions.raw_numbers"] == {kid(A): 1}
    assert before["call_envelopes"][kid(A)] == db.execute("SELECT count(*) FROM call_envelopes").fetchone()[0]
    assert main(["keys", "status"]) == 0
    text = capsys.readouterr().out
    assert "call_envelopes" in text
    assert "user_sessions.raw_numbers" in text

    monkeypatch.setenv("INGEST_ENCRYPTION_KEYS", f"{B},{A}")
    assert main(["keys", "rotate", "--json"]) == 0
    capsys.readouterr()
    after = status()
    assert set(after) == tables
    assert all(set(per_key) == {kid(B)} for per_key in after.values())
    assert after["user_sessions.raw_numbers"] == {kid(B): 1}


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
