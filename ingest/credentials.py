"""Comparing secrets: the one place this service decides whether a credential matches.

Both sides are hashed with SHA-256 first and the digests compared with
``hmac.compare_digest``, so the time taken reveals neither where two values differ nor how
long the expected one is. When several secrets are accepted (rotation), every one is
compared, so the time does not reveal which one matched either.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def _digest(value: bytes | str) -> bytes:
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return hashlib.sha256(data).digest()


def matches_any(received: bytes | str, accepted: Iterable[bytes | str]) -> bool:
    """Whether ``received`` equals one of ``accepted``, in constant time."""
    digest = _digest(received)
    matched = False
    for candidate in accepted:
        matched |= hmac.compare_digest(digest, _digest(candidate))
    return matched


def matches(received: bytes | str, expected: bytes | str) -> bool:
    """Whether ``received`` equals ``expected``, in constant time."""
    return matches_any(received, (expected,))
