"""GET /ops and its actions over HTTP, against real Postgres and Redis: access, content, retry, discard."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from starlette.testclient import TestClient
from support.ops_page_data import (
    CUSTOMER,
    HOSTILE_ERROR,
    REPORT_ERROR,
    TRANSCRIPT_SNIPPET,
    QueueState,
    Seeded,
    fill_queue,
    seed,
)

from ingest.dev.embedded import _free_port
from ingest.errors import ConfigError
from ingest.web.app import create_app

USER, PASSWORD, TOKEN = "oncall", "correct horse battery", "ops-token-123"
ORIGIN = "http://testserver"


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


BEARER = {"authorization": f"Bearer {TOKEN}"}


def make_env(db_url: str, redis_url: str, namespace: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "INGEST_REDIS_NAMESPACE": namespace,
        "VAPI_SECRET": "webhook-secret",
        "INGEST_OPS_USER": USER,
        "INGEST_OPS_PASSWORD": PASSWORD,
        "INGEST_OPS_TOKEN": TOKEN,
        **extra,
    }


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str) -> dict[str, str]:
    return make_env(db_url, redis_server_url, redis_namespace)


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(env=env)) as test_client:
        yield test_client


@pytest.fixture
def seeded(db: psycopg.Connection[Any]) -> Seeded:
    return seed(db)


def post_form(client: TestClient, action: str, fields: dict[str, Any], headers: dict[str, str]) -> Any:
    return client.post(
        f"/ops/events/{action}",
        content=urlencode(fields, doseq=True),
        headers={"content-type": "application/x-www-form-urlencoded", **headers},
        follow_redirects=False,
    )


def event_state(db: psycopg.Connection[Any], event_id: int) -> str:
    row = db.execute("SELECT state FROM call_events WHERE id = %s", (event_id,)).fetchone()
    assert row is not None
    return str(row[0])


# -- access -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(password="wrong"),
        basic(user="someone", password=PASSWORD),
        {"authorization": "Bearer wrong-token"},
        {"authorization": "Basic not-base64!"},
        {"authorization": f"Token {TOKEN}"},
    ],
    ids=["none", "wrong-password", "wrong-user", "wrong-token", "malformed-basic", "unknown-scheme"],
)
def test_refused_without_valid_credentials(client: TestClient, headers: dict[str, str]) -> None:
    """No or wrong credentials get a 401 with a Basic challenge, and nothing of the page or its secrets."""
    for path in ("/ops", "/ops/stats.json", "/ops/calls/whatever"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers.get_list("www-authenticate")[0] == 'Basic realm="vapi-ingest ops"'
        assert PASSWORD not in response.text
        assert TOKEN not in response.text
    response = post_form(client, "retry", {"event_id": 1}, {**headers, "origin": ORIGIN})
    assert response.status_code == 401


def test_basic_and_bearer_both_work(client: TestClient, seeded: Seeded) -> None:
    """A browser's basic credentials and a tool's bearer token each open the page."""
    for headers in (basic(), BEARER):
        response = client.get("/ops", headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert client.get("/ops/stats.json", headers=headers).status_code == 200


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_disabled_when_unconfigured(db_url: str, redis_server_url: str, redis_namespace: str, accept: str) -> None:
    """With no ops credentials configured every /ops path is a 404 saying how to enable it, even with credentials."""
    env = make_env(db_url, redis_server_url, redis_namespace, INGEST_OPS_USER="", INGEST_OPS_PASSWORD="")
    del env["INGEST_OPS_TOKEN"]
    with TestClient(create_app(env=env)) as client:
        for path in ("/ops", "/ops/stats.json"):
            response = client.get(path, headers={"accept": accept, **basic()})
            assert response.status_code == 404
            assert "INGEST_OPS_PASSWORD" in response.text
        assert post_form(client, "retry", {"event_id": 1}, {**basic(), "origin": ORIGIN}).status_code == 404
        if accept == "application/json":
            assert response.json()["error"] == "ops_disabled"
        else:
            assert response.headers["content-type"].startswith("text/html")


def test_only_a_token_needs_no_password(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """A token alone enables the page for tools; the challenge is then Bearer, so browsers do not prompt."""
    env = make_env(db_url, redis_server_url, redis_namespace, INGEST_OPS_USER="", INGEST_OPS_PASSWORD="")
    with TestClient(create_app(env=env)) as client:
        assert client.get("/ops", headers=BEARER).status_code == 200
        refused = client.get("/ops", headers=basic())
        assert refused.status_code == 401
        assert refused.headers.get_list("www-authenticate") == ['Bearer realm="vapi-ingest ops"']


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"INGEST_OPS_USER": "ops", "INGEST_OPS_PASSWORD": ""}, "INGEST_OPS_PASSWORD"),
        ({"INGEST_OPS_USER": "", "INGEST_OPS_PASSWORD": "pw"}, "INGEST_OPS_USER"),
        ({"INGEST_OPS_USER": "a:b", "INGEST_OPS_PASSWORD": "pw"}, "INGEST_OPS_USER"),
        ({"INGEST_OPS_ORIGINS": "not a url"}, "INGEST_OPS_ORIGINS"),
    ],
)
def test_half_configured_auth_stops_the_app(extra: dict[str, str], named: str) -> None:
    """A user without a password (or the reverse) is a configuration error naming the variable."""
    env = make_env("postgresql://nowhere/db", "redis://nowhere:6379/0", "ns", **extra)
    with pytest.raises(ConfigError, match=named):
        create_app(env=env)


def test_security_headers(client: TestClient) -> None:
    """Pages are never cached or framed, and only scripts carrying the response's nonce run."""
    response = client.get("/ops", headers=basic())
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    policy = response.headers["content-security-policy"]
    nonce = policy.split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'<script nonce="{nonce}">' in response.text
    assert "frame-ancestors 'none'" in policy
    assert "form-action 'self'" in policy


# -- content ----------------------------------------------------------------------------------


def test_overview_shows_numbers_failures_and_calls(client: TestClient, seeded: Seeded) -> None:
    """The overview lists the failures with their errors and buttons, and the call with masked numbers."""
    page = client.get("/ops", headers=basic()).text
    assert f'id="event-{seeded.report_event_id}"' in page
    assert REPORT_ERROR in page
    assert f'data-action="retry" data-event="{seeded.report_event_id}"' in page
    assert f'data-action="discard" data-event="{seeded.report_event_id}"' in page
    assert f'data-call="{seeded.call_id}"' in page
    assert '<div class="n" data-stat="events.failed">2</div>' in page
    assert "•••4567" in page
    assert CUSTOMER not in page
    assert CUSTOMER[1:] not in page
    assert TRANSCRIPT_SNIPPET.replace("'", "&#39;") not in page  # transcripts only on the call's page
    assert PASSWORD not in page
    assert TOKEN not in page


def test_hostile_error_text_is_escaped(client: TestClient, seeded: Seeded) -> None:
    """An event error holding markup is shown as text, on the overview and on its call's page."""
    for path in ("/ops", "/ops/calls/call_8e21f0f7b3c94d6a"):
        page = client.get(path, headers=basic()).text
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert (
            "&lt;script&gt;alert(&#34;ops&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; &amp; friends" in page
        )
    assert HOSTILE_ERROR not in page


def test_call_page_shows_row_timeline_and_events(client: TestClient, seeded: Seeded) -> None:
    """A call's page shows its row (numbers masked), transcript, lifecycle and every event in any state."""
    response = client.get(f"/ops/calls/{seeded.call_id}", headers=basic())
    assert response.status_code == 200
    page = response.text
    assert "client-harbourside-dental" in page
    assert "•••4567" in page
    assert CUSTOMER not in page
    assert "customer-ended-call" in page
    assert 'data-state="applied"' in page
    assert f'<tr id="event-{seeded.report_event_id}" data-state="failed">' in page
    assert "No transcript." in page  # the report carrying it failed
    assert "storage.vapi.ai" not in page  # recording links are presigned URLs: never shown


def test_unknown_call_is_404(client: TestClient, seeded: Seeded) -> None:
    """A key with neither a row nor events is a 404 page."""
    assert client.get("/ops/calls/0c6b4f3e-0000-4000-8000-000000000000", headers=basic()).status_code == 404


def test_stats_json_matches_queue_and_events(client: TestClient, env: dict[str, str], seeded: Seeded) -> None:
    """stats.json reports exactly what Redis and call_events hold."""
    state = QueueState()
    fill_queue(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"], state=state)
    stats = client.get("/ops/stats.json", headers=BEARER).json()
    [queue] = stats["queues"]
    assert queue["name"] == "vapi-events"
    assert (queue["ready"], queue["in_flight"], queue["delayed"], queue["dead"]) == (3, 1, 2, 1)
    assert state.oldest_age_s <= queue["oldest_age_s"] < state.oldest_age_s + 10
    events = stats["events"]
    assert (events["pending"], events["waiting"], events["failed"]) == (0, 0, 2)
    assert {group["error"] for group in events["failed_by_error"]} == {REPORT_ERROR, f"Unmappable: {HOSTILE_ERROR}"}
    assert events["applied_last_minute"] == 42  # every other event of the call, applied just now
    assert stats["errors"] == []


def test_page_still_works_when_redis_is_down(db_url: str, redis_namespace: str, seeded: Seeded) -> None:
    """With Redis unreachable the page still shows failures and calls, and says what it could not read."""
    env = make_env(db_url, f"redis://127.0.0.1:{_free_port()}/0", redis_namespace)
    with TestClient(create_app(env=env)) as client:
        stats = client.get("/ops/stats.json", headers=BEARER).json()
        assert stats["queues"] is None
        assert stats["errors"] == ["redis: ConnectionError"]
        assert stats["events"]["failed"] == 2
        page = client.get("/ops", headers=basic())
        assert page.status_code == 200
        assert "Could not read redis: ConnectionError" in page.text
        assert f'id="event-{seeded.report_event_id}"' in page.text


def test_stats_json_of_an_empty_service(client: TestClient) -> None:
    """With nothing queued and nothing recorded, every number is zero and the oldest age is null."""
    stats = client.get("/ops/stats.json", headers=basic()).json()
    assert stats["queues"][0] | {"name": None} == {
        "name": None,
        "ready": 0,
        "in_flight": 0,
        "delayed": 0,
        "dead": 0,
        "oldest_age_s": None,
    }
    assert stats["events"]["failed"] == 0
    assert stats["events"]["applied_last_minute"] == 0


# -- actions ----------------------------------------------------------------------------------


def test_retry_reapplies_a_failed_event(client: TestClient, db: psycopg.Connection[Any], seeded: Seeded) -> None:
    """Retry re-applies the failed report: the event becomes applied and the row gains the report's values."""
    before = db.execute("SELECT call_summary FROM user_sessions WHERE call_id = %s", (seeded.call_id,)).fetchone()
    assert before == (None,)
    fields = {"event_id": seeded.report_event_id, "next": f"/ops/calls/{seeded.call_id}"}
    response = post_form(client, "retry", fields, {**basic(), "origin": ORIGIN})
    assert response.status_code == 303
    assert response.headers["location"] == f"/ops/calls/{seeded.call_id}?retried=1&of=1"
    assert event_state(db, seeded.report_event_id) == "applied"
    after = db.execute(
        "SELECT call_summary, call_transcript FROM user_sessions WHERE call_id = %s", (seeded.call_id,)
    ).fetchone()
    assert after is not None
    assert after[0].startswith("Hemi Walker called")
    assert TRANSCRIPT_SNIPPET in after[1]
    page = client.get(response.headers["location"], headers=basic()).text
    assert "Re-applied 1 of 1 event(s)." in page
    assert TRANSCRIPT_SNIPPET.replace("'", "&#39;") in page


def test_retry_by_bearer_answers_json(client: TestClient, db: psycopg.Connection[Any], seeded: Seeded) -> None:
    """A tool's retry needs no Origin and gets the result as JSON, failures with their reasons."""
    fields = {"event_id": [seeded.report_event_id, seeded.hostile_event_id]}
    response = post_form(client, "retry", fields, BEARER)
    assert response.status_code == 200
    result = response.json()
    assert (result["applied"], result["total"]) == (1, 2)
    [failure] = result["failures"]
    assert failure["event_id"] == seeded.hostile_event_id
    assert "not a UUID" in failure["reason"]
    assert event_state(db, seeded.hostile_event_id) == "failed"


def test_discard_marks_ignored(client: TestClient, db: psycopg.Connection[Any], seeded: Seeded) -> None:
    """Discard marks the failed event ignored; it leaves the failures list and the failed count."""
    response = post_form(client, "discard", {"event_id": seeded.hostile_event_id}, {**basic(), "origin": ORIGIN})
    assert response.status_code == 303
    assert response.headers["location"] == "/ops?discarded=1"
    assert event_state(db, seeded.hostile_event_id) == "ignored"
    page = client.get("/ops?discarded=1", headers=basic()).text
    assert "Discarded 1 event(s): marked ignored." in page
    assert f'id="event-{seeded.hostile_event_id}"' not in page
    assert client.get("/ops/stats.json", headers=basic()).json()["events"]["failed"] == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "http://testserver.evil.example"},
        {"origin": "null"},
        {"referer": "http://evil.example/ops"},
        {},
        {"origin": ORIGIN, "sec-fetch-site": "cross-site"},
    ],
    ids=["other-origin", "lookalike-origin", "null-origin", "other-referer", "no-origin", "fetch-site"],
)
def test_cross_site_post_is_refused(
    client: TestClient, db: psycopg.Connection[Any], seeded: Seeded, headers: dict[str, str]
) -> None:
    """A POST with basic credentials that does not come from this origin is a 403 and changes nothing."""
    for action in ("retry", "discard"):
        response = post_form(client, action, {"event_id": seeded.report_event_id}, {**basic(), **headers})
        assert response.status_code == 403
        assert response.json()["error"] == "cross_origin"
    assert event_state(db, seeded.report_event_id) == "failed"


def test_same_origin_referer_and_trusted_origin_pass(
    db_url: str, redis_server_url: str, redis_namespace: str, db: psycopg.Connection[Any], seeded: Seeded
) -> None:
    """Without Origin a same-origin Referer will do; INGEST_OPS_ORIGINS adds the proxy's public origin."""
    env = make_env(db_url, redis_server_url, redis_namespace, INGEST_OPS_ORIGINS="https://ops.example.com")
    with TestClient(create_app(env=env)) as client:
        referer = {**basic(), "referer": "http://testserver/ops/calls/x"}
        assert post_form(client, "discard", {"event_id": seeded.hostile_event_id}, referer).status_code == 303
        proxied = {**basic(), "origin": "https://ops.example.com"}
        assert post_form(client, "discard", {"event_id": seeded.report_event_id}, proxied).status_code == 303
    assert event_state(db, seeded.report_event_id) == "ignored"


@pytest.mark.parametrize(
    ("fields", "status"),
    [({}, 400), ({"event_id": "x"}, 400), ({"event_id": list(range(1, 502))}, 400)],
    ids=["none", "not-a-number", "too-many"],
)
def test_bad_action_forms(client: TestClient, fields: dict[str, Any], status: int) -> None:
    """Missing, malformed or too many event ids are a 400."""
    assert post_form(client, "retry", fields, {**basic(), "origin": ORIGIN}).status_code == status


def test_next_cannot_leave_the_ops_page(client: TestClient, seeded: Seeded) -> None:
    """The redirect after an action only ever goes to an /ops path."""
    fields = {"event_id": seeded.hostile_event_id, "next": "//evil.example/ops"}
    response = post_form(client, "discard", fields, {**basic(), "origin": ORIGIN})
    assert response.headers["location"] == "/ops?discarded=1"
