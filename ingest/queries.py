"""Every SQL statement the Python code runs, in one module (the schema lives in ``sql/``)."""

from __future__ import annotations

# -- the endpoint's fallback: Redis is down, keep the delivery in Postgres -----------------

STORE_PENDING_EVENT = """
INSERT INTO call_events (received_at, call_id, session_id, message_type, dedupe_key, message, state)
VALUES (%(received_at)s, %(call_id)s, %(session_id)s, %(message_type)s, %(dedupe_key)s, %(message)s, 'pending')
ON CONFLICT (dedupe_key) DO NOTHING
"""

# Rows the endpoint kept while Redis was down and nobody has queued since; locked so that
# several web processes draining at once hand each row to the queue once.
CLAIM_UNQUEUED_EVENTS = """
SELECT id, message, (extract(epoch FROM received_at) * 1000)::bigint AS received_at_ms
FROM call_events
WHERE state = 'pending' AND enqueued_at IS NULL
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

MARK_EVENTS_QUEUED = "UPDATE call_events SET enqueued_at = now() WHERE id = ANY(%(ids)s)"

# -- the worker: record, apply, recover ------------------------------------------------------

RECORD_FAILURE = """
INSERT INTO call_events AS e (received_at, call_id, session_id, message_type, dedupe_key, message, state,
                              attempts, last_error)
VALUES (%(received_at)s, %(call_id)s, %(session_id)s, %(message_type)s, %(dedupe_key)s, %(message)s, %(state)s,
        1, %(last_error)s)
ON CONFLICT (dedupe_key) DO UPDATE SET
    attempts = e.attempts + 1,
    last_error = EXCLUDED.last_error,
    state = CASE WHEN e.state IN ('applied', 'ignored') THEN e.state ELSE EXCLUDED.state END
"""

SET_EVENT_STATE = """
UPDATE call_events
SET state = %(state)s, last_error = %(error)s,
    applied_at = CASE WHEN %(state)s = 'applied' THEN now() ELSE applied_at END
WHERE id = %(id)s
"""

RECORD_AND_APPLY = """
SELECT event_id, state, outcome, ended, transcript_source
FROM ingest_record_and_apply(%(received_at)s, %(call_id)s, %(session_id)s, %(message_type)s, %(dedupe_key)s,
                             %(message)s, %(patch)s::jsonb)
"""

APPLY_PATCH = "SELECT outcome, ended, transcript_source FROM ingest_apply_patch(%(patch)s::jsonb)"

CLAIM_WAITING_FOR_CALL = """
SELECT id, message FROM call_events WHERE call_id = %(call_id)s AND state = 'waiting' ORDER BY id FOR UPDATE
"""

CLAIM_WAITING_FOR_SESSION = """
SELECT id, message FROM call_events
WHERE session_id = %(session_id)s AND call_id IS NULL AND state = 'waiting' ORDER BY id FOR UPDATE
"""

FINAL_TRANSCRIPTS = """
SELECT message -> 'timestamp', message ->> 'role', message ->> 'transcript'
FROM call_events
WHERE call_id = %(call_id)s
  AND message_type IN ('transcript', 'transcript[transcriptType="final"]', 'transcript[transcriptType=''final'']')
  AND (message_type <> 'transcript' OR message ->> 'transcriptType' = 'final')
  AND state IN ('applied', 'pending', 'waiting')
"""

# The sweeper: events left pending or waiting past a grace period (a lost queue message,
# a retry whose re-enqueue failed, a row that now exists). Rows the endpoint kept while
# Redis was down belong to the web drainer first and get a longer grace.
STALE_EVENTS = """
SELECT id FROM call_events
WHERE state IN ('pending', 'waiting')
  AND updated_at < now() - make_interval(secs => %(grace)s)
  AND (state = 'waiting' OR enqueued_at IS NOT NULL OR updated_at < now() - make_interval(secs => %(unqueued_grace)s))
ORDER BY received_at
LIMIT %(limit)s
"""

CLAIM_STORED_EVENT = """
SELECT message, received_at FROM call_events
WHERE id = %(id)s AND state IN ('pending', 'waiting', 'failed')
FOR UPDATE SKIP LOCKED
"""

# Calls that ended a while ago (within the last day) with no transcript but with final
# transcript events: their report never came, or came without one, so the sweeper builds
# the transcript from the finals. Calls without finals (unanswered, say) are not selected.
CALLS_WITHOUT_TRANSCRIPT = """
SELECT s.call_id::text FROM user_sessions AS s
WHERE s.call_transcript IS NULL AND s.call_id IS NOT NULL
  AND s.ended_at_utc < now() - make_interval(secs => %(grace)s)
  AND s.ended_at_utc > now() - make_interval(secs => %(grace)s) - interval '1 day'
  AND EXISTS (
      SELECT 1 FROM call_events AS e
      WHERE e.call_id = s.call_id::text
        AND e.message_type IN ('transcript', 'transcript[transcriptType="final"]',
                               'transcript[transcriptType=''final'']')
        AND (e.message_type <> 'transcript' OR e.message ->> 'transcriptType' = 'final')
  )
ORDER BY s.ended_at_utc
LIMIT %(limit)s
"""
