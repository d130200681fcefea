"""The one shape of every error the service answers: ``{"error": code, "detail": text}``.

``error`` is a machine code a client can switch on; ``detail`` is a sentence for a person.
A 401 adds ``reason``, the machine-readable cause (``ingest.web.auth.Reason``), while its
``detail`` stays generic: how authentication is set up is the operator's business, written
in the log line, never in the answer. Every status and code: the README's "Errors" section.
"""

from __future__ import annotations

import http
from collections.abc import Mapping

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["UNAUTHORIZED", "UNAUTHORIZED_DETAIL", "error_body", "error_response", "http_error", "server_error"]

UNAUTHORIZED = "unauthorized"
UNAUTHORIZED_DETAIL = "credentials missing or wrong"


def error_body(code: str, detail: str, *, reason: str | None = None) -> bytes:
    """The JSON bytes of an error answer."""
    fields = {"error": code, "detail": detail}
    if reason is not None:
        fields["reason"] = reason
    return orjson.dumps(fields)


def error_response(
    status: int, code: str, detail: str, *, reason: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """An error answer with ``status``."""
    body = error_body(code, detail, reason=reason)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, method not allowed) in the same shape."""
    assert isinstance(exc, HTTPException)
    phrase = http.HTTPStatus(exc.status_code).phrase
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    detail = f"{request.method} {request.url.path}: {phrase.lower()}"
    return error_response(exc.status_code, code, detail, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """An unexpected exception: a 500 that says nothing of it (the server logs the traceback)."""
    return error_response(500, "internal", "an unexpected error; it is logged on the server")
