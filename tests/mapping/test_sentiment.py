"""ingest.mapping.sentiment: VADER over the customer's words, and assistant-provided labels or scores."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fixtures import load_call, parse_body

from ingest.mapping.sentiment import normalise_sentiment, sentiment_of
from ingest.mapping.transcript import customer_lines, customer_utterances
from ingest.vocabulary import Sentiment


def report(call: str) -> dict[str, Any]:
    """The end-of-call report's ``message`` of a recorded call."""
    messages = [parse_body(raw)["message"] for raw in load_call(call)]
    return next(message for message in messages if message["type"] == "end-of-call-report")


def test_plain_sentences() -> None:
    """Clearly happy, clearly unhappy and flat customer turns get the matching label."""
    assert sentiment_of(["Thank you so much, that's wonderful, you've been really helpful."]) is Sentiment.POSITIVE
    assert sentiment_of(["This is terrible. I'm angry and I hate this service."]) is Sentiment.NEGATIVE
    assert sentiment_of(["The router is in the hallway."]) is Sentiment.NEUTRAL


@pytest.mark.parametrize("texts", [[], [""], ["  ", "\n"], ()])
def test_no_words_no_sentiment(texts: list[str]) -> None:
    """A customer who said nothing has no sentiment (None, not neutral)."""
    assert sentiment_of(texts) is None


def test_a_lone_string_is_one_utterance() -> None:
    """Passing one string instead of a list scores the string, not its characters."""
    text = "That's great, thanks so much!"
    assert sentiment_of(text) is sentiment_of([text]) is Sentiment.POSITIVE


def test_long_utterances_weigh_more_than_short_courtesies() -> None:
    """A long complaint outweighs a short polite sign-off (the mean is weighted by length)."""
    complaint = "This is the third time the internet has failed this week and it is awful, I am furious and fed up."
    assert sentiment_of([complaint, "Thanks."]) is Sentiment.NEGATIVE


def test_web_call_support_is_positive_overall() -> None:
    """The frustrated web-call customer who ends satisfied scores positive: VADER reads the thanks at the end.

    Read honestly, VADER misses "fed up" in the opening turn and scores "ridiculous" negative; the
    weighted mean is about +0.32, the same label the report's summary ("satisfied by the end") implies.
    """
    message = report("web_call_support")
    assert "structuredData" not in message["analysis"]  # nothing to read: it must be derived
    utterances = customer_utterances(message["artifact"]["messages"])
    assert len(utterances) == 7
    assert sentiment_of(utterances) is Sentiment.POSITIVE
    assert sentiment_of(customer_lines(message["artifact"]["transcript"])) is Sentiment.POSITIVE


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("inbound_booking", Sentiment.POSITIVE),  # the assistant said positive too
        ("long_call", Sentiment.POSITIVE),  # the assistant said positive too
        ("dst_autumn", Sentiment.NEGATIVE),  # severe tooth pain at night; the assistant said negative
        ("transferred", Sentiment.NEUTRAL),  # one factual turn about a leak
    ],
)
def test_recorded_calls(call: str, expected: Sentiment) -> None:
    """The local reading of recorded calls, which agrees with the assistant's label where there is one."""
    message = report(call)
    assert sentiment_of(customer_utterances(message["artifact"]["messages"])) is expected
    assistant = message["analysis"].get("structuredData", {}).get("sentiment")
    if assistant is not None:
        assert normalise_sentiment(assistant) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("positive", Sentiment.POSITIVE),
        ("Positive", Sentiment.POSITIVE),
        (" very positive ", Sentiment.POSITIVE),
        ("Mostly Positive.", Sentiment.POSITIVE),
        ("satisfied", Sentiment.POSITIVE),
        ("negative", Sentiment.NEGATIVE),
        ("Very-Negative", Sentiment.NEGATIVE),
        ("frustrated", Sentiment.NEGATIVE),
        ("neutral", Sentiment.NEUTRAL),
        ("Mixed", Sentiment.NEUTRAL),
        ("overall sentiment: neutral", Sentiment.NEUTRAL),
        (Sentiment.NEGATIVE, Sentiment.NEGATIVE),
        (0.8, Sentiment.POSITIVE),
        (-0.3, Sentiment.NEGATIVE),
        (0, Sentiment.NEUTRAL),
        (0.04, Sentiment.NEUTRAL),
        (0.05, Sentiment.POSITIVE),
        (-1, Sentiment.NEGATIVE),
        ("0.6", Sentiment.POSITIVE),
        ("-0.6", Sentiment.NEGATIVE),
        (5, Sentiment.POSITIVE),
        (4, Sentiment.POSITIVE),
        (3, Sentiment.NEUTRAL),
        (2, Sentiment.NEGATIVE),
        (1.5, Sentiment.NEGATIVE),
        ("4", Sentiment.POSITIVE),
    ],
)
def test_normalise_sentiment(value: object, expected: Sentiment) -> None:
    """Labels with intensity words, polarity scores in [-1, 1] and 1-5 ratings map to the three labels."""
    assert normalise_sentiment(value) is expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "unknown",
        "not positive",
        "positive and negative",
        "positive/negative",
        1,  # best polarity or worst rating: ambiguous
        1.0,
        6,
        -1.5,
        100,
        float("nan"),
        True,
        False,
        ["positive"],
        {"label": "positive"},
    ],
)
def test_normalise_sentiment_refuses_unusable_values(value: object) -> None:
    """Unknown words, negations, ambiguous or out-of-range numbers and non-scalars give None."""
    assert normalise_sentiment(value) is None


@given(st.floats(min_value=-1, max_value=1).filter(lambda score: score != 1))
def test_polarity_scores_follow_the_thresholds(score: float) -> None:
    """Any score in [-1, 1) is positive at or above 0.05, negative at or below -0.05, neutral between."""
    expected = Sentiment.POSITIVE if score >= 0.05 else Sentiment.NEGATIVE if score <= -0.05 else Sentiment.NEUTRAL
    assert normalise_sentiment(score) is expected


@given(st.lists(st.text(max_size=200), max_size=20))
def test_sentiment_of_any_text_is_a_label_or_none(texts: list[str]) -> None:
    """Arbitrary text never raises; it gives a label, or None exactly when there is no non-blank text."""
    result = sentiment_of(texts)
    assert (result is None) == (not any(text.strip() for text in texts))
