-- Abuse monitoring (migration 0026, ingest/ops/anomalies.py and ingest/ops/detectors.py):
-- what each detector counts over user_sessions in a window [p_from, p_to), and the one way
-- a detection becomes a call_anomalies row. The service decides, from these counts and its
-- thresholds (ANOMALY_*), what is unusual; numbers are pseudonymised in Python before
-- anything is recorded.

-- The calls whose time lies in [p_from, p_to): a call's time is its start, else its end,
-- else when its row was made. Three disjoint branches, each served by an index
-- (started_at_utc, ended_at_utc, idx_user_sessions_untimed_created_at); inlined by the planner.
CREATE OR REPLACE FUNCTION ingest_anomaly_calls(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
    client_id text, phone_number_id uuid, customer_number text, type text, ended_reason text,
    cost_total numeric, called_at timestamptz
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT s.client_id, s.phone_number_id, s.customer_number, s.type, s.ended_reason, s.cost_total, s.started_at_utc
    FROM public.user_sessions AS s
    WHERE s.started_at_utc >= p_from AND s.started_at_utc < p_to
    UNION ALL
    SELECT s.client_id, s.phone_number_id, s.customer_number, s.type, s.ended_reason, s.cost_total, s.ended_at_utc
    FROM public.user_sessions AS s
    WHERE s.started_at_utc IS NULL AND s.ended_at_utc >= p_from AND s.ended_at_utc < p_to
    UNION ALL
    SELECT s.client_id, s.phone_number_id, s.customer_number, s.type, s.ended_reason, s.cost_total, s.created_at
    FROM public.user_sessions AS s
    WHERE s.started_at_utc IS NULL AND s.ended_at_utc IS NULL AND s.created_at >= p_from AND s.created_at < p_to
$$;

-- volume and cost: each client with at least p_min_calls calls or p_min_cost of cost in the
-- window, with its calls and cost in the same window of each of the p_weeks weeks before,
-- shifted in local time (p_zone: the same hour of the local week across daylight saving).
-- Weeks that ended before the client's first call are left out: the arrays hold the usable
-- weeks only, most recent first. Calls without a client have no baseline and are not counted.
CREATE OR REPLACE FUNCTION ingest_anomaly_baselines(
    p_from timestamptz, p_to timestamptz, p_zone text, p_weeks integer, p_min_calls integer, p_min_cost numeric
)
RETURNS TABLE (client_id text, calls bigint, cost numeric, weekly_calls bigint[], weekly_cost numeric[])
LANGUAGE sql STABLE
AS $$
    WITH observed AS (
        SELECT c.client_id, count(*) AS calls, coalesce(sum(c.cost_total), 0) AS cost
        FROM ingest_anomaly_calls(p_from, p_to) AS c
        WHERE c.client_id IS NOT NULL
        GROUP BY c.client_id
        HAVING count(*) >= p_min_calls OR coalesce(sum(c.cost_total), 0) >= p_min_cost
    ),
    shifted AS (
        SELECT w.k,
               ((p_from AT TIME ZONE p_zone) - make_interval(days => 7 * w.k)) AT TIME ZONE p_zone AS week_from,
               ((p_to AT TIME ZONE p_zone) - make_interval(days => 7 * w.k)) AT TIME ZONE p_zone AS week_to
        FROM generate_series(1, p_weeks) AS w (k)
    ),
    past AS (
        SELECT o.client_id, s.k, p.calls, p.cost
        FROM observed AS o
        CROSS JOIN shifted AS s
        CROSS JOIN LATERAL (
            SELECT count(*) AS calls, coalesce(sum(h.cost_total), 0) AS cost
            FROM ingest_anomaly_calls(s.week_from, s.week_to) AS h
            WHERE h.client_id = o.client_id
        ) AS p
        WHERE EXISTS (
            SELECT 1 FROM ingest_anomaly_calls('-infinity', s.week_to) AS f WHERE f.client_id = o.client_id
        )
    )
    SELECT o.client_id, o.calls, o.cost,
           coalesce(array_agg(p.calls ORDER BY p.k) FILTER (WHERE p.k IS NOT NULL), '{}'),
           coalesce(array_agg(p.cost ORDER BY p.k) FILTER (WHERE p.k IS NOT NULL), '{}')
    FROM observed AS o
    LEFT JOIN past AS p ON p.client_id = o.client_id
    GROUP BY o.client_id, o.calls, o.cost
$$;

-- repeat_caller: one number calling one client at least p_min times (outbound calls dial
-- the number: they are not its calls). Numbers already anonymised are not judged.
CREATE OR REPLACE FUNCTION ingest_anomaly_repeat_callers(p_from timestamptz, p_to timestamptz, p_min integer)
RETURNS TABLE (client_id text, customer_number text, calls bigint)
LANGUAGE sql STABLE
AS $$
    SELECT c.client_id, c.customer_number, count(*)
    FROM ingest_anomaly_calls(p_from, p_to) AS c
    WHERE c.customer_number IS NOT NULL AND c.customer_number NOT LIKE 'anon:%'
      AND c.type IS DISTINCT FROM 'outboundPhoneCall'
    GROUP BY c.client_id, c.customer_number
    HAVING count(*) >= p_min
$$;

-- short_calls: per client and phone number (NULL: calls through none, e.g. web calls), the
-- calls that ended in the window shorter than p_seconds, when there are at least p_min of
-- them and they are at least p_share of all the calls that ended there.
CREATE OR REPLACE FUNCTION ingest_anomaly_short_calls(
    p_from timestamptz, p_to timestamptz, p_seconds numeric, p_min integer, p_share numeric
)
RETURNS TABLE (client_id text, phone_number_id uuid, short_calls bigint, calls bigint)
LANGUAGE sql STABLE
AS $$
    SELECT s.client_id, s.phone_number_id, count(*) FILTER (WHERE s.duration_seconds < p_seconds), count(*)
    FROM public.user_sessions AS s
    WHERE s.ended_at_utc >= p_from AND s.ended_at_utc < p_to
    GROUP BY s.client_id, s.phone_number_id
    HAVING count(*) FILTER (WHERE s.duration_seconds < p_seconds) >= p_min
       AND count(*) FILTER (WHERE s.duration_seconds < p_seconds) >= p_share * count(*)
$$;

-- outbound_destination: the numbers each client's outbound calls dialled, with how often;
-- the service classifies them (phonenumbers) and keeps only their pseudonyms.
CREATE OR REPLACE FUNCTION ingest_anomaly_outbound_numbers(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (client_id text, customer_number text, calls bigint)
LANGUAGE sql STABLE
AS $$
    SELECT c.client_id, c.customer_number, count(*)
    FROM ingest_anomaly_calls(p_from, p_to) AS c
    WHERE c.type = 'outboundPhoneCall' AND c.customer_number IS NOT NULL AND c.customer_number NOT LIKE 'anon:%'
    GROUP BY c.client_id, c.customer_number
$$;

-- vapi_signal: calls Vapi ended for its fraud check or a limit, per client and reason:
-- call.start.error-fraud-check-failed, call.start.error-subscription-concurrency-limit-reached,
-- call.start.error-vapi-number-outbound-daily-limit, and any reason of the same families.
CREATE OR REPLACE FUNCTION ingest_anomaly_vapi_signals(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (client_id text, ended_reason text, calls bigint)
LANGUAGE sql STABLE
AS $$
    SELECT c.client_id, c.ended_reason, count(*)
    FROM ingest_anomaly_calls(p_from, p_to) AS c
    WHERE c.ended_reason IN (
              'call.start.error-fraud-check-failed',
              'call.start.error-subscription-concurrency-limit-reached',
              'call.start.error-vapi-number-outbound-daily-limit'
          )
       OR c.ended_reason LIKE '%fraud%'
       OR c.ended_reason LIKE '%concurrency-limit%'
       OR c.ended_reason LIKE '%outbound-daily-limit%'
    GROUP BY c.client_id, c.ended_reason
$$;

-- One detection: extends the row of the same (kind, client, subject) whose window reaches
-- the new window's start (its end at or after it), acknowledged or not, so the same ongoing
-- pattern stays one row and an acknowledged one is not reopened; else a new row. Observed
-- and score keep their greatest value (baseline goes with the greatest score), details are
-- merged key by key. A transaction lock on the key makes concurrent recorders queue.
CREATE OR REPLACE FUNCTION ingest_record_anomaly(
    p_kind text, p_client_id text, p_subject_kind text, p_subject text,
    p_window_start timestamptz, p_window_end timestamptz,
    p_observed numeric, p_baseline numeric, p_score numeric, p_details jsonb
)
RETURNS TABLE (anomaly_id bigint, created boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    existing bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(
        'anomaly:' || p_kind || ':' || coalesce(p_client_id, '') || ':' || p_subject_kind || ':' || p_subject, 0
    ));
    SELECT a.id INTO existing
    FROM public.call_anomalies AS a
    WHERE a.kind = p_kind AND a.client_id IS NOT DISTINCT FROM p_client_id
      AND a.subject_kind = p_subject_kind AND a.subject = p_subject
      AND a.window_end >= p_window_start
    ORDER BY a.window_end DESC, a.id DESC
    LIMIT 1
    FOR UPDATE;
    IF existing IS NULL THEN
        INSERT INTO public.call_anomalies
            (kind, client_id, subject_kind, subject, window_start, window_end, observed, baseline, score, details)
        VALUES (p_kind, p_client_id, p_subject_kind, p_subject, p_window_start, p_window_end,
                p_observed, p_baseline, p_score, coalesce(p_details, '{}'))
        RETURNING id INTO existing;
        RETURN QUERY SELECT existing, true;
        RETURN;
    END IF;
    UPDATE public.call_anomalies AS a
    SET window_start = least(a.window_start, p_window_start),
        window_end = greatest(a.window_end, p_window_end),
        observed = greatest(a.observed, p_observed),
        baseline = CASE WHEN p_score > a.score THEN p_baseline ELSE coalesce(a.baseline, p_baseline) END,
        score = greatest(a.score, p_score),
        details = a.details || coalesce(p_details, '{}'),
        last_seen_at = now()
    WHERE a.id = existing;
    RETURN QUERY SELECT existing, false;
END
$$;

REVOKE ALL ON FUNCTION ingest_record_anomaly(text, text, text, text, timestamptz, timestamptz, numeric, numeric, numeric, jsonb)
    FROM PUBLIC;
