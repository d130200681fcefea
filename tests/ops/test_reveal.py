"""ingest.ops.reveal: what is hidden unless revealed, and the reason a reveal is recorded with."""

from __future__ import annotations

import pytest

from ingest.ops.reveal import MAX_REASON, ReasonRefused, hidden_json, hidden_text, reveal_reason, sealed_label
from ingest.sealing import Keyring, Purpose, generate_key

CALL_ID = "44447e38-9fd3-4025-bc93-2132b1b437d0"


def test_hidden_text_redacts_then_masks() -> None:
    """Addresses, cards and spoken numbers become placeholders; times, prices and dates stay."""
    said = "Mail jo@example.org or call oh two one one two three four five six seven; card 4111 1111 1111 1111."
    assert hidden_text(said, "NZ") == "Mail [EMAIL] or call [PHONE]; card [CARD]."
    assert hidden_text("Booked for 2:15pm on 2026-03-12, $145.", "NZ") == "Booked for 2:15pm on 2026-03-12, $145."
    assert hidden_text("Call me: [PHONE]", "NZ") == "Call me: [PHONE]"  # redacted text comes out the same


def test_hidden_json_hides_every_string_but_ids() -> None:
    """Every string and key of a message is hidden; UUIDs, numbers and structure are kept."""
    message = {
        "call": {"id": CALL_ID, "customer": {"number": "+64211234567"}},
        "messages": [{"role": "user", "message": "it's jo@example.org", "time": 1773177243519}],
        "jo@example.org": True,
    }
    assert hidden_json(message, "NZ") == {
        "call": {"id": CALL_ID, "customer": {"number": "[PHONE]"}},
        "messages": [{"role": "user", "message": "it's [EMAIL]", "time": 1773177243519}],
        "•••@•••": True,
    }


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (None, "reason_required"),
        (" \t", "reason_required"),
        ("x" * (MAX_REASON + 1), "invalid_reason"),
        ("call back +64 21 123 4567", "invalid_reason"),
        ("call back 021 123 4567", "invalid_reason"),
        ("asked by jo@example.org", "invalid_reason"),
        ("card 4111 1111 1111 1111 disputed", "invalid_reason"),
    ],
)
def test_a_reason_is_refused_empty_long_or_personal(text: str | None, code: str) -> None:
    """A reason must say something, briefly, and hold no number, address or card: the log keeps it."""
    with pytest.raises(ReasonRefused) as refused:
        reveal_reason(text, "NZ")
    assert refused.value.code == code


def test_a_reason_may_name_tickets_and_dates() -> None:
    """Ticket and incident numbers, dates: what a reason is for; it is kept stripped."""
    for text in ("ticket INC-20261207: copy requested", "incident 987654321", "privacy request of 2026-03-12"):
        assert reveal_reason(f"  {text} ", "NZ") == text


def test_sealed_label_names_the_key_only() -> None:
    """A sealed value is named by its key id; a plain-text one says so; neither shows what it holds."""
    keyring = Keyring.parse(generate_key())
    sealed = keyring.seal_text("jo@example.org", Purpose.TRANSCRIPT)
    assert sealed_label(sealed) == f"sealed (key {keyring.current})"
    assert sealed_label(Keyring().seal_text("jo@example.org", Purpose.TRANSCRIPT)) == (
        "kept in plain text (INGEST_PLAINTEXT)"
    )
