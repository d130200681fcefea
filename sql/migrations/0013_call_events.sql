-- call_events: the append-only raw log. Every accepted webhook event is stored here
-- first, verbatim, then applied to user_sessions; the sweeper re-applies what is still
-- pending. call_id is text, not uuid: an event with a malformed call id is still kept.

CREATE TABLE IF NOT EXISTS call_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    call_id      text,
    session_id   text,
    message_type text NOT NULL,
    dedupe_key   text NOT NULL UNIQUE,
    message      jsonb NOT NULL,
    state        text NOT NULL DEFAULT 'pending'
                 CONSTRAINT call_events_state_check
                 CHECK (state IN ('pending', 'waiting', 'applied', 'failed', 'ignored')),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    applied_at   timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_call_events_call_id ON call_events (call_id);
CREATE INDEX IF NOT EXISTS idx_call_events_session_id ON call_events (session_id);
CREATE INDEX IF NOT EXISTS idx_call_events_message_type ON call_events (message_type);
-- The sweeper's scan: unfinished events, oldest first.
CREATE INDEX IF NOT EXISTS idx_call_events_unfinished_received_at ON call_events (received_at)
    WHERE state IN ('pending', 'waiting', 'failed');

-- updated_at follows every change, whoever writes it.
CREATE OR REPLACE FUNCTION call_events_touch() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION call_events_touch() FROM PUBLIC;

DROP TRIGGER IF EXISTS call_events_touch ON call_events;
CREATE TRIGGER call_events_touch
    BEFORE UPDATE ON call_events
    FOR EACH ROW EXECUTE FUNCTION call_events_touch();

ALTER TABLE call_events ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON call_events FROM anon, authenticated;
