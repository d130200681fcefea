"""The HTTP side of ``/ops``: who gets in (``guard``), response headers, action forms, notices.

``guard`` wraps every endpoint of the page: disabled (404 saying how to enable it),
unauthenticated (401 with the challenges), a cross-site POST under basic auth (403), a
backing service that does not answer (503); every answer, page or refusal, gets the same
hardening headers and a fresh CSP nonce in ``request.state.nonce``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qs

import psycopg
import redis
from starlette.requests import Request
from starlette.responses import Response

from ingest import body
from ingest.ops.page.auth import DISABLED_HINT, LoginScheme, OpsAuth
from ingest.ops.page.templates import templates
from ingest.web.webhook import json_response

log = logging.getLogger("ingest.ops")

BASE = "/ops"
MAX_IDS = 500
FORM_LIMIT = 64 * 1024
_NEXT = re.compile(r"/ops(/[A-Za-z0-9._~%:@+=-]+)*")
_NOTICE = re.compile(r"[0-9]{1,6}")

Endpoint = Callable[[Request], Awaitable[Response]]


def problem(request: Request, status: int, error: str, detail: str, template: str | None = None) -> Response:
    """A JSON body for tools, or a small HTML page for a browser that asked for one."""
    if template and "text/html" in request.headers.get("accept", ""):
        return templates.TemplateResponse(request, template, {"detail": detail}, status_code=status)
    return json_response(status, {"error": error, "detail": detail})


def harden(response: Response, nonce: str) -> Response:
    response.headers["cache-control"] = "no-store"
    response.headers["x-content-type-options"] = "nosniff"
    response.headers["x-frame-options"] = "DENY"
    response.headers["referrer-policy"] = "same-origin"
    response.headers["content-security-policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return response


def guard(auth: OpsAuth, endpoint: Endpoint, *, post: bool = False) -> Endpoint:
    """``endpoint`` behind the page's access rules; ``post`` adds the same-origin check."""

    async def guarded(request: Request) -> Response:
        nonce = secrets.token_urlsafe(16)
        if not auth.enabled:
            detail = f"the ops page is disabled: {DISABLED_HINT}"
            return harden(problem(request, 404, "ops_disabled", detail, "disabled.html"), nonce)
        scheme = auth.authenticate(request.headers.get("authorization"))
        if scheme is None:
            response = json_response(401, {"error": "unauthorized", "detail": "credentials missing or wrong"})
            for challenge in auth.challenges():
                response.headers.append("www-authenticate", challenge)
            return harden(response, nonce)
        if post and scheme is LoginScheme.BASIC and not auth.same_origin(request.headers, request.url.scheme):
            log.warning("ops request refused", extra={"reason": "cross_origin", "path": request.url.path})
            detail = "this action must be sent from the ops page itself (Origin/Referer of another site)"
            return harden(json_response(403, {"error": "cross_origin", "detail": detail}), nonce)
        request.state.nonce = nonce
        request.state.scheme = scheme
        try:
            response = await endpoint(request)
        except (psycopg.Error, redis.RedisError) as exc:
            log.warning("ops request failed", extra={"path": request.url.path, "error": type(exc).__name__})
            detail = f"a backing service did not answer ({type(exc).__name__}); try again"
            response = json_response(503, {"error": "unavailable", "detail": detail})
        return harden(response, nonce)

    return guarded


async def action_form(request: Request) -> tuple[list[int], str] | Response:
    """The posted ``event_id`` values and the ``next`` page, or a 400/413 saying what is wrong."""
    try:
        raw = await body.read_bounded(request.stream(), request.headers.get("content-length"), FORM_LIMIT)
    except body.BodyError as exc:
        return json_response(exc.status, {"error": exc.code, "detail": exc.detail})
    invalid = json_response(400, {"error": "invalid_event_id", "detail": f"send 1 to {MAX_IDS} integer event_id"})
    try:
        fields = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=MAX_IDS + 10)
        ids = sorted({int(value) for value in fields.get("event_id", [])})
    except ValueError:  # not integers, or too many fields
        return invalid
    if not ids or len(ids) > MAX_IDS:
        return invalid
    target = fields.get("next", [BASE])[0]
    return ids, target if _NEXT.fullmatch(target) else BASE


def wants_json(request: Request) -> bool:
    """Tools (bearer token, or ``Accept: application/json``) get JSON instead of a redirect."""
    return request.state.scheme is LoginScheme.BEARER or "application/json" in request.headers.get("accept", "")


def notice(query: Mapping[str, str]) -> str | None:
    """The outcome of the last action, from the redirect's query (numbers only, never text)."""
    values = {key: query.get(key, "") for key in ("retried", "of", "discarded")}
    if not all(_NOTICE.fullmatch(v) for v in values.values() if v):
        return None
    if values["retried"] and values["of"]:
        return f"Re-applied {values['retried']} of {values['of']} event(s)."
    if values["discarded"]:
        return f"Discarded {values['discarded']} event(s): marked ignored."
    return None
