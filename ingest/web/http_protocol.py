"""uvicorn's httptools protocol with a bound on request headers: their size and how long they take.

uvicorn has neither for httptools (its ``h11_max_incomplete_event_size`` bounds headers only
under h11, a pure-Python parser that costs the endpoint a large share of its throughput) and
no header-read timeout under either: a connection that never finishes its headers is held
until the client closes it. This subclass adds both, passed to uvicorn as its ``http`` class
by ``ingest web``:

- ``MAX_HEADER_BYTES``: a request whose headers are still incomplete after that many bytes
  is answered 431 and the connection closed (bytes are counted per received chunk while
  headers are incomplete, so a chunk that also starts the body may count a little extra).
- ``HEADER_TIMEOUT_SECONDS``: counted from the connection's start for its first request, and
  from a later request's first byte; a connection that sent nothing is closed silently, one
  that started a request gets a 408 first. Between requests uvicorn's own keep-alive timeout
  applies; the body's own deadline is the endpoint's (``BODY_TIMEOUT_SECONDS``).

The limits are read from the environment once per process, as the app itself is.
"""

from __future__ import annotations

import asyncio
import functools

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ingest.settings import Settings
from ingest.web.errors import error_body

__all__ = ["GuardedHttpToolsProtocol"]


@functools.cache
def _limits() -> tuple[int, float]:
    settings = Settings.from_env()
    return settings.max_header_bytes, settings.header_timeout


def _raw_response(status: str, code: str, detail: str) -> bytes:
    body = error_body(code, detail)
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


TOO_LARGE = _raw_response("431 Request Header Fields Too Large", "headers_too_large", "request headers are too large")
TIMED_OUT = _raw_response("408 Request Timeout", "header_timeout", "request headers took too long")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` refusing headers that are too large or too slow."""

    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0
    _request_started = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > _limits()[0]:
                self._refuse(TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_started = True
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._request_started = False
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(_limits()[1], self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._request_started:
            self._refuse(TIMED_OUT)
        else:
            self.transport.close()  # never sent a byte of a request: nothing to answer

    def _refuse(self, response: bytes) -> None:
        self._cancel_header_timer()
        self.transport.write(response)
        self.transport.close()
