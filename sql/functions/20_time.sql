-- The time helpers every function uses. `ingest migrate` upserts ('local_timezone',
-- $LOCAL_TIMEZONE) into ingest_settings after every run, so no database function
-- hard-codes a zone: they all ask ingest_local_timezone().

-- The configured local zone (IANA name), 'Pacific/Auckland' when unset.
-- PL/pgSQL on purpose: a SQL function reading a table cannot be inlined and would be
-- re-planned on every call; PL/pgSQL keeps its plan for the session (this runs on
-- every user_sessions write).
CREATE OR REPLACE FUNCTION ingest_local_timezone() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    zone text;
BEGIN
    SELECT s.value INTO zone FROM public.ingest_settings AS s WHERE s.key = 'local_timezone';
    RETURN coalesce(zone, 'Pacific/Auckland');
END
$$;

-- DESIGN.md's rule for the _nz columns: the local wall-clock time of `ts` in `zone`,
-- stored as a timestamptz whose UTC reading is that wall-clock time. Independent of
-- the session's TimeZone setting.
CREATE OR REPLACE FUNCTION ingest_local_wallclock(ts timestamptz, zone text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (ts AT TIME ZONE zone) AT TIME ZONE 'UTC'
$$;

CREATE OR REPLACE FUNCTION ingest_local_wallclock(ts timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT (ts AT TIME ZONE public.ingest_local_timezone()) AT TIME ZONE 'UTC'
$$;

-- The inverse: the instant whose local wall-clock time is the UTC reading of `wallclock`.
-- In the repeated hour of a DST fall-back the later instant (standard time) is chosen,
-- as Postgres does for ambiguous local times.
CREATE OR REPLACE FUNCTION ingest_local_instant(wallclock timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT (wallclock AT TIME ZONE 'UTC') AT TIME ZONE public.ingest_local_timezone()
$$;

-- The local calendar date of an instant.
CREATE OR REPLACE FUNCTION ingest_local_date(ts timestamptz) RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT (ts AT TIME ZONE public.ingest_local_timezone())::date
$$;

-- The first day of the local calendar month of an instant (usage months).
CREATE OR REPLACE FUNCTION ingest_local_month(ts timestamptz) RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT date_trunc('month', ts AT TIME ZONE public.ingest_local_timezone())::date
$$;

-- `claim` as a uuid, or NULL when it is not one (a malformed JWT claim must not raise).
-- Accepts the forms uuid_in accepts most often: canonical, no hyphens, braces.
CREATE OR REPLACE FUNCTION ingest_try_uuid(claim text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN claim ~ '^(\{[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\}|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$'
        THEN claim::uuid
    END
$$;

-- Seconds between two instants as duration_seconds stores them; NULL when either is
-- missing, the end precedes the start, or the span does not fit numeric(10,3).
CREATE OR REPLACE FUNCTION ingest_duration_seconds(started timestamptz, ended timestamptz) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN ended >= started AND extract(epoch FROM ended - started) < 10000000
        THEN round(extract(epoch FROM ended - started), 3)
    END
$$;
