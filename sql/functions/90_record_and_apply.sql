-- One round trip per event for the worker: record the event in call_events (the dedupe
-- gate), merge its patch into its row, and leave the event in the state that results.
--
-- Returns no row for a duplicate of an applied or ignored event. A NULL patch means the
-- event is only recorded (a type we do not map): state 'ignored'. Otherwise the state is
-- 'applied', or 'waiting' when the row cannot exist yet (ingest_apply_patch says
-- 'missing'); `outcome`, `ended` and `transcript_source` are ingest_apply_patch's, for the
-- caller's follow-ups (applying waiting events, rebuilding a transcript).

-- The message comes as p_message (plain text) or p_body (sealed), with the clear columns
-- the SQL reads of it (final_transcript, status, event_at: migration 0020).
DROP FUNCTION IF EXISTS ingest_record_and_apply(timestamptz, text, text, text, text, jsonb, jsonb);

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
    p_patch jsonb
) RETURNS TABLE (event_id bigint, state text, outcome text, ended boolean, transcript_source text)
LANGUAGE plpgsql
AS $$
DECLARE
    first_state text := CASE WHEN p_patch IS NULL THEN 'ignored' ELSE 'applied' END;
    new_state text;
    recorded_id bigint;
    inserted boolean;
    merged record;
BEGIN
    INSERT INTO call_events AS e (received_at, call_id, session_id, message_type, dedupe_key, message, body,
                                  final_transcript, status, event_at, state, attempts, applied_at)
    VALUES (p_received_at, p_call_id, p_session_id, p_message_type, p_dedupe_key, p_message, p_body,
            p_final_transcript, p_status, p_event_at, first_state, 1, CASE WHEN first_state = 'applied' THEN now() END)
    ON CONFLICT ON CONSTRAINT call_events_dedupe_key_key DO UPDATE SET attempts = e.attempts + 1
    WHERE e.state NOT IN ('applied', 'ignored')
    RETURNING e.id, (e.xmax = 0) INTO recorded_id, inserted;
    IF recorded_id IS NULL THEN
        RETURN;  -- a duplicate of an applied or ignored event
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
        WHERE e.id = recorded_id;
    END IF;
    IF p_patch IS NULL THEN
        RETURN QUERY SELECT recorded_id, new_state, NULL::text, false, NULL::text;
    ELSE
        RETURN QUERY SELECT recorded_id, new_state, merged.outcome, merged.ended, merged.transcript_source;
    END IF;
END
$$;
