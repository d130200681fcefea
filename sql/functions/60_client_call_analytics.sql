-- get_client_call_analytics(client_id, start_date, end_date): the seed's RPC
-- (supabase.rpc("get_client_call_analytics", {client_id, start_date, end_date})).
-- One row over the sessions of a client whose LOCAL start date (local end date when
-- there is no start) lies in [start_date, end_date], both inclusive.
-- SECURITY INVOKER: RLS applies, so an authenticated client only ever aggregates its
-- own sessions whatever client_id it passes.

CREATE OR REPLACE FUNCTION get_client_call_analytics(client_id text, start_date date, end_date date)
RETURNS TABLE (
    total_calls      bigint,   -- sessions in range
    total_minutes    numeric,  -- sum of duration_minutes (0 when none)
    total_cost       numeric,  -- sum of cost_total (0 when none)
    avg_duration     numeric,  -- mean duration_minutes, 2 decimals (NULL when no durations)
    sentiment_counts jsonb,    -- {"positive": 3, ...} over non-NULL sentiment
    outcome_counts   jsonb,    -- {"information_provided": 2, ...} over non-NULL call_outcome
    top_keywords     jsonb     -- [{"keyword": "pricing", "count": 4}, ...] top 10, ties by name
)
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    WITH bounds AS (
        SELECT start_date::timestamp AT TIME ZONE z AS lo,
               (end_date + 1)::timestamp AT TIME ZONE z AS hi
        FROM (SELECT public.ingest_local_timezone() AS z) AS zone
    ),
    picked AS MATERIALIZED (
        SELECT s.duration_minutes, s.cost_total, s.sentiment, s.call_outcome, s.keywords
        FROM public.user_sessions AS s, bounds AS b
        WHERE s.client_id = get_client_call_analytics.client_id
          AND ((s.started_at_utc >= b.lo AND s.started_at_utc < b.hi)
               OR (s.started_at_utc IS NULL AND s.ended_at_utc >= b.lo AND s.ended_at_utc < b.hi))
    )
    SELECT
        (SELECT count(*) FROM picked),
        (SELECT coalesce(sum(duration_minutes), 0) FROM picked),
        (SELECT coalesce(sum(cost_total), 0) FROM picked),
        (SELECT round(avg(duration_minutes), 2) FROM picked),
        (SELECT coalesce(jsonb_object_agg(sentiment, n), '{}'::jsonb)
         FROM (SELECT sentiment, count(*) AS n FROM picked
               WHERE sentiment IS NOT NULL GROUP BY sentiment) AS by_sentiment),
        (SELECT coalesce(jsonb_object_agg(call_outcome, n), '{}'::jsonb)
         FROM (SELECT call_outcome, count(*) AS n FROM picked
               WHERE call_outcome IS NOT NULL GROUP BY call_outcome) AS by_outcome),
        (SELECT coalesce(jsonb_agg(jsonb_build_object('keyword', keyword, 'count', n)
                                   ORDER BY n DESC, keyword), '[]'::jsonb)
         FROM (SELECT k.keyword, count(*) AS n
               FROM picked, unnest(picked.keywords) AS k (keyword)
               WHERE k.keyword IS NOT NULL
               GROUP BY k.keyword
               ORDER BY n DESC, k.keyword
               LIMIT 10) AS top)
$$;

REVOKE ALL ON FUNCTION get_client_call_analytics(text, date, date) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION get_client_call_analytics(text, date, date) TO authenticated, service_role;
