"""The ASGI application: ``ingest.web.app:app``, or ``create_app()`` for a configured one.

The lifespan owns the resources: a Postgres pool (fallback writes, readiness), the Redis
enqueuer, and the drainer task. Configuration is read once, at start, and a bad value
stops the process with a message naming the variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingest.db import async_pool, require
from ingest.logs import configure_logging
from ingest.metrics.exposition import endpoint as metrics_endpoint
from ingest.ops.flagged_callers import FlaggedCallers
from ingest.ops.page.routes import OpsPage
from ingest.settings import Settings
from ingest.web.blocking import CallerBlock
from ingest.web.enqueue import Enqueuer
from ingest.web.errors import error_response, http_error, server_error
from ingest.web.failure_limit import FailureLimit
from ingest.web.intake import Drainer, Intake
from ingest.web.replays import ReplayMemory
from ingest.web.webhook import Webhook, json_response, receive

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    return json_response(200, {"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when Redis and Postgres both answer within a second, else 503 naming the ones that did not."""
    hook: Webhook = request.app.state.webhook
    checks: dict[str, str] = {}
    checks["redis"] = "ok" if await hook.intake.enqueuer.ping() else "unreachable"
    try:
        async with hook.intake.pool.connection(timeout=1.0) as conn:
            await asyncio.wait_for(conn.execute("SELECT 1"), 1.0)
        checks["postgres"] = "ok"
    except Exception:
        checks["postgres"] = "unreachable"
    down = [name for name, value in checks.items() if value != "ok"]
    if down:
        return error_response(503, "not_ready", f"{' and '.join(down)} unreachable")
    keyring = request.app.state.settings.keyring
    # not a readiness failure, but never quiet: plain text is a choice ops must see
    encryption = f"sealing under {keyring.current}" if keyring.sealing else "OFF (INGEST_PLAINTEXT)"
    return json_response(200, {"status": "ready", **checks, "encryption": encryption})


def create_app(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> Starlette:
    """The app for ``settings`` (default: read from ``env``, default the process's environment)."""
    settings = settings or Settings.from_env(env)
    auth = settings.auth
    answer_settings = settings.answers
    ops = OpsPage(settings.ops_auth, settings)
    redis_url = require(settings.redis_url, "REDIS_URL")
    settings.require_keys()
    failure_limit, proxies = settings.webhook_auth_failure_limit, settings.trusted_proxies
    # BLOCK_FLAGGED_CALLERS needs the pseudonym key: flagged callers are known by pseudonym only.
    pseudonym_key = settings.require_pseudonym_key() if settings.anomalies.block_flagged_callers else None
    auth.log_mode()  # one line naming VAPI_AUTH_MODE in force (the INGEST_INSECURE warning included)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = async_pool(settings, name="web")
        await pool.open(wait=False)
        enqueuer = Enqueuer(
            redis_url, settings.queue_name, namespace=settings.queue_namespace, timeout=settings.enqueue_timeout
        )
        intake = Intake(enqueuer, pool, settings.privacy)
        # Signed deliveries seen within the HMAC window (ingest.web.replays).
        tolerance = auth.hmac.tolerance if auth.hmac else 1
        replays = ReplayMemory(
            redis_url,
            settings.queue_namespace,
            tolerance,
            timeout=settings.enqueue_timeout,
            wait=answer_settings.tool_timeout + 1.0,
        )
        # Requests failing authentication, counted per client address in Redis (ingest.web.failure_limit).
        failures = FailureLimit(redis_url, settings.queue_namespace, "webhook-auth", failure_limit)
        flagged = FlaggedCallers(redis_url, settings.queue_namespace, timeout=settings.enqueue_timeout)
        block = CallerBlock(flagged, pseudonym_key, settings.phone_region) if pseudonym_key is not None else None
        # Two threads for large bodies: the event loop keeps answering while one is parsed.
        parser = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-parse")
        app.state.webhook = Webhook(
            auth,
            answer_settings,
            intake,
            settings.max_body_bytes,
            body_timeout=settings.body_timeout,
            unverified=asyncio.Semaphore(settings.max_unverified_bodies),
            parser=parser,
            replays=replays,
            failures=failures,
            proxies=proxies,
            block=block,
        )
        drainer = asyncio.create_task(Drainer(intake).run(), name="drainer")
        # Everything built so far lives as long as the process: keep it out of the garbage
        # collector's full passes, which otherwise stall a request for tens of ms.
        gc.freeze()
        try:
            yield
        finally:
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
            await enqueuer.close()
            await pool.close()
            await ops.close()
            await replays.close()
            await failures.close()
            await flagged.close()
            parser.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/webhooks/vapi", receive, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint(settings), methods=["GET"]),
        *ops.routes(),
    ]
    # Starlette's own 404, 405 and 500 in the service's one error shape (ingest.web.errors).
    handlers = {HTTPException: http_error, Exception: server_error}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.state.settings = settings
    return app


def __getattr__(name: str) -> Starlette:
    # ``ingest.web.app:app`` builds the application on first access, from the environment.
    if name == "app":
        settings = Settings.from_env()
        configure_logging(settings.log_level)
        application = create_app(settings)
        globals()["app"] = application
        return application
    raise AttributeError(name)
