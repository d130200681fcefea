"""`ingest dlq` on dead letters Dramatiq itself wrote: list, requeue to a real consumer, purge with confirmation."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import dramatiq
import orjson
import psycopg
import pytest
import redis
from dramatiq import Message, Worker
from dramatiq.brokers.redis import RedisBroker
from support.fixtures import fixture_path, load_call
from support.live import worker_process
from support.ops_cli import use_servers
from support.rows import session_rows

from ingest.cli import main
from ingest.ops import dead_letters
from ingest.web.enqueue import ACTOR_NAME, encode_message

QUEUE = "vapi-events"
DAY_MS = 86_400_000
CALL = "29e81e6b-26b0-4097-8509-32a0d88f1a97"  # the voicemail call
EXPECTED = orjson.loads(fixture_path("expected_rows.json").read_bytes())


class Terminal(io.StringIO):
    """A stdin that is a terminal, holding what the operator types."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def broker(redis_server_url: str, redis_namespace: str) -> Iterator[RedisBroker]:
    """A Dramatiq broker on the test's namespace, with Dramatiq's default middleware (AgeLimit, Retries, …)."""
    broker = RedisBroker(url=redis_server_url, namespace=redis_namespace)  # type: ignore[no-untyped-call]
    broker.declare_queue(QUEUE)
    yield broker
    broker.client.close()


@pytest.fixture
def client(redis_server_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server_url)
    yield client
    client.close()


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch, db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """Redis, and Postgres for the access log requeue and purge write first."""
    use_servers(monkeypatch, db_url=db_url, redis_url=redis_server_url, namespace=redis_namespace)


def dead_letter(broker: RedisBroker, body: bytes, *, age_ms: int = 2 * DAY_MS, retries: int = 10) -> str:
    """A message that spent its retries, dead-lettered by Dramatiq's own consumer; returns its id."""
    options = {"retries": retries, "traceback": "Traceback (most recent call last):\n  …\nOperationalError: gone\n"}
    message = Message(
        queue_name=QUEUE,
        actor_name=ACTOR_NAME,
        args=(orjson.loads(body), 1_790_000_000_000),
        kwargs={},
        options=options,
        message_timestamp=int(time.time() * 1000) - age_ms,
    )
    broker.enqueue(message)
    consumer = broker.consume(QUEUE, prefetch=1, timeout=100)
    fetched = next(consumer)
    assert fetched is not None
    consumer.nack(fetched)
    time.sleep(0.002)  # the next one in a later millisecond: the set orders equal times by id
    return str(fetched.options["redis_message_id"])


def queued_messages(client: redis.Redis, namespace: str) -> list[dict[str, Any]]:
    ids = client.lrange(f"{namespace}:{QUEUE}", 0, -1)
    return [orjson.loads(client.hget(f"{namespace}:{QUEUE}.msgs", i)) for i in ids]  # type: ignore[arg-type]


def run_worker_until(broker: RedisBroker, done: Callable[[], bool], timeout: float = 15.0) -> None:
    """A real Dramatiq worker (one thread) on ``broker`` until ``done()`` or the timeout."""
    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()


def recording_actor(broker: RedisBroker) -> list[Any]:
    """The apply_event actor as the service declares it (max age one day), recording its calls."""
    calls: list[Any] = []
    lock = threading.Lock()

    def apply_event(body: dict[str, Any], received_at_ms: int) -> None:
        with lock:
            calls.append((body["message"]["type"], received_at_ms))

    dramatiq.actor(apply_event, broker=broker, actor_name=ACTOR_NAME, queue_name=QUEUE, max_age=DAY_MS)
    return calls


# -- list ---------------------------------------------------------------------------------------


def test_list_shows_what_dramatiq_dead_lettered(
    servers: None, broker: RedisBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each dead letter shows its id, when, the actor, the event's type and call, retries and last error."""
    first = dead_letter(broker, load_call("voicemail")[0])
    second = dead_letter(broker, load_call("voicemail")[7], retries=3)
    assert main(["dlq", "list", "--json"]) == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert [d["id"] for d in listed] == [first, second]  # oldest first
    assert listed[1]["actor"] == ACTOR_NAME
    assert listed[1]["message_type"] == "end-of-call-report"
    assert listed[1]["call"] == CALL
    assert listed[1]["retries"] == 3
    assert listed[1]["error"] == "OperationalError: gone"
    assert abs(datetime.fromisoformat(listed[0]["dead_at"]).timestamp() - time.time()) < 30
    assert datetime.fromisoformat(listed[0]["enqueued_at"]).timestamp() < time.time() - DAY_MS / 1000
    assert main(["dlq", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "DEAD-LETTERED", "ACTOR", "TYPE", "CALL/SESSION", "RETRIES", "ERROR"]
    assert out[2].startswith(second)
    assert "end-of-call-report" in out[2]
    assert CALL in out[2]
    assert "ago)" in out[2]
    assert out[2].rstrip().endswith("OperationalError: gone")


def test_list_when_empty(servers: None, capsys: pytest.CaptureFixture[str]) -> None:
    """No dead letters: one line saying so."""
    assert main(["dlq", "list"]) == 0
    assert capsys.readouterr().out == f"no dead letters on {QUEUE}\n"


# -- requeue ------------------------------------------------------------------------------------


def test_a_dead_letter_moved_back_as_it_is_would_be_dropped_again(
    broker: RedisBroker, client: redis.Redis, redis_namespace: str
) -> None:
    """The trap requeue avoids: the same message moved back unchanged is too old for AgeLimit and never runs."""
    redis_id = dead_letter(broker, load_call("voicemail")[0])
    data = client.hget(f"{redis_namespace}:{QUEUE}.XQ.msgs", redis_id)
    script = client.register_script(dead_letters.REQUEUE_SCRIPT)
    keys = [f"{redis_namespace}:{QUEUE}{suffix}" for suffix in (".XQ", ".XQ.msgs", "", ".msgs")]
    assert script(keys=keys, args=[redis_id, data]) == [redis_id.encode()]
    calls = recording_actor(broker)
    run_worker_until(broker, lambda: bool(client.zcard(f"{redis_namespace}:{QUEUE}.XQ")))
    assert calls == []
    assert client.zrange(f"{redis_namespace}:{QUEUE}.XQ", 0, -1) == [redis_id.encode()]  # dead again


def test_requeue_all_is_consumed_by_a_real_worker_with_retries_reset(
    servers: None,
    broker: RedisBroker,
    client: redis.Redis,
    redis_namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`requeue --all` puts two-day-old, retried-out messages back fresh: a Dramatiq worker runs them."""
    bodies = load_call("voicemail")
    ids = [dead_letter(broker, bodies[0]), dead_letter(broker, bodies[7])]
    before = int(time.time() * 1000)
    assert main(["dlq", "requeue", "--all"]) == 0
    assert capsys.readouterr().out == f"requeued 2 message(s) on {QUEUE}\n"
    assert client.zcard(f"{redis_namespace}:{QUEUE}.XQ") == 0
    assert client.hlen(f"{redis_namespace}:{QUEUE}.XQ.msgs") == 0
    queued = queued_messages(client, redis_namespace)
    assert [m["options"]["redis_message_id"] for m in queued] == ids
    for requeued in queued:
        assert requeued["options"]["retries"] == 0
        assert requeued["message_timestamp"] >= before
        assert requeued["queue_name"] == QUEUE
        assert "eta" not in requeued["options"]
    calls = recording_actor(broker)
    run_worker_until(broker, lambda: len(calls) == 2)
    assert calls == [("status-update", 1_790_000_000_000), ("end-of-call-report", 1_790_000_000_000)]
    assert client.zcard(f"{redis_namespace}:{QUEUE}.XQ") == 0


def test_requeue_by_id_leaves_the_others(
    servers: None, broker: RedisBroker, client: redis.Redis, redis_namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the named dead letters move; an id that is not dead-lettered is named and exits 1."""
    keep = dead_letter(broker, load_call("voicemail")[0])
    move = dead_letter(broker, load_call("voicemail")[1])
    assert main(["dlq", "requeue", move, "no-such-id"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"requeued 1 message(s) on {QUEUE}",
        "  no-such-id: not dead-lettered (any more)",
    ]
    assert client.zrange(f"{redis_namespace}:{QUEUE}.XQ", 0, -1) == [keep.encode()]
    assert client.lrange(f"{redis_namespace}:{QUEUE}", 0, -1) == [move.encode()]
    assert main(["dlq", "requeue", move]) == 1  # moved already: not twice
    assert client.llen(f"{redis_namespace}:{QUEUE}") == 1


def test_requeue_leaves_an_unreadable_message(broker: RedisBroker, client: redis.Redis, redis_namespace: str) -> None:
    """A dead letter that is not JSON stays where it is and is reported, the readable ones move."""
    good = dead_letter(broker, load_call("voicemail")[0])
    client.zadd(f"{redis_namespace}:{QUEUE}.XQ", {"garbage": 1})
    client.hset(f"{redis_namespace}:{QUEUE}.XQ.msgs", "garbage", b"\xff not json")
    result = dead_letters.requeue(client, redis_namespace, QUEUE)
    assert (result.requeued, result.not_found, result.unreadable) == (1, [], ["garbage"])
    assert client.zrange(f"{redis_namespace}:{QUEUE}.XQ", 0, -1) == [b"garbage"]
    assert client.lrange(f"{redis_namespace}:{QUEUE}", 0, -1) == [good.encode()]


def test_requeue_needs_ids_or_all(servers: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither ids nor --all, or both, is a usage error."""
    assert main(["dlq", "requeue"]) == 2
    assert main(["dlq", "requeue", "x", "--all"]) == 2
    assert "give message ids or --all" in capsys.readouterr().err


@pytest.mark.slow
def test_requeued_event_is_applied_by_the_service_worker(
    db_url: str,
    db: psycopg.Connection[Any],
    redis_server_url: str,
    redis_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events the worker dropped as too old (never applied) are applied once requeued: the row appears."""
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_server_url,
        "INGEST_REDIS_NAMESPACE": redis_namespace,
        "SWEEP_INTERVAL_SECONDS": "1",
    }
    client = redis.Redis.from_url(redis_server_url)
    old = int(time.time() * 1000) - 2 * DAY_MS
    for raw in load_call("voicemail"):
        redis_id, data = encode_message(QUEUE, raw, 1_790_000_000_000)
        data = orjson.dumps({**orjson.loads(data), "message_timestamp": old})  # queued two days ago
        client.hset(f"{redis_namespace}:{QUEUE}.msgs", redis_id, data)
        client.rpush(f"{redis_namespace}:{QUEUE}", redis_id)
    total = len(load_call("voicemail"))
    with worker_process(env, threads=2):
        deadline = time.monotonic() + 60
        while client.zcard(f"{redis_namespace}:{QUEUE}.XQ") < total and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.zcard(f"{redis_namespace}:{QUEUE}.XQ") == total  # AgeLimit dropped them all
        assert db.execute("SELECT count(*) FROM call_events WHERE state = 'applied'").fetchone() == (0,)
        # Never processed, yet recorded: each expired event is in call_events as failed, with why.
        deadline = time.monotonic() + 10
        failed = "SELECT count(*) FROM call_events WHERE state = 'failed' AND last_error LIKE '%age limit%'"
        while db.execute(failed).fetchone() != (total,):
            assert time.monotonic() < deadline, "expired events were not recorded as failed"
            time.sleep(0.1)
        use_servers(monkeypatch, db_url=db_url, redis_url=redis_server_url, namespace=redis_namespace)
        assert main(["dlq", "requeue", "--all"]) == 0
        deadline = time.monotonic() + 60
        while db.execute("SELECT count(*) FROM call_events WHERE state = 'applied'").fetchone() != (total,):
            assert time.monotonic() < deadline, "requeued events were not applied"
            time.sleep(0.1)
    client.close()
    assert session_rows(db)[CALL] == EXPECTED["rows"][CALL]


# -- purge --------------------------------------------------------------------------------------


def test_purge_refuses_without_a_terminal_or_yes(
    servers: None, broker: RedisBroker, client: redis.Redis, redis_namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not on a terminal and no --yes: nothing is deleted, exit 2."""
    dead_letter(broker, load_call("voicemail")[0])
    assert main(["dlq", "purge", "--all"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert client.zcard(f"{redis_namespace}:{QUEUE}.XQ") == 1


@pytest.mark.parametrize(("answer", "deleted"), [("y\n", True), ("yes\n", True), ("n\n", False), ("\n", False)])
def test_purge_asks_on_a_terminal(
    servers: None,
    broker: RedisBroker,
    client: redis.Redis,
    redis_namespace: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    deleted: bool,
) -> None:
    """On a terminal purge asks y/N; only yes deletes, anything else (Enter too) keeps them."""
    dead_letter(broker, load_call("voicemail")[0])
    dead_letter(broker, load_call("voicemail")[1])
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    assert main(["dlq", "purge", "--all"]) == (0 if deleted else 1)
    captured = capsys.readouterr()
    assert f"Delete 2 dead-lettered message(s) from {QUEUE} for good? [y/N] " in captured.err
    assert captured.out == ("deleted 2 dead-lettered message(s)\n" if deleted else "nothing deleted\n")
    assert client.zcard(f"{redis_namespace}:{QUEUE}.XQ") == (0 if deleted else 2)
    assert client.hlen(f"{redis_namespace}:{QUEUE}.XQ.msgs") == (0 if deleted else 2)


def test_purge_by_id_with_yes(
    servers: None, broker: RedisBroker, client: redis.Redis, redis_namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--yes deletes the named dead letters without asking; the others and the queue are untouched."""
    gone = dead_letter(broker, load_call("voicemail")[0])
    kept = dead_letter(broker, load_call("voicemail")[1])
    assert main(["dlq", "purge", gone, "--yes"]) == 0
    assert capsys.readouterr().out == "deleted 1 dead-lettered message(s)\n"
    assert client.zrange(f"{redis_namespace}:{QUEUE}.XQ", 0, -1) == [kept.encode()]
    assert client.hkeys(f"{redis_namespace}:{QUEUE}.XQ.msgs") == [kept.encode()]
