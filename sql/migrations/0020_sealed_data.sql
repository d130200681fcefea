-- Sealed personal data (ingest/sealing.py): raw bodies and original transcripts are
-- encrypted by the service under keys the database never sees.
--
-- call_events: a sealed event keeps its message in `body` (compressed, then AES-GCM) and
-- `message` is NULL; a row written in plain text (INGEST_PLAINTEXT, or before this
-- migration) keeps `message` and no body. Exactly one of them holds the message. What the
-- SQL reads of a message moves to clear, non-personal columns the service fills:
--   final_transcript  a final transcript event (the rebuild of a transcript reads these)
--   status            a status-update's status
--   event_at          the message's own timestamp
-- Rows recorded before have them NULL/false and are still read through `message`
-- (ingest keys rotate fills them when it seals such a row).
--
-- user_sessions: call_transcript and call_summary hold text with personal data redacted
-- (ingest/mapping/redaction.py), which the seed's full-text indexes and RLS reads use; the
-- originals sit sealed beside them, moved by the merge together with the redacted text.

ALTER TABLE call_events
    ALTER COLUMN message DROP NOT NULL,
    ADD COLUMN IF NOT EXISTS body bytea,
    ADD COLUMN IF NOT EXISTS final_transcript boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS status text,
    ADD COLUMN IF NOT EXISTS event_at timestamptz;

-- Sealed bodies are compressed before they are encrypted, and ciphertext does not compress:
-- TOAST stores them out of line without trying.
ALTER TABLE call_events ALTER COLUMN body SET STORAGE EXTERNAL;

ALTER TABLE call_events DROP CONSTRAINT IF EXISTS call_events_one_message;
ALTER TABLE call_events ADD CONSTRAINT call_events_one_message
    CHECK ((message IS NULL) <> (body IS NULL));

ALTER TABLE user_sessions
    ADD COLUMN IF NOT EXISTS call_transcript_original text,
    ADD COLUMN IF NOT EXISTS call_summary_original text;

COMMENT ON COLUMN call_events.body IS
    'The message, compressed and sealed by the service (v1:<key id>:…); NULL when message holds it in plain text.';
COMMENT ON COLUMN user_sessions.call_transcript_original IS
    'The transcript before redaction, sealed (v1:<key id>:…) or marked plain:; NULL when call_transcript has nothing redacted.';
COMMENT ON COLUMN user_sessions.call_summary_original IS
    'The summary before redaction, sealed (v1:<key id>:…) or marked plain:; NULL when call_summary has nothing redacted.';

-- user_sessions_local (0018) lists the table's columns as they were when it was made: made
-- again so that it shows the originals too (the service's `calls show --reveal` reads it),
-- with the same comments and grants.
DROP VIEW IF EXISTS user_sessions_local;
CREATE VIEW user_sessions_local WITH (security_invoker = true) AS
SELECT s.*,
       s.started_at_nz AT TIME ZONE 'UTC' AS started_at_local,
       s.ended_at_nz AT TIME ZONE 'UTC' AS ended_at_local,
       z.local_timezone
FROM public.user_sessions AS s
CROSS JOIN (SELECT public.ingest_local_timezone() AS local_timezone) AS z;

COMMENT ON VIEW user_sessions_local IS
    'user_sessions with each *_nz column also shown as a plain local timestamp (*_local) and its zone. '
    'Runs with the querying role''s rights: the table''s row-level security applies.';
COMMENT ON COLUMN user_sessions_local.started_at_local IS
    'started_at_nz as the local wall-clock time it holds (timestamp without time zone), in local_timezone.';
COMMENT ON COLUMN user_sessions_local.ended_at_local IS
    'ended_at_nz as the local wall-clock time it holds (timestamp without time zone), in local_timezone.';
COMMENT ON COLUMN user_sessions_local.local_timezone IS
    'The configured zone (ingest_local_timezone()) the *_local times are in. A row written before '
    'LOCAL_TIMEZONE last changed keeps the times of the zone it was written in.';

-- Granted like the table, read-only: Supabase's default privileges grant new relations to
-- every API role, so everything is revoked first.
REVOKE ALL ON user_sessions_local FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON user_sessions_local TO authenticated, service_role;
