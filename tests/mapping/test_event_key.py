"""Dedupe keys: a fixed-length digest of the composed key, whatever the event says."""

from __future__ import annotations

import hashlib

from ingest.mapping.event_key import composed_key, event_key

CALL = {"id": "2f0c8a6e-54a8-4d2b-9c4e-0d7f3a1b2c3d"}


def test_key_is_the_sha256_of_the_composed_key() -> None:
    """The key is 64 hex characters: the SHA-256 of the readable composition's UTF-8 bytes."""
    message = {"type": "status-update", "status": "ended", "timestamp": 1_780_000_000_000, "call": CALL}
    composed = composed_key(message)
    assert composed.startswith(f"call:{CALL['id']}|status-update|1780000000000|")
    assert event_key(message) == hashlib.sha256(composed.encode()).hexdigest()


def test_long_values_give_a_key_of_the_same_length() -> None:
    """A 3,000-character timestamp or session id still gives a 64-character key, distinct per value."""
    long_time = {"type": "status-update", "timestamp": "7" * 3000, "call": CALL}
    long_session = {"type": "session.created", "session": {"id": "s" * 3000}}
    keys = {event_key(long_time), event_key(long_session), event_key({**long_time, "timestamp": "7" * 2999})}
    assert len(keys) == 3
    assert {len(key) for key in keys} == {64}


def test_a_message_too_deep_for_orjson_still_has_a_key() -> None:
    """A message nested 300 deep (queued before the depth bound) gets a stable key, so ops can match it."""
    deep: list[object] = []
    for _ in range(300):
        deep = [deep]
    message = {"type": "status-update", "deep": deep, "call": CALL}
    assert event_key(message) == event_key(dict(message))
    assert event_key(message) != event_key({**message, "deep": []})
