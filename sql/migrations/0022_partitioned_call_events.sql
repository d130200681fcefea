-- call_events becomes range-partitioned by received_at, one partition per calendar month
-- (UTC) named call_events_yYYYYmMM, plus call_events_default for anything outside them, so
-- that retention can drop a whole month at once (ingest_drop_call_event_partition,
-- sql/functions/72_call_event_partitions.sql).
--
-- A unique index on a partitioned table must contain the partition key, so dedupe_key can
-- no longer be unique on call_events itself: the dedupe gate moves to call_event_keys, one
-- row per recorded event naming the received_at (and so the partition) of its event. The
-- writers (ingest_record_and_apply, ingest_record_event_failure, the endpoint's
-- STORE_PENDING_EVENT) insert the key first; a known key finds its event by
-- (dedupe_key, received_at).
--
-- The existing table is converted in place, in this migration's transaction: it is renamed,
-- the partitioned table and the partitions of every month it holds are created, rows are
-- copied month by month (NOTICE: rows copied / total), the identity continues after the
-- largest id, and the old table is dropped. call_events is locked (ACCESS EXCLUSIVE) for the
-- whole copy: docs/schema.md gives the rate measured. This month's partition and the next
-- three are made here, then by the workers (ingest_ensure_call_event_partitions).

SET LOCAL client_min_messages = notice;

CREATE TABLE call_event_keys (
    dedupe_key  text PRIMARY KEY,
    received_at timestamptz NOT NULL
);
-- ingest_forget_call_event_keys: keys of removed events, oldest first.
CREATE INDEX idx_call_event_keys_received_at ON call_event_keys (received_at);

COMMENT ON TABLE call_event_keys IS
    'The dedupe gate of call_events: one row per recorded event (its dedupe_key, and the received_at of its partition).';

-- Not API: Supabase's default privileges grant new tables to its API roles.
ALTER TABLE call_event_keys ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON call_event_keys FROM PUBLIC, anon, authenticated, service_role;

DO $$
DECLARE
    old_acl aclitem[];
    old_seq_acl aclitem[];
    old_next bigint;
    max_id bigint;
    total bigint;
    copied bigint := 0;
    moved bigint;
    month timestamptz;
    part text;
    grant_row record;
BEGIN
    -- What the new table takes over from the old one: grants, the identity's position.
    SELECT c.relacl INTO old_acl FROM pg_class AS c WHERE c.oid = 'call_events'::regclass;
    SELECT c.relacl INTO old_seq_acl FROM pg_class AS c
    WHERE c.oid = pg_get_serial_sequence('call_events', 'id')::regclass;
    SELECT s.last_value INTO old_next FROM pg_sequences AS s
    WHERE format('%I.%I', s.schemaname, s.sequencename)::regclass = pg_get_serial_sequence('call_events', 'id')::regclass;

    -- The old table gives up its names: indexes, constraints backed by them, the identity
    -- sequence, the trigger.
    ALTER TABLE call_events RENAME TO call_events_unpartitioned;
    ALTER TABLE call_events_unpartitioned
        DROP CONSTRAINT call_events_dedupe_key_key,
        ALTER COLUMN id DROP IDENTITY;
    ALTER INDEX call_events_pkey RENAME TO call_events_unpartitioned_pkey;
    DROP INDEX idx_call_events_call_id, idx_call_events_session_id, idx_call_events_message_type,
               idx_call_events_unfinished_received_at, idx_call_events_unqueued, idx_call_events_applied_at_brin;
    DROP TRIGGER call_events_touch ON call_events_unpartitioned;
    -- the copy reads one month at a time
    CREATE INDEX call_events_unpartitioned_received_at ON call_events_unpartitioned (received_at);

    CREATE TABLE call_events (
        id               bigint GENERATED ALWAYS AS IDENTITY,
        received_at      timestamptz NOT NULL DEFAULT now(),
        call_id          text,
        session_id       text,
        message_type     text NOT NULL,
        dedupe_key       text NOT NULL,
        message          jsonb,
        state            text NOT NULL DEFAULT 'pending'
                         CONSTRAINT call_events_state_check
                         CHECK (state IN ('pending', 'waiting', 'applied', 'failed', 'ignored')),
        attempts         integer NOT NULL DEFAULT 0,
        last_error       text,
        applied_at       timestamptz,
        updated_at       timestamptz NOT NULL DEFAULT now(),
        enqueued_at      timestamptz,
        body             bytea,
        final_transcript boolean NOT NULL DEFAULT false,
        status           text,
        event_at         timestamptz,
        CONSTRAINT call_events_pkey PRIMARY KEY (id, received_at),
        CONSTRAINT call_events_one_message CHECK ((message IS NULL) <> (body IS NULL))
    ) PARTITION BY RANGE (received_at);

    -- Set on the parent, copied to every partition made after.
    ALTER TABLE call_events ALTER COLUMN body SET STORAGE EXTERNAL;
    COMMENT ON COLUMN call_events.body IS
        'The message, compressed and sealed by the service (v1:<key id>:…); NULL when message holds it in plain text.';

    -- The indexes of 0013, 0014 and 0017, and the lookup of a known dedupe key.
    CREATE INDEX idx_call_events_call_id ON call_events (call_id);
    CREATE INDEX idx_call_events_session_id ON call_events (session_id);
    CREATE INDEX idx_call_events_message_type ON call_events (message_type);
    CREATE INDEX idx_call_events_unfinished_received_at ON call_events (received_at)
        WHERE state IN ('pending', 'waiting', 'failed');
    CREATE INDEX idx_call_events_unqueued ON call_events (id)
        WHERE state = 'pending' AND enqueued_at IS NULL;
    CREATE INDEX idx_call_events_applied_at_brin ON call_events
        USING brin (applied_at) WITH (pages_per_range = 16);
    CREATE INDEX idx_call_events_dedupe_key ON call_events (dedupe_key);

    CREATE TRIGGER call_events_touch
        BEFORE UPDATE ON call_events
        FOR EACH ROW EXECUTE FUNCTION call_events_touch();

    ALTER TABLE call_events ENABLE ROW LEVEL SECURITY;
    -- The grants of the old table and sequence, exactly: whatever default privileges gave
    -- the new ones is revoked first.
    EXECUTE 'REVOKE ALL ON call_events FROM PUBLIC, anon, authenticated, service_role';
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM PUBLIC, anon, authenticated, service_role',
                   pg_get_serial_sequence('call_events', 'id'));
    FOR grant_row IN
        SELECT a.grantee, a.privilege_type, a.is_grantable, 'TABLE call_events' AS target
        FROM aclexplode(old_acl) AS a
        UNION ALL
        SELECT a.grantee, a.privilege_type, a.is_grantable, 'SEQUENCE ' || pg_get_serial_sequence('call_events', 'id')
        FROM aclexplode(old_seq_acl) AS a
    LOOP
        CONTINUE WHEN grant_row.grantee = (SELECT c.relowner FROM pg_class AS c WHERE c.oid = 'call_events'::regclass);
        EXECUTE format('GRANT %s ON %s TO %s%s', grant_row.privilege_type, grant_row.target,
                       CASE WHEN grant_row.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(grant_row.grantee::regrole::text) END,
                       CASE WHEN grant_row.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;

    -- Partitions: the default, one for every month the old table holds, and this month's and
    -- the next three (as ingest_ensure_call_event_partitions(3) makes them, which the workers
    -- call from then on). The same set-up as the ones it makes: no grants, row-level security
    -- on (read and written through call_events).
    CREATE TABLE call_events_default PARTITION OF call_events DEFAULT;
    FOR month, part IN
        SELECT m, 'call_events_y' || to_char(m AT TIME ZONE 'UTC', 'YYYY"m"MM')
        FROM (SELECT date_trunc('month', received_at, 'UTC') AS m FROM call_events_unpartitioned
              UNION
              SELECT date_trunc('month', now(), 'UTC') + make_interval(months => ahead)
              FROM generate_series(0, 3) AS ahead) AS months
        ORDER BY m
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF call_events FOR VALUES FROM (%L) TO (%L)',
                       part, month, month + interval '1 month');
    END LOOP;
    FOR part IN
        SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'call_events'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', part);
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC, anon, authenticated, service_role', part);
    END LOOP;

    SELECT count(*), max(id) INTO total, max_id FROM call_events_unpartitioned;
    FOR month IN
        SELECT DISTINCT date_trunc('month', received_at, 'UTC') FROM call_events_unpartitioned ORDER BY 1
    LOOP
        INSERT INTO call_events (id, received_at, call_id, session_id, message_type, dedupe_key, message, state,
                                 attempts, last_error, applied_at, updated_at, enqueued_at, body, final_transcript,
                                 status, event_at)
        OVERRIDING SYSTEM VALUE
        SELECT id, received_at, call_id, session_id, message_type, dedupe_key, message, state,
               attempts, last_error, applied_at, updated_at, enqueued_at, body, final_transcript,
               status, event_at
        FROM call_events_unpartitioned
        WHERE received_at >= month AND received_at < month + interval '1 month';
        GET DIAGNOSTICS moved = ROW_COUNT;
        copied := copied + moved;
        RAISE NOTICE 'call_events: % of % rows copied (month %)', copied, total, to_char(month AT TIME ZONE 'UTC', 'YYYY-MM');
    END LOOP;
    IF copied <> total THEN
        RAISE EXCEPTION 'call_events: % rows copied of %', copied, total;
    END IF;

    -- The old unique constraint held: one key per event.
    INSERT INTO call_event_keys (dedupe_key, received_at)
    SELECT dedupe_key, received_at FROM call_events_unpartitioned;

    IF greatest(old_next, max_id) IS NOT NULL THEN
        PERFORM setval(pg_get_serial_sequence('call_events', 'id'), greatest(old_next, max_id));
    END IF;

    DROP TABLE call_events_unpartitioned;
END
$$;

ANALYZE call_events;
ANALYZE call_event_keys;
