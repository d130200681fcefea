-- ingest_erased(call_id, session_id): whether the call (or, without a call id, the
-- session) was erased on request (migration 0024). The worker asks before it records an
-- event: an erased call's event is kept as ignored, without its message.
--
-- It first takes a shared advisory lock on the key for the rest of the transaction;
-- `ingest erase` takes the same lock exclusively (ingest_erase_lock) before it writes the
-- tombstone. Either the event's transaction commits first and the erasure then removes
-- what it wrote, or the erasure commits first and the lookup, a statement of its own
-- after the lock (a fresh snapshot: the function is VOLATILE), sees the tombstone. The
-- shared lock costs no wait unless that call is being erased right then.

CREATE OR REPLACE FUNCTION ingest_erasure_key(p_key text) RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$ SELECT hashtextextended('ingest:erase:' || p_key, 0) $$;

CREATE OR REPLACE FUNCTION ingest_erased(p_call_id uuid, p_session_id text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF p_call_id IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock_shared(ingest_erasure_key(p_call_id::text));
        RETURN EXISTS (SELECT 1 FROM erased_calls WHERE call_id = p_call_id);
    END IF;
    IF p_session_id IS NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(ingest_erasure_key(p_session_id));
    RETURN EXISTS (SELECT 1 FROM erased_sessions WHERE session_id = p_session_id);
END
$$;

CREATE OR REPLACE FUNCTION ingest_erase_lock(p_key text) RETURNS void
LANGUAGE sql VOLATILE
AS $$ SELECT pg_advisory_xact_lock(ingest_erasure_key(p_key)) $$;

REVOKE ALL ON FUNCTION ingest_erasure_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ingest_erased(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ingest_erase_lock(text) FROM PUBLIC;

-- ingest_erase_events(call_id, session_id): delete the raw events of an erased call (or, for
-- a row without a call id, of its session), and their keys at the dedupe gate
-- (call_event_keys, migration 0022; the keys' digests since 0029) so that a later delivery
-- is recorded again, as an ignored event without its message, instead of passing for a
-- duplicate, and the call's envelopes (call_envelopes, migration 0028). The number of
-- events deleted.
CREATE OR REPLACE FUNCTION ingest_erase_events(p_call_id text, p_session_id text) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    gone text[];
BEGIN
    IF p_call_id IS NOT NULL THEN
        WITH deleted AS (DELETE FROM call_events WHERE call_id = p_call_id RETURNING dedupe_key)
        SELECT array_agg(dedupe_key) INTO gone FROM deleted;
    ELSE
        WITH deleted AS (
            DELETE FROM call_events WHERE session_id = p_session_id AND call_id IS NULL RETURNING dedupe_key
        )
        SELECT array_agg(dedupe_key) INTO gone FROM deleted;
    END IF;
    IF gone IS NOT NULL AND to_regclass('call_event_keys') IS NOT NULL THEN
        DELETE FROM call_event_keys
        WHERE key_digest = ANY(ARRAY(SELECT ingest_dedupe_digest(g.key) FROM unnest(gone) AS g(key)));
    END IF;
    -- the call's envelopes (migration 0028): what its events repeated, kept once
    IF p_call_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
       AND to_regclass('call_envelopes') IS NOT NULL THEN
        DELETE FROM call_envelopes WHERE call_id = p_call_id::uuid;
    END IF;
    RETURN coalesce(cardinality(gone), 0);
END
$$;

REVOKE ALL ON FUNCTION ingest_erase_events(text, text) FROM PUBLIC;
