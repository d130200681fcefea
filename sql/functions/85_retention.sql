-- Retention (migration 0023, ingest/ops/retention.py): what is due per category, and one
-- bounded batch of each step. The service passes its defaults (0 = kept forever); a
-- client's override columns replace them (NULL = the default, 0 = forever). A session's
-- windows are measured from its end, else its start, else when its row was made; a raw
-- event's from when it was received.
--
-- Each step's batch locks its rows FOR UPDATE SKIP LOCKED: a row a worker is writing is
-- left for the next run, so retention never waits on live ingestion, and live ingestion
-- waits at most for one batch. Predicates and updates agree: a row a batch changed is no
-- longer due, so a second run changes nothing.

-- The window in days, NULL when the data is kept forever.
CREATE OR REPLACE FUNCTION ingest_retention_days(override integer, fallback integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT nullif(coalesce(override, fallback), 0) $$;

-- Data measured from ``at`` is due when ``at`` lies more than ``days`` before ``now``.
CREATE OR REPLACE FUNCTION ingest_retention_due(at timestamptz, days integer, now timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT days IS NOT NULL AND at < now - make_interval(days => days) $$;

CREATE OR REPLACE FUNCTION ingest_retention_uuid(value text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN value ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN value::uuid END
$$;

-- Every client's windows, and the default's (client_id NULL: events and rows without a client).
CREATE OR REPLACE FUNCTION ingest_retention_policies(p_raw integer, p_transcript integer, p_anonymise integer)
RETURNS TABLE (client_id text, raw_days integer, transcript_days integer, anonymise_days integer)
LANGUAGE sql STABLE
AS $$
    SELECT NULL::text, nullif(p_raw, 0), nullif(p_transcript, 0), nullif(p_anonymise, 0)
    UNION ALL
    SELECT c.client_id,
           ingest_retention_days(c.retention_raw_events_days, p_raw),
           ingest_retention_days(c.retention_transcript_days, p_transcript),
           ingest_retention_days(c.retention_anonymise_days, p_anonymise)
    FROM public.client_subscriptions AS c
$$;

-- The metadata keys that carry what was said or recorded: removed at the transcript step.
CREATE OR REPLACE FUNCTION ingest_retention_transcript_keys() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY[
        'analysis',    -- summary-like analysis: success evaluation, structured data and outputs, ended message
        'recordings'   -- recording, stereo, video, log and pcap URLs
    ]
$$;

-- The metadata keys an anonymised row keeps (everything else goes): provenance, costs,
-- performance figures, the assistant, lifecycle facts, retention's own marks.
CREATE OR REPLACE FUNCTION ingest_retention_anonymous_keys() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY[
        'provenance', 'cost_source', 'costs', 'cost_breakdown', 'raw_cost', 'performance',
        'assistants', 'deletion', 'languages', 'artifact_uploads', 'implausible_times',
        'transcript_finals_tried', 'retention'
    ]
$$;

-- The timeline entry fields that say what happened, not what was said (ingest.handlers.common).
CREATE OR REPLACE FUNCTION ingest_retention_timeline_fields() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['at', 'type', 'status', 'endedReason', 'language', 'request', 'destination', 'chat'] $$;

-- server_messages without its transcript-bearing parts: only the timeline, each entry
-- with its known fields. NULL stays NULL; anything that is not an object becomes NULL.
CREATE OR REPLACE FUNCTION ingest_retention_bare_messages(messages jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN messages IS NULL THEN NULL
        WHEN jsonb_typeof(messages) <> 'object' OR jsonb_typeof(messages -> 'timeline') IS DISTINCT FROM 'array' THEN NULL
        ELSE jsonb_build_object('timeline', (
            SELECT coalesce(jsonb_agg(
                       CASE WHEN jsonb_typeof(t.entry) = 'object'
                            THEN (SELECT coalesce(jsonb_object_agg(f.key, f.value), '{}'::jsonb)
                                  FROM jsonb_each(t.entry) AS f
                                  WHERE f.key = ANY (ingest_retention_timeline_fields()))
                            ELSE t.entry END
                       ORDER BY t.ord), '[]'::jsonb)
            FROM jsonb_array_elements(messages -> 'timeline') WITH ORDINALITY AS t (entry, ord)))
    END
$$;

CREATE OR REPLACE FUNCTION ingest_retention_mark(metadata jsonb, step text, on_day date) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT metadata || jsonb_build_object('retention',
        CASE WHEN jsonb_typeof(metadata -> 'retention') = 'object' THEN metadata -> 'retention' ELSE '{}'::jsonb END
        || jsonb_build_object(step, on_day))
$$;

-- Does a row still hold what the transcript step removes?
CREATE OR REPLACE FUNCTION ingest_retention_holds_transcript(s public.user_sessions) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT s.call_transcript IS NOT NULL OR s.call_summary IS NOT NULL
        OR s.call_transcript_original IS NOT NULL OR s.call_summary_original IS NOT NULL
        OR (jsonb_typeof(s.metadata) = 'object' AND s.metadata ?| ingest_retention_transcript_keys())
        OR s.server_messages IS DISTINCT FROM ingest_retention_bare_messages(s.server_messages)
$$;

-- Does a row still hold what the anonymise step removes?
CREATE OR REPLACE FUNCTION ingest_retention_holds_personal(s public.user_sessions) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (s.customer_number IS NOT NULL AND s.customer_number NOT LIKE 'anon:%')
        OR (jsonb_typeof(s.metadata) = 'object'
            AND EXISTS (SELECT 1 FROM jsonb_object_keys(s.metadata) AS k (key)
                        WHERE k.key <> ALL (ingest_retention_anonymous_keys())))
$$;

-- Sessions with their client's windows and the instant they are measured from.
CREATE OR REPLACE FUNCTION ingest_retention_sessions(p_transcript integer, p_anonymise integer)
RETURNS TABLE (session public.user_sessions, transcript_days integer, anonymise_days integer, age_from timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT s,
           ingest_retention_days(c.retention_transcript_days, p_transcript),
           ingest_retention_days(c.retention_anonymise_days, p_anonymise),
           coalesce(s.ended_at_utc, s.started_at_utc, s.created_at)
    FROM public.user_sessions AS s
    LEFT JOIN public.client_subscriptions AS c ON c.client_id = s.client_id
$$;

-- Earlier signatures, from before a call's anonymise window also removed its raw events
-- (and overdue counted every window): replaced by the ones below.
DROP FUNCTION IF EXISTS ingest_retention_events(integer, integer, timestamptz);
DROP FUNCTION IF EXISTS ingest_retention_remove_raw_events(integer, integer, timestamptz, bigint, integer);
DROP FUNCTION IF EXISTS ingest_retention_overdue(integer, timestamptz);

-- Raw events with their client (the client of their call's row; NULL without one), whether
-- their client's raw window has passed, and whether their call's transcript or anonymise
-- window has: a call's raw bodies hold its transcript and its caller's number sealed, so they
-- go when either of those goes from the row.
CREATE OR REPLACE FUNCTION ingest_retention_events(
    p_raw integer, p_transcript integer, p_anonymise integer, p_now timestamptz
) RETURNS TABLE (
    id bigint, state text, received_at timestamptz, client_id text,
    raw_due boolean, transcript_due boolean, anonymise_due boolean
)
LANGUAGE sql STABLE
AS $$
    SELECT e.id, e.state, e.received_at, r.client_id,
           ingest_retention_due(e.received_at,
                                ingest_retention_days(c.retention_raw_events_days, p_raw), p_now),
           ingest_retention_due(r.age_from,
                                ingest_retention_days(c.retention_transcript_days, p_transcript), p_now),
           ingest_retention_due(r.age_from,
                                ingest_retention_days(c.retention_anonymise_days, p_anonymise), p_now)
    FROM public.call_events AS e
    LEFT JOIN LATERAL (
        SELECT s.client_id, coalesce(s.ended_at_utc, s.started_at_utc, s.created_at) AS age_from
        FROM public.user_sessions AS s
        WHERE (e.call_id IS NOT NULL AND s.call_id = ingest_retention_uuid(e.call_id))
           OR (e.call_id IS NULL AND e.session_id IS NOT NULL AND s.session_id = e.session_id)
        LIMIT 1
    ) AS r ON true
    LEFT JOIN public.client_subscriptions AS c ON c.client_id = r.client_id
$$;

-- What each step would do now, per client: the figures of `ingest retention status` and
-- of a dry run. category: raw_events, transcripts, anonymised, overdue (pending or
-- waiting events that a due window would remove were they final: they are never removed).
CREATE OR REPLACE FUNCTION ingest_retention_due_counts(
    p_raw integer, p_transcript integer, p_anonymise integer, p_now timestamptz
) RETURNS TABLE (category text, client_id text, due bigint, oldest timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN e.state IN ('pending', 'waiting') THEN 'overdue' ELSE 'raw_events' END,
           e.client_id, count(*), min(e.received_at)
    FROM ingest_retention_events(p_raw, p_transcript, p_anonymise, p_now) AS e
    WHERE e.raw_due OR e.transcript_due OR e.anonymise_due
    GROUP BY 1, 2
    UNION ALL
    SELECT 'transcripts', (x.session).client_id, count(*), min(x.age_from)
    FROM ingest_retention_sessions(p_transcript, p_anonymise) AS x
    WHERE ingest_retention_due(x.age_from, x.transcript_days, p_now) AND ingest_retention_holds_transcript(x.session)
    GROUP BY 2
    UNION ALL
    SELECT 'anonymised', (x.session).client_id, count(*), min(x.age_from)
    FROM ingest_retention_sessions(p_transcript, p_anonymise) AS x
    WHERE ingest_retention_due(x.age_from, x.anonymise_days, p_now) AND ingest_retention_holds_personal(x.session)
    GROUP BY 2
$$;

-- One batch of raw events: finished events (applied, ignored, failed) past their raw
-- window or whose call's transcript or anonymise window has passed, after id ``p_after``,
-- deleted. Returns the deleted ids with their clients.
CREATE OR REPLACE FUNCTION ingest_retention_remove_raw_events(
    p_raw integer, p_transcript integer, p_anonymise integer, p_now timestamptz, p_after bigint, p_limit integer
) RETURNS TABLE (id bigint, client_id text)
LANGUAGE sql
AS $$
    WITH due AS (
        SELECT e.id, e.client_id
        FROM ingest_retention_events(p_raw, p_transcript, p_anonymise, p_now) AS e
        WHERE e.id > p_after AND e.state IN ('applied', 'ignored', 'failed')
          AND (e.raw_due OR e.transcript_due OR e.anonymise_due)
        ORDER BY e.id
        LIMIT p_limit
    ),
    locked AS (
        SELECT ce.id FROM public.call_events AS ce
        WHERE ce.id IN (SELECT due.id FROM due) AND ce.state IN ('applied', 'ignored', 'failed')
        FOR UPDATE SKIP LOCKED
    ),
    gone AS (
        DELETE FROM public.call_events AS ce USING locked WHERE ce.id = locked.id RETURNING ce.id
    )
    SELECT gone.id, due.client_id FROM gone JOIN due ON due.id = gone.id
$$;

-- One batch of the transcript step, rows after ``p_after`` (by id): transcript, summary,
-- their sealed originals, the transcript-bearing metadata and server_messages parts go;
-- the row is marked metadata.retention.transcript = the day. Returns the changed rows.
CREATE OR REPLACE FUNCTION ingest_retention_remove_transcripts(
    p_transcript integer, p_now timestamptz, p_after uuid, p_limit integer
) RETURNS TABLE (id uuid, client_id text)
LANGUAGE sql
AS $$
    WITH due AS (
        SELECT (x.session).id
        FROM ingest_retention_sessions(p_transcript, NULL) AS x
        WHERE (x.session).id > p_after
          AND ingest_retention_due(x.age_from, x.transcript_days, p_now)
          AND ingest_retention_holds_transcript(x.session)
        ORDER BY (x.session).id
        LIMIT p_limit
    ),
    locked AS (
        SELECT s.id FROM public.user_sessions AS s WHERE s.id IN (SELECT due.id FROM due)
        FOR UPDATE SKIP LOCKED
    )
    UPDATE public.user_sessions AS s
    SET call_transcript = NULL,
        call_summary = NULL,
        call_transcript_original = NULL,
        call_summary_original = NULL,
        server_messages = ingest_retention_bare_messages(s.server_messages),
        metadata = CASE WHEN s.metadata IS NULL OR jsonb_typeof(s.metadata) = 'object'
                        THEN ingest_retention_mark(coalesce(s.metadata, '{}'::jsonb) - ingest_retention_transcript_keys(),
                                                   'transcript', (p_now AT TIME ZONE 'UTC')::date)
                        ELSE s.metadata END
    FROM locked
    WHERE s.id = locked.id
    RETURNING s.id, s.client_id
$$;

-- The anonymise step's candidates after ``p_after``: the service computes each number's
-- pseudonym (its key never reaches the database) and hands them to ingest_retention_anonymise.
CREATE OR REPLACE FUNCTION ingest_retention_anonymise_due(
    p_anonymise integer, p_now timestamptz, p_after uuid, p_limit integer
) RETURNS TABLE (id uuid, client_id text, customer_number text)
LANGUAGE sql STABLE
AS $$
    SELECT (x.session).id, (x.session).client_id, (x.session).customer_number
    FROM ingest_retention_sessions(NULL, p_anonymise) AS x
    WHERE (x.session).id > p_after
      AND ingest_retention_due(x.age_from, x.anonymise_days, p_now)
      AND ingest_retention_holds_personal(x.session)
    ORDER BY (x.session).id
    LIMIT p_limit
$$;

-- Anonymise rows: each number becomes its pseudonym (only where the row still holds the
-- number that was read), the metadata keeps only ingest_retention_anonymous_keys(), and
-- the row is marked metadata.retention.anonymised = the day. Returns the changed rows.
CREATE OR REPLACE FUNCTION ingest_retention_anonymise(
    p_ids uuid[], p_numbers text[], p_pseudonyms text[], p_now timestamptz
) RETURNS TABLE (id uuid, client_id text)
LANGUAGE sql
AS $$
    WITH given AS (
        SELECT * FROM unnest(p_ids, p_numbers, p_pseudonyms) AS g (id, number, pseudonym)
    ),
    locked AS (
        SELECT s.id, g.pseudonym FROM public.user_sessions AS s
        JOIN given AS g ON g.id = s.id AND s.customer_number IS NOT DISTINCT FROM g.number
        FOR UPDATE OF s SKIP LOCKED
    )
    UPDATE public.user_sessions AS s
    SET customer_number = locked.pseudonym,
        metadata = CASE WHEN s.metadata IS NULL OR jsonb_typeof(s.metadata) = 'object'
                        THEN ingest_retention_mark(
                                 (SELECT coalesce(jsonb_object_agg(m.key, m.value), '{}'::jsonb)
                                  FROM jsonb_each(coalesce(s.metadata, '{}'::jsonb)) AS m
                                  WHERE m.key = ANY (ingest_retention_anonymous_keys())),
                                 'anonymised', (p_now AT TIME ZONE 'UTC')::date)
                        ELSE s.metadata END
    FROM locked
    WHERE s.id = locked.id
    RETURNING s.id, s.client_id
$$;

REVOKE ALL ON FUNCTION ingest_retention_remove_raw_events(integer, integer, integer, timestamptz, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ingest_retention_remove_transcripts(integer, timestamptz, uuid, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ingest_retention_anonymise(uuid[], text[], text[], timestamptz) FROM PUBLIC;

-- Pending and waiting events that a due window would remove were they final (their raw
-- window, or their call's transcript or anonymise window, has passed), per client: the
-- overdue of ingest_retention_due_counts, but only the unfinished events are read (the
-- partial index on received_at), so /metrics and /ops can ask on every scrape.
CREATE OR REPLACE FUNCTION ingest_retention_overdue(
    p_raw integer, p_transcript integer, p_anonymise integer, p_now timestamptz
) RETURNS TABLE (client_id text, overdue bigint, oldest timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT r.client_id, count(*), min(e.received_at)
    FROM public.call_events AS e
    LEFT JOIN LATERAL (
        SELECT s.client_id, coalesce(s.ended_at_utc, s.started_at_utc, s.created_at) AS age_from
        FROM public.user_sessions AS s
        WHERE (e.call_id IS NOT NULL AND s.call_id = ingest_retention_uuid(e.call_id))
           OR (e.call_id IS NULL AND e.session_id IS NOT NULL AND s.session_id = e.session_id)
        LIMIT 1
    ) AS r ON true
    LEFT JOIN public.client_subscriptions AS c ON c.client_id = r.client_id
    WHERE e.state IN ('pending', 'waiting')
      AND (ingest_retention_due(e.received_at, ingest_retention_days(c.retention_raw_events_days, p_raw), p_now)
           OR ingest_retention_due(r.age_from, ingest_retention_days(c.retention_transcript_days, p_transcript), p_now)
           OR ingest_retention_due(r.age_from, ingest_retention_days(c.retention_anonymise_days, p_anonymise), p_now))
    GROUP BY 1
$$;
