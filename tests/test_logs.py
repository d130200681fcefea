"""JSON log lines: every field bounded, whatever a sender put in it."""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import httpx
import orjson
import pytest
from support.live import JSON, web_server

from ingest.logs import FIELD_LIMIT, JsonFormatter, configure_logging

SECRET = "logs-secret"


def test_a_huge_message_type_and_call_id_make_a_short_log_line(
    db_url: str, redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    """A delivery with a 4 MB type and a 1 MB call id is logged by a real web process in a line under 2 KB."""
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_server_url,
        "INGEST_REDIS_NAMESPACE": redis_namespace,
        "VAPI_SECRET": SECRET,
        "INGEST_ENCRYPTION_KEYS": os.environ["INGEST_ENCRYPTION_KEYS"],
        "LOG_LEVEL": "INFO",
    }
    body = orjson.dumps({"message": {"type": "t" * 4_000_000, "call": {"id": "c" * 1_000_000}}})
    log_path = tmp_path / "web.log"
    with web_server(env, log_path=str(log_path)) as base:
        response = httpx.post(f"{base}/webhooks/vapi", content=body, headers={**JSON, "x-vapi-secret": SECRET})
        assert response.status_code == 200
    lines = log_path.read_bytes().splitlines()
    [delivery] = [orjson.loads(line) for line in lines if b'"msg":"delivery"' in line]
    assert delivery["type"].startswith("t" * FIELD_LIMIT + "…[+")
    assert delivery["call_id"].startswith("c" * FIELD_LIMIT + "…[+")
    assert max(len(line) for line in lines) < 2048
    assert log_path.stat().st_size < 20_000


def test_every_field_of_a_record_is_bounded() -> None:
    """Strings in the message, in extra fields and inside lists and dicts are cut; numbers are kept as they are."""
    record = logging.LogRecord("worker", logging.WARNING, "", 0, "failed: %s", ("x" * 10_000,), None)
    extra = {"error": "e" * 10_000, "count": 3, "ratio": 0.5, "ids": ["i" * 10_000] * 1000}
    record.__dict__.update(extra, fields={"k" * 500: "v" * 500})
    line = orjson.loads(JsonFormatter().format(record))
    assert len(line["msg"]) < FIELD_LIMIT + 30
    assert len(line["error"]) < FIELD_LIMIT + 30
    assert (line["count"], line["ratio"]) == (3, 0.5)
    assert len(line["ids"]) == 50
    assert all(len(value) < FIELD_LIMIT + 30 for value in line["ids"])
    [(key, value)] = line["fields"].items()
    assert len(key) < FIELD_LIMIT + 30
    assert len(value) < FIELD_LIMIT + 30


def test_an_actor_s_arguments_are_never_logged(capsys: pytest.CaptureFixture[str]) -> None:
    """At DEBUG, Dramatiq's "Received args=…" line of an actor's logger keeps no part of the webhook body."""
    configure_logging("DEBUG")
    try:
        body = {"message": {"type": "transcript", "transcript": "call me on 021 448 9031", "customer": "a@b.nz"}}
        logging.getLogger("worker.actors.apply_event").debug("Received args=%r kwargs=%r.", (body, 1), {})
    finally:
        configure_logging("INFO")
    line = capsys.readouterr().err
    assert "Received a message" in line
    assert "021 448" not in line
    assert "a@b.nz" not in line


def test_no_log_call_passes_a_field_logging_reserves() -> None:
    """``extra={"process": ...}`` makes ``logging`` raise KeyError at the log call: none in the code may."""
    reserved = set(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None).__dict__) | {"message", "asctime"}
    root = Path(__file__).resolve().parents[1]
    clashes = []
    for path in [*(root / "ingest").rglob("*.py"), *(root / "worker").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                    keys = {key.value for key in keyword.value.keys if isinstance(key, ast.Constant)}
                    clashes += [f"{path.relative_to(root)}:{node.lineno} {key}" for key in sorted(keys & reserved)]
    assert clashes == []
