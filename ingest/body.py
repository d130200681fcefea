"""Reading a delivery: bounded, decompressed within the bound, parsed, made storable.

Each problem raises ``BodyError`` carrying the HTTP status and a code for the JSON error
body and the log line. Anything that parses as JSON with a ``message.type`` is accepted.
Text Postgres cannot store (U+0000, lone surrogates) becomes U+FFFD before it is stored.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

MAX_DEPTH_ERROR = (RecursionError, ValueError)


class BodyError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def too_large(limit: int) -> BodyError:
    return BodyError(413, "body_too_large", f"body exceeds the limit of {limit} bytes")


async def read_bounded(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it is known to exceed ``limit``."""
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BodyError(400, "bad_content_length", "Content-Length is not a number") from None
        if length > limit:
            raise too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def decode_content(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip or deflate), never producing more than ``limit`` bytes."""
    name = (encoding or "identity").strip().lower()
    if name in {"", "identity"}:
        return raw
    if name not in {"gzip", "x-gzip", "deflate"}:
        raise BodyError(415, "unsupported_encoding", f"Content-Encoding {name!r} is not supported (gzip, deflate)")
    wbits = 16 + zlib.MAX_WBITS if name != "deflate" else zlib.MAX_WBITS
    decoder = zlib.decompressobj(wbits)
    try:
        body = decoder.decompress(raw, limit + 1)
    except zlib.error:
        raise BodyError(400, "bad_encoding", f"body is not valid {name} data") from None
    if len(body) > limit or decoder.unconsumed_tail:
        raise too_large(limit)
    if not decoder.eof:
        raise BodyError(400, "bad_encoding", f"{name} body is truncated")
    return body


def _clean_text(text: str) -> str:
    # Postgres text and jsonb cannot hold U+0000, and a lone surrogate cannot be encoded as
    # UTF-8: both become U+FFFD, the replacement character, so the rest of the text is kept.
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def clean(value: Any) -> Any:
    """``value`` with every string (keys included) made storable."""
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, dict):
        return {_clean_text(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


_INT64 = range(-(2**63), 2**64)  # the integers orjson keeps as integers


def _int_as_orjson_reads_it(text: str) -> int | float:
    # orjson reads an integer beyond 64 bits as a float; the fallback parser must agree, or
    # re-encoding what it read would fail (orjson cannot encode such an int).
    value = int(text)
    return value if value in _INT64 else float(value)


def _loads(body: bytes) -> tuple[Any, bool]:
    """Parse JSON; the flag says whether the value had to be cleaned (and so re-encoded)."""
    try:
        return orjson.loads(body), False
    except orjson.JSONDecodeError:
        pass
    # orjson refuses lone surrogate escapes, NaN and very deep nesting; the standard library
    # takes all but the last. What it accepts is cleaned and re-encoded below.
    try:
        return clean(json.loads(body, parse_int=_int_as_orjson_reads_it)), True
    except (*MAX_DEPTH_ERROR, UnicodeDecodeError):
        raise BodyError(400, "invalid_json", "body is not valid JSON") from None


def loads_storable(data: bytes) -> Any:
    """``data`` parsed, with U+0000 made storable.

    The endpoint leaves ``\\u0000`` escapes in the queued body (scanning every large body
    for them costs the request path more than it saves); whoever writes a body to Postgres
    parses it with this instead of ``orjson.loads``.
    """
    value = orjson.loads(data)
    return clean(value) if b"\\u0000" in data else value


def parse_envelope(body: bytes) -> tuple[dict[str, Any], bytes]:
    """The ``message`` object and the body bytes to queue (re-encoded only when cleaned)."""
    if not body.strip():
        raise BodyError(400, "empty_body", "body is empty")
    value, cleaned = _loads(body)
    if cleaned:
        body = orjson.dumps(value)
    if not isinstance(value, dict) or not isinstance(value.get("message"), dict):
        raise BodyError(400, "missing_message", 'body must be a JSON object with a "message" object')
    message: dict[str, Any] = value["message"]
    kind = message.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise BodyError(400, "missing_type", 'body has no "message.type" string')
    return message, body
