"""The migrated schema, read back from the catalogs, against the seed (seed/user_sessions.md)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ingest.migrate import migrate

Conn = psycopg.Connection[tuple[Any, ...]]

# (name, data_type, numeric precision, numeric scale, nullable, default) as the seed lists them.
SEED_COLUMNS = [
    ("id", "uuid", None, None, "NO", "gen_random_uuid()"),
    ("call_id", "uuid", None, None, "YES", None),
    ("assistant_id", "uuid", None, None, "NO", None),
    ("phone_number_id", "uuid", None, None, "YES", None),
    ("business_number", "text", None, None, "YES", None),
    ("customer_number", "text", None, None, "YES", None),
    ("started_at_utc", "timestamp with time zone", None, None, "YES", None),
    ("started_at_nz", "timestamp with time zone", None, None, "YES", None),
    ("ended_at_utc", "timestamp with time zone", None, None, "YES", None),
    ("ended_at_nz", "timestamp with time zone", None, None, "YES", None),
    ("ended_reason", "text", None, None, "YES", None),
    ("duration_minutes", "numeric", 10, 2, "YES", None),
    ("duration_seconds", "numeric", 10, 3, "YES", None),
    ("cost_total", "numeric", 10, 4, "YES", None),
    ("type", "text", None, None, "YES", None),
    ("server_messages", "jsonb", None, None, "YES", None),
    ("user_id", "text", None, None, "YES", None),
    ("session_id", "text", None, None, "YES", None),
    ("source", "text", None, None, "YES", None),
    ("metadata", "jsonb", None, None, "YES", None),
    ("client_id", "text", None, None, "YES", None),
    ("created_at", "timestamp with time zone", None, None, "YES", "now()"),
    ("call_summary", "text", None, None, "YES", None),
    ("call_transcript", "text", None, None, "YES", None),
    ("sentiment", "text", None, None, "YES", None),
    ("call_outcome", "text", None, None, "YES", None),
    ("keywords", "text[]", None, None, "YES", None),
]

BTREE = "CREATE INDEX {name} ON public.user_sessions USING btree ({column})"
SEED_INDEXES = {
    "idx_user_sessions_assistant_id": BTREE.format(name="idx_user_sessions_assistant_id", column="assistant_id"),
    "idx_user_sessions_call_id": BTREE.format(name="idx_user_sessions_call_id", column="call_id"),
    "idx_user_sessions_customer_number": BTREE.format(
        name="idx_user_sessions_customer_number", column="customer_number"
    ),
    "idx_user_sessions_started_at_utc": BTREE.format(name="idx_user_sessions_started_at_utc", column="started_at_utc"),
    "idx_user_sessions_ended_at_utc": BTREE.format(name="idx_user_sessions_ended_at_utc", column="ended_at_utc"),
    "idx_user_sessions_started_at_nz": BTREE.format(name="idx_user_sessions_started_at_nz", column="started_at_nz"),
    "idx_user_sessions_ended_at_nz": BTREE.format(name="idx_user_sessions_ended_at_nz", column="ended_at_nz"),
    "idx_user_sessions_phone_number_id": BTREE.format(
        name="idx_user_sessions_phone_number_id", column="phone_number_id"
    ),
    "idx_user_sessions_client_id": BTREE.format(name="idx_user_sessions_client_id", column="client_id"),
    "ux_user_sessions_session_id": (
        "CREATE UNIQUE INDEX ux_user_sessions_session_id ON public.user_sessions USING btree (session_id)"
    ),
    "idx_user_sessions_summary_search": (
        "CREATE INDEX idx_user_sessions_summary_search ON public.user_sessions"
        " USING gin (to_tsvector('english'::regconfig, call_summary))"
    ),
    "idx_user_sessions_transcript_search": (
        "CREATE INDEX idx_user_sessions_transcript_search ON public.user_sessions"
        " USING gin (to_tsvector('english'::regconfig, call_transcript))"
    ),
    "idx_user_sessions_sentiment": BTREE.format(name="idx_user_sessions_sentiment", column="sentiment"),
    "idx_user_sessions_call_outcome": BTREE.format(name="idx_user_sessions_call_outcome", column="call_outcome"),
}
# What the PRIMARY KEY and the UNIQUE constraint on call_id create besides the seed's 14.
CONSTRAINT_INDEXES = {
    "user_sessions_pkey": "CREATE UNIQUE INDEX user_sessions_pkey ON public.user_sessions USING btree (id)",
    "user_sessions_call_id_key": (
        "CREATE UNIQUE INDEX user_sessions_call_id_key ON public.user_sessions USING btree (call_id)"
    ),
}

# Beside the seed's: the calls without a start or end time, by creation (migration 0026, the anomaly detectors).
SERVICE_INDEXES = {
    "idx_user_sessions_untimed_created_at": (
        "CREATE INDEX idx_user_sessions_untimed_created_at ON public.user_sessions USING btree (created_at)"
        " WHERE ((started_at_utc IS NULL) AND (ended_at_utc IS NULL))"
    ),
}

ASSISTANT = "0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a"


def seed_columns(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        """
        SELECT column_name,
               CASE WHEN data_type = 'ARRAY' THEN ltrim(udt_name, '_') || '[]' ELSE data_type END,
               numeric_precision, numeric_scale, is_nullable, column_default
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'user_sessions'
        """
    ).fetchall()


def index_definitions(conn: Conn) -> dict[str, str]:
    rows = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'user_sessions'"
    ).fetchall()
    return dict(rows)


# Beside the seed's columns: the sealed originals of the redacted transcript and summary.
SERVICE_COLUMNS = [
    ("call_summary_original", "text", None, None, "YES", None),
    ("call_transcript_original", "text", None, None, "YES", None),
]


def test_columns_match_the_seed(db: Conn) -> None:
    """Every seed column exists with its type, precision, scale, nullability and default; the originals are added."""
    assert sorted(seed_columns(db)) == sorted(SEED_COLUMNS + SERVICE_COLUMNS)


def test_indexes_match_the_seed(db: Conn) -> None:
    """The seed's 14 named indexes exist with their columns, expressions, GIN method and uniqueness; one is added."""
    assert index_definitions(db) == SEED_INDEXES | CONSTRAINT_INDEXES | SERVICE_INDEXES


def test_primary_key_and_unique_constraints(db: Conn) -> None:
    """id is the primary key, call_id carries a UNIQUE constraint, session_id a unique index."""
    constraints = dict(
        db.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'user_sessions'::regclass AND contype IN ('p', 'u')"
        ).fetchall()
    )
    assert constraints == {"user_sessions_pkey": "PRIMARY KEY (id)", "user_sessions_call_id_key": "UNIQUE (call_id)"}
    unique = db.execute(
        "SELECT indisunique FROM pg_index WHERE indexrelid = 'ux_user_sessions_session_id'::regclass"
    ).fetchone()
    assert unique == (True,)


@pytest.mark.parametrize("key", ["call_id", "session_id"])
def test_upserts_infer_the_unique_keys(db: Conn, key: str) -> None:
    """INSERT … ON CONFLICT (call_id) and ON CONFLICT (session_id) both resolve to one row."""
    value = "5b0c4f0e-8f0a-4f57-9d8e-2b1f3c4d5e6f" if key == "call_id" else "session-1"
    statement = (
        f"INSERT INTO user_sessions ({key}, assistant_id, type) VALUES (%s, %s, %s)"
        f" ON CONFLICT ({key}) DO UPDATE SET type = excluded.type"
    )
    db.execute(statement, (value, ASSISTANT, "inbound"))
    db.execute(statement, (value, ASSISTANT, "outbound"))
    assert db.execute("SELECT count(*), min(type) FROM user_sessions").fetchone() == (1, "outbound")


def test_duplicate_keys_are_rejected(db: Conn) -> None:
    """A second row with the same session_id violates the unique index."""
    db.execute("INSERT INTO user_sessions (assistant_id, session_id) VALUES (%s, 's')", (ASSISTANT,))
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("INSERT INTO user_sessions (assistant_id, session_id) VALUES (%s, 's')", (ASSISTANT,))


def test_policies_match_the_seed(db: Conn) -> None:
    """RLS is on and the seed's two policies exist with their command, role and USING expression."""
    assert db.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'user_sessions'::regclass").fetchone() == (True,)
    policies = db.execute(
        "SELECT policyname, permissive, cmd, roles::text[], qual, with_check FROM pg_policies"
        " WHERE schemaname = 'public' AND tablename = 'user_sessions' ORDER BY policyname"
    ).fetchall()
    assert policies == [
        (
            "assistants_can_view_assigned_sessions",
            "PERMISSIVE",
            "SELECT",
            ["service_role"],
            "(assistant_id = ingest_try_uuid((auth.jwt() ->> 'assistant_id'::text)))",
            None,
        ),
        (
            "clients_can_view_own_sessions",
            "PERMISSIVE",
            "SELECT",
            ["authenticated"],
            "((auth.jwt() ->> 'client_id'::text) = client_id)",
            None,
        ),
    ]


def test_triggers_match_the_seed(db: Conn) -> None:
    """The seed's two triggers exist under their names, events and functions (plus the parent guard)."""
    rows = db.execute(
        """
        SELECT trigger_name, action_timing, string_agg(event_manipulation, ',' ORDER BY event_manipulation),
               action_orientation, action_statement
        FROM information_schema.triggers
        WHERE event_object_schema = 'public' AND event_object_table = 'user_sessions'
        GROUP BY 1, 2, 4, 5 ORDER BY 1
        """
    ).fetchall()
    assert rows == [
        ("generate_call_analytics", "BEFORE", "INSERT,UPDATE", "ROW", "EXECUTE FUNCTION process_call_analytics()"),
        (
            "update_client_usage_on_session_end",
            "AFTER",
            "DELETE,INSERT,UPDATE",
            "ROW",
            "EXECUTE FUNCTION update_client_monthly_usage()",
        ),
        (
            "user_sessions_ensure_parents",
            "BEFORE",
            "INSERT,UPDATE",
            "ROW",
            "EXECUTE FUNCTION ensure_user_session_parents()",
        ),
    ]


def test_foreign_keys_match_the_seed(db: Conn) -> None:
    """assistant_id, phone_number_id and client_id reference their parent tables."""
    rows = db.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'user_sessions'::regclass AND contype = 'f' ORDER BY conname"
    ).fetchall()
    assert rows == [
        ("user_sessions_assistant_id_fkey", "FOREIGN KEY (assistant_id) REFERENCES assistants(id)"),
        ("user_sessions_client_id_fkey", "FOREIGN KEY (client_id) REFERENCES client_subscriptions(client_id)"),
        ("user_sessions_phone_number_id_fkey", "FOREIGN KEY (phone_number_id) REFERENCES phone_numbers(id)"),
    ]


def test_parent_tables_have_their_columns(db: Conn) -> None:
    """client_subscriptions, client_monthly_usage, assistants and phone_numbers have the agreed columns."""
    rows = db.execute(
        """
        SELECT table_name, string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position)
        FROM information_schema.columns
        WHERE table_schema = 'public'
          AND table_name IN ('client_subscriptions', 'client_monthly_usage', 'assistants', 'phone_numbers')
        GROUP BY table_name
        """
    ).fetchall()
    assert dict(rows) == {
        "client_subscriptions": "client_id:text,plan:text,rate_per_minute:numeric,included_minutes:integer,"
        "status:text,created_at:timestamp with time zone,"
        # per-client retention overrides (migration 0023)
        "retention_raw_events_days:integer,retention_transcript_days:integer,retention_anonymise_days:integer",
        "client_monthly_usage": "client_id:text,month:date,calls:integer,minutes:numeric,cost:numeric,"
        "updated_at:timestamp with time zone",
        "assistants": "id:uuid,client_id:text,name:text,created_at:timestamp with time zone",
        "phone_numbers": "id:uuid,client_id:text,number:text,name:text,created_at:timestamp with time zone",
    }
    pk = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'client_monthly_usage'::regclass AND contype = 'p'"
    ).fetchone()
    assert pk == ("PRIMARY KEY (client_id, month)",)


def test_settings_and_helpers_exist(db: Conn) -> None:
    """ingest_settings holds the local zone and the helper functions read it."""
    assert db.execute("SELECT value FROM ingest_settings WHERE key = 'local_timezone'").fetchone() == (
        "Pacific/Auckland",
    )
    assert db.execute("SELECT ingest_local_timezone()").fetchone() == ("Pacific/Auckland",)
    volatility = dict(
        db.execute(
            "SELECT proname, provolatile FROM pg_proc WHERE proname IN"
            " ('ingest_local_timezone', 'ingest_try_uuid', 'ingest_local_date', 'ingest_local_month')"
        ).fetchall()
    )
    assert volatility == {
        "ingest_local_timezone": "s",
        "ingest_try_uuid": "i",
        "ingest_local_date": "s",
        "ingest_local_month": "s",
    }


V1_0_0_WITHOUT_INDEXES = """
CREATE TABLE user_sessions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  call_id uuid,
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
  session_id text,
  source text,
  metadata jsonb,
  client_id text,
  created_at timestamptz DEFAULT now()
);
INSERT INTO user_sessions (call_id, assistant_id, phone_number_id, started_at_utc, ended_at_utc,
                           duration_minutes, cost_total, client_id)
VALUES ('5b0c4f0e-8f0a-4f57-9d8e-2b1f3c4d5e6f', '0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a',
        '7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d', '2026-03-01T01:00:00Z', '2026-03-01T01:05:30Z',
        5.5, 1.25, 'client-legacy');
"""

V1_0_0_WITH_CONSTRAINTS = V1_0_0_WITHOUT_INDEXES.replace("call_id uuid,", "call_id uuid UNIQUE,").replace(
    "session_id text,", "session_id text CONSTRAINT user_sessions_session_id_key UNIQUE,"
)


@pytest.mark.parametrize("hand_made", [V1_0_0_WITHOUT_INDEXES, V1_0_0_WITH_CONSTRAINTS], ids=["bare", "unique"])
def test_upgrade_of_hand_made_table_reaches_the_same_schema(db: Conn, empty_db_url: str, hand_made: str) -> None:
    """A hand-made v1.0.0 table (bare, or with UNIQUE constraints) migrates to the fresh schema's indexes."""
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(hand_made)
    migrate(empty_db_url, local_timezone="Pacific/Auckland")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert sorted(seed_columns(conn)) == sorted(SEED_COLUMNS + SERVICE_COLUMNS)
        assert index_definitions(conn) == index_definitions(db)
        # Existing rows got placeholder parents and were counted once in usage.
        assert conn.execute("SELECT status FROM client_subscriptions WHERE client_id = 'client-legacy'").fetchone() == (
            "unknown",
        )
        assert conn.execute("SELECT count(*) FROM assistants").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM phone_numbers").fetchone() == (1,)
        usage = conn.execute(
            "SELECT client_id, month::text, calls, minutes::text, cost::text FROM client_monthly_usage"
        )
        assert usage.fetchall() == [("client-legacy", "2026-03-01", 1, "5.50", "1.2500")]
        conn.execute("UPDATE user_sessions SET call_summary = 'touched'")
        assert conn.execute("SELECT calls FROM client_monthly_usage").fetchone() == (1,)
