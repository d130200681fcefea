"""Transcript text and the customer's words, from Vapi's three shapes of a conversation.

* ``artifact.transcript`` (and the legacy top-level ``transcript``): one line per turn,
  ``"AI: …\\nUser: …\\n"``.
* ``messages[]`` items (``artifact.messages``, ``conversation-update``): ``role`` is
  ``system`` (the prompt, first), ``bot``, ``user``, ``tool_calls`` or
  ``tool_call_result``; the text is ``message``. ``messagesOpenAIFormatted`` items use
  ``assistant``/``user``/``tool`` and ``content`` instead. ``secondsFromStart`` is seconds,
  ``time`` is epoch ms.
* ``transcript`` events with ``transcriptType: "final"``: one turn each, arriving in any
  order and possibly twice, for calls that never send a report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from ingest.mapping.numbers import json_number

__all__ = ["customer_lines", "customer_utterances", "transcript_from_finals", "transcript_from_messages"]

# Vapi's labels in artifact.transcript; the other roles (system prompt, tool calls and
# their results) are not part of what was said.
_LABELS: Final = {"bot": "AI", "assistant": "AI", "user": "User"}
_CUSTOMER_PREFIXES: Final = ("user:", "customer:")


def _clean(text: str) -> str:
    """One line of text: whitespace runs become one space, and NUL goes (Postgres ``text`` rejects it)."""
    return " ".join(text.replace("\x00", "").split())


def _text(item: Mapping[str, Any]) -> str | None:
    """The spoken text of a message item: ``message`` (Vapi) or ``content`` (OpenAI format)."""
    for key in ("message", "content"):
        value = item.get(key)
        if isinstance(value, str) and _clean(value):
            return _clean(value)
    return None


def customer_utterances(message_items: list[Any]) -> list[str]:
    """What the customer said, in the given order: the text of every ``user`` item."""
    utterances: list[str] = []
    for item in message_items if isinstance(message_items, list) else []:
        if isinstance(item, Mapping) and item.get("role") == "user":
            text = _text(item)
            if text:
                utterances.append(text)
    return utterances


def customer_lines(transcript: str) -> list[str]:
    """The customer's lines of a transcript string (``User:`` / ``Customer:``), labels removed."""
    if not isinstance(transcript, str):
        return []
    lines: list[str] = []
    for line in transcript.splitlines():
        stripped = line.strip()
        lowered = stripped.lower()
        for prefix in _CUSTOMER_PREFIXES:
            if lowered.startswith(prefix):
                text = stripped[len(prefix) :].strip()
                if text:
                    lines.append(text)
                break
    return lines


def transcript_from_messages(items: list[Any]) -> str | None:
    """``AI: …`` / ``User: …`` lines from message items, in spoken order; None if nobody spoke.

    Items are ordered by ``secondsFromStart`` when every spoken item has one, else by
    ``time`` when every one has that, else kept as given; the two are never mixed (one is
    seconds from the start, the other epoch milliseconds). Ties keep the given order.
    The result ends with a newline, like Vapi's own ``artifact.transcript``.
    """
    turns: list[tuple[Mapping[str, Any], str, str]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        label = _LABELS.get(str(item.get("role")))
        text = _text(item) if label else None
        if label and text:
            turns.append((item, label, text))
    if not turns:
        return None
    for key in ("secondsFromStart", "time"):
        positions = [json_number(item.get(key)) for item, _, _ in turns]
        if all(position is not None for position in positions):
            order = sorted(range(len(turns)), key=lambda index: positions[index] or Decimal(0))
            turns = [turns[index] for index in order]
            break
    return "".join(f"{label}: {text}\n" for _, label, text in turns)


def transcript_from_finals(finals: Iterable[tuple[int | float, str, str]]) -> str | None:
    """A transcript from final ``transcript`` events' ``(timestamp_ms, role, text)``; None if empty.

    Sorted by (timestamp, role, text) and exact repeats dropped, so any arrival order and
    any duplicate deliveries give the same text. ``assistant`` is ``AI:``, ``user`` is
    ``User:``; other roles, empty text and non-numeric timestamps are skipped. As in
    every function here, each turn is put on one line and NUL characters are removed.
    """
    turns: set[tuple[Decimal, str, str]] = set()
    for timestamp, role, text in finals:
        position = json_number(timestamp)
        label = _LABELS.get(role) if isinstance(role, str) else None
        cleaned = _clean(text) if isinstance(text, str) else ""
        if position is None or label is None or not cleaned:
            continue
        turns.add((position, role, cleaned))
    if not turns:
        return None
    return "".join(f"{_LABELS[role]}: {text}\n" for _, role, text in sorted(turns))
