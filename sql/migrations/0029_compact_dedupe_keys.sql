-- Fewer bytes per event for the dedupe gate (issue 17): the 64-character dedupe key was
-- stored four times (call_events' column and its btree, call_event_keys' heap and primary
-- key). call_events.dedupe_key stays as it is (text, what the application knows); the rest
-- holds a 16-byte digest of it, ingest_dedupe_digest(dedupe_key) (typed uuid: 16 bytes, no
-- length header):
--
-- * call_event_keys (key_digest uuid PRIMARY KEY, received_at): the gate, converted in place
--   (the column's type changes: the table and its primary key are rewritten);
-- * idx_call_events_dedupe_digest, a hash index on ingest_dedupe_digest(dedupe_key), replaces
--   the btree idx_call_events_dedupe_key: a known key's event is looked up by equality only,
--   and a key at the gate (a digest) finds its event through it (ingest_forget_call_event_keys);
-- * idx_call_event_keys_received_at becomes a BRIN index: keys arrive in received_at order,
--   and only the forgetting of old keys reads by received_at.
--
-- Locks, held to the commit of this migration's transaction: ACCESS EXCLUSIVE on
-- call_event_keys (every writer of events waits: the endpoint keeps queueing on Redis), SHARE
-- on call_events and its partitions from the hash index's build (reads go on), and ACCESS
-- EXCLUSIVE on call_events only for the last statement, the old index's drop. docs/schema.md
-- gives the time measured (9 to 14 s per million events and keys).

-- As in sql/functions/12_dedupe_digest.sql, which runs after the migrations (keep them the same).
CREATE OR REPLACE FUNCTION ingest_dedupe_digest(p_dedupe_key text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT encode(substring(sha256(convert_to(p_dedupe_key, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid
$$;

-- The gate first, as the writers take it (call_event_keys, then call_events): a worker
-- recording an event at this moment finishes, or waits, rather than deadlocking with this.
LOCK TABLE call_event_keys IN ACCESS EXCLUSIVE MODE;

-- The new index before the old one goes: building it takes SHARE on call_events (reads go
-- on); the drop takes ACCESS EXCLUSIVE, held from there to the commit, so it comes last.
CREATE INDEX idx_call_events_dedupe_digest ON call_events USING hash (ingest_dedupe_digest(dedupe_key));

DROP INDEX idx_call_event_keys_received_at;
ALTER TABLE call_event_keys
    ALTER COLUMN dedupe_key TYPE uuid USING ingest_dedupe_digest(dedupe_key);
ALTER TABLE call_event_keys RENAME COLUMN dedupe_key TO key_digest;
-- ingest_forget_call_event_keys: keys of removed events received before a time.
CREATE INDEX idx_call_event_keys_received_at ON call_event_keys USING brin (received_at);

COMMENT ON TABLE call_event_keys IS
    'The dedupe gate of call_events: one row per recorded event (ingest_dedupe_digest of its dedupe_key, and the received_at of its partition).';
COMMENT ON COLUMN call_event_keys.key_digest IS
    'ingest_dedupe_digest(call_events.dedupe_key): the first 16 bytes of the SHA-256 of the key.';
ANALYZE call_event_keys;

DROP INDEX idx_call_events_dedupe_key;
