"""INGEST_CREATE_CLIENTS: an unknown metadata.client_id creates a client only when the setting allows it."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest
from support.apply import apply_bodies

from ingest.migrate import migrate

TZ = "Pacific/Auckland"
KNOWN = "client-known"


def report(call_id: str, client_id: str) -> bytes:
    message = {
        "type": "end-of-call-report",
        "startedAt": "2026-03-10T21:14:05.334Z",
        "endedAt": "2026-03-10T21:16:05.334Z",
        "endedReason": "customer-ended-call",
        "call": {
            "id": call_id,
            "assistantId": "0b5e3c1a-2d4f-4a6b-8c9d-1e2f3a4b5c6d",
            "metadata": {"client_id": client_id},
        },
    }
    return orjson.dumps({"message": message})


def rows(conn: psycopg.Connection[Any]) -> dict[str, tuple[Any, Any]]:
    found = conn.execute("SELECT call_id::text, client_id, metadata ->> 'unknown_client_id' FROM user_sessions")
    return {row[0]: (row[1], row[2]) for row in found}


@pytest.mark.parametrize("create", [False, True], ids=["default", "INGEST_CREATE_CLIENTS=true"])
def test_unknown_client_is_created_only_when_allowed(db_url: str, create: bool) -> None:
    """By default an unknown client id is kept in metadata.unknown_client_id, the row gets no client and no usage."""
    migrate(db_url, local_timezone=TZ, create_clients=create)
    known_call, unknown_call = "6f1c2b9e-8d4a-4e3b-9a7c-1d2e3f4a5b60", "6f1c2b9e-8d4a-4e3b-9a7c-1d2e3f4a5b61"
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO client_subscriptions (client_id, rate_per_minute) VALUES (%s, 0.1)", (KNOWN,))
        apply_bodies(conn, [report(known_call, KNOWN), report(unknown_call, "client-attacker")])
        clients = {row[0] for row in conn.execute("SELECT client_id FROM client_subscriptions")}
        usage = {row[0] for row in conn.execute("SELECT client_id FROM client_monthly_usage")}
        found = rows(conn)
    assert found[known_call] == (KNOWN, None)
    if create:
        assert found[unknown_call] == ("client-attacker", None)
        assert clients == {KNOWN, "client-attacker"}
        assert usage == {KNOWN, "client-attacker"}
    else:
        assert found[unknown_call] == (None, "client-attacker")
        assert clients == {KNOWN}
        assert usage == {KNOWN}


def test_migrate_stores_the_setting_and_refuses_other_values(db_url: str) -> None:
    """migrate() stores create_clients as true or false; any other stored value is refused."""
    migrate(db_url, local_timezone=TZ, create_clients=False)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT ingest_create_clients()").fetchone() == (False,)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("UPDATE ingest_settings SET value = 'yes' WHERE key = 'create_clients'")
