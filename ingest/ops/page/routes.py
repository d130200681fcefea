"""``/ops``: the on-call page. Queue depths, event counts and a live chart, recent failures
with retry / discard, dead letters with requeue / purge, the calls (filtered, paged) with
their events and resulting row.

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
from ingest.ops import dead_letters, events
from ingest.ops.masking import mask_text
from ingest.ops.page import data
from ingest.ops.page.auth import OpsAuth
from ingest.ops.page.guard import (
    BASE,
    Logins,
    dead_letter_form,
    event_form,
    failed_ids,
    guard,
    notice,
    problem,
    wants_json,
)
from ingest.ops.page.templates import chart_seed, templates
from ingest.settings import Settings
from ingest.web.failure_limit import FailureLimit
from ingest.web.webhook import json_response

log = logging.getLogger("ingest.ops")

FAILURES_SHOWN = 50
DEAD_LETTERS_SHOWN = 50
CALLS_SHOWN = 20
EVENTS_PER_CALL = 500
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
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
        limit = FailureLimit(settings.redis_url, settings.queue_namespace, "ops-login", auth.login_limit)
        self.logins = Logins(limit, settings.trusted_proxies)

    def routes(self) -> list[BaseRoute]:
        auth, logins = self.auth, self.logins
        return [
            # Every method reaches the guard, which refuses the wrong ones with the error shape.
            Route(BASE, guard(auth, self.overview, logins=logins), methods=ANY_METHOD, name="ops"),
            Route(f"{BASE}/stats.json", guard(auth, self.stats, logins=logins), methods=ANY_METHOD, name="ops_stats"),
            Route(
                f"{BASE}/calls/{{key:path}}", guard(auth, self.call, logins=logins), methods=ANY_METHOD, name="ops_call"
            ),
            Route(
                f"{BASE}/events/retry",
                guard(auth, self.retry, method="POST", logins=logins),
                methods=ANY_METHOD,
                name="ops_retry",
            ),
            Route(
                f"{BASE}/events/discard",
                guard(auth, self.discard, method="POST", logins=logins),
                methods=ANY_METHOD,
                name="ops_discard",
            ),
            Route(
                f"{BASE}/dead-letters/requeue",
                guard(auth, self.requeue, method="POST", logins=logins),
                methods=ANY_METHOD,
                name="ops_dlq_requeue",
            ),
            Route(
                f"{BASE}/dead-letters/purge",
                guard(auth, self.purge, method="POST", logins=logins),
                methods=ANY_METHOD,
                name="ops_dlq_purge",
            ),
        ]

    async def close(self) -> None:
        await self.logins.limit.close()
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

    def _queue(self) -> events.Queue:
        _, client = self._resources()
        return events.Queue(client, self.settings.queue_namespace, self.settings.queue_name)

    def _not_applied(self, request: Request) -> list[tuple[int, str]]:
        """Why the events a retry just reported are not applied (read again: the URL holds ids only)."""
        ids = failed_ids(request.query_params)
        if not ids:
            return []
        pool, _ = self._resources()
        with pool.connection() as conn:
            return data.not_applied(conn, ids, self.settings.phone_region)

    async def _render(self, request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        context = {
            "nonce": request.state.nonce,
            "base": BASE,
            "zone": self.settings.local_timezone,
            "now": datetime.now(UTC),
            "problems": [],
            "notice": notice(request.query_params),
            "not_applied": await run_in_threadpool(self._not_applied, request),
            **context,
        }
        # A call with hundreds of events takes milliseconds to render: not on the event loop.
        html = await run_in_threadpool(templates.get_template(name).render, context)
        return HTMLResponse(html, status_code=status)

    # -- pages ---------------------------------------------------------------------------------

    def _overview_data(self, wanted: data.CallFilter) -> dict[str, Any]:
        pool, client = self._resources()
        settings, region = self.settings, self.settings.phone_region
        stats = data.read_stats(pool, client, settings.queue_namespace, settings.queue_name, region)
        empty = data.CallPage(calls=[], filter=wanted, per_page=CALLS_SHOWN, has_next=False)
        overview: dict[str, Any] = {"stats": stats, "failures": [], "dead_letters": [], "calls": empty}
        overview["problems"] = [f"Could not read {error}" for error in stats["errors"]]
        if stats["queues"] is not None:
            try:
                overview["dead_letters"] = data.dead_letter_list(
                    client, settings.queue_namespace, settings.queue_name, DEAD_LETTERS_SHOWN, region
                )
            except redis.RedisError as exc:
                overview["problems"].append(f"Could not read dead letters: redis: {type(exc).__name__}")
        if stats["events"] is None:
            return overview  # Postgres did not answer just now: do not wait for it a second time
        try:
            with pool.connection() as conn:
                overview["failures"] = data.failures(conn, FAILURES_SHOWN, region)
                overview["calls"] = data.calls_page(conn, wanted, CALLS_SHOWN, region)
        except psycopg.Error as exc:
            overview["problems"].append(f"Could not read failures and calls: postgres: {type(exc).__name__}")
        return overview

    async def overview(self, request: Request) -> Response:
        try:
            wanted = data.CallFilter.from_query(request.query_params)
        except ValueError as exc:
            return problem(request, 400, "invalid_filter", str(exc))
        overview = await run_in_threadpool(self._overview_data, wanted)
        context = {
            **overview,
            "queue_name": self.settings.queue_name,
            "poll_seconds": POLL_SECONDS,
            "chart_points": CHART_POINTS,
            "chart_series": [{"key": key, "label": label} for key, label in CHART_SERIES],
            "chart_seed": chart_seed(overview["stats"], [key for key, _ in CHART_SERIES]),
            "dead_letters_limit": DEAD_LETTERS_SHOWN,
        }
        return await self._render(request, "index.html", context)

    async def stats(self, request: Request) -> Response:
        def read() -> dict[str, Any]:
            pool, client = self._resources()
            settings = self.settings
            return data.read_stats(pool, client, settings.queue_namespace, settings.queue_name, settings.phone_region)

        return Response(orjson.dumps(await run_in_threadpool(read)), media_type="application/json")

    async def call(self, request: Request) -> Response:
        key = request.path_params["key"]
        if not 0 < len(key) <= 200:
            return problem(request, 404, "not_found", "no such call")

        def read() -> tuple[data.CallDetail | None, list[data.CallEvent]]:
            pool, _ = self._resources()
            with pool.connection() as conn:
                region = self.settings.phone_region
                return data.call_detail(conn, key, region), data.call_events(conn, key, EVENTS_PER_CALL, region)

        detail, events = await run_in_threadpool(read)
        context = {"key": key, "detail": detail, "events": events, "events_limit": EVENTS_PER_CALL}
        context["next"] = request.url.path
        status = 200 if detail is not None or events else 404
        return await self._render(request, "call.html", context, status)

    # -- actions -------------------------------------------------------------------------------

    def _done(
        self, request: Request, target: str, result: dict[str, Any], query: dict[str, int | list[int]]
    ) -> Response:
        if wants_json(request):
            return json_response(200, result)
        return RedirectResponse(f"{target}?{urlencode(query, doseq=True)}", status_code=303)

    async def retry(self, request: Request) -> Response:
        form = await event_form(request)
        if isinstance(form, Response):
            return form
        ids, target = form

        def run() -> events.ReapplyResult:
            pool, _ = self._resources()
            return events.reapply(pool, ids, phone_region=self.settings.phone_region)

        result = await run_in_threadpool(run)
        fields = {"event_ids": ids[:50], "events": len(ids), "applied": result.applied, "scheme": request.state.scheme}
        log.info("ops retry", extra=fields)
        region = self.settings.phone_region
        failures = [{"event_id": event_id, "reason": mask_text(reason, region)} for event_id, reason in result.failures]
        body_ = {"applied": result.applied, "total": result.total, "failures": failures}
        # The reasons are text: the page reads them again for these ids rather than carry them in the URL.
        failed: list[int] = [event_id for event_id, _ in result.failures]
        query: dict[str, int | list[int]] = {"retried": result.applied, "of": result.total, "failed": failed}
        return self._done(request, target, body_, query)

    async def discard(self, request: Request) -> Response:
        form = await event_form(request)
        if isinstance(form, Response):
            return form
        ids, target = form

        def run() -> int:
            pool, _ = self._resources()
            with pool.connection() as conn:
                return events.discard(conn, ids, self._queue())

        discarded = await run_in_threadpool(run)
        fields = {"event_ids": ids[:50], "events": len(ids), "discarded": discarded, "scheme": request.state.scheme}
        log.info("ops discard", extra=fields)
        return self._done(request, target, {"discarded": discarded}, {"discarded": discarded})

    async def requeue(self, request: Request) -> Response:
        form = await dead_letter_form(request)
        if isinstance(form, Response):
            return form
        ids, target, _ = form

        def run() -> dead_letters.RequeueResult:
            queue = self._queue()
            return dead_letters.requeue(queue.client, queue.namespace, queue.name, ids)

        result = await run_in_threadpool(run)
        log.info(
            "ops dlq requeue", extra={"ids": ids[:50], "requeued": result.requeued, "scheme": request.state.scheme}
        )
        body_ = {"requeued": result.requeued, "not_found": result.not_found, "unreadable": result.unreadable}
        return self._done(request, target, body_, {"requeued": result.requeued})

    async def purge(self, request: Request) -> Response:
        form = await dead_letter_form(request)
        if isinstance(form, Response):
            return form
        ids, target, confirmed = form
        if not confirmed:
            if wants_json(request):
                detail = f"deleting {len(ids)} dead letter(s) is for good: send confirm=yes with the ids"
                return json_response(400, {"error": "confirmation_required", "detail": detail})
            return await self._confirm_purge(request, ids, target)

        def run() -> int:
            queue = self._queue()
            return dead_letters.purge(queue.client, queue.namespace, queue.name, ids)

        purged = await run_in_threadpool(run)
        log.info("ops dlq purge", extra={"ids": ids[:50], "purged": purged, "scheme": request.state.scheme})
        return self._done(request, target, {"purged": purged}, {"purged": purged})

    async def _confirm_purge(self, request: Request, ids: list[str], target: str) -> Response:
        """The question ``ingest dlq purge`` asks, as a page: which dead letters, and a button to confirm."""

        def read() -> list[dead_letters.DeadLetter]:
            queue = self._queue()
            shown = data.dead_letter_list(queue.client, queue.namespace, queue.name, None, self.settings.phone_region)
            return [letter for letter in shown if letter.id in set(ids)]

        context = {"ids": ids, "letters": await run_in_threadpool(read), "next": target}
        context["queue_name"] = self.settings.queue_name
        return await self._render(request, "purge.html", context)
