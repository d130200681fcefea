"""`ingest queue`: the numbers of a queue state built with Dramatiq's own broker, and of call_events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import pytest
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from support.apply import apply_bodies
from support.fixtures import load_call, load_event
from support.ops_cli import store_failed, store_pending, use_servers

from ingest.cli import main, queue
from ingest.errors import Unmappable
from ingest.web.enqueue import ACTOR_NAME

QUEUE = "vapi-events"
OLDEST_AGE_S = 95


@dataclass
class Built:
    oldest_age_s: float
    applied: int


def message(body: bytes, *, age_s: float = 0) -> Message[Any]:
    return Message(
        queue_name=QUEUE,
        actor_name=ACTOR_NAME,
        args=(orjson.loads(body), 1_790_000_000_000),
        kwargs={},
        options={},
        message_timestamp=int((time.time() - age_s) * 1000),
    )


@pytest.fixture
def broker(redis_server_url: str, redis_namespace: str) -> Iterator[RedisBroker]:
    broker = RedisBroker(url=redis_server_url, namespace=redis_namespace, middleware=[])  # type: ignore[no-untyped-call]
    broker.declare_queue(QUEUE)
    yield broker
    broker.client.close()


@pytest.fixture
def built(broker: RedisBroker, db: psycopg.Connection[Any]) -> Built:
    """3 ready (the oldest 95 s old), 1 in flight, 2 delayed, 1 dead; events in every unfinished state."""
    bodies = load_call("voicemail")
    consumer = broker.consume(QUEUE, prefetch=1, timeout=100)
    broker.enqueue(message(bodies[0]))
    doomed = next(consumer)
    assert doomed is not None
    consumer.nack(doomed)  # dead-lettered, as Dramatiq does with a failed message
    broker.enqueue(message(bodies[1]))
    assert next(consumer) is not None  # fetched by a worker, not acknowledged: in flight
    broker.enqueue(message(bodies[2], age_s=OLDEST_AGE_S))
    broker.enqueue(message(bodies[3]))
    broker.enqueue(message(bodies[4]))
    broker.enqueue(message(bodies[5]), delay=600_000)
    broker.enqueue(message(bodies[6]), delay=600_000)

    apply_bodies(db, load_call("inbound_booking"))
    store_pending(db, load_call("transferred")[1])
    store_pending(db, load_call("assistant_request_first")[0])
    assert db.execute("SELECT 1 FROM call_events WHERE state = 'pending'").fetchall()
    db.execute("UPDATE call_events SET state = 'waiting' WHERE message_type = 'assistant-request'")
    store_failed(db, load_event("status_update_bad_call_id"), Unmappable("call.id 'call_8e2' is not a UUID"))
    store_failed(db, load_call("voicemail")[7], RuntimeError("deadlock detected\nDETAIL: process 42"))
    store_failed(db, load_call("long_call")[3], RuntimeError("deadlock detected"))
    applied = db.execute("SELECT count(*) FROM call_events WHERE state = 'applied'").fetchone()
    assert applied is not None
    return Built(OLDEST_AGE_S, applied[0])


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch, db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    use_servers(monkeypatch, db_url=db_url, redis_url=redis_server_url, namespace=redis_namespace)


def test_json_numbers_match_the_built_state(servers: None, built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives exactly the ready, in-flight, delayed, dead and unfinished counts that were built."""
    assert main(["queue", "--json"]) == 0
    snapshot = orjson.loads(capsys.readouterr().out)
    [queue] = snapshot["queues"]
    assert (queue["name"], queue["ready"], queue["in_flight"], queue["delayed"], queue["dead"]) == (QUEUE, 3, 1, 2, 1)
    assert built.oldest_age_s <= queue["oldest_age_s"] < built.oldest_age_s + 10
    events = snapshot["events"]
    assert (events["pending"], events["waiting"], events["failed"]) == (1, 1, 3)
    assert events["failed_by_error"] == [
        {"error": "RuntimeError: deadlock detected", "count": 2},
        {"error": "Unmappable: call.id 'call_8e2' is not a UUID", "count": 1},
    ]
    assert events["applied_last_minute"] == built.applied > 0
    assert snapshot["errors"] == {}


def test_table_shows_the_same_numbers(servers: None, built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """The default output is a readable table: one line per queue, the event counts, failures by error."""
    assert main(["queue"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("QUEUE"))
    assert header.split() == ["QUEUE", "READY", "IN", "FLIGHT", "DELAYED", "DEAD", "OLDEST"]
    row = lines[lines.index(header) + 1].split()
    assert row[:5] == [QUEUE, "3", "1", "2", "1"]
    assert row[5].startswith("1m3")  # 95 s and a little
    assert f"events: 1 pending, 1 waiting, 3 failed; {built.applied} applied in the last minute" in out
    assert "     2  RuntimeError: deadlock detected" in out


def test_empty_service(servers: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing queued, nothing recorded: zeros, and no oldest age."""
    assert main(["queue", "--json"]) == 0
    snapshot = orjson.loads(capsys.readouterr().out)
    assert snapshot["queues"][0] == {
        "name": QUEUE,
        "ready": 0,
        "in_flight": 0,
        "delayed": 0,
        "dead": 0,
        "oldest_age_s": None,
    }
    assert main(["queue"]) == 0
    assert "no failed" not in capsys.readouterr().out


def test_watch_redraws_in_place_until_ctrl_c(
    servers: None,
    built: Built,
    broker: RedisBroker,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--watch clears the screen once, redraws from the top each time, and exits 0 on Ctrl-C."""
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            broker.enqueue(message(load_call("voicemail")[7]))  # the second frame sees 4 ready
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(queue, "sleep", pause)
    assert main(["queue", "--watch", "0.5"]) == 0
    out = capsys.readouterr().out
    assert pauses == [0.5, 0.5]
    assert out.startswith(queue.CLEAR)
    frames = out.split(queue.HOME)[1:]
    assert len(frames) == 3  # CLEAR ends with HOME, then one per frame
    first, second = frames[1], frames[2]
    assert f"{QUEUE}      3" in first
    assert f"{QUEUE}      4" in second
    assert all(line.endswith(queue.ERASE_LINE) for line in second.split("\n")[:-2])
    assert second.endswith(queue.ERASE_BELOW + "\n")


def test_watch_json_prints_one_document_per_refresh(
    servers: None, built: Built, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--watch --json writes one JSON line per refresh, no terminal codes."""
    calls: list[float] = []

    def pause(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(queue, "sleep", pause)
    assert main(["queue", "--watch", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert calls == [queue.DEFAULT_INTERVAL] * 2
    assert [orjson.loads(line)["queues"][0]["ready"] for line in lines] == [3, 3]
    assert "\x1b" not in "".join(lines)


def test_unreachable_redis_is_reported_with_the_database_numbers(
    monkeypatch: pytest.MonkeyPatch, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With Redis down the event numbers still show; the queue part says why it is missing; exit 1."""
    use_servers(monkeypatch, db_url=db_url, redis_url="redis://127.0.0.1:1/0", namespace="nowhere")
    assert main(["queue"]) == 1
    out = capsys.readouterr().out
    assert "queues: unavailable (ConnectionError" in out
    assert "events: 0 pending, 0 waiting, 0 failed" in out
    assert main(["queue", "--json"]) == 1
    snapshot = orjson.loads(capsys.readouterr().out)
    assert snapshot["queues"] is None
    assert "redis" in snapshot["errors"]


def test_bad_watch_interval(servers: None, capsys: pytest.CaptureFixture[str]) -> None:
    """A zero or negative refresh interval is refused."""
    assert main(["queue", "--watch", "0"]) == 2
    assert "positive" in capsys.readouterr().err
