"""The /ops page's Anomalies panel: the open anomalies and the last scan, and acknowledging one with a reason."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
import redis
from starlette.testclient import TestClient
from support.app_env import app_env
from support.personal_data import CUSTOMER

from ingest.ops import flagged_callers
from ingest.ops.page.anomaly_panel import ANOMALIES_SHOWN
from ingest.web.app import create_app

USER, PASSWORD, TOKEN = "oncall", "correct horse battery", "ops-token-123"
BASIC = {"authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
SAME_ORIGIN = {**BASIC, "origin": "http://testserver"}
BEARER = {"authorization": f"Bearer {TOKEN}"}
REASON = "ticket OPS-5120: the clinic ran a recall campaign"
CALLER = "anon:5f0c2a9d81b74e63a0c4d2e8f1b3a6c7"
Conn = psycopg.Connection[Any]


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str) -> dict[str, str]:
    return app_env(
        db_url,
        redis_server_url,
        redis_namespace,
        INGEST_OPS_USER=USER,
        INGEST_OPS_PASSWORD=PASSWORD,
        INGEST_OPS_TOKEN=TOKEN,
    )


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(env=env)) as test_client:
        yield test_client


def add_anomaly(
    db: Conn,
    kind: str = "volume",
    subject_kind: str = "client",
    subject: str = "client-harbourside-dental",
    *,
    detected_minutes_ago: int = 5,
    observed: float = 42,
    baseline: float | None = 6,
    score: float | None = 6.5,
    acknowledged: bool = False,
) -> int:
    """One call_anomalies row for client-harbourside-dental, over the hour before it was detected; its id."""
    row = db.execute(
        "INSERT INTO call_anomalies (kind, client_id, subject_kind, subject, window_start, window_end,"
        " observed, baseline, score, detected_at, last_seen_at, acknowledged_at, acknowledged_by, ack_reason)"
        " VALUES (%(kind)s, 'client-harbourside-dental', %(subject_kind)s, %(subject)s,"
        " now() - make_interval(mins => %(ago)s + 60), now() - make_interval(mins => %(ago)s),"
        " %(observed)s, %(baseline)s, %(score)s, now() - make_interval(mins => %(ago)s), now(),"
        " CASE WHEN %(ack)s THEN now() END, CASE WHEN %(ack)s THEN 'someone' END,"
        " CASE WHEN %(ack)s THEN 'seen before' END)"
        " RETURNING id",
        {
            "kind": kind,
            "subject_kind": subject_kind,
            "subject": subject,
            "ago": detected_minutes_ago,
            "observed": observed,
            "baseline": baseline,
            "score": score,
            "ack": acknowledged,
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def acknowledge(client: TestClient, fields: dict[str, Any], headers: dict[str, str] = SAME_ORIGIN) -> Any:
    return client.post(
        "/ops/anomalies/acknowledge",
        content=urlencode(fields, doseq=True),
        headers={"content-type": "application/x-www-form-urlencoded", **headers},
        follow_redirects=False,
    )


def ack_state(db: Conn, anomaly_id: int) -> tuple[Any, ...] | None:
    return db.execute(
        "SELECT acknowledged_at IS NOT NULL, acknowledged_by, ack_reason FROM call_anomalies WHERE id = %s",
        (anomaly_id,),
    ).fetchone()


def ack_entries(db: Conn) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT actor, actor_kind, surface, target_kind, target, reason"
        " FROM data_access_log WHERE action = 'anomaly_ack' ORDER BY id"
    ).fetchall()


def test_panel_lists_open_anomalies_newest_first(client: TestClient, db: Conn) -> None:
    """Open anomalies are listed newest first with their figures and a reason form; acknowledged ones are not."""
    older = add_anomaly(db, detected_minutes_ago=30)
    newer = add_anomaly(db, "repeat_caller", "caller", CALLER, observed=7, baseline=None, score=1.4)
    done = add_anomaly(db, "cost", acknowledged=True)
    page = client.get("/ops", headers=BASIC).text
    assert 'id="anomalies"' in page
    assert "2 open" in page
    assert "1 volume, 1 repeat caller open" in page
    assert page.index(f'id="anomaly-{newer}"') < page.index(f'id="anomaly-{older}"')
    assert f'id="anomaly-{done}"' not in page
    assert CALLER in page
    assert '<td class="num">42</td>' in page
    assert '<td class="num">6.5</td>' in page
    assert '<td class="num">1.4</td>' in page
    assert f'<input type="hidden" name="id" value="{newer}">' in page
    assert '<input name="reason" required maxlength="500"' in page
    assert "No anomaly scan yet" in page


def test_panel_shows_the_newest_open_anomalies_only(client: TestClient, db: Conn) -> None:
    """Past ``ANOMALIES_SHOWN`` open anomalies the panel shows the newest and says how many are open."""
    oldest = add_anomaly(db, detected_minutes_ago=600)
    db.execute(
        "INSERT INTO call_anomalies (kind, client_id, subject_kind, subject, window_start, window_end, observed,"
        " detected_at) SELECT 'vapi_signal', 'client-' || n, 'client', 'client-' || n, now() - interval '1 hour',"
        " now(), n, now() - make_interval(mins => n) FROM generate_series(1, %s) AS n",
        (ANOMALIES_SHOWN,),
    )
    page = client.get("/ops", headers=BASIC).text
    assert f"{ANOMALIES_SHOWN + 1} open, newest {ANOMALIES_SHOWN} shown" in page
    assert page.count('data-action="acknowledge"') == ANOMALIES_SHOWN
    assert f'id="anomaly-{oldest}"' not in page


def test_panel_shows_the_last_scan(client: TestClient, db: Conn) -> None:
    """The last scan is named with its runner, what it found of every kind, and what it skipped."""
    db.execute(
        "INSERT INTO anomaly_scans (started_at, finished_at, runner, found, new, updated, skipped)"
        " VALUES (now() - interval '2 hours', now() - interval '2 hours', 'cli', '{}', 0, 0, '{}'),"
        " (now() - interval '1 minute', now(), 'worker', %s, 1, 2, %s)",
        ('{"volume": 2, "vapi_signal": 1}', ["repeat_caller", "outbound_destination"]),
    )
    page = client.get("/ops", headers=BASIC).text
    assert "by worker: found" in page
    assert "2 volume, 0 repeat caller, 0 short calls, 0 cost, 0 outbound destination, 1 vapi signal;" in page
    assert "1 new, 2 updated" in page
    assert "(skipped: repeat_caller, outbound_destination)" in page
    assert "No open anomalies." in page


def test_acknowledge_with_a_reason(client: TestClient, db: Conn) -> None:
    """A reason acknowledges the anomaly, records it in the access log, and it leaves the open list."""
    anomaly = add_anomaly(db)
    response = acknowledge(client, {"id": anomaly, "reason": f"  {REASON} ", "next": "/ops"})
    assert response.status_code == 303
    assert response.headers["location"] == f"/ops?acknowledged={anomaly}"
    assert ack_state(db, anomaly) == (True, USER, REASON)
    assert ack_entries(db) == [(USER, "ops_user", "ops", "anomaly", str(anomaly), REASON)]
    page = client.get(response.headers["location"], headers=BASIC).text
    assert f"Acknowledged anomaly {anomaly}" in page
    assert f'id="anomaly-{anomaly}"' not in page
    assert "No open anomalies." in page


def test_acknowledge_by_bearer_answers_json(client: TestClient, db: Conn) -> None:
    """A tool gets the acknowledged anomaly back as JSON, recorded under the token's name."""
    anomaly = add_anomaly(db)
    response = acknowledge(client, {"id": anomaly, "reason": REASON}, BEARER)
    assert response.status_code == 200
    body = response.json()["acknowledged"]
    assert (body["id"], body["kind"], body["ack_reason"]) == (anomaly, "volume", REASON)
    assert ack_entries(db) == [("INGEST_OPS_TOKEN", "ops_bearer", "ops", "anomaly", str(anomaly), REASON)]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, "reason_required"),
        ({"reason": ""}, "reason_required"),
        ({"reason": "   "}, "reason_required"),
        ({"reason": f"caller {CUSTOMER} is a known prankster"}, "invalid_reason"),
        ({"reason": "x" * 501}, "invalid_reason"),
    ],
    ids=["missing", "empty", "blank", "number-in-reason", "too-long"],
)
def test_acknowledge_without_a_proper_reason_is_refused(
    client: TestClient, db: Conn, fields: dict[str, str], error: str
) -> None:
    """No reason (or one holding personal data) is a 400 saying why; the anomaly stays open and nothing is recorded."""
    anomaly = add_anomaly(db)
    response = acknowledge(client, {"id": anomaly, **fields}, {**SAME_ORIGIN, "accept": "application/json"})
    assert (response.status_code, response.json()["error"]) == (400, error)
    page = acknowledge(client, {"id": anomaly, **fields}, {**SAME_ORIGIN, "accept": "text/html"})
    assert page.status_code == 400
    assert "<h1>Not acknowledged</h1>" in page.text
    assert CUSTOMER not in response.text + page.text
    assert ack_state(db, anomaly) == (False, None, None)
    assert ack_entries(db) == []
    assert f'id="anomaly-{anomaly}"' in client.get("/ops", headers=BASIC).text


@pytest.mark.parametrize(
    "fields",
    [{"reason": REASON}, {"id": "abc", "reason": REASON}, {"id": ["1", "2"], "reason": REASON}],
    ids=["no-id", "not-a-number", "two-ids"],
)
def test_acknowledge_takes_one_anomaly_id(client: TestClient, db: Conn, fields: dict[str, Any]) -> None:
    """The form names exactly one anomaly by its numeric id, else a 400."""
    add_anomaly(db)
    response = acknowledge(client, fields)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_id"
    assert ack_entries(db) == []


def test_acknowledge_unknown_or_acknowledged_anomaly(client: TestClient, db: Conn) -> None:
    """An id with no anomaly is a 404, an anomaly already acknowledged a 409; neither is recorded."""
    done = add_anomaly(db, acknowledged=True)
    missing = acknowledge(client, {"id": done + 1000, "reason": REASON})
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    again = acknowledge(client, {"id": done, "reason": REASON})
    assert (again.status_code, again.json()["error"]) == (409, "already_acknowledged")
    assert ack_state(db, done) == (True, "someone", "seen before")
    assert ack_entries(db) == []


def test_acknowledge_refuses_cross_site_posts_and_gets(client: TestClient, db: Conn) -> None:
    """Acknowledging is a same-origin POST: another site's form gets a 403, a GET a 405, and neither acts."""
    anomaly = add_anomaly(db)
    fields = {"id": anomaly, "reason": REASON}
    assert acknowledge(client, fields, {**BASIC, "origin": "https://evil.example"}).status_code == 403
    assert client.get(f"/ops/anomalies/acknowledge?{urlencode(fields)}", headers=BASIC).status_code == 405
    assert acknowledge(client, fields, {}).status_code == 401
    assert ack_state(db, anomaly) == (False, None, None)
    assert ack_entries(db) == []


def test_acknowledging_a_repeat_caller_stops_refusing_it(
    client: TestClient, db: Conn, redis_server_url: str, redis_namespace: str
) -> None:
    """An acknowledged repeat caller leaves the flagged-caller set at once; other callers and kinds leave it as is."""
    other = "anon:0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a"
    caller = add_anomaly(db, "repeat_caller", "caller", CALLER)
    still = add_anomaly(db, "repeat_caller", "caller", other)
    volume = add_anomaly(db)
    store = redis.Redis.from_url(redis_server_url, decode_responses=True)
    try:
        flagged_callers.publish(store, redis_namespace, {CALLER: caller, other: still})
        assert acknowledge(client, {"id": volume, "reason": REASON}).status_code == 303
        assert store.hgetall(flagged_callers.key(redis_namespace)) == {CALLER: str(caller), other: str(still)}
        assert acknowledge(client, {"id": caller, "reason": REASON}).status_code == 303
        assert store.hgetall(flagged_callers.key(redis_namespace)) == {other: str(still)}
    finally:
        store.close()
