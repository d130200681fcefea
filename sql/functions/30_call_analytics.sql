-- generate_call_analytics: keeps the derived columns of user_sessions consistent whoever
-- writes the row (the worker's upsert, the seed's SQL in any session TimeZone, a
-- Supabase client). It runs on every upsert (twice on ON CONFLICT DO UPDATE: once for
-- the proposed row, once for the update), so each step only works when its inputs changed.
--
--   time zones  *_nz := local wall-clock of *_utc (ingest_local_wallclock rule); *_utc is
--               derived from *_nz only when the writer gave the wall-clock alone
--   durations   filled from each other or from the timestamps; re-derived when the
--               timestamps move and the old values were the derived ones (never when
--               metadata.provenance.duration says a writer reported them)
--   analysis    keywords lower-cased, whitespace-trimmed, de-duplicated (first occurrence
--               kept), NULL when empty; sentiment, call_outcome lower-cased and trimmed
--   routing     client_id, when NULL, from phone_numbers then assistants
--   cost        a reported cost is kept (metadata.cost_source = 'reported'); an ended call
--               without one is priced from its client's rate_per_minute
--               (metadata.cost_source = 'rate_plan'), re-priced when duration or client change

CREATE OR REPLACE FUNCTION process_call_analytics() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    zone           text;
    is_update      boolean := TG_OP = 'UPDATE';
    secs_changed   boolean;
    mins_changed   boolean;
    old_derived    boolean;
    cost_written   boolean;
    old_source     text;
    cost_mode      text;
    plan_cost      numeric;
    rate           numeric;
    new_source     text;
BEGIN
    ------------------------------------------------------------------ time zones
    -- Only when a timestamp was written: a duplicate delivery skips the settings lookup.
    IF NOT is_update
       OR NEW.started_at_utc IS DISTINCT FROM OLD.started_at_utc
       OR NEW.started_at_nz IS DISTINCT FROM OLD.started_at_nz
       OR NEW.ended_at_utc IS DISTINCT FROM OLD.ended_at_utc
       OR NEW.ended_at_nz IS DISTINCT FROM OLD.ended_at_nz THEN
        zone := ingest_local_timezone();
        IF NEW.started_at_utc IS NULL AND NEW.started_at_nz IS NOT NULL
           AND NOT (is_update AND OLD.started_at_utc IS NOT NULL
                    AND NEW.started_at_nz IS NOT DISTINCT FROM OLD.started_at_nz) THEN
            NEW.started_at_utc := (NEW.started_at_nz AT TIME ZONE 'UTC') AT TIME ZONE zone;
        END IF;
        IF NEW.ended_at_utc IS NULL AND NEW.ended_at_nz IS NOT NULL
           AND NOT (is_update AND OLD.ended_at_utc IS NOT NULL
                    AND NEW.ended_at_nz IS NOT DISTINCT FROM OLD.ended_at_nz) THEN
            NEW.ended_at_utc := (NEW.ended_at_nz AT TIME ZONE 'UTC') AT TIME ZONE zone;
        END IF;
        NEW.started_at_nz := (NEW.started_at_utc AT TIME ZONE zone) AT TIME ZONE 'UTC';
        NEW.ended_at_nz := (NEW.ended_at_utc AT TIME ZONE zone) AT TIME ZONE 'UTC';
    END IF;

    ------------------------------------------------------------------ durations
    IF is_update THEN
        secs_changed := NEW.duration_seconds IS DISTINCT FROM OLD.duration_seconds;
        mins_changed := NEW.duration_minutes IS DISTINCT FROM OLD.duration_minutes;
        IF NOT secs_changed AND NOT mins_changed
           -- a duration whose source the writer declared (the worker's provenance) is
           -- never re-derived, even when it happens to equal the old derived value
           AND NEW.metadata #>> '{provenance,duration}' IS NULL
           AND (NEW.started_at_utc IS DISTINCT FROM OLD.started_at_utc
                OR NEW.ended_at_utc IS DISTINCT FROM OLD.ended_at_utc) THEN
            -- The timestamps moved under durations nobody touched in this statement:
            -- follow them if the old durations were the ones derived from the old times.
            old_derived := (OLD.duration_seconds IS NULL AND OLD.duration_minutes IS NULL)
                OR (OLD.duration_seconds = ingest_duration_seconds(OLD.started_at_utc, OLD.ended_at_utc)
                    AND OLD.duration_minutes IS NOT DISTINCT FROM round(OLD.duration_seconds / 60, 2));
            IF old_derived THEN
                NEW.duration_seconds := ingest_duration_seconds(NEW.started_at_utc, NEW.ended_at_utc);
                NEW.duration_minutes := round(NEW.duration_seconds / 60, 2);
            END IF;
        ELSIF secs_changed AND NOT mins_changed AND NEW.duration_seconds IS NOT NULL
              AND (OLD.duration_minutes IS NULL
                   OR OLD.duration_minutes = round(OLD.duration_seconds / 60, 2)) THEN
            NEW.duration_minutes := round(NEW.duration_seconds / 60, 2);
        ELSIF mins_changed AND NOT secs_changed AND NEW.duration_minutes IS NOT NULL
              AND NEW.duration_minutes < 166666
              AND (OLD.duration_seconds IS NULL
                   OR round(OLD.duration_seconds / 60, 2) = OLD.duration_minutes) THEN
            NEW.duration_seconds := NEW.duration_minutes * 60;
        END IF;
    END IF;
    IF NEW.duration_seconds IS NULL AND NEW.duration_minutes IS NULL THEN
        NEW.duration_seconds := ingest_duration_seconds(NEW.started_at_utc, NEW.ended_at_utc);
        NEW.duration_minutes := round(NEW.duration_seconds / 60, 2);
    ELSIF NEW.duration_seconds IS NULL THEN
        IF NEW.duration_minutes < 166666 THEN
            NEW.duration_seconds := NEW.duration_minutes * 60;
        END IF;
    ELSIF NEW.duration_minutes IS NULL THEN
        NEW.duration_minutes := round(NEW.duration_seconds / 60, 2);
    END IF;

    ------------------------------------------------------------------ analysis
    IF NEW.keywords IS NOT NULL AND (NOT is_update OR NEW.keywords IS DISTINCT FROM OLD.keywords) THEN
        NEW.keywords := (
            SELECT array_agg(d.keyword ORDER BY d.first_seen)
            FROM (
                SELECT n.keyword, min(u.ord) AS first_seen
                FROM unnest(NEW.keywords) WITH ORDINALITY AS u (raw, ord)
                CROSS JOIN LATERAL (
                    SELECT lower(btrim(regexp_replace(u.raw, '\s+', ' ', 'g'))) AS keyword
                ) AS n
                WHERE n.keyword <> ''
                GROUP BY n.keyword
            ) AS d
        );
    END IF;
    IF NEW.sentiment IS NOT NULL AND (NOT is_update OR NEW.sentiment IS DISTINCT FROM OLD.sentiment) THEN
        NEW.sentiment := nullif(lower(btrim(NEW.sentiment, E' \t\r\n\f')), '');
    END IF;
    IF NEW.call_outcome IS NOT NULL AND (NOT is_update OR NEW.call_outcome IS DISTINCT FROM OLD.call_outcome) THEN
        NEW.call_outcome := nullif(lower(btrim(NEW.call_outcome, E' \t\r\n\f')), '');
    END IF;

    ------------------------------------------------------------------ routing
    IF NEW.client_id IS NULL AND NEW.phone_number_id IS NOT NULL THEN
        NEW.client_id := (SELECT p.client_id FROM phone_numbers AS p WHERE p.id = NEW.phone_number_id);
    END IF;
    IF NEW.client_id IS NULL AND NEW.assistant_id IS NOT NULL THEN
        NEW.client_id := (SELECT a.client_id FROM assistants AS a WHERE a.id = NEW.assistant_id);
    END IF;

    ------------------------------------------------------------------ cost
    IF is_update THEN
        cost_written := NEW.cost_total IS DISTINCT FROM OLD.cost_total;
        old_source := CASE WHEN OLD.cost_total IS NOT NULL
                           THEN coalesce(OLD.metadata ->> 'cost_source', 'reported') END;
    ELSE
        cost_written := NEW.cost_total IS NOT NULL;
    END IF;

    -- A written cost tagged 'rate_plan' where the row held none or a reported one is our
    -- own derived value coming back (the EXCLUDED row of an upsert): not a report.
    IF cost_written AND NEW.cost_total IS NOT NULL
       AND NEW.metadata ->> 'cost_source' = 'rate_plan'
       AND old_source IS DISTINCT FROM 'rate_plan' THEN
        NEW.cost_total := CASE WHEN is_update THEN OLD.cost_total END;
        cost_written := false;
    END IF;

    IF NEW.cost_total IS NULL THEN
        cost_mode := 'price';
    ELSIF cost_written THEN
        cost_mode := CASE WHEN NEW.metadata ->> 'cost_source' = 'rate_plan' THEN 'check' ELSE 'reported' END;
    ELSIF old_source IS DISTINCT FROM 'rate_plan' THEN
        cost_mode := 'reported';
    ELSIF NEW.duration_seconds IS DISTINCT FROM OLD.duration_seconds
          OR NEW.client_id IS DISTINCT FROM OLD.client_id
          OR NEW.ended_at_utc IS DISTINCT FROM OLD.ended_at_utc THEN
        cost_mode := 'price';
    ELSE
        cost_mode := 'rate_plan';
    END IF;

    IF cost_mode IN ('price', 'check') THEN
        IF NEW.ended_at_utc IS NOT NULL AND NEW.duration_seconds IS NOT NULL AND NEW.client_id IS NOT NULL THEN
            rate := (SELECT c.rate_per_minute FROM client_subscriptions AS c WHERE c.client_id = NEW.client_id);
            plan_cost := round(NEW.duration_seconds / 60 * rate, 4);
            IF plan_cost >= 1000000 THEN
                plan_cost := NULL;  -- would not fit numeric(10,4)
            END IF;
        END IF;
        IF cost_mode = 'check' THEN
            -- Tagged rate_plan over a rate_plan row: ours if it is what the plan gives now,
            -- otherwise a report written without touching metadata.
            new_source := CASE WHEN NEW.cost_total = plan_cost THEN 'rate_plan' ELSE 'reported' END;
        ELSE
            NEW.cost_total := plan_cost;
            new_source := CASE WHEN plan_cost IS NOT NULL THEN 'rate_plan' END;
        END IF;
    ELSE
        new_source := cost_mode;
    END IF;

    IF NEW.metadata IS NULL OR jsonb_typeof(NEW.metadata) = 'object' THEN
        IF new_source IS NULL THEN
            IF NEW.metadata ? 'cost_source' THEN
                NEW.metadata := NEW.metadata - 'cost_source';
            END IF;
        ELSIF NEW.metadata ->> 'cost_source' IS DISTINCT FROM new_source THEN
            NEW.metadata := coalesce(NEW.metadata, '{}'::jsonb) || jsonb_build_object('cost_source', new_source);
        END IF;
    END IF;

    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION process_call_analytics() FROM PUBLIC;
