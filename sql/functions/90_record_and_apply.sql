-- One round trip per event for the worker: record the event in call_events (its dedupe
-- key's digest in call_event_keys: the gate), merge its patch into its row, and leave the
-- event in the state that results.
--
-- Returns no row for a duplicate of an applied or ignored event. A NULL patch means the
-- event is only recorded (a type we do not map): state 'ignored'. Otherwise the state is
-- 'applied', or 'waiting' when the row cannot exist yet (ingest_apply_patch says
-- 'missing'); `outcome`, `ended` and `transcript_source` are ingest_apply_patch's, for the
-- caller's follow-ups (applying waiting events, rebuilding a transcript).

-- The message comes as p_message (plain text) or p_body (sealed), with the clear columns
-- the SQL reads of it (final_transcript, status, event_at: migration 0020). A body sealed
-- against its call's envelope (migration 0028, ingest/envelopes.py) comes with the envelope,
-- p_envelope_id and p_envelope: a new event keeps it (ingest_keep_call_envelope, under the
-- call's erasure lock, in this transaction: 71_call_envelopes.sql) before it is recorded
-- referring to it; an erased call's event cannot be (an error: record it reduced instead).
-- All three functions take them last, defaulting to NULL (a body sealed whole, or a plain
-- message); their signatures before them are dropped so that no call is ambiguous.
DROP FUNCTION IF EXISTS ingest_record_and_apply(timestamptz, text, text, text, text, jsonb, jsonb);
DROP FUNCTION IF EXISTS ingest_record_and_apply(
    timestamptz, text, text, text, text, jsonb, bytea, boolean, text, timestamptz, jsonb);
DROP FUNCTION IF EXISTS ingest_record_and_apply_unless_erased(
    timestamptz, text, text, text, text, jsonb, bytea, boolean, text, timestamptz, jsonb, uuid, text);
DROP FUNCTION IF EXISTS ingest_record_and_apply_batch(
    timestamptz[], text[], text[], text[], text[], jsonb[], bytea[], boolean[], text[], timestamptz[], jsonb[],
    uuid[], text[]);

CREATE OR REPLACE FUNCTION ingest_record_and_apply(
    p_received_at timestamptz,
    p_call_id text,
    p_session_id text,
    p_message_type text,
    p_dedupe_key text,
    p_message jsonb,
    p_body bytea,
    p_final_transcript boolean,
    p_status text,
    p_event_at timestamptz,
    p_patch jsonb,
    p_envelope_id bytea DEFAULT NULL,
    p_envelope bytea DEFAULT NULL
) RETURNS TABLE (event_id bigint, state text, outcome text, ended boolean, transcript_source text)
LANGUAGE plpgsql
AS $$
DECLARE
    first_state text := CASE WHEN p_patch IS NULL THEN 'ignored' ELSE 'applied' END;
    new_state text;
    recorded_id bigint;
    recorded_at timestamptz;
    inserted boolean;
    merged record;
    digest uuid := ingest_dedupe_digest(p_dedupe_key);
BEGIN
    -- The gate (migrations 0022, 0029: the key's digest): a new key inserts the event; a
    -- known key names the received_at, and so the partition, of the event recorded with it.
    -- A worker recording the same new key at this moment makes this insert wait for its
    -- transaction: it then finds the key (and the event, committed with it) or, rolled back,
    -- inserts it here.
    INSERT INTO call_event_keys AS k (key_digest, received_at) VALUES (digest, p_received_at)
    ON CONFLICT (key_digest) DO NOTHING;
    inserted := FOUND;
    IF inserted THEN
        recorded_at := p_received_at;
        IF p_envelope_id IS NOT NULL
           AND NOT ingest_keep_call_envelope(p_call_id::uuid, p_envelope_id, p_envelope) THEN
            RAISE EXCEPTION 'the event''s call was erased: it is not recorded with its envelope'
                USING ERRCODE = 'check_violation';
        END IF;
        INSERT INTO call_events AS e (received_at, call_id, session_id, message_type, dedupe_key, message, body,
                                      envelope_id, final_transcript, status, event_at, state, attempts, applied_at)
        VALUES (p_received_at, p_call_id, p_session_id, p_message_type, p_dedupe_key, p_message, p_body,
                p_envelope_id, p_final_transcript, p_status, p_event_at, first_state, 1,
                CASE WHEN first_state = 'applied' THEN now() END)
        RETURNING e.id INTO recorded_id;
    ELSE
        SELECT k.received_at INTO recorded_at FROM call_event_keys AS k WHERE k.key_digest = digest;
        -- idx_call_events_dedupe_digest finds the event; the key itself is compared too
        UPDATE call_events AS e SET attempts = e.attempts + 1
        WHERE ingest_dedupe_digest(e.dedupe_key) = digest AND e.dedupe_key = p_dedupe_key
          AND e.received_at = recorded_at AND e.state NOT IN ('applied', 'ignored')
        RETURNING e.id INTO recorded_id;
    END IF;
    IF recorded_id IS NULL THEN
        RETURN;  -- a duplicate of an applied or ignored event (or of one no longer kept)
    END IF;

    IF p_patch IS NULL THEN
        new_state := 'ignored';
    ELSE
        SELECT * INTO merged FROM ingest_apply_patch(p_patch);
        new_state := CASE WHEN merged.outcome = 'missing' THEN 'waiting' ELSE 'applied' END;
    END IF;
    IF new_state <> first_state OR NOT inserted THEN
        UPDATE call_events AS e
        SET state = new_state, last_error = NULL,
            -- set when the event is applied, and only then: the insert above stamped it on
            -- the guess 'applied', which an event that ends up waiting must not keep
            applied_at = CASE WHEN new_state = 'applied' THEN now() END
        WHERE e.id = recorded_id AND e.received_at = recorded_at;
    END IF;
    IF p_patch IS NULL THEN
        RETURN QUERY SELECT recorded_id, new_state, NULL::text, false, NULL::text;
    ELSE
        RETURN QUERY SELECT recorded_id, new_state, merged.outcome, merged.ended, merged.transcript_source;
    END IF;
END
$$;

-- The worker's one round trip per event: ingest_record_and_apply, unless the event's call
-- (without a call id, its session) was erased on request (ingest_erased, which takes the
-- shared erasure lock first and then looks with a fresh snapshot: see 95_erasure.sql). An
-- erased call's event is not recorded here: the one row returned says state 'erased', and
-- the caller keeps the event reduced (ingest.apply.record_erased). No row for a duplicate.
CREATE OR REPLACE FUNCTION ingest_record_and_apply_unless_erased(
    p_received_at timestamptz,
    p_call_id text,
    p_session_id text,
    p_message_type text,
    p_dedupe_key text,
    p_message jsonb,
    p_body bytea,
    p_final_transcript boolean,
    p_status text,
    p_event_at timestamptz,
    p_patch jsonb,
    p_erasure_call_id uuid,
    p_erasure_session_id text,
    p_envelope_id bytea DEFAULT NULL,
    p_envelope bytea DEFAULT NULL
) RETURNS TABLE (event_id bigint, state text, outcome text, ended boolean, transcript_source text)
LANGUAGE plpgsql
AS $$
BEGIN
    IF (p_erasure_call_id IS NOT NULL OR p_erasure_session_id IS NOT NULL)
       AND ingest_erased(p_erasure_call_id, p_erasure_session_id) THEN
        RETURN QUERY SELECT NULL::bigint, 'erased'::text, NULL::text, false, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM ingest_record_and_apply(
        p_received_at, p_call_id, p_session_id, p_message_type, p_dedupe_key, p_message, p_body,
        p_final_transcript, p_status, p_event_at, p_patch, p_envelope_id, p_envelope);
END
$$;

-- A group commit's batch in one statement (worker/group_commit.py): the events, one per
-- array position, each through ingest_record_and_apply_unless_erased in that order, in the
-- caller's transaction. One row per event not a duplicate, with its position (from 1).
CREATE OR REPLACE FUNCTION ingest_record_and_apply_batch(
    p_received_at timestamptz[],
    p_call_id text[],
    p_session_id text[],
    p_message_type text[],
    p_dedupe_key text[],
    p_message jsonb[],
    p_body bytea[],
    p_final_transcript boolean[],
    p_status text[],
    p_event_at timestamptz[],
    p_patch jsonb[],
    p_erasure_call_id uuid[],
    p_erasure_session_id text[],
    p_envelope_id bytea[] DEFAULT NULL,
    p_envelope bytea[] DEFAULT NULL
) RETURNS TABLE (ordinal integer, event_id bigint, state text, outcome text, ended boolean, transcript_source text)
LANGUAGE plpgsql
AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_dedupe_key, 1), 0) LOOP
        RETURN QUERY SELECT i, r.event_id, r.state, r.outcome, r.ended, r.transcript_source
        FROM ingest_record_and_apply_unless_erased(
            p_received_at[i], p_call_id[i], p_session_id[i], p_message_type[i], p_dedupe_key[i], p_message[i],
            p_body[i], p_final_transcript[i], p_status[i], p_event_at[i], p_patch[i], p_erasure_call_id[i],
            p_erasure_session_id[i], p_envelope_id[i], p_envelope[i]) AS r;
    END LOOP;
END
$$;

-- The worker could not apply an event: keep it with its error (ingest.apply.record_failure),
-- in one round trip. A new key inserts the event in p_state; a known key updates its event
-- (found in its partition by the key's received_at): one more attempt, the error, marked
-- queued, and p_state unless it was applied or ignored meanwhile.
CREATE OR REPLACE FUNCTION ingest_record_event_failure(
    p_received_at timestamptz,
    p_call_id text,
    p_session_id text,
    p_message_type text,
    p_dedupe_key text,
    p_message jsonb,
    p_body bytea,
    p_final_transcript boolean,
    p_status text,
    p_event_at timestamptz,
    p_state text,
    p_last_error text
) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    recorded_at timestamptz;
    digest uuid := ingest_dedupe_digest(p_dedupe_key);
BEGIN
    INSERT INTO call_event_keys AS k (key_digest, received_at) VALUES (digest, p_received_at)
    ON CONFLICT (key_digest) DO NOTHING;
    IF FOUND THEN
        INSERT INTO call_events (received_at, call_id, session_id, message_type, dedupe_key, message, body,
                                 final_transcript, status, event_at, state, attempts, last_error, enqueued_at)
        VALUES (p_received_at, p_call_id, p_session_id, p_message_type, p_dedupe_key, p_message, p_body,
                p_final_transcript, p_status, p_event_at, p_state, 1, p_last_error, now());
        RETURN;
    END IF;
    SELECT k.received_at INTO recorded_at FROM call_event_keys AS k WHERE k.key_digest = digest;
    UPDATE call_events AS e
    SET attempts = e.attempts + 1,
        last_error = p_last_error,
        enqueued_at = coalesce(e.enqueued_at, now()),
        state = CASE WHEN e.state IN ('applied', 'ignored') THEN e.state ELSE p_state END
    WHERE ingest_dedupe_digest(e.dedupe_key) = digest AND e.dedupe_key = p_dedupe_key
      AND e.received_at = recorded_at;
END
$$;
