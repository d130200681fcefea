"""Dramatiq messages as JSON through orjson: the endpoint writes them, the worker reads them."""

from __future__ import annotations

from typing import Any

import orjson
from dramatiq.encoder import Encoder
from dramatiq.errors import DecodeError

from ingest.body import loads_storable


class OrjsonEncoder(Encoder):
    def encode(self, data: dict[str, Any]) -> bytes:
        return orjson.dumps(data)

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            decoded: dict[str, Any] = loads_storable(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"failed to decode message {data[:200]!r}", data, exc) from None  # type: ignore[no-untyped-call]
        return decoded
