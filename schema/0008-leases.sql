-- cronpolicy schema patch 0008: liveness by lease, fleet-wide slots by lease.
--
-- A running run is alive until it records its end or its lease runs out;
-- its heartbeat renews the lease.  A lost database session no longer ends
-- a run (the advisory locks of earlier versions did), and no session state
-- is needed, so connection poolers in transaction mode work.  Fleet-wide
-- limits are leases too, rows of run_slot, which only granted roles can
-- write, each host only its own (roles.sql): no other login can block or
-- steer a start, and there are no hash collisions between script names.
--
-- script_run.spool_id becomes every run's key, chosen by the host before it
-- writes anything, so a start written late and its spooled record make one
-- row.  The column keeps its name so that hosts not yet upgraded work on.

ALTER TABLE cronpolicy.script_run ADD COLUMN lease_expires_at timestamptz;
COMMENT ON COLUMN cronpolicy.script_run.lease_expires_at IS
    'A running run is alive until this moment (database clock), unless its heartbeat renews it '
    '(lease_ttl, default 30s).  NULL once the run has ended.';
COMMENT ON COLUMN cronpolicy.script_run.spool_id IS
    'The unique key the host chose for the run before writing anything, so that a start written '
    'late and the same run''s spooled record make one row.';

CREATE TABLE cronpolicy.run_slot (
    name              text NOT NULL,
    slot              integer NOT NULL,
    run_key           text NOT NULL,
    host              text NOT NULL,
    lease_expires_at  timestamptz NOT NULL,
    db_user           text NOT NULL DEFAULT session_user,
    CONSTRAINT run_slot_pkey PRIMARY KEY (name, slot),
    CONSTRAINT run_slot_slot_not_negative CHECK (slot >= 0)
);
COMMENT ON TABLE cronpolicy.run_slot IS
    'Fleet-wide slots: a script limited to N simultaneous runs (max_concurrent, '
    'fleet_single_instance) has slots 0..N-1; a run holds one while its lease stands.';
COMMENT ON COLUMN cronpolicy.run_slot.name IS 'Script name.';
COMMENT ON COLUMN cronpolicy.run_slot.slot IS 'Slot number, from 0.';
COMMENT ON COLUMN cronpolicy.run_slot.run_key IS 'The run holding the slot (its script_run.spool_id).';
COMMENT ON COLUMN cronpolicy.run_slot.host IS 'The host of that run.';
COMMENT ON COLUMN cronpolicy.run_slot.lease_expires_at IS
    'The slot is free from this moment (database clock) unless the run''s heartbeat renews it.';
COMMENT ON COLUMN cronpolicy.run_slot.db_user IS
    'Database user that took the slot; with roles.sql applied only it may renew or give it back.';

-- Runs whose lease ran out are abandoned.  Rows written by hosts that do
-- not set a lease yet (older cronpolicy during an upgrade) count as leased
-- for 30 seconds from their last heartbeat.  Anyone may call it: it only
-- records what every row's own lease already says.
CREATE FUNCTION cronpolicy.reap_dead_runs() RETURNS SETOF bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    UPDATE cronpolicy.script_run AS r
       SET status = 'abandoned',
           finished_at = greatest(r.started_at, coalesce(r.heartbeat_at, r.started_at)),
           lease_expires_at = NULL,
           stop_reason = 'abandoned: its lease ran out (not heard from since '
                         || to_char(coalesce(r.heartbeat_at, r.started_at) AT TIME ZONE 'UTC',
                                    'YYYY-MM-DD HH24:MI:SS"Z"') || ')'
     WHERE r.status = 'running'
       AND coalesce(r.lease_expires_at,
                    coalesce(r.heartbeat_at, r.started_at) + interval '30 seconds') < now()
    RETURNING r.id
$$;
COMMENT ON FUNCTION cronpolicy.reap_dead_runs() IS
    'Records running runs whose lease ran out as abandoned; returns their ids.';

-- What hosts not yet upgraded call: the same, their staleness argument unused.
CREATE OR REPLACE FUNCTION cronpolicy.reap_dead_runs(dead_after double precision)
    RETURNS SETOF bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT cronpolicy.reap_dead_runs()
$$;
COMMENT ON FUNCTION cronpolicy.reap_dead_runs(double precision) IS
    'Kept for cronpolicy hosts older than schema 8: the same as reap_dead_runs().';

-- Databases whose roles were set up before this patch: the same grants and
-- row-level security roles.sql gives the new objects.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_script') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON cronpolicy.run_slot TO cronpolicy_script;
        -- The lease; and what a spooled record may settle of a start that
        -- reached the database late (the same run, one row).
        GRANT UPDATE (lease_expires_at, skip_reason, decision, policy_ignored)
            ON cronpolicy.script_run TO cronpolicy_script;
        REVOKE ALL ON FUNCTION cronpolicy.reap_dead_runs() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION cronpolicy.reap_dead_runs() TO cronpolicy_script;
        ALTER TABLE cronpolicy.run_slot ENABLE ROW LEVEL SECURITY;
        CREATE POLICY run_slot_read ON cronpolicy.run_slot FOR SELECT
            TO cronpolicy_script USING (true);
        CREATE POLICY run_slot_take ON cronpolicy.run_slot FOR INSERT
            TO cronpolicy_script WITH CHECK (db_user = session_user);
        CREATE POLICY run_slot_renew ON cronpolicy.run_slot FOR UPDATE
            TO cronpolicy_script USING (db_user = session_user)
            WITH CHECK (db_user = session_user);
        CREATE POLICY run_slot_free ON cronpolicy.run_slot FOR DELETE
            TO cronpolicy_script USING (db_user = session_user OR lease_expires_at < now());
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin') THEN
        GRANT ALL ON cronpolicy.run_slot TO cronpolicy_admin;
        GRANT EXECUTE ON FUNCTION cronpolicy.reap_dead_runs() TO cronpolicy_admin;
        CREATE POLICY run_slot_admin ON cronpolicy.run_slot FOR ALL
            TO cronpolicy_admin USING (true) WITH CHECK (true);
    END IF;
END
$$;
