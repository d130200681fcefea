-- call_events (migration 0013): updated_at follows every change, whoever writes it. Since
-- 0022 the trigger sits on the partitioned table, so every partition has it.

CREATE OR REPLACE FUNCTION call_events_touch() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION call_events_touch() FROM PUBLIC;
