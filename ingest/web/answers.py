"""Answers to the messages Vapi waits on, computed on the request path from configuration.

``assistant-request`` has 7.5 s end to end and the others the server timeout (20 s by
default), so nothing here touches the database. Each answer has the shape of Vapi's
``ServerMessageResponse*`` schema. The variables that configure them (``VAPI_DEFAULT_ASSISTANT_ID``,
``VAPI_ASSISTANT_ROUTES``, ``VAPI_ASSISTANT_REQUEST_ERROR``, ``VAPI_TRANSFER_DESTINATION``,
``VAPI_HANDOFF_DESTINATION``, ``INGEST_TOOLS``, ``VAPI_TOOL_TIMEOUT``) are documented in the
README ("Messages Vapi waits on" and the configuration table). A tool function takes
``(arguments: dict, message: dict)`` and returns a string or a JSON-able value; it may be async.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingest.errors import ConfigError
from ingest.vocabulary import ANSWER_FIELD, MessageType

log = logging.getLogger(__name__)

Tool = Callable[[dict[str, Any], dict[str, Any]], Any]
MAX_TOOL_CALLS = 64  # tool calls answered per tool-calls message; the rest are not run


class AnswerConfigError(ConfigError):
    """An answer setting is malformed; the message names the variable."""


def _pairs(env: Mapping[str, str], name: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in env.get(name, "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise AnswerConfigError(f"{name}: expected key=value pairs, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def load_tool(name: str, target: str) -> Tool:
    module_name, sep, attribute = target.partition(":")
    if not sep:
        raise AnswerConfigError(f"INGEST_TOOLS: {name}={target!r} is not module:function")
    try:
        tool = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise AnswerConfigError(f"INGEST_TOOLS: cannot load {target!r} for {name!r}: {exc}") from None
    if not callable(tool):
        raise AnswerConfigError(f"INGEST_TOOLS: {target!r} is not callable")
    return tool  # type: ignore[no-any-return]


@dataclass(frozen=True)
class AnswerSettings:
    default_assistant_id: str | None = None
    assistant_routes: Mapping[str, str] = field(default_factory=dict)
    assistant_request_error: str = "Sorry, this line is not available right now. Please try again later."
    transfer_destination: str | None = None
    handoff_destination: str | None = None
    tools: Mapping[str, Tool] = field(default_factory=dict)
    tool_timeout: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AnswerSettings:
        timeout_text = env.get("VAPI_TOOL_TIMEOUT", "").strip() or "5"
        try:
            timeout = float(timeout_text)
        except ValueError:
            raise AnswerConfigError(f"VAPI_TOOL_TIMEOUT must be a number of seconds, got {timeout_text!r}") from None
        destination = env.get("VAPI_TRANSFER_DESTINATION", "").strip() or None
        if destination and not (destination.startswith("+") or destination.startswith("sip:")):
            raise AnswerConfigError("VAPI_TRANSFER_DESTINATION must be a +E.164 number or a sip: URI")
        return cls(
            default_assistant_id=env.get("VAPI_DEFAULT_ASSISTANT_ID", "").strip() or None,
            assistant_routes=_pairs(env, "VAPI_ASSISTANT_ROUTES"),
            assistant_request_error=env.get("VAPI_ASSISTANT_REQUEST_ERROR", "").strip() or cls.assistant_request_error,
            transfer_destination=destination,
            handoff_destination=env.get("VAPI_HANDOFF_DESTINATION", "").strip() or None,
            tools={name: load_tool(name, target) for name, target in _pairs(env, "INGEST_TOOLS").items()},
            tool_timeout=timeout,
        )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def assistant_request(settings: AnswerSettings, message: dict[str, Any]) -> dict[str, Any]:
    phone = _dict(message.get("phoneNumber"))
    call = _dict(message.get("call"))
    for key in (phone.get("number"), phone.get("id"), call.get("phoneNumberId")):
        if isinstance(key, str) and key in settings.assistant_routes:
            return {"assistantId": settings.assistant_routes[key]}
    if settings.default_assistant_id:
        return {"assistantId": settings.default_assistant_id}
    return {"error": settings.assistant_request_error}


def transfer_destination_request(settings: AnswerSettings, message: dict[str, Any]) -> dict[str, Any]:
    target = settings.transfer_destination
    if target is None:
        return {"error": "No transfer destination is configured."}
    if target.startswith("sip:"):
        return {"destination": {"type": "sip", "sipUri": target}}
    return {"destination": {"type": "number", "number": target}}


def handoff_destination_request(settings: AnswerSettings, message: dict[str, Any]) -> dict[str, Any]:
    """The configured assistant: by id when it is a UUID, else by name within the call's squad.

    Vapi's schema requires ``destination`` even in a refusal, so without configuration the
    answer is an empty destination with an ``error`` saying why no handoff is made.
    """
    target = settings.handoff_destination
    if target is None:
        return {"destination": {}, "error": "No handoff destination is configured."}
    try:
        uuid.UUID(target)
    except ValueError:
        return {"destination": {"type": "assistant", "assistantName": target}}
    return {"destination": {"type": "assistant", "assistantId": target}}


def _arguments(raw: Any) -> dict[str, Any]:
    # Tool arguments arrive as a JSON string or as an object, depending on the path taken.
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {"_raw": raw}
    return raw if isinstance(raw, dict) else {}


def _single_line(value: Any) -> str:
    # Vapi fails to parse multi-line results, so they are sent on one line.
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return " ".join(text.splitlines())


async def _run_tool(settings: AnswerSettings, name: str, arguments: dict[str, Any], message: dict[str, Any]) -> str:
    tool = settings.tools[name]
    if inspect.iscoroutinefunction(tool):
        result = await asyncio.wait_for(tool(arguments, message), settings.tool_timeout)
    else:
        result = await asyncio.wait_for(asyncio.to_thread(tool, arguments, message), settings.tool_timeout)
    return _single_line(result)


async def _tool_result(settings: AnswerSettings, call: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    function = _dict(call.get("function"))
    name = str(function.get("name") or call.get("name") or "")
    entry: dict[str, Any] = {"toolCallId": str(call.get("id") or ""), "name": name}
    if name not in settings.tools:
        entry["error"] = f"No handler is configured for tool {name!r}."
        return entry
    try:
        entry["result"] = await _run_tool(
            settings, name, _arguments(function.get("arguments", call.get("parameters"))), message
        )
    except TimeoutError:
        entry["error"] = f"Tool {name!r} did not answer within {settings.tool_timeout:g}s."
    except Exception as exc:
        log.warning("tool failed", extra={"tool": name, "error": type(exc).__name__})
        entry["error"] = f"Tool {name!r} failed: {type(exc).__name__}."
    return entry


async def tool_calls(settings: AnswerSettings, message: dict[str, Any]) -> dict[str, Any]:
    """One result per tool call, for the first ``MAX_TOOL_CALLS`` of them; the rest are not run.

    A model's turn asks for a handful; a list of thousands only ties up the event loop.
    """
    listed = message.get("toolCallList")
    calls = [c for c in listed[:MAX_TOOL_CALLS] if isinstance(c, dict)] if isinstance(listed, list) else []
    if isinstance(listed, list) and len(listed) > MAX_TOOL_CALLS:
        log.warning("tool calls over the limit not run", extra={"listed": len(listed), "limit": MAX_TOOL_CALLS})
    results = await asyncio.gather(*(_tool_result(settings, call, message) for call in calls))
    return {"results": list(results)}


async def function_call(settings: AnswerSettings, message: dict[str, Any]) -> dict[str, Any]:
    """The legacy single-function shape: ``{"result": "..."}``."""
    function = _dict(message.get("functionCall"))
    entry = await _tool_result(
        settings, {"function": {"name": function.get("name"), "arguments": function.get("parameters")}}, message
    )
    return {"result": entry["result"]} if "result" in entry else {"result": entry["error"]}


def with_answer_recorded(body: bytes, reply: dict[str, Any]) -> bytes:
    """The queued body of an ``assistant-request`` with the assistant id we answered inside it.

    The worker reads it (``ANSWER_FIELD``) as the call's assistant, since Vapi's later
    messages may not name it. Only this small, rare message is re-encoded.
    """
    assistant_id = reply.get("assistantId")
    if not isinstance(assistant_id, str):
        return body
    envelope = orjson.loads(body)
    envelope["message"][ANSWER_FIELD] = {"assistantId": assistant_id}
    return orjson.dumps(envelope)


async def answer(settings: AnswerSettings, message: dict[str, Any]) -> dict[str, Any] | None:
    """The response body for a message Vapi waits on; None for informational messages."""
    kind = message.get("type")
    if kind == MessageType.ASSISTANT_REQUEST:
        return assistant_request(settings, message)
    if kind == MessageType.TOOL_CALLS:
        return await tool_calls(settings, message)
    if kind == MessageType.FUNCTION_CALL:
        return await function_call(settings, message)
    if kind == MessageType.TRANSFER_DESTINATION_REQUEST:
        return transfer_destination_request(settings, message)
    if kind == MessageType.HANDOFF_DESTINATION_REQUEST:
        return handoff_destination_request(settings, message)
    if kind == MessageType.KNOWLEDGE_BASE_REQUEST:
        return {"documents": []}  # no knowledge source is configured: nothing matches
    return None
