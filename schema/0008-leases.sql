-- cronpolicy schema patch 0008: liveness by lease, fleet-wide slots by lease.
--
-- A running run is alive until it records its end or its lease runs out;
-- its heartbeat renews the lease.  A lost database session no longer ends
-- a run (the advisory locks of earlier versions did), and no session state
-- is needed, so connection poolers in transaction mode work.  Fleet-wide
-- limits are leases too, rows of run_slot, which only roles with grants can
-- write: no login without privileges can block or steer a start, and there
-- are no hash collisions between script names.
--
-- The run's key (formerly spool_id) is chosen by the host before it writes
-- anything, so a start written late and its spooled record converge on one
-- row.

ALTER TABLE cronpolicy.script_run ADD COLUMN lease_expires_at timestamptz;
COMMENT ON COLUMN cronpolicy.script_run.lease_expires_at IS
    'A running run is alive until this moment (database clock), unless its heartbeat renews it '
    '(lease_ttl, default 30s).  NULL once the run has ended.';

ALTER TABLE cronpolicy.script_run RENAME COLUMN spool_id TO run_key;
ALTER INDEX cronpolicy.script_run_spool_id_key RENAME TO script_run_run_key_key;
COMMENT ON COLUMN cronpolicy.script_run.run_key IS
    'A unique key the host chose for the run before writing it, so that a start written late '
    'and the same run''s spooled record make one row.';

CREATE TABLE cronpolicy.run_slot (
    name              text NOT NULL,
    slot              integer NOT NULL,
    run_key           text NOT NULL,
    host              text NOT NULL,
    lease_expires_at  timestamptz NOT NULL,
    CONSTRAINT run_slot_pkey PRIMARY KEY (name, slot),
    CONSTRAINT run_slot_slot_not_negative CHECK (slot >= 0)
);
COMMENT ON TABLE cronpolicy.run_slot IS
    'Fleet-wide slots: a script limited to N simultaneous runs (max_concurrent, '
    'fleet_single_instance) has slots 0..N-1; a run holds one while its lease stands.';
COMMENT ON COLUMN cronpolicy.run_slot.name IS 'Script name.';
COMMENT ON COLUMN cronpolicy.run_slot.slot IS 'Slot number, from 0.';
COMMENT ON COLUMN cronpolicy.run_slot.run_key IS 'The run holding the slot (script_run.run_key).';
COMMENT ON COLUMN cronpolicy.run_slot.host IS 'The host of that run.';
COMMENT ON COLUMN cronpolicy.run_slot.lease_expires_at IS
    'The slot is free from this moment (database clock) unless the run''s heartbeat renews it.';

-- Runs whose lease ran out are abandoned.  Rows written by hosts that do
-- not set a lease yet (older cronpolicy during an upgrade) count as leased
-- for 30 seconds from their last heartbeat.  Anyone may call it: it only
-- records what every row's own lease already says.
DROP FUNCTION cronpolicy.reap_dead_runs(double precision);
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

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_script') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON cronpolicy.run_slot TO cronpolicy_script;
        GRANT UPDATE (lease_expires_at) ON cronpolicy.script_run TO cronpolicy_script;
        REVOKE ALL ON FUNCTION cronpolicy.reap_dead_runs() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION cronpolicy.reap_dead_runs() TO cronpolicy_script;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin') THEN
        GRANT ALL ON cronpolicy.run_slot TO cronpolicy_admin;
        GRANT EXECUTE ON FUNCTION cronpolicy.reap_dead_runs() TO cronpolicy_admin;
    END IF;
END
$$;
