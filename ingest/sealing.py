"""Sealing personal data at rest: compressed, then encrypted with AES-GCM under a named key.

Keys come from ``INGEST_ENCRYPTION_KEYS`` (``kid:base64key,…``, each key 32 bytes): the
first seals, every one opens, so a new key is put first and the old ones stay until
``ingest keys rotate`` has re-sealed everything under them. Keys never reach the database.

A sealed value names its key and says what it is for, so the wrong key or a value moved
to another column is an error, never garbage:

- bytes (``call_events.body``): ``b"v1:" + kid + b":" + nonce + ciphertext``
- text (the originals beside redacted columns): ``"v1:" + kid + ":" + base64url(nonce + ciphertext)``
- text kept in the clear (``INGEST_PLAINTEXT=true``): ``"plain:" + text``

The purpose (the column) is the AES-GCM associated data. What is encrypted is one flag
byte and the payload: raw, or zstd-compressed when that is smaller. Ciphertext does not
compress, so this is the only compression a sealed body gets (TOAST's would find nothing).
Nonces are random (96 bits): a key should seal well under 2**32 values, a limit rotation
keeps far away.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ingest.errors import ConfigError, PermanentError, Transient

VERSION = "v1"
PLAIN_PREFIX = "plain:"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
COMPRESSION_LEVEL = 3
_RAW, _ZSTD = b"\x00", b"\x01"


class SealError(PermanentError):
    """A sealed value that cannot be opened: its key is not configured, or it is not intact."""

    def __init__(self, message: str, key_id: str | None) -> None:
        super().__init__(message)
        self.key_id = key_id


class KeyUnavailable(Transient):
    """Sealed under a key id that ``INGEST_ENCRYPTION_KEYS`` does not hold.

    Transient: the value is intact and opens once the key is configured, so an event that
    needs it waits (pending, with this error) instead of failing for good.
    """

    def __init__(self, message: str, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


class Purpose:
    """What a sealed value is (the associated data): one per column that holds sealed values."""

    EVENT_BODY = b"call_events.body"
    TRANSCRIPT = b"user_sessions.call_transcript_original"
    SUMMARY = b"user_sessions.call_summary_original"
    RAW_NUMBER = b"user_sessions.metadata.raw_numbers"


@dataclass(frozen=True)
class Key:
    kid: str
    aead: AESGCM = field(repr=False, compare=False)

    @classmethod
    def parse(cls, item: str) -> Key:
        kid, sep, encoded = item.strip().partition(":")
        if not sep or not KEY_ID.fullmatch(kid):
            raise ConfigError(
                "INGEST_ENCRYPTION_KEYS: each key is kid:base64 with a key id of letters, digits, '-' or '_'"
            )
        try:
            raw = base64.b64decode(encoded.strip() + "=" * (-len(encoded.strip()) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != KEY_BYTES:
            raise ConfigError(f"INGEST_ENCRYPTION_KEYS: key {kid!r} is not {KEY_BYTES} bytes of base64")
        return cls(kid, AESGCM(raw))


def generate_key() -> str:
    """A new ``kid:base64key`` entry: a dated key id and 32 random bytes."""
    kid = f"k{datetime.now(UTC):%Y%m%d}{secrets.token_hex(2)}"
    return f"{kid}:{base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # zstandard's (de)compressors must not be shared between threads; the worker has several
    if not hasattr(_local, "compressor"):
        _local.compressor = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL)
        _local.decompressor = zstandard.ZstdDecompressor()
    compressor: zstandard.ZstdCompressor = _local.compressor
    return compressor


def _decompress(data: bytes) -> bytes:
    _compressor()
    decompressor: zstandard.ZstdDecompressor = _local.decompressor
    return decompressor.decompress(data)


def _pack(data: bytes) -> bytes:
    if len(data) > 64:
        packed = _compressor().compress(data)
        if len(packed) < len(data):
            return _ZSTD + packed
    return _RAW + data


def _unpack(data: bytes) -> bytes:
    flag, payload = data[:1], data[1:]
    return _decompress(payload) if flag == _ZSTD else payload


@dataclass(frozen=True)
class Keyring:
    """The configured keys; empty when the service runs in plain text (``INGEST_PLAINTEXT``)."""

    keys: tuple[Key, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> Keyring:
        keys = tuple(Key.parse(item) for item in raw.split(",") if item.strip())
        kids = [key.kid for key in keys]
        if len(set(kids)) != len(kids):
            raise ConfigError("INGEST_ENCRYPTION_KEYS names the same key id twice")
        return cls(keys)

    @property
    def sealing(self) -> bool:
        return bool(self.keys)

    @property
    def current(self) -> str | None:
        """The id of the key that seals."""
        return self.keys[0].kid if self.keys else None

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key.kid for key in self.keys)

    def _key(self, kid: str) -> Key:
        for key in self.keys:
            if key.kid == kid:
                return key
        raise KeyUnavailable(
            f"sealed under key {kid!r}, which INGEST_ENCRYPTION_KEYS does not hold "
            f"(configured: {', '.join(self.key_ids) or 'none'})",
            kid,
        )

    # -- bytes: call_events.body ---------------------------------------------------------

    def seal(self, data: bytes, purpose: bytes) -> bytes:
        """``data`` compressed and sealed under the current key."""
        if not self.keys:
            raise ConfigError("no encryption key: set INGEST_ENCRYPTION_KEYS (or INGEST_PLAINTEXT=true)")
        key = self.keys[0]
        nonce = os.urandom(NONCE_BYTES)
        return b"%s:%s:" % (VERSION.encode(), key.kid.encode()) + nonce + key.aead.encrypt(nonce, _pack(data), purpose)

    def open(self, blob: bytes, purpose: bytes) -> bytes:
        """What ``seal`` sealed; ``SealError`` naming the key when it cannot be opened."""
        kid, sealed = _split(bytes(blob))
        return self._open(kid, sealed, purpose)

    def _open(self, kid: str, sealed: bytes, purpose: bytes) -> bytes:
        key = self._key(kid)
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            return _unpack(key.aead.decrypt(nonce, ciphertext, purpose))
        except (InvalidTag, zstandard.ZstdError):
            raise SealError(f"a value sealed under key {kid!r} does not open: altered, or not this key", kid) from None

    # -- text: the original beside a redacted column --------------------------------------

    def seal_text(self, text: str, purpose: bytes) -> str:
        """``text`` sealed (or marked plain, without keys) for a text column."""
        if not self.keys:
            return PLAIN_PREFIX + text
        blob = self.seal(text.encode(), purpose)
        kid, sealed = _split(blob)
        return f"{VERSION}:{kid}:{base64.urlsafe_b64encode(sealed).decode().rstrip('=')}"

    def open_text(self, value: str, purpose: bytes) -> str:
        if value.startswith(PLAIN_PREFIX):
            return value[len(PLAIN_PREFIX) :]
        version, _, rest = value.partition(":")
        kid, _, encoded = rest.partition(":")
        if version != VERSION or not KEY_ID.fullmatch(kid):
            raise SealError("not a sealed value", None)
        try:
            sealed = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise SealError(f"a value sealed under key {kid!r} is not intact", kid) from None
        return self._open(kid, sealed, purpose).decode()


def _split(blob: bytes) -> tuple[str, bytes]:
    """(key id, nonce + ciphertext) of a sealed bytes value."""
    version, sep, rest = blob.partition(b":")
    kid, sep2, sealed = rest.partition(b":")
    if version != VERSION.encode() or not sep or not sep2 or not KEY_ID.fullmatch(kid.decode("ascii", "replace")):
        raise SealError("not a sealed value", None)
    return kid.decode("ascii"), sealed


def key_id_of(value: bytes | str) -> str | None:
    """The key id a sealed value names; None for a plain one."""
    if isinstance(value, str):
        if value.startswith(PLAIN_PREFIX):
            return None
        _, _, rest = value.partition(":")
        return rest.partition(":")[0] or None
    try:
        return _split(bytes(value))[0]
    except SealError:
        return None
