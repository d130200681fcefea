"""Parsing a delivery: one depth bound, whichever parser reads the body."""

from __future__ import annotations

import pytest

from ingest.body import MAX_DEPTH, BodyError, parse_envelope, too_deep


def body(depth: int, extra: bytes = b"") -> bytes:
    inner = b"[" * (depth - 2) + b"]" * (depth - 2)
    return b'{"message":{"type":"x",' + extra + b'"deep":' + inner + b"}}"


@pytest.mark.parametrize("extra", [b"", b'"n":NaN,'], ids=["orjson", "fallback"])
def test_depth_bound_is_the_same_for_both_parsers(extra: bytes) -> None:
    """MAX_DEPTH levels are accepted and one more is a 400 too_deep, by orjson and by the fallback parser alike."""
    parse_envelope(body(MAX_DEPTH, extra))
    for depth in (MAX_DEPTH + 1, 300, 2000):
        with pytest.raises(BodyError) as refused:
            parse_envelope(body(depth, extra))
        assert (refused.value.status, refused.value.code) == (400, "too_deep")


def test_too_deep_counts_objects_and_arrays() -> None:
    """Objects and arrays each count one level; scalars none."""
    assert not too_deep({"a": [{"b": 1}]}, limit=3)
    assert too_deep({"a": [{"b": []}]}, limit=3)
    assert not too_deep("text", limit=0)
