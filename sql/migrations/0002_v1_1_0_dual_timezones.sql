-- v1.1.0 (seed, 2025-11-01): dual time zone support (UTC and local wall-clock).
-- The _nz columns hold the local wall-clock time (see 0006 and 0009 for how they are kept).

ALTER TABLE user_sessions
    ADD COLUMN IF NOT EXISTS started_at_nz timestamptz,
    ADD COLUMN IF NOT EXISTS ended_at_nz timestamptz;

CREATE INDEX IF NOT EXISTS idx_user_sessions_started_at_nz ON user_sessions (started_at_nz);
CREATE INDEX IF NOT EXISTS idx_user_sessions_ended_at_nz ON user_sessions (ended_at_nz);
