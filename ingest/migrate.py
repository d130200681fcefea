"""Bring a database's schema up to date: ``sql/migrations`` once each, then ``sql/functions`` always.

Migrations hold schema changes. Each runs in its own transaction and is recorded in
``schema_migrations`` with a SHA-256 of its bytes. Re-running is a no-op; a file that
changed after it was applied stops the run before anything is touched.

Functions files hold every function the service owns (``CREATE OR REPLACE``, with their
grants). They are not recorded: every run applies all of them, in name order, each in
its own transaction, so a function's current definition lives in exactly one file and
an edit reaches every database on the next migrate. A session-level advisory lock keeps
two migrators (say two deploys starting at once) from interleaving.

The ``sql/`` folder ships inside the package (``ingest/sql`` links to it in the source
tree), so an installed ``ingest migrate`` finds it next to this module.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
FUNCTIONS_DIR = SQL_DIR / "functions"
LOCK_KEY = 0x5641_5049  # "VAPI": one advisory lock for every migrator

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The database and the migration files disagree; nothing was applied."""


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path
    checksum: str

    @classmethod
    def load(cls, path: Path) -> Migration:
        return cls(path.stem, path, hashlib.sha256(path.read_bytes()).hexdigest())

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = [Migration.load(path) for path in sorted(directory.glob("*.sql"))]
    if not migrations:
        raise MigrationError(f"no migration files in {directory}")
    return migrations


def discover_functions(directory: Path = FUNCTIONS_DIR) -> list[Path]:
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise MigrationError(f"no functions files in {directory}")
    return files


def _applied(conn: psycopg.Connection[tuple[str, str]]) -> dict[str, str]:
    return dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())


def _check(migrations: list[Migration], applied: dict[str, str]) -> None:
    known = {m.version for m in migrations}
    changed = [m.version for m in migrations if m.version in applied and applied[m.version] != m.checksum]
    unknown = sorted(set(applied) - known)
    problems = []
    if changed:
        problems.append(f"applied migrations changed on disk: {', '.join(changed)}")
    if unknown:
        problems.append(f"database has migrations this code does not know: {', '.join(unknown)}")
    if problems:
        raise MigrationError("; ".join(problems) + " — refusing to migrate")


STORE_SETTING = (
    "INSERT INTO ingest_settings (key, value) VALUES (%s, %s)"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
    " WHERE ingest_settings.value IS DISTINCT FROM EXCLUDED.value"
)


def _set_timezone(conn: psycopg.Connection[tuple[str, str]], local_timezone: str) -> None:
    if not conn.execute("SELECT 1 FROM pg_timezone_names WHERE name = %s", (local_timezone,)).fetchone():
        raise MigrationError(f"Postgres does not know the time zone {local_timezone!r}")
    conn.execute(STORE_SETTING, ("local_timezone", local_timezone))


def _log_progress(notice: psycopg.errors.Diagnostic) -> None:
    log.info("migration progress", extra={"notice": notice.message_primary})


def migrate(
    conninfo: str,
    *,
    local_timezone: str,
    create_clients: bool | None = None,
    directory: Path = MIGRATIONS_DIR,
    functions: Path | None = FUNCTIONS_DIR,
) -> list[str]:
    """Bring the database up to date; return the migration versions applied by this call.

    ``functions=None`` applies the migrations alone, as releases before ``sql/functions``
    did (the upgrade tests build such databases). ``create_clients`` (None: the environment's
    ``INGEST_CREATE_CLIENTS``) is stored as ``create_clients`` for ``ingest_create_clients()``.
    """
    if create_clients is None:
        from ingest.settings import env_flag

        create_clients = env_flag(os.environ, "INGEST_CREATE_CLIENTS", False)
    migrations = discover(directory)
    function_files = discover_functions(functions) if functions is not None else []
    done: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        # A long migration reports its progress as notices (0022: rows copied so far)
        conn.add_notice_handler(_log_progress)
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(CREATE_LEDGER)
            applied = _applied(conn)
            _check(migrations, applied)
            for migration in migrations:
                if migration.version in applied:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                        (migration.version, migration.checksum),
                    )
                log.info("migration applied", extra={"version": migration.version})
                done.append(migration.version)
            for path in function_files:
                with conn.transaction():
                    conn.execute(path.read_bytes())
            if function_files:
                log.info("functions applied", extra={"files": [path.name for path in function_files]})
            with conn.transaction():
                _set_timezone(conn, local_timezone)
                conn.execute(STORE_SETTING, ("create_clients", "true" if create_clients else "false"))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return done


def pending(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Versions on disk not yet applied (empty when the schema is current)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        applied = _applied(conn) if exists and exists[0] else {}
    return [m.version for m in discover(directory) if m.version not in applied]
