"""One Redis connection for the request path: commands pipelined, replies parsed by hiredis.

The endpoint writes one small transaction per event-loop turn. A general-purpose client
spends Python on every call (connection pool checkout, command packing, reply reading as a
coroutine); here a command is packed into a few byte strings handed to the transport, every
command written in one event-loop turn leaves in one ``writelines``, and replies are matched
to their commands in order by the protocol's ``data_received``. What that saves, measured:
bench/README.md ("Figures measured outside the benchmarks").

URLs are read by redis-py's own ``parse_url``: ``redis://``, ``rediss://`` (TLS) and
``unix://``, with user, password and database number.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url


class RedisPipeError(Exception):
    """The connection failed or closed, or Redis answered with an error."""


class ReplyError(RedisPipeError):
    """Redis answered the command with an error reply (``WRONGTYPE ...``, ``EXECABORT ...``)."""


Arg = bytes | tuple[bytes, ...]  # a tuple is one argument given in pieces, sent without joining them


def pack(args: Sequence[Arg]) -> list[bytes]:
    """A command in Redis's protocol, as pieces for ``writelines`` (no copy of large arguments)."""
    pieces = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            pieces += (b"$%d\r\n" % len(arg), arg, b"\r\n")
        else:
            pieces.append(b"$%d\r\n" % sum(map(len, arg)))
            pieces += arg
            pieces.append(b"\r\n")
    return pieces


def _error_in(reply: Any) -> hiredis.ReplyError | None:
    if isinstance(reply, hiredis.ReplyError):
        return reply
    if isinstance(reply, list):  # EXEC: one reply per queued command
        return next((item for item in reply if isinstance(item, hiredis.ReplyError)), None)
    return None


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        # One entry per call: its future and how many replies are still to come; the call's
        # result is its last reply (EXEC's, for a transaction).
        self.waiting: collections.deque[list[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def call(self, *commands: Sequence[Arg]) -> asyncio.Future[Any]:
        """Send ``commands`` back to back; the future gets the last one's reply."""
        if self.closed or self.transport is None:
            raise RedisPipeError("connection closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append([future, len(commands)])
        if not self._out:
            loop.call_soon(self._flush)
        for command in commands:
            self._out += pack(command)
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and not self.closed and self.transport is not None:
            self.transport.writelines(out)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                entry = self.waiting[0]
                entry[1] -= 1
                if entry[1]:
                    continue
                self.waiting.popleft()
                future: asyncio.Future[Any] = entry[0]
                if future.done():  # its sender gave up (timeout); the reply is dropped
                    continue
                if (error := _error_in(reply)) is not None:
                    future.set_exception(ReplyError(str(error)))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # a stream we cannot follow: start again
            self._fail(RedisPipeError(f"unreadable reply stream: {exc}"))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisPipeError(f"connection lost: {exc}" if exc else "connection closed"))

    def _fail(self, error: RedisPipeError) -> None:
        self.closed = True
        self._out = []
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(error)


def _keepalive(protocol: _Protocol) -> None:
    """TCP keepalive probes after 30 s of silence, so a vanished peer is noticed."""
    sock = protocol.transport.get_extra_info("socket") if protocol.transport is not None else None
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class RedisPipe:
    """A lazily (re)connected, pipelined Redis connection; ``call`` returns the decoded reply."""

    def __init__(self, url: str, *, connect_timeout: float) -> None:
        options = parse_url(url)  # type: ignore[no-untyped-call]
        self.connect_timeout = connect_timeout
        self._host = str(options.get("host") or "localhost")
        self._port = int(options.get("port") or 6379)
        self._path: str | None = options.get("path")
        if options.get("connection_class") is UnixDomainSocketConnection and not self._path:
            raise ValueError("unix:// Redis URL without a socket path")
        self._ssl: ssl.SSLContext | None = None
        if options.get("connection_class") is SSLConnection:
            self._ssl = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
            if str(options.get("ssl_cert_reqs", "required")).lower() in {"none", "optional"}:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._setup: list[list[bytes]] = []
        if options.get("password") is not None:
            credentials = [str(options.get("username") or "default"), str(options["password"])]
            self._setup.append([b"AUTH", *(part.encode() for part in credentials)])
        if options.get("db"):
            self._setup.append([b"SELECT", str(options["db"]).encode()])
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def call(self, *args: Arg) -> Any:
        """The reply to one command; an error reply raises ``ReplyError``."""
        return await self.send(args)

    async def send(self, *commands: Sequence[Arg]) -> Any:
        """Send ``commands`` back to back and return the last one's reply."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        return await protocol.call(*commands)

    def send_soon(self, *commands: Sequence[Arg]) -> asyncio.Future[Any]:
        """``send`` as a future, without creating a task when the connection is up."""
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol.call(*commands)
        return asyncio.ensure_future(self.send(*commands))

    def transaction(self, *commands: Sequence[Arg]) -> asyncio.Future[Any]:
        """``commands`` inside MULTI/EXEC, as a future of EXEC's reply (a list, one reply per command).

        The future fails with ``ReplyError`` if any command failed, queued or executed.
        """
        return self.send_soon((b"MULTI",), *commands, (b"EXEC",))

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and not self._protocol.closed:
                return self._protocol
            loop = asyncio.get_running_loop()
            protocol: _Protocol | None = None
            try:
                async with asyncio.timeout(self.connect_timeout):
                    if self._path:
                        _, protocol = await loop.create_unix_connection(_Protocol, self._path)
                    else:
                        _, protocol = await loop.create_connection(_Protocol, self._host, self._port, ssl=self._ssl)
                    for command in self._setup:
                        await protocol.call(command)
            except (OSError, TimeoutError, RedisPipeError) as exc:
                if protocol is not None and protocol.transport is not None:
                    protocol.transport.abort()
                raise RedisPipeError(f"cannot connect to Redis: {type(exc).__name__}: {exc}") from exc
            if not self._path:
                _keepalive(protocol)
            self._protocol = protocol
            return protocol

    def drop(self) -> None:
        """Abandon the connection (commands waiting on it fail); the next call connects again.

        For a Redis that stopped answering: a half-open TCP connection would otherwise take
        every later command with it until the kernel gives up, many minutes later.
        """
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None and not protocol.closed:
            protocol.transport.abort()

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None and not protocol.closed:
            protocol.transport.close()
