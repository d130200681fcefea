"""The data the ops page tests look at: a call whose report failed, a hostile error, a busy queue,
dead letters Dramatiq wrote, personal data in a row's JSON, and rows to filter and page through."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import redis

from ingest.apply import record_failure
from ingest.body import loads_storable, parse_envelope
from ingest.errors import Unmappable
from ingest.event import Event
from ingest.mapping.event_key import event_key
from ingest.queue_keys import QueueKeys
from support.apply import PRIVACY, RECEIVED_AT_MS, apply_bodies
from support.fixtures import load_call, load_event, parse_body

CALL = "inbound_booking"
CALL_ID = "44447e38-9fd3-4025-bc93-2132b1b437d0"
CUSTOMER = "+64211234567"
REPORT_ERROR = "OperationalError: the database went away while applying the report"
HOSTILE_ERROR = '<script>alert("ops")</script><img src=x onerror=alert(1)> & friends'
TRANSCRIPT_SNIPPET = "I'd like to book a check-up"


@dataclass(frozen=True)
class Seeded:
    call_id: str
    report_event_id: int  # the call's end-of-call report, failed
    hostile_event_id: int  # a status update with a bad call id, failed with HOSTILE_ERROR


def record_failed(conn: psycopg.Connection[Any], raw: bytes, error: Exception) -> int:
    """Record ``raw`` as the worker records an event that failed for good; its event id."""
    _, queued = parse_envelope(raw)
    event = Event.from_body(loads_storable(queued), RECEIVED_AT_MS)
    record_failure(conn, event, error, permanent=True, privacy=PRIVACY)
    row = conn.execute("SELECT id FROM call_events WHERE dedupe_key = %s", (event_key(event.message),)).fetchone()
    assert row is not None
    return int(row[0])


def seed(conn: psycopg.Connection[Any]) -> Seeded:
    """inbound_booking applied except its report (failed), plus one failure with a hostile error."""
    bodies = load_call(CALL)
    is_report = [parse_body(raw)["message"]["type"] == "end-of-call-report" for raw in bodies]
    apply_bodies(conn, [raw for raw, report in zip(bodies, is_report, strict=True) if not report])
    [report] = [raw for raw, report in zip(bodies, is_report, strict=True) if report]
    report_id = record_failed(conn, report, psycopg.OperationalError(REPORT_ERROR.split(": ", 1)[1]))
    hostile_id = record_failed(conn, load_event("status_update_bad_call_id"), Unmappable(HOSTILE_ERROR))
    return Seeded(CALL_ID, report_id, hostile_id)


@dataclass(frozen=True)
class QueueState:
    ready: int = 3
    in_flight: int = 1
    delayed: int = 2
    dead: int = 1
    oldest_age_s: float = 30.0


def fill_queue(redis_url: str, namespace: str, queue: str = "vapi-events", state: QueueState = QueueState()) -> None:
    """Put messages everywhere Dramatiq keeps them; the head of the ready list is ``oldest_age_s`` old."""
    keys = QueueKeys(namespace, queue)
    now_ms = int(time.time() * 1000)
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=True)
        for n in range(state.ready + state.in_flight):
            redis_id = str(uuid.uuid4())
            stamp = now_ms - int(state.oldest_age_s * 1000) + n
            pipe.hset(keys.messages, redis_id, orjson.dumps({"message_timestamp": stamp, "queue_name": queue}))
            if n < state.ready:
                pipe.rpush(keys.ready, redis_id)
        for _ in range(state.delayed):
            redis_id = str(uuid.uuid4())
            pipe.hset(keys.delayed_messages, redis_id, orjson.dumps({"message_timestamp": now_ms}))
            pipe.rpush(keys.delayed, redis_id)
        for _ in range(state.dead):
            redis_id = str(uuid.uuid4())
            pipe.hset(keys.dead_messages, redis_id, orjson.dumps({"message_timestamp": now_ms}))
            pipe.zadd(keys.dead, {redis_id: now_ms})
        pipe.execute()
    finally:
        client.close()


TRANSFER_NUMBER = "+6493015577"
EMAIL = "hemi.walker@example.co.nz"
ASSISTANT_A = "0a7d1b52-6a41-4c7e-9f10-3c1f2f0e0a01"
ASSISTANT_B = "0a7d1b52-6a41-4c7e-9f10-3c1f2f0e0a02"


def add_personal_data(conn: psycopg.Connection[Any], call_id: str = CALL_ID) -> None:
    """A transfer destination's number and an e-mail address in the row's analysis and metadata."""
    analysis = {"structuredData": {"transferDestination": {"type": "number", "number": TRANSFER_NUMBER}}}
    conn.execute(
        "UPDATE user_sessions SET metadata = metadata || %s::jsonb WHERE call_id = %s",
        (orjson.dumps({"analysis": analysis, "contact": {"email": EMAIL}}).decode(), call_id),
    )


def add_calls(conn: psycopg.Connection[Any], count: int, start: dt.datetime) -> list[str]:
    """``count`` rows started an hour apart from ``start``, inserted in the reverse order of their start.

    Even rows are client ``acme`` with assistant A and outcome ``completed``; odd ones ``globex``,
    B and ``voicemail``. Returns their call ids, earliest start first.
    """
    ids = [str(uuid.UUID(int=0x5E550000_0000_4000_8000_000000000000 + n)) for n in range(count)]
    for n in reversed(range(count)):
        conn.execute(
            "INSERT INTO user_sessions (call_id, assistant_id, client_id, call_outcome, started_at_utc)"
            " VALUES (%s, %s, %s, %s, %s)",
            (
                ids[n],
                ASSISTANT_A if n % 2 == 0 else ASSISTANT_B,
                "acme" if n % 2 == 0 else "globex",
                "completed" if n % 2 == 0 else "voicemail",
                start + dt.timedelta(hours=n),
            ),
        )
    return ids


def dead_letter(redis_url: str, namespace: str, raw: bytes, queue: str = "vapi-events") -> str:
    """Queue ``raw`` as the endpoint does, then have Dramatiq's own consumer dead-letter it; its id."""
    from dramatiq.brokers.redis import RedisBroker

    from support.queue import enqueue

    enqueue(redis_url, namespace, [raw], RECEIVED_AT_MS, queue)
    broker = RedisBroker(url=redis_url, namespace=namespace)  # type: ignore[no-untyped-call]
    try:
        broker.declare_queue(queue)
        consumer = broker.consume(queue, prefetch=1, timeout=100)
        fetched = next(consumer)
        assert fetched is not None
        consumer.nack(fetched)
        consumer.close()
    finally:
        broker.client.close()
    return str(fetched.options["redis_message_id"])
