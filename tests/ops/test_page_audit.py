"""The /ops page's entries in the access log: a call viewed, the calls listed, each button pressed; by whom."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from starlette.testclient import TestClient
from support.fixtures import load_call
from support.ops_page_data import Seeded, dead_letter, seed

from ingest.web.app import create_app

USER, PASSWORD, TOKEN = "oncall", "correct horse battery", "ops-token-123"
BASIC = {"authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
SAME_ORIGIN = {**BASIC, "origin": "http://testserver"}
BEARER = {"authorization": f"Bearer {TOKEN}"}
CLIENT = "client-harbourside-dental"
Conn = psycopg.Connection[Any]


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_server_url,
        "INGEST_REDIS_NAMESPACE": redis_namespace,
        "VAPI_SECRET": "webhook-secret",
        "INGEST_OPS_USER": USER,
        "INGEST_OPS_PASSWORD": PASSWORD,
        "INGEST_OPS_TOKEN": TOKEN,
        # How the test run seals data at rest, if it does: create_app reads this dict only.
        **{name: os.environ[name] for name in ("INGEST_ENCRYPTION_KEYS", "INGEST_PLAINTEXT") if name in os.environ},
    }


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(env=env)) as test_client:
        yield test_client


@pytest.fixture
def seeded(db: Conn) -> Seeded:
    return seed(db)


def post(client: TestClient, path: str, fields: dict[str, Any], headers: dict[str, str]) -> Any:
    return client.post(
        path,
        content=urlencode(fields, doseq=True),
        headers={"content-type": "application/x-www-form-urlencoded", **headers},
        follow_redirects=False,
    )


def entries(db: Conn) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT actor, actor_kind, surface, action, target_kind, target, target_count, client_id, details"
        " FROM data_access_log ORDER BY id"
    ).fetchall()


def test_viewing_a_call_is_one_entry_naming_the_ops_user(client: TestClient, db: Conn, seeded: Seeded) -> None:
    """The call page records the basic-auth user viewing that call, its client and the number of events shown."""
    response = client.get(f"/ops/calls/{seeded.call_id}", headers=BASIC)
    assert response.status_code == 200
    [(actor, kind, surface, action, target_kind, target, count, client_id, details)] = entries(db)
    assert (actor, kind, surface, action) == (USER, "ops_user", "ops", "view_call")
    assert (target_kind, target, count, client_id) == ("call", seeded.call_id, 1, CLIENT)
    assert details["events"] > 1


def test_viewing_an_unknown_call_is_recorded_as_nothing_shown(client: TestClient, db: Conn) -> None:
    """A 404 call page is still an entry (what was asked for), with nothing shown; a token is named by its setting."""
    assert client.get("/ops/calls/sess_unknown", headers=BEARER).status_code == 404
    assert entries(db) == [
        ("INGEST_OPS_TOKEN", "ops_bearer", "ops", "view_call", "session", "sess_unknown", 0, None, {"events": 0})
    ]


def test_the_overview_is_one_list_entry(client: TestClient, db: Conn, seeded: Seeded) -> None:
    """The overview lists calls and failures: one entry with the calls shown and the filter asked for."""
    assert client.get(f"/ops?client={CLIENT}&from=2026-01-01", headers=BASIC).status_code == 200
    [entry] = entries(db)
    assert entry[:8] == (USER, "ops_user", "ops", "list_calls", "bulk", None, 1, CLIENT)
    assert entry[8] == {
        "page": 1,
        "assistant": None,
        "outcome": None,
        "from": "2026-01-01",
        "to": None,
        "failures": 2,
    }


def test_polling_and_refusals_are_not_entries(client: TestClient, db: Conn, seeded: Seeded) -> None:
    """The stats the page polls hold no session data; refused requests read nothing."""
    assert client.get("/ops/stats.json", headers=BASIC).status_code == 200
    assert client.get(f"/ops/calls/{seeded.call_id}").status_code == 401
    assert post(client, "/ops/events/discard", {"event_id": seeded.hostile_event_id}, BASIC).status_code == 403
    assert entries(db) == []


def test_retry_and_discard_are_entries_of_their_events(client: TestClient, db: Conn, seeded: Seeded) -> None:
    """Retrying one event names it; discarding several is one bulk entry with their ids."""
    assert post(client, "/ops/events/retry", {"event_id": seeded.report_event_id}, SAME_ORIGIN).status_code == 303
    fields = {"event_id": [seeded.hostile_event_id, seeded.report_event_id]}
    assert post(client, "/ops/events/discard", fields, BEARER).status_code == 200
    ids = sorted([seeded.hostile_event_id, seeded.report_event_id])
    assert entries(db) == [
        (USER, "ops_user", "ops", "reapply", "event", str(seeded.report_event_id), 1, None, {}),
        ("INGEST_OPS_TOKEN", "ops_bearer", "ops", "discard", "bulk", None, 2, None, {"ids": ids}),
    ]


def test_requeue_and_confirmed_purge_are_entries(
    client: TestClient, db: Conn, env: dict[str, str], seeded: Seeded
) -> None:
    """Requeue and purge name their dead letter; the purge's question page is no entry, its confirmation is."""
    redis_url, namespace = env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"]
    requeued = dead_letter(redis_url, namespace, load_call("voicemail")[0])
    assert post(client, "/ops/dead-letters/requeue", {"id": requeued}, SAME_ORIGIN).status_code == 303
    purged = dead_letter(redis_url, namespace, load_call("voicemail")[1])
    assert post(client, "/ops/dead-letters/purge", {"id": purged}, SAME_ORIGIN).status_code == 200  # the question
    assert post(client, "/ops/dead-letters/purge", {"id": purged, "confirm": "yes"}, SAME_ORIGIN).status_code == 303
    assert entries(db) == [
        (USER, "ops_user", "ops", "dlq_requeue", "dead_letter", requeued, 1, None, {}),
        (USER, "ops_user", "ops", "dlq_purge", "dead_letter", purged, 1, None, {}),
    ]
