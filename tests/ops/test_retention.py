"""Retention: per-client windows over raw events, transcripts and numbers, run in batches, once per interval."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from support.rows import PRIVACY

from ingest.apply import apply_event
from ingest.body import loads_storable
from ingest.event import Event
from ingest.ops import retention
from ingest.pseudonym import pseudonym
from ingest.settings import Settings

Conn = psycopg.Connection[Any]
ASSISTANT = "5b0a8f0e-3a1f-4c55-9f0e-2d7c7c0a0001"
NOW = datetime.now(UTC)
# client -> (raw, transcript, anonymise) overrides; None follows the defaults below
OVERRIDES: dict[str, tuple[int | None, int | None, int | None]] = {
    "acme": (3, 5, 10),
    "bravo": (None, None, None),
    "charlie": (20, 8, 0),  # raw longer than transcript; never anonymised
    "delta": (0, 0, 5),  # raw events and transcripts kept, numbers anonymised: raw bodies go with the number
}
DEFAULTS = {"RETENTION_RAW_EVENTS_DAYS": "7", "RETENTION_TRANSCRIPT_DAYS": "14", "RETENTION_ANONYMISE_DAYS": "21"}
DAYS = range(0, 30)


def _settings(db_url: str, **env: str) -> Settings:
    return Settings.from_env({**os.environ, "DATABASE_URL": db_url, **DEFAULTS, **env})


def _windows(client: str) -> tuple[int, int, int]:
    defaults = [int(DEFAULTS[name]) for name in DEFAULTS]
    given = OVERRIDES[client]
    raw, transcript, anonymise = (
        default if value is None else value for value, default in zip(given, defaults, strict=True)
    )
    return raw, transcript, anonymise


def _number(client: str, day: int) -> str:
    index = list(OVERRIDES).index(client) if client in OVERRIDES else 9
    return f"+6421{index}{day:05d}"


def _report(call_id: str, client: str, day: int) -> tuple[dict[str, Any], datetime]:
    ended = NOW - timedelta(days=day, hours=12)
    started = ended - timedelta(minutes=3)
    iso = lambda t: t.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # noqa: E731
    message = {
        "type": "end-of-call-report",
        "timestamp": int(ended.timestamp() * 1000),
        "call": {
            "id": call_id,
            "type": "inboundPhoneCall",
            "assistantId": ASSISTANT,
            "metadata": {"client_id": client},
            "customer": {"number": _number(client, day)},
        },
        # what every event of a call repeats, large enough to be kept once in call_envelopes
        "assistant": {"name": "Front desk", "firstMessage": "Hello, " + "how can I help you today? " * 20},
        "customer": {"number": _number(client, day)},
        "startedAt": iso(started),
        "endedAt": iso(ended),
        "endedReason": "customer-ended-call",
        "cost": 0.25,
        "artifact": {
            "transcript": "AI: Hello.\nUser: Hi, I'd like pricing, mail me at jo@example.com.",
            "recordingUrl": f"https://storage.vapi.ai/{call_id}-mono.wav",
            "logUrl": f"https://storage.vapi.ai/{call_id}-log.gz",
        },
        "analysis": {
            "summary": "The caller asked about pricing.",
            "structuredData": {"sentiment": "positive", "outcome": "booked", "keywords": ["pricing"]},
        },
    }
    return message, ended


def _apply(conn: Conn, message: dict[str, Any], received: datetime) -> None:
    event = Event.from_body(loads_storable(orjson.dumps({"message": message})), int(received.timestamp() * 1000))
    apply_event(conn, event, PRIVACY)


def _month_of_calls(conn: Conn) -> dict[str, tuple[str, int]]:
    """One call a day for 30 days for each client; call id -> (client, age in days)."""
    for client, (raw, transcript, anonymise) in OVERRIDES.items():
        conn.execute(
            "INSERT INTO client_subscriptions (client_id, status, retention_raw_events_days,"
            " retention_transcript_days, retention_anonymise_days) VALUES (%s, 'active', %s, %s, %s)",
            (client, raw, transcript, anonymise),
        )
    calls = {}
    for client in OVERRIDES:
        for day in DAYS:
            call_id = str(uuid.uuid4())
            message, ended = _report(call_id, client, day)
            _apply(conn, message, ended + timedelta(minutes=1))
            calls[call_id] = (client, day)
    return calls


def _due(days: int, age: int) -> bool:
    return days != 0 and age + 0.5 > days


def _envelopes(conn: Conn, call_id: str) -> int:
    row = conn.execute("SELECT count(*) FROM call_envelopes WHERE call_id = %s::uuid", (call_id,)).fetchone()
    assert row is not None
    return int(row[0])


def _raw_bodies(conn: Conn, call_id: str) -> list[Any]:
    return conn.execute("SELECT id, body FROM call_events WHERE call_id = %s ORDER BY id", (call_id,)).fetchall()


def _snapshot(conn: Conn) -> dict[str, Any]:
    usage = conn.execute("SELECT client_id, month, calls, minutes, cost FROM client_monthly_usage ORDER BY 1, 2")
    analytics = {
        client: conn.execute(
            "SELECT * FROM get_client_call_analytics(%s, %s, %s)",
            (client, (NOW - timedelta(days=40)).date(), (NOW + timedelta(days=1)).date()),
        ).fetchall()
        for client in OVERRIDES
    }
    kept = conn.execute(
        "SELECT call_id, client_id, assistant_id, started_at_utc, ended_at_utc, duration_seconds, duration_minutes,"
        " cost_total, sentiment, call_outcome, keywords, ended_reason FROM user_sessions ORDER BY call_id"
    )
    return {"usage": usage.fetchall(), "analytics": analytics, "kept": kept.fetchall()}


def _everything(conn: Conn) -> tuple[Any, ...]:
    return (
        conn.execute("SELECT * FROM user_sessions ORDER BY id").fetchall(),
        conn.execute("SELECT id, state FROM call_events ORDER BY id").fetchall(),
        conn.execute("SELECT * FROM client_monthly_usage ORDER BY 1, 2").fetchall(),
    )


def test_a_run_removes_exactly_what_each_clients_windows_make_due(db: Conn, db_url: str) -> None:
    """Per category and client, exactly the due data goes; usage, analytics and kept columns stay identical."""
    calls = _month_of_calls(db)
    settings = _settings(db_url)
    key = settings.require_pseudonym_key()
    before = _snapshot(db)
    envelopes = {call_id: _envelopes(db, call_id) for call_id in calls}
    bodies = {call_id: _raw_bodies(db, call_id) for call_id in calls}
    assert all(count == 1 for count in envelopes.values())

    with psycopg.connect(db_url, autocommit=True) as conn:
        dry = retention.run(conn, settings, dry_run=True)
        report = retention.run(conn, settings, batch=7)  # many small batches

    assert _snapshot(db) == before
    expected: dict[str, dict[str, int]] = {category: {} for category in retention.CATEGORIES}
    for call_id, (client, day) in calls.items():
        raw, transcript, anonymise = _windows(client)
        events = db.execute("SELECT count(*) FROM call_events WHERE call_id = %s", (call_id,)).fetchone()
        row = db.execute(
            "SELECT call_transcript, call_summary, call_transcript_original, metadata, customer_number"
            " FROM user_sessions WHERE call_id = %s",
            (call_id,),
        ).fetchone()
        assert events is not None
        assert row is not None
        text, summary, original, metadata, number = row
        # a call's raw bodies and envelopes hold its transcript and its caller's number, sealed
        raw_gone = _due(raw, day) or _due(transcript, day) or _due(anonymise, day)
        assert events[0] == (0 if raw_gone else 1), (client, day)
        assert _raw_bodies(db, call_id) == ([] if raw_gone else bodies[call_id]), (client, day)
        assert _envelopes(db, call_id) == (0 if raw_gone else envelopes[call_id]), (client, day)
        transcript_gone = _due(transcript, day)
        assert (text is None and summary is None and original is None) == transcript_gone, (client, day)
        # anonymising keeps only the anonymous metadata keys: these go with either step
        shows = "recordings" in metadata or "analysis" in metadata
        assert shows != (transcript_gone or _due(anonymise, day)), (client, day)
        if _due(anonymise, day):
            assert number == pseudonym(_number(client, day), key)
        else:
            assert number == _number(client, day)
        for category, gone in (
            ("raw_events", raw_gone),
            ("transcripts", transcript_gone),
            ("anonymised", _due(anonymise, day)),
        ):
            if gone:
                expected[category][client] = expected[category].get(client, 0) + 1
    assert report.counts_dict() == expected
    assert dry.counts_dict() == expected
    assert sum(report.total(category) for category in retention.CATEGORIES) > 0
    # delta keeps raw events and transcripts forever: its calls' raw bodies went with their numbers
    assert expected["raw_events"]["delta"] == expected["anonymised"]["delta"] == 25
    assert "delta" not in expected["transcripts"]

    runs = db.execute("SELECT count(*) FROM retention_runs").fetchone()
    audit = db.execute("SELECT target_count, details FROM data_access_log WHERE action = 'retention_run'").fetchall()
    assert runs == (1,)
    assert len(audit) == 1
    assert audit[0][1]["clients"] == expected

    state = _everything(db)
    with psycopg.connect(db_url, autocommit=True) as conn:
        again = retention.run(conn, settings)
    assert all(again.total(category) == 0 for category in retention.CATEGORIES)
    assert _everything(db) == state


def test_off_keeps_everything(db: Conn, db_url: str) -> None:
    """With every window off (0 / off), nothing is due and a run changes nothing."""
    _month_of_calls(db)
    db.execute(
        "UPDATE client_subscriptions SET retention_raw_events_days = NULL, retention_transcript_days = 0,"
        " retention_anonymise_days = NULL"
    )
    settings = _settings(
        db_url, RETENTION_RAW_EVENTS_DAYS="off", RETENTION_TRANSCRIPT_DAYS="0", RETENTION_ANONYMISE_DAYS="off"
    )
    state = _everything(db)
    with psycopg.connect(db_url, autocommit=True) as conn:
        report = retention.run(conn, settings)
    assert report.counts_dict() == {category: {} for category in retention.CATEGORIES}
    assert _everything(db) == state


def test_unfinished_events_past_the_window_stay_and_are_reported(db: Conn, db_url: str) -> None:
    """Pending and waiting events past the raw window are kept, and counted as overdue in the run and the status."""
    _month_of_calls(db)
    old = db.execute(
        "SELECT id FROM call_events e WHERE e.received_at < now() - interval '25 days' ORDER BY id LIMIT 2"
    ).fetchall()
    db.execute("UPDATE call_events SET state = 'pending' WHERE id = %s", (old[0][0],))
    db.execute("UPDATE call_events SET state = 'waiting' WHERE id = %s", (old[1][0],))
    settings = _settings(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        report = retention.run(conn, settings)
        status = retention.status(conn, settings)
    kept = db.execute("SELECT count(*) FROM call_events WHERE id = ANY(%s)", ([old[0][0], old[1][0]],)).fetchone()
    assert kept == (2,)
    assert report.overdue_total == 2
    assert status.total(retention.OVERDUE) == 2
    assert status.last_run is not None
    assert status.last_run.overdue == 2


def test_missing_pseudonym_key_skips_only_anonymising(db: Conn, db_url: str) -> None:
    """Without INGEST_PSEUDONYM_KEY the other steps run and anonymising is reported skipped, numbers untouched."""
    _month_of_calls(db)
    settings = _settings(db_url, INGEST_PSEUDONYM_KEY="")
    with psycopg.connect(db_url, autocommit=True) as conn:
        report = retention.run(conn, settings)
    assert report.skipped == ["anonymised"]
    assert report.total("transcripts") > 0
    assert db.execute("SELECT count(*) FROM user_sessions WHERE customer_number LIKE 'anon:%'").fetchone() == (0,)


RUNNER = """
import os, sys
from ingest.settings import Settings
from worker.sweeper import RetentionSchedule
settings = Settings.from_env()
report = RetentionSchedule(settings)()
print("ran" if report is not None else "skipped")
"""


def test_two_worker_processes_run_it_once_beside_live_ingestion(db: Conn, db_url: str) -> None:
    """Two worker processes at once: one runs, the other skips; events applied meanwhile are not blocked."""
    calls = _month_of_calls(db)
    env = {**os.environ, "DATABASE_URL": db_url, **DEFAULTS, "LOG_LEVEL": "WARNING"}
    runners = [
        subprocess.Popen([sys.executable, "-c", RUNNER], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            with psycopg.connect(db_url) as conn:
                for call_id, (client, day) in list(calls.items())[::3]:
                    message, ended = _report(call_id, client, day)
                    message = {**message, "type": "status-update", "status": "ended"}
                    _apply(conn, message, ended + timedelta(minutes=2))
        except BaseException as exc:
            errors.append(exc)

    live = threading.Thread(target=ingest)
    live.start()
    outputs = sorted(runner.communicate(timeout=120)[0].strip() for runner in runners)
    live.join(120)
    assert not errors
    assert all(runner.returncode == 0 for runner in runners)
    assert outputs == ["ran", "skipped"]
    assert db.execute("SELECT count(*) FROM retention_runs").fetchone() == (1,)


def test_a_held_lock_makes_the_run_skip(db: Conn, db_url: str) -> None:
    """While another session holds the retention lock, run_locked does nothing and returns None."""
    db.execute("SELECT pg_advisory_lock(%s)", (retention.LOCK_KEY,))
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert retention.run_locked(conn, _settings(db_url)) is None
    assert db.execute("SELECT count(*) FROM retention_runs").fetchone() == (0,)


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_bad_windows_are_refused(value: str) -> None:
    """A window that is neither a whole number of days nor off is a configuration error."""
    from ingest.errors import ConfigError

    with pytest.raises(ConfigError):
        Settings.from_env({"RETENTION_TRANSCRIPT_DAYS": value})


def test_whole_expired_monthly_partitions_are_dropped(db: Conn, db_url: str) -> None:
    """Events in a month older than every client's raw window go with their partition, counted per client."""
    settings = _settings(db_url)
    db.execute("INSERT INTO client_subscriptions (client_id, status) VALUES ('bravo', 'active')")
    old = NOW - timedelta(days=75)
    db.execute("SELECT ingest_create_call_event_partition(%s)", (old,))
    for _ in range(3):
        message, _ended = _report(str(uuid.uuid4()), "bravo", 75)
        _apply(db, message, old)
    name = db.execute(
        "SELECT name FROM ingest_call_event_partitions() WHERE month_start <= %s AND month_end > %s", (old, old)
    ).fetchone()
    assert name is not None
    with psycopg.connect(db_url, autocommit=True) as conn:
        report = retention.run(conn, settings)
    assert report.partitions_dropped == [name[0]]
    assert report.counts["raw_events"] == {"bravo": 3}
    assert db.execute("SELECT to_regclass(%s)", (name[0],)).fetchone() == (None,)


def test_metrics_show_the_last_run_and_overdue_events(db: Conn, db_url: str) -> None:
    """The /metrics gauges carry the last run's time and counts and the overdue unfinished events."""
    from ingest.metrics.gauges import retention_gauges

    _month_of_calls(db)
    oldest = db.execute("SELECT min(id) FROM call_events WHERE received_at < now() - interval '25 days'").fetchone()
    db.execute("UPDATE call_events SET state = 'waiting' WHERE id = %s", oldest)
    settings = _settings(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert retention.figures(conn, 7, 0, 0).last_run is None
        report = retention.run(conn, settings)
        kept = retention.figures(conn, 7, 0, 0)
    values = {
        (metric.name, tuple(sample.labels.values())): sample.value
        for metric in retention_gauges(kept)
        for sample in metric.samples
    }
    assert values[("vapi_ingest_retention_overdue_events", ())] == 1
    assert values[("vapi_ingest_retention_last_run_items", ("transcripts",))] == report.total("transcripts")
    assert values[("vapi_ingest_retention_last_run_timestamp_seconds", ())] > 0


def _clients(conn: Conn, **windows: tuple[int | None, int | None, int | None]) -> None:
    for client, (raw, transcript, anonymise) in windows.items():
        conn.execute(
            "INSERT INTO client_subscriptions (client_id, status, retention_raw_events_days,"
            " retention_transcript_days, retention_anonymise_days) VALUES (%s, 'active', %s, %s, %s)",
            (client, raw, transcript, anonymise),
        )


def _one_call(conn: Conn, client: str, day: int) -> str:
    call_id = str(uuid.uuid4())
    message, ended = _report(call_id, client, day)
    _apply(conn, message, ended + timedelta(minutes=1))
    return call_id


def test_unfinished_events_of_a_call_past_its_transcript_or_anonymise_window_are_overdue(db: Conn, db_url: str) -> None:
    """A pending or waiting event whose call's transcript or anonymise window has passed (raw events kept
    forever) would go were it final: it stays, and the run, the status, /metrics and /ops count it overdue."""
    _clients(db, tango=(0, 5, 0), alpha=(0, 0, 5))
    due = [_one_call(db, "tango", 10), _one_call(db, "alpha", 10)]
    recent = [_one_call(db, "tango", 2), _one_call(db, "alpha", 2)]
    for call_id, state in zip(due + recent, ("pending", "waiting", "pending", "waiting"), strict=True):
        db.execute("UPDATE call_events SET state = %s WHERE call_id = %s", (state, call_id))
    settings = _settings(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        dry = retention.run(conn, settings, dry_run=True)
        report = retention.run(conn, settings)
        status = retention.status(conn, settings)
        policy = retention.Policy.of(settings)
        figures = retention.figures(conn, policy.raw_events_days, policy.transcript_days, policy.anonymise_days)
    assert db.execute("SELECT count(*) FROM call_events").fetchone() == (4,)
    overdue = {(item.client_id, item.count) for item in report.overdue}
    assert overdue == {("tango", 1), ("alpha", 1)}
    assert {(item.client_id, item.count) for item in dry.overdue} == overdue
    assert report.counts["raw_events"] == {}
    assert status.total(retention.OVERDUE) == 2
    assert figures.overdue == 2
    assert figures.last_run is not None
    assert figures.last_run.overdue == 2


def test_transcript_retention_forgets_the_calls_envelopes(db: Conn, db_url: str) -> None:
    """A call past its transcript window loses its raw events and their envelopes in the run itself (raw
    events otherwise kept forever); a call not yet due keeps both."""
    _clients(db, tango=(0, 5, 0))
    due, kept = _one_call(db, "tango", 10), _one_call(db, "tango", 2)
    assert (_envelopes(db, due), _envelopes(db, kept)) == (1, 1)
    kept_bodies = _raw_bodies(db, kept)
    with psycopg.connect(db_url, autocommit=True) as conn:
        report = retention.run(conn, _settings(db_url))
    assert report.counts_dict() == {"raw_events": {"tango": 1}, "transcripts": {"tango": 1}, "anonymised": {}}
    assert _raw_bodies(db, due) == []
    assert _envelopes(db, due) == 0
    assert _raw_bodies(db, kept) == kept_bodies
    assert _envelopes(db, kept) == 1
