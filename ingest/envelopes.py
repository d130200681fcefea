"""The envelope of a call: what every event of a call repeats, kept once per call.

Every server message carries the call's ``call`` snapshot, the assistant's configuration,
the phone number and the customer: several kilobytes, the same in each of a call's events.
Sealed alone, each event paid for them again (zstd cannot find a repetition in a value it
has not seen). Instead the envelope is kept once in ``call_envelopes`` (migration 0028),
sealed, and each event's message is compressed against it as a zstd dictionary (a v2
sealed value, ``ingest.sealing``): what the event repeats of its envelope costs a few
bytes, and the event's body still holds its whole message, so opening it with its
envelope gives back exactly what was received.

The envelope is taken from each event itself, and named by a keyed digest of its call and
content (``Keyring.reference_id``): workers agree on it without asking the database, and
a call whose snapshot changes gets one envelope per version. Only events of a call with a
UUID id (the ones erasure and retention find by ``call_envelopes.call_id``) get one, and
only when it is large enough to be worth a row.
"""

from __future__ import annotations

from typing import Any

import orjson

from ingest.mapping.identity import as_uuid, call_id

# The message fields every event of a call repeats (ingest.mapping.event_key.ENVELOPE lists
# these among the fields that never say which event this is).
ENVELOPE_KEYS = ("call", "assistant", "phoneNumber", "customer")
# Below this many bytes an envelope is sealed with its event: a row of its own costs more.
MIN_ENVELOPE_BYTES = 512


def envelope_of(message: dict[str, Any]) -> tuple[str, bytes] | None:
    """(call id, the envelope's JSON) of ``message``; None for an event kept whole."""
    call = as_uuid(call_id(message))
    if call is None:
        return None
    fields = {key: message[key] for key in ENVELOPE_KEYS if key in message}
    try:
        content = orjson.dumps(fields)
    except (TypeError, ValueError):  # a value orjson cannot write: the event is sealed whole
        return None
    return (call, content) if len(content) >= MIN_ENVELOPE_BYTES else None
