-- Per-call envelopes (ingest/envelopes.py): what every event of a call repeats (the `call`
-- snapshot, the assistant's configuration, the phone number, the customer) is kept once per
-- call, sealed, and each event's body is compressed against it (a v2 sealed value,
-- ingest/sealing.py). The event's body still holds its whole message; it opens with its
-- envelope, which ingest_call_envelope (sql/functions/71_call_envelopes.sql) reads beside it.
--
-- call_envelopes: one row per call and envelope version (a call whose snapshot changes has
-- several), named by a keyed digest of the call and the content (the service computes it;
-- the same envelope gets the same id in every worker, so it is kept once). Rows go with their
-- call: erasure deletes them (ingest_erase_events), retention deletes those no event refers
-- to any more (ingest_forget_call_envelopes).
--
-- call_events.envelope_id: the envelope the row's body was sealed against; NULL for a body
-- sealed whole (v1), a plain message, and every row written before this migration.

CREATE TABLE IF NOT EXISTS call_envelopes (
    call_id     uuid NOT NULL,
    envelope_id bytea NOT NULL,
    body        bytea NOT NULL,
    kept_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT call_envelopes_pkey PRIMARY KEY (call_id, envelope_id),
    CONSTRAINT call_envelopes_id_length CHECK (octet_length(envelope_id) = 16)
);

-- Compressed, then encrypted: TOAST stores it out of line without trying to compress it.
ALTER TABLE call_envelopes ALTER COLUMN body SET STORAGE EXTERNAL;

COMMENT ON TABLE call_envelopes IS
    'What every event of a call repeats (call snapshot, assistant, phone number, customer), kept once per call, sealed.';
COMMENT ON COLUMN call_envelopes.body IS
    'The envelope''s JSON, compressed and sealed by the service (v1:<key id>:…).';

-- Not API: Supabase's default privileges grant new tables to its API roles.
ALTER TABLE call_envelopes ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON call_envelopes FROM PUBLIC, anon, authenticated, service_role;

-- Added on the partitioned parent: every partition gets it (NULL, no rewrite).
ALTER TABLE call_events ADD COLUMN IF NOT EXISTS envelope_id bytea;
COMMENT ON COLUMN call_events.envelope_id IS
    'The call_envelopes row body was sealed against (v2:<key id>:…); NULL when body holds the whole message alone.';
