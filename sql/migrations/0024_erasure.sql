-- Erasure on request (ingest erase, ingest/ops/erase.py): a caller's sessions keep their
-- billing figures and lose everything personal; their raw events are deleted. A tombstone
-- per erased call (or per erased session without a call id) makes a late or replayed
-- delivery of it an ignored event that keeps nothing of its message
-- (ingest_erased(), sql/functions/95_erasure.sql, read by ingest/apply.py).
--
-- A tombstone holds the id, when, and the access-log row of the erasure (whose reason and
-- actor say why and who); never a number, a name or a reason.

CREATE TABLE IF NOT EXISTS erased_calls (
    call_id   uuid PRIMARY KEY,
    erased_at timestamptz NOT NULL DEFAULT now(),
    audit_id  bigint  -- data_access_log.id of the `erase` row (no foreign key: the log is append-only)
);

CREATE TABLE IF NOT EXISTS erased_sessions (
    session_id text PRIMARY KEY,
    erased_at  timestamptz NOT NULL DEFAULT now(),
    audit_id   bigint,
    CONSTRAINT erased_sessions_session_id_length CHECK (length(session_id) BETWEEN 1 AND 255)
);

COMMENT ON TABLE erased_calls IS
    'Calls erased on request: an event of one is recorded as ignored (last_error ''call erased'') without its message.';
COMMENT ON TABLE erased_sessions IS
    'Sessions without a call id erased on request: their events are recorded as ignored without their message.';

-- Not API: no policies, nothing granted (Supabase's default privileges grant new tables to
-- its API roles, so they are revoked explicitly). The service reads and writes them as owner.
ALTER TABLE erased_calls ENABLE ROW LEVEL SECURITY;
ALTER TABLE erased_sessions ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON erased_calls FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON erased_sessions FROM PUBLIC, anon, authenticated, service_role;
