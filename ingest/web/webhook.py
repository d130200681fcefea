"""``POST /webhooks/vapi``: verify, bound, parse, answer, queue — and one log line.

Order matters: the body is read within its bound before anything else, authenticated on
the exact bytes received, then decoded and parsed. Every problem is a precise 4xx with a
JSON body (``ingest.web.errors``); only when neither Redis nor Postgres can keep the
delivery is it a 503. Every
answer is counted (``ingest.metrics.counters``) where it is logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ingest import body
from ingest.mapping.identity import call_id
from ingest.metrics import counters
from ingest.vocabulary import REQUEST_TYPES, DeliveryOutcome, MessageType
from ingest.web import answers
from ingest.web.answers import AnswerSettings
from ingest.web.auth import verify
from ingest.web.auth_settings import AuthSettings
from ingest.web.errors import UNAUTHORIZED, UNAUTHORIZED_DETAIL, error_response
from ingest.web.intake import Intake, Unavailable

log = logging.getLogger("ingest.web.webhook")

ACK = b'{"ok":true}'


@dataclass(frozen=True)
class Webhook:
    auth: AuthSettings
    answers: AnswerSettings
    intake: Intake
    max_body_bytes: int


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


async def receive(request: Request) -> Response:
    started = time.perf_counter()
    now = time.time()
    hook: Webhook = request.app.state.webhook
    size = 0
    try:
        raw = await body.read_bounded(request.stream(), request.headers.get("content-length"), hook.max_body_bytes)
        size = len(raw)
        auth = verify(hook.auth, request.headers, raw, now=now)
        if not auth.ok:
            _log(DeliveryOutcome.UNAUTHORIZED, started, size, **auth.log_fields())
            return error_response(401, UNAUTHORIZED, UNAUTHORIZED_DETAIL, reason=auth.reason)
        decoded = body.decode_content(raw, request.headers.get("content-encoding"), hook.max_body_bytes)
        message, queued_body = body.parse_envelope(decoded)
    except body.BodyError as exc:
        _log(
            DeliveryOutcome.TOO_LARGE if exc.status == 413 else DeliveryOutcome.INVALID, started, size, reason=exc.code
        )
        return error_response(exc.status, exc.code, exc.detail)

    kind = str(message["type"])
    call = call_id(message)
    reply = await answers.answer(hook.answers, message) if kind in REQUEST_TYPES else None
    if reply is not None and kind == MessageType.ASSISTANT_REQUEST:
        queued_body = answers.with_answer_recorded(queued_body, reply)
    # Nothing parsed is kept across the wait for Redis: a large report's object tree
    # would otherwise stay alive for every garbage collection in the meantime.
    del message, raw, decoded
    try:
        outcome = await hook.intake.accept(queued_body, int(now * 1000))
    except Unavailable:
        if reply is not None:
            # A live call is waiting on this answer: give it, even though the event is not kept.
            _log(DeliveryOutcome.ANSWERED_NOT_RECORDED, started, size, type=kind, call_id=call)
            return json_response(200, reply)
        _log(DeliveryOutcome.UNAVAILABLE, started, size, type=kind, call_id=call)
        return error_response(503, "unavailable", "neither the queue nor the database took it; send it again")
    _log(outcome, started, size, type=kind, call_id=call)
    return json_response(200, reply if reply is not None else ACK)
