"""Sealing personal data at rest: compressed, then encrypted with AES-GCM under a named key.

Keys come from ``INGEST_ENCRYPTION_KEYS`` (``kid:base64key,…``, each key 32 bytes): the
first seals, every one opens, so a new key is put first and the old ones stay until
``ingest keys rotate`` has re-sealed everything under them. Keys never reach the database.

A sealed value names its key and says what it is for, so the wrong key or a value moved
to another column is an error, never garbage:

- bytes (``call_events.body``): ``b"v1:" + kid + b":" + nonce + ciphertext``
- bytes compressed against a reference (``call_events.body`` of an event whose call's
  envelope is kept apart, ``ingest.envelopes``): ``b"v2:" + kid + b":" + reference id (16
  bytes) + nonce + ciphertext``; the reference id is part of the associated data
- text (the originals beside redacted columns): ``"v1:" + kid + ":" + base64url(nonce + ciphertext)``
- text kept in the clear (``INGEST_PLAINTEXT=true``): ``"plain:" + text``

The purpose (the column) is the AES-GCM associated data. What is encrypted is one flag
byte and the payload: raw, or zstd-compressed when that is smaller (for v2, against the
reference's bytes as a raw-content dictionary, so what the value repeats of it costs
almost nothing). Ciphertext does not
compress, so this is the only compression a sealed body gets (TOAST's would find nothing).
Nonces are random (96 bits): a key should seal well under 2**32 values, a limit rotation
keeps far away.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
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
REFERENCED_VERSION = "v2"
REFERENCE_ID_BYTES = 16
PLAIN_PREFIX = "plain:"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
COMPRESSION_LEVEL = 3
# Against a reference a value is small and the level's cost low: 5 saves ~7% over 3 for ~10 µs.
REFERENCED_COMPRESSION_LEVEL = 5
_RAW, _ZSTD, _ZSTD_REFERENCED = b"\x00", b"\x01", b"\x02"
# Compressors made for a reference are kept per thread for the references seen last. A pair
# holds about 180 KB (level 5's context): 16 per thread is about 3 MB, against 11.5 MB at 64;
# a miss costs about 25 µs, and a thread rarely has more than a few calls' events in hand.
_CACHED_REFERENCES = 16


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
    CALL_ENVELOPE = b"call_envelopes.body"


@dataclass(frozen=True)
class Reference:
    """Bytes a value is compressed against (a zstd raw-content dictionary), and their id.

    The id (``Keyring.reference_id``) names the reference where it is kept; a value sealed
    against it opens only with the same id and bytes.
    """

    id: bytes
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class Key:
    kid: str
    aead: AESGCM = field(repr=False, compare=False)
    mac_key: bytes = field(default=b"", repr=False, compare=False)

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
        return cls(kid, AESGCM(raw), hmac.digest(raw, b"ingest reference id", hashlib.sha256))


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


def _referenced(reference: Reference) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    """A compressor and a decompressor with ``reference`` as their dictionary (cached per thread)."""
    _compressor()
    cache: dict[bytes, tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]] = _local.__dict__.setdefault(
        "referenced", {}
    )
    # the id names the content: a MAC of it (sealing), or authenticated with it (opening)
    key = reference.id
    pair = cache.pop(key, None)
    if pair is None:
        dictionary = zstandard.ZstdCompressionDict(reference.content, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        pair = (
            zstandard.ZstdCompressor(level=REFERENCED_COMPRESSION_LEVEL, dict_data=dictionary),
            zstandard.ZstdDecompressor(dict_data=dictionary),
        )
        while len(cache) >= _CACHED_REFERENCES:
            cache.pop(next(iter(cache)))
    cache[key] = pair  # the most recently used last
    return pair


def _pack(data: bytes, reference: Reference | None = None) -> bytes:
    if reference is not None:
        return _ZSTD_REFERENCED + _referenced(reference)[0].compress(data)
    if len(data) > 64:
        packed = _compressor().compress(data)
        if len(packed) < len(data):
            return _ZSTD + packed
    return _RAW + data


def _unpack(data: bytes, reference: Reference | None = None) -> bytes:
    flag, payload = data[:1], data[1:]
    if flag == _ZSTD_REFERENCED:
        if reference is None:
            raise zstandard.ZstdError("compressed against a reference that was not given")
        return _referenced(reference)[1].decompress(payload)
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

    def _sealing_key(self) -> Key:
        if not self.keys:
            raise ConfigError("no encryption key: set INGEST_ENCRYPTION_KEYS (or INGEST_PLAINTEXT=true)")
        return self.keys[0]

    def seal(self, data: bytes, purpose: bytes, reference: Reference | None = None) -> bytes:
        """``data`` compressed (against ``reference``, when given: a v2 value) and sealed under the current key."""
        key = self._sealing_key()
        nonce = os.urandom(NONCE_BYTES)
        if reference is None:
            sealed = key.aead.encrypt(nonce, _pack(data), purpose)
            return b"%s:%s:" % (VERSION.encode(), key.kid.encode()) + nonce + sealed
        if len(reference.id) != REFERENCE_ID_BYTES:
            raise ValueError(f"a reference id is {REFERENCE_ID_BYTES} bytes")
        sealed = key.aead.encrypt(nonce, _pack(data, reference), purpose + b"@" + reference.id)
        return b"%s:%s:" % (REFERENCED_VERSION.encode(), key.kid.encode()) + reference.id + nonce + sealed

    def open(self, blob: bytes, purpose: bytes, reference: Reference | None = None) -> bytes:
        """What ``seal`` sealed; ``SealError`` naming the key when it cannot be opened (a v2
        value also without the reference it was sealed against)."""
        data = bytes(blob)
        kid, sealed = _split(data)
        if not data.startswith(REFERENCED_VERSION.encode() + b":"):
            return self._open(kid, sealed, purpose)
        ref_id, sealed = sealed[:REFERENCE_ID_BYTES], sealed[REFERENCE_ID_BYTES:]
        if reference is None or reference.id != ref_id:
            raise SealError(f"a value sealed under key {kid!r} against a reference opens only with it", kid)
        return self._open(kid, sealed, purpose + b"@" + ref_id, reference)

    def _open(self, kid: str, sealed: bytes, purpose: bytes, reference: Reference | None = None) -> bytes:
        key = self._key(kid)
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            return _unpack(key.aead.decrypt(nonce, ciphertext, purpose), reference)
        except (InvalidTag, zstandard.ZstdError):
            raise SealError(f"a value sealed under key {kid!r} does not open: altered, or not this key", kid) from None

    def reference_id(self, content: bytes, scope: bytes) -> bytes:
        """The id of a reference: a MAC of ``scope`` (its call) and ``content`` under the current key.

        The same reference gets the same id in every process, so each keeps it once; being
        keyed, the id says nothing about the content to whoever reads the database.
        """
        key = self._sealing_key()
        mac = hmac.new(key.mac_key, scope, hashlib.sha256)
        mac.update(b"\x00")
        mac.update(content)
        return mac.digest()[:REFERENCE_ID_BYTES]

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
    """(key id, what follows it: [reference id +] nonce + ciphertext) of a sealed bytes value."""
    version, sep, rest = blob.partition(b":")
    kid, sep2, sealed = rest.partition(b":")
    known = version in (VERSION.encode(), REFERENCED_VERSION.encode())
    if not known or not sep or not sep2 or not KEY_ID.fullmatch(kid.decode("ascii", "replace")):
        raise SealError("not a sealed value", None)
    return kid.decode("ascii"), sealed


def reference_id_of(blob: bytes | memoryview) -> bytes | None:
    """The id of the reference a sealed bytes value was compressed against; None for a v1 value."""
    data = bytes(blob)
    if not data.startswith(REFERENCED_VERSION.encode() + b":"):
        return None
    _, sealed = _split(data)
    return sealed[:REFERENCE_ID_BYTES]


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
