-- call_events partitions (migration 0022): one per calendar month (UTC) of received_at,
-- named call_events_yYYYYmMM, and call_events_default, which catches anything outside them.
--
-- ingest_ensure_call_event_partitions   makes this month's and the next ones (workers, on
--                                       start and with every sweep; migration 0022 made the first)
-- ingest_call_event_partitions          lists them with their bounds and counts (retention)
-- ingest_drop_call_event_partition      drops one month, refusing one with unfinished events
-- ingest_forget_call_event_keys         removes the dedupe keys of events no longer kept
--
-- Locks: making a partition takes SHARE UPDATE EXCLUSIVE on call_events (writers and
-- readers go on) and ACCESS EXCLUSIVE on call_events_default for the moment of the attach
-- (and of moving its rows of that month, if it holds any). Dropping one takes ACCESS
-- EXCLUSIVE on call_events while it counts the month's rows and detaches it: every reader
-- and writer waits that long (a plain DETACH: CONCURRENTLY cannot run in a function).

-- The partition of the month starting at p_month (UTC): created with the parent's columns,
-- defaults, checks and storage, filled with the rows call_events_default holds of that
-- month (moved out of it, so the attach finds none left there), then attached (the
-- partitioned indexes and the trigger follow). The caller holds the locks.
CREATE OR REPLACE FUNCTION ingest_create_call_event_partition(p_month timestamptz) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    month_start timestamptz := date_trunc('month', p_month, 'UTC');
    month_end timestamptz := date_trunc('month', p_month, 'UTC') + interval '1 month';
    part text := 'call_events_y' || to_char(date_trunc('month', p_month, 'UTC') AT TIME ZONE 'UTC', 'YYYY"m"MM');
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE call_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)',
                   part);
    EXECUTE format(
        'WITH moved AS (DELETE FROM call_events_default WHERE received_at >= $1 AND received_at < $2 RETURNING *)'
        ' INSERT INTO %I SELECT * FROM moved', part)
    USING month_start, month_end;
    EXECUTE format('ALTER TABLE call_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   part, month_start, month_end);
    -- Read and written through call_events only.
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', part);
    EXECUTE format('REVOKE ALL ON %I FROM PUBLIC, anon, authenticated, service_role', part);
    RETURN part;
END
$$;
REVOKE ALL ON FUNCTION ingest_create_call_event_partition(timestamptz) FROM PUBLIC;

-- The partitions of the current month and the next p_ahead_months; returns how many were
-- made (0 when all exist: then no lock is taken). Safe to call from every worker at once:
-- an advisory lock lets one make them, the others then find them made.
CREATE OR REPLACE FUNCTION ingest_ensure_call_event_partitions(p_ahead_months integer DEFAULT 3) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    this_month timestamptz := date_trunc('month', now(), 'UTC');
    wanted timestamptz[];
    missing timestamptz[];
    month timestamptz;
    made integer := 0;
BEGIN
    SELECT array_agg(this_month + make_interval(months => n) ORDER BY n) INTO wanted
    FROM generate_series(0, greatest(p_ahead_months, 0)) AS n;
    FOR pass IN 1..2 LOOP
        SELECT array_agg(w ORDER BY w) INTO missing
        FROM unnest(wanted) AS w
        WHERE to_regclass(format('%I', 'call_events_y' || to_char(w AT TIME ZONE 'UTC', 'YYYY"m"MM'))) IS NULL;
        IF missing IS NULL THEN
            RETURN made;
        END IF;
        EXIT WHEN pass = 2;
        -- One maker at a time; the parent first, then the default partition (the order
        -- ingest_drop_call_event_partition takes them in too).
        PERFORM pg_advisory_xact_lock(hashtext('ingest_call_event_partitions'));
        LOCK TABLE call_events IN SHARE UPDATE EXCLUSIVE MODE;
        LOCK TABLE call_events_default IN ACCESS EXCLUSIVE MODE;
    END LOOP;
    FOREACH month IN ARRAY missing LOOP
        PERFORM ingest_create_call_event_partition(month);
        made := made + 1;
    END LOOP;
    RETURN made;
END
$$;
REVOKE ALL ON FUNCTION ingest_ensure_call_event_partitions(integer) FROM PUBLIC;

-- Every partition, oldest first, the default last (its bounds NULL); rows and unfinished
-- (pending or waiting: the events ingest_drop_call_event_partition refuses to drop) are
-- counted exactly.
CREATE OR REPLACE FUNCTION ingest_call_event_partitions()
RETURNS TABLE (name text, month_start timestamptz, month_end timestamptz, rows bigint, unfinished bigint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.relname::text AS relname, (b.m)[1]::timestamptz AS lo, (b.m)[2]::timestamptz AS hi
        FROM pg_inherits AS i
        JOIN pg_class AS c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL (
            SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS m
        ) AS b
        WHERE i.inhparent = 'call_events'::regclass
        ORDER BY 2 NULLS LAST, 1
    LOOP
        name := part.relname;
        month_start := part.lo;
        month_end := part.hi;
        EXECUTE format('SELECT count(*), count(*) FILTER (WHERE state IN (''pending'', ''waiting'')) FROM %I',
                       part.relname)
        INTO rows, unfinished;
        RETURN NEXT;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ingest_call_event_partitions() FROM PUBLIC;

-- Detach and drop one month's partition; returns the rows dropped with it. Refused for
-- the default partition, for a month not over yet (it still receives events), and for a
-- partition holding a pending or waiting event: those are never removed silently. The
-- dedupe keys of its events stay until ingest_forget_call_event_keys removes them.
CREATE OR REPLACE FUNCTION ingest_drop_call_event_partition(p_name text) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    part record;
    kept bigint;
    unfinished bigint;
BEGIN
    SELECT p.name, p.month_end INTO part
    FROM (SELECT c.relname::text AS name,
                 (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS month_end
          FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'call_events'::regclass) AS p
    WHERE p.name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'call_events has no partition %', p_name USING ERRCODE = 'undefined_table';
    END IF;
    IF part.month_end IS NULL THEN
        RAISE EXCEPTION '% is the default partition: it is never dropped', p_name USING ERRCODE = 'restrict_violation';
    END IF;
    IF part.month_end > now() THEN
        RAISE EXCEPTION '% is this month''s or a later one: only a past month is dropped', p_name
            USING ERRCODE = 'restrict_violation';
    END IF;
    -- The parent first (as ingest_ensure_call_event_partitions): nothing is written to the
    -- month between the count and the drop.
    PERFORM pg_advisory_xact_lock(hashtext('ingest_call_event_partitions'));
    LOCK TABLE call_events IN ACCESS EXCLUSIVE MODE;
    EXECUTE format('SELECT count(*), count(*) FILTER (WHERE state IN (''pending'', ''waiting'')) FROM %I', p_name)
    INTO kept, unfinished;
    IF unfinished > 0 THEN
        RAISE EXCEPTION '% holds % pending or waiting events: not dropped', p_name, unfinished
            USING ERRCODE = 'restrict_violation',
                  HINT = 'apply or discard them first (ingest events), then drop the partition';
    END IF;
    EXECUTE format('ALTER TABLE call_events DETACH PARTITION %I', p_name);
    EXECUTE format('DROP TABLE %I', p_name);
    RETURN kept;
END
$$;
REVOKE ALL ON FUNCTION ingest_drop_call_event_partition(text) FROM PUBLIC;

-- Remove up to p_batch dedupe keys received before p_before whose event is no longer in
-- call_events (its partition dropped, or the row deleted); returns how many. Until then a
-- redelivery of such an event is still a duplicate; after, it would be recorded again.
-- A key is a digest (migration 0029): its event is looked for, key by key, through
-- idx_call_events_dedupe_digest in the partition of its received_at (OFFSET 0 keeps that
-- probe per key: as an anti join the planner may hash every event instead). The keys are
-- read in the table's order, about received_at order (the BRIN index
-- idx_call_event_keys_received_at), not sorted: a sort would read every key before p_before.
CREATE OR REPLACE FUNCTION ingest_forget_call_event_keys(p_before timestamptz, p_batch integer) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    forgotten integer;
BEGIN
    WITH gone AS (
        SELECT k.key_digest
        FROM call_event_keys AS k
        WHERE k.received_at < p_before
          AND NOT EXISTS (
              SELECT 1 FROM call_events AS e
              WHERE ingest_dedupe_digest(e.dedupe_key) = k.key_digest AND e.received_at = k.received_at
              OFFSET 0)
        LIMIT greatest(p_batch, 0)
        FOR UPDATE OF k SKIP LOCKED
    )
    DELETE FROM call_event_keys AS k USING gone WHERE k.key_digest = gone.key_digest;
    GET DIAGNOSTICS forgotten = ROW_COUNT;
    RETURN forgotten;
END
$$;
REVOKE ALL ON FUNCTION ingest_forget_call_event_keys(timestamptz, integer) FROM PUBLIC;
