-- ingest_dedupe_digest(dedupe_key): the key at the dedupe gate (call_event_keys.key_digest)
-- and in call_events' lookup index (idx_call_events_dedupe_digest), migration 0029: the
-- first 16 bytes of the SHA-256 of the key's UTF-8, of any text (not only the worker's 64 hex
-- digits). Typed uuid for its 16 bytes without a length header (bytea would take 17 and, in
-- call_event_keys, 8 more with the alignment of received_at); it is not a UUID otherwise.
--
-- Never change what it returns: call_event_keys holds its values and an index is built on it.
-- Migration 0029 defines it the same way (migrations run before these files).
CREATE OR REPLACE FUNCTION ingest_dedupe_digest(p_dedupe_key text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT encode(substring(sha256(convert_to(p_dedupe_key, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid
$$;
