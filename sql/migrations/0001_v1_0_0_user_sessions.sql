-- v1.0.0 (seed, 2025-11-01): initial user_sessions table with basic call tracking.
-- Upgrade-safe: a table created by hand at v1.0.0 (with or without its indexes) is kept.

CREATE TABLE IF NOT EXISTS user_sessions (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    call_id          uuid UNIQUE,
    assistant_id     uuid NOT NULL,
    phone_number_id  uuid,
    business_number  text,
    customer_number  text,
    started_at_utc   timestamptz,
    ended_at_utc     timestamptz,
    ended_reason     text,
    duration_minutes numeric(10, 2),
    duration_seconds numeric(10, 3),
    cost_total       numeric(10, 4),
    type             text,
    server_messages  jsonb,
    user_id          text,
    session_id       text,
    source           text,
    metadata         jsonb,
    client_id        text,
    created_at       timestamptz DEFAULT now()
);

-- A hand-made table may lack the UNIQUE on call_id: add it unless some plain unique
-- index on (call_id) already enforces it.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'user_sessions'::regclass
          AND i.indisunique AND i.indnkeyatts = 1
          AND i.indpred IS NULL AND i.indexprs IS NULL
          AND a.attname = 'call_id'
    ) THEN
        ALTER TABLE user_sessions ADD CONSTRAINT user_sessions_call_id_key UNIQUE (call_id);
    END IF;
END
$$;

-- session_id is unique through one index under the seed's name. If an earlier hand-made
-- table declared it as a UNIQUE constraint, that constraint (and its index) is renamed
-- rather than duplicated. ON CONFLICT (session_id) infers either form.
DO $$
DECLARE
    existing name;
BEGIN
    IF to_regclass('ux_user_sessions_session_id') IS NULL THEN
        SELECT c.conname INTO existing
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.conrelid = 'user_sessions'::regclass
          AND c.contype = 'u' AND cardinality(c.conkey) = 1
          AND a.attname = 'session_id'
        LIMIT 1;
        IF existing IS NOT NULL THEN
            EXECUTE format('ALTER TABLE user_sessions RENAME CONSTRAINT %I TO ux_user_sessions_session_id', existing);
        END IF;
    END IF;
END
$$;

CREATE UNIQUE INDEX IF NOT EXISTS ux_user_sessions_session_id ON user_sessions (session_id);
CREATE INDEX IF NOT EXISTS idx_user_sessions_assistant_id ON user_sessions (assistant_id);
CREATE INDEX IF NOT EXISTS idx_user_sessions_call_id ON user_sessions (call_id);
CREATE INDEX IF NOT EXISTS idx_user_sessions_customer_number ON user_sessions (customer_number);
CREATE INDEX IF NOT EXISTS idx_user_sessions_started_at_utc ON user_sessions (started_at_utc);
CREATE INDEX IF NOT EXISTS idx_user_sessions_ended_at_utc ON user_sessions (ended_at_utc);
CREATE INDEX IF NOT EXISTS idx_user_sessions_phone_number_id ON user_sessions (phone_number_id);
CREATE INDEX IF NOT EXISTS idx_user_sessions_client_id ON user_sessions (client_id);
