"""The HTTP side of ``/ops``: who gets in (``guard``), response headers, action forms, notices.

``guard`` wraps every endpoint of the page: disabled (404 saying how to enable it),
unauthenticated (401 with the challenges), a method the endpoint does not take (405), a
cross-site POST under basic auth (403), a backing service that does not answer (503), any
other failure (500); every answer, page or refusal, gets the same hardening headers and a
fresh CSP nonce in ``request.state.nonce``. Every refusal has the service's one error
shape, ``{"error": "<machine code>", "detail": "<human text>"}`` (``problem``).

Logins (``Logins``): a request carrying wrong credentials is a failure of its client
address (``ingest.web.client_address``), logged (address, claimed scheme, reason; never
what was tried) and counted; past ``INGEST_OPS_LOGIN_LIMIT`` failures the address gets a
429 with ``Retry-After``, whether its credentials are right or wrong. A
request without credentials (a browser's first visit) is no failure.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

import psycopg
import redis
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from ingest import body
from ingest.metrics import counters
from ingest.ops.page.auth import DISABLED_HINT, LoginFailure, LoginScheme, OpsAuth
from ingest.ops.page.templates import templates
from ingest.web.client_address import TrustedProxies, of_request
from ingest.web.errors import UNAUTHORIZED, UNAUTHORIZED_DETAIL, error_response
from ingest.web.failure_limit import FailureLimit

log = logging.getLogger("ingest.ops")

BASE = "/ops"
MAX_IDS = 500
FORM_LIMIT = 64 * 1024
_NEXT = re.compile(r"/ops(/[A-Za-z0-9._~%:@+=-]+)*")
_NOTICE = re.compile(r"[0-9]{1,6}")
_EVENT_ID = re.compile(r"[0-9]{1,18}")
_REDIS_ID = re.compile(r"[0-9A-Za-z-]{1,64}")  # Dramatiq's message ids are UUIDs
FAILED_SHOWN = 5  # events a retry notice explains, at most

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Logins:
    """Failed logins: counted per client address in ``limit``, addresses read through ``proxies``."""

    limit: FailureLimit
    proxies: TrustedProxies

    async def refused(self, request: Request, claimed: str, reason: LoginFailure) -> None:
        address = of_request(request, self.proxies)
        if reason is not LoginFailure.RATE_LIMITED:
            await self.limit.failed(address)
        counters.ops_login_failure(claimed, reason)
        log.warning(
            "ops login refused",
            extra={"address": address, "scheme": claimed, "reason": reason, "path": request.url.path},
        )

    async def retry_after(self, request: Request) -> int | None:
        return await self.limit.retry_after(of_request(request, self.proxies))


def problem(request: Request, status: int, error: str, detail: str, template: str | None = None) -> Response:
    """A JSON body for tools, or a small HTML page for a browser that asked for one."""
    if template and "text/html" in request.headers.get("accept", ""):
        return templates.TemplateResponse(request, template, {"detail": detail}, status_code=status)
    return error_response(status, error, detail)


def _unexpected(request: Request, exc: Exception) -> Response:
    # The type only: a message can quote row values (see errors.describe).
    log.error("ops request failed", extra={"path": request.url.path, "error": type(exc).__name__})
    return error_response(500, "internal", f"the ops page failed ({type(exc).__name__})")


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


def guard(auth: OpsAuth, endpoint: Endpoint, *, method: str = "GET", logins: Logins | None = None) -> Endpoint:
    """``endpoint`` behind the page's access rules, answering ``method`` only; POST adds the same-origin check."""
    allowed = ("GET", "HEAD") if method == "GET" else (method,)

    async def guarded(request: Request) -> Response:
        nonce = secrets.token_urlsafe(16)
        if not auth.enabled:
            detail = f"the ops page is disabled: {DISABLED_HINT}"
            return harden(problem(request, 404, "ops_disabled", detail, "disabled.html"), nonce)
        authorization = request.headers.get("authorization", "")
        attempt = auth.attempt(authorization)
        if authorization.strip() and logins is not None:
            wait = await logins.retry_after(request)
            if wait is not None:
                await logins.refused(request, attempt.claimed, LoginFailure.RATE_LIMITED)
                detail = f"too many failed logins from this address; try again in {wait}s"
                return harden(
                    error_response(429, "too_many_attempts", detail, headers={"retry-after": str(wait)}), nonce
                )
            if attempt.failure is not None:
                await logins.refused(request, attempt.claimed, attempt.failure)
        scheme = attempt.scheme
        if scheme is None:
            response = error_response(401, UNAUTHORIZED, UNAUTHORIZED_DETAIL)
            for challenge in auth.challenges():
                response.headers.append("www-authenticate", challenge)
            return harden(response, nonce)
        if request.method not in allowed:
            response = error_response(405, "method_not_allowed", f"use {method}")
            response.headers["allow"] = ", ".join(allowed)
            return harden(response, nonce)
        post = method == "POST"
        if post and scheme is LoginScheme.BASIC and not auth.same_origin(request.headers, request.url.scheme):
            log.warning("ops request refused", extra={"reason": "cross_origin", "path": request.url.path})
            detail = "this action must be sent from the ops page itself (Origin/Referer of another site)"
            return harden(error_response(403, "cross_origin", detail), nonce)
        request.state.nonce = nonce
        request.state.scheme = scheme
        try:
            response = await endpoint(request)
        except (psycopg.Error, redis.RedisError) as exc:
            log.warning("ops request failed", extra={"path": request.url.path, "error": type(exc).__name__})
            detail = f"a backing service did not answer ({type(exc).__name__}); try again"
            response = error_response(503, "unavailable", detail)
        except Exception as exc:
            response = _unexpected(request, exc)
        return harden(response, nonce)

    return guarded


Form = tuple[list[str], str, dict[str, list[str]]]


async def action_form(request: Request, field: str) -> Form | Response:
    """The posted values of ``field`` (1 to ``MAX_IDS``), the ``next`` page and every field, or a 400/413."""
    try:
        raw = await body.read_bounded(request.stream(), request.headers.get("content-length"), FORM_LIMIT)
    except body.BodyError as exc:
        return error_response(exc.status, exc.code, exc.detail)
    invalid = error_response(400, f"invalid_{field}", f"send 1 to {MAX_IDS} {field} values")
    try:
        fields = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=MAX_IDS + 10)
    except ValueError:  # too many fields
        return invalid
    values = list(dict.fromkeys(fields.get(field, [])))
    if not values or len(values) > MAX_IDS:
        return invalid
    target = fields.get("next", [BASE])[0]
    return values, target if _NEXT.fullmatch(target) else BASE, fields


async def event_form(request: Request) -> tuple[list[int], str] | Response:
    """The posted ``event_id`` values (integers) and the ``next`` page, or a 400/413."""
    form = await action_form(request, "event_id")
    if isinstance(form, Response):
        return form
    values, target, _ = form
    try:
        return sorted({int(value) for value in values}), target
    except ValueError:
        return error_response(400, "invalid_event_id", f"send 1 to {MAX_IDS} integer event_id")


async def dead_letter_form(request: Request) -> tuple[list[str], str, bool] | Response:
    """The posted dead-letter ``id`` values, the ``next`` page and whether ``confirm=yes`` was sent."""
    form = await action_form(request, "id")
    if isinstance(form, Response):
        return form
    values, target, fields = form
    if not all(_REDIS_ID.fullmatch(value) for value in values):
        return error_response(400, "invalid_id", "an id is not a dead-lettered message id")
    return values, target, fields.get("confirm", [""])[0] == "yes"


def wants_json(request: Request) -> bool:
    """Tools (bearer token, or ``Accept: application/json``) get JSON instead of a redirect."""
    return request.state.scheme is LoginScheme.BEARER or "application/json" in request.headers.get("accept", "")


def notice(query: Mapping[str, str]) -> str | None:
    """The outcome of the last action, from the redirect's query (numbers only, never text)."""
    values = {key: query.get(key, "") for key in ("retried", "of", "discarded", "requeued", "purged", "acknowledged")}
    if not all(_NOTICE.fullmatch(v) for v in values.values() if v):
        return None
    if values["retried"] and values["of"]:
        return f"Re-applied {values['retried']} of {values['of']} event(s)."
    if values["discarded"]:
        return f"Discarded {values['discarded']} event(s): marked ignored. Their dead letters, if any, are deleted."
    if values["requeued"]:
        return f"Requeued {values['requeued']} dead letter(s): back on the queue with fresh retries."
    if values["purged"]:
        return f"Deleted {values['purged']} dead letter(s) for good."
    if values["acknowledged"]:
        return f"Acknowledged anomaly {values['acknowledged']}: it is no longer open. The access log has your reason."
    return None


def failed_ids(query: QueryParams) -> list[int]:
    """The events a retry reported as not applied (``failed=<id>``, at most ``FAILED_SHOWN``)."""
    return [int(value) for value in query.getlist("failed") if _EVENT_ID.fullmatch(value)][:FAILED_SHOWN]
