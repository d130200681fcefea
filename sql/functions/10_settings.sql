-- ingest_settings' guard: rejects a local_timezone Postgres does not know (the table and
-- its trigger are in migration 0006).

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
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION ingest_settings_check() FROM PUBLIC;
