-- Supabase compatibility on plain Postgres: the auth schema, the three API roles and
-- auth.jwt() reading PostgREST's request.jwt.claims. Nothing Supabase already provides
-- is replaced or re-granted.

CREATE SCHEMA IF NOT EXISTS auth;

-- Roles are cluster-wide: another database's migration may create them at the same
-- moment, which surfaces as duplicate_object or a unique violation on pg_authid.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'auth' AND p.proname = 'jwt'
    ) THEN
        -- Supabase's own definition.
        CREATE FUNCTION auth.jwt() RETURNS jsonb
        LANGUAGE sql STABLE
        AS $fn$
            select
              coalesce(
                nullif(current_setting('request.jwt.claim', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')
              )::jsonb
        $fn$;
    END IF;
END
$$;

-- Grant only what is missing; where we may not grant (auth owned by Supabase), say so.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        BEGIN
            IF NOT has_schema_privilege(role_name, 'auth', 'USAGE') THEN
                EXECUTE format('GRANT USAGE ON SCHEMA auth TO %I', role_name);
            END IF;
            IF NOT has_function_privilege(role_name, 'auth.jwt()', 'EXECUTE') THEN
                EXECUTE format('GRANT EXECUTE ON FUNCTION auth.jwt() TO %I', role_name);
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'auth grants for % left as they are: %', role_name, SQLERRM;
        END;
    END LOOP;
END
$$;
