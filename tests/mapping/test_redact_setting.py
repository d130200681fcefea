"""INGEST_REDACT, end to end: from the environment, through the worker's path, to the stored row."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from support.apply import RECEIVED_AT_MS, queued_body
from support.fixtures import load_call

from ingest.body import loads_storable
from ingest.event import Event
from ingest.settings import Settings
from worker.group_commit import GroupCommit
from worker.process import process

Conn = psycopg.Connection[Any]
# What the caller of the long call says, as the transcript has it (tests/fixtures/expected_rows.json).
NUMBER = "021 448 9031"


def stored_transcript(db: Conn, db_url: str, env: dict[str, str]) -> tuple[str, str | None]:
    """The long call applied as a worker started with ``env`` applies it: its row's
    ``call_transcript`` and ``call_transcript_original``."""
    settings = Settings.from_env(env)
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        group = GroupCommit(pool, settings.privacy)
        try:
            for body in load_call("long_call"):
                process(group, Event.from_body(loads_storable(queued_body(body)), RECEIVED_AT_MS))
        finally:
            group.close()
    [(transcript, original)] = db.execute(
        "SELECT call_transcript, call_transcript_original FROM user_sessions"
    ).fetchall()
    return transcript, original


def environment(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "INGEST_REDACT"}
    return {**env, **overrides}


def test_redaction_is_on_by_default(db: Conn, db_url: str) -> None:
    """Without INGEST_REDACT the searchable transcript holds [PHONE], the number only in the sealed original."""
    assert Settings.from_env(environment()).redact is True
    transcript, original = stored_transcript(db, db_url, environment())
    assert NUMBER not in transcript
    assert "my mobile is [PHONE]." in transcript
    assert original is not None
    assert original.startswith("v1:")
    assert NUMBER not in str(db.execute("SELECT * FROM user_sessions").fetchall())  # keywords, metadata too


def test_ingest_redact_false_keeps_the_transcript_in_clear(db: Conn, db_url: str) -> None:
    """INGEST_REDACT=false: the transcript column keeps the number, as the caller said it."""
    env = environment(INGEST_REDACT="false")
    assert Settings.from_env(env).redact is False
    transcript, original = stored_transcript(db, db_url, env)
    assert "my mobile is 021 448 9031." in transcript
    assert "[PHONE]" not in transcript
    assert original is None  # nothing was redacted, so there is no original to seal
