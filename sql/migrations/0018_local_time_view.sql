-- The *_nz columns, explained where psql and Supabase's table editor show them.
--
-- The seed's contract, kept: started_at_nz / ended_at_nz are timestamptz whose UTC reading
-- is the local wall-clock time (ingest_local_wallclock), so psql prints
-- `2026-01-21 16:11:29+00` for a call that started at 16:11:29 in New Zealand (03:11:29 UTC).
-- The comments say so, and the view user_sessions_local shows the same values as plain
-- timestamps (`started_at_local`) next to the zone they are in.
--
-- The view is security_invoker (PostgreSQL 15+): it reads user_sessions with the rights of
-- whoever queries it, so the table's row-level security applies through it. A plain view
-- would run with its owner's rights and show an `authenticated` client every client's rows.

COMMENT ON COLUMN user_sessions.started_at_utc IS
    'When the call started (an instant). Compare and sort calls by this column.';
COMMENT ON COLUMN user_sessions.ended_at_utc IS
    'When the call ended (an instant). Compare and sort calls by this column.';
COMMENT ON COLUMN user_sessions.started_at_nz IS
    'Local wall-clock time of started_at_utc in the configured zone (LOCAL_TIMEZONE, default Pacific/Auckland), '
    'stored as a timestamptz whose UTC reading is that time: psql shows 2026-01-21 16:11:29+00 for 16:11:29 '
    'New Zealand time. Not an instant: use started_at_utc to compare. user_sessions_local.started_at_local '
    'shows it without the misleading +00.';
COMMENT ON COLUMN user_sessions.ended_at_nz IS
    'Local wall-clock time of ended_at_utc in the configured zone (LOCAL_TIMEZONE, default Pacific/Auckland), '
    'stored as a timestamptz whose UTC reading is that time: psql shows 2026-01-21 16:11:29+00 for 16:11:29 '
    'New Zealand time. Not an instant: use ended_at_utc to compare. user_sessions_local.ended_at_local '
    'shows it without the misleading +00.';

-- The zone is read once per query, not per row (a one-row subquery), and the join makes
-- the view read-only.
CREATE OR REPLACE VIEW user_sessions_local WITH (security_invoker = true) AS
SELECT s.*,
       s.started_at_nz AT TIME ZONE 'UTC' AS started_at_local,
       s.ended_at_nz AT TIME ZONE 'UTC' AS ended_at_local,
       z.local_timezone
FROM public.user_sessions AS s
CROSS JOIN (SELECT public.ingest_local_timezone() AS local_timezone) AS z;

COMMENT ON VIEW user_sessions_local IS
    'user_sessions with each *_nz column also shown as a plain local timestamp (*_local) and its zone. '
    'Runs with the querying role''s rights: the table''s row-level security applies.';
COMMENT ON COLUMN user_sessions_local.started_at_local IS
    'started_at_nz as the local wall-clock time it holds (timestamp without time zone), in local_timezone.';
COMMENT ON COLUMN user_sessions_local.ended_at_local IS
    'ended_at_nz as the local wall-clock time it holds (timestamp without time zone), in local_timezone.';
COMMENT ON COLUMN user_sessions_local.local_timezone IS
    'The configured zone (ingest_local_timezone()) the *_local times are in. A row written before '
    'LOCAL_TIMEZONE last changed keeps the times of the zone it was written in.';

-- Granted like the table, read-only: Supabase's default privileges grant new relations to
-- every API role, so everything is revoked first.
REVOKE ALL ON user_sessions_local FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON user_sessions_local TO authenticated, service_role;
