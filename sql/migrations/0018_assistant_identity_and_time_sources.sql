-- Calls whose assistant has no id (transient assistants, squads, workflows) and reports
-- without times (2024 shapes).
--
-- New sources, for end-of-call reports that carry no startedAt/endedAt: times read off the
-- report's conversation messages ('messages'), the report's own timestamp ('timestamp') and
-- the moment it reached us ('received'). They rank below a status update's end, so a call
-- whose status updates arrive keeps their more precise end. Ranks are only ever compared,
-- never stored (provenance keeps source names), so renumbering them is safe.

CREATE OR REPLACE FUNCTION ingest_source_rank(source text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE source
        WHEN 'structured' THEN 9   -- the assistant's structured analysis
        WHEN 'report' THEN 8       -- end-of-call report top-level fields
        WHEN 'session' THEN 7      -- session / chat objects
        WHEN 'call' THEN 6         -- the embedded call snapshot, the call's own assistant
        WHEN 'status' THEN 5       -- status-update messages
        WHEN 'messages' THEN 4     -- times read off a report's conversation messages
        WHEN 'transcripts' THEN 3  -- rebuilt from final transcript events
        WHEN 'timestamp' THEN 2    -- a report's timestamp standing in for the end
        WHEN 'received' THEN 1     -- when a report with no time at all reached us
        WHEN 'event' THEN 0        -- identity repeated on every event
        ELSE -1                    -- no provenance: written by someone else
    END
$$;

-- Placeholder parents, as in 0008; a placeholder assistant now takes the name the call's
-- metadata gives its derived identity (metadata.assistants.<id>.name: a transient
-- assistant's, a squad's or a workflow's name).
CREATE OR REPLACE FUNCTION ensure_user_session_parents() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    check_assistant boolean := NEW.assistant_id IS NOT NULL
        AND (TG_OP = 'INSERT' OR NEW.assistant_id IS DISTINCT FROM OLD.assistant_id);
    check_phone     boolean := NEW.phone_number_id IS NOT NULL
        AND (TG_OP = 'INSERT' OR NEW.phone_number_id IS DISTINCT FROM OLD.phone_number_id);
    check_client    boolean := NEW.client_id IS NOT NULL
        AND (TG_OP = 'INSERT' OR NEW.client_id IS DISTINCT FROM OLD.client_id);
    missing_assistant boolean;
    missing_phone     boolean;
    missing_client    boolean;
BEGIN
    IF NOT (check_assistant OR check_phone OR check_client) THEN
        RETURN NEW;  -- an update that changed no parent reference
    END IF;
    -- One round of lookups for all three parents.
    SELECT check_assistant AND NOT EXISTS (SELECT 1 FROM assistants WHERE id = NEW.assistant_id),
           check_phone AND NOT EXISTS (SELECT 1 FROM phone_numbers WHERE id = NEW.phone_number_id),
           check_client AND NOT EXISTS (SELECT 1 FROM client_subscriptions WHERE client_id = NEW.client_id)
    INTO missing_assistant, missing_phone, missing_client;
    IF missing_assistant THEN
        INSERT INTO assistants (id, name)
        VALUES (NEW.assistant_id, NEW.metadata #>> ARRAY['assistants', NEW.assistant_id::text, 'name'])
        ON CONFLICT DO NOTHING;
    END IF;
    IF missing_phone THEN
        INSERT INTO phone_numbers (id) VALUES (NEW.phone_number_id) ON CONFLICT DO NOTHING;
    END IF;
    IF missing_client THEN
        INSERT INTO client_subscriptions (client_id, status) VALUES (NEW.client_id, 'unknown')
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION ensure_user_session_parents() FROM PUBLIC;

-- A call can move between usage months while its events arrive (a report that ends it
-- before the status update that starts it: the month follows the start). Moving it out
-- of a month must not leave an empty row behind, or the usage table would depend on the
-- order events arrived in: a row whose calls, minutes and cost are all zero is removed.
CREATE OR REPLACE FUNCTION add_client_monthly_usage(
    p_client_id text, p_month date, p_calls integer, p_minutes numeric, p_cost numeric
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    INSERT INTO client_monthly_usage AS u (client_id, month, calls, minutes, cost)
    VALUES (p_client_id, p_month, p_calls, p_minutes, p_cost)
    ON CONFLICT (client_id, month) DO UPDATE
    SET calls = u.calls + excluded.calls,
        minutes = u.minutes + excluded.minutes,
        cost = u.cost + excluded.cost,
        updated_at = now();
    IF p_calls < 0 THEN
        DELETE FROM client_monthly_usage AS u
        WHERE u.client_id = p_client_id AND u.month = p_month
          AND u.calls = 0 AND u.minutes = 0 AND u.cost = 0;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION add_client_monthly_usage(text, date, integer, numeric, numeric) FROM PUBLIC;
