"""Personal data shown only on purpose: hidden by default, revealed with a reason.

Every operator surface (``ingest calls show``, ``ingest events show``, the /ops call page)
shows what the service keeps with personal data hidden, and shows the originals only when
an operator asks with a reason, which the access log records (``AuditAction.REVEAL``):

- ``hidden_text(text, region)``: ``redact`` (e-mail addresses, card, phone and other long
  numbers, spoken or written, become placeholders), then ``mask_text`` (numbers the way the
  ops page masks them). Text redacted when it was stored comes out the same; text stored
  whole (``INGEST_REDACT=false``, an error quoting a value) is hidden here.
- ``hidden_json(value, region)``: a JSON value (a message, metadata) with every string
  hidden, its keys masked; strings that are UUIDs (ids) are kept as they are.
- ``reveal_reason(text, region)``: the reason a reveal is recorded with, stripped;
  ``ReasonRefused`` when it is empty, longer than ``MAX_REASON`` characters, or holds a phone
  number, an e-mail address or a card number. The access log is append-only: what goes into
  it stays, so a reason names the ticket or the request, never the customer.
- ``sealed_label(value)``: what a sealed value is, without its content
  (``sealed (key k20260301a1b2)``).
- ``unopened(exc)``: why sealed values could not be opened, naming the key.
"""

from __future__ import annotations

from typing import Any, Final

from ingest.mapping.identity import as_uuid
from ingest.mapping.redaction import Placeholder, redact
from ingest.ops.masking import mask_json, mask_text
from ingest.sealing import KeyUnavailable, SealError, key_id_of

MAX_REASON: Final = 500
# What a reason may not hold; other long numbers (a ticket, an incident) are what it is for.
_REFUSED_IN_REASON: Final = (Placeholder.PHONE, Placeholder.EMAIL, Placeholder.CARD)


class ReasonRefused(ValueError):
    """A reveal's reason that cannot be recorded; ``code`` says why (``reason_required``, ``invalid_reason``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def hidden_text(text: str, region: str) -> str:
    """``text`` with personal data replaced by placeholders and numbers masked."""
    return mask_text(redact(text, region), region)


def _hidden_leaves(value: Any, region: str) -> Any:
    if isinstance(value, str):
        return value if as_uuid(value) else redact(value, region)
    if isinstance(value, dict):
        return {key: _hidden_leaves(item, region) for key, item in value.items()}
    if isinstance(value, list):
        return [_hidden_leaves(item, region) for item in value]
    return value


def hidden_json(value: Any, region: str) -> Any:
    """A JSON value with every string (but ids) redacted, then every key and string masked."""
    return mask_json(_hidden_leaves(value, region), region)


def reveal_reason(text: str | None, region: str) -> str:
    """``text`` stripped, as the reason of a reveal; ``ReasonRefused`` saying what is wrong with it."""
    reason = (text or "").strip()
    if not reason:
        raise ReasonRefused("reason_required", "a reveal needs a reason (why the originals are needed): it is recorded")
    if len(reason) > MAX_REASON:
        raise ReasonRefused("invalid_reason", f"a reason is at most {MAX_REASON} characters")
    redacted = redact(reason, region)
    if mask_text(reason, region) != reason or any(p in redacted and p not in reason for p in _REFUSED_IN_REASON):
        raise ReasonRefused(
            "invalid_reason",
            "a reason must not hold a phone number, an e-mail address or a card number: the access log keeps it"
            " for good; name the ticket or the request instead",
        )
    return reason


def sealed_label(value: str | bytes) -> str:
    """What holds a sealed value, never what it holds: its key, or plain text (``INGEST_PLAINTEXT``)."""
    kid = key_id_of(value)
    return f"sealed (key {kid})" if kid else "kept in plain text (INGEST_PLAINTEXT)"


def unopened(exc: KeyUnavailable | SealError) -> str:
    """Why a sealed value did not open, naming its key."""
    if isinstance(exc, KeyUnavailable):
        return f"sealed under key {exc.key_id}, which INGEST_ENCRYPTION_KEYS does not hold: add that key to open it"
    if exc.key_id:
        return f"sealed under key {exc.key_id}, and it does not open (altered, or another key of that name)"
    return f"not a sealed value the service can open ({exc})"


__all__ = [
    "MAX_REASON",
    "ReasonRefused",
    "hidden_json",
    "hidden_text",
    "reveal_reason",
    "sealed_label",
    "unopened",
]
