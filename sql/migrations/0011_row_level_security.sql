-- Row-level security and grants for the Supabase-style API roles.
--   user_sessions          the seed's two SELECT policies; authenticated reads, service_role
--                          reads and writes (Supabase's service_role bypasses RLS; ours does not)
--   client_subscriptions,  a client reads its own row(s) through the same client_id claim
--   client_monthly_usage
--   ingest_settings        readable (the analytics RPC needs the local zone)
--   everything else        nothing for anon / authenticated
-- Revokes are explicit because Supabase's default privileges grant new tables to all roles.

ALTER TABLE user_sessions ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS clients_can_view_own_sessions ON user_sessions;
CREATE POLICY clients_can_view_own_sessions ON user_sessions
    FOR SELECT TO authenticated
    USING ((auth.jwt() ->> 'client_id') = client_id);

-- The claim is text and assistant_id is uuid: convert the claim (NULL when malformed),
-- never the column, so no cast error and idx_user_sessions_assistant_id stays usable.
DROP POLICY IF EXISTS assistants_can_view_assigned_sessions ON user_sessions;
CREATE POLICY assistants_can_view_assigned_sessions ON user_sessions
    FOR SELECT TO service_role
    USING (assistant_id = ingest_try_uuid(auth.jwt() ->> 'assistant_id'));

REVOKE ALL ON user_sessions FROM anon, authenticated;
GRANT SELECT ON user_sessions TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON user_sessions TO service_role;

ALTER TABLE client_subscriptions ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS clients_can_view_own_subscription ON client_subscriptions;
CREATE POLICY clients_can_view_own_subscription ON client_subscriptions
    FOR SELECT TO authenticated
    USING ((auth.jwt() ->> 'client_id') = client_id);
REVOKE ALL ON client_subscriptions FROM anon, authenticated;
GRANT SELECT ON client_subscriptions TO authenticated;

ALTER TABLE client_monthly_usage ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS clients_can_view_own_usage ON client_monthly_usage;
CREATE POLICY clients_can_view_own_usage ON client_monthly_usage
    FOR SELECT TO authenticated
    USING ((auth.jwt() ->> 'client_id') = client_id);
REVOKE ALL ON client_monthly_usage FROM anon, authenticated;
GRANT SELECT ON client_monthly_usage TO authenticated;

ALTER TABLE ingest_settings ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS settings_are_readable ON ingest_settings;
CREATE POLICY settings_are_readable ON ingest_settings
    FOR SELECT TO authenticated, service_role
    USING (true);
REVOKE ALL ON ingest_settings FROM anon, authenticated, service_role;
GRANT SELECT ON ingest_settings TO authenticated, service_role;

ALTER TABLE assistants ENABLE ROW LEVEL SECURITY;
ALTER TABLE phone_numbers ENABLE ROW LEVEL SECURITY;
ALTER TABLE session_usage_ledger ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON assistants, phone_numbers, session_usage_ledger FROM anon, authenticated;

-- Time helpers are harmless to call; trigger and usage functions are not API.
REVOKE ALL ON FUNCTION ingest_settings_check() FROM PUBLIC;
