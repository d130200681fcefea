-- Ops views count the events applied in the last minute. applied_at grows with the
-- table's physical order (events are written once, applied in the same transaction or
-- soon after), so a BRIN index answers that range for almost no write cost, where a
-- btree would add an index update to every event.
CREATE INDEX IF NOT EXISTS idx_call_events_applied_at_brin ON call_events
    USING brin (applied_at) WITH (pages_per_range = 16);
