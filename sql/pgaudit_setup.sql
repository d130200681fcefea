-- pgaudit object auditing of user_sessions (docs/security.md#reads-straight-from-the-database-pgaudit).
--
-- Every statement that reads user_sessions (directly, or through a view over it such as
-- user_sessions_local) in a session that logged in as `authenticator` — PostgREST's login
-- role, which then switches to anon, authenticated or service_role for each request of a
-- Supabase client — writes an `AUDIT: OBJECT,…,SELECT,TABLE,public.user_sessions,…` line to
-- the Postgres log. pgaudit logs the database role, not the JWT's subject.
--
-- Not a migration: it needs pgaudit loaded by the server (shared_preload_libraries; Supabase
-- loads it), which `ingest migrate` cannot assume. Run it once per database, after
-- `ingest migrate`, as a superuser (on Supabase: the postgres role, in the SQL editor):
--     psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/pgaudit_setup.sql
-- Running it again changes nothing. tests/sql/test_pgaudit_setup.py runs this file on a
-- server with pgaudit loaded and finds the log line.

CREATE EXTENSION IF NOT EXISTS pgaudit;

-- The audit role: nobody logs in as it or inherits from it; what it may do is what pgaudit logs.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ingest_auditor') THEN
        CREATE ROLE ingest_auditor NOLOGIN NOINHERIT;
    END IF;
END
$$;

GRANT SELECT ON user_sessions TO ingest_auditor;

-- Set on the login role, as Supabase allows pgaudit settings (per role only): a session reads
-- it when it logs in and keeps it across PostgREST's SET ROLE. The error when there is no
-- role `authenticator` is deliberate: name the login role of your own API there instead.
ALTER ROLE authenticator SET pgaudit.role = 'ingest_auditor';
