"""The workers' anomaly scan: once per interval across processes, new anomalies logged, flagged callers published."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
from support.traffic import Call, insert, spread

from ingest.ops import flagged_callers
from ingest.pseudonym import pseudonym
from ingest.settings import Settings
from worker.sweeper import AnomalySchedule

CALLER = "+64211234999"


def settings(db_url: str, redis_url: str, namespace: str) -> Settings:
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url, "INGEST_REDIS_NAMESPACE": namespace}
    return Settings.from_env(env)


def test_a_due_scan_runs_once_logs_what_is_new_and_publishes_flagged_callers(
    db: psycopg.Connection[Any],
    db_url: str,
    redis_server_url: str,
    redis_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first sweep scans; the same process within its interval, or another process, does not scan again."""
    now = datetime.now(UTC)
    insert(db, spread(replace(Call("acme", now - timedelta(minutes=40)), number=CALLER), 6))
    config = settings(db_url, redis_server_url, redis_namespace)

    with caplog.at_level(logging.INFO, logger="worker.sweeper"):
        result = AnomalySchedule(config)()
    assert result is not None
    assert result.found["repeat_caller"] == 1
    [detected] = [record for record in caplog.records if record.getMessage() == "anomaly detected"]
    key = config.pseudonym_key
    assert key is not None
    assert detected.subject == pseudonym(CALLER, key)  # type: ignore[attr-defined]
    assert detected.kind == "repeat_caller"  # type: ignore[attr-defined]
    assert all(CALLER not in record.getMessage() + repr(record.__dict__) for record in caplog.records)

    client = redis.Redis.from_url(redis_server_url)
    published = client.hgetall(flagged_callers.key(redis_namespace))
    client.close()
    assert list(published) == [pseudonym(CALLER, key).encode()]

    assert AnomalySchedule(config)() is None  # another process: the last scan is recent
    assert db.execute("SELECT count(*) FROM anomaly_scans").fetchone() == (1,)
    assert db.execute("SELECT runner FROM anomaly_scans").fetchone() == ("worker",)
