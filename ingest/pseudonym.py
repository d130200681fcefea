"""A caller's number as a keyed pseudonym: the same number gives the same pseudonym, so
repeat-caller analytics survive anonymisation and erasure, and nobody without the key can
reverse it (HMAC-SHA256 under ``INGEST_PSEUDONYM_KEY``, from ``cryptography``).

A pseudonym reads ``anon:<32 hex>``: it never parses as a phone number, and a pseudonym
given again stays what it is (``pseudonym`` is idempotent), so a retention step that meets
an already anonymised row changes nothing.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import hashes, hmac

from ingest.errors import ConfigError

PREFIX = "anon:"
DIGEST_HEX = 32  # 128 bits of the HMAC: collisions between callers are not a concern


def parse_key(raw: str) -> bytes | None:
    """``INGEST_PSEUDONYM_KEY``: base64 of at least 32 bytes; None when unset."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 32:
        raise ConfigError("INGEST_PSEUDONYM_KEY must be base64 of at least 32 random bytes")
    return key


def is_pseudonym(value: str) -> bool:
    return value.startswith(PREFIX)


def pseudonym(number: str, key: bytes) -> str:
    """``anon:<hex>`` for ``number`` (best given in E.164, as ``customer_number`` holds it)."""
    if is_pseudonym(number):
        return number
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(number.encode())
    return PREFIX + mac.finalize().hex()[:DIGEST_HEX]
