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
--
-- The sources and the per-column rules are data (ingest_sources(), ingest_merge_rules());
-- the DO blocks below generate static PL/pgSQL from them, so the worker's hot path runs
-- no dynamic SQL and each column's rule is written once.

-- Every source a patch may name, with its rank (higher wins). The Python side names the
-- same set (ingest.patch.Source; tests/sql/test_merge_rules.py holds them equal). Ranks
-- are only ever compared, never stored (provenance keeps source names), so renumbering
-- them is safe.
CREATE OR REPLACE FUNCTION ingest_sources() RETURNS TABLE (source text, rank integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    VALUES
        ('structured', 10),  -- the assistant's structured analysis
        ('api', 9),          -- a Call object of an ended call read from Vapi's API: the final word
        ('report', 8),       -- end-of-call report top-level fields
        ('session', 7),      -- session / chat objects
        ('call', 6),         -- the embedded call snapshot, the call's own assistant
        ('status', 5),       -- status-update messages
        ('messages', 4),     -- times read off a report's conversation messages
        ('transcripts', 3),  -- rebuilt from final transcript events
        ('timestamp', 2),    -- a report's timestamp standing in for the end
        ('received', 1),     -- when a report with no time at all reached us
        ('event', 0)         -- identity repeated on every event
$$;

-- ingest_source_rank(source): a CASE over ingest_sources(), -1 for no provenance (written
-- by someone else). Generated rather than a lookup so that it stays an inlinable
-- IMMUTABLE expression: the merge calls it a few dozen times per event.
DO $generate$
BEGIN
    EXECUTE format($fn$
CREATE OR REPLACE FUNCTION ingest_source_rank(source text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS %L
$fn$, (SELECT E'\n    SELECT CASE source\n'
              || string_agg(format(E'        WHEN %L THEN %s\n', s.source, s.rank), '' ORDER BY s.rank DESC)
              || E'        ELSE -1\n    END\n'
       FROM ingest_sources() AS s));
END
$generate$;

-- One row per provenance key of a patch (the keys ingest.patch.Patch writes):
--   key       the provenance key
--   columns   the columns it moves; the first is the one compared
--   tie       which value wins between equal ranks ('lowest': for instants the earliest)
--   identity  repeated on every event: an identity-only patch whose values the row already
--             holds is answered without locking the row
--   kind      'plain' (generated), or the hand-written case in ingest_merge_session's
--             generator below that it needs
CREATE OR REPLACE FUNCTION ingest_merge_rules()
RETURNS TABLE (key text, columns text[], tie text, identity boolean, kind text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    VALUES
        ('assistant_id',    ARRAY['assistant_id'],                        'lowest',  true,  'plain'),
        ('phone_number_id', ARRAY['phone_number_id'],                     'lowest',  true,  'plain'),
        ('business_number', ARRAY['business_number'],                     'lowest',  true,  'plain'),
        ('customer_number', ARRAY['customer_number'],                     'lowest',  true,  'plain'),
        ('type',            ARRAY['type'],                                'lowest',  true,  'plain'),
        ('user_id',         ARRAY['user_id'],                             'lowest',  true,  'plain'),
        ('client_id',       ARRAY['client_id'],                           'lowest',  true,  'plain'),
        -- timing: the earliest instant among equals (the first time we were told)
        ('started_at_utc',  ARRAY['started_at_utc'],                      'lowest',  false, 'plain'),
        ('ended_at_utc',    ARRAY['ended_at_utc'],                        'lowest',  false, 'plain'),
        ('ended_reason',    ARRAY['ended_reason'],                        'lowest',  false, 'plain'),
        ('duration',        ARRAY['duration_seconds', 'duration_minutes'], 'lowest', false, 'duration'),
        -- a session's cost only grows
        ('cost_total',      ARRAY['cost_total'],                          'highest', false, 'cost'),
        -- the redacted text is compared; its sealed original moves with it
        ('call_summary',    ARRAY['call_summary', 'call_summary_original'], 'lowest', false, 'plain'),
        ('call_transcript', ARRAY['call_transcript', 'call_transcript_original'], 'lowest', false, 'transcript'),
        ('sentiment',       ARRAY['sentiment'],                           'lowest',  false, 'follows_transcript'),
        ('keywords',        ARRAY['keywords'],                            'lowest',  false, 'follows_transcript'),
        ('call_outcome',    ARRAY['call_outcome'],                        'lowest',  false, 'plain')
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

-- plpgsql rather than SQL, like ingest_known_raw_numbers_dropped below: its plan is kept
-- for the session instead of being made again on every call.
CREATE OR REPLACE FUNCTION ingest_merge_timeline(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN CASE
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
    END;
END
$$;

-- The patch's metadata without the sealed raw numbers (ingest.privacy, RAW_NUMBERS) the
-- row already keeps sealed under the same key. Sealing is randomised, so two sealings of
-- the same number never compare equal: merged as plain values (the greater wins), every
-- event of a call with an unparseable number would rewrite the row. Which sealed copy is
-- kept is as arbitrary as the greater of two random strings was; numbers in the clear
-- (no keys) merge as before.
-- plpgsql rather than SQL: called from plpgsql, an SQL function is parsed and planned again
-- on every call (about 0.1 ms here).
DROP FUNCTION IF EXISTS ingest_known_raw_numbers_dropped(jsonb, jsonb);
CREATE FUNCTION ingest_known_raw_numbers_dropped(patch_metadata jsonb, row_metadata jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    kept jsonb := patch_metadata -> 'raw_numbers';
    number record;
BEGIN
    IF jsonb_typeof(kept) IS DISTINCT FROM 'object'
       OR jsonb_typeof(row_metadata -> 'raw_numbers') IS DISTINCT FROM 'object' THEN
        RETURN patch_metadata;
    END IF;
    FOR number IN SELECT * FROM jsonb_each_text(kept) LOOP
        IF number.value ~ '^v[0-9]+:' AND (row_metadata -> 'raw_numbers' ->> number.key) ~ '^v[0-9]+:' THEN
            kept := kept - number.key;
        END IF;
    END LOOP;
    RETURN jsonb_set(patch_metadata, '{raw_numbers}', kept);
END
$$;

-- ingest_merge_session(old, patch), ingest_identity_is_known(row, patch) and
-- ingest_apply_patch(patch), generated from ingest_merge_rules(). In the templates,
-- @name@ marks where a generated piece goes; everything else is written out.
DO $generate$
DECLARE
    rule record;
    takes text;
    steps text := '';               -- ingest_merge_session: one step per rule
    moves text;                     -- the assignments of one rule's columns
    follow_finals text := '';       -- ... what follows a transcript rebuilt from finals
    identity_checks text := '';     -- ingest_identity_is_known: identity values compared
    carries_nothing text := '';     -- ingest_apply_patch: the patch holds identity only
    written text[] := ARRAY['source', 'metadata', 'server_messages'];  -- merged outside the rules
    seen_transcript boolean := false;
BEGIN
    FOR rule IN SELECT * FROM ingest_merge_rules() LOOP
        IF rule.tie NOT IN ('lowest', 'highest') THEN
            RAISE EXCEPTION 'merge rule %: unknown tie-break %', rule.key, rule.tie;
        END IF;
        takes := format('ingest_takes(po ->> %1$L, pn ->> %1$L, o.%2$I, n.%2$I, %3$s)',
                        rule.key, rule.columns[1], CASE rule.tie WHEN 'lowest' THEN 'true' ELSE 'false' END);
        written := written || rule.columns;
        IF rule.identity THEN
            identity_checks := identity_checks
                || format(E'\n                WHEN %1$L THEN p.%2$I = cur.%2$I', rule.key, rule.columns[1]);
        ELSE
            carries_nothing := carries_nothing || format(E'\n       AND p.%I IS NULL', rule.columns[1]);
        END IF;
        -- every column of the rule moves with the one compared
        moves := (SELECT string_agg(format('r.%1$I := n.%1$I;', c), ' ' ORDER BY i)
                  FROM unnest(rule.columns) WITH ORDINALITY AS m(c, i));
        IF rule.kind = 'plain' THEN
            steps := steps || format(E'
    IF %1$s THEN
        %2$s p := p || jsonb_build_object(%3$L, pn -> %3$L);
    END IF;', takes, moves, rule.key);
        ELSIF rule.kind = 'duration' THEN
            -- seconds and minutes move as one; minutes derived when the patch gave seconds only
            steps := steps || format(E'
    IF %1$s THEN
        r.duration_seconds := n.duration_seconds;
        r.duration_minutes := coalesce(n.duration_minutes, round(n.duration_seconds / 60, 2));
        p := p || jsonb_build_object(%2$L, pn -> %2$L);
    END IF;', takes, rule.key);
        ELSIF rule.kind = 'cost' THEN
            -- taking a cost marks it reported, for the analytics trigger's pricing
            steps := steps || format(E'
    IF %1$s THEN
        r.cost_total := n.cost_total; p := p || jsonb_build_object(%2$L, pn -> %2$L);
        r.metadata := coalesce(r.metadata, \'{}\'::jsonb) || \'{"cost_source": "reported"}\'::jsonb;
    END IF;', takes, rule.key);
        ELSIF rule.kind = 'transcript' THEN
            -- Two rebuilds from final transcripts: the later one holds more of them, so the
            -- longer wins, and what follows_transcript derives from it comes along.
            steps := steps || format(E'
    IF pn ->> %1$L = \'transcripts\' AND po ->> %1$L = \'transcripts\' THEN
        take_finals := length(n.%2$I) > length(o.%2$I)
            OR (length(n.%2$I) = length(o.%2$I) AND n.%2$I > o.%2$I);
        IF take_finals THEN
            %4$s@follow_finals@
        END IF;
    ELSIF %3$s THEN
        %4$s p := p || jsonb_build_object(%1$L, pn -> %1$L);
    END IF;', rule.key, rule.columns[1], takes, moves);
            seen_transcript := true;
        ELSIF rule.kind = 'follows_transcript' THEN
            IF NOT seen_transcript THEN
                RAISE EXCEPTION 'merge rule %: follows_transcript must come after the transcript rule', rule.key;
            END IF;
            -- Derived from a rebuilt transcript, it follows it, even when the longer
            -- transcript yields none, unless a better source set it.
            follow_finals := follow_finals || format(E'
            IF ingest_source_rank(po ->> %1$L) <= ingest_source_rank(\'transcripts\') THEN
                r.%2$I := n.%2$I;
                p := CASE WHEN n.%2$I IS NULL THEN p - %1$L
                          ELSE p || jsonb_build_object(%1$L, \'transcripts\') END;
            END IF;', rule.key, rule.columns[1]);
            steps := steps || format(E'
    IF NOT coalesce(take_finals, false) AND %1$s THEN
        r.%2$I := n.%2$I; p := p || jsonb_build_object(%3$L, pn -> %3$L);
    END IF;', takes, rule.columns[1], rule.key);
        ELSE
            RAISE EXCEPTION 'merge rule %: unknown kind %', rule.key, rule.kind;
        END IF;
    END LOOP;
    steps := replace(steps, '@follow_finals@', follow_finals);

    EXECUTE replace($template$
CREATE OR REPLACE FUNCTION ingest_merge_session(o user_sessions, n user_sessions) RETURNS user_sessions
LANGUAGE plpgsql STABLE
AS $body$
DECLARE
    r user_sessions := o;
    po jsonb := coalesce(o.metadata -> 'provenance', '{}'::jsonb);
    pn jsonb := coalesce(n.metadata -> 'provenance', '{}'::jsonb);
    p jsonb := po;
    take_finals boolean;
BEGIN
    r.source := coalesce(o.source, n.source);
@steps@

    r.metadata := ingest_jsonb_merge(r.metadata - 'provenance', n.metadata - 'provenance' - 'cost_source');
    IF p <> '{}'::jsonb THEN
        r.metadata := coalesce(r.metadata, '{}'::jsonb) || jsonb_build_object('provenance', p);
    END IF;
    r.server_messages := ingest_merge_timeline(o.server_messages, n.server_messages);
    RETURN r;
END
$body$
$template$, '@steps@', steps);

    -- Would merging this identity-only patch change its identity columns? False when every
    -- value it carries is already in the row from a source ranked at least as high, or is
    -- outranked there.
    EXECUTE replace($template$
CREATE OR REPLACE FUNCTION ingest_identity_is_known(cur user_sessions, p user_sessions) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $body$
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
        IF new_rank > old_rank OR NOT coalesce(CASE column_name@identity_checks@
            END, false) THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END
$body$
$template$, '@identity_checks@', identity_checks);

    -- Apply one patch: lock the row (by call_id, else session_id), merge, write only if
    -- something changed. A patch that would create a row without an assistant (NOT NULL)
    -- reports 'missing' and writes nothing: the event waits until a later one names it.
    EXECUTE replace(replace(replace(replace($template$
CREATE OR REPLACE FUNCTION ingest_apply_patch(patch jsonb)
RETURNS TABLE (outcome text, ended boolean, transcript_source text)
LANGUAGE plpgsql
AS $body$
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
    -- A client id user_sessions_ensure_parents would move aside (into metadata.unknown_client_id,
    -- the row's client_id left NULL: 40_session_parents.sql) is moved aside here first, as the
    -- trigger would on writing it; otherwise every event of an unregistered client's call that
    -- repeats the id would rewrite the row only for the trigger to undo it.
    IF p.client_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM client_subscriptions AS c WHERE c.client_id = p.client_id)
       AND NOT ingest_create_clients() THEN
        p.metadata := (coalesce(p.metadata, '{}'::jsonb) #- '{provenance,client_id}')
            || jsonb_build_object('unknown_client_id', p.client_id);
        p.client_id := NULL;
    END IF;

    -- Most events only repeat the call's identity (speech updates, transcripts, conversation
    -- updates), often with metadata the row already holds (metadata.assistants of a transient
    -- assistant's call). When the row already holds exactly those values from the same
    -- sources and merging the metadata would add nothing, the merge would change nothing:
    -- answer without locking the row (a lock is a WAL record). Reading unlocked is safe here:
    -- concurrent merges only raise ranks, lower values or grow metadata (ingest_jsonb_merge
    -- is idempotent, commutative and associative), and none of that can make this patch
    -- matter again.
    IF p.server_messages IS NULL@carries_nothing@ THEN
        IF p.call_id IS NOT NULL THEN
            SELECT * INTO cur FROM user_sessions AS s WHERE s.call_id = p.call_id;
        ELSE
            SELECT * INTO cur FROM user_sessions AS s WHERE s.session_id = p.session_id;
        END IF;
        IF FOUND THEN
            p.metadata := ingest_known_raw_numbers_dropped(p.metadata, cur.metadata);
            IF ingest_identity_is_known(cur, p)
               AND ingest_jsonb_merge(cur.metadata - 'provenance', p.metadata - 'provenance' - 'cost_source')
                   IS NOT DISTINCT FROM cur.metadata - 'provenance' THEN
                RETURN QUERY SELECT 'unchanged'::text, cur.ended_at_utc IS NOT NULL,
                                    cur.metadata #>> '{provenance,call_transcript}';
                RETURN;
            END IF;
        END IF;
    END IF;

    FOR attempt IN 1..3 LOOP
        IF p.call_id IS NOT NULL THEN
            SELECT * INTO cur FROM user_sessions AS s WHERE s.call_id = p.call_id FOR UPDATE;
        ELSE
            SELECT * INTO cur FROM user_sessions AS s WHERE s.session_id = p.session_id FOR UPDATE;
        END IF;
        IF FOUND THEN
            p.metadata := ingest_known_raw_numbers_dropped(p.metadata, cur.metadata);
            EXIT;
        END IF;
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
            call_id, session_id, @insert_columns@
        ) VALUES (
            p.call_id, p.session_id, @insert_values@
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
    UPDATE user_sessions AS s SET@update_set@
    WHERE s.id = cur.id
    RETURNING * INTO cur;
    RETURN QUERY SELECT 'updated'::text, cur.ended_at_utc IS NOT NULL, cur.metadata #>> '{provenance,call_transcript}';
END
$body$
$template$,
        '@carries_nothing@', carries_nothing),
        '@insert_columns@', (SELECT string_agg(format('%I', c), ', ') FROM unnest(written) AS c)),
        '@insert_values@', (SELECT string_agg(format('p.%I', c), ', ') FROM unnest(written) AS c)),
        '@update_set@', (SELECT string_agg(format(E'\n        %1$I = merged.%1$I', c), ',') FROM unnest(written) AS c));
END
$generate$;
