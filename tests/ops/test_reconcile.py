"""Reconciliation: the calls Vapi's API lists, classified against their rows and applied once, by one runner."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from support.app_env import app_env
from support.rows import PRIVACY
from support.vapi_api import API_KEY, FakeVapi, make_call, serve_vapi

from ingest.apply import apply_event, apply_stored_event
from ingest.errors import ConfigError, Unmappable
from ingest.event import Event
from ingest.handlers import HANDLERS
from ingest.ops import reconcile, reconcile_runs
from ingest.ops.rebuild import rebuild_row
from ingest.settings import Settings
from ingest.vapi_api import ApiSettings, VapiApi, VapiApiError
from ingest.web.app import create_app
from worker.sweeper import ReconcileSchedule

Conn = psycopg.Connection[Any]
NOW = datetime.now(UTC).replace(microsecond=0)
ASSISTANT = "5b0a4a08-133c-4146-9315-0984f8c6be80"
PHONE_NUMBER = "0d6f4a4e-8d0c-4a3b-9e3e-7f1f3c1b2a10"
CLIENT = {"client_id": "acme"}
COLUMNS = ("started_at_utc", "ended_at_utc", "ended_reason", "cost_total", "call_summary", "call_transcript")


def _ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _snapshot(call: dict[str, Any], status: str) -> dict[str, Any]:
    """``message.call`` as a webhook carries it: who and when, no results."""
    keys = ("id", "orgId", "type", "createdAt", "assistantId", "phoneNumberId", "customer", "metadata")
    return {**{key: call[key] for key in keys}, "status": status, "updatedAt": call["createdAt"]}


def status_update(call: dict[str, Any], status: str = "in-progress") -> dict[str, Any]:
    return {
        "type": "status-update",
        "status": status,
        "timestamp": _ms(call.get("startedAt", call["createdAt"])),
        "call": _snapshot(call, status),
    }


def report(call: dict[str, Any]) -> dict[str, Any]:
    fields = ("startedAt", "endedAt", "endedReason", "cost", "costs", "costBreakdown", "analysis", "artifact")
    return {
        "type": "end-of-call-report",
        "timestamp": _ms(call["endedAt"]) + 2000,
        "call": _snapshot(call, "ended"),
        **{key: call[key] for key in fields if key in call},
    }


def deliver(conn: Conn, *messages: dict[str, Any]) -> None:
    for message in messages:
        apply_event(conn, Event(message, datetime.now(UTC)), PRIVACY)


def ended(hours_ago: float, **fields: Any) -> dict[str, Any]:
    fields = {"call_id": None, "metadata": dict(CLIENT), **fields}
    return make_call(created_at=NOW - timedelta(hours=hours_ago), cost=0.25, **fields)


@pytest.fixture
def vapi_url() -> Iterator[tuple[FakeVapi, str]]:
    fake = FakeVapi()
    with serve_vapi(fake) as url:
        yield fake, url


@pytest.fixture
def vapi(vapi_url: tuple[FakeVapi, str]) -> Iterator[tuple[FakeVapi, VapiApi]]:
    fake, url = vapi_url
    settings = ApiSettings(
        api_key=API_KEY, base_url=url, timeout=1.0, max_attempts=2, backoff_base=0.05, retry_after_max=3
    )
    api = VapiApi(settings)
    try:
        yield fake, api
    finally:
        api.close()


@pytest.fixture
def conn(db_url: str) -> Iterator[Conn]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def _row(conn: Conn, call_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(f"SELECT {', '.join(COLUMNS)} FROM user_sessions WHERE call_id = %s", (call_id,)).fetchone()


def _expected(call: dict[str, Any]) -> dict[str, Any]:
    """The values a row must hold for an ended Call object."""
    return {
        "started_at_utc": datetime.fromisoformat(call["startedAt"].replace("Z", "+00:00")),
        "ended_at_utc": datetime.fromisoformat(call["endedAt"].replace("Z", "+00:00")),
        "ended_reason": call["endedReason"],
        "cost_total": Decimal(str(call["cost"])),
        "call_summary": call["analysis"]["summary"],
        "call_transcript": call["artifact"]["transcript"],
    }


def _usage(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT client_id, month, calls, cost FROM client_monthly_usage ORDER BY 1, 2").fetchall()


def _count(conn: Conn, sql: str, *params: Any) -> int:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def _window() -> tuple[datetime, datetime]:
    return NOW - timedelta(hours=48), datetime.now(UTC)


@pytest.fixture
def four_calls(conn: Conn, vapi: tuple[FakeVapi, VapiApi]) -> dict[str, dict[str, Any]]:
    """Four ended calls Vapi has: no webhook at all, only a status-update, the report lost, all delivered."""
    fake, _ = vapi
    calls = {name: ended(hours) for name, hours in (("silent", 30), ("started", 20), ("no_report", 10), ("whole", 5))}
    fake.add(*calls.values())
    deliver(conn, status_update(calls["started"]))
    deliver(conn, status_update(calls["no_report"]), status_update(calls["no_report"], "ended"))
    deliver(conn, status_update(calls["whole"]), status_update(calls["whole"], "ended"), report(calls["whole"]))
    return calls


def test_every_call_gets_its_row_and_is_classified(
    conn: Conn, vapi: tuple[FakeVapi, VapiApi], four_calls: dict[str, dict[str, Any]]
) -> None:
    """Missing, filled and complete calls are counted as such, listed with their assistant, and end up whole."""
    _, api = vapi
    start, end = _window()
    result = reconcile.run(conn, api, PRIVACY, start=start, end=end)
    assert result.counts_dict() == {"complete": 1, "filled": 2, "missing": 1, "erased": 0, "failed": 0}
    by_id = {item.call_id: item for item in result.calls}
    assert by_id[four_calls["silent"]["id"]].result == "missing"
    assert by_id[four_calls["started"]["id"]].result == "filled"
    assert set(by_id[four_calls["started"]["id"]].lacked) == {"end", "cost", "summary", "transcript"}
    assert "cost" in by_id[four_calls["no_report"]["id"]].lacked
    assert {item.call_id for item in result.gaps} == {four_calls[n]["id"] for n in ("silent", "started", "no_report")}
    assert all(item.assistant_id == ASSISTANT and item.phone_number_id == PHONE_NUMBER for item in result.gaps)
    for call in four_calls.values():
        assert _row(conn, call["id"]) == _expected(call)
    assert [row[2:] for row in _usage(conn)] == [(4, Decimal("1.0000"))]
    assert _count(conn, "SELECT count(*) FROM call_events WHERE message_type = 'api.call'") == 4
    assert _count(conn, "SELECT count(*) FROM call_events WHERE message_type = 'api.call' AND body IS NULL") == 0


def test_running_twice_or_late_webhooks_change_nothing(
    conn: Conn, vapi: tuple[FakeVapi, VapiApi], four_calls: dict[str, dict[str, Any]]
) -> None:
    """A second run finds every row complete and adds no event; webhooks arriving afterwards change no value."""
    _, api = vapi
    start, end = _window()
    reconcile.run(conn, api, PRIVACY, start=start, end=end)
    rows = {call["id"]: _row(conn, call["id"]) for call in four_calls.values()}
    usage, events = _usage(conn), _count(conn, "SELECT count(*) FROM call_events")
    again = reconcile.run(conn, api, PRIVACY, start=start, end=datetime.now(UTC))
    assert again.counts_dict() == {"complete": 4, "filled": 0, "missing": 0, "erased": 0, "failed": 0}
    assert all(item.state is None for item in again.calls)  # duplicates of the first run's events
    assert _count(conn, "SELECT count(*) FROM call_events") == events
    silent = four_calls["silent"]
    deliver(conn, report(silent), status_update(silent, "ended"), status_update(silent))
    deliver(conn, report(four_calls["no_report"]))
    assert {call["id"]: _row(conn, call["id"]) for call in four_calls.values()} == rows
    assert _usage(conn) == usage


@pytest.mark.parametrize("order", list(itertools.permutations(["status", "report", "api"])))
def test_webhooks_and_the_api_in_any_order_give_the_same_row(
    conn: Conn, vapi: tuple[FakeVapi, VapiApi], order: tuple[str, ...]
) -> None:
    """The API's Call, the status-update and the report in any order leave the same values, counted once."""
    fake, api = vapi
    call = ended(3)
    fake.add(call)
    for step in order:
        if step == "api":
            reconcile.run(conn, api, PRIVACY, start=NOW - timedelta(hours=4), end=datetime.now(UTC))
        else:
            deliver(conn, status_update(call) if step == "status" else report(call))
    assert _row(conn, call["id"]) == _expected(call)
    assert [row[2:] for row in _usage(conn)] == [(1, Decimal("0.2500"))]


def test_a_window_of_more_than_a_thousand_calls_is_read_whole(conn: Conn, vapi: tuple[FakeVapi, VapiApi]) -> None:
    """1,200 calls in one window: every one gets its row and one api.call event; none is fetched twice."""
    fake, api = vapi
    calls = [ended(40 * i / 1200 + 1) for i in range(1200)]
    fake.add(*calls)
    result = reconcile.run(conn, api, PRIVACY, start=NOW - timedelta(hours=48), end=datetime.now(UTC))
    assert result.counts_dict()["missing"] == 1200
    assert _count(conn, "SELECT count(*) FROM user_sessions") == 1200
    assert _count(conn, "SELECT count(DISTINCT call_id) FROM call_events WHERE message_type = 'api.call'") == 1200
    assert _count(conn, "SELECT count(*) FROM call_events") == 1200
    assert len(fake.list_requests) <= 8


def test_a_call_updated_during_the_run_is_taken_by_the_next(conn: Conn, vapi: tuple[FakeVapi, VapiApi]) -> None:
    """A call changed while a run lists calls is read in its new state by the next run, and counted once."""
    fake, api = vapi
    call, other = ended(6), ended(7)
    fake.add(call, other)
    first_end = datetime.now(UTC)

    def change(stand_in: FakeVapi) -> None:
        if len(stand_in.list_requests) == 1:  # during the first listing: updated after the run's window
            stand_in.update(call["id"], first_end + timedelta(seconds=1), cost=0.75)

    fake.on_list = change
    reconcile.run(conn, api, PRIVACY, start=NOW - timedelta(hours=48), end=first_end)
    time.sleep(1.1)
    second = reconcile.run(conn, api, PRIVACY, start=NOW - timedelta(hours=48), end=datetime.now(UTC))
    assert second.counts_dict()["complete"] == 1  # the other call, already reconciled
    row = _row(conn, call["id"])
    assert row is not None
    assert row["cost_total"] == Decimal("0.7500")
    assert [row[2:] for row in _usage(conn)] == [(2, Decimal("1.0000"))]
    assert _count(conn, "SELECT count(*) FROM call_events WHERE call_id = %s", call["id"]) == 1


def test_a_429_is_waited_out(conn: Conn, vapi: tuple[FakeVapi, VapiApi]) -> None:
    """A 429 with Retry-After 1 is waited for, then the run goes on and completes."""
    fake, api = vapi
    call = ended(2)
    fake.add(call)
    fake.throttle(1, "1")
    result = reconcile.run(conn, api, PRIVACY, start=NOW - timedelta(hours=48), end=datetime.now(UTC))
    assert result.counts_dict()["missing"] == 1
    first, second = fake.list_requests[:2]
    assert second.at - first.at >= 0.9
    assert _row(conn, call["id"]) == _expected(call)


@pytest.mark.parametrize("fault", ["fail", "hang"])
def test_a_dead_api_is_a_clear_error_and_touches_no_row(
    conn: Conn, vapi: tuple[FakeVapi, VapiApi], four_calls: dict[str, dict[str, Any]], fault: str
) -> None:
    """500s or no answer at all, past the bounded tries: VapiApiError, no row or event changed, the failure recorded."""
    fake, api = vapi
    rows = {call["id"]: _row(conn, call["id"]) for call in four_calls.values()}
    events = _count(conn, "SELECT count(*) FROM call_events")
    getattr(fake, fault)(10)
    start, end = _window()
    with pytest.raises(VapiApiError):
        reconcile.run(conn, api, PRIVACY, start=start, end=end)
    assert {call["id"]: _row(conn, call["id"]) for call in four_calls.values()} == rows
    assert _count(conn, "SELECT count(*) FROM call_events") == events
    last = reconcile_runs.last_run(conn)
    assert last is not None
    assert last.error
    assert API_KEY not in last.error
    assert reconcile_runs.last_success(conn) is None
    assert reconcile_runs.watermark(conn) is None


def test_a_dry_run_classifies_and_changes_nothing(
    conn: Conn, vapi: tuple[FakeVapi, VapiApi], four_calls: dict[str, dict[str, Any]]
) -> None:
    """A dry run gives the same counts, applies no event and records no run."""
    _, api = vapi
    events = _count(conn, "SELECT count(*) FROM call_events")
    start, end = _window()
    result = reconcile.run(conn, api, PRIVACY, start=start, end=end, dry_run=True)
    assert result.counts_dict() == {"complete": 1, "filled": 2, "missing": 1, "erased": 0, "failed": 0}
    assert _row(conn, four_calls["silent"]["id"]) is None
    assert _count(conn, "SELECT count(*) FROM call_events") == events
    assert reconcile_runs.last_run(conn) is None


def test_one_call_by_id(conn: Conn, vapi: tuple[FakeVapi, VapiApi], four_calls: dict[str, dict[str, Any]]) -> None:
    """``run_call`` reads one call with GET /call/{id} and applies it; an unknown id gives an empty result."""
    fake, api = vapi
    silent = four_calls["silent"]
    result = reconcile.run_call(conn, api, PRIVACY, silent["id"])
    assert [(item.call_id, item.result) for item in result.calls] == [(silent["id"], "missing")]
    assert _row(conn, silent["id"]) == _expected(silent)
    assert reconcile.run_call(conn, api, PRIVACY, str(uuid.uuid4())).calls == []
    assert all(seen.path.startswith("/call/") for seen in fake.requests)


def test_the_watermark_follows_runs_without_gaps(conn: Conn, vapi: tuple[FakeVapi, VapiApi]) -> None:
    """A successful run leaving no gap moves the watermark to its end; the workers. window reaches back to it."""
    fake, api = vapi
    now = datetime.now(UTC)
    assert reconcile_runs.trailing_window(conn, 48, now=now) == (now - timedelta(hours=48), now)
    reconcile.run(conn, api, PRIVACY, start=now - timedelta(hours=100), end=now - timedelta(hours=90))
    assert reconcile_runs.watermark(conn) == now - timedelta(hours=90)
    reconcile.run(conn, api, PRIVACY, start=now - timedelta(hours=20), end=now - timedelta(hours=10))  # a gap
    assert reconcile_runs.watermark(conn) == now - timedelta(hours=90)
    assert reconcile_runs.trailing_window(conn, 48, now=now) == (now - timedelta(hours=90), now)
    fake.fail(10)
    with pytest.raises(VapiApiError):
        reconcile.run(conn, api, PRIVACY, start=now - timedelta(hours=95), end=now)
    assert reconcile_runs.watermark(conn) == now - timedelta(hours=90)
    conn.execute("UPDATE reconcile_runs SET watermark = %s WHERE watermark IS NOT NULL", (now - timedelta(days=40),))
    assert reconcile_runs.trailing_window(conn, 48, now=now)[0] == now - reconcile_runs.MAX_LOOKBACK


def test_a_held_lock_or_a_recent_run_makes_the_run_skip(conn: Conn, db: Conn, vapi: tuple[FakeVapi, VapiApi]) -> None:
    """While another session holds the lock, or a run finished within the interval, run_locked does nothing."""
    _, api = vapi
    db.execute("SELECT pg_advisory_lock(%s)", (reconcile.LOCK_KEY,))
    assert reconcile.run_locked(conn, api, PRIVACY, window_hours=48) is None
    db.execute("SELECT pg_advisory_unlock(%s)", (reconcile.LOCK_KEY,))
    assert reconcile.run_locked(conn, api, PRIVACY, window_hours=48, interval_minutes=15) is not None
    assert reconcile.run_locked(conn, api, PRIVACY, window_hours=48, interval_minutes=15) is None
    assert _count(conn, "SELECT count(*) FROM reconcile_runs") == 1


def test_calls_reached_only_through_reconciliation_are_shown(
    conn: Conn, vapi: tuple[FakeVapi, VapiApi], four_calls: dict[str, dict[str, Any]]
) -> None:
    """The figures list the call none of whose webhooks arrived, masked, until one of them does."""
    _, api = vapi
    start, end = _window()
    reconcile.run(conn, api, PRIVACY, start=start, end=end)
    found = reconcile_runs.figures(conn)
    silent = four_calls["silent"]
    assert [item.call_id for item in found.only_reconciled] == [silent["id"]]
    assert found.only_reconciled_total == 1
    assert found.only_reconciled[0].assistant_id == ASSISTANT
    assert found.last_run is not None
    assert found.last_run.counts["missing"] == 1
    deliver(conn, status_update(silent))
    assert reconcile_runs.figures(conn).only_reconciled == []


# -- a Call that cannot be mapped or applied -----------------------------------------------

GARBAGE_ID = "+6421555012 not-a-uuid"  # an id that is no UUID, and looks like personal data


def _malformed(fake: FakeVapi) -> dict[str, dict[str, Any]]:
    """Two good calls around two bad ones: a client id longer than any row holds, and an id that is no UUID."""
    calls = {
        "good_old": ended(30),
        "long_client": ended(20, metadata={"client_id": "x" * 300}),
        "garbage_id": ended(15),
        "good_new": ended(10),
    }
    calls["garbage_id"]["id"] = GARBAGE_ID
    fake.add(*calls.values())
    return calls


def _reconciled_failed() -> float:
    return REGISTRY.get_sample_value("vapi_ingest_reconciled_calls_total", {"result": "failed"}) or 0.0


def _failed_events(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT state, last_error, message IS NULL AND body IS NOT NULL FROM call_events"
        " WHERE message_type = 'api.call' AND state <> 'applied' ORDER BY last_error"
    ).fetchall()


def test_a_malformed_call_is_kept_failed_and_the_run_goes_on(conn: Conn, vapi: tuple[FakeVapi, VapiApi]) -> None:
    """A Call with a 300-character client id and one whose id is no UUID are kept as failed api.call events
    (sealed, with an error naming no value of theirs); the calls before and after them get their rows; the run
    is recorded with its failed count and moves the watermark; the failed counter moves."""
    fake, api = vapi
    calls = _malformed(fake)
    counted = _reconciled_failed()
    start, end = _window()
    result = reconcile.run(conn, api, PRIVACY, start=start, end=end)
    assert result.counts_dict() == {"complete": 0, "filled": 0, "missing": 2, "erased": 0, "failed": 2}
    for name in ("good_old", "good_new"):
        assert _row(conn, calls[name]["id"]) == _expected(calls[name])
    assert [row[2:] for row in _usage(conn)] == [(2, Decimal("0.5000"))]
    failed = {item.call_id: item for item in result.failed}
    assert set(failed) == {calls["long_client"]["id"], None}  # the garbage id is never shown
    assert failed[calls["long_client"]["id"]].state == "failed"
    too_long = "Unmappable: metadata.client_id is 300 characters long, more than 255"
    not_uuid = f"Unmappable: call.id is not a UUID ({len(GARBAGE_ID)} characters)"
    assert failed[calls["long_client"]["id"]].error == too_long
    assert failed[None].error == not_uuid
    assert _failed_events(conn) == [("failed", not_uuid, True), ("failed", too_long, True)]
    last = reconcile_runs.last_run(conn)
    assert last is not None
    assert (last.error, last.failed, last.total("missing")) == (None, 2, 2)
    assert reconcile_runs.watermark(conn) == end
    assert _reconciled_failed() - counted == 2
    assert reconcile_runs.figures(conn).as_dict()["last_run"]["counts"]["failed"] == 2
    # the next run tries them again: the same events (one more attempt each), no new row
    again = reconcile.run(conn, api, PRIVACY, start=start, end=datetime.now(UTC))
    assert again.counts_dict() == {"complete": 2, "filled": 0, "missing": 0, "erased": 0, "failed": 2}
    assert _count(conn, "SELECT count(*) FROM call_events WHERE state = 'failed' AND attempts = 2") == 2


def test_a_dry_run_of_a_malformed_call_does_not_crash(conn: Conn, vapi: tuple[FakeVapi, VapiApi]) -> None:
    """A dry run classifies the bad calls as failed, records nothing and counts nothing."""
    fake, api = vapi
    _malformed(fake)
    counted = _reconciled_failed()
    start, end = _window()
    result = reconcile.run(conn, api, PRIVACY, start=start, end=end, dry_run=True)
    assert result.counts_dict() == {"complete": 0, "filled": 0, "missing": 2, "erased": 0, "failed": 2}
    assert all(item.state is None and item.error for item in result.failed)
    assert _count(conn, "SELECT count(*) FROM call_events") == 0
    assert reconcile_runs.last_run(conn) is None
    assert _reconciled_failed() == counted


def test_one_malformed_call_by_id_is_kept_failed(conn: Conn, vapi: tuple[FakeVapi, VapiApi]) -> None:
    """``run_call`` on a Call that cannot be mapped keeps it as a failed event instead of raising."""
    fake, api = vapi
    call = ended(3, metadata={"client_id": "x" * 300})
    fake.add(call)
    result = reconcile.run_call(conn, api, PRIVACY, call["id"])
    assert [(item.call_id, item.result, item.state) for item in result.calls] == [(call["id"], "failed", "failed")]
    assert len(_failed_events(conn)) == 1


def test_a_failed_call_the_database_cannot_keep_stops_the_run(
    conn: Conn, vapi: tuple[FakeVapi, VapiApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed call the database cannot keep stops the run: raised, recorded as failed, the watermark stays."""
    fake, api = vapi
    fake.add(ended(5, metadata={"client_id": "x" * 300}), ended(4))

    def refused(*_: Any, **__: Any) -> None:
        raise psycopg.OperationalError("the connection is lost")

    monkeypatch.setattr(reconcile, "record_failure", refused)
    start, end = _window()
    with pytest.raises(psycopg.OperationalError):
        reconcile.run(conn, api, PRIVACY, start=start, end=end)
    monkeypatch.undo()
    last = reconcile_runs.last_run(conn)
    assert last is not None
    assert last.error is not None
    assert last.error == "stopped after 1 call(s): OperationalError: the connection is lost"  # the newer one, applied
    assert last.total("missing") == 1
    assert reconcile_runs.watermark(conn) is None
    assert _count(conn, "SELECT count(*) FROM call_events") == 1


def test_the_worker_schedule_records_a_run_with_failed_calls(
    conn: Conn, db_url: str, vapi_url: tuple[FakeVapi, str]
) -> None:
    """The workers' schedule over a window holding bad calls: the good ones land, the run is recorded by the
    worker with its failed count, the watermark moves, the bad calls wait as failed events."""
    fake, url = vapi_url
    calls = _malformed(fake)
    env = {**os.environ, "DATABASE_URL": db_url, "VAPI_API_KEY": API_KEY, "VAPI_API_URL": url}
    result = ReconcileSchedule(Settings.from_env(env))()
    assert result is not None
    assert result.counts_dict()["failed"] == 2
    for name in ("good_old", "good_new"):
        assert _row(conn, calls[name]["id"]) == _expected(calls[name])
    last = reconcile_runs.last_run(conn)
    assert last is not None
    assert (last.runner, last.error, last.failed) == ("worker", None, 2)
    assert reconcile_runs.watermark(conn) == last.window_end
    assert reconcile_runs.last_success(conn) == last
    assert [state for state, _, _ in _failed_events(conn)] == ["failed", "failed"]


# -- rebuild and reapply treat api.call events like any other ---------------------------------


def test_rebuild_restores_a_corrupted_row_from_its_api_call_events(
    conn: Conn, vapi: tuple[FakeVapi, VapiApi], four_calls: dict[str, dict[str, Any]]
) -> None:
    """After a run, rows spoilt by hand are rebuilt from their events (api.call among them) to what they were,
    and the client's usage is counted as before."""
    _, api = vapi
    start, end = _window()
    reconcile.run(conn, api, PRIVACY, start=start, end=end)
    rows = {call["id"]: _row(conn, call["id"]) for call in four_calls.values()}
    usage = _usage(conn)
    conn.execute(
        "UPDATE user_sessions SET ended_reason = 'corrupted', cost_total = NULL, call_summary = NULL,"
        " ended_at_utc = NULL"
    )
    for call in four_calls.values():
        outcome = rebuild_row(conn, call["id"], privacy=PRIVACY, transcript_grace=600)
        assert outcome.outcome == "changed"
    assert {call["id"]: _row(conn, call["id"]) for call in four_calls.values()} == rows
    assert _usage(conn) == usage


def test_a_failed_api_call_is_reapplied_once_its_cause_is_fixed(
    conn: Conn, vapi: tuple[FakeVapi, VapiApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Call the mapping could not take (a bug, say) is kept failed; once fixed, reapplying it gives the row,
    counted once, and the next run finds it complete."""
    fake, api = vapi
    call = ended(6)
    fake.add(call)

    def bug(message: dict[str, Any], context: Any) -> Any:
        raise Unmappable("api.call mapping bug")

    monkeypatch.setitem(HANDLERS, "api.call", bug)
    start, end = _window()
    first = reconcile.run(conn, api, PRIVACY, start=start, end=end)
    assert first.counts_dict()["failed"] == 1
    assert _row(conn, call["id"]) is None
    monkeypatch.undo()  # the fix is deployed
    event_id = conn.execute(
        "SELECT id FROM call_events WHERE message_type = 'api.call' AND state = 'failed'"
    ).fetchone()
    assert event_id is not None
    outcome = apply_stored_event(conn, event_id[0], PRIVACY)
    assert (outcome.claimed, outcome.state, outcome.error) == (True, "applied", None)
    assert _row(conn, call["id"]) == _expected(call)
    assert [row[2:] for row in _usage(conn)] == [(1, Decimal("0.2500"))]
    again = reconcile.run(conn, api, PRIVACY, start=start, end=datetime.now(UTC))
    assert again.counts_dict()["complete"] == 1
    assert [row[2:] for row in _usage(conn)] == [(1, Decimal("0.2500"))]


RUNNER = """
from ingest.settings import Settings
from worker.sweeper import ReconcileSchedule
result = ReconcileSchedule(Settings.from_env())()
print("ran" if result is not None else "skipped")
"""


def test_two_worker_processes_reconcile_once(conn: Conn, db_url: str, vapi_url: tuple[FakeVapi, str]) -> None:
    """Two worker processes at once with VAPI_API_KEY set: one reconciles the trailing window, the other skips."""
    fake, url = vapi_url
    call = ended(30)
    fake.add(call)
    env = {**os.environ, "DATABASE_URL": db_url, "VAPI_API_KEY": API_KEY, "VAPI_API_URL": url, "LOG_LEVEL": "WARNING"}
    runners = [
        subprocess.Popen([sys.executable, "-c", RUNNER], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = sorted(runner.communicate(timeout=120)[0].strip() for runner in runners)
    assert all(runner.returncode == 0 for runner in runners)
    assert outputs == ["ran", "skipped"]
    assert _row(conn, call["id"]) == _expected(call)
    last = reconcile_runs.last_run(conn)
    assert last is not None
    assert last.runner == "worker"
    assert last.window_end - last.window_start >= timedelta(hours=48)


def test_the_window_setting_stays_inside_vapi_retention() -> None:
    """RECONCILE_WINDOW_HOURS above 13 days is refused; the defaults are 15 minutes over 48 hours."""
    with pytest.raises(ConfigError):
        Settings.from_env({"RECONCILE_WINDOW_HOURS": str(14 * 24)})
    settings = Settings.from_env({})
    assert (settings.reconcile_interval_minutes, settings.reconcile_window_hours) == (15, 48)


def _app_env(db_url: str, redis_url: str, namespace: str) -> dict[str, str]:
    """The environment of a web app with /ops and /metrics over the test's database and Redis."""
    return app_env(
        db_url,
        redis_url,
        namespace,
        INGEST_OPS_USER="oncall",
        INGEST_OPS_PASSWORD="correct horse battery",
        VAPI_API_KEY=API_KEY,
    )


def test_metrics_and_the_ops_page_show_the_runs(
    conn: Conn,
    vapi: tuple[FakeVapi, VapiApi],
    four_calls: dict[str, dict[str, Any]],
    db_url: str,
    redis_server_url: str,
    redis_namespace: str,
) -> None:
    """/metrics shows the last success, its counts and the later failure; /ops the call only reconciliation brought."""
    fake, api = vapi
    start, end = _window()
    reconcile.run(conn, api, PRIVACY, start=start, end=end)
    fake.fail(10)
    with pytest.raises(VapiApiError):
        reconcile.run(conn, api, PRIVACY, start=start, end=datetime.now(UTC))
    env = _app_env(db_url, redis_server_url, redis_namespace)
    with TestClient(create_app(env=env)) as client:
        scraped = client.get("/metrics").text
        page = client.get("/ops", auth=("oncall", "correct horse battery")).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }
    success = reconcile_runs.last_success(conn)
    assert success is not None
    assert samples[("vapi_ingest_reconcile_last_success_timestamp_seconds", ())] == success.finished_at.timestamp()
    assert samples[("vapi_ingest_reconcile_last_run_calls", (("result", "missing"),))] == 1
    assert samples[("vapi_ingest_reconcile_last_run_calls", (("result", "filled"),))] == 2
    assert samples[("vapi_ingest_reconcile_last_run_failed", ())] == 1
    assert samples[("vapi_ingest_reconcile_only_reconciled_calls", ())] == 1
    assert samples[("vapi_ingest_reconcile_api_errors_total", ())] >= 1
    assert samples[("vapi_ingest_reconciled_calls_total", (("result", "missing"),))] >= 1
    assert 'id="reconciliation"' in page
    assert "failed:" in page
    assert "reached us only through reconciliation" in page
    assert four_calls["silent"]["id"] in page
    assert four_calls["started"]["id"] not in page.split('id="only-reconciled"', 1)[1].split("</table>", 1)[0]
    assert "+6421555012" not in page
    assert 'id="reconcile-failed"' not in page


def test_the_ops_page_shows_the_failed_calls_of_the_last_run(
    conn: Conn, vapi: tuple[FakeVapi, VapiApi], db_url: str, redis_server_url: str, redis_namespace: str
) -> None:
    """/ops shows the last run's failed count and where the failed api.call events are; no value of theirs."""
    fake, api = vapi
    _malformed(fake)
    start, end = _window()
    reconcile.run(conn, api, PRIVACY, start=start, end=end)
    env = _app_env(db_url, redis_server_url, redis_namespace)
    with TestClient(create_app(env=env)) as client:
        page = client.get("/ops", auth=("oncall", "correct horse battery")).text
        scraped = client.get("/metrics").text
    section = page.split('id="reconciliation"', 1)[1].split("</section>", 1)[0]
    assert "0 erased, 2 failed" in section
    assert 'id="reconcile-failed"' in section
    assert "ingest events list --failed --type api.call" in section
    assert GARBAGE_ID not in page
    assert 'vapi_ingest_reconcile_last_run_calls{result="failed"} 2.0' in scraped
