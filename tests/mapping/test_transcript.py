"""ingest.mapping.transcript: customer words and transcript text from Vapi's message shapes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fixtures import all_calls, load_call, load_event, parse_body

from ingest.mapping.transcript import (
    customer_lines,
    customer_utterances,
    transcript_from_finals,
    transcript_from_messages,
)


def messages_of(call: str) -> list[dict[str, Any]]:
    return [parse_body(raw)["message"] for raw in load_call(call)]


def report(call: str) -> dict[str, Any]:
    """The end-of-call report's ``message`` of a recorded call."""
    return next(message for message in messages_of(call) if message["type"] == "end-of-call-report")


def finals(call: str) -> list[tuple[int | float, str, str]]:
    """The ``(timestamp, role, text)`` of every final transcript event of a recorded call."""
    return [
        (message["timestamp"], message["role"], message["transcript"])
        for message in messages_of(call)
        if message["type"].startswith("transcript") and message.get("transcriptType") == "final"
    ]


def test_customer_utterances_are_the_user_items() -> None:
    """Only ``user`` items count: not the system prompt, the bot, or tool calls and results."""
    items = report("inbound_booking")["artifact"]["messages"]
    utterances = customer_utterances(items)
    assert utterances == [item["message"] for item in items if item["role"] == "user"]
    assert len(utterances) == 4
    assert not any("Harbourside Dental" in text and "You are" in text for text in utterances)


def test_customer_utterances_read_openai_format_and_skip_junk() -> None:
    """OpenAI-format ``content`` is read too; blank, non-text and non-dict items are skipped."""
    items: list[Any] = [
        {"role": "user", "content": "Hello there"},
        {"role": "user", "message": "  "},
        {"role": "user", "message": None},
        {"role": "assistant", "content": "Hi"},
        "user",
        None,
        {"role": "user", "message": "Two\nlines"},
    ]
    assert customer_utterances(items) == ["Hello there", "Two lines"]
    assert customer_utterances(None) == []  # type: ignore[arg-type]


def test_customer_lines_of_a_transcript_string() -> None:
    """``User:`` and ``Customer:`` lines are the customer's, with the label removed."""
    text = "AI: Hi, how can I help?\nUser: My fibre is down.\nAI: Sorry.\ncustomer:  Thanks \nUser:\nUserName: x\n"
    assert customer_lines(text) == ["My fibre is down.", "Thanks"]
    assert customer_lines("") == []


def test_customer_lines_and_utterances_agree_on_the_fixtures() -> None:
    """For every recorded report, the transcript's User lines are exactly the user message items."""
    for path in all_calls():
        for message in messages_of(path.stem):
            artifact = message.get("artifact") or {}
            if message["type"] == "end-of-call-report" and artifact.get("transcript"):
                expected = customer_utterances(artifact["messages"])
                assert customer_lines(artifact["transcript"]) == expected, path.stem


def test_transcript_from_messages_equals_vapis_own_transcript() -> None:
    """Rebuilt from ``messages``, the transcript equals ``artifact.transcript`` on every recorded body that has both."""
    compared = 0
    for path in all_calls():
        for message in messages_of(path.stem):
            artifact = message.get("artifact") or {}
            if artifact.get("transcript") and artifact.get("messages"):
                assert transcript_from_messages(artifact["messages"]) == artifact["transcript"], path.stem
                compared += 1
    assert compared > 30


def test_transcript_from_messages_orders_by_time_and_skips_other_roles() -> None:
    """Items are ordered by secondsFromStart; system, tool_calls and tool_call_result items are left out."""
    items = [
        {"role": "user", "message": "Second", "secondsFromStart": 6.7, "time": 2},
        {"role": "system", "message": "You are a bot", "secondsFromStart": 0},
        {"role": "tool_calls", "message": "", "toolCalls": [], "secondsFromStart": 7.0},
        {"role": "tool_call_result", "result": "{}", "secondsFromStart": 7.1},
        {"role": "bot", "message": "First", "secondsFromStart": 3.7, "time": 1},
        {"role": "assistant", "content": "Third", "secondsFromStart": 9.0, "time": 3},
    ]
    assert transcript_from_messages(items) == "AI: First\nUser: Second\nAI: Third\n"


def test_transcript_from_messages_never_mixes_seconds_and_milliseconds() -> None:
    """Without secondsFromStart on every item it orders by epoch-ms ``time``; with neither it keeps the order."""
    by_time = [
        {"role": "user", "message": "B", "time": 1750183777327, "secondsFromStart": 6.71},
        {"role": "bot", "message": "A", "time": 1750183774317},
    ]
    assert transcript_from_messages(by_time) == "AI: A\nUser: B\n"
    as_given = [{"role": "user", "message": "B", "time": 5}, {"role": "bot", "message": "A"}]
    assert transcript_from_messages(as_given) == "User: B\nAI: A\n"


@pytest.mark.parametrize(
    "items",
    [[], [{"role": "system", "message": "prompt"}], [{"role": "bot", "message": " "}], None],
)
def test_transcript_from_messages_without_speech(items: Any) -> None:
    """No spoken item gives None."""
    assert transcript_from_messages(items) is None


def test_finals_only_call_gets_a_transcript() -> None:
    """The call with no report gets its transcript from the eight final transcript events, in order."""
    turns = finals("no_report_finals_only")
    assert len(turns) == 8
    text = transcript_from_finals(turns)
    assert text is not None
    assert text.startswith("AI: Kauri Vets after-hours")
    assert text.count("\n") == 8
    assert text == transcript_from_finals(reversed(turns))


def test_finals_equal_vapis_transcript_where_both_exist() -> None:
    """Built from final transcript events, the text equals the report's transcript on the fixtures."""
    for call in ("inbound_booking", "web_call_support", "long_call", "dst_autumn", "transferred", "voicemail"):
        assert transcript_from_finals(finals(call)) == report(call)["artifact"]["transcript"], call


def test_finals_keep_unicode_and_skip_bad_rows() -> None:
    """Emoji, RTL text and macrons survive, NUL goes; unknown roles, blank text and bad timestamps are skipped."""
    event = parse_body(load_event("transcript_nul_byte"))["message"]
    rows: list[Any] = [
        (event["timestamp"], event["role"], event["transcript"]),
        (event["timestamp"] + 1, "system", "ignored"),
        (event["timestamp"] + 2, "user", "   "),
        ("soon", "user", "ignored"),
        (float("nan"), "assistant", "ignored"),
        (True, "assistant", "ignored"),
    ]
    text = transcript_from_finals(rows)
    assert "\x00" in event["transcript"]
    assert text == f"User: {event['transcript'].replace(chr(0), '')}\n"
    assert "wāhi" in text
    assert "👨\u200d👩\u200d👧" in text
    assert transcript_from_finals([]) is None


FINAL = st.tuples(
    st.integers(min_value=1_700_000_000_000, max_value=1_800_000_000_000) | st.floats(0, 1e13),
    st.sampled_from(["assistant", "user"]),
    st.text(min_size=1, max_size=40),
)


@given(st.lists(FINAL, max_size=15), st.randoms(use_true_random=False))
def test_finals_are_independent_of_order_and_duplicates(rows: list[tuple[float, str, str]], rng: Any) -> None:
    """Any permutation of the finals, with any of them delivered twice, gives the same transcript."""
    shuffled = rows + rng.sample(rows, k=len(rows) // 2)
    rng.shuffle(shuffled)
    assert transcript_from_finals(shuffled) == transcript_from_finals(rows)
