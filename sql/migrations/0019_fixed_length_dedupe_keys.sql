-- Dedupe keys become fixed-length: the worker now stores the SHA-256 (hex) of the key it
-- composed before (ingest/mapping/event_key.py), so an event whose timestamp or session id
-- runs to thousands of characters still fits the unique index. Keys recorded before are
-- rewritten the same way, so a redelivery of an event recorded before the upgrade is still
-- a duplicate. The old keys all contain '|'; a digest never does. updated_at is left as it
-- was (the rows themselves did not change).

ALTER TABLE call_events DISABLE TRIGGER call_events_touch;
UPDATE call_events
SET dedupe_key = encode(sha256(convert_to(dedupe_key, 'UTF8')), 'hex')
WHERE strpos(dedupe_key, '|') > 0;
ALTER TABLE call_events ENABLE TRIGGER call_events_touch;
