"""Who and what a call event is about: keys, assistant, numbers, call type, client, user.

Every call event repeats these facts, so every handler starts from ``call_identity``.
Quirks: ``message.call`` is the POST /call snapshot and may be stale, but ids and the
call type do not change during a call; ``message.phoneNumber`` / ``message.customer`` are
the resolved objects and are preferred over the snapshot's. Routing hints (``client_id``,
``user_id``) may sit in the call's metadata, the assistant overrides' metadata or the
assistant's, depending on how the agency set the call up.
"""

from __future__ import annotations

import functools
from typing import Any

from ingest.errors import Unmappable
from ingest.mapping.assistant import assistant_identity
from ingest.mapping.identity import as_uuid, bounded_id, call_id, obj
from ingest.mapping.phone import PhoneNumber, normalise_number
from ingest.patch import Patch, Source

CALL_TYPES = {
    "inboundPhoneCall": "inbound",
    "outboundPhoneCall": "outbound",
    "webCall": "web",
    "vapi.websocketCall": "websocket",
}


def metadata_value(message: dict[str, Any], key: str) -> str | None:
    """``key`` from the call's metadata, else the assistant overrides', else the assistant's."""
    call = obj(message.get("call"))
    places = (
        obj(call.get("metadata")),
        obj(obj(call.get("assistantOverrides")).get("metadata")),
        obj(obj(call.get("squadOverrides")).get("metadata")),
        obj(obj(call.get("workflowOverrides")).get("metadata")),
        obj(obj(message.get("assistant")).get("metadata")),
        obj(obj(call.get("assistant")).get("metadata")),
    )
    for metadata in places:
        value = metadata.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


@functools.lru_cache(maxsize=4096)
def _normalised(raw: str, region: str) -> PhoneNumber:
    # Every event of a call repeats the same two numbers; parsing is the costly part.
    return normalise_number(raw, region)


def _number(raw: Any, region: str) -> PhoneNumber:
    return _normalised(raw, region) if isinstance(raw, str) else normalise_number(raw, region)


def _customer_raw(message: dict[str, Any], call: dict[str, Any]) -> Any:
    customer = obj(message.get("customer")) or obj(call.get("customer"))
    # A SIP caller may have only ``customer.sipUri``: its user part is often a number.
    return customer.get("number") or customer.get("sipUri")


def customer_number(message: dict[str, Any], region: str) -> str | None:
    """The customer's number in E.164, as ``user_sessions.customer_number`` holds it; None if not valid."""
    return _number(_customer_raw(message, obj(message.get("call"))), region).e164


def _numbers(patch: Patch, message: dict[str, Any], region: str) -> Patch:
    call = obj(message.get("call"))
    phone = obj(message.get("phoneNumber")) or obj(call.get("phoneNumber"))
    raw_numbers: dict[str, str] = {}
    business_raw = phone.get("number") or phone.get("twilioPhoneNumber") or phone.get("sipUri")
    customer_raw = _customer_raw(message, call)
    for column, raw in (("business_number", business_raw), ("customer_number", customer_raw)):
        number = _number(raw, region)
        patch = patch.with_value(column, number.e164, Source.EVENT)
        if number.e164 is None and number.raw:
            raw_numbers[column] = number.raw  # kept, not lost: the column takes E.164 only
    if raw_numbers:
        patch = Patch(patch.call_id, patch.session_id, patch.values, {**patch.metadata, "raw_numbers": raw_numbers})
    phone_id = as_uuid(call.get("phoneNumberId")) or as_uuid(phone.get("id"))
    return patch.with_value("phone_number_id", phone_id, Source.EVENT)


def call_identity(message: dict[str, Any], region: str) -> Patch:
    """The facts every event of a call carries; raises ``Unmappable`` for a non-UUID call id."""
    raw_id = call_id(message)
    key = as_uuid(raw_id)
    if raw_id and key is None:
        raise Unmappable(f"call.id {raw_id[:64]!r} is not a UUID")
    call = obj(message.get("call"))
    patch = Patch(call_id=key)
    assistant = assistant_identity(message)
    if assistant is not None:
        patch = patch.with_value("assistant_id", assistant.id, assistant.source)
        described = assistant.description()
        if described:
            patch = Patch(patch.call_id, patch.session_id, patch.values, {"assistants": {assistant.id: described}})
    patch = _numbers(patch, message, region)
    patch = patch.with_value("type", CALL_TYPES.get(str(call.get("type"))), Source.EVENT)
    client = bounded_id(metadata_value(message, "client_id"), "metadata.client_id")
    patch = patch.with_value("client_id", client, Source.EVENT)
    return patch.with_value("user_id", bounded_id(metadata_value(message, "user_id"), "metadata.user_id"), Source.EVENT)
