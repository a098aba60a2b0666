-- cronpolicy schema patch 0019: one small row says whether the policy moved.
--
-- A running script that cannot LISTEN (watch = poll, behind a pooler in
-- transaction mode) re-read every policy, window, switch and rollout every
-- poll_interval: through pgbouncer that was 82% of its transactions, each
-- building the whole policy as JSON.  It now reads policy_version's one
-- row each poll and reads the policy only when the number moved (or a
-- window is due to begin, or a minute passed, as a listener does).
--
-- The number moves with every statement that changes what is announced on
-- cronpolicy_policy (the same tables as patches 0002, 0014 and 0016:
-- policies, windows, the deploy switch, service deploys, rollouts), in the
-- same transaction as the change: whoever sees the new number sees the
-- change.  Extra moves (a statement that changed no row) only cost a
-- re-read.
--
-- It moves BEFORE each statement, which also takes the row's lock before
-- any row of the tables it guards: every transaction that changes the
-- policy takes this lock first (and, for rollouts and service deploys,
-- then the deploy switch's lock of patch 0017: the triggers here are named
-- to fire before those, as PostgreSQL fires them by name), so these locks
-- cannot deadlock each other.  Moved after each statement instead, a
-- transaction that changed a policy and then the switch deadlocked with a
-- plain UPDATE of the switch made meanwhile; moved at commit (a deferred
-- constraint trigger, by row), a TRUNCATE of service_deploy and rollout
-- together failed at commit ("could not read block 0"): service_deploy's
-- BEFORE TRUNCATE trigger ends rollouts, whose queued row events then
-- point into the truncated table.  Two transactions changing the policy at
-- once now go one after the other, as changes of the rollouts already did.
-- (REPEATABLE READ or SERIALIZABLE ones may be told to try again.)
--
-- Applying it again changes nothing (IF NOT EXISTS, OR REPLACE, IF EXISTS).

CREATE TABLE IF NOT EXISTS cronpolicy.policy_version (
    id       integer NOT NULL PRIMARY KEY DEFAULT 1,
    version  bigint NOT NULL DEFAULT 0,
    CONSTRAINT policy_version_single_row CHECK (id = 1)
);
COMMENT ON TABLE cronpolicy.policy_version IS
    'One row whose version moves with every change running scripts are told of (cronpolicy_policy): pollers re-read the policy only when it moved.';
COMMENT ON COLUMN cronpolicy.policy_version.id IS 'Always 1: there is one row.';
COMMENT ON COLUMN cronpolicy.policy_version.version IS
    'How many statements changed policies, windows, the deploy switch, service deploys or rollouts (a counter; only whether it moved matters).';
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
    'Moves policy_version (and takes its lock) before a statement that changes what running scripts are told of (patch 0019).';

DROP TRIGGER IF EXISTS script_policy_keep_version ON cronpolicy.script_policy;
CREATE TRIGGER script_policy_keep_version
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON cronpolicy.script_policy
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.bump_policy_version();
DROP TRIGGER IF EXISTS deploy_state_keep_version ON cronpolicy.deploy_state;
CREATE TRIGGER deploy_state_keep_version
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON cronpolicy.deploy_state
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.bump_policy_version();
DROP TRIGGER IF EXISTS rollout_window_keep_version ON cronpolicy.rollout_window;
CREATE TRIGGER rollout_window_keep_version
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON cronpolicy.rollout_window
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.bump_policy_version();
-- Before service_deploy_lock_switch ("keep" < "lock").
DROP TRIGGER IF EXISTS service_deploy_keep_version ON cronpolicy.service_deploy;
CREATE TRIGGER service_deploy_keep_version
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON cronpolicy.service_deploy
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.bump_policy_version();
-- Before rollout_lock_switch, on the same columns: a lease renewed takes
-- neither lock and moves nothing.
DROP TRIGGER IF EXISTS rollout_keep_version ON cronpolicy.rollout;
CREATE TRIGGER rollout_keep_version
    BEFORE INSERT OR DELETE OR UPDATE OF kind, services, reason, ended_at, quiet_at
    ON cronpolicy.rollout
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.bump_policy_version();
DROP TRIGGER IF EXISTS rollout_keep_version_truncate ON cronpolicy.rollout;
CREATE TRIGGER rollout_keep_version_truncate BEFORE TRUNCATE ON cronpolicy.rollout
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.bump_policy_version();

-- Connections are scarce (issue 32.5): four fifths or more of what this
-- login, this database or the server allows are in use.  A running script
-- asked this (with its decision and its heartbeats) then holds no
-- connection between statements, leaving them to the starts that need one.
-- One pass over the server's backends (pg_stat_get_activity: the view
-- pg_stat_activity joins two catalogs more), and no SET clause, so that it
-- is inlined into the statement that asks (everything is qualified
-- instead): it rides on every decision, at about half a millisecond.
CREATE OR REPLACE FUNCTION cronpolicy.connections_scarce() RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT (r.rolconnlimit >= 0 AND 5 * a.login >= 4 * r.rolconnlimit)
        OR (d.datconnlimit >= 0 AND 5 * a.db >= 4 * d.datconnlimit)
        OR 5 * a.total >= 4 * (pg_catalog.current_setting('max_connections')::int
                               - pg_catalog.current_setting('superuser_reserved_connections')::int)
      FROM pg_catalog.pg_roles AS r, pg_catalog.pg_database AS d,
           (SELECT pg_catalog.count(*) FILTER (WHERE s.usesysid = (
                       SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user)) AS login,
                   pg_catalog.count(*) FILTER (WHERE s.datid = (
                       SELECT oid FROM pg_catalog.pg_database
                        WHERE datname = pg_catalog.current_database())) AS db,
                   pg_catalog.count(*) FILTER (WHERE s.backend_type = 'client backend') AS total
              FROM pg_catalog.pg_stat_get_activity(NULL) AS s) AS a
     WHERE r.rolname = session_user AND d.datname = pg_catalog.current_database()
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
        GRANT EXECUTE ON FUNCTION cronpolicy.connections_scarce() TO cronpolicy_reader;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_rollout') THEN
        GRANT EXECUTE ON FUNCTION cronpolicy.connections_scarce() TO cronpolicy_rollout;
    END IF;
END
$$;
