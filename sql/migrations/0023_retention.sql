-- Retention (ingest/ops/retention.py, docs/ops-cli.md "Retention"): how long raw events,
-- transcripts and callers' numbers are kept. The service's settings give the defaults;
-- a client's columns below override them: NULL follows the default, 0 keeps that data
-- forever, any other value is a number of days.
--
-- retention_runs: one row per run that changed data (a dry run writes nothing), with its
-- counts; `ingest retention status`, /ops and /metrics read the last one.

ALTER TABLE client_subscriptions
    ADD COLUMN IF NOT EXISTS retention_raw_events_days integer,
    ADD COLUMN IF NOT EXISTS retention_transcript_days integer,
    ADD COLUMN IF NOT EXISTS retention_anonymise_days integer;

ALTER TABLE client_subscriptions DROP CONSTRAINT IF EXISTS client_subscriptions_retention_check;
ALTER TABLE client_subscriptions ADD CONSTRAINT client_subscriptions_retention_check CHECK (
    retention_raw_events_days >= 0 AND retention_transcript_days >= 0 AND retention_anonymise_days >= 0
);

COMMENT ON COLUMN client_subscriptions.retention_raw_events_days IS
    'Days the raw call_events of this client''s finished events are kept; NULL: RETENTION_RAW_EVENTS_DAYS; 0: forever.';
COMMENT ON COLUMN client_subscriptions.retention_transcript_days IS
    'Days transcripts, summaries, recording and log URLs are kept; NULL: RETENTION_TRANSCRIPT_DAYS; 0: forever.';
COMMENT ON COLUMN client_subscriptions.retention_anonymise_days IS
    'Days before the caller''s number becomes a pseudonym; NULL: RETENTION_ANONYMISE_DAYS; 0: never.';

CREATE TABLE IF NOT EXISTS retention_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    runner       text NOT NULL,              -- worker or cli
    counts       jsonb NOT NULL,             -- {"raw_events": {"<client>": n, …}, "transcripts": …, "anonymised": …}
    overdue      bigint NOT NULL DEFAULT 0,  -- pending/waiting events past their raw window, left in place
    skipped      text[] NOT NULL DEFAULT '{}'  -- categories not run, e.g. anonymise without INGEST_PSEUDONYM_KEY
);
CREATE INDEX IF NOT EXISTS idx_retention_runs_finished_at ON retention_runs (finished_at);

-- Not API: Supabase's default privileges grant new tables to its API roles.
ALTER TABLE retention_runs ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON retention_runs FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE retention_runs_id_seq FROM PUBLIC, anon, authenticated, service_role;
