"""The booking call with personal data said in it, for what is hidden unless revealed."""

from __future__ import annotations

import os

EMAIL = "hemi.walker@example.co.nz"
CARD = "4111 1111 1111 1111"  # Luhn-valid
CUSTOMER = "+64211234567"  # inbound_booking's caller, as customer_number holds it
REASON = "ticket OPS-4821: the customer asked what was said"


def with_personal_data(raw: bytes) -> bytes:
    """A body of inbound_booking with an e-mail address and a card number said, and the address in the summary."""
    said = f"Sure, it's Hemi Walker. My email is {EMAIL} and my card is {CARD}.".encode()
    summary = f"Hemi Walker ({EMAIL}) called to book".encode()
    return raw.replace(b"Sure, it's Hemi Walker.", said).replace(b"Hemi Walker called to book", summary)


def sealing_key() -> str:
    """The id of the key the suite seals with (tests/conftest.py)."""
    return os.environ["INGEST_ENCRYPTION_KEYS"].split(":", 1)[0]
