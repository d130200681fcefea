"""Phone numbers to E.164.

Vapi documents ``customer.number`` as E.164, but a BYO SIP trunk passes the caller id
through as the carrier sent it: national format (``095550123``), a ``sip:`` or ``tel:``
URI, or words such as ``anonymous``. The ``phonenumbers`` library (Google's
libphonenumber metadata) does the parsing and validation; the default region is a
parameter, not read from the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

import phonenumbers

__all__ = ["PhoneNumber", "normalise_number"]


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """``e164`` when the number is valid, and the ``raw`` text Vapi sent (kept for metadata)."""

    e164: str | None
    raw: str | None


_NONE: Final = PhoneNumber(e164=None, raw=None)

# "sip:+6495550123@trunk.example.net;transport=udp", "tel:+64-9-555-0123;ext=2", "sips:…"
_URI: Final = re.compile(r"(?i)^(?:sips?|tel):")


def normalise_number(raw: object, region: str = "NZ") -> PhoneNumber:
    """E.164 for a valid number in any common notation; ``e164=None`` (raw kept) otherwise.

    ``region`` is the country assumed for numbers written without a country code, so with
    ``NZ`` ``095550123`` becomes ``+6495550123``. None, an empty string, or a value that is
    not text gives both fields None. An integer is read as its digits (a JSON number).
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return _NONE
    text = str(raw).strip()
    if not text:
        return _NONE
    candidate = _uri_user(text) if _URI.match(text) else text
    try:
        parsed = phonenumbers.parse(candidate, region.upper())
    except phonenumbers.NumberParseException:
        return PhoneNumber(e164=None, raw=text)
    # Valid, not just possible: the digit count and prefix must exist in the country's plan.
    if not phonenumbers.is_valid_number(parsed):
        return PhoneNumber(e164=None, raw=text)
    return PhoneNumber(e164=phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), raw=text)


def _uri_user(uri: str) -> str:
    """The number part of a sip:/sips:/tel: URI: before any ``@`` host and ``;`` parameters."""
    rest = uri.split(":", 1)[1]
    user = rest.split("@", 1)[0].split(";", 1)[0]
    return unquote(user)  # "%2B64…" is a percent-encoded "+"
