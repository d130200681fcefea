"""The access-log entry each `ingest` command that reads session data or acts on it writes, and none when it cannot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import pytest
import redis
from support.apply import apply_bodies
from support.fixtures import load_call
from support.ops_cli import store_failed, use_servers
from support.ops_page_data import dead_letter

from ingest.cli import main
from ingest.ops.dead_letters import dead_letter_ids

BOOKING = "44447e38-9fd3-4025-bc93-2132b1b437d0"
CLIENT = "client-harbourside-dental"
OPERATOR = "hemi"
QUEUE = "vapi-events"
Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Served:
    db: Conn
    failed_event: int  # the booking call's end-of-call report, failed
    dead_letter: str  # a dead-lettered message on the main queue
    redis_url: str
    namespace: str


@pytest.fixture
def served(
    monkeypatch: pytest.MonkeyPatch, db_url: str, db: Conn, redis_server_url: str, redis_namespace: str
) -> Served:
    """The booking call applied but for its report (failed), one dead letter, and OPERATOR as the OS user."""
    use_servers(monkeypatch, db_url=db_url, redis_url=redis_server_url, namespace=redis_namespace)
    monkeypatch.setenv("LOGNAME", OPERATOR)
    bodies = load_call("inbound_booking")
    is_report = [orjson.loads(raw)["message"]["type"] == "end-of-call-report" for raw in bodies]
    apply_bodies(db, [raw for raw, report in zip(bodies, is_report, strict=True) if not report])
    [report] = [raw for raw, report in zip(bodies, is_report, strict=True) if report]
    failed = store_failed(db, report, RuntimeError("the database went away"))
    letter = dead_letter(redis_server_url, redis_namespace, load_call("voicemail")[0])
    return Served(db, failed, letter, redis_server_url, redis_namespace)


def entries(db: Conn) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT actor, actor_kind, surface, action, target_kind, target, target_count, client_id, details"
        " FROM data_access_log ORDER BY id"
    ).fetchall()


Expected = tuple[str, str | None, str | None, int | None, str | None, dict[str, Any]]
# (command, then the entry it writes: action, target kind, target, count, client, details)
COMMANDS: list[tuple[str, Callable[[Served], list[str]], Callable[[Served], Expected]]] = [
    (
        "calls list",
        lambda s: ["calls", "list", "--client", CLIENT, "--since", "2026-01-01T00:00Z"],
        lambda s: (
            "list_calls",
            "bulk",
            None,
            1,
            CLIENT,
            {"since": "2026-01-01T00:00:00+00:00", "assistant": None, "outcome": None, "limit": 50},
        ),
    ),
    (
        "calls show",
        lambda s: ["calls", "show", BOOKING.upper(), "--json"],
        lambda s: ("view_call", "call", BOOKING, 1, CLIENT, {}),
    ),
    (
        "events list",
        lambda s: ["events", "list", "--failed", "--type", "end-of-call-report"],
        lambda s: (
            "list_events",
            "bulk",
            None,
            1,
            None,
            {"states": ["failed"], "type": "end-of-call-report", "since": None, "limit": 50},
        ),
    ),
    (
        "events list --call",
        lambda s: ["events", "list", "--call", BOOKING.upper(), "--state", "failed"],
        lambda s: (
            "list_events",
            "call",
            BOOKING,
            1,
            None,
            {"states": ["failed"], "type": None, "since": None, "limit": 50},
        ),
    ),
    (
        "events show",
        lambda s: ["events", "show", str(s.failed_event)],
        lambda s: ("view_event", "event", str(s.failed_event), 1, None, {"call": BOOKING}),
    ),
    (
        "events reapply",
        lambda s: ["events", "reapply", str(s.failed_event), str(s.failed_event)],
        lambda s: ("reapply", "event", str(s.failed_event), 1, None, {}),
    ),
    (
        "events reapply --failed",
        lambda s: ["events", "reapply", "--failed"],
        lambda s: (
            "reapply",
            "bulk",
            None,
            1,
            None,
            {"states": ["failed"], "type": None, "since": None, "limit": None},
        ),
    ),
    (
        "events discard",
        lambda s: ["events", "discard", str(s.failed_event)],
        lambda s: ("discard", "event", str(s.failed_event), 1, None, {}),
    ),
    (
        "dlq requeue",
        lambda s: ["dlq", "requeue", s.dead_letter],
        lambda s: ("dlq_requeue", "dead_letter", s.dead_letter, 1, None, {}),
    ),
    (
        "dlq requeue --all",
        lambda s: ["dlq", "requeue", "--all"],
        lambda s: ("dlq_requeue", "bulk", None, None, None, {"all": True}),
    ),
    (
        "dlq purge",
        lambda s: ["dlq", "purge", s.dead_letter, "no-such-id", "--yes"],
        lambda s: ("dlq_purge", "bulk", None, 2, None, {"ids": [s.dead_letter, "no-such-id"]}),
    ),
    (
        "rebuild --call",
        lambda s: ["rebuild", "--call", BOOKING, "--dry-run"],
        lambda s: ("rebuild", "call", BOOKING, 1, None, {"dry_run": True}),
    ),
    (
        "rebuild --all",
        lambda s: ["rebuild", "--all"],
        lambda s: ("rebuild", "bulk", None, None, None, {"dry_run": False, "all": True}),
    ),
]


@pytest.mark.parametrize(("command", "expected"), [(c[1], c[2]) for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_each_command_writes_one_entry(
    served: Served,
    capsys: pytest.CaptureFixture[str],
    command: Callable[[Served], list[str]],
    expected: Callable[[Served], Expected],
) -> None:
    """Every read of session data and every administrative action of the CLI is one entry: the OS user, surface cli."""
    main(command(served))
    capsys.readouterr()
    assert entries(served.db) == [(OPERATOR, "os_user", "cli", *expected(served))]


def test_a_read_that_cannot_be_recorded_shows_nothing(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    """When the entry cannot be written (here: a user name over the 200-character bound), nothing is printed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOGNAME", "x" * 201)
        for command in (["calls", "show", BOOKING], ["events", "show", str(served.failed_event)]):
            with pytest.raises(psycopg.errors.CheckViolation):
                main(command)
            assert capsys.readouterr().out == ""
    assert entries(served.db) == []


def test_an_action_that_cannot_be_recorded_does_not_run(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    """No entry, no action: the event stays failed, the dead letter stays, the row is not rebuilt."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOGNAME", "x" * 201)
        for command in (
            ["events", "discard", str(served.failed_event)],
            ["events", "reapply", str(served.failed_event)],
            ["dlq", "purge", served.dead_letter, "--yes"],
            ["dlq", "requeue", "--all"],
        ):
            with pytest.raises(psycopg.errors.CheckViolation):
                main(command)
    state = served.db.execute("SELECT state FROM call_events WHERE id = %s", (served.failed_event,)).fetchone()
    assert state == ("failed",)
    client = redis.Redis.from_url(served.redis_url)
    assert dead_letter_ids(client, served.namespace, QUEUE) == [served.dead_letter]
    client.close()
    assert entries(served.db) == []
