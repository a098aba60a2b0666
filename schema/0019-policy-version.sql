-- cronpolicy schema patch 0019: one small row says whether the policy moved.
--
-- A running script that cannot LISTEN (watch = poll, behind a pooler in
-- transaction mode) re-read every policy, window, switch and rollout every
-- poll_interval: through pgbouncer that was 82% of its transactions, each
-- building the whole policy as JSON.  It now reads policy_version's one
-- row each poll and reads the policy only when the number moved (or a
-- window is due to begin, or a minute passed, as a listener does).
--
-- The number moves whenever anything announced on cronpolicy_policy moves
-- (the same tables, the same conditions as patches 0002, 0014 and 0016:
-- notify_policy_change), in the same transaction as the change: whoever
-- sees the new number sees the change.  The bump is made at commit
-- (a deferred constraint trigger), when the transaction holds every row
-- lock it will take: bumping at each statement would make this one row a
-- lock taken in the middle of transactions, and two transactions that
-- change different tables in different orders (a window locked FOR UPDATE,
-- then the deploy switch changed by another session) would deadlock on it.
-- TRUNCATE cannot have a constraint trigger: it bumps at once (it holds
-- its table's exclusive lock anyway).  Extra bumps only cost a re-read.
-- (Two REPEATABLE READ or SERIALIZABLE transactions that change the policy
-- at once now conflict on this row, and one is told to try again;
-- cronpolicy's own run in READ COMMITTED.)
--
-- Applying it again changes nothing (IF NOT EXISTS, OR REPLACE, IF EXISTS).

CREATE TABLE IF NOT EXISTS cronpolicy.policy_version (
    id       integer NOT NULL PRIMARY KEY DEFAULT 1,
    version  bigint NOT NULL DEFAULT 0,
    CONSTRAINT policy_version_single_row CHECK (id = 1)
);
COMMENT ON TABLE cronpolicy.policy_version IS
    'One row whose version moves, at commit, with every change running scripts are told of (cronpolicy_policy): pollers re-read the policy only when it moved.';
COMMENT ON COLUMN cronpolicy.policy_version.id IS 'Always 1: there is one row.';
COMMENT ON COLUMN cronpolicy.policy_version.version IS
    'How many changes of policies, windows, the deploy switch, service deploys and rollouts were committed (a counter; only whether it moved matters).';
INSERT INTO cronpolicy.policy_version (id) VALUES (1) ON CONFLICT (id) DO NOTHING;

-- As the schema's owner: the logins that change the policy (admins, release
-- bots, a DBA's role) need no right on this table.
CREATE OR REPLACE FUNCTION cronpolicy.bump_policy_version() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE cronpolicy.policy_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION cronpolicy.bump_policy_version() IS
    'Moves policy_version (see patch 0019): a change running scripts must hear of was committed.';

DROP TRIGGER IF EXISTS script_policy_version ON cronpolicy.script_policy;
CREATE CONSTRAINT TRIGGER script_policy_version
    AFTER INSERT OR UPDATE OR DELETE ON cronpolicy.script_policy
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.bump_policy_version();
DROP TRIGGER IF EXISTS deploy_state_version ON cronpolicy.deploy_state;
CREATE CONSTRAINT TRIGGER deploy_state_version
    AFTER INSERT OR UPDATE OR DELETE ON cronpolicy.deploy_state
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.bump_policy_version();
DROP TRIGGER IF EXISTS rollout_window_version ON cronpolicy.rollout_window;
CREATE CONSTRAINT TRIGGER rollout_window_version
    AFTER INSERT OR UPDATE OR DELETE ON cronpolicy.rollout_window
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.bump_policy_version();
DROP TRIGGER IF EXISTS service_deploy_version ON cronpolicy.service_deploy;
CREATE CONSTRAINT TRIGGER service_deploy_version
    AFTER INSERT OR UPDATE OR DELETE ON cronpolicy.service_deploy
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.bump_policy_version();
-- Rollouts: begun, ended, or their reason changed, as rollout_notify says;
-- a lease renewed or a rollout marked quiet changes no decision.
DROP TRIGGER IF EXISTS rollout_version ON cronpolicy.rollout;
CREATE CONSTRAINT TRIGGER rollout_version
    AFTER INSERT OR DELETE ON cronpolicy.rollout
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.bump_policy_version();
DROP TRIGGER IF EXISTS rollout_version_update ON cronpolicy.rollout;
CREATE CONSTRAINT TRIGGER rollout_version_update
    AFTER UPDATE ON cronpolicy.rollout
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN ((OLD.ended_at, OLD.reason) IS DISTINCT FROM (NEW.ended_at, NEW.reason))
    EXECUTE FUNCTION cronpolicy.bump_policy_version();

DROP TRIGGER IF EXISTS script_policy_version_truncate ON cronpolicy.script_policy;
CREATE TRIGGER script_policy_version_truncate AFTER TRUNCATE ON cronpolicy.script_policy
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.bump_policy_version();
DROP TRIGGER IF EXISTS rollout_window_version_truncate ON cronpolicy.rollout_window;
CREATE TRIGGER rollout_window_version_truncate AFTER TRUNCATE ON cronpolicy.rollout_window
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.bump_policy_version();
DROP TRIGGER IF EXISTS service_deploy_version_truncate ON cronpolicy.service_deploy;
CREATE TRIGGER service_deploy_version_truncate AFTER TRUNCATE ON cronpolicy.service_deploy
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.bump_policy_version();
DROP TRIGGER IF EXISTS rollout_version_truncate ON cronpolicy.rollout;
CREATE TRIGGER rollout_version_truncate AFTER TRUNCATE ON cronpolicy.rollout
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.bump_policy_version();

-- Connections are scarce (issue 32.5): four fifths or more of what this
-- login, this database or the server allows are in use.  A running script
-- asked this (with its decision and its heartbeats) then holds no
-- connection between statements, leaving them to the starts that need one.
CREATE OR REPLACE FUNCTION cronpolicy.connections_scarce() RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (r.rolconnlimit >= 0
            AND 5 * (SELECT count(*) FROM pg_stat_activity WHERE usesysid = r.oid)
                >= 4 * r.rolconnlimit)
        OR (d.datconnlimit >= 0
            AND 5 * (SELECT count(*) FROM pg_stat_activity WHERE datid = d.oid)
                >= 4 * d.datconnlimit)
        OR 5 * (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
           >= 4 * (current_setting('max_connections')::int
                   - current_setting('superuser_reserved_connections')::int)
      FROM pg_roles AS r, pg_database AS d
     WHERE r.rolname = session_user AND d.datname = current_database()
$$;
COMMENT ON FUNCTION cronpolicy.connections_scarce() IS
    'Whether four fifths of the connections this login, database or server allows are in use (running scripts then hold none between statements).';

-- Databases whose roles were set up before this patch: the rights roles.sql gives.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_script') THEN
        GRANT SELECT ON cronpolicy.policy_version TO cronpolicy_script;
        GRANT EXECUTE ON FUNCTION cronpolicy.connections_scarce() TO cronpolicy_script;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON cronpolicy.policy_version
            TO cronpolicy_admin;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_reader') THEN
        GRANT SELECT ON cronpolicy.policy_version TO cronpolicy_reader;
    END IF;
END
$$;
