-- v1.4.0 (seed, 2025-11-01): keywords array and call outcome tracking.

ALTER TABLE user_sessions
    ADD COLUMN IF NOT EXISTS keywords text[],
    ADD COLUMN IF NOT EXISTS call_outcome text;

CREATE INDEX IF NOT EXISTS idx_user_sessions_call_outcome ON user_sessions (call_outcome);
