"""``POST /webhooks/vapi``: verify, bound, parse, answer, queue — and one log line.

Order matters: what the headers alone decide comes first (a shared secret or bearer token,
a missing credential: 401; a content type other than JSON: 415), before a byte of the body is
read. A body signed with HMAC can only be verified once read, so at most
``MAX_UNVERIFIED_BODIES`` of those are read at a time (503 past it). The body is read within
its bound and ``BODY_TIMEOUT_SECONDS`` (413, 408), authenticated on the exact bytes received,
then decoded and parsed, off the event loop when it is large. A request that fails
authentication counts against its client address (``ingest.web.client_address``) in
``INGEST_WEBHOOK_AUTH_FAILURE_LIMIT``; once the address is past it, its failures get a 429
with ``Retry-After`` instead of the 401, while its authenticated deliveries are still taken
(Vapi does not send a delivery again: shedding one loses it). The limit is only looked up
for a request that failed, so accepted deliveries never wait on it. An answer given before the
body was read closes the connection. Every problem is a precise 4xx with a JSON body
(``ingest.web.errors``); only when neither Redis nor Postgres can keep the delivery is it a
503. Every answer is counted (``ingest.metrics.counters``) where it is logged. The limits:
docs/security.md, "Limits and timeouts".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from ingest import body
from ingest.mapping.identity import call_id
from ingest.metrics import counters
from ingest.settings import DEFAULT_WEBHOOK_AUTH_FAILURE_LIMIT
from ingest.vocabulary import INTERNAL_TYPES, REQUEST_TYPES, DeliveryOutcome, MessageType
from ingest.web import answers, blocking
from ingest.web.answers import AnswerSettings
from ingest.web.auth import AuthResult, needs_body, verify
from ingest.web.auth_settings import AuthSettings
from ingest.web.blocking import CallerBlock
from ingest.web.client_address import TrustedProxies, of_request
from ingest.web.errors import UNAUTHORIZED, UNAUTHORIZED_DETAIL, error_response
from ingest.web.failure_limit import FailureLimit, parse_limit
from ingest.web.intake import Intake, Unavailable
from ingest.web.replays import ReplayMemory

log = logging.getLogger("ingest.web.webhook")

ACK = b'{"ok":true}'
CLOSE = {"connection": "close"}  # for answers given before the body was read
# Bodies above this size are decoded and parsed on a thread: a 15 MB body takes the parser
# seconds at worst, during which the event loop would answer nobody. Below it, the hop to
# a thread would cost more than the parse (bench/README.md: the bodies measured are 20 and 200 KB).
OFF_LOOP_BYTES = 256 * 1024
RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class Webhook:
    auth: AuthSettings
    answers: AnswerSettings
    intake: Intake
    max_body_bytes: int
    body_timeout: float
    unverified: asyncio.Semaphore  # signed bodies being read before their signature is checked
    parser: Executor  # where large bodies are decoded and parsed
    replays: ReplayMemory = field(default_factory=lambda: ReplayMemory(None, "", 1))  # ingest.web.replays
    # Requests that failed authentication, per client address (read through ``proxies``).
    failures: FailureLimit = field(default_factory=lambda: _in_memory_failures())
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    # Flagged callers refused (BLOCK_FLAGGED_CALLERS, ingest.web.blocking); None when blocking is off.
    block: CallerBlock | None = None


def _in_memory_failures() -> FailureLimit:
    """The default failure limit: counted in this process (the app passes one counted in Redis)."""
    return FailureLimit(None, "", "webhook-auth", parse_limit("", DEFAULT_WEBHOOK_AUTH_FAILURE_LIMIT))


def json_response(status: int, content: bytes | dict[str, Any]) -> Response:
    data = content if isinstance(content, bytes) else orjson.dumps(content)
    return Response(data, status_code=status, media_type="application/json")


def _log(outcome: DeliveryOutcome, started: float, size: int, **fields: Any) -> None:
    """Count the delivery, and log it."""
    elapsed = time.perf_counter() - started
    counters.delivery(fields.get("type"), outcome, elapsed)
    level = logging.INFO if outcome in {DeliveryOutcome.QUEUED, DeliveryOutcome.STORED} else logging.WARNING
    if not log.isEnabledFor(level):
        return
    latency_ms = round(elapsed * 1000, 3)
    log.log(level, "delivery", extra={"outcome": outcome, "bytes": size, "latency_ms": latency_ms, **fields})


async def _refuse(request: Request, auth: AuthResult, started: float, size: int, *, close: bool) -> Response:
    """A request that failed authentication: a 401 counted against its address, or a 429 past the limit."""
    hook: Webhook = request.app.state.webhook
    address = of_request(request, hook.proxies)
    headers = CLOSE if close else {}
    wait = await hook.failures.retry_after(address)
    if wait is not None:
        counters.webhook_auth_failure(RATE_LIMITED)
        _log(DeliveryOutcome.RATE_LIMITED, started, size, address=address, retry_after=wait, **auth.log_fields())
        detail = f"too many failed authentications from this address; try again in {wait}s"
        return error_response(429, "too_many_failures", detail, headers={**headers, "retry-after": str(wait)})
    await hook.failures.failed(address)
    counters.webhook_auth_failure(str(auth.reason))
    _log(DeliveryOutcome.UNAUTHORIZED, started, size, address=address, **auth.log_fields())
    return error_response(401, UNAUTHORIZED, UNAUTHORIZED_DETAIL, reason=auth.reason, headers=headers)


def is_json(content_type: str | None) -> bool:
    """``application/json``, with or without parameters: what Vapi sends, and what a web page
    cannot post across origins without a CORS preflight (a form, ``text/plain`` or no type can)."""
    return (content_type or "").partition(";")[0].strip().lower() == "application/json"


@contextlib.asynccontextmanager
async def _slot(hook: Webhook, signed: bool) -> AsyncIterator[bool]:
    """A place among the unverified bodies being read (only needed when ``signed``); False when full."""
    if not signed:
        yield True
    elif hook.unverified.locked():
        yield False
    else:
        async with hook.unverified:
            yield True


def _decode_and_parse(raw: bytes, encoding: str | None, limit: int) -> tuple[dict[str, Any], bytes]:
    return body.parse_envelope(body.decode_content(raw, encoding, limit))


async def receive(request: Request) -> Response:
    started = time.perf_counter()
    now = time.time()
    hook: Webhook = request.app.state.webhook
    headers = request.headers
    size = 0
    signed = needs_body(hook.auth, headers)
    if not signed:  # the headers alone decide
        auth = verify(hook.auth, headers, b"", now=now)
        if not auth.ok:
            return await _refuse(request, auth, started, size, close=True)
    if not is_json(headers.get("content-type")):
        _log(DeliveryOutcome.INVALID, started, size, reason="unsupported_media_type")
        detail = "Content-Type must be application/json"
        return error_response(415, "unsupported_media_type", detail, headers=CLOSE)
    try:
        async with _slot(hook, signed) as admitted:
            if not admitted:
                _log(DeliveryOutcome.BUSY, started, size)
                detail = "too many signed deliveries are being read; send it again"
                return error_response(503, "busy", detail, headers={**CLOSE, "retry-after": "1"})
            async with asyncio.timeout(hook.body_timeout):
                raw = await body.read_bounded(request.stream(), headers.get("content-length"), hook.max_body_bytes)
        size = len(raw)
        if signed:
            auth = verify(hook.auth, headers, raw, now=now)
            if not auth.ok:
                return await _refuse(request, auth, started, size, close=False)
        encoding, limit = headers.get("content-encoding"), hook.max_body_bytes
        if size > OFF_LOOP_BYTES:
            loop = asyncio.get_running_loop()
            message, queued_body = await loop.run_in_executor(hook.parser, _decode_and_parse, raw, encoding, limit)
        else:
            message, queued_body = _decode_and_parse(raw, encoding, limit)
    except TimeoutError:
        _log(DeliveryOutcome.TIMED_OUT, started, size)
        detail = f"the body did not arrive within {hook.body_timeout:g}s"
        return error_response(408, "body_timeout", detail, headers=CLOSE)
    except body.BodyError as exc:
        _log(
            DeliveryOutcome.TOO_LARGE if exc.status == 413 else DeliveryOutcome.INVALID, started, size, reason=exc.code
        )
        return error_response(exc.status, exc.code, exc.detail, headers=CLOSE if exc.status == 413 else None)

    kind = str(message["type"])
    if kind in INTERNAL_TYPES:
        _log(DeliveryOutcome.INVALID, started, size, reason="internal_type")
        detail = f"{kind!r} is recorded by the service itself (ingest reconcile), never delivered"
        return error_response(400, "internal_type", detail)
    call = call_id(message)
    # Replay memory (ingest.web.replays): a signed delivery seen within its window runs nothing
    # again; a request Vapi waits on gets the first answer back.
    claim = await hook.replays.claim(auth.signature, kind, call)
    if claim.answer is not None:
        return claim.answer
    flagged = None
    if hook.block is not None and kind == MessageType.ASSISTANT_REQUEST:
        flagged = await hook.block.anomaly(message)
    if flagged is not None:
        reply: dict[str, Any] | None = {"error": hook.answers.assistant_request_error}
        blocking.refused(flagged, call)
    else:
        reply = await answers.answer(hook.answers, message) if kind in REQUEST_TYPES else None
    await claim.keep(reply)
    if reply is not None and kind == MessageType.ASSISTANT_REQUEST:
        queued_body = answers.with_answer_recorded(queued_body, reply)
    # Nothing parsed is kept across the wait for Redis: a large report's object tree
    # would otherwise stay alive for every garbage collection in the meantime.
    del message, raw
    try:
        outcome = await hook.intake.accept(queued_body, int(now * 1000))
    except Unavailable:
        if reply is not None:
            # A live call is waiting on this answer: give it, even though the event is not kept.
            _log(DeliveryOutcome.ANSWERED_NOT_RECORDED, started, size, type=kind, call_id=call)
            return json_response(200, reply)
        _log(DeliveryOutcome.UNAVAILABLE, started, size, type=kind, call_id=call)
        await claim.release()  # not kept: sending it again is no replay
        return error_response(503, "unavailable", "neither the queue nor the database took it; send it again")
    _log(outcome, started, size, type=kind, call_id=call)
    response = json_response(200, reply if reply is not None else ACK)
    if flagged is not None:  # audited once the answer is on its way
        response.background = BackgroundTask(blocking.record, hook.intake.pool, flagged, call)
    return response
