-- v1.2.0 (seed, 2025-11-01): call analytics fields (summary, transcript, sentiment).

ALTER TABLE user_sessions
    ADD COLUMN IF NOT EXISTS call_summary text,
    ADD COLUMN IF NOT EXISTS call_transcript text,
    ADD COLUMN IF NOT EXISTS sentiment text;

CREATE INDEX IF NOT EXISTS idx_user_sessions_sentiment ON user_sessions (sentiment);
