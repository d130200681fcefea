"""``GET /metrics`` of the web process, and the workers' own exposition server.

The web process shows every process's counts (in multiprocess mode: the files of its own
directory and of its siblings, the workers', see ``ingest.metrics.multiprocess``; otherwise its own
registry) and the gauges read at scrape time (``ingest.metrics.gauges``). With
``INGEST_METRICS_TOKEN`` set, both endpoints require ``Authorization: Bearer <token>`` and
refuse anything else with a 401 in the service's error shape (``ingest.web.errors``); without
it they are open, and belong on an internal network.

The workers' server is prometheus_client's own arrangement (``start_http_server``): a
thread per request, so one slow or idle client holds up no other scrape, each connection
closed after ``WORKER_METRICS_SOCKET_TIMEOUT`` seconds without a byte, and the collector
inside a ``CollectorRegistry``, which ``?name[]=…`` (a restricted registry) needs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from ingest.credentials import matches
from ingest.db import connection_kwargs
from ingest.metrics.gauges import SourceCollector, SourceReaders, Sources
from ingest.metrics.multiprocess import reading_dirs
from ingest.settings import Settings
from ingest.web.auth import Reason
from ingest.web.errors import UNAUTHORIZED, UNAUTHORIZED_DETAIL, error_body

log = logging.getLogger(__name__)

WORKER_METRICS_SOCKET_TIMEOUT = 10.0  # seconds a connection of the workers' server may stay silent


def refusal(token: bytes | None, header: str | None) -> Reason | None:
    """Why ``header`` is refused; None when no token is configured or it is ``Bearer <token>`` (constant time)."""
    if token is None:
        return None
    if not (header or "").strip():
        return Reason.MISSING_CREDENTIALS
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return Reason.MALFORMED_CREDENTIALS
    return None if matches(value.strip().encode(), token) else Reason.SECRET_MISMATCH


def unauthorized(reason: Reason) -> bytes:
    return error_body(UNAUTHORIZED, UNAUTHORIZED_DETAIL, reason=reason)


class FilesCollector(Collector):
    """Every process's counts, merged from the multiprocess files found now in ``dirs``."""

    def __init__(self, dirs: Callable[[], Iterable[Path]]) -> None:
        self.dirs = dirs

    def collect(self) -> Iterable[Metric]:
        files = [str(path) for directory in self.dirs() for path in sorted(directory.glob("*.db"))]
        return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call,no-any-return]


class Exposition(Collector):
    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def counts(env: Mapping[str, str], *, siblings: bool = True) -> Collector:
    """The counters and histograms: from the multiprocess files, else this process's registry."""
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    return FilesCollector(lambda: reading_dirs(env, siblings=siblings))


def endpoint(settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    """The ``/metrics`` handler of an app configured with ``settings``."""
    token = settings.metrics_token
    process_counts = counts(settings.environment)
    readers = SourceReaders(
        Sources(
            redis_url=settings.redis_url or "",
            database_url=settings.database_url or "",
            namespace=settings.queue_namespace,
            queue_names=(settings.queue_name,),
            connect_kwargs=connection_kwargs(settings),
            retention_raw_days=settings.retention_raw_events_days,
            retention_transcript_days=settings.retention_transcript_days,
            retention_anonymise_days=settings.retention_anonymise_days,
        )
    )

    async def metrics(request: Request) -> Response:
        reason = refusal(token, request.headers.get("authorization"))
        if reason is not None:
            return Response(unauthorized(reason), 401, {"www-authenticate": "Bearer"}, media_type="application/json")
        snap, kept, reconciled, flagged = await asyncio.gather(
            readers.snapshot(), readers.retention_figures(), readers.reconcile_figures(), readers.anomaly_figures()
        )
        gauges = SourceCollector(snap, kept, reconciled, flagged)
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        output = await asyncio.to_thread(encoder, Exposition(process_counts, gauges))  # reads files
        return Response(output, media_type=content_type)

    return metrics


class _QuietHandler(WSGIRequestHandler):
    timeout = WORKER_METRICS_SOCKET_TIMEOUT  # the request socket's timeout (socketserver.StreamRequestHandler)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """A thread per request, as prometheus_client's ``ThreadingWSGIServer``."""

    daemon_threads = True  # not kept (nor waited for) once they finish


def worker_metrics_server(settings: Settings) -> WSGIServer | None:
    """The workers' metrics server, bound and ready to serve; None when it cannot be (logged)."""
    env, port = settings.environment, settings.worker_metrics_port
    if port is None or not env.get("PROMETHEUS_MULTIPROC_DIR"):
        log.error("worker metrics need INGEST_WORKER_METRICS_PORT and a multiprocess directory (`ingest worker`)")
        return None
    token = settings.metrics_token
    # Which families the files hold changes as processes count: the collector is asked at
    # each scrape, including for ``?name[]=…``, rather than described once.
    registry = CollectorRegistry(support_collectors_without_names=True)
    registry.register(counts(env, siblings=False))
    app = make_wsgi_app(registry)

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        reason = refusal(token, environ.get("HTTP_AUTHORIZATION"))
        if reason is not None:
            start_response("401 Unauthorized", [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")])
            return [unauthorized(reason)]
        return app(environ, start_response)  # type: ignore[no-any-return]

    host = settings.host
    try:
        server = make_server(host, port, guarded, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        log.error("worker metrics server could not listen", extra={"port": port, "error": str(exc)})
        return None
    log.info("serving worker metrics", extra={"host": host, "port": port})
    return server


def serve_worker_metrics() -> int:
    """Serve the workers' counts on ``INGEST_WORKER_METRICS_PORT``: a process Dramatiq forks."""
    server = worker_metrics_server(Settings.from_env())
    if server is None:
        return 1
    server.serve_forever()
    return 0
