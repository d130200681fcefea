"""Phone numbers in operator listings: only their last digits."""

from __future__ import annotations

import pytest

from ingest.ops.masking import mask_phone


@pytest.mark.parametrize(
    ("number", "masked"),
    [("+64211234567", "•••4567"), ("0211234", "•••234"), ("123456", "•••456"), ("12345", "•••"), ("", ""), (None, "")],
)
def test_mask_phone_keeps_only_the_last_digits(number: str | None, masked: str) -> None:
    """Eight characters or more keep four, six or seven keep three, shorter ones keep none."""
    assert mask_phone(number) == masked
