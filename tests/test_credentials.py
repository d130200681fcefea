"""ingest.credentials: secrets compared in constant time, bytes or text, one or several accepted."""

from __future__ import annotations

from ingest.credentials import matches, matches_any


def test_equal_secrets_match_as_bytes_or_text() -> None:
    """Text and its UTF-8 bytes are the same secret; anything else is not."""
    assert matches("s3cret-ā", "s3cret-ā".encode())
    assert not matches("s3cret", "s3cret ")
    assert not matches("", "s3cret")


def test_any_of_several_secrets_matches() -> None:
    """During a rotation either secret is accepted; none of them is a miss, and so is an empty list."""
    assert matches_any(b"new", [b"old", b"new"])
    assert not matches_any(b"other", [b"old", b"new"])
    assert not matches_any(b"new", [])
