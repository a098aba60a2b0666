-- cronpolicy roles: least privilege for scripts, rollout tooling and DBAs.
--
-- Apply after `cronpolicy schema upgrade`, as a superuser, with
-- `cronpolicy schema roles` or `psql -f schema/roles.sql DBNAME`.  It is not
-- a numbered patch: roles are cluster-wide, so this file creates the three
-- group roles only if they do not exist yet, and (re)grants their rights in
-- the current database.  Applying it twice, or in a second database of the
-- same cluster, is fine.
--
-- Grant a group role to each real login role:
--
--     CREATE ROLE cron_web1 LOGIN PASSWORD '...';  -- one per host: hosts may
--     GRANT cronpolicy_script TO cron_web1;         -- only update their own runs
--     GRANT cronpolicy_rollout TO release_bot;
--     GRANT cronpolicy_admin TO alice;
--     GRANT cronpolicy_reader TO dashboard;         -- cronpolicy serve
--
-- cronpolicy_script   read policies, the deploy switch, windows and history;
--                     insert runs of its own scripts (script_owner) on its
--                     own hosts (host_login), and update only the runs it
--                     wrote (script_run.db_user: row-level security and a
--                     guard trigger that names the owner); register its
--                     hosts' schedules; LISTEN.
-- cronpolicy_rollout  cronpolicy_script's rights, plus flipping the deploy
--                     switch (and a service's), managing rollout windows;
--                     reading the audit.
-- cronpolicy_admin    everything, policies and script ownership included,
--                     except the audit: administrators read it, and cannot
--                     change it, delete from it or add triggers anywhere.
-- cronpolicy_reader   reads every table (the audit included) and changes
--                     nothing, not even dead runs: `cronpolicy serve`.
-- cronpolicy_relay    what a `cronpolicy relay` needs: reads the policy as
--                     scripts do and renews the leases of the runs it
--                     serves (cronpolicy.renew_relayed), nothing else.
-- cronpolicy_auditor  owns policy_audit and the functions that write it.
--                     Grant it to no one: then only superusers can alter
--                     the audit.  Run `schema upgrade` as a superuser or the
--                     database owner, never as an administrator's login.
--
-- Recording other hosts' dead runs as abandoned goes through the SECURITY
-- DEFINER function cronpolicy.reap_dead_runs (fixed search_path), which every
-- role may execute; the audit is written by SECURITY DEFINER triggers.

-- Two sessions applying this at once (two hosts, two test workers) both
-- find a role missing; the second CREATE ROLE then waits for the first and
-- fails on the name: the role is there, which is all this asks for.
DO $$
DECLARE
    wanted text;
BEGIN
    FOREACH wanted IN ARRAY ARRAY['cronpolicy_script', 'cronpolicy_rollout', 'cronpolicy_admin',
                                  'cronpolicy_reader', 'cronpolicy_auditor',
                                  'cronpolicy_relay'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = wanted) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', wanted);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

COMMENT ON ROLE cronpolicy_script IS
    'cronpolicy: cron scripts. Reads policy, records and updates only its own runs.';
COMMENT ON ROLE cronpolicy_rollout IS
    'cronpolicy: rollout tooling. Script rights plus rollouts, the deploy switch and rollout windows.';
COMMENT ON ROLE cronpolicy_admin IS
    'cronpolicy: administrators. Everything, policies included; the audit only to read.';
COMMENT ON ROLE cronpolicy_reader IS
    'cronpolicy: dashboards (cronpolicy serve). Reads everything, changes nothing.';
COMMENT ON ROLE cronpolicy_relay IS
    'cronpolicy: cronpolicy relay. Reads the policy, renews the leases of the runs it serves.';
COMMENT ON ROLE cronpolicy_auditor IS
    'cronpolicy: owns the audit (policy_audit and its functions). Grant it to no one.';

GRANT cronpolicy_script TO cronpolicy_rollout;

-- Start from nothing in this database, so re-applying gives exactly this.
REVOKE ALL ON ALL TABLES IN SCHEMA cronpolicy
    FROM cronpolicy_script, cronpolicy_rollout, cronpolicy_admin, cronpolicy_reader,
         cronpolicy_relay;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA cronpolicy FROM PUBLIC;
-- Pure helpers that constraints and triggers evaluate with every writer's rights.
GRANT EXECUTE ON FUNCTION cronpolicy.service_list_ok(text),
                          cronpolicy.schedule_problem(text, text),
                          cronpolicy.cron_field_values(text, integer, integer, text[]),
                          cronpolicy.time_in_range(timestamptz),
                          cronpolicy.seconds_in_range(double precision),
                          cronpolicy.interval_in_range(interval),
                          cronpolicy.glob_matches(text, text),
                          cronpolicy.is_administrator(text) TO PUBLIC;

GRANT USAGE ON SCHEMA cronpolicy
    TO cronpolicy_script, cronpolicy_rollout, cronpolicy_admin, cronpolicy_reader,
       cronpolicy_relay;
-- Whether to hold a connection while running (schema patch 0019): the
-- policy read asks it, and every login that reads the policy (status, check,
-- deploy wait, the dashboard) makes that read.
GRANT EXECUTE ON FUNCTION cronpolicy.connections_scarce()
    TO cronpolicy_script, cronpolicy_rollout, cronpolicy_reader, cronpolicy_relay;

-- Scripts.
GRANT SELECT ON cronpolicy.schema_version, cronpolicy.script_policy, cronpolicy.deploy_state,
                cronpolicy.rollout_window, cronpolicy.script_run, cronpolicy.script_owner,
                cronpolicy.host_login, cronpolicy.service_deploy, cronpolicy.rollout,
                cronpolicy.rollout_awaited, cronpolicy.policy_version
    TO cronpolicy_script;
-- What the runs sum to (schema patch 0022), in a statement of its own: psql
-- given this file before the upgrade fails this one alone.
GRANT SELECT ON cronpolicy.run_tally TO cronpolicy_script;
-- Runs of the scripts its login owns (script_owner) on the hosts it owns
-- (host_login; triggers check, and claim a name or a host nobody owns
-- yet), with times from the database clock.
GRANT INSERT ON cronpolicy.script_run TO cronpolicy_script;
GRANT UPDATE (status, exit_code, finished_at, heartbeat_at, safe_to_interrupt, stop_reason,
               stop_decision, stop_policy_id, stop_window_id, lease_expires_at,
               skip_reason, decision, policy_ignored, spooled, block, stop_block)
    ON cronpolicy.script_run TO cronpolicy_script;
GRANT EXECUTE ON FUNCTION cronpolicy.claim_script(text), cronpolicy.claim_host(text),
                          cronpolicy.may_write_host(text) TO cronpolicy_script;
-- Fleet-wide slots (max_concurrent): taken, renewed and given back by runs,
-- each host only its own (row-level security below).
GRANT SELECT, INSERT, UPDATE, DELETE ON cronpolicy.run_slot TO cronpolicy_script;
GRANT EXECUTE ON FUNCTION cronpolicy.reap_dead_runs()
    TO cronpolicy_script, cronpolicy_admin;
-- Schedules a host registers from its crontab (`cronpolicy schedule import`),
-- for scripts its login may record and hosts it may write as (a trigger
-- checks script_owner and host_login); a login changes only the schedules
-- of those hosts (row-level security below).
GRANT SELECT, INSERT, UPDATE, DELETE ON cronpolicy.script_schedule TO cronpolicy_script;

-- Relays (cronpolicy relay): the policy as scripts read it, and one
-- function that renews the leases of the runs they serve, by id and key.
GRANT SELECT ON cronpolicy.schema_version, cronpolicy.script_policy, cronpolicy.deploy_state,
                cronpolicy.rollout_window, cronpolicy.script_run, cronpolicy.service_deploy,
                cronpolicy.rollout, cronpolicy.policy_version
    TO cronpolicy_relay;
GRANT EXECUTE ON FUNCTION cronpolicy.renew_relayed(bigint[], text[], boolean[], float8[], text[],
                                                   integer[], float8[])
    TO cronpolicy_relay;

-- Rollout tooling (and cronpolicy_script's rights, through membership).
GRANT UPDATE (deploy_pending, reason, changed_by) ON cronpolicy.deploy_state
    TO cronpolicy_rollout;
GRANT INSERT, UPDATE ON cronpolicy.rollout_window TO cronpolicy_rollout;
-- Deploys of one service: begun (a row) and ended (its deletion).
GRANT INSERT, UPDATE, DELETE ON cronpolicy.service_deploy TO cronpolicy_rollout;
-- Rollouts: begun, renewed by their owner, marked quiet, ended; who and when
-- are the database's to say (patch 0016's triggers), and a lease is changed
-- only by the login that owns the rollout (patch 0026).
GRANT INSERT (kind, services, reason, owner_host, owner_pid, expected_duration,
              lease_expires_at),
      UPDATE (reason, expected_duration, lease_expires_at, quiet_at, ended_at)
    ON cronpolicy.rollout TO cronpolicy_rollout;
GRANT INSERT, UPDATE ON cronpolicy.rollout_awaited TO cronpolicy_rollout;
GRANT SELECT ON cronpolicy.policy_audit, cronpolicy.drain, cronpolicy.pruned_runs
    TO cronpolicy_rollout;
GRANT INSERT ON cronpolicy.drain TO cronpolicy_rollout;

-- Administrators: every table but the audit, without TRIGGER (a trigger of
-- theirs could drop audit entries or rewrite rows behind the audit's back).
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA cronpolicy
    TO cronpolicy_admin;
GRANT ALL ON ALL SEQUENCES IN SCHEMA cronpolicy TO cronpolicy_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA cronpolicy TO cronpolicy_admin;

-- Dashboards (cronpolicy serve): every table to read, nothing to change.
-- Dead runs are told from live ones by their leases; recording them as
-- abandoned (reap_dead_runs, a write) is left to the other roles.
GRANT SELECT ON ALL TABLES IN SCHEMA cronpolicy TO cronpolicy_reader;

-- The audit belongs to a role no one holds: its entries are written by
-- SECURITY DEFINER triggers running as that role, and read by everyone
-- who may.  Only a superuser can change or delete them.
GRANT USAGE ON SCHEMA cronpolicy TO cronpolicy_auditor;
ALTER TABLE cronpolicy.policy_audit OWNER TO cronpolicy_auditor;
ALTER FUNCTION cronpolicy.audit_change() OWNER TO cronpolicy_auditor;
ALTER FUNCTION cronpolicy.audit_truncate() OWNER TO cronpolicy_auditor;
-- A TRUNCATE is audited with its rows: the function reads them first.
GRANT SELECT ON cronpolicy.script_policy, cronpolicy.rollout_window, cronpolicy.script_owner,
                cronpolicy.host_login, cronpolicy.deploy_state, cronpolicy.service_deploy,
                cronpolicy.rollout
    TO cronpolicy_auditor;
REVOKE ALL ON cronpolicy.policy_audit FROM cronpolicy_admin;
REVOKE ALL ON SEQUENCE cronpolicy.policy_audit_id_seq FROM cronpolicy_admin;
GRANT SELECT ON cronpolicy.policy_audit TO cronpolicy_admin, cronpolicy_reader;

-- A host updates only the runs it wrote, and is told so when it tries
-- another's: cronpolicy.guard_run_writer (schema patch 0021) refuses the
-- update of a run written by another database user, unless the writer
-- is an administrator.  guard_run_owner, which this file defined up to
-- schema 20, is left where 0021 could not drop it (a superuser's).
DROP TRIGGER IF EXISTS script_run_owner_guard ON cronpolicy.script_run;
CREATE TRIGGER script_run_owner_guard BEFORE UPDATE ON cronpolicy.script_run
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.guard_run_writer();
DROP FUNCTION IF EXISTS cronpolicy.guard_run_owner();

-- Everyone may read every run; inserts must carry the writer's own name.
ALTER TABLE cronpolicy.script_run ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS script_run_read ON cronpolicy.script_run;
DROP POLICY IF EXISTS script_run_insert_own ON cronpolicy.script_run;
DROP POLICY IF EXISTS script_run_update_own ON cronpolicy.script_run;
DROP POLICY IF EXISTS script_run_admin ON cronpolicy.script_run;
CREATE POLICY script_run_read ON cronpolicy.script_run FOR SELECT
    TO cronpolicy_script, cronpolicy_reader, cronpolicy_relay USING (true);
CREATE POLICY script_run_insert_own ON cronpolicy.script_run FOR INSERT
    TO cronpolicy_script WITH CHECK (db_user = session_user);
CREATE POLICY script_run_update_own ON cronpolicy.script_run FOR UPDATE
    TO cronpolicy_script USING (true) WITH CHECK (db_user = session_user);
CREATE POLICY script_run_admin ON cronpolicy.script_run FOR ALL
    TO cronpolicy_admin USING (true) WITH CHECK (true);

-- A host takes free slots, renews and gives back only its own, and frees
-- another's only once its lease has run out.
ALTER TABLE cronpolicy.run_slot ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS run_slot_read ON cronpolicy.run_slot;
DROP POLICY IF EXISTS run_slot_take ON cronpolicy.run_slot;
DROP POLICY IF EXISTS run_slot_renew ON cronpolicy.run_slot;
DROP POLICY IF EXISTS run_slot_free ON cronpolicy.run_slot;
DROP POLICY IF EXISTS run_slot_admin ON cronpolicy.run_slot;
CREATE POLICY run_slot_read ON cronpolicy.run_slot FOR SELECT
    TO cronpolicy_script, cronpolicy_reader USING (true);
CREATE POLICY run_slot_take ON cronpolicy.run_slot FOR INSERT
    TO cronpolicy_script WITH CHECK (db_user = session_user);
CREATE POLICY run_slot_renew ON cronpolicy.run_slot FOR UPDATE
    TO cronpolicy_script USING (db_user = session_user) WITH CHECK (db_user = session_user);
CREATE POLICY run_slot_free ON cronpolicy.run_slot FOR DELETE
    TO cronpolicy_script USING (db_user = session_user OR lease_expires_at < now());
CREATE POLICY run_slot_admin ON cronpolicy.run_slot FOR ALL
    TO cronpolicy_admin USING (true) WITH CHECK (true);

-- Registered schedules: everyone reads them; a login registers, changes and
-- removes only those of hosts it may write as (host_login), whoever
-- registered them: a host moved to a new login keeps its schedules.
ALTER TABLE cronpolicy.script_schedule ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS script_schedule_read ON cronpolicy.script_schedule;
DROP POLICY IF EXISTS script_schedule_own ON cronpolicy.script_schedule;
DROP POLICY IF EXISTS script_schedule_admin ON cronpolicy.script_schedule;
CREATE POLICY script_schedule_read ON cronpolicy.script_schedule FOR SELECT
    TO cronpolicy_script, cronpolicy_reader USING (true);
CREATE POLICY script_schedule_own ON cronpolicy.script_schedule FOR ALL
    TO cronpolicy_script USING (cronpolicy.may_write_host(host))
    WITH CHECK (cronpolicy.may_write_host(host));
CREATE POLICY script_schedule_admin ON cronpolicy.script_schedule FOR ALL
    TO cronpolicy_admin USING (true) WITH CHECK (true);
