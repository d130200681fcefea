"""HTTP/1.1 by hand over a socket, for what an ordinary client will not do: stop halfway
through the headers or the body, send nothing at all, or wait for an answer to a request
whose body it never sent."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


def connect(base: str, timeout: float = 5.0) -> socket.socket:
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(path: str, headers: Mapping[str, str], method: str = "POST") -> bytes:
    """A request line and headers, ending with the blank line."""
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float) -> RawResponse | None:
    """The answer on ``sock`` within ``timeout`` seconds; None if none came (the connection
    closed without one, or nothing arrived in time)."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        parsed = _parse(data)
        if parsed is not None:
            return parsed
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return _parse(data)
        data += chunk


def closed_within(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` seconds (anything it sends first is read)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def _parse(data: bytes) -> RawResponse | None:
    top, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if len(rest) < length:
        return None
    return RawResponse(int(status_line.split()[1]), headers, rest[:length])
