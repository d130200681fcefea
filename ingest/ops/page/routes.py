"""``/ops``: the on-call page. Queue depths, event counts and a live chart, recent failures
with retry / discard, recent calls with their events and resulting row.

Server-rendered (Jinja2, autoescaped: errors and transcripts are untrusted text) with a few
lines of inline JavaScript polling ``/ops/stats.json``. Who may use it is decided in
``ingest.ops.page.auth`` and enforced by ``ingest.ops.page.guard.guard``. Every database and Redis
call is synchronous and runs in a worker thread, on a small pool of its own, so the event
loop answering webhooks never waits on this page.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import psycopg
import redis
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ingest.db import connection_kwargs, require
from ingest.ops import events
from ingest.ops.page import data
from ingest.ops.page.auth import OpsAuth
from ingest.ops.page.guard import BASE, action_form, guard, notice, problem, wants_json
from ingest.ops.page.templates import templates
from ingest.settings import Settings
from ingest.web.webhook import json_response

log = logging.getLogger("ingest.ops")

FAILURES_SHOWN = 50
CALLS_SHOWN = 20
EVENTS_PER_CALL = 500
POLL_SECONDS = 5
CHART_POINTS = 60
CHART_SERIES = (
    ("ready", "ready"),
    ("in_flight", "in flight"),
    ("pending", "pending events"),
    ("failed", "failed events"),
    ("applied_last_minute", "applied / min"),
)


class OpsPage:
    """The routes of ``/ops`` and what they hold: credentials, a sync pool, a Redis client."""

    def __init__(self, auth: OpsAuth, settings: Settings) -> None:
        self.auth = auth
        self.settings = settings
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._redis: redis.Redis | None = None

    def routes(self) -> list[BaseRoute]:
        auth = self.auth
        return [
            Route(BASE, guard(auth, self.overview), methods=["GET"], name="ops"),
            Route(f"{BASE}/stats.json", guard(auth, self.stats), methods=["GET"], name="ops_stats"),
            Route(f"{BASE}/calls/{{key:path}}", guard(auth, self.call), methods=["GET"], name="ops_call"),
            Route(f"{BASE}/events/retry", guard(auth, self.retry, post=True), methods=["POST"], name="ops_retry"),
            Route(f"{BASE}/events/discard", guard(auth, self.discard, post=True), methods=["POST"], name="ops_discard"),
        ]

    async def close(self) -> None:
        with self._lock:
            pool, client, self._pool, self._redis = self._pool, self._redis, None, None
        if pool is not None:
            await run_in_threadpool(pool.close)
        if client is not None:
            await run_in_threadpool(client.close)

    # -- resources, created on first use (in a worker thread) ---------------------------------

    def _resources(self) -> tuple[ConnectionPool, redis.Redis]:
        with self._lock:
            if self._pool is None:
                pool = ConnectionPool(
                    require(self.settings.database_url, "DATABASE_URL"),
                    min_size=0,
                    max_size=2,
                    timeout=5.0,
                    kwargs=connection_kwargs(self.settings),
                    name="ops",
                    open=False,
                )
                pool.open(wait=False)
                self._pool = pool
            if self._redis is None:
                url = require(self.settings.redis_url, "REDIS_URL")
                self._redis = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
            return self._pool, self._redis

    async def _render(self, request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        context = {
            "nonce": request.state.nonce,
            "base": BASE,
            "zone": self.settings.local_timezone,
            "now": datetime.now(UTC),
            "problems": [],
            "notice": notice(request.query_params),
            **context,
        }
        # A call with hundreds of events takes milliseconds to render: not on the event loop.
        html = await run_in_threadpool(templates.get_template(name).render, context)
        return HTMLResponse(html, status_code=status)

    # -- pages ---------------------------------------------------------------------------------

    def _overview_data(self) -> dict[str, Any]:
        pool, client = self._resources()
        settings = self.settings
        stats = data.read_stats(pool, client, settings.queue_namespace, settings.queue_name)
        overview: dict[str, Any] = {"stats": stats, "failures": [], "calls": [], "problems": []}
        overview["problems"] += [f"Could not read {error}" for error in stats["errors"]]
        if stats["events"] is None:
            return overview  # Postgres did not answer just now: do not wait for it a second time
        try:
            with pool.connection() as conn:
                overview["failures"] = events.list_events(conn, failed=True, limit=FAILURES_SHOWN)
                overview["calls"] = data.recent_calls(conn, CALLS_SHOWN)
        except psycopg.Error as exc:
            overview["problems"].append(f"Could not read failures and calls: postgres: {type(exc).__name__}")
        return overview

    async def overview(self, request: Request) -> Response:
        overview = await run_in_threadpool(self._overview_data)
        context = {
            **overview,
            "queue_name": self.settings.queue_name,
            "poll_seconds": POLL_SECONDS,
            "chart_points": CHART_POINTS,
            "chart_series": [{"key": key, "label": label} for key, label in CHART_SERIES],
        }
        return await self._render(request, "index.html", context)

    async def stats(self, request: Request) -> Response:
        def read() -> dict[str, Any]:
            pool, client = self._resources()
            return data.read_stats(pool, client, self.settings.queue_namespace, self.settings.queue_name)

        return Response(orjson.dumps(await run_in_threadpool(read)), media_type="application/json")

    async def call(self, request: Request) -> Response:
        key = request.path_params["key"]
        if not 0 < len(key) <= 200:
            return problem(request, 404, "not_found", "no such call")

        def read() -> tuple[data.CallDetail | None, list[data.CallEvent]]:
            pool, _ = self._resources()
            with pool.connection() as conn:
                return data.call_detail(conn, key), data.call_events(conn, key, EVENTS_PER_CALL)

        detail, events = await run_in_threadpool(read)
        context = {"key": key, "detail": detail, "events": events, "events_limit": EVENTS_PER_CALL}
        context["next"] = request.url.path
        status = 200 if detail is not None or events else 404
        return await self._render(request, "call.html", context, status)

    # -- actions -------------------------------------------------------------------------------

    def _done(self, request: Request, target: str, result: dict[str, Any], query: dict[str, int]) -> Response:
        if wants_json(request):
            return json_response(200, result)
        return RedirectResponse(f"{target}?{urlencode(query)}", status_code=303)

    async def retry(self, request: Request) -> Response:
        form = await action_form(request)
        if isinstance(form, Response):
            return form
        ids, target = form

        def run() -> events.ReapplyResult:
            pool, _ = self._resources()
            return events.reapply(pool, ids, phone_region=self.settings.phone_region)

        result = await run_in_threadpool(run)
        fields = {"event_ids": ids[:50], "events": len(ids), "applied": result.applied, "scheme": request.state.scheme}
        log.info("ops retry", extra=fields)
        failures = [{"event_id": event_id, "reason": reason} for event_id, reason in result.failures]
        body_ = {"applied": result.applied, "total": result.total, "failures": failures}
        return self._done(request, target, body_, {"retried": result.applied, "of": result.total})

    async def discard(self, request: Request) -> Response:
        form = await action_form(request)
        if isinstance(form, Response):
            return form
        ids, target = form

        def run() -> int:
            pool, _ = self._resources()
            with pool.connection() as conn:
                return events.discard(conn, ids)

        discarded = await run_in_threadpool(run)
        fields = {"event_ids": ids[:50], "events": len(ids), "discarded": discarded, "scheme": request.state.scheme}
        log.info("ops discard", extra=fields)
        return self._done(request, target, {"discarded": discarded}, {"discarded": discarded})
