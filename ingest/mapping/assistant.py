"""Which assistant a call belongs to, including calls whose assistant has no id.

``user_sessions.assistant_id`` is NOT NULL, but many real calls carry no ``assistantId``:
an assistant passed inline when the call is created or returned inline by an
``assistant-request`` answer (a *transient* assistant), a *squad* (``squadId`` or an inline
``squad``) or a *workflow*. Such calls get a stable identity instead, best first:

1. ``call.assistantId``: a saved assistant.
2. The assistant this service answered to the call's ``assistant-request``: recorded with
   that message under ``ANSWER_FIELD``, it names the call's assistant even when later
   messages omit it.
3. ``call.squadId`` / ``call.workflowId``; an inline squad or workflow without an id gets a
   name-based UUID (``uuid5``) from the org and its name (a squad without a name: its
   members' names).
4. ``message.assistant.id`` / ``call.assistant.id``: the active assistant (a squad member).
5. An inline assistant without an id: ``uuid5`` from the org and the assistant's name, so
   repeat calls through the same transient assistant group under one id.

Ranks 1–3 are the call's own (``Source.CALL``); 4–5 only what the current message says
(``Source.EVENT``), so a squad's id outranks whichever member is speaking. Every derived or
answered identity is described in ``metadata.assistants[<id>]`` (kind and name), which is
also how the placeholder ``assistants`` row gets its name.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final

from ingest.mapping.identity import as_uuid, obj
from ingest.patch import Source
from ingest.vocabulary import ANSWER_FIELD, AssistantKind

# The namespace of name-based assistant ids: fixed forever, or transient assistants regroup.
NAMESPACE: Final = uuid.UUID("6f1c7c3e-2a55-5b8e-9a52-7d0e4c1b9f30")


@dataclass(frozen=True)
class AssistantIdentity:
    id: str
    source: Source
    kind: AssistantKind
    name: str | None = None

    def description(self) -> dict[str, Any] | None:
        """What ``metadata.assistants`` keeps for this id; None for a plain saved assistant."""
        if self.kind is AssistantKind.SAVED:
            return None
        return {"kind": self.kind.value, **({"name": self.name} if self.name else {})}


def _name(value: Any) -> str | None:
    return value.strip()[:200] if isinstance(value, str) and value.strip() else None


def derived_id(kind: AssistantKind, org_id: str | None, name: str | None) -> str:
    """The name-based UUID of an assistant, squad or workflow that has no id of its own."""
    return str(uuid.uuid5(NAMESPACE, f"{kind.value}\x1f{org_id or ''}\x1f{name or ''}"))


def _squad_name(squad: dict[str, Any]) -> str | None:
    named = _name(squad.get("name"))
    if named:
        return named
    members = squad.get("members")
    names = []
    for member in members if isinstance(members, list) else []:
        member = obj(member)
        names.append(_name(obj(member.get("assistant")).get("name")) or as_uuid(member.get("assistantId")) or "?")
    return " + ".join(names) or None


def _group(call: dict[str, Any], org_id: str | None) -> AssistantIdentity | None:
    """The squad or workflow running the call, by id or by name."""
    for kind, id_field, inline_field in (
        (AssistantKind.SQUAD, "squadId", "squad"),
        (AssistantKind.WORKFLOW, "workflowId", "workflow"),
    ):
        inline = obj(call.get(inline_field))
        name = _squad_name(inline) if kind is AssistantKind.SQUAD else _name(inline.get("name"))
        given = as_uuid(call.get(id_field)) or as_uuid(inline.get("id"))
        if given:
            return AssistantIdentity(given, Source.CALL, kind, name)
        if inline:
            return AssistantIdentity(derived_id(kind, org_id, name), Source.CALL, kind, name)
    return None


def assistant_identity(message: dict[str, Any]) -> AssistantIdentity | None:
    """The call's assistant identity (see the module's docstring), or None when nothing names one."""
    call = obj(message.get("call"))
    org_id = as_uuid(call.get("orgId"))
    saved = as_uuid(call.get("assistantId"))
    if saved:
        return AssistantIdentity(saved, Source.CALL, AssistantKind.SAVED)
    answered = as_uuid(obj(message.get(ANSWER_FIELD)).get("assistantId"))
    if answered:
        return AssistantIdentity(answered, Source.CALL, AssistantKind.ANSWERED)
    group = _group(call, org_id)
    if group:
        return group
    for inline in (obj(message.get("assistant")), obj(call.get("assistant"))):
        active = as_uuid(inline.get("id"))
        if active:
            return AssistantIdentity(active, Source.EVENT, AssistantKind.SAVED)
    for inline in (obj(message.get("assistant")), obj(call.get("assistant"))):
        if inline:
            name = _name(inline.get("name"))
            return AssistantIdentity(
                derived_id(AssistantKind.TRANSIENT, org_id, name), Source.EVENT, AssistantKind.TRANSIENT, name
            )
    return None
