-- data_access_log: who read session data, or acted on it, through the service's own
-- surfaces (the ingest command, the /ops page), when, and what. Written by ingest/audit.py
-- in the same transaction as the read or the action it records; listed by `ingest audit list`.
--
-- Append-only: a trigger refuses UPDATE and DELETE of any row and TRUNCATE of the table,
-- whoever sends them, the table's owner included. (A superuser can still drop or disable
-- the trigger; that is DDL, not an ordinary statement, and shows in the server log.)
--
-- Nothing personal is written here: ids, counts and filters only (ingest/audit.py says so
-- where rows are written). client_id is a plain column, not a foreign key, so a client's
-- row can go while the record of who read its calls stays.

CREATE TABLE IF NOT EXISTS data_access_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,  -- the OS user of a CLI, the /ops user, the token that authenticated
    actor_kind   text NOT NULL,  -- os_user, ops_user, ops_bearer (ingest.vocabulary.AuditActorKind)
    action       text NOT NULL,  -- view_call, list_calls, reapply, … (ingest.vocabulary.AuditAction)
    surface      text NOT NULL,  -- cli, ops (ingest.vocabulary.AuditSurface)
    target_kind  text,           -- call, session, event, dead_letter, bulk
    target       text,           -- the call id, session id, event id or dead letter id acted on
    target_count bigint,         -- rows shown by a read; items an action was asked to act on
    reason       text,           -- why, when the surface asks for one
    client_id    text,           -- the client the access was narrowed to, if any
    db_role      text NOT NULL DEFAULT current_user,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,  -- filters, flags, ids; never personal data
    CONSTRAINT data_access_log_names_check CHECK (
        actor_kind ~ '^[a-z][a-z_]{0,39}$'
        AND action ~ '^[a-z][a-z_]{0,39}$'
        AND surface ~ '^[a-z][a-z_]{0,39}$'
        AND (target_kind IS NULL OR target_kind ~ '^[a-z][a-z_]{0,39}$')
    ),
    CONSTRAINT data_access_log_lengths_check CHECK (
        length(actor) BETWEEN 1 AND 200
        AND length(target) <= 200
        AND length(client_id) <= 200
        AND length(reason) <= 1000
        AND octet_length(details::text) <= 16384
    ),
    CONSTRAINT data_access_log_target_count_check CHECK (target_count >= 0),
    CONSTRAINT data_access_log_details_check CHECK (jsonb_typeof(details) = 'object')
);

CREATE INDEX IF NOT EXISTS idx_data_access_log_at ON data_access_log (at);
-- `ingest audit list --call ID`: rows whose target is the call, and rows about one of its
-- events (details.call names the event's call or session).
CREATE INDEX IF NOT EXISTS idx_data_access_log_target ON data_access_log (target) WHERE target IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_data_access_log_details_call ON data_access_log ((details ->> 'call'))
    WHERE (details ->> 'call') IS NOT NULL;

-- The trigger's function first appears here; its current definition is in
-- sql/functions/75_data_access_log.sql.
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

DROP TRIGGER IF EXISTS data_access_log_no_change ON data_access_log;
CREATE TRIGGER data_access_log_no_change
    BEFORE UPDATE OR DELETE ON data_access_log
    FOR EACH ROW EXECUTE FUNCTION data_access_log_append_only();

DROP TRIGGER IF EXISTS data_access_log_no_truncate ON data_access_log;
CREATE TRIGGER data_access_log_no_truncate
    BEFORE TRUNCATE ON data_access_log
    FOR EACH STATEMENT EXECUTE FUNCTION data_access_log_append_only();

-- Not API: no policies, nothing granted. Revoked explicitly because Supabase's default
-- privileges grant every new table and sequence to its API roles. The service writes and
-- reads it as the table's owner.
ALTER TABLE data_access_log ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON data_access_log FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE data_access_log_id_seq FROM PUBLIC, anon, authenticated, service_role;
