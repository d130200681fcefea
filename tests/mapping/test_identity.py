"""Identities: a UUID in any spelling Python's ``uuid`` reads comes out canonical, anything else as None."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from ingest.mapping.identity import as_uuid


def reference(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


@given(st.uuids())
def test_every_spelling_of_a_uuid_is_canonical(value: uuid.UUID) -> None:
    canonical = str(value)
    for spelling in (
        canonical,
        canonical.upper(),
        f"{{{canonical}}}",
        value.hex,
        f"urn:uuid:{canonical}",
        f" {canonical}\n",
    ):
        assert as_uuid(spelling) == canonical


@given(st.one_of(st.text(max_size=50), st.uuids().map(lambda u: str(u)[:-1] + "g"), st.integers(), st.none()))
def test_as_uuid_agrees_with_python_uuid(value: object) -> None:
    assert as_uuid(value) == reference(value)
