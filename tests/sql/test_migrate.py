"""The migration runner: order, idempotency, checksums, upgrades, Supabase coexistence."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from ingest.migrate import FUNCTIONS_DIR, MIGRATIONS_DIR, MigrationError, discover, discover_functions, migrate, pending

TZ = "Pacific/Auckland"

# user_sessions as the seed's v1.0.0 created it, by hand, before this project existed.
V1_0_0_TABLE = """
CREATE TABLE user_sessions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  call_id uuid UNIQUE,
  assistant_id uuid NOT NULL,
  phone_number_id uuid,
  business_number text,
  customer_number text,
  started_at_utc timestamptz,
  ended_at_utc timestamptz,
  ended_reason text,
  duration_minutes numeric(10,2),
  duration_seconds numeric(10,3),
  cost_total numeric(10,4),
  type text,
  server_messages jsonb,
  user_id text,
  session_id text UNIQUE,
  source text,
  metadata jsonb,
  client_id text,
  created_at timestamptz DEFAULT now()
);
INSERT INTO user_sessions (call_id, assistant_id, customer_number, started_at_utc, ended_at_utc, type, client_id)
VALUES ('5b0c4f0e-8f0a-4f57-9d8e-2b1f3c4d5e6f', '0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a', '+6497654321',
        '2026-03-01T01:00:00Z', '2026-03-01T01:05:30Z', 'inbound', 'client-legacy');
"""


def columns(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'user_sessions'"
    ).fetchall()
    return {str(name) for (name,) in rows}


def test_migrations_are_ordered_and_named() -> None:
    """Every migration file has a 4-digit ordinal and the ordinals are unique and increasing."""
    versions = [m.version for m in discover()]
    ordinals = [v.split("_", 1)[0] for v in versions]
    assert all(len(o) == 4 and o.isdigit() for o in ordinals)
    assert ordinals == sorted(set(ordinals))
    assert versions[0].startswith("0001_v1_0_0")


def test_fresh_database_gets_every_migration_once(empty_db_url: str) -> None:
    """A first run applies every file in order and records its checksum; a second run is a no-op."""
    applied = migrate(empty_db_url, local_timezone=TZ)
    assert applied == [m.version for m in discover()]
    assert migrate(empty_db_url, local_timezone=TZ) == []
    assert pending(empty_db_url) == []
    with psycopg.connect(empty_db_url) as conn:
        recorded = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
    assert recorded == {m.version: m.checksum for m in discover()}


RECORD_AND_APPLY = (
    "ingest_record_and_apply(timestamptz, text, text, text, text, jsonb, bytea, boolean, text, timestamptz, jsonb,"
    " bytea, bytea)"
)


def test_functions_are_reapplied_on_every_run(empty_db_url: str) -> None:
    """Every run re-applies sql/functions: a function changed or dropped by hand is back afterwards."""
    migrate(empty_db_url, local_timezone=TZ)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION ingest_source_rank(source text) RETURNS integer LANGUAGE sql AS 'SELECT 0'"
        )
        conn.execute(f"DROP FUNCTION {RECORD_AND_APPLY}")
    assert migrate(empty_db_url, local_timezone=TZ) == []
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT ingest_source_rank('report'), ingest_source_rank('event')").fetchone() == (8, 0)
        restored = f"SELECT to_regprocedure('{RECORD_AND_APPLY}')"
        assert conn.execute(restored).fetchone() != (None,)


def test_functions_files_define_functions_only(empty_db_url: str) -> None:
    """sql/functions creates functions (and grants on them), nothing else: schema changes are migrations."""
    files = discover_functions()
    assert [p.name for p in files] == sorted(p.name for p in FUNCTIONS_DIR.glob("*.sql"))
    assert all(p.name[:2].isdigit() and p.name[2] == "_" for p in files)
    migrate(empty_db_url, local_timezone=TZ, functions=None)
    with psycopg.connect(empty_db_url) as conn:
        before = conn.execute("SELECT count(*) FROM pg_class").fetchone()
    migrate(empty_db_url, local_timezone=TZ)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_class").fetchone() == before


def test_missing_functions_folder_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    """A package shipped without sql/functions stops before touching the database."""
    with pytest.raises(MigrationError, match="no functions files"):
        migrate(empty_db_url, local_timezone=TZ, functions=tmp_path)
    assert pending(empty_db_url) == [m.version for m in discover()]


def test_changed_applied_file_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    """Editing an applied migration stops the run before any new file is applied."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    migrate(empty_db_url, local_timezone=TZ, directory=directory)
    first = sorted(directory.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    (directory / "9999_new.sql").write_text("CREATE TABLE should_not_exist (id int);")
    with pytest.raises(MigrationError, match=first.stem):
        migrate(empty_db_url, local_timezone=TZ, directory=directory)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('should_not_exist')").fetchone() == (None,)


def test_unknown_applied_version_is_refused(empty_db_url: str) -> None:
    """A database migrated by newer code is not silently 'downgraded' by older files."""
    migrate(empty_db_url, local_timezone=TZ)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, checksum) VALUES ('9999_from_the_future', 'x')")
    with pytest.raises(MigrationError, match="9999_from_the_future"):
        migrate(empty_db_url, local_timezone=TZ)


def test_failed_migration_rolls_back_and_is_not_recorded(empty_db_url: str, tmp_path: Path) -> None:
    """A file that fails leaves neither its objects nor a schema_migrations row behind."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "9999_broken.sql").write_text("CREATE TABLE half_done (id int); SELECT 1/0;")
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(empty_db_url, local_timezone=TZ, directory=directory)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM schema_migrations WHERE version = '9999_broken'").fetchone() == (0,)
    assert pending(empty_db_url, directory) == ["9999_broken"]


def test_upgrade_from_hand_made_v1_0_0_table(empty_db_url: str) -> None:
    """A user_sessions table created by hand at v1.0.0 is upgraded in place, its rows kept."""
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(V1_0_0_TABLE)
    migrate(empty_db_url, local_timezone=TZ)
    with psycopg.connect(empty_db_url) as conn:
        assert {"started_at_nz", "call_summary", "keywords", "call_outcome"} <= columns(conn)
        row = conn.execute(
            "SELECT client_id, customer_number FROM user_sessions WHERE call_id = %s",
            ("5b0c4f0e-8f0a-4f57-9d8e-2b1f3c4d5e6f",),
        ).fetchone()
        assert row == ("client-legacy", "+6497654321")
        policies = {name for (name,) in conn.execute("SELECT policyname FROM pg_policies").fetchall()}
        assert {"clients_can_view_own_sessions", "assistants_can_view_assigned_sessions"} <= policies


def test_supabase_objects_are_left_alone(empty_db_url: str) -> None:
    """An existing auth schema, auth.jwt() and roles (as Supabase provides them) are not replaced."""
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA auth")
        conn.execute(
            "CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE"
            ' AS $$ SELECT \'{"client_id": "from-supabase"}\'::jsonb $$'
        )
        before = conn.execute("SELECT oid, prosrc FROM pg_proc WHERE proname = 'jwt'").fetchone()
    migrate(empty_db_url, local_timezone=TZ)
    with psycopg.connect(empty_db_url) as conn:
        after = conn.execute("SELECT oid, prosrc FROM pg_proc WHERE proname = 'jwt'").fetchone()
        assert after == before
        assert conn.execute("SELECT auth.jwt() ->> 'client_id'").fetchone() == ("from-supabase",)
        roles = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
        assert {"anon", "authenticated", "service_role"} <= roles


def test_local_timezone_is_recorded_and_validated(empty_db_url: str) -> None:
    """migrate() stores LOCAL_TIMEZONE for the database functions and refuses an unknown zone."""
    migrate(empty_db_url, local_timezone="Australia/Sydney")
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT ingest_local_timezone()").fetchone() == ("Australia/Sydney",)
    migrate(empty_db_url, local_timezone=TZ)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT ingest_local_timezone()").fetchone() == (TZ,)
    with pytest.raises(MigrationError, match="Mars/Olympus"):
        migrate(empty_db_url, local_timezone="Mars/Olympus")


def test_concurrent_migrators_apply_each_file_once(empty_db_url: str) -> None:
    """Two deploys migrating at once serialise on the advisory lock; each file runs once."""
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: migrate(empty_db_url, local_timezone=TZ), range(2)))
    assert sorted(len(r) for r in results) == [0, len(discover())]


def test_ingest_migrate_command(empty_db_url: str) -> None:
    """`ingest migrate` applies the schema to DATABASE_URL and reports what it did."""
    env = {**os.environ, "DATABASE_URL": empty_db_url}
    first = subprocess.run([sys.executable, "-m", "ingest", "migrate"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert f"applied {len(discover())} migration(s)" in first.stdout
    again = subprocess.run([sys.executable, "-m", "ingest", "migrate"], env=env, capture_output=True, text=True)
    assert again.returncode == 0
    assert "applied 0 migration(s)" in again.stdout


def test_ingest_migrate_without_database_url_fails_clearly() -> None:
    """Without DATABASE_URL the command says what is missing and exits 2."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run([sys.executable, "-m", "ingest", "migrate"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr
