"""Sealing: AES-GCM under named keys, compressed first, bound to the column it is for."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.errors import ConfigError, is_retryable
from ingest.sealing import Keyring, KeyUnavailable, Purpose, SealError, generate_key, key_id_of
from ingest.settings import Settings

A, B = generate_key(), generate_key()
FIXED = base64.b64encode(bytes(range(32))).decode()  # test ids must not change between xdist workers
BODY = b'{"message":{"type":"transcript","transcript":"my number is 021 448 9031"}}' * 20


def test_generated_keys_parse_and_differ() -> None:
    """`generate_key` gives kid:base64 of 32 bytes, a new id and key each time."""
    keyring = Keyring.parse(f"{A},{B}")
    assert keyring.key_ids == (A.split(":")[0], B.split(":")[0])
    assert A.split(":")[1] != B.split(":")[1]
    assert len(base64.urlsafe_b64decode(A.split(":")[1])) == 32


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("nocolon", "kid:base64"),
        ("bad id!:" + FIXED, "kid:base64"),
        ("k1:" + base64.b64encode(bytes(16)).decode(), "not 32 bytes"),
        ("k1:not base64 at all", "not 32 bytes"),
        (f"k1:{FIXED},k1:{FIXED}", "same key id twice"),
    ],
)
def test_malformed_keys_are_refused(raw: str, complaint: str) -> None:
    """A key that is not kid:base64 of 32 bytes, or a repeated id, is a ConfigError saying so."""
    with pytest.raises(ConfigError, match=complaint):
        Keyring.parse(raw)


def test_first_key_seals_every_key_opens() -> None:
    """Values sealed under the old first key open once a new key is put in front of it."""
    old = Keyring.parse(A).seal(BODY, Purpose.EVENT_BODY)
    both = Keyring.parse(f"{B},{A}")
    assert both.open(old, Purpose.EVENT_BODY) == BODY
    assert key_id_of(both.seal(BODY, Purpose.EVENT_BODY)) == both.current == B.split(":")[0]


def test_sealed_value_names_its_key_and_hides_the_text() -> None:
    """The value starts v1:<kid>:, is compressed (smaller than the repetitive body) and holds no plaintext."""
    sealed = Keyring.parse(A).seal(BODY, Purpose.EVENT_BODY)
    assert sealed.startswith(f"v1:{A.split(':')[0]}:".encode())
    assert len(sealed) < len(BODY) / 4
    assert b"021 448" not in sealed
    text = Keyring.parse(A).seal_text("call me on 021 448 9031", Purpose.TRANSCRIPT)
    assert text.startswith(f"v1:{A.split(':')[0]}:")
    assert "021" not in text


def test_missing_key_is_a_transient_error_naming_it() -> None:
    """A value under a key not configured raises KeyUnavailable with its id: retried, never failed for good."""
    sealed = Keyring.parse(A).seal(BODY, Purpose.EVENT_BODY)
    with pytest.raises(KeyUnavailable, match=A.split(":")[0]) as caught:
        Keyring.parse(B).open(sealed, Purpose.EVENT_BODY)
    assert caught.value.key_id == A.split(":")[0]
    assert is_retryable(caught.value)


def test_altered_or_moved_values_do_not_open() -> None:
    """A flipped byte, or a value moved to another column, is a SealError (permanent), never garbage."""
    keyring = Keyring.parse(A)
    sealed = bytearray(keyring.seal(BODY, Purpose.EVENT_BODY))
    with pytest.raises(SealError, match="does not open"):
        keyring.open(bytes(sealed), Purpose.TRANSCRIPT)
    sealed[-1] ^= 1
    with pytest.raises(SealError, match="does not open") as caught:
        keyring.open(bytes(sealed), Purpose.EVENT_BODY)
    assert not is_retryable(caught.value)
    with pytest.raises(SealError, match="not a sealed value"):
        keyring.open(b"plain bytes", Purpose.EVENT_BODY)


def test_without_keys_text_is_marked_plain() -> None:
    """With no keys (INGEST_PLAINTEXT), text is kept marked plain: and opens as itself; bytes cannot be sealed."""
    plain = Keyring()
    assert plain.seal_text("hello", Purpose.SUMMARY) == "plain:hello"
    assert plain.open_text("plain:hello", Purpose.SUMMARY) == "hello"
    with pytest.raises(ConfigError):
        plain.seal(b"x", Purpose.EVENT_BODY)


@given(st.binary(max_size=5000), st.text(max_size=2000))
def test_round_trip(data: bytes, text: str) -> None:
    """Anything sealed opens to exactly itself, bytes and text."""
    keyring = Keyring.parse(A)
    assert keyring.open(keyring.seal(data, Purpose.EVENT_BODY), Purpose.EVENT_BODY) == data
    assert keyring.open_text(keyring.seal_text(text, Purpose.TRANSCRIPT), Purpose.TRANSCRIPT) == text


def test_settings_refuse_both_plaintext_and_keys_and_neither() -> None:
    """The service needs keys or INGEST_PLAINTEXT=true, and not both."""
    with pytest.raises(ConfigError, match="INGEST_ENCRYPTION_KEYS"):
        Settings.from_env({}).require_keys()
    Settings.from_env({"INGEST_PLAINTEXT": "true"}).require_keys()
    Settings.from_env({"INGEST_ENCRYPTION_KEYS": A}).require_keys()
    with pytest.raises(ConfigError, match="both set"):
        Settings.from_env({"INGEST_ENCRYPTION_KEYS": A, "INGEST_PLAINTEXT": "true"}).require_keys()
