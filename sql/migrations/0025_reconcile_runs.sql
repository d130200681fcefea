-- Reconciliation with Vapi's API (ingest/ops/reconcile.py, docs/ops-cli.md "ingest reconcile"):
-- the calls Vapi lists are applied as `api.call` events, and each run over a window is kept here.
--
-- reconcile_runs: one row per run over a window that was not a dry run, failed ones included
-- (error set, no counts). `watermark` is the end of the time up to which every call has been
-- read without a gap: a run whose window starts at or before the previous watermark moves it
-- to its own end; a failed run, or one that leaves a gap, keeps it. The workers start their
-- next window no later than it. `ingest reconcile --status`, `ingest queue`, /ops and /metrics
-- read the last rows.

CREATE TABLE IF NOT EXISTS reconcile_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL DEFAULT now(),
    runner        text NOT NULL,                -- worker or cli
    window_start  timestamptz NOT NULL,         -- calls updated at or after this …
    window_end    timestamptz NOT NULL,         -- … and before this were listed
    counts        jsonb NOT NULL DEFAULT '{}',  -- {"complete": n, "filled": n, "missing": n}
    error         text,                         -- NULL: the run succeeded; else why the API could not be read
    watermark     timestamptz,                  -- every call updated before it has been reconciled
    CONSTRAINT reconcile_runs_window_check CHECK (window_start < window_end)
);
CREATE INDEX IF NOT EXISTS idx_reconcile_runs_finished_at ON reconcile_runs (finished_at);

-- The /ops panel's "reached us only through reconciliation": api.call events by time.
CREATE INDEX IF NOT EXISTS idx_call_events_api_call_received_at ON call_events (received_at)
    WHERE message_type = 'api.call';

-- Not API: Supabase's default privileges grant new tables to its API roles.
ALTER TABLE reconcile_runs ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON reconcile_runs FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE reconcile_runs_id_seq FROM PUBLIC, anon, authenticated, service_role;
