-- data_access_log (migration 0021) is append-only: its triggers refuse UPDATE, DELETE and
-- TRUNCATE, whoever sends them.

CREATE OR REPLACE FUNCTION data_access_log_append_only() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'data_access_log is append-only: % is refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'rows are only ever added; nobody may change or remove one';
END
$$;
REVOKE ALL ON FUNCTION data_access_log_append_only() FROM PUBLIC;
