-- ingest_settings' guard: rejects a local_timezone Postgres does not know and a
-- create_clients that is not 'true' or 'false' (the table and its trigger are in migration
-- 0006); ingest_create_clients() reads the latter.

-- A zone Postgres does not know would make every user_sessions write fail later;
-- refuse it when it is stored instead.
CREATE OR REPLACE FUNCTION ingest_settings_check() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.key = 'local_timezone' THEN
        BEGIN
            PERFORM now() AT TIME ZONE NEW.value;
        EXCEPTION WHEN invalid_parameter_value OR feature_not_supported THEN
            RAISE EXCEPTION 'ingest_settings: unknown time zone %', quote_literal(NEW.value)
                USING ERRCODE = 'invalid_parameter_value';
        END;
    ELSIF NEW.key = 'create_clients' AND NEW.value NOT IN ('true', 'false') THEN
        RAISE EXCEPTION 'ingest_settings: create_clients must be true or false, not %', quote_literal(NEW.value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION ingest_settings_check() FROM PUBLIC;

-- INGEST_CREATE_CLIENTS, stored by `ingest migrate`: whether a client id nobody registered in
-- client_subscriptions creates one (ensure_user_session_parents). False when unset: whoever
-- holds the webhook secret must not decide which client is billed.
CREATE OR REPLACE FUNCTION ingest_create_clients() RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    flag text;
BEGIN
    SELECT s.value INTO flag FROM public.ingest_settings AS s WHERE s.key = 'create_clients';
    RETURN coalesce(flag = 'true', false);
END
$$;
