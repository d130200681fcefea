"""``ingest retention status|run``: what is due, a dry run that changes nothing, a run that removes and records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from support.ops_cli import use_servers
from support.rows import PRIVACY

from ingest.apply import apply_event
from ingest.body import loads_storable
from ingest.cli import main
from ingest.event import Event
from ingest.ops import retention

Conn = psycopg.Connection[Any]
CALL = "0f6c2f4e-9d7a-4a57-8a55-6b8e4d9e0c11"
ASSISTANT = "5b0a8f0e-3a1f-4c55-9f0e-2d7c7c0a0001"


@pytest.fixture
def old_call(db: Conn, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Conn:
    use_servers(monkeypatch, db_url=db_url)
    for name, days in (("RAW_EVENTS", "30"), ("TRANSCRIPT", "90"), ("ANONYMISE", "365")):  # the defaults
        monkeypatch.setenv(f"RETENTION_{name}_DAYS", days)
    ended = datetime.now(UTC) - timedelta(days=100)
    message = {
        "type": "end-of-call-report",
        "call": {
            "id": CALL,
            "assistantId": ASSISTANT,
            "metadata": {"client_id": "acme"},
            "customer": {"number": "+6421555000"},
        },
        "startedAt": (ended - timedelta(minutes=2)).isoformat().replace("+00:00", "Z"),
        "endedAt": ended.isoformat().replace("+00:00", "Z"),
        "artifact": {"transcript": "AI: Hello.\nUser: Hello."},
    }
    event = Event.from_body(loads_storable(orjson.dumps({"message": message})), int(ended.timestamp() * 1000) + 60_000)
    apply_event(db, event, PRIVACY)
    return db


def test_status_dry_run_and_run(old_call: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """Status shows what is due; a dry run prints the same counts and changes nothing; a run removes and is recorded."""
    assert main(["retention", "status"]) == 0
    shown = capsys.readouterr().out
    assert "last run: never" in shown
    assert "transcripts" in shown
    assert "acme" in shown

    assert main(["retention", "run", "--dry-run", "--json"]) == 0
    dry = orjson.loads(capsys.readouterr().out)
    assert dry["counts"] == {"raw_events": {"acme": 1}, "transcripts": {"acme": 1}, "anonymised": {}}
    assert old_call.execute("SELECT count(*) FROM retention_runs").fetchone() == (0,)
    assert old_call.execute("SELECT call_transcript IS NOT NULL FROM user_sessions").fetchone() == (True,)

    assert main(["retention", "run"]) == 0
    out = capsys.readouterr().out
    assert "removed: raw events 1, transcripts 1, anonymised 0" in out
    assert old_call.execute("SELECT call_transcript FROM user_sessions").fetchone() == (None,)
    assert old_call.execute("SELECT count(*) FROM data_access_log WHERE action = 'retention_run'").fetchone() == (1,)

    assert main(["retention", "status"]) == 0
    assert "nothing due" in capsys.readouterr().out


def test_run_refuses_while_another_holds_the_lock(old_call: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    """A run while a worker's run holds the lock says so, exits 1 and changes nothing."""
    old_call.execute("SELECT pg_advisory_lock(%s)", (retention.LOCK_KEY,))
    assert main(["retention", "run"]) == 1
    assert "under way" in capsys.readouterr().out
    assert old_call.execute("SELECT call_transcript IS NOT NULL FROM user_sessions").fetchone() == (True,)


def test_a_call_past_its_anonymise_window_loses_its_raw_events(
    old_call: Conn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Raw events and transcripts kept forever, numbers anonymised after 50 days: the 100-day-old call's raw
    events are counted under raw events in the dry run and the run, and go with its number."""
    monkeypatch.setenv("RETENTION_RAW_EVENTS_DAYS", "off")
    monkeypatch.setenv("RETENTION_TRANSCRIPT_DAYS", "off")
    monkeypatch.setenv("RETENTION_ANONYMISE_DAYS", "50")
    assert main(["retention", "run", "--dry-run", "--json"]) == 0
    dry = orjson.loads(capsys.readouterr().out)
    assert dry["counts"] == {"raw_events": {"acme": 1}, "transcripts": {}, "anonymised": {"acme": 1}}

    assert main(["retention", "run"]) == 0
    assert "removed: raw events 1, transcripts 0, anonymised 1" in capsys.readouterr().out
    assert old_call.execute("SELECT count(*) FROM call_events").fetchone() == (0,)
    audit = old_call.execute("SELECT details FROM data_access_log WHERE action = 'retention_run'").fetchone()
    assert audit is not None
    assert audit[0]["clients"] == dry["counts"]
