"""A database upgraded from an older release ends up with exactly the schema of one migrated from scratch."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg

from ingest.migrate import MIGRATIONS_DIR, migrate

Conn = psycopg.Connection[tuple[Any, ...]]

TZ = "Pacific/Auckland"
OLDER_RELEASE = "0012"  # the seed-compatible release: no event log, functions inside migrations

SCHEMAS = "('public', 'auth')"
CATALOG = {
    "functions": f"""
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid),
               p.proacl::text
        FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
        WHERE n.nspname IN {SCHEMAS}
    """,
    "triggers": f"""
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
        FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND n.nspname IN {SCHEMAS}
    """,
    "indexes": f"SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes WHERE schemaname IN {SCHEMAS}",
    "columns": f"""
        SELECT table_schema, table_name, ordinal_position, column_name, data_type, character_maximum_length,
               numeric_precision, numeric_scale, is_nullable, column_default, is_identity, identity_generation
        FROM information_schema.columns WHERE table_schema IN {SCHEMAS}
    """,
    "constraints": f"""
        SELECT n.nspname, c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint AS c JOIN pg_namespace AS n ON n.oid = c.connamespace
        WHERE n.nspname IN {SCHEMAS}
    """,
    "tables": f"""
        SELECT n.nspname, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relacl::text
        FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname IN {SCHEMAS} AND c.relkind IN ('r', 'v', 'm', 'S', 'p')
    """,
    "policies": f"""
        SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check
        FROM pg_policies WHERE schemaname IN {SCHEMAS}
    """,
    "schemas": "SELECT nspname, nspacl::text FROM pg_namespace WHERE nspname IN ('public', 'auth')",
    "migrations": "SELECT version, checksum FROM schema_migrations",
    "settings": "SELECT key, value FROM ingest_settings",
}


def catalog(conn: Conn) -> dict[str, list[tuple[Any, ...]]]:
    return {name: sorted(conn.execute(query).fetchall(), key=repr) for name, query in CATALOG.items()}


def test_upgrade_from_older_release_equals_fresh_database(db: Conn, empty_db_url: str, tmp_path: Path) -> None:
    """Migrations up to 0012 (an older release), then today's migrate, match a from-scratch migrate exactly."""
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name[:4] <= OLDER_RELEASE:
            shutil.copy(path, older / path.name)
    migrate(empty_db_url, local_timezone=TZ, directory=older, functions=None)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('call_events')").fetchone() == (None,)
        assert conn.execute("SELECT to_regprocedure('ingest_apply_patch(jsonb)')").fetchone() == (None,)
    migrate(empty_db_url, local_timezone=TZ)

    with psycopg.connect(empty_db_url, autocommit=True) as upgraded:
        got = catalog(upgraded)
    fresh = catalog(db)  # the test template: today's migrate on an empty database
    for name in CATALOG:
        assert got[name] == fresh[name], name
    assert any(row[1] == "ingest_apply_patch" for row in fresh["functions"])
