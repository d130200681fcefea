-- v1.3.0 (seed, 2025-11-01): full-text search indexes for content discovery.
-- The expressions match the seed's search query exactly, so the planner can use them.

CREATE INDEX IF NOT EXISTS idx_user_sessions_summary_search
    ON user_sessions USING gin (to_tsvector('english', call_summary));
CREATE INDEX IF NOT EXISTS idx_user_sessions_transcript_search
    ON user_sessions USING gin (to_tsvector('english', call_transcript));
