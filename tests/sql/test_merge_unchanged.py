"""Events that only repeat what a row holds leave it alone, also for an unregistered client or a sealed raw number."""

from __future__ import annotations

from typing import Any

import psycopg
from support.apply import RECEIVED_AT_MS, queued_body
from support.fixtures import load_call
from support.rows import PRIVACY

from ingest import queries
from ingest.apply import prepare
from ingest.body import loads_storable
from ingest.event import Event
from ingest.migrate import migrate


def outcomes(conn: psycopg.Connection[Any], call: str) -> list[tuple[str, str]]:
    """Each event of the recorded call, recorded and merged in a transaction of its own: (type, merge outcome)."""
    found = []
    for raw in load_call(call):
        prepared = prepare(Event.from_body(loads_storable(queued_body(raw)), RECEIVED_AT_MS), PRIVACY)
        with conn.transaction():
            row = conn.execute(queries.RECORD_AND_APPLY_UNLESS_ERASED, prepared.params).fetchone()
        assert row is not None
        found.append((prepared.event.kind, row[2]))
    return found


def test_repeated_identity_of_an_unregistered_client_with_a_sealed_number_changes_nothing(db_url: str) -> None:
    """A SIP call (its number kept sealed in metadata.raw_numbers) of a client nobody registered: its final
    transcripts repeat only its identity, and the row is neither locked nor rewritten for them."""
    migrate(db_url, local_timezone="Pacific/Auckland", create_clients=False)
    with psycopg.connect(db_url) as conn:
        merged = outcomes(conn, "era_sip_call")
        row = conn.execute("SELECT client_id, metadata FROM user_sessions").fetchone()
    assert row is not None
    client_id, metadata = row
    assert client_id is None
    assert metadata["unknown_client_id"] == "client-era-tuatara-brewing"
    assert PRIVACY.open_row({"metadata": metadata})["metadata"]["raw_numbers"] == {
        "business_number": "sip:tuatara-taproom@sip.vapi.ai"
    }
    assert {outcome for kind, outcome in merged if kind == "transcript"} == {"unchanged"}
    others = [outcome for kind, outcome in merged if kind != "transcript"]
    assert others == ["inserted", "updated", "updated", "updated"]
