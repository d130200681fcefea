"""Migration 0019: dedupe keys recorded before the upgrade are rewritten as the worker now computes them."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb
from support.apply import PRIVACY

from ingest.apply import apply_event
from ingest.event import Event
from ingest.mapping.event_key import composed_key
from ingest.migrate import MIGRATIONS_DIR, migrate

TZ = "Pacific/Auckland"
MESSAGE = {
    "type": "status-update",
    "status": "in-progress",
    "timestamp": 1_780_000_000_000,
    "call": {"id": "2f0c8a6e-54a8-4d2b-9c4e-0d7f3a1b2c3d", "assistantId": "0b5e3c1a-2d4f-4a6b-8c9d-1e2f3a4b5c6d"},
}


def test_redelivery_of_an_event_recorded_before_the_upgrade_is_a_duplicate(empty_db_url: str, tmp_path: Path) -> None:
    """An event applied under the old readable key, delivered again after the upgrade, is not applied twice."""
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name[:4] < "0019":
            shutil.copy(path, older / path.name)
    migrate(empty_db_url, local_timezone=TZ, directory=older, functions=None)  # today's functions need today's tables
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO call_events (call_id, message_type, dedupe_key, message, state)"
            " VALUES (%s, 'status-update', %s, %s, 'applied')",
            (MESSAGE["call"]["id"], composed_key(MESSAGE), Jsonb(MESSAGE)),  # type: ignore[index]
        )
    migrate(empty_db_url, local_timezone=TZ)
    with psycopg.connect(empty_db_url) as conn:
        assert apply_event(conn, Event(MESSAGE, datetime.now(UTC)), PRIVACY) is None  # a duplicate
        rows = conn.execute("SELECT length(dedupe_key), state FROM call_events").fetchall()
    assert rows == [(64, "applied")]
