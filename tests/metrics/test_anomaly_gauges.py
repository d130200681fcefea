"""The /metrics gauges of abuse monitoring: open anomalies by kind (zeros included) and the last scan's time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from support.app_env import app_env

from ingest.metrics.gauges import AnomalyFigures, anomaly_gauges
from ingest.vocabulary import AnomalyKind
from ingest.web.app import create_app

Conn = psycopg.Connection[Any]
OPEN = "vapi_ingest_anomalies_open"
SCANNED = "vapi_ingest_anomaly_scan_last_success_timestamp_seconds"


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir", "INGEST_METRICS_DIR", "INGEST_METRICS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return app_env(db_url, redis_server_url, redis_namespace)


def scrape(env: dict[str, str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with TestClient(create_app(env=env)) as client:
        text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def open_by_kind(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {dict(labels)["kind"]: value for (name, labels), value in samples.items() if name == OPEN}


def add_anomalies(db: Conn, *rows: tuple[str, str, str, bool]) -> None:
    """call_anomalies rows of (kind, subject_kind, subject, acknowledged), over the last hour."""
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO call_anomalies (kind, client_id, subject_kind, subject, window_start, window_end, observed,"
            " acknowledged_at, acknowledged_by, ack_reason)"
            " VALUES (%s, 'client-a', %s, %s, now() - interval '1 hour', now(), 9,"
            " CASE WHEN %s THEN now() END, CASE WHEN %s THEN 'oncall' END, CASE WHEN %s THEN 'checked' END)",
            [(kind, subject_kind, subject, ack, ack, ack) for kind, subject_kind, subject, ack in rows],
        )


def test_open_anomalies_by_kind_with_zeros_and_the_last_scan(env: dict[str, str], db: Conn) -> None:
    """Each kind has its open count, 0 for the kinds with none open; the scan time is the last scan's finish."""
    add_anomalies(
        db,
        ("volume", "client", "client-a", False),
        ("volume", "client", "client-b", False),
        ("repeat_caller", "caller", "anon:5f0c2a9d81b74e63a0c4d2e8f1b3a6c7", False),
        ("cost", "client", "client-a", True),
    )
    finished = datetime(2026, 3, 11, 10, 14, 5, tzinfo=UTC)
    db.execute(
        "INSERT INTO anomaly_scans (started_at, finished_at, runner, found, new, updated, skipped)"
        " VALUES (%s, %s, 'worker', '{\"volume\": 2}', 2, 0, '{}'),"
        " (%s, %s, 'cli', '{}', 0, 0, '{}')",
        (finished, finished, datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)),
    )
    samples = scrape(env)
    expected = {kind.value: 0.0 for kind in AnomalyKind} | {"volume": 2.0, "repeat_caller": 1.0}
    assert open_by_kind(samples) == expected
    assert samples[(SCANNED, ())] == finished.timestamp()
    assert samples[("vapi_ingest_source_up", (("source", "postgres"),))] == 1


def test_nothing_open_and_never_scanned(env: dict[str, str]) -> None:
    """A service that never scanned shows every kind at 0 and the scan time 0."""
    samples = scrape(env)
    assert open_by_kind(samples) == {kind.value: 0.0 for kind in AnomalyKind}
    assert samples[(SCANNED, ())] == 0


def test_anomaly_gauges_name_every_kind() -> None:
    """Kinds missing from the counts are gauged as 0; the gauges carry no other labels."""
    metrics = list(anomaly_gauges(AnomalyFigures({"cost": 3}, None)))
    values = {
        (metric.name, tuple(sample.labels.values())): sample.value for metric in metrics for sample in metric.samples
    }
    assert values == {
        **{(OPEN, (kind.value,)): (3.0 if kind is AnomalyKind.COST else 0.0) for kind in AnomalyKind},
        (SCANNED, ()): 0.0,
    }
