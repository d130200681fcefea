"""ingest.mapping.redaction: personal data in transcripts replaced by typed placeholders, ordinary words kept."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fixtures import FIXTURES_DIR, load_call, parse_body

from ingest.mapping.keywords import extract_keywords
from ingest.mapping.redaction import MIN_DIGITS, Placeholder, redact

CORPUS = FIXTURES_DIR / "redaction" / "utterances.jsonl"
_PLACEHOLDER = re.compile("|".join(re.escape(placeholder) for placeholder in Placeholder))
_ASCII_DIGITS = re.compile(r"[0-9]+")


def corpus() -> list[tuple[str, str]]:
    """The corpus of caller and assistant utterances: ``text`` and its expected ``redacted`` form."""
    rows = [orjson.loads(line) for line in CORPUS.read_bytes().splitlines() if line]
    return [(row["text"], row["redacted"]) for row in rows]


@pytest.mark.parametrize(("text", "redacted"), corpus())
def test_corpus_utterance_redacts_as_expected(text: str, redacted: str) -> None:
    """Each utterance of the corpus comes back exactly as written down next to it."""
    assert redact(text, "NZ") == redacted


def test_corpus_covers_every_placeholder_and_the_traps() -> None:
    """The corpus holds 60+ utterances, every placeholder, and at least 30 that must come back unchanged."""
    rows = corpus()
    assert len(rows) >= 60
    assert all(any(placeholder in redacted for _, redacted in rows) for placeholder in Placeholder)
    assert sum(text == redacted for text, redacted in rows) >= 30


@pytest.mark.parametrize(
    "number",
    [
        "+64 21 555 0123",
        "021 555 0123",
        "(09) 555-0123",
        "0800 123 456",
        "+1 (415) 555-2671",
        "09-555-0123",
        "021.555.0123",
        "0211234567",
        "0064 21 555 0123",
        "+44 20 7946 0958",
        "+61 2 9374 4000",
    ],
)
def test_phone_numbers_in_common_written_forms(number: str) -> None:
    """National, international, bracketed, dashed, dotted and IDD-prefixed numbers all become [PHONE]."""
    assert redact(f"Sure, it's {number}, thanks.", "NZ") == "Sure, it's [PHONE], thanks."


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("renews 2025-03-12", "renews 2025-03-12"),
        ("reference 123456", "reference [NUMBER]"),
        ("policy 98765432", "policy [NUMBER]"),
        ("IRD 123-456-789", "IRD [NUMBER]"),
    ],
)
def test_phones_must_be_valid_not_merely_possible(text: str, redacted: str) -> None:
    """Leniency VALID: a date or a bare reference number is never taken for a phone number."""
    assert redact(text, "NZ") == redacted


def test_region_is_a_parameter() -> None:
    """Numbers without a country code are read in the given region (any letter case)."""
    assert redact("call (415) 555-2671", "US") == "call [PHONE]"
    assert redact("call (415) 555-2671", "NZ") == "call [NUMBER]"
    assert redact("call 09 555 0123", "nz") == "call [PHONE]"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("4111 1111 1111 1111", "[CARD]"),
        ("4111-1111-1111-1111", "[CARD]"),
        ("4111111111111111", "[CARD]"),
        ("3782 822463 10005", "[CARD]"),
        ("4111 1111 1111 1112", "[NUMBER]"),  # fails the Luhn check
        ("0000 0000 0000 0000", "[NUMBER]"),  # Luhn-valid, but no card number starts with 0
        ("four one one one, one one one one, one one one one, one one one one", "[CARD]"),
    ],
)
def test_card_numbers_are_luhn_valid(text: str, redacted: str) -> None:
    """13–19 digits, grouped or not, written or spoken, are [CARD] only when the Luhn check passes."""
    assert redact(text, "NZ") == redacted


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("ref 12345", "ref 12345"),
        ("ref 123456", "ref [NUMBER]"),
        ("ref 123 45", "ref 123 45"),
        ("ref 123 456", "ref [NUMBER]"),
        ("ref one two three four five", "ref one two three four five"),
        ("ref one two three four five six", "ref [NUMBER]"),
        ("ref double five triple five", "ref double five triple five"),
        ("ref double five triple five oh", "ref [NUMBER]"),
        ("ref one 23456", "ref [NUMBER]"),
    ],
)
def test_digit_runs_need_min_digits(text: str, redacted: str) -> None:
    """Written or spoken, grouped or not, a run is redacted from MIN_DIGITS digits on ("double" counts two)."""
    assert MIN_DIGITS == 6
    assert redact(text, "NZ") == redacted


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("oh two one five five five oh one two three", "[PHONE]"),
        ("plus six four two one five five five oh one two three", "[PHONE]"),
        ("oh nine, three oh seven, double four double one", "[PHONE]"),
        ("oh two one 555 0123", "[PHONE]"),
        ("four one two two three three eight eight", "[NUMBER]"),
        ("nine nine nine nine nine nine", "[NUMBER]"),
        ("Oh, one two three four five six", "Oh, [NUMBER]"),
        ("five o'clock, one two", "five o'clock, one two"),
        ("forty-five twenty twenty-four", "forty-five twenty twenty-four"),
    ],
)
def test_spoken_digit_runs_are_typed_by_their_digits(text: str, redacted: str) -> None:
    """A spoken run is [PHONE] when its digits are a valid number, [NUMBER] otherwise; tens end a run."""
    assert redact(text, "NZ") == redacted


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("jane.doe@gmail.com", "[EMAIL]"),
        ("j_smith+bills@xtra.co.nz", "[EMAIL]"),
        ("jane dot doe at gmail dot com", "[EMAIL]"),
        ("tama underscore wiremu at xtra dot co dot nz", "[EMAIL]"),
        ("Jane.Doe AT Gmail.com", "[EMAIL]"),
        ("visit us at acme dot co dot nz", "visit us at acme dot co dot nz"),
        ("have a look at it dot com", "have a look at it dot com"),
        ("meet me at the shop dot", "meet me at the shop dot"),
        ("she's at home", "she's at home"),
    ],
)
def test_email_addresses_written_and_spoken(text: str, redacted: str) -> None:
    """Addresses become [EMAIL]; a function word before "at", or no domain ending, is ordinary speech."""
    assert redact(text, "NZ") == redacted


@pytest.mark.parametrize(
    ("nhi", "valid"),
    [("ZAC5361", True), ("JBX3656", True), ("ZBN77VL", True), ("zsc21tn", True)]
    + [("ZZZ0044", False), ("JBX3657", False), ("ZBN77VM", False), ("ZZZ00AA", False), ("ABC123", False)],
)
def test_nhi_numbers_need_their_check_character(nhi: str, valid: bool) -> None:
    """A National Health Index number is [NUMBER] only when its check digit or letter is right."""
    assert redact(f"my NHI is {nhi}.", "NZ") == ("my NHI is [NUMBER]." if valid else f"my NHI is {nhi}.")


def test_placeholders_are_declared_once_and_hold_no_digits() -> None:
    """The vocabulary is four bracketed names, none with a digit (so redaction never adds one)."""
    assert [str(placeholder) for placeholder in Placeholder] == ["[PHONE]", "[EMAIL]", "[CARD]", "[NUMBER]"]
    assert not any(char.isdigit() for placeholder in Placeholder for char in placeholder)


def report_transcript(call: str) -> str:
    """The ``artifact.transcript`` of a recorded call's end-of-call report."""
    messages: list[dict[str, Any]] = [parse_body(raw)["message"] for raw in load_call(call)]
    report = next(message for message in messages if message["type"] == "end-of-call-report")
    text: str = report["artifact"]["transcript"]
    return text


def test_recorded_transcript_loses_only_its_personal_data() -> None:
    """The rental enquiry keeps its times, street number and keywords; the caller's mobile is gone."""
    text = report_transcript("long_call")
    redacted = redact(text, "NZ")
    assert "021 448 9031" in text
    assert "021 448 9031" not in redacted
    assert redacted.count("[PHONE]") == text.count("021 448 9031")
    assert redacted.replace("[PHONE]", "021 448 9031") == text
    assert extract_keywords(redacted) == extract_keywords(text)


# --- properties ------------------------------------------------------------------------------

# Pieces of transcripts, numbers and near-misses, mixed in any order and without spaces.
_PIECES = st.sampled_from(
    [
        *("021", "555", "0123", "(09)", "+64", "+", "0800", "4111", "1111", "2025", "03", "12", "7", "123456"),
        *(" ", "  ", "\n", ",", ".", "-", ":", "/", "(", ")", "$", "%", "@", "[", "]", "'", "…", "\u00a0"),
        *("oh", "o", "one", "two", "five", "nine", "zero", "double", "triple", "plus", "Oh,", "six"),
        *("at", "dot", "com", "nz", "co", "jane", "us", "gmail", "underscore", "dollars", "percent"),
        *("[PHONE]", "[NUMBER]", "ZAC5361", "ZBN77VL", "ZAC", "x", "the", "3rd", "é", "٠٢١", "０２"),
        *("jane.doe@gmail.com", "4111111111111111", "12-3456-7890123-00", " at ", " dot ", "o'clock"),
    ]
)
_MIXED = st.lists(st.one_of(_PIECES, st.text(alphabet="0123456789 -.,+()$@abc[]:/%", max_size=8)), max_size=40)
TEXTS = st.one_of(_MIXED.map("".join), st.text())


@given(TEXTS)
def test_redaction_is_idempotent(text: str) -> None:
    """Redacting redacted text changes nothing more."""
    once = redact(text, "NZ")
    assert redact(once, "NZ") == once


@given(TEXTS)
def test_redaction_never_makes_a_number(text: str) -> None:
    """Every run of digits in the output is a whole run of digits of the input: none made, none cut."""
    assert set(_ASCII_DIGITS.findall(redact(text, "NZ"))) <= set(_ASCII_DIGITS.findall(text))


@given(TEXTS)
def test_text_outside_redacted_spans_is_kept_in_order(text: str) -> None:
    """Between placeholders, the output is pieces of the input, in the input's order."""
    position = 0
    for piece in _PLACEHOLDER.split(redact(text, "NZ")):
        found = text.find(piece, position)
        assert found >= 0, piece
        position = found + len(piece)


# Ordinary words, with the traps: "at", "dot", words that contain them, homophones of digits
# ("double" and "triple" are left out: before a digit they are digits; the corpus has them
# before ordinary words).
_WORDS = st.sampled_from(
    [
        *("at", "dot", "that", "dotted", "anecdote", "attached", "for", "to", "too", "won", "ate", "tree"),
        *("the", "shop", "pizza", "booking", "Thursday", "kia", "ora", "insurance", "bill", "doctor"),
        *("twenty", "forty-five", "half", "past", "dozen", "hundred", "first", "second", "once", "none"),
        *("Jane", "gmail", "xtra", "online", "website", "dollars", "doubled", "triplets", "plus", "o'clock"),
    ]
)
# One or two digits spoken: between two of these there is always an ordinary word.
_FEW_DIGITS = st.lists(
    st.sampled_from(["oh", "one", "two", "five", "nine", "zero", "double six"]), min_size=1, max_size=2
)
_SEPARATORS = st.sampled_from([" ", ", ", ". ", " - ", "\n", "? "])


@given(st.lists(st.tuples(_WORDS, st.one_of(st.none(), _FEW_DIGITS), _SEPARATORS)))
def test_ordinary_speech_comes_back_unchanged(parts: list[tuple[str, list[str] | None, str]]) -> None:
    """Words, traps and fewer than MIN_DIGITS spoken digits in a row are returned exactly as given."""
    text = "".join(word + (" " + " ".join(digits) if digits else "") + separator for word, digits, separator in parts)
    assert redact(text, "NZ") == text


@given(st.text(st.characters(exclude_characters=set("0123456789@"), exclude_categories=["L"])))
def test_text_without_digits_letters_or_at_comes_back_unchanged(text: str) -> None:
    """Punctuation, symbols, spaces and non-ASCII digits alone never change."""
    assert redact(text, "NZ") == text


@pytest.mark.parametrize(
    "text",
    ["", " ", "\x00", "\ud800", "@", "@@.", "+", "(", "$", "٠٢١٥٥٥٠١٢٣", "１２３４５６", "0" * 100_000, "1 " * 50_000],
)
def test_any_string_is_accepted(text: str) -> None:
    """Empty, surrogate, Unicode-digit and very long strings are redacted without an exception."""
    assert isinstance(redact(text, "NZ"), str)


def test_a_long_transcript_is_redacted_throughout() -> None:
    """A 200 KB transcript keeps every line's ordinary words and loses every number in it."""
    line = "User: Kia ora, it's 021 555 0123 or jane dot doe at gmail dot com, table for four at 7:30.\n"
    redacted = redact(line * 2_000, "NZ")
    assert redacted == "User: Kia ora, it's [PHONE] or [EMAIL], table for four at 7:30.\n" * 2_000
