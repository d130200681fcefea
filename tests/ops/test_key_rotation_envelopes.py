"""Key rotation of bodies sealed against their call's envelope: re-sealed once, against a new one."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from support.apply import apply_bodies
from support.fixtures import load_call
from support.rows import ENVELOPE, stored_messages

from ingest.ops import keys
from ingest.privacy import Privacy
from ingest.sealing import Keyring, generate_key

Conn = psycopg.Connection[Any]
B = generate_key()
BOTH = Privacy(phone_region="NZ", keyring=Keyring.parse(f"{B},{os.environ['INGEST_ENCRYPTION_KEYS']}"))


def envelopes(db: Conn) -> set[tuple[str, bytes]]:
    return {(str(c), bytes(i)) for c, i in db.execute("SELECT call_id, envelope_id FROM call_envelopes")}


def test_rotation_reseals_a_v2_body_against_an_envelope_under_the_new_key(db: Conn) -> None:
    """Every v2 body ends as v2 under the new key with a kept envelope, opens as before; the old envelopes go."""
    apply_bodies(db, load_call("long_call"))
    messages = stored_messages(db)
    before = envelopes(db)
    assert before
    rotated = keys.rotate(db, BOTH, batch=7)
    assert (rotated.events, rotated.unopened) == (len(messages), 0)
    prefix = f"v2:{B.split(':')[0]}:".encode()
    assert db.execute("SELECT DISTINCT substring(body FROM 1 FOR %s) FROM call_events", (len(prefix),)).fetchall() == [
        (prefix,)
    ]
    after = envelopes(db)
    assert after
    assert not after & before
    kept = db.execute(f"SELECT message, body, {ENVELOPE} FROM call_events ORDER BY id").fetchall()
    assert [BOTH.open_message(m, b, v) for m, b, v in kept] == messages
    assert keys.pending_events(db, BOTH) == 0  # v2 under the current key is current
    assert keys.rotate(db, BOTH).events == 0
