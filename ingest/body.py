"""Reading a delivery: bounded, decompressed within the bound, parsed, made storable.

Each problem raises ``BodyError`` carrying the HTTP status and a code for the JSON error
body and the log line. Anything that parses as JSON with a ``message.type``, nested at most
``MAX_DEPTH`` levels deep, is accepted.
Text Postgres cannot store (U+0000, lone surrogates) becomes U+FFFD before it is stored.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

# How deeply a body's JSON may nest (objects and arrays; the body itself is level 1): as deep
# as orjson writes JSON back, since the worker re-encodes every body it stores. orjson reads
# deeper and the standard library's parser up to ~1,000 levels, so without this bound the
# endpoint would accept bodies the worker cannot store. Vapi's deepest payloads nest about a
# dozen levels. On the common path the check is orjson re-encoding the value (about half the
# cost of walking it in Python); the rare fallback path walks it, since its values may not be
# encodable before they are cleaned.
MAX_DEPTH = 254


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
    """Undo ``Content-Encoding`` (gzip or deflate), strictly (one complete stream, nothing after
    it), never producing more than ``limit`` bytes."""
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
    if decoder.unused_data:
        # Bytes after the end: garbage, or a second gzip member that would otherwise be dropped.
        raise BodyError(400, "bad_encoding", f"{name} body has data after its end")
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


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` levels deep.

    Level by level over containers only, with exact type checks: the cheapest walk in Python.
    """
    level = [value] if type(value) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        inner = []
        for container in level:
            for item in container.values() if type(container) is dict else container:
                if type(item) is dict or type(item) is list:
                    inner.append(item)
        level = inner
    return False


def _too_deep_error() -> BodyError:
    return BodyError(400, "too_deep", f"body nests deeper than {MAX_DEPTH} levels")


def _loads(body: bytes) -> tuple[Any, bool]:
    """Parse JSON; the flag says whether the value had to be cleaned (and so re-encoded)."""
    try:
        return orjson.loads(body), False
    except orjson.JSONDecodeError:
        pass
    # orjson refuses lone surrogate escapes, NaN and nesting beyond 1,024 levels; the standard
    # library takes the first two. What it accepts is cleaned and re-encoded below.
    try:
        value = json.loads(body, parse_int=_int_as_orjson_reads_it)
    except RecursionError:
        raise _too_deep_error() from None
    except (ValueError, UnicodeDecodeError):
        raise BodyError(400, "invalid_json", "body is not valid JSON") from None
    if too_deep(value):  # before cleaning, which recurses
        raise _too_deep_error()
    return clean(value), True


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
        body = orjson.dumps(value)  # _loads walked it: within MAX_DEPTH
    else:
        try:
            orjson.dumps(value)  # refuses more than MAX_DEPTH levels; nothing else can fail here
        except orjson.JSONEncodeError:
            raise _too_deep_error() from None
    if not isinstance(value, dict) or not isinstance(value.get("message"), dict):
        raise BodyError(400, "missing_message", 'body must be a JSON object with a "message" object')
    message: dict[str, Any] = value["message"]
    kind = message.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise BodyError(400, "missing_type", 'body has no "message.type" string')
    return message, body
