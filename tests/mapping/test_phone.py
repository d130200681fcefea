"""ingest.mapping.phone: caller ids to E.164, the raw text kept when invalid."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from support.fixtures import all_calls, load_call, parse_body

from ingest.mapping.phone import PhoneNumber, normalise_number


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("095550123", "+6495550123"),
        ("09 555 0123", "+6495550123"),
        ("(09) 555-0123", "+6495550123"),
        ("+64 9 555 0123", "+6495550123"),
        ("006495550123", "+6495550123"),
        ("021 448 9031", "+64214489031"),
        ("+6495550123", "+6495550123"),
        ("sip:+6495550123@trunk.example.net", "+6495550123"),
        ("sip:095550123@10.0.0.5:5060;transport=udp", "+6495550123"),
        ("SIPS:%2B6495550123@trunk.example.net", "+6495550123"),
        ("tel:+64-9-555-0123", "+6495550123"),
        ("tel:+6495550123;ext=12", "+6495550123"),
        ("+15199815710", "+15199815710"),
        (6495550123, "+6495550123"),  # a JSON number loses its "+"; libphonenumber sees the 64
    ],
)
def test_normalise_number_gives_e164(raw: object, e164: str | None) -> None:
    """National, international, spaced, IDD-prefixed and SIP/tel URI forms all give the same E.164."""
    assert normalise_number(raw).e164 == e164


def test_normalise_number_keeps_the_raw_text() -> None:
    """The text as sent (trimmed) is kept beside the E.164 form, for metadata."""
    assert normalise_number(" 095550123 ") == PhoneNumber(e164="+6495550123", raw="095550123")


@pytest.mark.parametrize(
    "raw",
    ["anonymous", "sip:alice@example.com", "12", "+6412", "+64 22 775 301", "+999123456789", "not a number", "+" * 300],
)
def test_invalid_numbers_keep_raw_only(raw: str) -> None:
    """Unparseable or invalid numbers give e164=None and keep the original string."""
    assert normalise_number(raw) == PhoneNumber(e164=None, raw=raw.strip())


@pytest.mark.parametrize("raw", [None, "", "   ", True, 3.5, [], {"number": "+6495550123"}])
def test_missing_numbers_give_nothing(raw: object) -> None:
    """None, empty text and values that are not text give both fields None."""
    assert normalise_number(raw) == PhoneNumber(e164=None, raw=None)


def test_region_is_a_parameter() -> None:
    """The default region only applies to numbers without a country code."""
    assert normalise_number("(519) 981-5710", region="CA").e164 == "+15199815710"
    assert normalise_number("(519) 981-5710").e164 is None
    assert normalise_number("+6495550123", region="US").e164 == "+6495550123"
    assert normalise_number("095550123", region="nz").e164 == "+6495550123"


def test_phone_number_is_frozen() -> None:
    """The result is an immutable value."""
    number = normalise_number("095550123")
    with pytest.raises(dataclasses.FrozenInstanceError):
        number.e164 = "+1"  # type: ignore[misc]


def customer_numbers(call: str) -> set[str]:
    numbers = set()
    for raw in load_call(call):
        message: dict[str, Any] = parse_body(raw)["message"]
        for holder in (message.get("customer"), (message.get("call") or {}).get("customer")):
            if isinstance(holder, dict) and holder.get("number"):
                numbers.add(holder["number"])
    return numbers


def test_transferred_call_caller_id_becomes_e164() -> None:
    """The transferred call's BYO SIP caller id arrives as 095550123 and normalises to +6495550123."""
    assert customer_numbers("transferred") == {"095550123"}
    assert normalise_number("095550123") == PhoneNumber(e164="+6495550123", raw="095550123")


def test_every_recorded_number_is_e164_or_kept_raw() -> None:
    """Every customer and business number in the fixtures is valid E.164, except dst_spring's short 022 number."""
    invalid = set()
    for path in all_calls():
        numbers = customer_numbers(path.stem)
        for raw in load_call(path.stem):
            phone = parse_body(raw)["message"].get("phoneNumber")
            if isinstance(phone, dict) and phone.get("number"):
                numbers.add(phone["number"])
        for number in numbers:
            result = normalise_number(number)
            if result.e164 is None:
                invalid.add(number)
            else:
                assert result.e164 == number or number == "095550123"
    # 022 mobile numbers have seven digits after the prefix; this one has six.
    assert invalid == {"+6422775301"}
