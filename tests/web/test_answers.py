"""Answers to the messages Vapi waits on, through the endpoint, checked against Vapi's schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient
from support.app_env import app_env
from support.fixtures import load_event, server_message_validator
from support.live import JSON
from support.queue import queued_bodies

from ingest.vocabulary import ANSWER_FIELD
from ingest.web.answers import AnswerConfigError, AnswerSettings
from ingest.web.app import create_app

SECRET = "answers-secret"
ASSISTANT = "9a1f3c52-0b4e-4f6d-8a7e-2c5d1e0f9b8a"
ROUTED = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
TOOLS = ",".join(f"{name}=support.tools:{name}" for name in ("lookup_order", "check_slot", "slow", "broken"))


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str) -> dict[str, str]:
    return app_env(
        db_url,
        redis_server_url,
        redis_namespace,
        secret=SECRET,
        VAPI_DEFAULT_ASSISTANT_ID=ASSISTANT,
        VAPI_ASSISTANT_ROUTES=f"+6495550100={ROUTED}",
        VAPI_TRANSFER_DESTINATION="+6495550199",
        INGEST_TOOLS=TOOLS,
        VAPI_TOOL_TIMEOUT="0.5",
    )


def ask(client: TestClient, message: dict[str, Any]) -> Any:
    response = client.post(
        "/webhooks/vapi", content=orjson.dumps({"message": message}), headers={"x-vapi-secret": SECRET}
    )
    assert response.status_code == 200
    return response.json()


def valid(schema: str, answer: Any) -> None:
    errors = [e.message for e in server_message_validator(schema).iter_errors(answer)]
    assert errors == []


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(env=env), headers=JSON) as test_client:
        yield test_client


def test_assistant_request_routes_by_number_then_default(client: TestClient) -> None:
    """A routed number gets its assistant, any other number the default one."""
    routed = ask(client, {"type": "assistant-request", "phoneNumber": {"number": "+6495550100"}, "call": {"id": "c1"}})
    assert routed == {"assistantId": ROUTED}
    other = ask(client, {"type": "assistant-request", "phoneNumber": {"number": "+6495550111"}, "call": {"id": "c2"}})
    assert other == {"assistantId": ASSISTANT}
    valid("ServerMessageResponseAssistantRequest", other)


def test_answered_assistant_is_recorded_with_the_queued_message(client: TestClient, env: dict[str, str]) -> None:
    """The assistant id answered to an assistant-request travels with the event, for the worker."""
    ask(client, {"type": "assistant-request", "phoneNumber": {"number": "+6495550100"}, "call": {"id": "c1"}})
    ask(client, {"type": "assistant-request", "phoneNumber": {"number": "+6495550111"}, "call": {"id": "c2"}})
    bodies = queued_bodies(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"])
    assert [b["message"][ANSWER_FIELD] for b in bodies] == [{"assistantId": ROUTED}, {"assistantId": ASSISTANT}]


def test_spoken_error_answer_records_no_assistant(env: dict[str, str]) -> None:
    """An assistant-request answered with an error is queued exactly as received."""
    env = {**env, "VAPI_DEFAULT_ASSISTANT_ID": "", "VAPI_ASSISTANT_ROUTES": ""}
    raw = load_event("assistant_request_phone.json")
    with TestClient(create_app(env=env), headers=JSON) as client:
        ask(client, orjson.loads(raw)["message"])
    assert queued_bodies(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"]) == [orjson.loads(raw)]


def test_assistant_request_without_configuration_is_a_spoken_error(
    env: dict[str, str],
) -> None:
    """With no default and no route, Vapi gets a valid error body instead of a timeout."""
    env = {**env, "VAPI_DEFAULT_ASSISTANT_ID": "", "VAPI_ASSISTANT_ROUTES": ""}
    with TestClient(create_app(env=env), headers=JSON) as client:
        answer = ask(client, orjson.loads(load_event("assistant_request_phone.json"))["message"])
    assert set(answer) == {"error"}
    assert answer["error"]
    valid("ServerMessageResponseAssistantRequest", answer)


def test_tool_calls_get_one_result_per_call(client: TestClient, env: dict[str, str]) -> None:
    """Each tool call id gets a result (string arguments or object arguments) or a precise error."""
    message = {
        "type": "tool-calls",
        "call": {"id": "c3"},
        "toolCallList": [
            {"id": "t1", "type": "function", "function": {"name": "lookup_order", "arguments": '{"orderId": "A7"}'}},
            {"id": "t2", "type": "function", "function": {"name": "check_slot", "arguments": {"day": "Friday"}}},
            {"id": "t3", "type": "function", "function": {"name": "unknown_tool", "arguments": {}}},
            {"id": "t4", "type": "function", "function": {"name": "slow", "arguments": {}}},
            {"id": "t5", "type": "function", "function": {"name": "broken", "arguments": {}}},
        ],
    }
    answer = ask(client, message)
    valid("ServerMessageResponseToolCalls", answer)
    results = {r["toolCallId"]: r for r in answer["results"]}
    # A JSON result is encoded on one line (its newline stays an escape inside the string).
    assert results["t1"] == {
        "toolCallId": "t1",
        "name": "lookup_order",
        "result": '{"order":"A7","status":"shipped\\nyesterday"}',
    }
    assert "\n" not in results["t1"]["result"]
    assert results["t2"]["result"] == "Friday at 3pm is free"
    assert "No handler" in results["t3"]["error"]
    assert "did not answer" in results["t4"]["error"]
    assert results["t5"]["error"] == "Tool 'broken' failed: RuntimeError."
    assert [b["message"]["type"] for b in queued_bodies(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"])] == [
        "tool-calls"
    ]


def test_tool_calls_with_no_tools_configured(env: dict[str, str]) -> None:
    """Without INGEST_TOOLS every tool call still gets an error result, with HTTP 200."""
    with TestClient(create_app(env={**env, "INGEST_TOOLS": ""}), headers=JSON) as client:
        answer = ask(client, orjson.loads(load_event("tool_calls_no_handler.json"))["message"])
    assert answer["results"]
    assert all("error" in r and "result" not in r for r in answer["results"])
    valid("ServerMessageResponseToolCalls", answer)


def test_legacy_function_call(client: TestClient) -> None:
    """The legacy function-call message is answered in its own {"result": ...} shape."""
    answer = ask(
        client, {"type": "function-call", "functionCall": {"name": "check_slot", "parameters": {"day": "Monday"}}}
    )
    assert answer == {"result": "Monday at 3pm is free"}


def test_transfer_destination_request(client: TestClient, env: dict[str, str]) -> None:
    """A configured number is returned as a number destination; unconfigured is an error body."""
    answer = ask(client, orjson.loads(load_event("transfer_destination_request.json"))["message"])
    assert answer == {"destination": {"type": "number", "number": "+6495550199"}}
    valid("ServerMessageResponseTransferDestinationRequest", answer)
    with TestClient(
        create_app(env={**env, "VAPI_TRANSFER_DESTINATION": "sip:desk@example.com"}), headers=JSON
    ) as client2:
        sip = ask(client2, {"type": "transfer-destination-request", "call": {"id": "c4"}})
    assert sip == {"destination": {"type": "sip", "sipUri": "sip:desk@example.com"}}
    with TestClient(create_app(env={**env, "VAPI_TRANSFER_DESTINATION": ""}), headers=JSON) as client3:
        none = ask(client3, {"type": "transfer-destination-request", "call": {"id": "c5"}})
    assert "error" in none
    valid("ServerMessageResponseTransferDestinationRequest", none)


def test_handoff_destination_request(client: TestClient, env: dict[str, str]) -> None:
    """A configured assistant id or squad member name is the destination; unconfigured is a refusal with an error."""
    message = orjson.loads(load_event("handoff-destination-request.json"))["message"]
    with TestClient(create_app(env={**env, "VAPI_HANDOFF_DESTINATION": ROUTED}), headers=JSON) as by_id:
        answer = ask(by_id, message)
    assert answer == {"destination": {"type": "assistant", "assistantId": ROUTED}}
    valid("ServerMessageResponseHandoffDestinationRequest", answer)
    valid("HandoffDestinationAssistant", answer["destination"])
    with TestClient(create_app(env={**env, "VAPI_HANDOFF_DESTINATION": "Billing Desk"}), headers=JSON) as by_name:
        named = ask(by_name, message)
    assert named == {"destination": {"type": "assistant", "assistantName": "Billing Desk"}}
    valid("HandoffDestinationAssistant", named["destination"])
    none = ask(client, message)
    assert none["error"] == "No handoff destination is configured."
    valid("ServerMessageResponseHandoffDestinationRequest", none)
    assert [b["message"]["type"] for b in queued_bodies(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"])] == [
        "handoff-destination-request"
    ] * 3


def test_knowledge_base_request_finds_nothing(client: TestClient) -> None:
    """With no knowledge source configured the answer is a valid empty document list."""
    answer = ask(client, orjson.loads(load_event("knowledge-base-request.json"))["message"])
    assert answer == {"documents": []}
    valid("ServerMessageResponseKnowledgeBaseRequest", answer)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INGEST_TOOLS", "lookup"),
        ("INGEST_TOOLS", "lookup=support.tools:missing"),
        ("VAPI_ASSISTANT_ROUTES", "+649=,"),
        ("VAPI_TRANSFER_DESTINATION", "0800 123"),
        ("VAPI_TOOL_TIMEOUT", "soon"),
    ],
)
def test_bad_answer_settings_name_the_variable(variable: str, value: str) -> None:
    """A malformed setting stops start-up with a message naming the variable."""
    with pytest.raises(AnswerConfigError, match=variable):
        AnswerSettings.from_env({variable: value})
