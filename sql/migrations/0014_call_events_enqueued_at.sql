-- When the endpoint could not reach Redis it keeps the delivery here as 'pending' with no
-- enqueued_at; the drainer in the web processes queues such rows once Redis answers again
-- and stamps enqueued_at, so each is handed to the queue once.
ALTER TABLE call_events ADD COLUMN IF NOT EXISTS enqueued_at timestamptz;

CREATE INDEX IF NOT EXISTS idx_call_events_unqueued ON call_events (id)
    WHERE state = 'pending' AND enqueued_at IS NULL;
