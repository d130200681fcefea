"""``ingest anomalies [scan | ack]``: a scan finds a repeat caller and flags it, ack is audited and lets it through."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
import redis
from support.ops_cli import use_servers
from support.rows import PRIVACY

from ingest.apply import apply_event
from ingest.body import loads_storable
from ingest.cli import main
from ingest.event import Event
from ingest.ops import flagged_callers
from ingest.pseudonym import parse_key, pseudonym

Conn = psycopg.Connection[Any]
ASSISTANT = "5b0a8f0e-3a1f-4c55-9f0e-2d7c7c0a0001"
CALLER = "+64215550123"


def call(conn: Conn, number: str, ended: datetime, client: str = "acme") -> None:
    message = {
        "type": "end-of-call-report",
        "call": {
            "id": str(uuid.uuid4()),
            "type": "inboundPhoneCall",
            "assistantId": ASSISTANT,
            "customer": {"number": number},
            "metadata": {"client_id": client},
        },
        "startedAt": (ended - timedelta(minutes=2)).isoformat().replace("+00:00", "Z"),
        "endedAt": ended.isoformat().replace("+00:00", "Z"),
        "cost": 0.12,
    }
    event = Event.from_body(loads_storable(orjson.dumps({"message": message})), int(ended.timestamp() * 1000) + 1000)
    apply_event(conn, event, PRIVACY)


@pytest.fixture
def repeat_caller(
    db: Conn, db_url: str, redis_server_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Conn:
    use_servers(monkeypatch, db_url=db_url, redis_url=redis_server_url, namespace=redis_namespace)
    now = datetime.now(UTC)
    for minutes in (50, 40, 30, 20, 10, 5):
        call(db, CALLER, now - timedelta(minutes=minutes))
    call(db, "+64215550999", now - timedelta(minutes=15))  # someone else, once
    return db


def flagged(redis_url: str, namespace: str) -> dict[bytes, bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return client.hgetall(flagged_callers.key(namespace))  # type: ignore[return-value]
    finally:
        client.close()


def test_scan_list_ack(
    repeat_caller: Conn, redis_server_url: str, redis_namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scan raises one repeat-caller anomaly under the caller's pseudonym and flags it; ack clears both."""
    key = parse_key(os.environ["INGEST_PSEUDONYM_KEY"])
    assert key is not None
    alias = pseudonym(CALLER, key)

    assert main(["anomalies", "scan", "--json"]) == 0
    scanned = orjson.loads(capsys.readouterr().out)
    assert scanned["found"].get("repeat_caller") == 1
    assert scanned["new"] == 1
    assert scanned["flagged_callers"] == 1
    [(flagged_alias, anomaly_id)] = flagged(redis_server_url, redis_namespace).items()
    assert flagged_alias.decode() == alias

    assert main(["anomalies", "scan"]) == 0  # again: the same anomaly, updated
    assert "0 new, 1 updated" in capsys.readouterr().out

    assert main(["anomalies", "--open", "--json"]) == 0
    [listed] = orjson.loads(capsys.readouterr().out)
    assert listed["id"] == int(anomaly_id)
    assert (listed["kind"], listed["client_id"], listed["subject_kind"], listed["subject"]) == (
        "repeat_caller",
        "acme",
        "caller",
        alias,
    )
    assert main(["anomalies"]) == 0
    table = capsys.readouterr().out
    assert f"caller:{alias}" in table
    assert CALLER not in table
    assert "215550123" not in table

    assert main(["anomalies", "ack", str(listed["id"]), "--reason", "a carer calling back"]) == 0
    assert f"acknowledged anomaly {listed['id']}" in capsys.readouterr().out
    assert flagged(redis_server_url, redis_namespace) == {}
    logged = repeat_caller.execute(
        "SELECT actor_kind, surface, target_kind, target, reason FROM data_access_log WHERE action = 'anomaly_ack'"
    ).fetchall()
    assert logged == [("os_user", "cli", "anomaly", str(listed["id"]), "a carer calling back")]

    assert main(["anomalies", "ack", str(listed["id"]), "--reason", "again"]) == 1  # already acknowledged
    assert main(["anomalies", "ack", "999999", "--reason", "no such"]) == 1
    capsys.readouterr()
    assert main(["anomalies", "--open"]) == 0
    assert "no open anomalies" in capsys.readouterr().out


def test_ack_needs_a_reason(repeat_caller: Conn) -> None:
    """``ack`` without ``--reason`` is a usage error."""
    with pytest.raises(SystemExit) as exited:
        main(["anomalies", "ack", "1"])
    assert exited.value.code == 2
