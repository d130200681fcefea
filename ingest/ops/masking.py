"""What operator listings and pages may show of personal data: numbers and addresses masked.

A number column shows its last four digits (``mask_phone``). Free text and JSON (errors,
transcripts, summaries, analysis, metadata) can hold numbers and addresses anywhere, so
``mask_text`` finds them: ``phonenumbers``' matcher for numbers written the way people
write them in ``DEFAULT_PHONE_REGION``, plus anything that starts with ``+`` followed by
enough digits to be an international number (a transfer destination, a SIP user part),
which the matcher leaves alone when the number is not a valid one. ``mask_json`` masks
every key and string of a JSON value before it is shown. Used by the CLI and the ops page.
"""

from __future__ import annotations

import re
from typing import Any

import phonenumbers

MASK = "•••"


def mask_phone(value: str | None) -> str:
    """``+64211234567`` → ``•••4567``: the last four characters (three of a short value)."""
    if not value:
        return ""
    keep = 4 if len(value) >= 8 else 3 if len(value) >= 6 else 0
    return MASK + value[-keep:] if keep else MASK


_E164ISH = re.compile(r"\+\d[\d ().-]{5,18}\d")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def _mask_numbers(text: str, region: str) -> str:
    spans = [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, region)]
    spans += [m.span() for m in _E164ISH.finditer(text)]
    if not spans:
        return text
    pieces, position = [], 0
    for start, end in sorted(spans):
        if end <= position:
            continue
        start = max(start, position)
        digits = re.sub(r"\D", "", text[start:end])
        pieces += [text[position:start], mask_phone(digits)]
        position = end
    return "".join(pieces) + text[position:]


def mask_text(text: str, region: str) -> str:
    """``text`` with every e-mail address (``•••@•••``) and phone number (``•••4567``) masked."""
    return _mask_numbers(_EMAIL.sub(f"{MASK}@{MASK}", text), region)


def mask_json(value: Any, region: str) -> Any:
    """A JSON value with every key and string passed through ``mask_text``."""
    if isinstance(value, str):
        return mask_text(value, region)
    if isinstance(value, dict):
        return {mask_text(str(key), region): mask_json(item, region) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_json(item, region) for item in value]
    return value
