-- Abuse monitoring (ingest/ops/anomalies.py, docs/abuse.md): what the detectors found, and
-- each scan that looked.
--
-- call_anomalies: one row per unusual pattern, kept per (kind, client_id, subject_kind,
-- subject) and window. A scan that finds the same pattern again over a window overlapping
-- the row's extends that row (ingest_record_anomaly, sql/functions/87_anomalies.sql), so a
-- rerun, or scans every few minutes during one burst, leave one row. `subject` is a client
-- id, a Vapi phone number id, or a caller's (or dialled number's) pseudonym, never a number.
-- `details` holds identifiers and counts only.
--
-- anomaly_scans: one row per scan, with what it found; `ingest anomalies`, /ops and /metrics
-- read the last one, and the workers' schedule (due_now) its finished_at.

CREATE TABLE IF NOT EXISTS call_anomalies (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL,
    client_id        text,                           -- the client the calls belong to; NULL: they had none
    subject_kind     text NOT NULL,
    subject          text NOT NULL,
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    observed         numeric NOT NULL,
    baseline         numeric,                        -- volume and cost: the median of the same hour in past weeks
    score            numeric,
    details          jsonb NOT NULL DEFAULT '{}',
    detected_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    ack_reason       text,
    CONSTRAINT call_anomalies_kind_check CHECK (
        kind IN ('volume', 'repeat_caller', 'short_calls', 'cost', 'outbound_destination', 'vapi_signal')
    ),
    CONSTRAINT call_anomalies_subject_kind_check CHECK (subject_kind IN ('client', 'phone_number', 'caller')),
    -- A caller is only ever named by its pseudonym (ingest.pseudonym): never a phone number.
    CONSTRAINT call_anomalies_caller_check CHECK (subject_kind <> 'caller' OR subject ~ '^anon:[0-9a-f]+$'),
    CONSTRAINT call_anomalies_subject_check CHECK (subject <> ''),
    CONSTRAINT call_anomalies_window_check CHECK (window_start < window_end),
    CONSTRAINT call_anomalies_details_check CHECK (jsonb_typeof(details) = 'object'),
    CONSTRAINT call_anomalies_ack_check CHECK (
        (acknowledged_at IS NULL) = (acknowledged_by IS NULL) AND (acknowledged_at IS NULL) = (ack_reason IS NULL)
    )
);
-- What /ops, /metrics and the blocked-caller check read: the open ones.
CREATE INDEX IF NOT EXISTS idx_call_anomalies_open ON call_anomalies (kind) WHERE acknowledged_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_call_anomalies_detected_at ON call_anomalies (detected_at);
-- The row a new detection extends: same key, latest window.
CREATE INDEX IF NOT EXISTS idx_call_anomalies_key ON call_anomalies (kind, subject_kind, subject, window_end);

CREATE TABLE IF NOT EXISTS anomaly_scans (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL,           -- the moment scanned: every window ends here
    finished_at  timestamptz NOT NULL DEFAULT now(),
    runner       text NOT NULL,                  -- worker or cli
    found        jsonb NOT NULL DEFAULT '{}',    -- {"<kind>": detections this scan}
    new          integer NOT NULL DEFAULT 0,     -- rows the scan created …
    updated      integer NOT NULL DEFAULT 0,     -- … and rows it extended
    skipped      text[] NOT NULL DEFAULT '{}'    -- detectors not run, e.g. repeat_caller without INGEST_PSEUDONYM_KEY
);
CREATE INDEX IF NOT EXISTS idx_anomaly_scans_finished_at ON anomaly_scans (finished_at);

-- A call's time for the detectors is its start, else its end, else when its row was made
-- (ingest_anomaly_calls): rows with neither time are few, and found through this index.
CREATE INDEX IF NOT EXISTS idx_user_sessions_untimed_created_at ON user_sessions (created_at)
    WHERE started_at_utc IS NULL AND ended_at_utc IS NULL;

-- Not API: Supabase's default privileges grant new tables to its API roles.
ALTER TABLE call_anomalies ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON call_anomalies FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE call_anomalies_id_seq FROM PUBLIC, anon, authenticated, service_role;
ALTER TABLE anomaly_scans ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON anomaly_scans FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE anomaly_scans_id_seq FROM PUBLIC, anon, authenticated, service_role;
