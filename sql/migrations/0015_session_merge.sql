-- Merging one event's patch into its user_sessions row, so that any order of a call's
-- events, with any duplicates, ends in the same row.
--
-- A patch is a user_sessions row in JSON (only the columns the event speaks to) whose
-- metadata.provenance names the source of each value it carries. Per column, a value from
-- a higher-ranked source replaces a lower one; between equal ranks the value itself
-- decides (earliest instant, lowest id, highest cost, longest rebuilt transcript), so the
-- outcome does not depend on arrival order. metadata merges key by key (objects
-- recursively, the greater JSON value on a clash); server_messages.timeline is the sorted
-- union of entries, capped at 200. Values a writer gives without provenance (the seed's
-- SQL, a Supabase client, the triggers) rank below every source.

CREATE OR REPLACE FUNCTION ingest_source_rank(source text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE source
        WHEN 'structured' THEN 6   -- the assistant's structured analysis
        WHEN 'report' THEN 5       -- end-of-call report top-level fields
        WHEN 'session' THEN 4      -- session / chat objects
        WHEN 'call' THEN 3         -- the embedded call snapshot
        WHEN 'status' THEN 2       -- status-update messages
        WHEN 'transcripts' THEN 1  -- rebuilt from final transcript events
        WHEN 'event' THEN 0        -- identity repeated on every event
        ELSE -1                    -- no provenance: written by someone else
    END
$$;

-- Does the incoming value replace the current one?
CREATE OR REPLACE FUNCTION ingest_takes(
    old_source text, new_source text, old_value anyelement, new_value anyelement, lower_wins boolean
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT new_value IS NOT NULL AND new_source IS NOT NULL AND (
        old_value IS NULL
        OR ingest_source_rank(new_source) > ingest_source_rank(old_source)
        OR (ingest_source_rank(new_source) = ingest_source_rank(old_source)
            AND CASE WHEN lower_wins THEN new_value < old_value ELSE new_value > old_value END)
    )
$$;

CREATE OR REPLACE FUNCTION ingest_jsonb_merge(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    merged jsonb;
    k text;
    v jsonb;
BEGIN
    IF a IS NULL OR a = 'null'::jsonb THEN
        RETURN b;
    ELSIF b IS NULL OR b = 'null'::jsonb THEN
        RETURN a;
    ELSIF jsonb_typeof(a) = 'object' AND jsonb_typeof(b) = 'object' THEN
        merged := a;
        FOR k, v IN SELECT * FROM jsonb_each(b) LOOP
            merged := merged || jsonb_build_object(k, ingest_jsonb_merge(a -> k, v));
        END LOOP;
        RETURN merged;
    END IF;
    RETURN GREATEST(a, b);
END
$$;

CREATE OR REPLACE FUNCTION ingest_merge_timeline(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN b IS NULL OR jsonb_typeof(b -> 'timeline') IS DISTINCT FROM 'array' THEN a
        WHEN a IS NULL OR jsonb_typeof(a) IS DISTINCT FROM 'object' THEN b
        ELSE a || jsonb_build_object('timeline', (
            SELECT coalesce(jsonb_agg(e.entry ORDER BY e.entry ->> 'at' NULLS FIRST, e.entry::text), '[]'::jsonb)
            FROM (
                SELECT u.entry
                FROM (
                    SELECT jsonb_array_elements(CASE WHEN jsonb_typeof(a -> 'timeline') = 'array'
                                                     THEN a -> 'timeline' ELSE '[]'::jsonb END)
                    UNION  -- distinct entries only
                    SELECT jsonb_array_elements(b -> 'timeline')
                ) AS u (entry)
                ORDER BY u.entry ->> 'at' NULLS FIRST, u.entry::text
                LIMIT 200
            ) AS e
        ))
    END
$$;

CREATE OR REPLACE FUNCTION ingest_merge_session(o user_sessions, n user_sessions) RETURNS user_sessions
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r user_sessions := o;
    po jsonb := coalesce(o.metadata -> 'provenance', '{}'::jsonb);
    pn jsonb := coalesce(n.metadata -> 'provenance', '{}'::jsonb);
    p jsonb := po;
    take_finals boolean;
BEGIN
    -- identity: equal ranks settle on the lowest value
    IF ingest_takes(po ->> 'assistant_id', pn ->> 'assistant_id', o.assistant_id, n.assistant_id, true) THEN
        r.assistant_id := n.assistant_id; p := p || jsonb_build_object('assistant_id', pn -> 'assistant_id');
    END IF;
    IF ingest_takes(po ->> 'phone_number_id', pn ->> 'phone_number_id', o.phone_number_id, n.phone_number_id, true) THEN
        r.phone_number_id := n.phone_number_id; p := p || jsonb_build_object('phone_number_id', pn -> 'phone_number_id');
    END IF;
    IF ingest_takes(po ->> 'business_number', pn ->> 'business_number', o.business_number, n.business_number, true) THEN
        r.business_number := n.business_number; p := p || jsonb_build_object('business_number', pn -> 'business_number');
    END IF;
    IF ingest_takes(po ->> 'customer_number', pn ->> 'customer_number', o.customer_number, n.customer_number, true) THEN
        r.customer_number := n.customer_number; p := p || jsonb_build_object('customer_number', pn -> 'customer_number');
    END IF;
    IF ingest_takes(po ->> 'type', pn ->> 'type', o.type, n.type, true) THEN
        r.type := n.type; p := p || jsonb_build_object('type', pn -> 'type');
    END IF;
    IF ingest_takes(po ->> 'user_id', pn ->> 'user_id', o.user_id, n.user_id, true) THEN
        r.user_id := n.user_id; p := p || jsonb_build_object('user_id', pn -> 'user_id');
    END IF;
    IF ingest_takes(po ->> 'client_id', pn ->> 'client_id', o.client_id, n.client_id, true) THEN
        r.client_id := n.client_id; p := p || jsonb_build_object('client_id', pn -> 'client_id');
    END IF;
    r.source := coalesce(o.source, n.source);

    -- timing: the earliest instant among equals (the first time we were told)
    IF ingest_takes(po ->> 'started_at_utc', pn ->> 'started_at_utc', o.started_at_utc, n.started_at_utc, true) THEN
        r.started_at_utc := n.started_at_utc; p := p || jsonb_build_object('started_at_utc', pn -> 'started_at_utc');
    END IF;
    IF ingest_takes(po ->> 'ended_at_utc', pn ->> 'ended_at_utc', o.ended_at_utc, n.ended_at_utc, true) THEN
        r.ended_at_utc := n.ended_at_utc; p := p || jsonb_build_object('ended_at_utc', pn -> 'ended_at_utc');
    END IF;
    IF ingest_takes(po ->> 'ended_reason', pn ->> 'ended_reason', o.ended_reason, n.ended_reason, true) THEN
        r.ended_reason := n.ended_reason; p := p || jsonb_build_object('ended_reason', pn -> 'ended_reason');
    END IF;
    IF ingest_takes(po ->> 'duration', pn ->> 'duration', o.duration_seconds, n.duration_seconds, true) THEN
        r.duration_seconds := n.duration_seconds;
        r.duration_minutes := coalesce(n.duration_minutes, round(n.duration_seconds / 60, 2));
        p := p || jsonb_build_object('duration', pn -> 'duration');
    END IF;

    -- cost: between equals the highest (a session's cost only grows)
    IF ingest_takes(po ->> 'cost_total', pn ->> 'cost_total', o.cost_total, n.cost_total, false) THEN
        r.cost_total := n.cost_total; p := p || jsonb_build_object('cost_total', pn -> 'cost_total');
        r.metadata := coalesce(r.metadata, '{}'::jsonb) || '{"cost_source": "reported"}'::jsonb;
    END IF;

    -- analysis
    IF ingest_takes(po ->> 'call_summary', pn ->> 'call_summary', o.call_summary, n.call_summary, true) THEN
        r.call_summary := n.call_summary; p := p || jsonb_build_object('call_summary', pn -> 'call_summary');
    END IF;
    IF pn ->> 'call_transcript' = 'transcripts' AND po ->> 'call_transcript' = 'transcripts' THEN
        -- Two rebuilds from final transcripts: the later one holds more of them, so the
        -- longer wins, and the sentiment and keywords derived from it come along.
        take_finals := length(n.call_transcript) > length(o.call_transcript)
            OR (length(n.call_transcript) = length(o.call_transcript) AND n.call_transcript > o.call_transcript);
        IF take_finals THEN
            r.call_transcript := n.call_transcript;
            -- Sentiment and keywords derived from a rebuilt transcript follow it, even
            -- when the longer transcript yields none, unless a better source set them.
            IF ingest_source_rank(po ->> 'sentiment') <= ingest_source_rank('transcripts') THEN
                r.sentiment := n.sentiment;
                p := CASE WHEN n.sentiment IS NULL THEN p - 'sentiment'
                          ELSE p || '{"sentiment": "transcripts"}'::jsonb END;
            END IF;
            IF ingest_source_rank(po ->> 'keywords') <= ingest_source_rank('transcripts') THEN
                r.keywords := n.keywords;
                p := CASE WHEN n.keywords IS NULL THEN p - 'keywords'
                          ELSE p || '{"keywords": "transcripts"}'::jsonb END;
            END IF;
        END IF;
    ELSIF ingest_takes(po ->> 'call_transcript', pn ->> 'call_transcript', o.call_transcript, n.call_transcript, true) THEN
        r.call_transcript := n.call_transcript; p := p || jsonb_build_object('call_transcript', pn -> 'call_transcript');
    END IF;
    IF NOT coalesce(take_finals, false) THEN
        IF ingest_takes(po ->> 'sentiment', pn ->> 'sentiment', o.sentiment, n.sentiment, true) THEN
            r.sentiment := n.sentiment; p := p || jsonb_build_object('sentiment', pn -> 'sentiment');
        END IF;
        IF ingest_takes(po ->> 'keywords', pn ->> 'keywords', o.keywords, n.keywords, true) THEN
            r.keywords := n.keywords; p := p || jsonb_build_object('keywords', pn -> 'keywords');
        END IF;
    END IF;
    IF ingest_takes(po ->> 'call_outcome', pn ->> 'call_outcome', o.call_outcome, n.call_outcome, true) THEN
        r.call_outcome := n.call_outcome; p := p || jsonb_build_object('call_outcome', pn -> 'call_outcome');
    END IF;

    r.metadata := ingest_jsonb_merge(r.metadata - 'provenance', n.metadata - 'provenance' - 'cost_source');
    IF p <> '{}'::jsonb THEN
        r.metadata := coalesce(r.metadata, '{}'::jsonb) || jsonb_build_object('provenance', p);
    END IF;
    r.server_messages := ingest_merge_timeline(o.server_messages, n.server_messages);
    RETURN r;
END
$$;

-- Would merging this identity-only patch change nothing? True when every value it carries
-- is already in the row from a source ranked at least as high, or is outranked there.
CREATE OR REPLACE FUNCTION ingest_identity_is_known(cur user_sessions, p user_sessions) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    po jsonb := coalesce(cur.metadata -> 'provenance', '{}'::jsonb);
    column_name text;
    source text;
    old_rank integer;
    new_rank integer;
BEGIN
    FOR column_name, source IN SELECT * FROM jsonb_each_text(coalesce(p.metadata -> 'provenance', '{}'::jsonb)) LOOP
        old_rank := ingest_source_rank(po ->> column_name);
        new_rank := ingest_source_rank(source);
        CONTINUE WHEN new_rank < old_rank;
        IF new_rank > old_rank OR NOT coalesce(CASE column_name
                WHEN 'assistant_id' THEN p.assistant_id = cur.assistant_id
                WHEN 'phone_number_id' THEN p.phone_number_id = cur.phone_number_id
                WHEN 'business_number' THEN p.business_number = cur.business_number
                WHEN 'customer_number' THEN p.customer_number = cur.customer_number
                WHEN 'type' THEN p.type = cur.type
                WHEN 'client_id' THEN p.client_id = cur.client_id
                WHEN 'user_id' THEN p.user_id = cur.user_id
            END, false) THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END
$$;

-- Apply one patch: lock the row (by call_id, else session_id), merge, write only if
-- something changed. A patch that would create a row without an assistant (NOT NULL)
-- reports 'missing' and writes nothing: the event waits until a later one names it.
CREATE OR REPLACE FUNCTION ingest_apply_patch(patch jsonb)
RETURNS TABLE (outcome text, ended boolean, transcript_source text)
LANGUAGE plpgsql
AS $$
DECLARE
    p user_sessions := jsonb_populate_record(NULL::user_sessions, patch);
    cur user_sessions;
    merged user_sessions;
BEGIN
    IF p.call_id IS NULL AND p.session_id IS NULL THEN
        RAISE EXCEPTION 'a patch needs a call_id or a session_id' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p.duration_seconds IS NOT NULL AND p.duration_minutes IS NULL THEN
        p.duration_minutes := round(p.duration_seconds / 60, 2);
    END IF;

    -- Most events only repeat the call's identity (speech updates, transcripts, conversation
    -- updates). When the row already holds exactly those values from the same sources, the
    -- merge would change nothing: answer without locking the row (a lock is a WAL record).
    -- Reading unlocked is safe here: concurrent merges only raise ranks or lower values, and
    -- neither can make this patch matter again.
    IF p.server_messages IS NULL AND p.started_at_utc IS NULL AND p.ended_at_utc IS NULL
       AND p.ended_reason IS NULL AND p.duration_seconds IS NULL AND p.cost_total IS NULL
       AND p.call_summary IS NULL AND p.call_transcript IS NULL AND p.sentiment IS NULL
       AND p.call_outcome IS NULL AND p.keywords IS NULL
       AND coalesce(p.metadata - 'provenance', '{}'::jsonb) = '{}'::jsonb THEN
        IF p.call_id IS NOT NULL THEN
            SELECT * INTO cur FROM user_sessions AS s WHERE s.call_id = p.call_id;
        ELSE
            SELECT * INTO cur FROM user_sessions AS s WHERE s.session_id = p.session_id;
        END IF;
        IF FOUND AND ingest_identity_is_known(cur, p) THEN
            RETURN QUERY SELECT 'unchanged'::text, cur.ended_at_utc IS NOT NULL,
                                cur.metadata #>> '{provenance,call_transcript}';
            RETURN;
        END IF;
    END IF;

    FOR attempt IN 1..3 LOOP
        IF p.call_id IS NOT NULL THEN
            SELECT * INTO cur FROM user_sessions AS s WHERE s.call_id = p.call_id FOR UPDATE;
        ELSE
            SELECT * INTO cur FROM user_sessions AS s WHERE s.session_id = p.session_id FOR UPDATE;
        END IF;
        EXIT WHEN FOUND;
        IF attempt = 1 THEN
            -- Serialise the creation of this row with events that find it missing, then look
            -- again: without the lock, an event could record itself as waiting just after the
            -- creating transaction looked for waiting events, and wait for nothing.
            PERFORM pg_advisory_xact_lock(hashtextextended('ingest:' || coalesce(p.call_id::text, p.session_id), 0));
            CONTINUE;
        END IF;
        IF p.assistant_id IS NULL THEN
            RETURN QUERY SELECT 'missing'::text, false, NULL::text;
            RETURN;
        END IF;
        INSERT INTO user_sessions (
            call_id, assistant_id, phone_number_id, business_number, customer_number,
            started_at_utc, ended_at_utc, ended_reason, duration_minutes, duration_seconds,
            cost_total, type, server_messages, user_id, session_id, source, metadata, client_id,
            call_summary, call_transcript, sentiment, call_outcome, keywords
        ) VALUES (
            p.call_id, p.assistant_id, p.phone_number_id, p.business_number, p.customer_number,
            p.started_at_utc, p.ended_at_utc, p.ended_reason, p.duration_minutes, p.duration_seconds,
            p.cost_total, p.type, p.server_messages, p.user_id, p.session_id, p.source, p.metadata, p.client_id,
            p.call_summary, p.call_transcript, p.sentiment, p.call_outcome, p.keywords
        )
        ON CONFLICT DO NOTHING
        RETURNING * INTO cur;
        IF FOUND THEN
            RETURN QUERY SELECT 'inserted'::text, cur.ended_at_utc IS NOT NULL,
                                cur.metadata #>> '{provenance,call_transcript}';
            RETURN;
        END IF;
        -- A writer that does not take the lock (a Supabase client, the seed's SQL) created
        -- the row meanwhile: the next pass locks it and merges.
    END LOOP;
    IF cur.id IS NULL THEN
        RAISE EXCEPTION 'user_sessions row for % vanished while being merged', coalesce(p.call_id::text, p.session_id)
            USING ERRCODE = 'serialization_failure';
    END IF;

    merged := ingest_merge_session(cur, p);
    IF ROW(merged.*) IS NOT DISTINCT FROM ROW(cur.*) THEN
        RETURN QUERY SELECT 'unchanged'::text, cur.ended_at_utc IS NOT NULL,
                            cur.metadata #>> '{provenance,call_transcript}';
        RETURN;
    END IF;
    UPDATE user_sessions AS s SET
        assistant_id = merged.assistant_id, phone_number_id = merged.phone_number_id,
        business_number = merged.business_number, customer_number = merged.customer_number,
        started_at_utc = merged.started_at_utc, ended_at_utc = merged.ended_at_utc,
        ended_reason = merged.ended_reason, duration_minutes = merged.duration_minutes,
        duration_seconds = merged.duration_seconds, cost_total = merged.cost_total, type = merged.type,
        server_messages = merged.server_messages, user_id = merged.user_id, source = merged.source,
        metadata = merged.metadata, client_id = merged.client_id, call_summary = merged.call_summary,
        call_transcript = merged.call_transcript, sentiment = merged.sentiment,
        call_outcome = merged.call_outcome, keywords = merged.keywords
    WHERE s.id = cur.id
    RETURNING * INTO cur;
    RETURN QUERY SELECT 'updated'::text, cur.ended_at_utc IS NOT NULL, cur.metadata #>> '{provenance,call_transcript}';
END
$$;
