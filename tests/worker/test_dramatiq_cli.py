"""``ingest worker`` runs Dramatiq's command line with the project's JSON log lines in every process."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import pytest
from support.live import worker_process

from ingest.dev.embedded import _free_port


@pytest.mark.slow
def test_every_line_a_real_worker_writes_is_json(
    db_url: str, redis_server_url: str, redis_namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dramatiq's main process, worker process and fork (the metrics server) log JSON from boot to shutdown."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_server_url,
        "INGEST_REDIS_NAMESPACE": redis_namespace,
        "INGEST_DATA_DIR": str(tmp_path),
        "INGEST_WORKER_METRICS_PORT": str(_free_port()),
        "LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "worker.log"
    with worker_process(env, threads=2, log_path=str(log_path)) as process:
        deadline = time.monotonic() + 60
        while log_path.read_bytes().count(b"is ready for action") < 2:  # the worker process and the fork
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        # SIGTERM to Dramatiq's main process only, as a supervisor stops it: it stops its children
        # gracefully (a second SIGTERM straight to them would make them exit at once).
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    lines = log_path.read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]  # raises on any line that is not JSON
    assert all(isinstance(record, dict) for record in records)
    said = {(record["logger"], record["msg"]) for record in records}
    assert any(logger == "dramatiq.MainProcess" and msg.endswith("is booting up.") for logger, msg in said)
    assert ("dramatiq.WorkerProcess(0)", "Worker process is ready for action.") in said
    assert ("dramatiq.worker.Worker", "Worker has been shut down.") in said
