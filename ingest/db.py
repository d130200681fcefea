"""Connection pools: built from settings, opened by their owner (lifespan or worker boot)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ingest.errors import ConfigError
from ingest.settings import Settings


class NotConfigured(ConfigError):
    """A URL the command needs is unset (``ingest dev`` provides embedded servers)."""


@contextlib.contextmanager
def session_lock(conn: psycopg.Connection[Any], key: int) -> Iterator[bool]:
    """``pg_try_advisory_lock(key)`` for the block: True when this session took it (released
    after), False when another session holds it. One runner of a periodic job across hosts."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    if not row or not row[0]:
        yield False
        return
    try:
        yield True
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def require(value: str | None, name: str) -> str:
    if not value:
        raise NotConfigured(f"{name} is not set; `ingest dev` starts an embedded stack without it")
    return value


def connection_kwargs(settings: Settings) -> dict[str, Any]:
    # Behind a transaction pooler (Supabase's, PgBouncer in transaction mode) server-side
    # prepared statements break: DB_PREPARED_STATEMENTS=false turns them off.
    kwargs: dict[str, Any] = {"application_name": "vapi-ingest"}
    if not settings.db_prepared_statements:
        kwargs["prepare_threshold"] = None
    return kwargs


def connect(settings: Settings) -> psycopg.Connection[Any]:
    """One autocommit connection to ``DATABASE_URL``: what a command or a scheduled task opens."""
    url = require(settings.database_url, "DATABASE_URL")
    return psycopg.connect(url, autocommit=True, connect_timeout=10, **connection_kwargs(settings))


def _pool_options(settings: Settings, name: str) -> dict[str, Any]:
    """What both kinds of pool are built from; the owner opens the pool."""
    return {
        "conninfo": require(settings.database_url, "DATABASE_URL"),
        "min_size": settings.db_pool_min,
        "max_size": settings.db_pool_max,
        "kwargs": connection_kwargs(settings),
        "name": name,
        "open": False,
    }


def sync_pool(settings: Settings, *, name: str) -> ConnectionPool:
    return ConnectionPool(**_pool_options(settings, name))


def async_pool(settings: Settings, *, name: str) -> AsyncConnectionPool:
    return AsyncConnectionPool(**_pool_options(settings, name))
