"""ingest.ops.backlog: one snapshot of the queue and the event log, read under one timeout policy."""

from __future__ import annotations

import contextlib
import time

import psycopg

from ingest.ops import backlog


def test_snapshot_reads_both_sources(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """With both servers up, a snapshot has queues and events and no failures."""
    client = backlog.redis_client(redis_server_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        taken = backlog.snapshot(client, lambda: contextlib.nullcontext(conn), redis_namespace, ["vapi-events"])
    client.close()
    assert taken.failures == {}
    assert taken.queues is not None
    assert [q.name for q in taken.queues] == ["vapi-events"]
    assert taken.events is not None
    assert taken.as_dict()["errors"] == {}


def test_a_dead_redis_is_reported_and_postgres_still_read(db_url: str) -> None:
    """Redis refusing connections is a failure in the snapshot, within the policy's timeout, not an exception."""
    client = backlog.redis_client("redis://127.0.0.1:1/0")
    with psycopg.connect(db_url, autocommit=True) as conn:
        taken = backlog.snapshot(client, lambda: contextlib.nullcontext(conn), "ns", ["vapi-events"])
    assert taken.queues is None
    assert taken.events is not None
    assert set(taken.failures) == {"redis"}
    assert taken.errors["redis"].startswith("ConnectionError")


def test_a_stuck_event_log_is_given_up_after_the_statement_timeout(db_url: str) -> None:
    """Counts blocked by a lock are cancelled by the policy's statement timeout and reported, not waited on."""
    with psycopg.connect(db_url) as locker:
        locker.execute("LOCK TABLE call_events IN ACCESS EXCLUSIVE MODE")
        with psycopg.connect(db_url, autocommit=True) as conn:
            started = time.monotonic()
            taken = backlog.snapshot(
                backlog.redis_client("redis://127.0.0.1:1/0"), lambda: contextlib.nullcontext(conn), "ns", ["q"]
            )
            waited = time.monotonic() - started
            assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)  # SET LOCAL: the session keeps its own
        locker.rollback()
    assert taken.events is None
    assert taken.errors["postgres"].startswith("QueryCanceled")
    assert 1.5 < waited < 10
