"""ingest.mapping.assistant: a stable assistant identity for every call, with or without an id."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ingest.mapping.assistant import NAMESPACE, assistant_identity, derived_id
from ingest.mapping.call import call_identity
from ingest.patch import Source
from ingest.vocabulary import ANSWER_FIELD, AssistantKind

ORG = "a1984baa-e6d2-4596-9058-a4648bb74a95"
OTHER_ORG = "0b8c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
SAVED = "359ecb8e-2b18-470f-b38b-2b3e375752bb"
MEMBER = "ce4f4e3c-b1a1-44fb-bfe9-4c0ed4e773e7"
SQUAD = "5d2b8c1e-3f4a-4b6c-9d8e-7f6a5b4c3d2e"
WORKFLOW = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
CALL = "00000000-0000-4000-8000-000000000001"


def message(call: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {"type": "status-update", "call": {"id": CALL, "orgId": ORG, **(call or {})}, **fields}


def test_saved_assistant_is_the_call_s_own() -> None:
    """call.assistantId is the identity, ranked as the call's, with nothing to describe."""
    identity = assistant_identity(message({"assistantId": SAVED}, assistant={"name": "x"}))
    assert identity is not None
    assert (identity.id, identity.source, identity.kind) == (SAVED, Source.CALL, AssistantKind.SAVED)
    assert identity.description() is None


def test_answered_assistant_is_used_when_the_call_names_none() -> None:
    """The id this service answered to the assistant-request outranks an inline assistant without an id."""
    identity = assistant_identity(message(assistant={"name": "Reception"}, **{ANSWER_FIELD: {"assistantId": SAVED}}))
    assert identity is not None
    assert (identity.id, identity.source, identity.kind) == (SAVED, Source.CALL, AssistantKind.ANSWERED)


def test_transient_assistant_gets_a_name_based_id_per_org() -> None:
    """An inline assistant without an id gets uuid5(org, name): equal across calls, different across orgs."""
    first = assistant_identity(message(assistant={"name": "Evening reception", "firstMessage": "Hi"}))
    again = assistant_identity(message({"id": str(uuid.uuid4())}, assistant={"name": "Evening reception"}))
    elsewhere = assistant_identity(message({"orgId": OTHER_ORG}, assistant={"name": "Evening reception"}))
    other = assistant_identity(message(assistant={"name": "Day reception"}))
    assert first is not None
    assert again is not None
    assert elsewhere is not None
    assert other is not None
    assert first.id == again.id == derived_id(AssistantKind.TRANSIENT, ORG, "Evening reception")
    assert len({first.id, elsewhere.id, other.id}) == 3
    assert uuid.UUID(first.id).version == 5
    assert (first.source, first.description()) == (Source.EVENT, {"kind": "transient", "name": "Evening reception"})


def test_transient_assistant_given_at_call_creation() -> None:
    """call.assistant inline (POST /call with a transient assistant) is read when the message has none."""
    identity = assistant_identity(message({"assistant": {"name": "Reminder bot"}}))
    assert identity is not None
    assert identity.id == derived_id(AssistantKind.TRANSIENT, ORG, "Reminder bot")


def test_squad_id_outranks_the_member_speaking() -> None:
    """A squad call is the squad's, ranked as the call's, whichever member the message names."""
    identity = assistant_identity(
        message({"squadId": SQUAD, "squad": {"name": "Front office"}}, assistant={"id": MEMBER})
    )
    assert identity is not None
    assert (identity.id, identity.source, identity.kind, identity.name) == (
        SQUAD,
        Source.CALL,
        AssistantKind.SQUAD,
        "Front office",
    )


def test_inline_squad_without_an_id_is_named_by_its_members() -> None:
    """An inline squad with no id and no name gets a uuid5 of its members' names."""
    squad = {"members": [{"assistantId": MEMBER}, {"assistant": {"name": "Billing"}}]}
    identity = assistant_identity(message({"squad": squad}))
    assert identity is not None
    assert identity.id == derived_id(AssistantKind.SQUAD, ORG, f"{MEMBER} + Billing")
    assert identity.source is Source.CALL


def test_workflow_by_id_and_inline() -> None:
    """A workflow call is the workflow's: its id, else a uuid5 of its name."""
    by_id = assistant_identity(message({"workflowId": WORKFLOW}))
    inline = assistant_identity(message({"workflow": {"name": "Intake flow", "nodes": []}}))
    assert by_id is not None
    assert inline is not None
    assert (by_id.id, by_id.kind) == (WORKFLOW, AssistantKind.WORKFLOW)
    assert inline.id == derived_id(AssistantKind.WORKFLOW, ORG, "Intake flow")


@pytest.mark.parametrize(
    "body",
    [
        message(),
        message({"assistantId": None, "squadId": None, "squad": None, "assistant": None}),
        {"type": "status-update"},
        message(assistant=[]),
    ],
)
def test_nothing_names_an_assistant(body: dict[str, Any]) -> None:
    """With no id, no inline assistant, squad or workflow (2024 explicit nulls too) there is no identity."""
    assert assistant_identity(body) is None


def test_the_namespace_never_changes() -> None:
    """Name-based ids are documented and stored: changing the namespace would regroup every transient call."""
    assert str(NAMESPACE) == "6f1c7c3e-2a55-5b8e-9a52-7d0e4c1b9f30"
    assert derived_id(AssistantKind.TRANSIENT, ORG, "Evening reception") == str(
        uuid.uuid5(NAMESPACE, f"transient\x1f{ORG}\x1fEvening reception")
    )


def test_call_identity_describes_derived_assistants_in_metadata() -> None:
    """The patch carries the derived id and metadata.assistants[<id>] with its kind and name."""
    patch = call_identity(message(assistant={"name": "Evening reception"}), "NZ")
    derived = derived_id(AssistantKind.TRANSIENT, ORG, "Evening reception")
    assert patch.values["assistant_id"] == (derived, Source.EVENT)
    assert patch.metadata == {"assistants": {derived: {"kind": "transient", "name": "Evening reception"}}}


def test_sip_caller_without_a_number() -> None:
    """customer.sipUri stands in for a missing number: E.164 when its user part is one, else kept raw."""
    numbered = call_identity(
        message({"assistantId": SAVED}, customer={"sipUri": "sip:+6421555123@sip.example.nz"}), "NZ"
    )
    named = call_identity(message({"assistantId": SAVED}, customer={"sipUri": "sip:reception@pbx.example.nz"}), "NZ")
    assert numbered.values["customer_number"] == ("+6421555123", Source.EVENT)
    assert "customer_number" not in named.values
    assert named.metadata["raw_numbers"] == {"customer_number": "sip:reception@pbx.example.nz"}
