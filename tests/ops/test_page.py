"""GET /ops and its actions over HTTP, against real Postgres and Redis: access, content, retry, discard."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from starlette.testclient import TestClient
from support.app_env import app_env
from support.apply import apply_bodies
from support.fixtures import load_call, load_event, parse_body
from support.ops_page_data import (
    ASSISTANT_A,
    CALL_ID,
    CUSTOMER,
    EMAIL,
    HOSTILE_ERROR,
    REPORT_ERROR,
    TRANSCRIPT_SNIPPET,
    TRANSFER_NUMBER,
    QueueState,
    Seeded,
    add_calls,
    add_personal_data,
    dead_letter,
    fill_queue,
    record_failed,
    seed,
)
from support.personal_data import CARD, REASON, sealing_key, with_personal_data
from support.queue import dead_letters

from ingest.dev.embedded import _free_port
from ingest.errors import ConfigError, Unmappable
from ingest.sealing import generate_key
from ingest.web.app import create_app

USER, PASSWORD, TOKEN = "oncall", "correct horse battery", "ops-token-123"
ORIGIN = "http://testserver"


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


BEARER = {"authorization": f"Bearer {TOKEN}"}


def make_env(db_url: str, redis_url: str, namespace: str, **extra: str) -> dict[str, str]:
    return app_env(
        db_url,
        redis_url,
        namespace,
        **{"INGEST_OPS_USER": USER, "INGEST_OPS_PASSWORD": PASSWORD, "INGEST_OPS_TOKEN": TOKEN, **extra},
    )


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


def post_form(
    client: TestClient, action: str, fields: dict[str, Any], headers: dict[str, str], group: str = "events"
) -> Any:
    return client.post(
        f"/ops/{group}/{action}",
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


# -- dead letters -------------------------------------------------------------------------------

SAME_ORIGIN = {**basic(), "origin": ORIGIN}


def report_raw() -> bytes:
    return next(
        raw for raw in load_call("inbound_booking") if parse_body(raw)["message"]["type"] == "end-of-call-report"
    )


def test_dead_letters_are_listed_without_their_bodies(client: TestClient, env: dict[str, str], seeded: Seeded) -> None:
    """The overview lists each dead letter with its type and call, and never the body it carries."""
    redis_id = dead_letter(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"], report_raw())
    page = client.get("/ops", headers=basic()).text
    assert f'<tr id="dead-{redis_id}" data-dead="{redis_id}">' in page
    row = page.split(f'<tr id="dead-{redis_id}"', 1)[1].split("</tr>", 1)[0]
    assert "end-of-call-report" in row
    assert f"/ops/calls/{seeded.call_id}" in row
    assert "apply_event" in row
    assert TRANSCRIPT_SNIPPET.replace("'", "&#39;") not in page
    assert "storage.vapi.ai" not in page
    assert CUSTOMER not in page


def test_requeue_puts_a_dead_letter_back(client: TestClient, env: dict[str, str], seeded: Seeded) -> None:
    """Requeue moves the dead letter back to the queue and says so."""
    redis_url, namespace = env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"]
    redis_id = dead_letter(redis_url, namespace, report_raw())
    response = post_form(client, "requeue", {"id": redis_id}, SAME_ORIGIN, group="dead-letters")
    assert response.status_code == 303
    assert response.headers["location"] == "/ops?requeued=1"
    assert dead_letters(redis_url, namespace) == 0
    assert client.get("/ops/stats.json", headers=BEARER).json()["queues"][0]["ready"] == 1
    assert "Requeued 1 dead letter(s)" in client.get("/ops?requeued=1", headers=basic()).text


def test_purge_asks_first(client: TestClient, env: dict[str, str], seeded: Seeded) -> None:
    """Purge without confirmation shows the question (or a 400 for tools) and deletes nothing; confirmed, it deletes."""
    redis_url, namespace = env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"]
    redis_id = dead_letter(redis_url, namespace, report_raw())
    asked = post_form(client, "purge", {"id": redis_id}, SAME_ORIGIN, group="dead-letters")
    assert asked.status_code == 200
    assert 'Delete 1 dead-lettered message(s) from <span class="mono">vapi-events</span> for good?' in asked.text
    assert '<input type="hidden" name="confirm" value="yes">' in asked.text
    refused = post_form(client, "purge", {"id": redis_id}, BEARER, group="dead-letters")
    assert refused.status_code == 400
    assert refused.json()["error"] == "confirmation_required"
    assert dead_letters(redis_url, namespace) == 1
    done = post_form(client, "purge", {"id": redis_id, "confirm": "yes"}, SAME_ORIGIN, group="dead-letters")
    assert done.headers["location"] == "/ops?purged=1"
    assert dead_letters(redis_url, namespace) == 0


def test_dead_letter_actions_refuse_cross_site_posts(client: TestClient, env: dict[str, str], seeded: Seeded) -> None:
    """Requeue and purge follow the same same-origin rule as the other buttons."""
    redis_url, namespace = env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"]
    redis_id = dead_letter(redis_url, namespace, report_raw())
    for action in ("requeue", "purge"):
        fields = {"id": redis_id, "confirm": "yes"}
        response = post_form(client, action, fields, {**basic(), "origin": "http://evil.example"}, group="dead-letters")
        assert response.status_code == 403
        assert response.json()["error"] == "cross_origin"
    assert dead_letters(redis_url, namespace) == 1


def test_discard_deletes_the_events_dead_letters(client: TestClient, env: dict[str, str], seeded: Seeded) -> None:
    """Discarding the failed report deletes the dead letter carrying it, and leaves another event's alone."""
    redis_url, namespace = env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"]
    dead_letter(redis_url, namespace, report_raw())
    other = dead_letter(redis_url, namespace, load_event("status_update_bad_call_id"))
    response = post_form(client, "discard", {"event_id": seeded.report_event_id}, SAME_ORIGIN)
    assert response.headers["location"] == "/ops?discarded=1"
    assert dead_letters(redis_url, namespace) == 1
    stats = client.get("/ops/stats.json", headers=BEARER).json()
    assert stats["queues"][0]["dead"] == 1
    assert f'data-dead="{other}"' in client.get("/ops", headers=basic()).text


# -- what a retry says, the chart's first sample, times ------------------------------------------


def test_a_retry_that_applies_nothing_says_why(client: TestClient, seeded: Seeded) -> None:
    """After a retry that fails again, the notice names the event and the error it hit again."""
    response = post_form(client, "retry", {"event_id": seeded.hostile_event_id}, SAME_ORIGIN)
    assert response.headers["location"] == f"/ops?retried=0&of=1&failed={seeded.hostile_event_id}"
    page = client.get(response.headers["location"], headers=basic()).text
    assert "Re-applied 0 of 1 event(s)." in page
    reasons = page.split('<ul id="not-applied">', 1)[1].split("</ul>", 1)[0]
    assert f'event <span class="mono">{seeded.hostile_event_id}</span>' in reasons
    assert "Unmappable" in reasons
    assert "is not a UUID" in reasons


def test_chart_is_seeded_from_the_numbers_at_load(client: TestClient, env: dict[str, str], seeded: Seeded) -> None:
    """The chart's first sample is drawn by the server: a dot per series, its value and the scale."""
    fill_queue(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"], state=QueueState())
    page = client.get("/ops", headers=basic()).text
    assert '<b id="live-max">42</b>' in page
    assert '<b data-last="ready">3</b>' in page
    assert f'data-dot="ready" r="2.5" cx="600.0" cy="{118 - 3 / 42 * 114:.1f}"' in page
    assert f'data-series="ready" points="600.0,{118 - 3 / 42 * 114:.1f}"' in page
    assert re.search(r'id="live-status">as of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · [^<]* UTC\+1[23]<', page)


def test_times_have_one_format_with_their_zone(client: TestClient, seeded: Seeded) -> None:
    """Every time reads ``YYYY-MM-DD HH:MM:SS UTC`` with the LOCAL_TIMEZONE time and its offset beside it."""
    page = client.get(f"/ops/calls/{seeded.call_id}", headers=basic()).text
    assert re.search(r'id="updated">rendered \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · .* UTC\+1[23]', page)
    assert "2026-03-11 10:14:05 UTC" in page or re.search(r'class="utc">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC<', page)
    utc_times = re.findall(r'<span class="utc">([^<]*)</span><br><span class="muted local">([^<]*)</span>', page)
    assert len(utc_times) > 10  # started, ended, the lifecycle, every event
    for utc_time, local_time in utc_times:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", utc_time)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\+1[23]", local_time)
    assert "(UTC)</th>" not in page


# -- the calls list -------------------------------------------------------------------------------


def call_order(page: str) -> list[str]:
    return re.findall(r'<tr data-call="([^"]+)">', page)


def test_calls_are_sorted_by_start(client: TestClient, db: psycopg.Connection[Any]) -> None:
    """The list is newest start first, whatever order the rows were written in."""
    ids = add_calls(db, 5, dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC))
    assert call_order(client.get("/ops", headers=basic()).text) == ids[::-1]


def test_calls_are_filtered_and_paged(client: TestClient, db: psycopg.Connection[Any]) -> None:
    """Client, assistant, outcome and date range narrow the list; pages of 20 follow each other."""
    ids = add_calls(db, 45, dt.datetime(2026, 3, 1, 0, tzinfo=dt.UTC))  # 1 March 00:00 to 2 March 20:00
    newest_first = ids[::-1]
    first = client.get("/ops", headers=basic()).text
    assert call_order(first) == newest_first[:20]
    assert 'href="/ops?page=2"' in first
    assert call_order(client.get("/ops?page=2", headers=basic()).text) == newest_first[20:40]
    last = client.get("/ops?page=3", headers=basic()).text
    assert call_order(last) == newest_first[40:]
    assert 'id="page-next"' not in last
    acme = [call for n, call in enumerate(ids) if n % 2 == 0][::-1]
    assert call_order(client.get("/ops?client=acme", headers=basic()).text) == acme[:20]
    assert call_order(client.get(f"/ops?assistant={ASSISTANT_A}&page=2", headers=basic()).text) == acme[20:]
    voicemail = client.get("/ops?outcome=voicemail&from=2026-03-02&to=2026-03-02", headers=basic()).text
    assert call_order(voicemail) == [call for n, call in enumerate(ids) if n % 2 and n >= 24][::-1]
    assert 'value="2026-03-02"' in voicemail
    assert (
        call_order(client.get("/ops?to=2026-03-01&client=globex", headers=basic()).text)
        == [call for n, call in enumerate(ids) if n % 2 and n < 24][::-1]
    )


def test_a_bad_filter_is_a_400_with_the_error_shape(client: TestClient) -> None:
    """A filter that is not a date or a page number is refused, saying which."""
    for query, named in (("from=yesterday", "from"), ("page=0", "page"), ("page=x", "page")):
        response = client.get(f"/ops?{query}", headers={**basic(), "accept": "application/json"})
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_filter", "detail": response.json()["detail"]}
        assert named in response.json()["detail"]


# -- masking, error shape -------------------------------------------------------------------------


def test_numbers_and_addresses_in_json_are_masked(
    client: TestClient, db: psycopg.Connection[Any], seeded: Seeded
) -> None:
    """A transfer destination's number and an e-mail address in the row's analysis and metadata never reach the page."""
    add_personal_data(db)
    page = client.get(f"/ops/calls/{seeded.call_id}", headers=basic()).text
    assert "transferDestination" in page
    assert "•••5577" in page
    for secret in (TRANSFER_NUMBER, TRANSFER_NUMBER[1:], "93015577", EMAIL, "hemi.walker"):
        assert secret not in page
    assert CUSTOMER not in page


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/ops/events/retry", "POST"), ("DELETE", "/ops", "GET, HEAD"), ("PUT", "/ops/dead-letters/purge", "POST")],
)
def test_wrong_method_has_the_error_shape(client: TestClient, method: str, path: str, allowed: str) -> None:
    """A method an endpoint does not take is a 405 in the service's one error shape, after authentication."""
    assert client.request(method, path).status_code == 401
    response = client.request(method, path, headers=BEARER)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert set(response.json()) == {"error", "detail"}
    assert response.json()["error"] == "method_not_allowed"


def test_bad_dead_letter_ids_have_the_error_shape(client: TestClient) -> None:
    """Dead-letter actions take Dramatiq message ids only; anything else is a 400 in the error shape."""
    response = post_form(client, "requeue", {"id": "../../etc"}, BEARER, group="dead-letters")
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_id", "detail": "an id is not a dead-lettered message id"}


# -- hidden unless revealed -----------------------------------------------------------------------


@pytest.fixture
def personal(db: psycopg.Connection[Any]) -> str:
    """The booking call applied whole, with an e-mail address and a card number in its transcript and summary."""
    apply_bodies(db, [with_personal_data(raw) for raw in load_call("inbound_booking")])
    return CALL_ID


def reveal(client: TestClient, fields: dict[str, Any], headers: dict[str, str] = SAME_ORIGIN) -> Any:
    return client.post(
        "/ops/reveal",
        content=urlencode(fields),
        headers={"content-type": "application/x-www-form-urlencoded", **headers},
        follow_redirects=False,
    )


def reveals(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT actor, actor_kind, surface, target_kind, target, target_count, client_id, reason, details"
        " FROM data_access_log WHERE action = 'reveal' ORDER BY id"
    ).fetchall()


SECRETS = (EMAIL, "hemi.walker", CARD, CARD.replace(" ", ""), CUSTOMER, CUSTOMER[1:])


def test_call_page_shows_the_redacted_text_and_a_reveal_form(
    client: TestClient, db: psycopg.Connection[Any], personal: str
) -> None:
    """A GET shows the redacted transcript and summary and a form asking for a reason; never the originals."""
    for query in ("", "?reveal=1&reason=because"):
        page = client.get(f"/ops/calls/{personal}{query}", headers=basic()).text
        assert "My email is [EMAIL] and my card is [CARD]." in page
        assert "Hemi Walker ([EMAIL]) called to book" in page
        assert 'Transcript <span class="muted">(redacted)</span>' in page
        assert '<form class="inline" method="post" action="/ops/reveal">' in page
        assert f'<input type="hidden" name="key" value="{personal}">' in page
        assert '<input name="reason" required maxlength="500"' in page
        assert f"sealed (key {sealing_key()})" in page
        for secret in SECRETS:
            assert secret not in page
    assert reveals(db) == []


def test_reveal_shows_the_originals_once_and_records_the_reason(
    client: TestClient, db: psycopg.Connection[Any], personal: str
) -> None:
    """A POST with a reason renders the page with the originals and whole numbers, uncached, as one reveal entry."""
    first = load_call("inbound_booking")[0]  # a status update, made distinct by its timestamp, failed
    failed = record_failed(
        db, first.replace(b'"timestamp":1773177243519', b'"timestamp":1773177243520'), Unmappable("x")
    )
    events = db.execute("SELECT count(*) FROM call_events WHERE call_id = %s", (personal,)).fetchone()[0]
    response = reveal(client, {"key": personal, "reason": f" {REASON} "})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert f"My email is {EMAIL} and my card is {CARD}." in page
    assert f"Hemi Walker ({EMAIL}) called to book" in page
    assert 'Transcript <span class="muted">(original)</span>' in page
    assert f'<dd class="mono">{CUSTOMER}</dd>' in page
    assert 'id="revealed"' in page
    assert 'action="/ops/reveal"' not in page  # no second form on a revealed page
    assert f'data-action="retry" data-event="{failed}"' in page
    assert f'<input type="hidden" name="next" value="/ops/calls/{personal}">' in page  # buttons come back to a GET
    assert reveals(db) == [
        (
            USER,
            "ops_user",
            "ops",
            "call",
            personal,
            1,
            "client-harbourside-dental",
            REASON,
            {"events": events},
        )
    ]
    assert db.execute("SELECT count(*) FROM data_access_log WHERE action = 'view_call'").fetchone() == (0,)


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("", "reason_required"),
        ("   ", "reason_required"),
        (f"call {CUSTOMER} back", "invalid_reason"),
        ("x" * 501, "invalid_reason"),
    ],
    ids=["empty", "blank", "number-in-reason", "too-long"],
)
def test_reveal_without_a_proper_reason_is_refused(
    client: TestClient, db: psycopg.Connection[Any], personal: str, reason: str, error: str
) -> None:
    """No reason (or one holding personal data) is a 400 saying why; nothing is read, shown or recorded."""
    fields = {"key": personal, "reason": reason}
    response = reveal(client, fields, {**SAME_ORIGIN, "accept": "application/json"})
    assert (response.status_code, response.json()["error"]) == (400, error)
    page = reveal(client, fields, {**SAME_ORIGIN, "accept": "text/html"})
    assert page.status_code == 400
    assert "<h1>Not revealed</h1>" in page.text
    for secret in (EMAIL, CARD):
        assert secret not in response.text + page.text
    without = reveal(client, {"key": personal}, {**SAME_ORIGIN, "accept": "application/json"})
    assert "a reveal needs a reason" in without.json()["detail"]
    assert reveals(db) == []


def test_reveal_refuses_cross_site_posts_and_gets(
    client: TestClient, db: psycopg.Connection[Any], personal: str
) -> None:
    """A reveal is a same-origin POST: another site's form gets a 403, a GET a 405, and neither reveals."""
    fields = {"key": personal, "reason": REASON}
    refused = reveal(client, fields, {**basic(), "origin": "https://evil.example"})
    assert refused.status_code == 403
    got = client.get(f"/ops/reveal?{urlencode(fields)}", headers=basic())
    assert got.status_code == 405
    for response in (refused, got):
        assert EMAIL not in response.text
    assert reveals(db) == []


def test_reveal_under_a_key_not_configured_names_it(
    db_url: str, redis_server_url: str, redis_namespace: str, db: psycopg.Connection[Any], personal: str
) -> None:
    """Originals sealed under a key the page lacks: it names the key, shows the hidden view, records nothing shown."""
    env = make_env(db_url, redis_server_url, redis_namespace, INGEST_ENCRYPTION_KEYS=generate_key())
    with TestClient(create_app(env=env)) as other:
        response = reveal(other, {"key": personal, "reason": REASON})
    assert response.status_code == 200
    assert (
        f"Not revealed: the originals are sealed under key {sealing_key()}, which INGEST_ENCRYPTION_KEYS"
        in response.text
    )
    assert "My email is [EMAIL]" in response.text
    for secret in SECRETS:
        assert secret not in response.text
    [entry] = reveals(db)
    assert entry[5] == 0
    assert entry[8]["unopened_key"] == sealing_key()


def test_overview_shows_the_last_retention_run_and_overdue_unfinished_events(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    """The retention panel names the last run and its counts, and warns about pending events past the raw window."""
    assert "Retention has not run yet" in client.get("/ops", headers=basic()).text
    db.execute(
        "INSERT INTO call_events (received_at, message_type, dedupe_key, message, state)"
        " VALUES (now() - interval '45 days', 'status-update', 'overdue-1', '{\"type\": \"status-update\"}', 'pending')"
    )
    db.execute(
        "INSERT INTO retention_runs (started_at, finished_at, runner, counts, overdue, skipped)"
        " VALUES (now(), now(), 'worker-1', %s, 1, '{}')",
        ('{"raw_events": {"client-a": 12}, "transcripts": {"client-a": 3}, "anonymised": {}}',),
    )
    page = client.get("/ops", headers=basic()).text
    assert "by worker-1:" in page
    assert "12 raw events, 3 transcripts, 0 anonymised" in page
    assert "1 pending or waiting event(s) are older than the raw-event window" in page
