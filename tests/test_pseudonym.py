"""Keyed pseudonyms of callers' numbers: stable, unlinkable without the key, never a number."""

from __future__ import annotations

import base64

import phonenumbers
import pytest

from ingest.errors import ConfigError
from ingest.pseudonym import is_pseudonym, parse_key, pseudonym
from ingest.settings import Settings

KEY, OTHER = bytes(range(32)), bytes(range(1, 33))


def test_same_number_same_pseudonym_other_key_other_pseudonym() -> None:
    """A number always gives the same pseudonym under one key, a different one under another key."""
    first = pseudonym("+64211234567", KEY)
    assert first == pseudonym("+64211234567", KEY)
    assert first != pseudonym("+64211234568", KEY)
    assert first != pseudonym("+64211234567", OTHER)
    assert first.startswith("anon:")
    assert len(first) == len("anon:") + 32


def test_a_pseudonym_is_kept_and_never_parses_as_a_number() -> None:
    """Pseudonymising twice changes nothing, and no digits of the number survive."""
    first = pseudonym("+64211234567", KEY)
    assert pseudonym(first, KEY) == first
    assert is_pseudonym(first)
    assert "211234567" not in first
    assert not list(phonenumbers.PhoneNumberMatcher(first, "NZ"))


def test_key_must_be_32_bytes_of_base64() -> None:
    """INGEST_PSEUDONYM_KEY is base64 of at least 32 bytes; unset is None, and the service says how to make one."""
    assert parse_key("") is None
    assert parse_key(base64.b64encode(KEY).decode()) == KEY
    with pytest.raises(ConfigError, match="at least 32"):
        parse_key(base64.b64encode(bytes(16)).decode())
    with pytest.raises(ConfigError, match="INGEST_PSEUDONYM_KEY"):
        Settings.from_env({}).require_pseudonym_key()
