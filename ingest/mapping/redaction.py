"""Personal data in transcripts and summaries replaced by typed placeholders.

``redact`` gives what ``call_transcript`` and ``call_summary`` hold: the full-text index and
the keywords are built from its output, so it replaces only what identifies or reaches a
person and leaves every other character where it was. Replaced, in this order:

- ``[EMAIL]``: written addresses (``jane.doe@gmail.com``) and the spoken form speech-to-text
  writes (``jane dot doe at gmail dot com``, ``info at xtra dot co dot nz``): words joined by
  "dot"/"underscore"/"dash", then "at" (or "@"), then a domain ending in a common top-level
  label (com, nz, co, org …). A function word before "at" ("visit us at acme dot co dot nz",
  "look at …") is not taken for a mailbox.
- ``[NUMBER]`` for a National Health Index number (``ZAC5361``, ``ZBN77VL``) whose check
  character is right (HISO 10046:2023).
- Digits spoken one by one: "oh two one five five five oh one two three", "double five",
  "triple zero", "plus six four …", with commas, dashes or written digit groups between them
  ("oh two one 555 0123"). A run of at least ``MIN_DIGITS`` digits is one placeholder, typed
  by its digits: ``[CARD]`` (below), ``[PHONE]`` when a valid number of ``region`` (checked
  with ``phonenumbers.is_valid_number``), ``[NUMBER]`` otherwise. Numbers spoken as tens
  ("forty-five", "twenty twenty-four") end a run: that is how people say years, prices, times.
- Written digits: each maximal span of digit groups joined by a space, a dash or a dot (a
  group may be in parentheses, ``(09)``, or follow a "+") holding at least ``MIN_DIGITS``
  digits becomes one placeholder, never part of one:
  ``[CARD]`` when it has 13–19 digits, passes the Luhn check, does not start with 0 and has no
  "+" or parenthesis (trunk and IDD prefixes are how phone numbers look);
  ``[PHONE]`` when ``phonenumbers.PhoneNumberMatcher`` finds a number in it at
  ``Leniency.VALID`` (the number must exist in the numbering plan of ``region``, or of the
  country after "+"/"00"; ``POSSIBLE`` would also take dates such as ``2025-03-12`` and any
  6–8 digit reference); kept when it is a date (below); ``[NUMBER]`` otherwise: account,
  IRD, policy and customer numbers, NZ bank accounts ``12-3456-7890123-00``. A span longer
  than any written phone number (48 characters) is a list or a long number: ``[NUMBER]``.

The matcher runs once per text, over the candidate spans joined by newlines (which no number
crosses), so its verdict on a span never depends on the words around it; that, spans kept or
replaced whole, and a placeholder's brackets counting as word characters wherever a rule
looks at its neighbours, make ``redact`` idempotent.

Deliberately kept: times (``10:30``, "half past four", ``3pm``); prices (``$49.99``,
``$450000``, ``450000 dollars``, "twenty dollars") and percentages; dates and years
(``12/03/2025``, ``2025-03-12``, ``12 03 2025``, ``March 12 2025``, ``2019-2020``,
``2024-25``, "in 2019"); decimals and numbers with thousands separators (``1,250``);
quantities; and fewer than ``MIN_DIGITS`` digits in a row (order numbers, PINs, street
numbers, postcodes). A span with a comma, colon or slash between two digits is such a
formatted quantity and is kept whole, even when a number is joined to it by a lone space
("at 10:30 021 555 0123"): rare in speech, and cutting spans would make the result depend on
where they were cut. Names and street addresses are not detected.
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import Final

import phonenumbers

__all__ = ["MIN_DIGITS", "Placeholder", "redact"]


class Placeholder(StrEnum):
    """What replaces each kind of personal data in redacted text (no digits in any)."""

    PHONE = "[PHONE]"
    EMAIL = "[EMAIL]"
    CARD = "[CARD]"
    NUMBER = "[NUMBER]"


# Fewer digits in a row than this are kept.
MIN_DIGITS: Final = 6

# A placeholder's brackets count as word characters in every boundary below, so that text
# next to a placeholder reads the same the second time as the first.

# --- e-mail addresses --------------------------------------------------------------------
_WRITTEN_EMAIL: Final = re.compile(r"(?<![\w.%+'\]-])[\w.%+'-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}")

_WORD: Final = r"[^\W_]{1,40}"
_TLD: Final = r"(?:com|net|org|nz|au|uk|io|co|gov|govt|edu|ac|info|biz|me|ca|us|ie)"
# Words that come before "at" in ordinary speech and are never a mailbox.
_NOT_MAILBOX: Final = (
    r"(?:us|me|you|him|her|them|it|we|they|i|online|website|site|web|page|here|there|look|looking"
    r"|visit|find|is|are|was|were|be|been|and|or|but|so|then|also|just|only|up|out|in|on|email|mail)"
)
_SPOKEN_EMAIL: Final = re.compile(
    rf"(?i)(?<![\w'’.@\]-])(?!{_NOT_MAILBOX}[ \t]+at[ \t])"
    rf"(?:{_WORD}(?:[ \t]+(?:dot|underscore|dash|hyphen)[ \t]+|[._-])){{0,6}}{_WORD}"
    rf"(?:[ \t]+at[ \t]+|[ \t]*@[ \t]*)"
    rf"(?:{_WORD}(?:[ \t]+dot[ \t]+|\.)){{1,4}}{_TLD}(?![\w'’\[-])"
)
# What every spoken address ends with; the text is searched for it before the slower pattern.
_DOMAIN_END: Final = re.compile(rf"(?i)(?:[ \t]dot[ \t]+|\.){_TLD}(?![\w'’\[-])")

# --- National Health Index numbers ------------------------------------------------------
# Three letters (no I or O), then four digits or two digits and two letters; the last
# character checks the first six (mod 11 for a digit, mod 23 for a letter).
_NHI_LETTER: Final = "[A-HJ-NP-Za-hj-np-z]"
_NHI: Final = re.compile(
    rf"(?={_NHI_LETTER}{{3}}[0-9])(?<![\w'’\]-]){_NHI_LETTER}{{3}}[0-9]{{2}}(?:[0-9]{{2}}|{_NHI_LETTER}{{2}})(?![\w'’\[])"
)
_NHI_LETTERS: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ"

# --- spoken digits ----------------------------------------------------------------------
_NAMES: Final = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_WORDS: Final = {
    **dict.fromkeys(("zero", "oh", "o", "nought"), "0"),
    **{word: str(value) for value, word in enumerate(_NAMES, 1)},
}
_REPEAT: Final = {"double": 2, "triple": 3}
_SPOKEN_DIGIT: Final = rf"(?<![\w'’\]])(?:(?:double|triple)[ \t-]+)?(?:{'|'.join(_DIGIT_WORDS)})(?![\w'’\[])"
_WRITTEN_GROUP: Final = r"(?<![\w$€£¥\]])(?<![0-9][.,:/])[0-9]++(?![\w%\[]|[.,:/][0-9])"
_SPOKEN_RUN: Final = re.compile(
    # A run never starts with the exclamation "Oh," / "Oh.".
    # (The first two assertions only let the regex engine skip quickly to where a token can start.)
    r"(?i)(?=[0-9zontfsedp])(?<![\w'’\]])(?:plus[ \t]+)?(?!(?:oh|o)[ \t]*[,.!?…])"
    rf"(?:{_SPOKEN_DIGIT}|{_WRITTEN_GROUP})"
    rf"(?:(?:[ \t]*[,.\-‐–…]{{1,3}}[ \t]*|[ \t]+)(?:{_SPOKEN_DIGIT}|{_WRITTEN_GROUP}))+"
)
_SPOKEN_PART: Final = re.compile(r"(?i)(plus)\b|(?:(double|triple)[ \t-]+)?([a-z]+)|([0-9]+)")

# --- written digits ---------------------------------------------------------------------
# A span is maximal: digit groups (a group may be "(09)", and may follow a "+") joined by a
# space, a dash or a dot, or by a comma, colon or slash with no space (which makes the span a
# formatted quantity). A span is kept or replaced as a whole, never cut.
_DIGIT_GROUP: Final = r"(?:\+[ \u00a0]?)?(?:\([0-9]{1,5}\)|[0-9]++)"
_JOIN: Final = r"(?:[ \u00a0]|[ ]?[-‐–.][ ]?|[,:/]|(?<=\))|(?=[(+]))"
_SPAN: Final = re.compile(rf"(?=[+(0-9])(?>{_DIGIT_GROUP}(?:{_JOIN}{_DIGIT_GROUP})*)")
_FORMATTED: Final = re.compile(r"[0-9][,:/][0-9]|^[0-9]+\.[0-9]+$")
_CURRENCY_BEFORE: Final = re.compile(r"[$€£¥][ \u00a0]?$")
_UNIT_AFTER: Final = re.compile(r"(?i)[ \u00a0]*(?:%|per[ ]?cent\b|dollars?\b|bucks\b|cents?\b|nzd\b|usd\b|aud\b)")
_DIGITS: Final = re.compile(r"[0-9]+")
# No written phone number is longer; a longer span is a list or a long number ([NUMBER]),
# and the matcher's work stays proportional to the text.
_MAX_PHONE_CHARS: Final = 48


def redact(text: str, region: str) -> str:
    """``text`` with e-mail addresses, card, phone and other long numbers replaced by placeholders.

    ``region`` is the country assumed for phone numbers written without a country code
    (the service's ``DEFAULT_PHONE_REGION``, e.g. ``NZ``).
    """
    region = region.upper()
    if "@" in text:
        text = _WRITTEN_EMAIL.sub(Placeholder.EMAIL, text)
    if _DOMAIN_END.search(text):
        text = _SPOKEN_EMAIL.sub(Placeholder.EMAIL, text)
    text = _NHI.sub(_nhi, text)
    text = _SPOKEN_RUN.sub(_spoken(region), text)
    return _written_numbers(text, region)


def _nhi(match: re.Match[str]) -> str:
    values = [int(char) if char.isdigit() else _NHI_LETTERS.index(char) + 1 for char in match.group().upper()]
    weighted = sum(value * weight for value, weight in zip(values, range(7, 1, -1), strict=False))
    if match.group()[-1].isdigit():
        valid = weighted % 11 != 0 and (11 - weighted % 11) % 10 == values[-1]
    else:
        valid = 23 - weighted % 23 == values[-1]
    return Placeholder.NUMBER if valid else match.group()


def _spoken(region: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        digits: list[str] = []
        spoken = False
        for plus, repeat, word, written in _SPOKEN_PART.findall(match.group()):
            if plus:
                digits.append("+")
            elif written:
                digits.append(written)
            else:
                spoken = True
                digits.append(_DIGIT_WORDS[word.lower()] * _REPEAT.get(repeat.lower(), 1))
        number = "".join(digits)
        if not spoken or len(number.lstrip("+")) < MIN_DIGITS:
            return match.group()
        if _is_card(number):
            return Placeholder.CARD
        return Placeholder.PHONE if _is_phone(number, region) else Placeholder.NUMBER

    return replace


def _written_numbers(text: str, region: str) -> str:
    spans = [span for span in _SPAN.finditer(text) if _may_identify(span)]
    if not spans:
        return text
    cards = {index for index, span in enumerate(spans) if _is_card(span.group())}
    candidates = [
        "" if index in cards or len(span.group()) > _MAX_PHONE_CHARS else span.group()
        for index, span in enumerate(spans)
    ]
    phones = _spans_with_phones(candidates, region)
    pieces: list[str] = []
    position = 0
    for index, span in enumerate(spans):
        if index in cards:
            placeholder = Placeholder.CARD
        elif index in phones:
            placeholder = Placeholder.PHONE
        elif _is_date(_DIGITS.findall(span.group())):
            continue
        else:
            placeholder = Placeholder.NUMBER
        pieces += [text[position : span.start()], placeholder]
        position = span.end()
    return "".join(pieces) + text[position:]


def _may_identify(span: re.Match[str]) -> bool:
    """Long enough, and not a price, percentage, time, decimal or number with separators."""
    text, start = span.string, span.start()
    if sum(map(len, _DIGITS.findall(span.group()))) < MIN_DIGITS or _FORMATTED.search(span.group()):
        return False
    return not (_CURRENCY_BEFORE.search(text[max(0, start - 2) : start]) or _UNIT_AFTER.match(text, span.end()))


def _spans_with_phones(spans: list[str], region: str) -> set[int]:
    """Indexes of the spans in which ``PhoneNumberMatcher`` finds a number, in one pass."""
    starts: list[int] = []
    offset = 0
    for span in spans:
        starts.append(offset)
        offset += len(span) + 1
    joined = "\n".join(spans)
    matcher = phonenumbers.PhoneNumberMatcher(
        joined, region, leniency=phonenumbers.Leniency.VALID, max_tries=sys.maxsize
    )
    return {bisect.bisect_right(starts, match.start) - 1 for match in matcher}


def _is_card(number: str) -> bool:
    """13–19 digits (spaces, dashes, dots ignored), no "+" or "(", not starting with 0, Luhn-valid."""
    digits = "".join(_DIGITS.findall(number)) if "+" not in number and "(" not in number else ""
    if not (13 <= len(digits) <= 19 and digits[0] != "0"):
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _is_phone(number: str, region: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, region))
    except phonenumbers.NumberParseException:
        return False


def _is_date(groups: list[str]) -> bool:
    """Day, month and year groups in a plausible order, or a range of years ("2024-25")."""

    def year(group: str) -> bool:
        return len(group) == 4 and 1900 <= int(group) <= 2099

    def day(group: str) -> bool:
        return len(group) <= 2 and 1 <= int(group) <= 31

    def month(group: str) -> bool:
        return len(group) <= 2 and 1 <= int(group) <= 12

    match groups:
        case [first, second]:
            return (year(first) and (year(second) or len(second) == 2)) or (day(first) and year(second))
        case [first, second, third]:
            if year(first):
                return month(second) and day(third)
            dmy = (day(first) and month(second)) or (month(first) and day(second))
            return dmy and (year(third) or len(third) == 2)
    return False
