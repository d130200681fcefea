"""How the service treats personal data it writes: read numbers, redact text, seal originals.

One ``Privacy`` (``Settings.privacy``) goes wherever events are applied (the worker, the
sweeper, ``ingest events reapply``, ``ingest rebuild``, the /ops page) and wherever an
event is kept (the web process's fallback when Redis is down):

- handlers get a ``Context`` that says whether to redact (``INGEST_REDACT``) and in which
  region to read phone numbers;
- a patch's originals (the unredacted transcript and summary) and unparseable raw numbers
  are sealed before it reaches the database;
- a ``call_events`` row carries its message sealed in ``body`` (plain in ``message`` only
  under ``INGEST_PLAINTEXT``), and ``open_message`` gives it back; ``seal_event`` seals it
  against its call's envelope (``ingest.envelopes``), which ``open_message`` then needs.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from ingest.envelopes import envelope_of
from ingest.handlers.common import Context, redacted
from ingest.patch import ORIGINALS, Patch
from ingest.sealing import Keyring, Purpose, Reference, SealError, key_id_of, reference_id_of

_PURPOSES = {ORIGINALS["call_transcript"]: Purpose.TRANSCRIPT, ORIGINALS["call_summary"]: Purpose.SUMMARY}
RAW_NUMBERS = "raw_numbers"


@dataclass(frozen=True)
class SealedEnvelope:
    """A ``call_envelopes`` row: the call, the envelope's id, the envelope sealed."""

    call_id: str
    id: bytes
    body: bytes


@dataclass(frozen=True)
class SealedEvent:
    """A message as ``call_events`` keeps it: ``body`` (None in plain text), and the envelope
    it was sealed against (None when sealed whole), which must be kept with it."""

    body: bytes | None
    envelope: SealedEnvelope | None = None


def _envelope_purpose(envelope_id: bytes) -> bytes:
    return Purpose.CALL_ENVELOPE + b"@" + envelope_id


# Envelopes sealed lately, per thread: a call's envelope is sealed once, not with every event.
_sealed_envelopes = threading.local()
_CACHED_ENVELOPES = 256


def _sealed_envelope(keyring: Keyring, call: str, reference: Reference) -> SealedEnvelope:
    cache: dict[tuple[str | None, bytes], SealedEnvelope] = _sealed_envelopes.__dict__.setdefault("cache", {})
    key = (keyring.current, reference.id)
    envelope = cache.get(key)
    if envelope is None:
        envelope = SealedEnvelope(call, reference.id, keyring.seal(reference.content, _envelope_purpose(reference.id)))
        while len(cache) >= _CACHED_ENVELOPES:
            cache.pop(next(iter(cache)))
        cache[key] = envelope
    return envelope


@dataclass(frozen=True)
class Privacy:
    phone_region: str = "NZ"
    redact: bool = True
    keyring: Keyring = field(default_factory=Keyring)

    def context(self, received_at: datetime) -> Context:
        return Context(received_at=received_at, phone_region=self.phone_region, redact=self.redact)

    def redacted(self, text: str | None) -> str | None:
        """``text`` as the searchable columns keep it (``handlers.common.redacted`` for handlers)."""
        return redacted(text, self.context(datetime.min))

    def seal_patch(self, patch: Patch) -> Patch:
        """``patch`` with its originals and raw numbers sealed (marked plain without keys)."""
        values = patch.values
        if any(column in values for column in _PURPOSES):
            values = {
                column: (self.keyring.seal_text(item[0], _PURPOSES[column]), item[1]) if column in _PURPOSES else item
                for column, item in values.items()
            }
        metadata = patch.metadata
        raw = metadata.get(RAW_NUMBERS)
        if self.keyring.sealing and isinstance(raw, dict):
            sealed = {key: self.keyring.seal_text(str(number), Purpose.RAW_NUMBER) for key, number in raw.items()}
            metadata = {**metadata, RAW_NUMBERS: sealed}
        if values is patch.values and metadata is patch.metadata:
            return patch
        return dataclasses.replace(patch, values=values, metadata=metadata)

    def seal_message(self, message: dict[str, Any]) -> bytes | None:
        """The ``call_events.body`` of ``message``; None in plain text (``message`` keeps it)."""
        if not self.keyring.sealing:
            return None
        return self.keyring.seal(orjson.dumps(message), Purpose.EVENT_BODY)

    def seal_event(self, message: dict[str, Any]) -> SealedEvent:
        """``message`` sealed against its call's envelope when it has one worth keeping apart."""
        if not self.keyring.sealing:
            return SealedEvent(None)
        found = envelope_of(message)
        if found is None:
            return SealedEvent(self.seal_message(message))
        call, content = found
        reference = Reference(self.keyring.reference_id(content, call.encode()), content)
        body = self.keyring.seal(orjson.dumps(message), Purpose.EVENT_BODY, reference)
        return SealedEvent(body, _sealed_envelope(self.keyring, call, reference))

    def open_message(
        self, message: Any, body: bytes | memoryview | None, envelope: bytes | memoryview | None = None
    ) -> dict[str, Any]:
        """The message a ``call_events`` row keeps, whether sealed (``body``) or plain.

        A body sealed against its call's envelope opens only with that envelope (its
        ``call_envelopes.body``, which ``ingest_call_envelope`` reads beside the row).
        """
        if body is None:
            if not isinstance(message, dict):
                raise SealError("the event keeps no message", None)
            return message
        blob = bytes(body)
        reference = None
        envelope_id = reference_id_of(blob)
        if envelope_id is not None:
            if envelope is None:
                raise SealError("a sealed event body needs its call's envelope, which is not kept", key_id_of(blob))
            content = self.keyring.open(bytes(envelope), _envelope_purpose(envelope_id))
            reference = Reference(envelope_id, content)
        opened = orjson.loads(self.keyring.open(blob, Purpose.EVENT_BODY, reference))
        if not isinstance(opened, dict):
            raise SealError("a sealed event body is not a JSON object", None)
        return opened

    def open_text(self, value: str | None, purpose: bytes) -> str | None:
        return None if value is None else self.keyring.open_text(value, purpose)

    def open_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A ``user_sessions`` row with its sealed values opened: the originals, raw numbers."""
        opened = dict(row)
        for column, purpose in _PURPOSES.items():
            if opened.get(column) is not None:
                opened[column] = self.keyring.open_text(opened[column], purpose)
        metadata = opened.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get(RAW_NUMBERS), dict):
            raw = {
                key: self._open_raw_number(value) if isinstance(value, str) else value
                for key, value in metadata[RAW_NUMBERS].items()
            }
            opened["metadata"] = {**metadata, RAW_NUMBERS: raw}
        return opened

    def _open_raw_number(self, value: str) -> str:
        # kept in the clear when written without keys: only sealed values are opened
        return self.keyring.open_text(value, Purpose.RAW_NUMBER) if key_id_of(value) else value
