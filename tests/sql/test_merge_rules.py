"""The merge's rules as data: sources agree with Python, every column has one home, the lock-free path."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from ingest import queries
from ingest.patch import Patch, Source

Conn = psycopg.Connection[tuple[Any, ...]]

ASSISTANT = "0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a"
TRANSIENT = {"assistants": {ASSISTANT: {"kind": "transient", "name": "Front desk"}}}
# Columns no merge rule writes: keys, bookkeeping, and what the analytics trigger derives.
NOT_MERGED = {"id", "created_at", "call_id", "session_id", "started_at_nz", "ended_at_nz"}


def apply(conn: Conn, patch: Patch) -> str:
    row = conn.execute(queries.APPLY_PATCH, {"patch": patch.to_json().decode()}).fetchone()
    assert row is not None
    return str(row[0])


def identity(call_id: str, metadata: dict[str, Any]) -> Patch:
    patch = Patch(call_id=call_id, metadata=metadata)
    return patch.with_value("assistant_id", ASSISTANT, Source.EVENT)


def test_every_python_source_has_a_sql_rank_and_back(db: Conn) -> None:
    """ingest_sources() names exactly ingest.patch.Source's members, each ranked by ingest_source_rank."""
    rows = db.execute("SELECT source, rank, ingest_source_rank(source) FROM ingest_sources()").fetchall()
    assert {source for source, _, _ in rows} == {member.value for member in Source}
    assert all(rank == generated for _, rank, generated in rows)
    assert len({rank for _, rank, _ in rows}) == len(rows)  # ranks are a strict order
    assert db.execute("SELECT ingest_source_rank(NULL), ingest_source_rank('elsewhere')").fetchone() == (-1, -1)


def test_every_user_sessions_column_is_merged_or_a_key(db: Conn) -> None:
    """Each column is written by exactly one merge rule, merged explicitly, or never merged."""
    ruled = [c for (c,) in db.execute("SELECT unnest(columns) FROM ingest_merge_rules()").fetchall()]
    assert len(ruled) == len(set(ruled))
    explicit = {"source", "metadata", "server_messages"}
    table = {
        c
        for (c,) in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'user_sessions'"
        ).fetchall()
    }
    assert set(ruled) | explicit | NOT_MERGED == table
    assert not set(ruled) & (explicit | NOT_MERGED)


def test_identity_patch_with_known_metadata_skips_the_row_lock(db: Conn, db_url: str) -> None:
    """A transient assistant's identity-only event whose metadata the row already holds needs no lock."""
    call_id = str(uuid.uuid4())
    assert apply(db, identity(call_id, TRANSIENT)) == "inserted"
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT 1 FROM user_sessions WHERE call_id = %s FOR UPDATE", (call_id,))
        db.execute("SET lock_timeout = '200ms'")
        assert apply(db, identity(call_id, TRANSIENT)) == "unchanged"
        smaller = {"assistants": {ASSISTANT: {"kind": "transient"}}}
        assert apply(db, identity(call_id, smaller)) == "unchanged"
        # Metadata the row lacks must be merged, so that event waits for the row lock.
        grown = {"assistants": {ASSISTANT: {"kind": "transient", "name": "Front desk 2"}}}
        with pytest.raises(psycopg.errors.LockNotAvailable):
            apply(db, identity(call_id, grown))
        holder.rollback()
    assert apply(db, identity(call_id, grown)) == "updated"
    assert db.execute(
        "SELECT metadata -> 'assistants' FROM user_sessions WHERE call_id = %s", (call_id,)
    ).fetchone() == ({ASSISTANT: {"kind": "transient", "name": "Front desk 2"}},)


@pytest.mark.parametrize("api_first", [True, False])
def test_the_api_outranks_the_report_and_structured_analysis_outranks_both(db: Conn, api_first: bool) -> None:
    """An ended call's API values replace the report's in either order; the assistant's structured sentiment stays."""
    call_id = str(uuid.uuid4())
    report = (
        identity(call_id, {})
        .with_value("ended_at_utc", "2026-05-06T00:41:33.100Z", Source.REPORT)
        .with_value("cost_total", "0.0900", Source.REPORT)
        .with_value("sentiment", "negative", Source.STRUCTURED)
    )
    api = (
        identity(call_id, {})
        .with_value("ended_at_utc", "2026-05-06T00:41:33.411Z", Source.API)
        .with_value("cost_total", "0.0800", Source.API)
        .with_value("sentiment", "positive", Source.API)
    )
    for patch in (api, report) if api_first else (report, api):
        apply(db, patch)
    row = db.execute(
        "SELECT ended_at_utc = '2026-05-06T00:41:33.411Z', cost_total, sentiment,"
        " metadata -> 'provenance' ->> 'cost_total' FROM user_sessions WHERE call_id = %s",
        (call_id,),
    ).fetchone()
    assert row == (True, Decimal("0.0800"), "negative", "api")
