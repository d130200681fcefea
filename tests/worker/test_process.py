"""Failure handling: what is retried, what is recorded as failed, and nothing is lost either way."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest
from psycopg_pool import ConnectionPool
from support.apply import PRIVACY
from support.fixtures import load_call, load_event
from support.rows import event_states

from ingest import queries
from ingest.errors import PermanentError, Unmappable, is_retryable
from ingest.event import Event
from worker.group_commit import GroupCommit
from worker.process import event_from_body, process


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (psycopg.errors.DeadlockDetected(), True),
        (psycopg.errors.SerializationFailure(), True),
        (psycopg.errors.AdminShutdown(), True),
        (psycopg.OperationalError("connection refused"), True),
        (psycopg.errors.NotNullViolation(), False),
        (psycopg.errors.InvalidTextRepresentation(), False),
        (Unmappable("call id"), False),
        (KeyError("bug"), False),
        (TimeoutError(), True),
    ],
)
def test_errors_are_classified_by_meaning(error: BaseException, retryable: bool) -> None:
    """Connection and concurrency failures are retried; bad data and bugs are not."""
    assert is_retryable(error) is retryable


def test_permanent_failure_is_recorded_and_raised(db: psycopg.Connection[Any], db_url: str) -> None:
    """An unmappable event is kept in call_events as failed with its error, and raised as permanent."""
    event = event_from_body(orjson.loads(load_event("status_update_bad_call_id.json")), 1_790_000_000_000)
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool, pytest.raises(PermanentError):
        process(GroupCommit(pool, PRIVACY), event)
    assert event_states(db) == {"failed": 1}


def test_transient_failure_is_raised_for_a_retry(db: psycopg.Connection[Any], db_url: str) -> None:
    """A deadlock-like failure leaves the event pending with its error and re-raises it for Dramatiq."""
    event = Event.from_body(orjson.loads(load_call("voicemail")[0]), 1_790_000_000_000)
    db.execute(
        "CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " RAISE EXCEPTION 'simulated' USING ERRCODE = '40P01', DETAIL = 'Failing row contains (+64211234567).';"
        " END $$"
    )
    db.execute("CREATE TRIGGER fail_once BEFORE INSERT ON user_sessions FOR EACH ROW EXECUTE FUNCTION fail_once()")
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        group = GroupCommit(pool, PRIVACY)
        with pytest.raises(psycopg.errors.DeadlockDetected):
            process(group, event)
        state, error = db.execute("SELECT state, last_error FROM call_events").fetchone() or (None, "")
        assert state == "pending"
        assert error == "DeadlockDetected: simulated"  # the DETAIL quoting the row's values is not kept
        # Dramatiq holds the retry: the web processes' drainer must not queue the event again.
        assert db.execute(queries.CLAIM_UNQUEUED_EVENTS, {"limit": 10}).fetchall() == []
        db.execute("DROP TRIGGER fail_once ON user_sessions")
        process(group, event)  # the retry
        group.close()
    assert event_states(db) == {"applied": 1}


@pytest.mark.parametrize("args", [("not a body", 1), ({"message": "x"}, 1), ({"message": {}}, "soon")])
def test_malformed_queue_messages_are_permanent(args: tuple[Any, Any]) -> None:
    """A queued message that does not carry a webhook body can never be applied."""
    with pytest.raises(PermanentError):
        event_from_body(*args)
