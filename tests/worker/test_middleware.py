"""The worker's middleware in a real Dramatiq worker: retries that run out, commits that fail after the
worker thread has returned, and shutting down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import dramatiq
import psycopg
import pytest
from dramatiq.brokers.redis import RedisBroker
from support.fixtures import load_event

from ingest.body import loads_storable, parse_envelope
from ingest.errors import ConfigError, PermanentError
from ingest.settings import Settings
from worker.factory import make_broker
from worker.middleware import Resources
from worker.process import event_from_body, process

QUEUE = "middleware-test"


@pytest.fixture
def broker(db_url: str, redis_server_url: str, redis_namespace: str) -> Iterator[tuple[RedisBroker, Resources]]:
    settings = replace(
        Settings.from_env(),  # the run's sealing key
        database_url=db_url,
        redis_url=redis_server_url,
        queue_namespace=redis_namespace,
        queue_name=QUEUE,
        sweep_interval=3600.0,
    )
    made = make_broker(settings)
    yield made
    made[0].close()


def body() -> dict[str, Any]:
    return dict(loads_storable(parse_envelope(load_event("transcript_nul_byte.json"))[1]))


def state_of(db: psycopg.Connection[Any]) -> tuple[str, str] | None:
    row = db.execute("SELECT state, coalesce(last_error, '') FROM call_events").fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def test_an_event_whose_retries_run_out_is_recorded_failed(
    broker: tuple[RedisBroker, Resources], db: psycopg.Connection[Any]
) -> None:
    """Retries gives up (message.failed) before the Resources middleware looks: the event is failed, not pending."""
    dramatiq_broker, _ = broker
    attempts: list[int] = []

    def flaky(message_body: dict[str, Any], received_at_ms: int) -> None:
        attempts.append(received_at_ms)
        raise psycopg.errors.SerializationFailure("could not serialize access")

    actor = dramatiq.actor(
        flaky,
        broker=dramatiq_broker,
        actor_name="flaky",
        queue_name=QUEUE,
        max_retries=1,
        min_backoff=10,
        max_backoff=20,
    )
    worker = dramatiq.Worker(dramatiq_broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        actor.send(body(), 1_790_000_000_000)
        deadline = time.monotonic() + 20
        while (state := state_of(db)) is None or state[0] != "failed":
            assert time.monotonic() < deadline, f"never recorded failed: {state}, {len(attempts)} attempts"
            time.sleep(0.1)
    finally:
        worker.stop(timeout=10_000)
    assert len(attempts) == 2  # the first try and one retry
    assert "SerializationFailure" in state[1]


def test_shutdown_lets_the_messages_in_hand_finish(
    broker: tuple[RedisBroker, Resources], db: psycopg.Connection[Any]
) -> None:
    """A message still being applied when the worker stops commits through the group commit and pool,
    which close only after Dramatiq's worker threads have stopped."""
    dramatiq_broker, resources = broker
    started = threading.Event()

    def slow(message_body: dict[str, Any], received_at_ms: int) -> None:
        started.set()
        time.sleep(0.5)  # the worker is told to stop meanwhile
        process(resources.group, event_from_body(message_body, received_at_ms))

    actor = dramatiq.actor(slow, broker=dramatiq_broker, actor_name="slow", queue_name=QUEUE)
    worker = dramatiq.Worker(dramatiq_broker, worker_threads=1, worker_timeout=50)
    worker.start()
    actor.send(body(), 1_790_000_000_000)
    assert started.wait(10)
    stopping = time.monotonic()
    worker.stop(timeout=10_000)
    assert time.monotonic() - stopping < 5
    assert state_of(db) == ("applied", "")


def test_a_worker_without_keys_refuses_to_start(db_url: str, redis_server_url: str) -> None:
    """The worker's broker is not built without INGEST_ENCRYPTION_KEYS unless INGEST_PLAINTEXT=true says so."""
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_server_url, "INGEST_QUEUE": QUEUE}
    with pytest.raises(ConfigError, match="INGEST_ENCRYPTION_KEYS"):
        make_broker(Settings.from_env(env))
    broker, _ = make_broker(Settings.from_env({**env, "INGEST_PLAINTEXT": "true"}))
    broker.close()


def send_and_wait(
    dramatiq_broker: RedisBroker, actor: dramatiq.Actor[Any, Any], until: Callable[[], object], threads: int = 1
) -> None:
    """Send one message to ``actor`` in a real worker; stop the worker once ``until()`` is true."""
    worker = dramatiq.Worker(dramatiq_broker, worker_threads=threads, worker_timeout=50)
    worker.start()
    try:
        actor.send(body(), 1_790_000_000_000)
        deadline = time.monotonic() + 20
        while not until():
            assert time.monotonic() < deadline, "the worker never got there"
            time.sleep(0.05)
    finally:
        worker.stop(timeout=10_000)


def handing_over_actor(dramatiq_broker: RedisBroker, resources: Resources) -> dramatiq.Actor[Any, Any]:
    """An actor as the service declares its own: the event handed to the group commit."""

    def hand_over(message_body: dict[str, Any], received_at_ms: int) -> None:
        resources.hand_over(event_from_body(message_body, received_at_ms))

    return dramatiq.actor(
        hand_over,
        broker=dramatiq_broker,
        actor_name="hand_over",
        queue_name=QUEUE,
        max_retries=3,
        min_backoff=10,
        max_backoff=20,
        throws=(PermanentError,),
    )


def failing_session_inserts(db: psycopg.Connection[Any], errcode: str, times: int) -> None:
    """The first ``times`` inserts into user_sessions raise ``errcode`` (a sequence counts: it survives rollbacks)."""
    db.execute("CREATE SEQUENCE failures")
    db.execute(
        "CREATE FUNCTION fail_inserts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF nextval('failures') <= {times} THEN RAISE EXCEPTION 'simulated' USING ERRCODE = '{errcode}'; END IF;"
        " RETURN NEW; END $$"
    )
    db.execute(
        "CREATE TRIGGER fail_inserts BEFORE INSERT ON user_sessions FOR EACH ROW EXECUTE FUNCTION fail_inserts()"
    )


def dead_lettered(dramatiq_broker: RedisBroker) -> int:
    return int(dramatiq_broker.client.zcard(f"{dramatiq_broker.namespace}:{QUEUE}.XQ"))


def test_a_commit_that_fails_transiently_is_retried_by_dramatiq(
    broker: tuple[RedisBroker, Resources], db: psycopg.Connection[Any]
) -> None:
    """The worker thread has returned when its event's commit fails: the failure still reaches Retries,
    which enqueues the retry; the event waits pending meanwhile and is applied by the retry."""
    dramatiq_broker, resources = broker
    actor = handing_over_actor(dramatiq_broker, resources)
    failing_session_inserts(db, "40P01", 2)  # the batch's pass and the event's own savepoint
    send_and_wait(dramatiq_broker, actor, lambda: state_of(db) == ("applied", ""), threads=2)
    assert db.execute("SELECT attempts FROM call_events").fetchone() == (2,)  # the failed try and the retry
    assert dead_lettered(dramatiq_broker) == 0
    assert dramatiq_broker.client.hlen(f"{dramatiq_broker.namespace}:{QUEUE}.msgs") == 0  # everything acknowledged


def test_a_commit_that_fails_for_good_is_failed_and_dead_lettered(
    broker: tuple[RedisBroker, Resources], db: psycopg.Connection[Any]
) -> None:
    """A permanent error at commit is recorded failed and dead-lettered once, without retries."""
    dramatiq_broker, resources = broker
    actor = handing_over_actor(dramatiq_broker, resources)
    failing_session_inserts(db, "23502", 1_000)  # not_null_violation: the content, never retried
    send_and_wait(dramatiq_broker, actor, lambda: dead_lettered(dramatiq_broker), threads=2)
    state = state_of(db)
    assert state is not None
    assert state[0] == "failed"
    assert "NotNullViolation" in state[1]
    assert db.execute("SELECT attempts FROM call_events").fetchone() == (1,)
    assert dead_lettered(dramatiq_broker) == 1
