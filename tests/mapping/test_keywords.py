"""ingest.mapping.keywords: YAKE key phrases of a transcript, and assistant-provided keyword lists."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fixtures import load_call, parse_body

from ingest.mapping.keywords import extract_keywords, normalise_keywords


def transcript(call: str) -> str:
    """The ``artifact.transcript`` of a recorded call's end-of-call report."""
    messages: list[dict[str, Any]] = [parse_body(raw)["message"] for raw in load_call(call)]
    report = next(message for message in messages if message["type"] == "end-of-call-report")
    text: str = report["artifact"]["transcript"]
    return text


def test_long_call_keywords_name_the_topic() -> None:
    """The rental enquiry's keywords name the agency, the street and the suburb, lower-cased and distinct."""
    keywords = extract_keywords(transcript("long_call"))
    assert 0 < len(keywords) <= 10
    assert {"coastal realty", "marine parade", "mount maunganui"} <= set(keywords)
    assert keywords == [keyword.strip().lower() for keyword in keywords]
    assert len(set(keywords)) == len(keywords)


def test_speaker_labels_and_filler_are_not_keywords() -> None:
    """ "AI", "User", greetings and filler words never come out as keywords."""
    for call in ("web_call_support", "inbound_booking", "long_call", "transferred", "dst_spring"):
        words = {word for keyword in extract_keywords(transcript(call)) for word in keyword.split()}
        assert not words & {"ai", "user", "okay", "yeah", "thanks", "kia", "ora", "um", "hi"}, call


def test_a_phrase_already_covered_is_skipped() -> None:
    """Once "marine parade" is chosen, "marine" and "parade" on their own are not."""
    keywords = extract_keywords(transcript("long_call"))
    assert "marine parade" in keywords
    assert "marine" not in keywords
    assert "parade" not in keywords


def test_keywords_are_deterministic() -> None:
    """The same text gives the same list, call after call."""
    text = transcript("web_call_support")
    assert extract_keywords(text) == extract_keywords(text) == extract_keywords(text)


@pytest.mark.parametrize("limit", [0, 1, 3, 10])
def test_limit_bounds_the_list(limit: int) -> None:
    """At most ``limit`` keywords, and the first ones are the same whatever the limit."""
    text = transcript("inbound_booking")
    keywords = extract_keywords(text, limit=limit)
    assert len(keywords) == limit
    assert keywords == extract_keywords(text)[:limit]


@pytest.mark.parametrize("text", ["", "   ", "AI:\nUser:\n", "AI: \nUser: okay.\n"])
def test_nothing_to_extract(text: str) -> None:
    """Empty text, labels alone or filler alone give no keywords."""
    assert extract_keywords(text) == []


def test_a_50_kb_transcript_is_handled() -> None:
    """A transcript of ~50 KB (the size bound the service accepts) still gives at most ten keywords."""
    base = transcript("long_call") + transcript("web_call_support") + transcript("inbound_booking")
    big = base * (50_000 // len(base) + 1)
    keywords = extract_keywords(big)
    assert 0 < len(keywords) <= 10


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            ["check-up", "clean", "sore tooth", "appointment", "Thursday"],
            ["check-up", "clean", "sore tooth", "appointment", "thursday"],
        ),
        ("Solar, quote ,  next   year,,", ["solar", "quote", "next year"]),
        ("billing; outage\nrefund", ["billing", "outage", "refund"]),
        (["Rental", "rental", " RENTAL ", "viewing"], ["rental", "viewing"]),
        (["a", 3, None, "", "b", {"c": 1}], ["a", "b"]),
        ([f"k{i}" for i in range(15)], [f"k{i}" for i in range(10)]),
        (["x" * 65, "short"], ["short"]),
        (("tuple", "works"), ["tuple", "works"]),
    ],
)
def test_normalise_keywords(value: object, expected: list[str]) -> None:
    """Assistant keywords are lower-cased, trimmed, de-duplicated in order, non-empty, at most ten."""
    assert normalise_keywords(value) == expected


@pytest.mark.parametrize("value", [None, "", " , ,", [], [None, 3], 42, {"keywords": ["a"]}, True])
def test_normalise_keywords_refuses_unusable_values(value: object) -> None:
    """No usable keyword gives None, so the caller extracts them locally."""
    assert normalise_keywords(value) is None


def test_normalise_keywords_of_recorded_structured_data() -> None:
    """The inbound_booking report's five structuredData keywords pass through, lower-cased."""
    messages = [parse_body(raw)["message"] for raw in load_call("inbound_booking")]
    report = next(message for message in messages if message["type"] == "end-of-call-report")
    assert normalise_keywords(report["analysis"]["structuredData"]["keywords"]) == [
        "check-up",
        "clean",
        "sore tooth",
        "appointment",
        "thursday",
    ]


@given(st.one_of(st.text(), st.lists(st.one_of(st.text(), st.integers(), st.none()))))
def test_normalise_keywords_is_idempotent(value: object) -> None:
    """Normalising a normalised list changes nothing."""
    keywords = normalise_keywords(value)
    assert normalise_keywords(keywords) == keywords
    if keywords is not None:
        assert 0 < len(keywords) <= 10
        assert len(set(keywords)) == len(keywords)


@given(st.text(max_size=500))
def test_extract_keywords_never_raises(text: str) -> None:
    """Any text gives a list of distinct lower-case keywords, never an exception."""
    keywords = extract_keywords(text)
    assert len(keywords) <= 10
    assert len(set(keywords)) == len(keywords)
    assert all(keyword == keyword.lower() and keyword.strip() for keyword in keywords)


def test_redaction_placeholders_are_never_keywords() -> None:
    """Placeholders left by redaction ([PHONE], [EMAIL], …) are not what a call was about."""
    text = "User: reach me on [PHONE] or [EMAIL]; [CARD] and [NUMBER]. I want a viewing on Marine Parade."
    keywords = extract_keywords(text)
    assert "marine parade" in keywords
    assert not {"phone", "email", "card", "number"} & {word for keyword in keywords for word in keyword.split()}
