"""Every SQL statement the Python code runs, in one module (the schema lives in ``sql/``)."""

from __future__ import annotations

# Readers of a sealed body select its call's envelope beside it (``ingest_call_envelope``,
# sql/functions/71_call_envelopes.sql; NULL for a body sealed whole): ``Privacy.open_message``
# needs it for a body sealed against it.
_ENVELOPE = "ingest_call_envelope(call_id, envelope_id) AS envelope"

# -- the endpoint's fallback: Redis is down, keep the delivery in Postgres -----------------

# A key already in call_event_keys (the dedupe gate, migration 0022; the key's digest since
# 0029) means the event is kept already: nothing is written. The endpoint seals a message
# whole (no envelope).
STORE_PENDING_EVENT = """
WITH key AS (
    INSERT INTO call_event_keys (key_digest, received_at)
    VALUES (ingest_dedupe_digest(%(dedupe_key)s::text), %(received_at)s)
    ON CONFLICT (key_digest) DO NOTHING
    RETURNING received_at
)
INSERT INTO call_events (received_at, call_id, session_id, message_type, dedupe_key, message, body,
                         final_transcript, status, event_at, state)
SELECT key.received_at, %(call_id)s::text, %(session_id)s::text, %(message_type)s::text, %(dedupe_key)s::text,
       %(message)s::jsonb, %(body)s::bytea, %(final_transcript)s::boolean, %(status)s::text,
       %(event_at)s::timestamptz, 'pending'
FROM key
"""

# Rows the endpoint kept while Redis was down and nobody has queued since; locked so that
# several web processes draining at once hand each row to the queue once.
CLAIM_UNQUEUED_EVENTS = f"""
SELECT id, message, body, {_ENVELOPE}, (extract(epoch FROM received_at) * 1000)::bigint AS received_at_ms
FROM call_events
WHERE state = 'pending' AND enqueued_at IS NULL
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

MARK_EVENTS_QUEUED = "UPDATE call_events SET enqueued_at = now() WHERE id = ANY(%(ids)s)"

# -- the worker: record, apply, recover ------------------------------------------------------

# The event came off the queue, which still holds it (a retry) or gave it up (failed): it
# is marked queued, so the web processes' drainer does not queue it a second time.
RECORD_FAILURE = """
SELECT ingest_record_event_failure(%(received_at)s, %(call_id)s, %(session_id)s, %(message_type)s, %(dedupe_key)s,
                                   %(message)s, %(body)s, %(final_transcript)s, %(status)s, %(event_at)s,
                                   %(state)s, %(last_error)s)
"""

# This month's call_events partition and the next ones (sql/functions/72_call_event_partitions.sql).
ENSURE_CALL_EVENT_PARTITIONS = "SELECT ingest_ensure_call_event_partitions()"

SET_EVENT_STATE = """
UPDATE call_events
SET state = %(state)s, last_error = %(error)s,
    applied_at = CASE WHEN %(state)s = 'applied' THEN now() END
WHERE id = %(id)s
"""

# An event that cannot be opened (sealed under a key this process does not hold) keeps its
# state; the error says why it waits.
SET_EVENT_ERROR = "UPDATE call_events SET last_error = %(error)s WHERE id = %(id)s"

# A body sealed whole (an erased call's reduced event: ``ingest.apply.record_erased``). A body
# sealed against its call's envelope goes through RECORD_AND_APPLY_UNLESS_ERASED or the batch,
# which send the envelope (``Event.row(with_envelope=True)``) for the function to keep.
RECORD_AND_APPLY = """
SELECT event_id, state, outcome, ended, transcript_source
FROM ingest_record_and_apply(%(received_at)s, %(call_id)s, %(session_id)s, %(message_type)s, %(dedupe_key)s,
                             %(message)s, %(body)s, %(final_transcript)s, %(status)s, %(event_at)s,
                             %(patch)s::jsonb)
"""

# A group commit's batch (worker/group_commit.py): each parameter an array, one element per
# event; a row per event not a duplicate, with its position (from 1).
RECORD_AND_APPLY_BATCH = """
SELECT ordinal, event_id, state, outcome, ended, transcript_source
FROM ingest_record_and_apply_batch(
    %(received_at)b::timestamptz[], %(call_id)b::text[], %(session_id)b::text[], %(message_type)b::text[],
    %(dedupe_key)b::text[], %(message)b::jsonb[], %(body)b::bytea[], %(final_transcript)b::boolean[],
    %(status)b::text[], %(event_at)b::timestamptz[], %(patch)b::jsonb[], %(erasure_call_id)b::uuid[],
    %(erasure_session_id)b::text[], %(envelope_id)b::bytea[], %(envelope)b::bytea[])
"""

APPLY_PATCH = "SELECT outcome, ended, transcript_source FROM ingest_apply_patch(%(patch)s::jsonb)"

# Whether the event's call (or session) was erased on request (sql/functions/95_erasure.sql).
ERASED = "SELECT ingest_erased(%(erasure_call_id)s::uuid, %(erasure_session_id)s::text)"

# The worker's round trip: RECORD_AND_APPLY unless the event's call (or session) was erased
# on request, which it asks first (ingest_erased: a shared advisory lock and one primary-key
# lookup, sql/functions/95_erasure.sql); state 'erased' then, and nothing recorded.
RECORD_AND_APPLY_UNLESS_ERASED = """
SELECT event_id, state, outcome, ended, transcript_source
FROM ingest_record_and_apply_unless_erased(
    %(received_at)s, %(call_id)s, %(session_id)s, %(message_type)s, %(dedupe_key)s, %(message)s, %(body)s,
    %(final_transcript)s, %(status)s, %(event_at)s, %(patch)s::jsonb, %(erasure_call_id)s::uuid,
    %(erasure_session_id)s::text, %(envelope_id)s::bytea, %(envelope)s::bytea)
"""

# An erased call's event, once recorded (``RECORD_AND_APPLY`` with no patch: ignored): its
# message reduced to ``{"type", "erased": true}`` and the reason, also over a row the endpoint
# had kept for it (pending) with its whole message.
REDUCE_ERASED_EVENT = """
UPDATE call_events
SET message = %(message)s, body = %(body)s, envelope_id = NULL, final_transcript = false, status = NULL,
    event_at = NULL, state = 'ignored', applied_at = NULL, last_error = %(last_error)s
WHERE id = %(id)s
"""

CLAIM_WAITING_FOR_CALL = f"""
SELECT id, message, body, {_ENVELOPE}, received_at FROM call_events
WHERE call_id = %(call_id)s AND state = 'waiting' ORDER BY id FOR UPDATE
"""

CLAIM_WAITING_FOR_SESSION = f"""
SELECT id, message, body, {_ENVELOPE}, received_at FROM call_events
WHERE session_id = %(session_id)s AND call_id IS NULL AND state = 'waiting' ORDER BY id FOR UPDATE
"""

# A final transcript event: the clear column (migration 0020), or, for a row recorded in
# plain text before it, the message itself. The worker opens what it selects.
_FINAL_TRANSCRIPT = """(e.final_transcript OR (
      e.message_type IN ('transcript', 'transcript[transcriptType="final"]', 'transcript[transcriptType=''final'']')
      AND (e.message_type <> 'transcript' OR e.message ->> 'transcriptType' = 'final')))"""

FINAL_TRANSCRIPTS = f"""
SELECT e.message, e.body, ingest_call_envelope(e.call_id, e.envelope_id) AS envelope
FROM call_events AS e
WHERE e.call_id = %(call_id)s
  AND {_FINAL_TRANSCRIPT}
  AND e.state IN ('applied', 'pending', 'waiting')
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

CLAIM_STORED_EVENT = f"""
SELECT message, body, {_ENVELOPE}, received_at FROM call_events
WHERE id = %(id)s AND state IN ('pending', 'waiting', 'failed')
FOR UPDATE SKIP LOCKED
"""

# Calls that ended a while ago (within the last day) with no transcript but with final
# transcript events: their report never came, or came without one, so the sweeper builds
# the transcript from the finals. Calls without finals (unanswered, say) are not selected.
# With each call comes the id of its newest final (the finals FINAL_TRANSCRIPTS reads); when
# they give no transcript, MARK_TRANSCRIPT_TRIED keeps that id in the row, so such a call
# is tried once, again only when a newer final arrives, and never crowds out the calls
# behind it.
CALLS_WITHOUT_TRANSCRIPT = f"""
SELECT s.call_id::text, f.newest FROM user_sessions AS s
CROSS JOIN LATERAL (
    SELECT max(e.id) AS newest FROM call_events AS e
    WHERE e.call_id = s.call_id::text
      AND {_FINAL_TRANSCRIPT}
      AND e.state IN ('applied', 'pending', 'waiting')
) AS f
WHERE s.call_transcript IS NULL AND s.call_id IS NOT NULL
  AND s.ended_at_utc < now() - make_interval(secs => %(grace)s)
  AND s.ended_at_utc > now() - make_interval(secs => %(grace)s) - interval '1 day'
  AND f.newest > coalesce((s.metadata ->> 'transcript_finals_tried')::bigint, 0)
ORDER BY s.ended_at_utc
LIMIT %(limit)s
"""

# Only a row still without a transcript is marked: one the rebuild gave a transcript stays
# exactly what re-deriving it from call_events gives (ingest rebuild).
MARK_TRANSCRIPT_TRIED = """
UPDATE user_sessions
SET metadata = coalesce(metadata, '{}'::jsonb) || jsonb_build_object('transcript_finals_tried', %(newest)s::bigint)
WHERE call_id = %(call_id)s::uuid AND call_transcript IS NULL
"""

# --- ops: what the event log holds (ingest.ops.backlog) ---

# Only the unfinished states, which the partial index on received_at covers; applied and
# ignored events are the bulk of the table and are not counted here.
EVENT_STATE_COUNTS = """
SELECT state, count(*) FROM call_events
WHERE state IN ('pending', 'waiting', 'failed')
GROUP BY state
"""

FAILED_EVENTS_BY_ERROR = """
SELECT left(split_part(coalesce(last_error, ''), E'\\n', 1), 200) AS error, count(*) AS n
FROM call_events
WHERE state = 'failed'
GROUP BY 1
ORDER BY n DESC, error
LIMIT %(limit)s
"""

APPLIED_SINCE = """
SELECT count(*) FROM call_events
WHERE applied_at > now() - make_interval(secs => %(seconds)s)
"""

# --- ops: inspecting, re-applying and discarding events (ingest.ops.events) ---

# The filters of `ingest events list` and `reapply`, so both pick the same events. ``states`` is
# pending+waiting or failed by default, both served by the partial index on received_at;
# `list --state applied|ignored` reads the whole table (the bulk of it), newest first.
_EVENT_FILTERS = """
WHERE state = ANY(%(states)s)
  AND (%(message_type)s::text IS NULL OR message_type = %(message_type)s::text)
  AND (%(call)s::text IS NULL OR call_id = %(call)s::text OR session_id = %(call)s::text)
  AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s::timestamptz)
"""

LIST_EVENTS = f"""
SELECT id, received_at, message_type, call_id, session_id, state, attempts,
       nullif(split_part(coalesce(last_error, ''), E'\\n', 1), '') AS error
FROM call_events{_EVENT_FILTERS}ORDER BY received_at DESC, id DESC
LIMIT %(limit)s
"""

GET_EVENT = f"""
SELECT id, received_at, message_type, call_id, session_id, state, attempts,
       nullif(split_part(coalesce(last_error, ''), E'\\n', 1), '') AS error,
       last_error, applied_at, updated_at, enqueued_at, dedupe_key, message, body, {_ENVELOPE}
FROM call_events
WHERE id = %(id)s
"""

EVENT_STATE = "SELECT state FROM call_events WHERE id = %(id)s"

# Giving up on failed events: 'ignored' stops them counting as failed; the error is kept.
# Their dedupe keys name the dead letters that carry them (ingest.ops.dead_letters).
DISCARD_FAILED_EVENTS = """
UPDATE call_events SET state = 'ignored' WHERE id = ANY(%(ids)s) AND state = 'failed'
RETURNING dedupe_key
"""

# --- ops: re-deriving user_sessions rows from call_events (ingest.ops.rebuild) ---

# The row a key names: by call id first, else by session id; locked for the rebuild.
SESSION_ROW_FOR_REBUILD = """
SELECT * FROM user_sessions
WHERE call_id = %(call_id)s::uuid OR session_id = %(session_id)s::text
ORDER BY call_id IS NOT DISTINCT FROM %(call_id)s::uuid DESC
LIMIT 1
FOR UPDATE
"""

SESSION_ROW_BY_ID = "SELECT * FROM user_sessions WHERE id = %(id)s"

# Whether retention may have removed some of a row's raw events (its client's raw-event
# window, measured from the row's first event, or its transcript window, which takes the
# call's raw events with it: ingest/ops/retention.py): a rebuild would then lose values.
SESSION_PAST_RAW_RETENTION = """
SELECT ingest_retention_due(s.created_at, ingest_retention_days(c.retention_raw_events_days, %(raw_days)s), now())
    OR ingest_retention_due(coalesce(s.ended_at_utc, s.started_at_utc, s.created_at),
                            ingest_retention_days(c.retention_transcript_days, %(transcript_days)s), now())
FROM user_sessions AS s LEFT JOIN client_subscriptions AS c ON c.client_id = s.client_id
WHERE s.id = %(id)s
"""

# The advisory lock ingest_apply_patch takes before creating a row (same key expression).
LOCK_SESSION_KEY = "SELECT pg_advisory_xact_lock(hashtextextended('ingest:' || %(key)s::text, 0))"

# Every recorded event of a row that is, or will be, part of it (not failed, not ignored):
# the call's own events, and events naming only the row's session.
EVENTS_OF_SESSION_ROW = f"""
SELECT id, message, body, {_ENVELOPE}, received_at FROM call_events
WHERE (call_id = %(call_id)s::text OR (call_id IS NULL AND session_id = %(session_id)s::text))
  AND state IN ('applied', 'pending', 'waiting')
ORDER BY id
"""

DELETE_SESSION_ROW = "DELETE FROM user_sessions WHERE id = %(id)s"

SESSION_ROW_BY_KEY = """
SELECT * FROM user_sessions
WHERE call_id = %(call_id)s::uuid OR (call_id IS NULL AND session_id = %(session_id)s::text)
ORDER BY call_id IS NOT DISTINCT FROM %(call_id)s::uuid DESC
LIMIT 1
"""

# The rebuilt row keeps the identity of the row it replaces; the usage ledger follows the
# id (ON UPDATE CASCADE) and nothing it counts changes.
RESTORE_SESSION_IDENTITY = """
UPDATE user_sessions SET id = %(id)s, created_at = %(created_at)s WHERE id = %(new_id)s
"""

# Keyset pages over every row, for ``ingest rebuild --all``.
SESSION_KEYS_PAGE = """
SELECT id, call_id::text, session_id FROM user_sessions
WHERE id > %(after)s
ORDER BY id
LIMIT %(limit)s
"""

# --- ops page: recent calls, one call's row and its events (ingest.ops.page.data) ---

# The calls list: newest start first (rows not started yet last), filtered, one page of it.
# ``since`` / ``until`` bound started_at_utc (until exclusive); a bad assistant id matches nothing.
OPS_CALLS_PAGE = """
SELECT call_id, session_id, type, customer_number, business_number, started_at_utc, ended_at_utc, ended_reason,
       duration_seconds, cost_total, call_outcome, sentiment, created_at, client_id, assistant_id
FROM user_sessions
WHERE (%(client)s::text IS NULL OR client_id = %(client)s::text)
  AND (%(assistant)s::text IS NULL OR assistant_id = ingest_try_uuid(%(assistant)s::text))
  AND (%(outcome)s::text IS NULL OR call_outcome = %(outcome)s::text)
  AND (%(since)s::timestamptz IS NULL OR started_at_utc >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR started_at_utc < %(until)s::timestamptz)
ORDER BY started_at_utc DESC NULLS LAST, id DESC
LIMIT %(limit)s OFFSET %(offset)s
"""

OPS_SESSION_BY_KEY = """
SELECT call_id, session_id, type, customer_number, business_number, started_at_utc, ended_at_utc, ended_reason,
       duration_seconds, duration_minutes, cost_total, call_outcome, sentiment, created_at, assistant_id,
       phone_number_id, client_id, user_id, source, call_summary, call_transcript, keywords, server_messages, metadata,
       call_summary_original, call_transcript_original
FROM user_sessions
WHERE call_id = ingest_try_uuid(%(key)s::text) OR session_id = %(key)s::text
ORDER BY call_id IS NULL
LIMIT 1
"""

# Every state, in arrival order: the call's whole timeline, not only what is unfinished.
OPS_EVENTS_OF_KEY = """
SELECT id, received_at, message_type, call_id, session_id, state, attempts, last_error, applied_at,
       coalesce(status, message ->> 'status') AS status,
       coalesce(to_jsonb(event_at), message -> 'timestamp') AS event_timestamp
FROM call_events
WHERE call_id = %(key)s::text OR session_id = %(key)s::text
ORDER BY id
LIMIT %(limit)s
"""

# ingest events reapply with filters: the events `list` shows, newest first, a page at a time.
MATCHING_EVENT_IDS = f"""
SELECT id, received_at FROM call_events{_EVENT_FILTERS}  AND (%(after_received_at)s::timestamptz IS NULL
       OR (received_at, id) < (%(after_received_at)s::timestamptz, %(after_id)s::bigint))
ORDER BY received_at DESC, id DESC
LIMIT %(limit)s
"""

# --- ops: recent calls and one call whole (ingest.ops.calls) ---

# Newest started first; a row with no start yet (a call that never connected) is placed by
# when its row was created, so every row shows up.
CALLS_LIST = """
SELECT call_id::text, session_id, started_at_utc, started_at_local, local_timezone, duration_seconds, cost_total,
       client_id, assistant_id::text, type, call_outcome, ended_reason, customer_number, created_at
FROM user_sessions_local
WHERE (%(since)s::timestamptz IS NULL OR coalesce(started_at_utc, created_at) >= %(since)s::timestamptz)
  AND (%(client)s::text IS NULL OR client_id = %(client)s::text)
  AND (%(assistant)s::uuid IS NULL OR assistant_id = %(assistant)s::uuid)
  AND (%(outcome)s::text IS NULL OR call_outcome = %(outcome)s::text)
ORDER BY coalesce(started_at_utc, created_at) DESC, id
LIMIT %(limit)s
"""

CALL_BY_ID = "SELECT * FROM user_sessions_local WHERE call_id = %(call_id)s::uuid"

# --- the access log: data_access_log (ingest.audit) ---

RECORD_ACCESS = """
INSERT INTO data_access_log
    (actor, actor_kind, action, surface, target_kind, target, target_count, reason, client_id, details)
VALUES (%(actor)s, %(actor_kind)s, %(action)s, %(surface)s, %(target_kind)s, %(target)s, %(target_count)s,
        %(reason)s, %(client_id)s, %(details)s::jsonb)
"""

# Newest first. ``call`` matches a call or session targeted, or the call of an event targeted.
ACCESS_ENTRIES = """
SELECT id, at, actor, actor_kind, action, surface, target_kind, target, target_count, reason, client_id,
       db_role, details
FROM data_access_log
WHERE (%(call)s::text IS NULL OR target = %(call)s::text OR details ->> 'call' = %(call)s::text)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s::text)
  AND (%(action)s::text IS NULL OR action = %(action)s::text)
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s::timestamptz)
ORDER BY at DESC, id DESC
LIMIT %(limit)s
"""

# --- ingest dev --demo: what the sample calls produced ---

DEMO_EVENT_STATES = "SELECT state, count(*) FROM call_events WHERE call_id = ANY(%(ids)s) GROUP BY state"
DEMO_SESSION_ROWS = "SELECT count(*) FROM user_sessions WHERE call_id = ANY(%(ids)s::uuid[])"
DEMO_ALL_SESSION_ROWS = "SELECT count(*) FROM user_sessions"
DEMO_FAILURES = "SELECT message_type, last_error FROM call_events WHERE call_id = ANY(%(ids)s) AND state = 'failed'"

# --- ops: re-sealing under the current key (ingest.ops.keys) ---

# Rows whose message is not sealed under the current key (``prefix`` is ``v1:<kid>:``, and
# ``referenced_prefix`` ``v2:<kid>:``, a body sealed against its call's envelope): plain
# ones, and ones sealed under an older key, a page at a time in id order. Reading the
# prefix of an EXTERNAL body fetches its first chunk only. A row a worker holds is waited
# for (its transactions are short).
_NOT_UNDER_CURRENT_KEY = """(body IS NULL
    OR substring(body FROM 1 FOR length(%(prefix)s)) NOT IN (%(prefix)s, %(referenced_prefix)s))"""

EVENTS_TO_RESEAL = f"""
SELECT id, message, body, {_ENVELOPE}, call_id FROM call_events
WHERE id > %(after)s AND {_NOT_UNDER_CURRENT_KEY}
ORDER BY id
LIMIT %(limit)s
FOR UPDATE
"""

EVENTS_TO_RESEAL_COUNT = f"SELECT count(*) FROM call_events WHERE {_NOT_UNDER_CURRENT_KEY}"

# The envelope a re-sealed body was sealed against is kept first (false, nothing kept: the
# call was erased meanwhile; its event is then sealed whole).
KEEP_CALL_ENVELOPE = "SELECT ingest_keep_call_envelope(%(call_id)s::uuid, %(envelope_id)s, %(envelope)s)"

# Up to ``batch`` envelopes kept before ``before`` that no event refers to any more (their
# events removed by retention, or re-sealed against a new key's envelope): how many went.
FORGET_CALL_ENVELOPES = "SELECT ingest_forget_call_envelopes(%(before)s, %(batch)s)"

RESEAL_EVENT = """
UPDATE call_events
SET message = NULL, body = %(body)s, envelope_id = %(envelope_id)s, final_transcript = %(final_transcript)s,
    status = coalesce(status, %(status)s), event_at = coalesce(event_at, %(event_at)s)
WHERE id = %(id)s
"""

# Rows with something to seal or re-seal: an original or a raw number not under the current
# key (``prefix`` is ``v1:<kid>:``), or, where nothing was ever sealed, a transcript or
# summary that may hold personal data in clear (written before redaction).
_SESSION_TO_RESEAL = """(
       (call_transcript_original IS NOT NULL AND NOT starts_with(call_transcript_original, %(prefix)s))
    OR (call_summary_original IS NOT NULL AND NOT starts_with(call_summary_original, %(prefix)s))
    OR (call_transcript_original IS NULL AND call_transcript IS NOT NULL AND %(redact)s)
    OR (call_summary_original IS NULL AND call_summary IS NOT NULL AND %(redact)s)
    OR EXISTS (SELECT 1 FROM jsonb_each_text(CASE WHEN jsonb_typeof(metadata -> 'raw_numbers') = 'object'
                                                  THEN metadata -> 'raw_numbers' END) AS n
               WHERE NOT starts_with(n.value, %(prefix)s)))"""

SESSIONS_TO_RESEAL = f"""
SELECT id, call_transcript, call_summary, call_transcript_original, call_summary_original, keywords,
       metadata -> 'raw_numbers' AS raw_numbers
FROM user_sessions
WHERE id > %(after)s::uuid AND {_SESSION_TO_RESEAL}
ORDER BY id
LIMIT %(limit)s
FOR UPDATE
"""

# How many rows ``SESSIONS_TO_RESEAL`` will go through: each advances the progress bar.
SESSIONS_TO_RESEAL_COUNT = f"SELECT count(*) FROM user_sessions WHERE {_SESSION_TO_RESEAL}"

RESEAL_SESSION = """
UPDATE user_sessions
SET call_transcript = %(call_transcript)s, call_summary = %(call_summary)s,
    call_transcript_original = %(call_transcript_original)s, call_summary_original = %(call_summary_original)s,
    keywords = %(keywords)s,
    metadata = CASE WHEN %(raw_numbers)s::jsonb IS NULL THEN metadata
                    ELSE jsonb_set(metadata, '{raw_numbers}', %(raw_numbers)s::jsonb) END
WHERE id = %(id)s
"""

# Values per key id (NULL: plain text), everything ``rotate`` re-seals: raw events and the
# calls' envelopes by their body's prefix (``v1:<kid>:`` or ``v2:<kid>:``), session rows by
# their transcript's and summary's sealed originals and by each sealed raw number in their
# metadata (a plain one, written without keys, counts as plain).
_BODY_KEY_ID = """CASE WHEN body IS NOT NULL THEN convert_from(
           substring(body FROM 4 FOR position(':'::bytea IN substring(body FROM 4 FOR 40)) - 1), 'UTF8') END"""

KEY_USAGE = f"""
SELECT 'call_events' AS "table", {_BODY_KEY_ID}, count(*)
FROM call_events GROUP BY 2
UNION ALL
SELECT 'call_envelopes', {_BODY_KEY_ID}, count(*)
FROM call_envelopes GROUP BY 2
UNION ALL
SELECT 'user_sessions', CASE WHEN starts_with(o, 'v1:') THEN split_part(o, ':', 2) END, count(*)
FROM user_sessions, LATERAL (VALUES (call_transcript_original), (call_summary_original)) AS v(o)
WHERE o IS NOT NULL GROUP BY 2
UNION ALL
SELECT 'user_sessions.raw_numbers', CASE WHEN starts_with(n.value, 'v1:') THEN split_part(n.value, ':', 2) END,
       count(*)
FROM user_sessions,
     LATERAL jsonb_each_text(CASE WHEN jsonb_typeof(metadata -> 'raw_numbers') = 'object'
                                  THEN metadata -> 'raw_numbers' END) AS n
GROUP BY 2
ORDER BY 1, 2 NULLS FIRST
"""

# --- ops: erasure on request and access requests (ingest.ops.erase, ingest.ops.calls) ---

# A caller's rows: ``numbers`` holds the E.164 number and its pseudonym (rows erased or
# anonymised before hold that), narrowed to one client.
SESSIONS_OF_CUSTOMER = """
SELECT id, call_id::text, session_id, client_id FROM user_sessions
WHERE customer_number = ANY(%(numbers)s::text[])
  AND (%(client)s::text IS NULL OR client_id = %(client)s::text)
ORDER BY coalesce(started_at_utc, created_at), id
FOR UPDATE
"""

SESSION_OF_CALL = """
SELECT id, call_id::text, session_id, client_id FROM user_sessions WHERE call_id = %(call_id)s::uuid FOR UPDATE
"""

# The raw events of a call, or of a session row without a call id.
EVENTS_OF_CALL_COUNT = "SELECT count(*) FROM call_events WHERE call_id = %(call_id)s::text"
EVENTS_OF_SESSION_COUNT = "SELECT count(*) FROM call_events WHERE session_id = %(session_id)s::text AND call_id IS NULL"
DELETE_EVENTS = "SELECT ingest_erase_events(%(call_id)s::text, %(session_id)s::text)"

ERASE_LOCK = "SELECT ingest_erase_lock(%(key)s::text)"
LAST_ACCESS_ID = "SELECT currval(pg_get_serial_sequence('data_access_log', 'id'))"
TOMBSTONE_CALL = """
INSERT INTO erased_calls (call_id, audit_id) VALUES (%(call_id)s::uuid, %(audit_id)s)
ON CONFLICT (call_id) DO UPDATE SET erased_at = now(), audit_id = EXCLUDED.audit_id
"""
TOMBSTONE_SESSION = """
INSERT INTO erased_sessions (session_id, audit_id) VALUES (%(session_id)s, %(audit_id)s)
ON CONFLICT (session_id) DO UPDATE SET erased_at = now(), audit_id = EXCLUDED.audit_id
"""

SESSION_FOR_ERASURE = "SELECT customer_number, metadata, server_messages FROM user_sessions WHERE id = %(id)s"

# What an erasure leaves of a row: times, durations, cost, client, assistant, outcome,
# sentiment; the number as its pseudonym; metadata and timeline reduced in Python.
ERASE_SESSION = """
UPDATE user_sessions
SET call_transcript = NULL, call_summary = NULL,
    call_transcript_original = NULL, call_summary_original = NULL,
    keywords = NULL, user_id = NULL,
    customer_number = %(customer_number)s,
    metadata = %(metadata)s::jsonb, server_messages = %(server_messages)s::jsonb
WHERE id = %(id)s
"""

# An access request: every row of a caller, whole (``ingest calls export``).
CUSTOMER_SESSIONS = """
SELECT * FROM user_sessions_local
WHERE customer_number = ANY(%(numbers)s::text[])
  AND (%(client)s::text IS NULL OR client_id = %(client)s::text)
ORDER BY coalesce(started_at_utc, created_at), id
"""

# The events of one exported row, whole, in arrival order: a call's, or a session row's without a call id.
EXPORT_EVENTS = f"""
SELECT id, received_at, message_type, state, last_error, message, body, {_ENVELOPE} FROM call_events
WHERE CASE WHEN %(call_id)s::text IS NOT NULL THEN call_id = %(call_id)s::text
           ELSE session_id = %(session_id)s::text AND call_id IS NULL END
ORDER BY id
"""

# --- abuse monitoring: call_anomalies, anomaly_scans (ingest.ops.anomalies, sql/functions/87_anomalies.sql) ---

ANOMALY_BASELINES = """
SELECT client_id, calls, cost, weekly_calls, weekly_cost
FROM ingest_anomaly_baselines(%(start)s, %(end)s, %(zone)s, %(weeks)s, %(min_calls)s, %(min_cost)s)
ORDER BY client_id
"""

ANOMALY_REPEAT_CALLERS = """
SELECT client_id, customer_number, calls FROM ingest_anomaly_repeat_callers(%(start)s, %(end)s, %(min)s)
"""

ANOMALY_SHORT_CALLS = """
SELECT client_id, phone_number_id, short_calls, calls
FROM ingest_anomaly_short_calls(%(start)s, %(end)s, %(seconds)s, %(min)s, %(share)s)
"""

ANOMALY_OUTBOUND_NUMBERS = """
SELECT client_id, customer_number, calls FROM ingest_anomaly_outbound_numbers(%(start)s, %(end)s)
"""

ANOMALY_VAPI_SIGNALS = """
SELECT client_id, ended_reason, calls FROM ingest_anomaly_vapi_signals(%(start)s, %(end)s)
"""

RECORD_ANOMALY = """
SELECT anomaly_id, created
FROM ingest_record_anomaly(%(kind)s::text, %(client_id)s::text, %(subject_kind)s::text, %(subject)s::text,
                           %(window_start)s, %(window_end)s, %(observed)s::numeric, %(baseline)s::numeric,
                           %(score)s::numeric, %(details)s::jsonb)
"""

RECORD_ANOMALY_SCAN = """
INSERT INTO anomaly_scans (started_at, runner, found, new, updated, skipped)
VALUES (%(started_at)s, %(runner)s, %(found)s::jsonb, %(new)s, %(updated)s, %(skipped)s)
"""

LAST_ANOMALY_SCAN = """
SELECT started_at, finished_at, runner, found, new, updated, skipped FROM anomaly_scans
ORDER BY finished_at DESC, id DESC LIMIT 1
"""

ANOMALY_SCAN_DUE = """
SELECT coalesce(max(finished_at) < now() - make_interval(mins => %(minutes)s), true) FROM anomaly_scans
"""

_ANOMALY_COLUMNS = """
id, kind, client_id, subject_kind, subject, window_start, window_end, observed, baseline, score, details,
detected_at, last_seen_at, acknowledged_at, acknowledged_by, ack_reason
"""

# Newest first: since a detection time, open ones only.
LIST_ANOMALIES = f"""
SELECT {_ANOMALY_COLUMNS} FROM call_anomalies
WHERE (%(since)s::timestamptz IS NULL OR last_seen_at >= %(since)s::timestamptz)
  AND (NOT %(open_only)s OR acknowledged_at IS NULL)
ORDER BY detected_at DESC, id DESC
LIMIT %(limit)s
"""

GET_ANOMALY = f"SELECT {_ANOMALY_COLUMNS} FROM call_anomalies WHERE id = %(id)s"

LOCK_ANOMALY = f"SELECT {_ANOMALY_COLUMNS} FROM call_anomalies WHERE id = %(id)s FOR UPDATE"

ACKNOWLEDGE_ANOMALY = f"""
UPDATE call_anomalies SET acknowledged_at = now(), acknowledged_by = %(by)s, ack_reason = %(reason)s
WHERE id = %(id)s AND acknowledged_at IS NULL
RETURNING {_ANOMALY_COLUMNS}
"""

OPEN_ANOMALY_COUNTS = "SELECT kind, count(*) FROM call_anomalies WHERE acknowledged_at IS NULL GROUP BY kind"

# Callers with an open repeat-caller anomaly seen within the block window: pseudonym -> newest id.
FLAGGED_CALLERS = """
SELECT subject, max(id) FROM call_anomalies
WHERE kind = 'repeat_caller' AND subject_kind = 'caller' AND acknowledged_at IS NULL
  AND last_seen_at >= now() - make_interval(hours => %(hours)s)
GROUP BY subject
"""
