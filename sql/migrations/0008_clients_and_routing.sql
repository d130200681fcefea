-- The seed's parent tables and its foreign keys.
--   client_subscriptions  a client's plan; rate_per_minute prices calls the platform did not cost
--   client_monthly_usage  calls/minutes/cost per client and LOCAL month (maintained by 0010)
--   assistants            routes a call to its client by assistant
--   phone_numbers         routes a call to its client by phone number (checked first)
-- An event for an unknown assistant, phone number or client is never rejected: the
-- trigger user_sessions_ensure_parents inserts a placeholder parent so the FK holds.

CREATE TABLE IF NOT EXISTS client_subscriptions (
    client_id        text PRIMARY KEY,
    plan             text,
    rate_per_minute  numeric(10, 4),
    included_minutes integer,
    status           text,
    created_at       timestamptz DEFAULT now()
);
ALTER TABLE client_subscriptions
    ADD COLUMN IF NOT EXISTS plan text,
    ADD COLUMN IF NOT EXISTS rate_per_minute numeric(10, 4),
    ADD COLUMN IF NOT EXISTS included_minutes integer,
    ADD COLUMN IF NOT EXISTS status text,
    ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now();

CREATE TABLE IF NOT EXISTS client_monthly_usage (
    client_id  text NOT NULL REFERENCES client_subscriptions (client_id),
    month      date NOT NULL CHECK (extract(day FROM month) = 1),
    calls      integer NOT NULL DEFAULT 0,
    minutes    numeric(12, 2) NOT NULL DEFAULT 0,
    cost       numeric(12, 4) NOT NULL DEFAULT 0,
    updated_at timestamptz DEFAULT now(),
    PRIMARY KEY (client_id, month)
);

CREATE TABLE IF NOT EXISTS assistants (
    id         uuid PRIMARY KEY,
    client_id  text,
    name       text,
    created_at timestamptz DEFAULT now()
);
ALTER TABLE assistants
    ADD COLUMN IF NOT EXISTS client_id text,
    ADD COLUMN IF NOT EXISTS name text,
    ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now();

CREATE TABLE IF NOT EXISTS phone_numbers (
    id         uuid PRIMARY KEY,
    client_id  text,
    number     text,
    name       text,
    created_at timestamptz DEFAULT now()
);
ALTER TABLE phone_numbers
    ADD COLUMN IF NOT EXISTS client_id text,
    ADD COLUMN IF NOT EXISTS number text,
    ADD COLUMN IF NOT EXISTS name text,
    ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now();

CREATE INDEX IF NOT EXISTS idx_assistants_client_id ON assistants (client_id);
CREATE INDEX IF NOT EXISTS idx_phone_numbers_client_id ON phone_numbers (client_id);

-- Inserts a placeholder parent for an assistant, phone number or client not seen before
-- (clients: status 'unknown', no rate), only when the value is new on INSERT or changed
-- on UPDATE. Runs after generate_call_analytics (BEFORE triggers fire in name order),
-- so a client_id it routed in is covered too.
CREATE OR REPLACE FUNCTION ensure_user_session_parents() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    check_assistant boolean := NEW.assistant_id IS NOT NULL
        AND (TG_OP = 'INSERT' OR NEW.assistant_id IS DISTINCT FROM OLD.assistant_id);
    check_phone     boolean := NEW.phone_number_id IS NOT NULL
        AND (TG_OP = 'INSERT' OR NEW.phone_number_id IS DISTINCT FROM OLD.phone_number_id);
    check_client    boolean := NEW.client_id IS NOT NULL
        AND (TG_OP = 'INSERT' OR NEW.client_id IS DISTINCT FROM OLD.client_id);
    missing_assistant boolean;
    missing_phone     boolean;
    missing_client    boolean;
BEGIN
    IF NOT (check_assistant OR check_phone OR check_client) THEN
        RETURN NEW;  -- an update that changed no parent reference
    END IF;
    -- One round of lookups for all three parents.
    SELECT check_assistant AND NOT EXISTS (SELECT 1 FROM assistants WHERE id = NEW.assistant_id),
           check_phone AND NOT EXISTS (SELECT 1 FROM phone_numbers WHERE id = NEW.phone_number_id),
           check_client AND NOT EXISTS (SELECT 1 FROM client_subscriptions WHERE client_id = NEW.client_id)
    INTO missing_assistant, missing_phone, missing_client;
    IF missing_assistant THEN
        INSERT INTO assistants (id) VALUES (NEW.assistant_id) ON CONFLICT DO NOTHING;
    END IF;
    IF missing_phone THEN
        INSERT INTO phone_numbers (id) VALUES (NEW.phone_number_id) ON CONFLICT DO NOTHING;
    END IF;
    IF missing_client THEN
        INSERT INTO client_subscriptions (client_id, status) VALUES (NEW.client_id, 'unknown')
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION ensure_user_session_parents() FROM PUBLIC;

DROP TRIGGER IF EXISTS user_sessions_ensure_parents ON user_sessions;
CREATE TRIGGER user_sessions_ensure_parents
    BEFORE INSERT OR UPDATE ON user_sessions
    FOR EACH ROW EXECUTE FUNCTION ensure_user_session_parents();

-- Upgrading a table that already holds rows: placeholders for what they reference.
INSERT INTO assistants (id)
SELECT DISTINCT assistant_id FROM user_sessions WHERE assistant_id IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO phone_numbers (id)
SELECT DISTINCT phone_number_id FROM user_sessions WHERE phone_number_id IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO client_subscriptions (client_id, status)
SELECT DISTINCT client_id, 'unknown' FROM user_sessions WHERE client_id IS NOT NULL
ON CONFLICT DO NOTHING;

-- Sessions are billing records: deleting a parent that still has sessions is refused
-- (NO ACTION); parents are edited in place (a placeholder gets its name, client, rate).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'user_sessions'::regclass AND conname = 'user_sessions_assistant_id_fkey') THEN
        ALTER TABLE user_sessions ADD CONSTRAINT user_sessions_assistant_id_fkey
            FOREIGN KEY (assistant_id) REFERENCES assistants (id);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'user_sessions'::regclass AND conname = 'user_sessions_phone_number_id_fkey') THEN
        ALTER TABLE user_sessions ADD CONSTRAINT user_sessions_phone_number_id_fkey
            FOREIGN KEY (phone_number_id) REFERENCES phone_numbers (id);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'user_sessions'::regclass AND conname = 'user_sessions_client_id_fkey') THEN
        ALTER TABLE user_sessions ADD CONSTRAINT user_sessions_client_id_fkey
            FOREIGN KEY (client_id) REFERENCES client_subscriptions (client_id);
    END IF;
END
$$;
