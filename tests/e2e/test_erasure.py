"""An erased caller, then a replay of their call's recorded events: a database dump holds nothing of them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.apply import apply_bodies
from support.fixtures import load_call
from support.ops_cli import use_servers
from support.rows import usage

from ingest.cli import main
from ingest.vocabulary import EventState

BOOKING = "44447e38-9fd3-4025-bc93-2132b1b437d0"
REASON = "ticket PRIV-90: erasure request"
# The caller's number as it could be written, and what they said.
SECRETS = ("+64211234567", "64211234567", "0211234567", "21 123 4567", "Hemi Walker", "sore tooth", "H D 4 8 2 1")
RECORDING = "storage.vapi.ai/" + BOOKING


def dump(db_url: str) -> str:
    pg_dump = shutil.which("pg_dump") or "/usr/lib/postgresql/15/bin/pg_dump"
    if not Path(pg_dump).exists():
        pytest.skip("pg_dump is not installed: the database dump cannot be checked")
    done = subprocess.run([pg_dump, "--data-only", f"--dbname={db_url}"], capture_output=True, check=True, timeout=120)
    return done.stdout.decode()


def test_a_replay_after_erasure_leaves_no_personal_data(
    db: psycopg.Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Erased by number, then every event of the call delivered again: the dump has neither number nor words."""
    bodies = load_call("inbound_booking")
    apply_bodies(db, bodies)
    apply_bodies(db, load_call("voicemail"))  # another caller, kept
    use_servers(monkeypatch, db_url=db_url)
    with_caller = dump(db_url)
    assert "Hemi Walker" in with_caller
    assert RECORDING in with_caller  # the recording link, in the row's metadata
    billed = usage(db)

    for given in ("021 123 4567", "+64 21 123 4567", "0211234567"):  # found each time, the last two by pseudonym
        assert main(["erase", "--customer-number", given, "--reason", REASON]) == 0
    assert "erased 1 session(s)" in capsys.readouterr().out
    assert apply_bodies(db, bodies) == [EventState.IGNORED] * len(bodies)

    erased = dump(db_url)
    assert [secret for secret in SECRETS if secret in erased] == []
    assert RECORDING not in erased
    assert "+64215550147" in erased  # the other caller's row is untouched
    assert usage(db) == billed
    assert db.execute("SELECT count(*) FROM data_access_log WHERE action = 'erase'").fetchone() == (3,)
