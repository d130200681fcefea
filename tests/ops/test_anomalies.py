"""Abuse monitoring: each detector over generated traffic, once per window, acknowledged with an audit row."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import phonenumbers
import psycopg
import pytest
from support.traffic import Call, baseline, insert, local, spread

from ingest.audit import Actor, Auditor, list_entries
from ingest.ops import anomalies
from ingest.ops.detectors import classify
from ingest.pseudonym import pseudonym
from ingest.settings import Settings
from ingest.vocabulary import AnomalyKind, AuditAction, AuditActorKind, AuditSurface

Conn = psycopg.Connection[Any]
AT = local(2026, 3, 2, 10, 30)  # a Monday morning: every scan's window is 09:30-10:30 local
PATTERN_AT = local(2026, 3, 2, 10, 0)  # the pattern, inside both the window and one 15 minutes later
USUAL = Call("acme", local(2026, 3, 2, 9, 50))  # the hour's usual calls: 09:50-10:20
PHONE = "3f0c8a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
CALLER = "+64211234567"
PREMIUM = phonenumbers.format_number(
    phonenumbers.example_number_for_type("GB", phonenumbers.PhoneNumberType.PREMIUM_RATE),
    phonenumbers.PhoneNumberFormat.E164,
)
NONE_OPEN = {kind.value: 0 for kind in AnomalyKind}
AUDITOR = Auditor(AuditSurface.CLI, Actor("alice", AuditActorKind.OS_USER))

# kind -> (the pattern's calls, the subject kind, the score)
PATTERNS: dict[AnomalyKind, tuple[list[Call], str, float]] = {
    AnomalyKind.VOLUME: (spread(replace(USUAL, at=PATTERN_AT, cost=0.1), 40), "client", (43 - 3) / 3**0.5),
    AnomalyKind.COST: (spread(replace(USUAL, at=PATTERN_AT, cost=8.0), 3), "client", 24.6 - 0.6),
    AnomalyKind.REPEAT_CALLER: (spread(replace(USUAL, at=PATTERN_AT, number=CALLER), 6), "caller", 6 / 5),
    AnomalyKind.SHORT_CALLS: (
        spread(replace(USUAL, at=PATTERN_AT, seconds=4, phone_number_id=PHONE), 12),
        "phone_number",
        12 / 10,
    ),
    AnomalyKind.OUTBOUND_DESTINATION: (
        spread(replace(USUAL, at=PATTERN_AT, number=PREMIUM, type="outboundPhoneCall"), 2),
        "caller",
        2.0,
    ),
    AnomalyKind.VAPI_SIGNAL: (
        [
            replace(USUAL, at=PATTERN_AT, seconds=0, ended_reason=reason)
            for reason in (
                "call.start.error-fraud-check-failed",
                "call.start.error-subscription-concurrency-limit-reached",
            )
        ],
        "client",
        2.0,
    ),
}


def _settings(db_url: str, **env: str) -> Settings:
    return Settings.from_env({**os.environ, "DATABASE_URL": db_url, **env})


def _quiet_acme(db: Conn) -> None:
    """Four quiet weeks of acme (3 calls in the hour each), and 3 usual calls today."""
    insert(db, baseline(USUAL, weeks=range(1, 5), per_week=3))
    insert(db, spread(USUAL, 3))


def _rows(db: Conn) -> list[anomalies.Anomaly]:
    return anomalies.list_anomalies(db)


def _key() -> bytes:
    key = Settings.from_env().pseudonym_key
    assert key is not None
    return key


@pytest.mark.parametrize("kind", list(PATTERNS), ids=str)
def test_each_pattern_raises_its_anomaly_once(db: Conn, db_url: str, kind: AnomalyKind) -> None:
    """Quiet weeks then the pattern raise that anomaly alone, once, with its subject and score, on every rescan."""
    settings = _settings(db_url)
    _quiet_acme(db)
    calls, subject_kind, score = PATTERNS[kind]
    insert(db, calls)
    first = anomalies.scan(db, settings, now=AT)
    assert (first.found[kind], first.total, first.new, first.updated, first.skipped) == (1, 1, 1, 0, ())
    [row] = _rows(db)
    assert (row.kind, row.client_id, row.subject_kind) == (kind, "acme", subject_kind)
    subjects = {"client": "acme", "phone_number": PHONE, "caller": pseudonym(calls[0].number or "", _key())}
    assert row.subject == subjects[subject_kind]
    assert row.score == pytest.approx(score, rel=1e-3)
    assert (row.window_start, row.window_end) == (AT - timedelta(hours=1), AT)
    assert row.open
    shown = orjson.dumps(row.as_dict()).decode()
    for call in calls:
        assert call.number is None or call.number.lstrip("+") not in shown
    again = anomalies.scan(db, settings, now=AT)
    later = anomalies.scan(db, settings, now=AT + timedelta(minutes=15))
    assert (again.new, again.updated, later.new, later.updated) == (0, 1, 0, 1)
    [extended] = _rows(db)
    assert (extended.id, extended.window_start, extended.window_end) == (row.id, row.window_start, later.at)
    assert extended.observed >= row.observed


def test_the_details_say_what_was_seen(db: Conn, db_url: str) -> None:
    """Baselines, shares, regions and Vapi's reasons are kept as counts and labels."""
    _quiet_acme(db)
    for kind in (AnomalyKind.VOLUME, AnomalyKind.SHORT_CALLS, AnomalyKind.OUTBOUND_DESTINATION):
        insert(db, PATTERNS[kind][0])
    insert(db, PATTERNS[AnomalyKind.VAPI_SIGNAL][0])
    anomalies.scan(db, _settings(db_url), now=AT)
    rows = {row.kind: row for row in _rows(db)}
    assert (rows["volume"].baseline, rows["volume"].details["weekly_calls"]) == (3, [3, 3, 3, 3])
    assert rows["short_calls"].details == {"short_calls": 12, "calls": 12, "share": 1.0}
    assert rows["outbound_destination"].details == {"region": "GB", "number_type": "premium_rate", "calls": 2}
    assert rows["vapi_signal"].details == {
        "ended_reasons": {
            "call.start.error-fraud-check-failed": 1,
            "call.start.error-subscription-concurrency-limit-reached": 1,
        }
    }


def test_the_same_traffic_without_a_pattern_raises_nothing(db: Conn, db_url: str) -> None:
    """Quiet weeks and an ordinary hour, with outbound calls home, raise no anomaly."""
    _quiet_acme(db)
    insert(db, spread(replace(USUAL, number="+6493001122", type="outboundPhoneCall"), 2))
    result = anomalies.scan(db, _settings(db_url), now=AT)
    assert (result.total, result.new) == (0, 0)
    assert _rows(db) == []


def test_a_normal_busy_monday_raises_nothing(db: Conn, db_url: str) -> None:
    """Weeks with a busy Monday morning, and this Monday as busy, are no volume or cost anomaly."""
    insert(db, baseline(replace(USUAL, cost=0.5), weeks=range(1, 5), per_week=[28, 30, 32, 30]))
    insert(db, spread(replace(USUAL, cost=0.5), 34))
    assert anomalies.scan(db, _settings(db_url), now=AT).total == 0


def test_a_quiet_client_raises_nothing(db: Conn, db_url: str) -> None:
    """A client with no history and three calls, two from one number and two short, is not alarming."""
    insert(db, [replace(USUAL, client="tiny", number=CALLER), replace(USUAL, client="tiny", number=CALLER, seconds=3)])
    insert(db, [replace(USUAL, client="tiny", seconds=2)])
    assert anomalies.scan(db, _settings(db_url), now=AT).total == 0


@pytest.mark.parametrize(("history", "judged"), [(1, False), (2, True)])
def test_volume_needs_enough_weeks_of_history(db: Conn, db_url: str, history: int, judged: bool) -> None:
    """A client whose first calls came fewer than ANOMALY_BASELINE_MIN_WEEKS weeks ago is not judged for volume."""
    insert(db, baseline(USUAL, weeks=range(1, history + 1), per_week=3))
    insert(db, PATTERNS[AnomalyKind.VOLUME][0])
    result = anomalies.scan(db, _settings(db_url), now=AT)
    assert result.found["volume"] == int(judged)


def test_outbound_numbers_are_classified_by_type_and_region() -> None:
    """Premium and shared-cost numbers anywhere, and numbers outside the allowed countries, are unusual."""
    allowed = frozenset({"NZ", "AU"})
    assert classify(PREMIUM, "NZ", allowed) == ("GB", "premium_rate")
    assert classify("+611900123456", "NZ", allowed) == ("AU", "premium_rate")
    assert classify("+12015550123", "NZ", allowed) == ("US", "fixed_line_or_mobile")
    assert classify("+6493001122", "NZ", allowed) is None
    assert classify("093001122", "NZ", allowed) is None
    assert classify("sip:reception@example.com", "NZ", allowed) is None


def test_without_a_pseudonym_key_the_keyed_detectors_are_skipped(db: Conn, db_url: str) -> None:
    """Repeat callers and outbound numbers are not judged without INGEST_PSEUDONYM_KEY, and the scan says so."""
    _quiet_acme(db)
    insert(db, PATTERNS[AnomalyKind.REPEAT_CALLER][0])
    result = anomalies.scan(db, _settings(db_url, INGEST_PSEUDONYM_KEY=""), now=AT)
    assert (result.total, result.skipped) == (0, ("repeat_caller", "outbound_destination"))
    last = anomalies.last_scan(db)
    assert last is not None
    assert last["skipped"] == ["repeat_caller", "outbound_destination"]


def test_a_caller_subject_is_never_a_number(db: Conn) -> None:
    """The table refuses a caller subject that is not a pseudonym."""
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO call_anomalies (kind, subject_kind, subject, window_start, window_end, observed)"
            " VALUES ('repeat_caller', 'caller', %s, now() - interval '1 hour', now(), 6)",
            (CALLER,),
        )


def test_acknowledge_is_audited_once_with_its_reason(db: Conn, db_url: str) -> None:
    """An acknowledgement needs a reason, sets who and why, writes its audit row, and happens once."""
    settings = _settings(db_url)
    insert(db, PATTERNS[AnomalyKind.VAPI_SIGNAL][0])
    anomalies.scan(db, settings, now=AT)
    [row] = _rows(db)
    with pytest.raises(ValueError, match="reason"):
        anomalies.acknowledge(db, row.id, reason="  ", auditor=AUDITOR)
    acked = anomalies.acknowledge(db, row.id, reason="Vapi support confirmed a test", auditor=AUDITOR)
    assert (acked.open, acked.acknowledged_by, acked.ack_reason) == (False, "alice", "Vapi support confirmed a test")
    assert acked.acknowledged_at is not None
    assert anomalies.get(db, row.id) == acked
    [entry] = list_entries(db, action=AuditAction.ANOMALY_ACK)
    assert (entry.actor, entry.surface, entry.target_kind, entry.target, entry.reason, entry.client_id) == (
        "alice",
        "cli",
        "anomaly",
        str(row.id),
        "Vapi support confirmed a test",
        "acme",
    )
    with pytest.raises(anomalies.AlreadyAcknowledged):
        anomalies.acknowledge(db, row.id, reason="again", auditor=AUDITOR)
    with pytest.raises(anomalies.AnomalyNotFound):
        anomalies.acknowledge(db, row.id + 1000, reason="no such", auditor=AUDITOR)
    assert len(list_entries(db, action=AuditAction.ANOMALY_ACK)) == 1
    anomalies.scan(db, settings, now=AT + timedelta(minutes=15))  # the same pattern does not reopen it
    assert [(r.id, r.open) for r in _rows(db)] == [(row.id, False)]


def test_open_counts_and_flagged_callers(db: Conn, db_url: str) -> None:
    """Open anomalies are counted per kind (every kind present); open repeat callers are flagged while recent."""
    assert anomalies.open_counts(db) == NONE_OPEN
    assert anomalies.flagged_callers(db, 24) == {}
    insert(db, PATTERNS[AnomalyKind.REPEAT_CALLER][0] + PATTERNS[AnomalyKind.VAPI_SIGNAL][0])
    anomalies.scan(db, _settings(db_url), now=AT)
    assert anomalies.open_counts(db) == {**NONE_OPEN, "repeat_caller": 1, "vapi_signal": 1}
    repeat = next(r for r in _rows(db) if r.kind == "repeat_caller")
    assert anomalies.flagged_callers(db, 24) == {pseudonym(CALLER, _key()): repeat.id}
    db.execute("UPDATE call_anomalies SET last_seen_at = now() - interval '25 hours' WHERE id = %s", (repeat.id,))
    assert anomalies.flagged_callers(db, 24) == {}
    assert anomalies.flagged_callers(db, 26) == {pseudonym(CALLER, _key()): repeat.id}
    anomalies.acknowledge(db, repeat.id, reason="a patient's relative, known", auditor=AUDITOR)
    assert anomalies.flagged_callers(db, 26) == {}
    assert anomalies.open_counts(db)["repeat_caller"] == 0
    assert [r.kind for r in anomalies.list_anomalies(db, open_only=True)] == ["vapi_signal"]


def test_a_held_lock_skips_the_scan_and_due_now_follows_the_last(db: Conn, db_url: str) -> None:
    """While another session holds the lock scan_locked returns None; due_now follows the last scan's end."""
    settings = _settings(db_url)
    assert anomalies.due_now(db, 15)
    assert anomalies.last_scan(db) is None
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (anomalies.LOCK_KEY,))
        assert anomalies.scan_locked(db, settings, runner="worker") is None
        other.execute("SELECT pg_advisory_unlock(%s)", (anomalies.LOCK_KEY,))
    result = anomalies.scan_locked(db, settings, runner="worker")
    assert result is not None
    assert result.total == 0
    assert not anomalies.due_now(db, 15)
    last = anomalies.last_scan(db)
    assert last is not None
    assert (last["runner"], last["started_at"], last["new"]) == ("worker", result.at, 0)
    db.execute("UPDATE anomaly_scans SET finished_at = finished_at - interval '16 minutes'")
    assert anomalies.due_now(db, 15)
