-- update_client_usage_on_session_end: client_monthly_usage counts each ended session
-- exactly once, however often its row is written afterwards.
--
-- session_usage_ledger holds what each session currently contributes (client, LOCAL
-- month of its start, else of its end, minutes, cost). The user_sessions trigger only
-- keeps that ledger row equal to what the session should contribute; triggers on the
-- ledger turn every ledger change into a delta on client_monthly_usage. So:
--   duplicate delivery       nothing relevant changed -> no work at all
--   correction               ledger row updated -> usage moves by the difference
--   client / month change    the whole contribution moves from the old key to the new one
--   session deleted          ledger row cascades away -> its contribution is removed
--   no client / not ended    no ledger row -> counts nowhere

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

CREATE OR REPLACE FUNCTION apply_session_usage_ledger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM add_client_monthly_usage(NEW.client_id, NEW.month, 1, NEW.minutes, NEW.cost);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM add_client_monthly_usage(OLD.client_id, OLD.month, -1, -OLD.minutes, -OLD.cost);
    ELSIF (NEW.client_id, NEW.month) = (OLD.client_id, OLD.month) THEN
        IF (NEW.minutes, NEW.cost) IS DISTINCT FROM (OLD.minutes, OLD.cost) THEN
            PERFORM add_client_monthly_usage(NEW.client_id, NEW.month, 0,
                                             NEW.minutes - OLD.minutes, NEW.cost - OLD.cost);
        END IF;
    ELSIF (OLD.client_id, OLD.month) < (NEW.client_id, NEW.month) THEN
        -- Two counters: touch them in key order so opposite moves cannot deadlock.
        PERFORM add_client_monthly_usage(OLD.client_id, OLD.month, -1, -OLD.minutes, -OLD.cost);
        PERFORM add_client_monthly_usage(NEW.client_id, NEW.month, 1, NEW.minutes, NEW.cost);
    ELSE
        PERFORM add_client_monthly_usage(NEW.client_id, NEW.month, 1, NEW.minutes, NEW.cost);
        PERFORM add_client_monthly_usage(OLD.client_id, OLD.month, -1, -OLD.minutes, -OLD.cost);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION apply_session_usage_ledger() FROM PUBLIC;

CREATE OR REPLACE FUNCTION update_client_monthly_usage() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- Normally already done by the ledger's ON DELETE CASCADE; kept explicit.
        DELETE FROM session_usage_ledger WHERE session_id = OLD.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE'
       AND NEW.ended_at_utc IS NOT DISTINCT FROM OLD.ended_at_utc
       AND NEW.started_at_utc IS NOT DISTINCT FROM OLD.started_at_utc
       AND NEW.client_id IS NOT DISTINCT FROM OLD.client_id
       AND NEW.duration_minutes IS NOT DISTINCT FROM OLD.duration_minutes
       AND NEW.cost_total IS NOT DISTINCT FROM OLD.cost_total THEN
        RETURN NULL;  -- the common case: a duplicate or an update usage does not depend on
    END IF;
    IF NEW.ended_at_utc IS NOT NULL AND NEW.client_id IS NOT NULL THEN
        INSERT INTO session_usage_ledger AS l (session_id, client_id, month, minutes, cost)
        VALUES (NEW.id, NEW.client_id,
                ingest_local_month(coalesce(NEW.started_at_utc, NEW.ended_at_utc)),
                coalesce(NEW.duration_minutes, 0), coalesce(NEW.cost_total, 0))
        ON CONFLICT (session_id) DO UPDATE
        SET client_id = excluded.client_id,
            month = excluded.month,
            minutes = excluded.minutes,
            cost = excluded.cost,
            updated_at = now()
        WHERE (l.client_id, l.month, l.minutes, l.cost)
              IS DISTINCT FROM (excluded.client_id, excluded.month, excluded.minutes, excluded.cost);
    ELSIF TG_OP = 'UPDATE' THEN
        DELETE FROM session_usage_ledger WHERE session_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION update_client_monthly_usage() FROM PUBLIC;
