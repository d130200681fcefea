-- Placeholder parents (trigger user_sessions_ensure_parents, migration 0008): an assistant,
-- phone number or client seen for the first time gets a row so the foreign keys hold. A
-- client only when INGEST_CREATE_CLIENTS allows it (ingest_create_clients()): otherwise an
-- unknown client id is moved to metadata.unknown_client_id and the row has no client, so
-- nothing is billed to a client nobody registered. A
-- placeholder assistant takes the name the call's metadata gives its derived identity
-- (metadata.assistants.<id>.name: a transient assistant's, a squad's or a workflow's).
-- Runs after generate_call_analytics (BEFORE triggers fire in name order), so a client_id
-- it routed in is covered too.

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
        INSERT INTO assistants (id, name)
        VALUES (NEW.assistant_id, NEW.metadata #>> ARRAY['assistants', NEW.assistant_id::text, 'name'])
        ON CONFLICT DO NOTHING;
    END IF;
    IF missing_phone THEN
        INSERT INTO phone_numbers (id) VALUES (NEW.phone_number_id) ON CONFLICT DO NOTHING;
    END IF;
    IF missing_client AND ingest_create_clients() THEN
        INSERT INTO client_subscriptions (client_id, status) VALUES (NEW.client_id, 'unknown')
        ON CONFLICT DO NOTHING;
    ELSIF missing_client THEN
        NEW.metadata := coalesce(NEW.metadata, '{}'::jsonb) || jsonb_build_object('unknown_client_id', NEW.client_id);
        NEW.client_id := NULL;
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION ensure_user_session_parents() FROM PUBLIC;
