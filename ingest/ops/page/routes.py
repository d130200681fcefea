"""``/ops``: the on-call page. Queue depths, event counts and a live chart, recent failures
with retry / discard, dead letters with requeue / purge, the open anomalies with acknowledge
(``anomaly_panel``), the calls (filtered, paged) with their events and resulting row, personal
data hidden; a call's originals are shown only by ``POST /ops/reveal`` with a reason, which the
access log records (a GET never reveals).

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

from ingest import audit
from ingest.db import connection_kwargs, require
from ingest.ops import anomalies, dead_letters, events, flagged_callers, reconcile, retention
from ingest.ops.masking import mask_text
from ingest.ops.page import anomaly_panel, data
from ingest.ops.page.auth import LoginScheme, OpsAuth
from ingest.ops.page.guard import (
    BASE,
    Logins,
    action_form,
    dead_letter_form,
    event_form,
    failed_ids,
    guard,
    notice,
    problem,
    wants_json,
)
from ingest.ops.page.templates import chart_seed, path_segment, templates
from ingest.ops.reveal import ReasonRefused, reveal_reason, unopened
from ingest.sealing import KeyUnavailable, SealError
from ingest.settings import Settings
from ingest.vocabulary import AnomalyKind, AuditAction, AuditActorKind, AuditSurface, AuditTargetKind
from ingest.web.failure_limit import FailureLimit
from ingest.web.webhook import json_response

log = logging.getLogger("ingest.ops")

FAILURES_SHOWN = 50
DEAD_LETTERS_SHOWN = 50
CALLS_SHOWN = 20
RECONCILED_SHOWN = 20  # calls that reached us only through reconciliation, newest first
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
                f"{BASE}/reveal",
                guard(auth, self.reveal, method="POST", logins=logins),
                methods=ANY_METHOD,
                name="ops_reveal",
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
            Route(
                f"{BASE}/anomalies/acknowledge",
                guard(auth, self.acknowledge, method="POST", logins=logins),
                methods=ANY_METHOD,
                name="ops_anomaly_acknowledge",
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

    def _auditor(self, request: Request) -> audit.Auditor:
        """Who is using the page: its basic-auth user, or its bearer token, named by its setting."""
        if request.state.scheme is LoginScheme.BASIC and self.auth.user is not None:
            actor = audit.Actor(self.auth.user.decode("utf-8", "replace"), AuditActorKind.OPS_USER)
        else:
            actor = audit.Actor("INGEST_OPS_TOKEN", AuditActorKind.OPS_BEARER)
        return audit.Auditor(AuditSurface.OPS, actor)

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
            return data.not_applied(conn, ids, self.settings.privacy)

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

    def _overview_data(self, wanted: data.CallFilter, auditor: audit.Auditor) -> dict[str, Any]:
        pool, client = self._resources()
        settings, region = self.settings, self.settings.phone_region
        stats = data.read_stats(pool, client, settings.queue_namespace, settings.queue_name, region)
        empty = data.CallPage(calls=[], filter=wanted, per_page=CALLS_SHOWN, has_next=False)
        overview: dict[str, Any] = {
            "stats": stats,
            "failures": [],
            "dead_letters": [],
            "calls": empty,
            "retention": None,
            "categories": retention.CATEGORIES,
            "reconciliation": None,
            "reconcile_results": reconcile.RESULTS,
            "reconcile_on": settings.vapi_api is not None,
            "anomalies": None,
            "anomaly_kinds": anomaly_panel.KINDS,
        }
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
            with pool.connection() as conn:  # shown only once the access is recorded with them
                overview["retention"] = retention.figures(
                    conn,
                    settings.retention_raw_events_days,
                    settings.retention_transcript_days,
                    settings.retention_anonymise_days,
                )
                overview["reconciliation"] = data.reconciliation(conn, RECONCILED_SHOWN)
                overview["anomalies"] = anomaly_panel.read(conn)
                failures = data.failures(conn, FAILURES_SHOWN, region)
                calls = data.calls_page(conn, wanted, CALLS_SHOWN, region)
                asked: dict[str, Any] = {"page": wanted.page, "assistant": wanted.assistant, "outcome": wanted.outcome}
                asked |= {"from": wanted.started_from, "to": wanted.started_to, "failures": len(failures)}
                shown = len(calls.calls)
                auditor.record(
                    conn,
                    AuditAction.LIST_CALLS,
                    AuditTargetKind.BULK,
                    target_count=shown,
                    client_id=wanted.client,
                    details=asked,
                )
            overview["failures"], overview["calls"] = failures, calls
        except psycopg.Error as exc:
            overview["problems"].append(f"Could not read failures and calls: postgres: {type(exc).__name__}")
        return overview

    async def overview(self, request: Request) -> Response:
        try:
            wanted = data.CallFilter.from_query(request.query_params)
        except ValueError as exc:
            return problem(request, 400, "invalid_filter", str(exc))
        overview = await run_in_threadpool(self._overview_data, wanted, self._auditor(request))
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

        auditor = self._auditor(request)

        def read() -> tuple[data.CallDetail | None, list[data.CallEvent]]:
            pool, _ = self._resources()
            with pool.connection() as conn:  # the read and its record commit together
                region = self.settings.phone_region
                detail = data.call_detail(conn, key, region)
                events = data.call_events(conn, key, EVENTS_PER_CALL, region)
                shown, client = (1, detail.summary.client_id) if detail else (0, None)
                target = audit.call_target(detail.summary.key if detail else key)
                about = {"events": len(events)}
                auditor.record(
                    conn, AuditAction.VIEW_CALL, *target, target_count=shown, client_id=client, details=about
                )
            return detail, events

        detail, events = await run_in_threadpool(read)
        context = {"key": key, "detail": detail, "events": events, "events_limit": EVENTS_PER_CALL}
        context["next"] = request.url.path
        status = 200 if detail is not None or events else 404
        return await self._render(request, "call.html", context, status)

    async def reveal(self, request: Request) -> Response:
        """A call's page once, with its original transcript and summary and whole numbers; recorded with the reason."""
        form = await action_form(request, "key")
        if isinstance(form, Response):
            return form
        keys, _, fields = form
        if len(keys) != 1 or not 0 < len(keys[0]) <= 200:
            return problem(request, 400, "invalid_key", "send the key of one call")
        key = keys[0]
        try:
            reason = reveal_reason(fields.get("reason", [""])[0], self.settings.phone_region)
        except ReasonRefused as exc:
            return problem(request, 400, exc.code, str(exc), "refused.html")

        auditor = self._auditor(request)

        def read() -> tuple[data.CallDetail | None, list[data.CallEvent], str | None]:
            pool, _ = self._resources()
            settings, region = self.settings, self.settings.phone_region
            with pool.connection() as conn:  # the read and its record commit together, before anything is shown
                failed: KeyUnavailable | SealError | None = None
                try:
                    detail = data.revealed_call_detail(conn, key, settings.privacy)
                except (KeyUnavailable, SealError) as exc:
                    failed, detail = exc, data.call_detail(conn, key, region)
                events = data.call_events(conn, key, EVENTS_PER_CALL, region)
                shown = int(detail is not None and failed is None)
                client = detail.summary.client_id if detail else None
                target = audit.call_target(detail.summary.key if detail else key)
                about: dict[str, Any] = {"events": len(events)}
                if failed is not None:
                    about["unopened_key"] = failed.key_id
                auditor.record(
                    conn,
                    AuditAction.REVEAL,
                    *target,
                    target_count=shown,
                    client_id=client,
                    reason=reason,
                    details=about,
                )
            return detail, events, unopened(failed) if failed else None

        detail, events, failure = await run_in_threadpool(read)
        revealed = failure is None and detail is not None
        log.info("ops reveal", extra={"revealed": revealed, "scheme": request.state.scheme})
        context: dict[str, Any] = {"key": key, "detail": detail, "events": events, "events_limit": EVENTS_PER_CALL}
        context["next"] = f"{BASE}/calls/{path_segment(key)}"  # where its buttons come back to: never this POST
        if failure is not None:
            context["problems"] = [f"Not revealed: the originals are {failure}."]
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

        auditor = self._auditor(request)

        def run() -> events.ReapplyResult:
            pool, _ = self._resources()
            with pool.connection() as conn:  # recorded before it starts: one transaction per event follows
                auditor.record(conn, AuditAction.REAPPLY, **audit.by_ids(AuditTargetKind.EVENT, ids))
            return events.reapply(pool, ids, privacy=self.settings.privacy)

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

        auditor = self._auditor(request)

        def run() -> int:
            pool, _ = self._resources()
            with pool.connection() as conn:  # the discard and its record commit together
                auditor.record(conn, AuditAction.DISCARD, **audit.by_ids(AuditTargetKind.EVENT, ids))
                return events.discard(conn, ids, self._queue())

        discarded = await run_in_threadpool(run)
        fields = {"event_ids": ids[:50], "events": len(ids), "discarded": discarded, "scheme": request.state.scheme}
        log.info("ops discard", extra=fields)
        return self._done(request, target, {"discarded": discarded}, {"discarded": discarded})

    def _record_dead_letters(self, auditor: audit.Auditor, action: AuditAction, ids: list[str]) -> None:
        """Record a requeue or purge before it runs: Redis has no transaction to share with Postgres."""
        pool, _ = self._resources()
        with pool.connection() as conn:
            auditor.record(conn, action, **audit.by_ids(AuditTargetKind.DEAD_LETTER, ids))

    async def requeue(self, request: Request) -> Response:
        form = await dead_letter_form(request)
        if isinstance(form, Response):
            return form
        ids, target, _ = form

        auditor = self._auditor(request)

        def run() -> dead_letters.RequeueResult:
            self._record_dead_letters(auditor, AuditAction.DLQ_REQUEUE, ids)
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

        auditor = self._auditor(request)

        def run() -> int:
            self._record_dead_letters(auditor, AuditAction.DLQ_PURGE, ids)
            queue = self._queue()
            return dead_letters.purge(queue.client, queue.namespace, queue.name, ids)

        purged = await run_in_threadpool(run)
        log.info("ops dlq purge", extra={"ids": ids[:50], "purged": purged, "scheme": request.state.scheme})
        return self._done(request, target, {"purged": purged}, {"purged": purged})

    async def acknowledge(self, request: Request) -> Response:
        """One anomaly acknowledged with a reason: it leaves the open list; the access log records who and why."""
        form = await anomaly_panel.acknowledge_form(request, self.settings.phone_region)
        if isinstance(form, Response):
            return form
        anomaly_id, reason, auditor = form.anomaly_id, form.reason, self._auditor(request)

        def run() -> anomalies.Anomaly:
            pool, _ = self._resources()
            with pool.connection() as conn:  # the acknowledgement and its record commit together
                return anomalies.acknowledge(conn, anomaly_id, reason=reason, auditor=auditor)

        try:
            anomaly = await run_in_threadpool(run)
        except anomalies.AnomalyNotFound:
            return problem(request, 404, "not_found", f"no anomaly {anomaly_id}")
        except anomalies.AlreadyAcknowledged:
            return problem(request, 409, "already_acknowledged", f"anomaly {anomaly_id} is already acknowledged")
        fields = {"anomaly_id": anomaly_id, "kind": anomaly.kind, "scheme": request.state.scheme}
        log.info("ops anomaly acknowledged", extra=fields)
        if anomaly.kind == AnomalyKind.REPEAT_CALLER:
            await run_in_threadpool(self._unflag, anomaly)
        return self._done(request, form.target, {"acknowledged": anomaly.as_dict()}, {"acknowledged": anomaly_id})

    def _unflag(self, anomaly: anomalies.Anomaly) -> None:
        """Stop refusing an acknowledged repeat caller now, not at the next scan: the flagged callers
        published again from the table (one still flagged by another open anomaly stays)."""
        pool, client = self._resources()
        try:
            with pool.connection() as conn:
                flagged = anomalies.flagged_callers(conn, self.settings.anomalies.block_hours)
            flagged_callers.publish(client, self.settings.queue_namespace, flagged)
        except redis.RedisError as exc:
            extra = {"anomaly_id": anomaly.id, "error": type(exc).__name__}
            log.warning("flagged caller not forgotten: the next scan will", extra=extra)

    async def _confirm_purge(self, request: Request, ids: list[str], target: str) -> Response:
        """The question ``ingest dlq purge`` asks, as a page: which dead letters, and a button to confirm."""

        def read() -> list[dead_letters.DeadLetter]:
            queue = self._queue()
            shown = data.dead_letter_list(queue.client, queue.namespace, queue.name, None, self.settings.phone_region)
            return [letter for letter in shown if letter.id in set(ids)]

        context = {"ids": ids, "letters": await run_in_threadpool(read), "next": target}
        context["queue_name"] = self.settings.queue_name
        return await self._render(request, "purge.html", context)
