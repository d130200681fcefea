"""GET /metrics: delivery and worker counts across processes, scrape-time gauges, protection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import ConnectionPool
from starlette.testclient import TestClient
from support.app_env import app_env
from support.apply import PRIVACY
from support.fixtures import load_call, load_event
from support.live import JSON, web_server, worker_process

from ingest.errors import ConfigError, PermanentError
from ingest.event import Event
from ingest.metrics import counters, exposition, gauges, multiprocess
from ingest.metrics.gauges import SourceReaders, Sources
from ingest.ops import backlog
from ingest.settings import Settings
from ingest.vocabulary import EventState
from ingest.web.app import create_app
from ingest.web.errors import UNAUTHORIZED_DETAIL
from worker.group_commit import GroupCommit
from worker.process import event_from_body, process

SECRET = "metrics-secret"
CALL = "6b1f6a36-6f0a-4c89-9a51-6f3b0b8f8c11"
QUEUE = "vapi-events"
REFUSED = {"error": "unauthorized", "detail": UNAUTHORIZED_DETAIL}  # every 401 of /metrics, plus its reason

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def body(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"message": {"type": kind, "timestamp": 1780000000000, "call": {"id": CALL}, **fields}})


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str) -> float:
    """The sum of a metric over all its label values."""
    return sum(v for (sample_name, _), v in samples.items() if sample_name == name)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes started by a test see no metrics directory but the one the test gives them."""
    for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir", "INGEST_METRICS_DIR", "INGEST_METRICS_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str, tmp_path: Path, clean_env: None) -> dict[str, str]:
    return app_env(db_url, redis_server_url, redis_namespace, secret=SECRET, INGEST_DATA_DIR=str(tmp_path))


def record_in_subprocess(directory: Path, code: str) -> None:
    """Run ``code`` (with ``counters`` imported) in a fresh Python writing into ``directory``."""
    script = f"from ingest.metrics import counters\nfrom ingest.vocabulary import EventState\n{code}"
    environment = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", script], env=environment, check=True, timeout=60)


def scrape(base: str, **headers: str) -> Samples:
    response = httpx.get(f"{base}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def test_type_labels_are_bounded() -> None:
    """Known types keep their name, anything else is `other`, and no type at all is `unknown`."""
    assert counters.type_label("status-update") == "status-update"
    assert counters.type_label('transcript[transcriptType="final"]') == 'transcript[transcriptType="final"]'
    assert counters.type_label("made-up-type") == "other"
    assert counters.type_label(42) == "other"
    assert counters.type_label(None) == "unknown"


def test_deliveries_are_counted_by_type_and_outcome(env: dict[str, str]) -> None:
    """Queued, unauthorized, invalid and oversized deliveries land under their type and outcome, with latencies."""
    with web_server({**env, "MAX_BODY_BYTES": "4096"}) as base:
        sent = [
            (body("status-update", status="in-progress"), SECRET),
            (body("status-update", status="ended"), SECRET),
            (body("end-of-call-report"), SECRET),
            (body("some-future-type"), SECRET),
            (body("status-update"), "wrong"),
            (b"{not json", SECRET),
            (b"{" + b" " * 5000 + b"}", SECRET),
        ]
        codes = [
            httpx.post(f"{base}/webhooks/vapi", content=raw, headers={"x-vapi-secret": secret, **JSON}).status_code
            for raw, secret in sent
        ]
        assert codes == [200, 200, 200, 200, 401, 400, 413]
        samples = scrape(base)
    deliveries = "vapi_ingest_deliveries_total"
    assert value(samples, deliveries, type="status-update", outcome="queued") == 2
    assert value(samples, deliveries, type="end-of-call-report", outcome="queued") == 1
    assert value(samples, deliveries, type="other", outcome="queued") == 1
    assert value(samples, deliveries, type="unknown", outcome="unauthorized") == 1
    assert value(samples, deliveries, type="unknown", outcome="invalid") == 1
    assert value(samples, deliveries, type="unknown", outcome="too_large") == 1
    assert total(samples, deliveries) == 7
    latency = "vapi_ingest_delivery_duration_seconds"
    assert value(samples, f"{latency}_count", outcome_class="queued") == 4
    assert value(samples, f"{latency}_count", outcome_class="rejected") == 3
    assert value(samples, f"{latency}_bucket", outcome_class="queued", le="+Inf") == 4
    assert 0 < (value(samples, f"{latency}_sum", outcome_class="queued") or 0) < 4 * 0.25
    assert value(samples, "vapi_ingest_source_up", source="redis") == 1
    assert value(samples, "vapi_ingest_queue_messages", queue=QUEUE, state="ready") == 4


def test_fallback_outcomes_are_counted(env: dict[str, str]) -> None:
    """Kept in Postgres is `stored`; with neither store, `unavailable`, or `answered_not_recorded` for a request."""
    down_redis = {**env, "REDIS_URL": "redis://127.0.0.1:1/0"}
    with web_server(down_redis) as base:
        headers = {"x-vapi-secret": SECRET, **JSON}
        assert httpx.post(f"{base}/webhooks/vapi", content=body("status-update"), headers=headers).status_code == 200
        samples = scrape(base)
    assert value(samples, "vapi_ingest_deliveries_total", type="status-update", outcome="stored") == 1
    assert value(samples, "vapi_ingest_delivery_duration_seconds_count", outcome_class="stored") == 1

    nothing = {**down_redis, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1"}
    with web_server(nothing) as base, httpx.Client(base_url=base, headers={"x-vapi-secret": SECRET, **JSON}) as client:
        assert client.post("/webhooks/vapi", content=body("hang")).status_code == 503
        assert client.post("/webhooks/vapi", content=body("assistant-request")).status_code == 200
        samples = scrape(base)
    assert value(samples, "vapi_ingest_deliveries_total", type="hang", outcome="unavailable") == 1
    assert (
        value(samples, "vapi_ingest_deliveries_total", type="assistant-request", outcome="answered_not_recorded") == 1
    )
    assert value(samples, "vapi_ingest_delivery_duration_seconds_count", outcome_class="unavailable") == 2
    assert value(samples, "vapi_ingest_source_up", source="redis") == 0
    assert value(samples, "vapi_ingest_source_up", source="postgres") == 0


def test_counts_of_several_processes_are_summed(tmp_path: Path, env: dict[str, str]) -> None:
    """Two processes writing into one directory show up as one total, counters and histograms alike."""
    directory = tmp_path / "shared"
    record_in_subprocess(directory, "for _ in range(3): counters.delivery('status-update', 'queued', 0.003)")
    record_in_subprocess(
        directory,
        "for _ in range(2): counters.delivery('status-update', 'queued', 0.002)\n"
        "counters.delivery(None, 'unauthorized', 0.0001)\n"
        "counters.event_processed('hang', EventState.APPLIED, 0.01)\n"
        "counters.event_failed('hang', permanent=True, seconds=0.02)",
    )
    assert len(list(directory.glob("counter_*.db"))) == 2
    with TestClient(create_app(env={**env, "PROMETHEUS_MULTIPROC_DIR": str(directory)}), headers=JSON) as client:
        samples = parse(client.get("/metrics").text)
    assert value(samples, "vapi_ingest_deliveries_total", type="status-update", outcome="queued") == 5
    assert value(samples, "vapi_ingest_deliveries_total", type="unknown", outcome="unauthorized") == 1
    assert value(samples, "vapi_ingest_delivery_duration_seconds_count", outcome_class="queued") == 5
    assert value(samples, "vapi_ingest_delivery_duration_seconds_sum", outcome_class="queued") == pytest.approx(0.013)
    assert value(samples, "vapi_ingest_delivery_duration_seconds_bucket", outcome_class="queued", le="0.002") == 2
    assert value(samples, "vapi_ingest_events_processed_total", type="hang", result="applied") == 1
    assert value(samples, "vapi_ingest_events_failed_total", type="hang", permanent="true") == 1
    assert value(samples, "vapi_ingest_event_processing_seconds_count", result="failed") == 1


def test_web_clears_its_earlier_run_and_reads_the_workers(tmp_path: Path, env: dict[str, str]) -> None:
    """`ingest web` drops an earlier run's files at start, leaves the worker directory alone and shows it."""
    root = tmp_path / "metrics"
    record_in_subprocess(root / "web", "for _ in range(5): counters.delivery('hang', 'queued', 0.001)")
    record_in_subprocess(root / "worker", "counters.event_processed('hang', EventState.APPLIED, 0.01)")
    with web_server(env) as base:
        samples = scrape(base)
    assert value(samples, "vapi_ingest_deliveries_total", type="hang", outcome="queued") is None
    assert value(samples, "vapi_ingest_events_processed_total", type="hang", result="applied") == 1
    assert list((root / "worker").glob("*.db"))


@pytest.mark.slow
def test_web_shows_what_live_workers_applied(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    """Through real `ingest web` and `ingest worker` processes: deliveries, applied and failed events, worker port."""
    from ingest.dev.embedded import _free_port

    worker_port = _free_port()
    calls = [*load_call("voicemail"), load_event("status_update_bad_call_id.json")]
    token = "scrape-token"
    full = {**env, "INGEST_WORKER_METRICS_PORT": str(worker_port), "INGEST_METRICS_TOKEN": token}
    with web_server(full) as base, worker_process(full, processes=2, threads=2):
        for raw in calls:
            response = httpx.post(f"{base}/webhooks/vapi", content=raw, headers={"x-vapi-secret": SECRET, **JSON})
            assert response.status_code == 200
        deadline = time.monotonic() + 60
        while True:  # until each good event is processed (retries included) and the bad one has failed
            samples = scrape(base, authorization=f"Bearer {token}")
            processed = total(samples, "vapi_ingest_events_processed_total")
            failed = value(samples, "vapi_ingest_events_failed_total", type="status-update", permanent="true")
            if processed >= len(calls) - 1 and failed:
                break
            assert time.monotonic() < deadline, f"{processed} of {len(calls) - 1} events processed, {failed} failed"
            time.sleep(0.2)
        worker_samples = parse(_get_with_retry(f"http://127.0.0.1:{worker_port}/metrics", token))
    kinds = [orjson.loads(raw)["message"]["type"] for raw in calls]
    assert total(samples, "vapi_ingest_events_processed_total") == len(calls) - 1
    assert value(samples, "vapi_ingest_events_failed_total", type="status-update", permanent="true") == 1
    assert value(samples, "vapi_ingest_event_processing_seconds_count", result="applied") is not None
    assert total(samples, "vapi_ingest_deliveries_total") == len(kinds)
    assert value(samples, "vapi_ingest_deliveries_total", type="status-update", outcome="queued") == kinds.count(
        "status-update"
    )
    # The workers' own port: their counts only.
    assert value(worker_samples, "vapi_ingest_events_failed_total", type="status-update", permanent="true") == 1
    assert "vapi_ingest_deliveries_total" not in names(worker_samples)
    assert "vapi_ingest_source_up" not in names(worker_samples)


def _get_with_retry(url: str, token: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            unauthorized = httpx.get(url, timeout=5)
            assert unauthorized.status_code == 401
            assert unauthorized.json() == {**REFUSED, "reason": "missing_credentials"}
            response = httpx.get(url, headers={"authorization": f"Bearer {token}"}, timeout=5)
            assert response.status_code == 200
            return response.text
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_worker_port_serves_past_an_idle_connection_and_by_name(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle client holds up no scrape of the workers' port and is cut off; `?name[]=` picks families."""
    from ingest.dev.embedded import _free_port

    directory = tmp_path / "worker"
    record_in_subprocess(
        directory,
        "counters.event_processed('hang', EventState.APPLIED, 0.01)\ncounters.delivery('hang', 'queued', 0.001)",
    )
    monkeypatch.setattr(exposition._QuietHandler, "timeout", 1.0)
    port = _free_port()
    server = exposition.worker_metrics_server(
        Settings.from_env({"INGEST_WORKER_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(directory)})
    )
    assert server is not None
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as idle:  # connects, never sends a request
            idle.settimeout(5)
            url = f"http://127.0.0.1:{port}/metrics"
            everything = parse(httpx.get(url, timeout=2).text)
            assert value(everything, "vapi_ingest_events_processed_total", type="hang", result="applied") == 1
            assert value(everything, "vapi_ingest_deliveries_total", type="hang", outcome="queued") == 1
            response = httpx.get(url, params={"name[]": "vapi_ingest_events_processed_total"}, timeout=2)
            assert response.status_code == 200, response.text
            assert names(parse(response.text)) == {"vapi_ingest_events_processed_total"}
            started = time.monotonic()
            assert idle.recv(1) == b""  # closed by the server after its socket timeout
            assert time.monotonic() - started < 3
    finally:
        server.shutdown()
        server.server_close()


def _message(timestamp_ms: int) -> bytes:
    return orjson.dumps({"queue_name": QUEUE, "message_id": str(uuid.uuid4()), "message_timestamp": timestamp_ms})


def _insert_events(conn: psycopg.Connection[Any], state: EventState, count: int) -> None:
    for index in range(count):
        message = {"type": "hang", "timestamp": 1780000000000 + index, "call": {"id": str(uuid.uuid4())}}
        row = Event.from_body({"message": message}, 1780000000000).row(
            state, PRIVACY, "boom" if state == "failed" else None
        )
        conn.execute(
            "INSERT INTO call_events (received_at, call_id, session_id, message_type, dedupe_key, message, body, state,"
            " last_error) VALUES (%(received_at)s, %(call_id)s, %(session_id)s, %(message_type)s, %(dedupe_key)s,"
            " %(message)s, %(body)s, %(state)s, %(last_error)s)",
            row,
        )


def test_gauges_match_the_queue_and_the_event_log(
    env: dict[str, str], db: psycopg.Connection[Any], redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    """Ready, in-flight, delayed and dead messages, the oldest ready one's age and call_events states are exact."""
    now_ms = int(time.time() * 1000)
    base = f"{redis_namespace}:{QUEUE}"
    client = redis.Redis.from_url(redis_server_url)
    try:
        pipe = client.pipeline(transaction=True)
        for age_s, ready in ((90, True), (5, True), (300, False)):  # the last one fetched by a worker
            redis_id = str(uuid.uuid4())
            pipe.hset(f"{base}.msgs", redis_id, _message(now_ms - age_s * 1000))
            if ready:
                pipe.rpush(base, redis_id)
        for _ in range(2):
            redis_id = str(uuid.uuid4())
            pipe.hset(f"{base}.DQ.msgs", redis_id, _message(now_ms))
            pipe.zadd(f"{base}.DQ", {redis_id: now_ms + 60_000})
        for _ in range(3):
            redis_id = str(uuid.uuid4())
            pipe.hset(f"{base}.XQ.msgs", redis_id, _message(now_ms))
            pipe.zadd(f"{base}.XQ", {redis_id: now_ms})
        pipe.execute()
    finally:
        client.close()
    _insert_events(db, EventState.PENDING, 2)
    _insert_events(db, EventState.WAITING, 1)
    _insert_events(db, EventState.FAILED, 3)
    _insert_events(db, EventState.APPLIED, 4)

    app_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "empty")}
    (tmp_path / "empty").mkdir()
    with TestClient(create_app(env=app_env), headers=JSON) as test_client:
        response = test_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse(response.text)
    messages = "vapi_ingest_queue_messages"
    assert value(samples, messages, queue=QUEUE, state="ready") == 2
    assert value(samples, messages, queue=QUEUE, state="in_flight") == 1
    assert value(samples, messages, queue=QUEUE, state="delayed") == 2
    assert value(samples, messages, queue=QUEUE, state="dead") == 3
    age = value(samples, "vapi_ingest_queue_oldest_message_age_seconds", queue=QUEUE) or 0
    assert 90 <= age < 90 + (time.time() * 1000 - now_ms) / 1000 + 1
    assert value(samples, "vapi_ingest_call_events", state="pending") == 2
    assert value(samples, "vapi_ingest_call_events", state="waiting") == 1
    assert value(samples, "vapi_ingest_call_events", state="failed") == 3
    assert value(samples, "vapi_ingest_source_up", source="redis") == 1
    assert value(samples, "vapi_ingest_source_up", source="postgres") == 1
    assert "vapi_ingest_deliveries_total" not in names(samples)  # nothing counted in this test's directory


def test_empty_queue_has_no_age(env: dict[str, str], tmp_path: Path) -> None:
    """With nothing queued every queue gauge is 0, the oldest age included."""
    with TestClient(create_app(env={**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}), headers=JSON) as client:
        samples = parse(client.get("/metrics").text)
    assert value(samples, "vapi_ingest_queue_oldest_message_age_seconds", queue=QUEUE) == 0
    assert value(samples, "vapi_ingest_queue_messages", queue=QUEUE, state="ready") == 0


def test_token_protects_the_endpoint(env: dict[str, str], tmp_path: Path) -> None:
    """With INGEST_METRICS_TOKEN set, only `Authorization: Bearer <token>` gets the counters."""
    app_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "INGEST_METRICS_TOKEN": "t0ken"}
    with TestClient(create_app(env=app_env), headers=JSON) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"authorization": "Basic t0ken"}).status_code == 401
        assert client.get("/metrics", headers={"authorization": "t0ken"}).status_code == 401
        denied = client.get("/metrics", headers={"authorization": "Bearer t0ke"})
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"] == "Bearer"
        assert denied.json() == {**REFUSED, "reason": "secret_mismatch"}
        assert client.get("/metrics").json() == {**REFUSED, "reason": "missing_credentials"}
        basic = client.get("/metrics", headers={"authorization": "Basic t0ken"})
        assert basic.json() == {**REFUSED, "reason": "malformed_credentials"}
        allowed = client.get("/metrics", headers={"authorization": "Bearer t0ken"})
        assert allowed.status_code == 200
        assert "vapi_ingest_source_up" in allowed.text
    with TestClient(create_app(env={**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}), headers=JSON) as client:
        assert client.get("/metrics").status_code == 200


def test_scrape_with_redis_unreachable_marks_it_down(env: dict[str, str], tmp_path: Path) -> None:
    """With Redis refusing connections the scrape is still a 200: Redis is down, Postgres's gauges are there."""
    app_env = {**env, "REDIS_URL": "redis://127.0.0.1:1/0", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with TestClient(create_app(env=app_env), headers=JSON) as client:
        started = time.monotonic()
        response = client.get("/metrics")
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    samples = parse(response.text)
    assert value(samples, "vapi_ingest_source_up", source="redis") == 0
    assert value(samples, "vapi_ingest_source_up", source="postgres") == 1
    assert "vapi_ingest_queue_messages" not in names(samples)
    assert value(samples, "vapi_ingest_call_events", state="pending") == 0
    assert elapsed < 3


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections (in the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_silent_servers_do_not_stall_a_scrape() -> None:
    """Redis and Postgres that accept but never answer are both reported down within a few seconds."""
    with silent_server() as port:
        sources = Sources(
            redis_url=f"redis://127.0.0.1:{port}/0",
            database_url=f"postgresql://postgres@127.0.0.1:{port}/none",
            namespace="none",
            queue_names=(QUEUE,),
            connect_kwargs={},
        )
        started = time.monotonic()
        snap = asyncio.run(SourceReaders(sources).snapshot())
        elapsed = time.monotonic() - started
    assert snap.queues is None
    assert snap.events is None
    assert elapsed < 3  # the sources' own timeouts, not the deadline


def test_a_stuck_source_is_down_without_a_second_read(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Postgres read that hangs is down on the next scrape at once, on no second thread; then it is read again."""
    release, reads, read_events = threading.Event(), [], gauges.read_events

    def hanging(sources: Sources) -> Any:
        reads.append(threading.current_thread().name)
        if len(reads) == 1:
            release.wait(30)
        return read_events(sources)

    monkeypatch.setattr(gauges, "SOURCE_DEADLINE", 0.5)
    monkeypatch.setattr(gauges, "read_events", hanging)
    with TestClient(create_app(env={**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}), headers=JSON) as client:
        first = parse(client.get("/metrics").text)
        started = time.monotonic()
        second = parse(client.get("/metrics").text)
        assert time.monotonic() - started < 0.4  # not waiting on the stuck read again
        assert reads == ["metrics-postgres"]  # its own thread, not the event loop's shared pool
        release.set()
        deadline = time.monotonic() + 10
        while any(thread.name == "metrics-postgres" for thread in threading.enumerate()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        third = parse(client.get("/metrics").text)
    for samples in (first, second):
        assert value(samples, "vapi_ingest_source_up", source="postgres") == 0
        assert value(samples, "vapi_ingest_source_up", source="redis") == 1
        assert "vapi_ingest_call_events" not in names(samples)
    assert len(reads) == 2
    assert value(third, "vapi_ingest_source_up", source="postgres") == 1
    assert value(third, "vapi_ingest_call_events", state="failed") == 0


def test_scrape_connection_has_client_side_timeouts() -> None:
    """The scrape's (every backlog reader's) Postgres connection gives up on a silent peer by itself."""
    timeouts = backlog.postgres_timeouts()
    assert timeouts["connect_timeout"] == 2
    assert timeouts["keepalives"] == 1
    assert "tcp_user_timeout" in timeouts  # the libpq here is 12 or newer


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_worker_counts_applied_duplicate_and_failed_events(db_url: str) -> None:
    """`process` counts an applied event, its duplicate, and a permanent failure, by type."""
    good = Event.from_body(orjson.loads(load_call("voicemail")[0]), 1_790_000_000_000)
    bad = event_from_body(orjson.loads(load_event("status_update_bad_call_id.json")), 1_790_000_000_000)
    before = {
        "applied": _sample("vapi_ingest_events_processed_total", type=good.kind, result="applied"),
        "duplicate": _sample("vapi_ingest_events_processed_total", type=good.kind, result="duplicate"),
        "failed": _sample("vapi_ingest_events_failed_total", type=bad.kind, permanent="true"),
        "latency": _sample("vapi_ingest_event_processing_seconds_count", result="applied"),
    }
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        group = GroupCommit(pool, PRIVACY)
        assert process(group, good) == EventState.APPLIED
        assert process(group, good) is None
        with pytest.raises(PermanentError):
            process(group, bad)
        group.close()
    assert _sample("vapi_ingest_events_processed_total", type=good.kind, result="applied") == before["applied"] + 1
    assert _sample("vapi_ingest_events_processed_total", type=good.kind, result="duplicate") == before["duplicate"] + 1
    assert _sample("vapi_ingest_events_failed_total", type=bad.kind, permanent="true") == before["failed"] + 1
    assert _sample("vapi_ingest_event_processing_seconds_count", result="applied") == before["latency"] + 1


def test_directory_defaults(tmp_path: Path) -> None:
    """Unset, each role gets its own directory under the data dir, cleared of exited processes' files at start.

    A directory set by hand is used as it is.
    """
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead_pid = int(exited.stdout)
    web = tmp_path / "metrics" / "web"
    web.mkdir(parents=True)
    for name in (f"counter_{dead_pid}.db", f"gauge_livesum_{dead_pid}.db", f"histogram_{os.getpid()}.db"):
        (web / name).write_bytes(b"")
    (tmp_path / "metrics" / "worker").mkdir()
    (tmp_path / "metrics" / "worker" / f"counter_{dead_pid}.db").write_bytes(b"")
    environment: dict[str, str] = {}
    path = multiprocess.prepare(multiprocess.WEB, tmp_path, environment)
    assert path == web.resolve()
    root = str((tmp_path / "metrics").resolve())
    assert environment == {"INGEST_METRICS_DIR": root, "PROMETHEUS_MULTIPROC_DIR": str(path)}
    assert [file.name for file in path.glob("*.db")] == [f"histogram_{os.getpid()}.db"]  # a running process's
    assert (tmp_path / "metrics" / "worker" / f"counter_{dead_pid}.db").exists()  # not the web's to clear
    assert [p.name for p in multiprocess.reading_dirs(environment)] == ["web", "worker"]
    assert [p.name for p in multiprocess.reading_dirs(environment, siblings=False)] == ["web"]

    own = tmp_path / "own"
    own.mkdir()
    (own / "counter_3.db").write_bytes(b"mine")
    by_hand = {"PROMETHEUS_MULTIPROC_DIR": str(own)}
    assert multiprocess.prepare(multiprocess.WORKER, tmp_path, by_hand) == own
    assert by_hand == {"PROMETHEUS_MULTIPROC_DIR": str(own)}
    assert (own / "counter_3.db").exists()
    assert multiprocess.reading_dirs({}) == ()


def test_unwritable_directories(tmp_path: Path) -> None:
    """An unwritable default leaves the process counting in memory; an unwritable directory set by hand is refused."""
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    environment: dict[str, str] = {}
    assert multiprocess.prepare(multiprocess.WEB, blocker, environment) is None
    assert environment == {}
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.prepare(multiprocess.WEB, tmp_path, {"PROMETHEUS_MULTIPROC_DIR": str(blocker / "metrics")})


@pytest.mark.parametrize("raw", ["http", "0", "70000", "-1"])
def test_bad_worker_port_is_refused(raw: str) -> None:
    """INGEST_WORKER_METRICS_PORT must be a port number."""
    with pytest.raises(ConfigError, match="INGEST_WORKER_METRICS_PORT"):
        multiprocess.worker_metrics_port({"INGEST_WORKER_METRICS_PORT": raw})
    assert multiprocess.worker_metrics_port({"INGEST_WORKER_METRICS_PORT": "9191"}) == 9191
    assert multiprocess.worker_metrics_port({}) is None
