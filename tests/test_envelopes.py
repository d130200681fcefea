"""Events sealed against their call's envelope: smaller, and opened JSON-equal with it."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from support.fixtures import load_call

from ingest.envelopes import MIN_ENVELOPE_BYTES, envelope_of
from ingest.privacy import Privacy
from ingest.sealing import Keyring, SealError, generate_key, key_id_of, reference_id_of

KEYRING = Keyring.parse(generate_key())
PRIVACY = Privacy(keyring=KEYRING)


def _messages(name: str = "long_call") -> list[dict[str, Any]]:
    """The call's messages as the worker sees them."""
    return [orjson.loads(raw)["message"] for raw in load_call(name)]


def test_every_event_opens_json_equal_with_its_envelope() -> None:
    """Each recorded event sealed against its envelope opens to exactly the message received."""
    for message in _messages():
        sealed = PRIVACY.seal_event(message)
        assert sealed.envelope is not None
        assert sealed.body is not None
        assert PRIVACY.open_message(None, sealed.body, sealed.envelope.body) == message


def test_a_call_keeps_one_envelope_that_every_worker_names_alike() -> None:
    """The same envelope gets the same id however often it is sealed; another call's differs."""
    messages = _messages()
    ids = {PRIVACY.seal_event(message).envelope.id for message in messages}  # type: ignore[union-attr]
    assert len(ids) == 1
    other = {**messages[0], "call": {**messages[0]["call"], "id": str(uuid.uuid4())}}
    assert PRIVACY.seal_event(other).envelope.id not in ids  # type: ignore[union-attr]


def test_bodies_sealed_against_the_envelope_are_less_than_half_the_size() -> None:
    """The long call's bodies plus one envelope take under half of what sealing each whole takes."""
    messages = _messages()
    whole = sum(len(PRIVACY.seal_message(message) or b"") for message in messages)
    sealed = [PRIVACY.seal_event(message) for message in messages]
    split = sum(len(s.body or b"") for s in sealed) + len(sealed[0].envelope.body)  # type: ignore[union-attr]
    assert split < 0.5 * whole


def test_a_body_without_its_envelope_does_not_open() -> None:
    """Missing, or another call's, envelope: a SealError naming the key, never a wrong message."""
    first, *_ = _messages()
    sealed = PRIVACY.seal_event(first)
    assert sealed.body is not None
    assert sealed.envelope is not None
    with pytest.raises(SealError) as missing:
        PRIVACY.open_message(None, sealed.body, None)
    assert missing.value.key_id == KEYRING.current
    other = PRIVACY.seal_event({**first, "call": {**first["call"], "id": str(uuid.uuid4())}})
    with pytest.raises(SealError):
        PRIVACY.open_message(None, sealed.body, other.envelope.body)  # type: ignore[union-attr]
    tampered = bytearray(sealed.envelope.body)
    tampered[-1] ^= 1
    with pytest.raises(SealError):
        PRIVACY.open_message(None, sealed.body, bytes(tampered))


def test_values_sealed_before_still_open() -> None:
    """A v1 body (sealed whole) opens as before, with or without an envelope given."""
    message = _messages()[0]
    old = PRIVACY.seal_message(message)
    assert old is not None
    assert old.startswith(b"v1:")
    assert reference_id_of(old) is None
    assert PRIVACY.open_message(None, old) == message
    assert PRIVACY.open_message(None, old, PRIVACY.seal_event(message).envelope.body) == message  # type: ignore[union-attr]


def test_a_v2_body_names_its_key_and_reference() -> None:
    """The v2 prefix carries the key id (for rotation) and the 16-byte envelope id."""
    sealed = PRIVACY.seal_event(_messages()[0])
    assert sealed.body is not None
    assert sealed.envelope is not None
    assert sealed.body.startswith(f"v2:{KEYRING.current}:".encode())
    assert key_id_of(sealed.body) == KEYRING.current
    assert reference_id_of(sealed.body) == sealed.envelope.id


def test_events_without_an_envelope_worth_keeping_are_sealed_whole() -> None:
    """No UUID call id, or an envelope under the threshold: a v1 body and no envelope."""
    message = _messages()[0]
    session_event = {key: value for key, value in message.items() if key != "call"}
    assert envelope_of(session_event) is None
    tiny = {"type": "status-update", "call": {"id": str(uuid.uuid4())}}
    assert envelope_of(tiny) is None
    assert len(orjson.dumps({"call": tiny["call"]})) < MIN_ENVELOPE_BYTES
    sealed = PRIVACY.seal_event(session_event)
    assert sealed.envelope is None
    assert sealed.body is not None
    assert sealed.body.startswith(b"v1:")
    assert PRIVACY.open_message(None, sealed.body) == session_event


def test_plain_text_keeps_the_message_in_clear() -> None:
    """Without keys nothing is sealed: no body, no envelope."""
    assert Privacy().seal_event(_messages()[0]).body is None
