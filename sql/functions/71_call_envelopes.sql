-- Per-call envelopes (migration 0028, ingest/envelopes.py).
--
-- ingest_keep_call_envelope    keeps an event's envelope before the event is recorded
-- ingest_call_envelope         the sealed envelope a call_events row needs to open
-- ingest_forget_call_envelopes removes envelopes no event refers to (retention)
--
-- Keeping and forgetting agree through the call's erasure lock (sql/functions/95_erasure.sql):
-- a writer holds it shared from the keep to its commit, so the event that refers to an
-- envelope is committed before anything can find the envelope unused; the forgetter takes it
-- exclusively (without waiting: a busy call is left for the next run) and looks again.

-- Keep the sealed envelope of an event about to be recorded, in the event's transaction;
-- a second copy (another event, another worker) is a no-op. False, and nothing kept, for an
-- erased call: its event is kept reduced, without its message (ingest.apply.record_erased).
CREATE OR REPLACE FUNCTION ingest_keep_call_envelope(p_call_id uuid, p_envelope_id bytea, p_body bytea)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF ingest_erased(p_call_id, NULL) THEN  -- takes the call's erasure lock, shared
        RETURN false;
    END IF;
    INSERT INTO call_envelopes (call_id, envelope_id, body) VALUES (p_call_id, p_envelope_id, p_body)
    ON CONFLICT (call_id, envelope_id) DO NOTHING;
    RETURN true;
END
$$;

-- The sealed envelope a call_events row's body was sealed against; NULL when it needs none
-- (or, for a row whose call was erased, none is kept any more).
CREATE OR REPLACE FUNCTION ingest_call_envelope(p_call_id text, p_envelope_id bytea) RETURNS bytea
LANGUAGE sql STABLE
AS $$
    SELECT v.body FROM call_envelopes AS v
    WHERE p_envelope_id IS NOT NULL
      AND p_call_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
      AND v.call_id = p_call_id::uuid AND v.envelope_id = p_envelope_id
$$;

-- Remove up to p_batch envelopes kept before p_before that no call_events row refers to
-- (their events dropped with a partition, deleted by retention, or never recorded); returns
-- how many. A call whose erasure lock is held (a worker recording one of its events, an
-- erasure) is skipped. Every envelope kept before p_before is looked at (one index probe of
-- call_events each) until p_batch are found.
CREATE OR REPLACE FUNCTION ingest_forget_call_envelopes(p_before timestamptz, p_batch integer) RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    candidate record;
    forgotten integer := 0;
BEGIN
    FOR candidate IN
        SELECT v.call_id, v.envelope_id
        FROM call_envelopes AS v
        WHERE v.kept_at < p_before
          AND NOT EXISTS (
            SELECT 1 FROM call_events AS e WHERE e.call_id = v.call_id::text AND e.envelope_id = v.envelope_id)
        ORDER BY v.kept_at
        LIMIT greatest(least(p_batch, 500), 0)  -- each takes a lock until the end of the transaction
    LOOP
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(ingest_erasure_key(candidate.call_id::text));
        -- a statement of its own after the lock: sees every event committed before it
        DELETE FROM call_envelopes AS v
        WHERE v.call_id = candidate.call_id AND v.envelope_id = candidate.envelope_id
          AND NOT EXISTS (
              SELECT 1 FROM call_events AS e WHERE e.call_id = v.call_id::text AND e.envelope_id = v.envelope_id);
        IF FOUND THEN
            forgotten := forgotten + 1;
        END IF;
    END LOOP;
    RETURN forgotten;
END
$$;

REVOKE ALL ON FUNCTION ingest_keep_call_envelope(uuid, bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION ingest_call_envelope(text, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION ingest_forget_call_envelopes(timestamptz, integer) FROM PUBLIC;
