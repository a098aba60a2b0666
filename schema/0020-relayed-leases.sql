-- cronpolicy schema patch 0020: a relay renews the leases of many runs in one statement.
--
-- Every running script renewed its own run's lease (every
-- heartbeat_interval) and heard of stop requests itself: through a pooler
-- in transaction mode, one statement per poll_interval per running script.
-- A fleet of 50,000 running scripts was 50,000 to 60,000 transactions a
-- second.  `cronpolicy relay` (cronpolicy.tooling.relay) serves many
-- running scripts over TCP instead: it holds one connection, LISTENs for
-- policy changes and tells each script its stop verdict, and renews all
-- their leases in one call of the function below per poll.
--
-- A relay's login is a member of cronpolicy_relay (roles.sql): it reads
-- what scripts read and may call this function, nothing else.  Runs are
-- renewed only by id AND key (script_run.spool_id): a relay pointed at
-- another database renews nothing, and the script watches for itself.
-- Each run is renewed as of when its script last spoke (ages, in seconds):
-- a run whose host died is given up on one lease after its last word, as
-- when it renews its own lease.
--
-- 5,000 runs in one call take about half a second of the server's time
-- (1,000, 70 ms: most of it the guard triggers of patch 0015 and the
-- row versions), so the relay renews only the runs that spoke since its
-- last call: a fifth of them a second with the default heartbeat_interval.
--
-- Applying it again changes nothing (OR REPLACE).

CREATE OR REPLACE FUNCTION cronpolicy.renew_relayed(
        ids bigint[], keys text[], safe boolean[], ages float8[],
        slot_names text[], slots integer[], ttls float8[])
    RETURNS TABLE (id bigint, known boolean, renewed boolean)
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
WITH wanted AS MATERIALIZED (
    -- n: the rows come back in the order asked, one for each (the relay
    -- answers each connection for itself: two may name one id).  A ttl
    -- that is no number (NaN) is the default's, not the longest.
    SELECT u.n, u.id, u.run_key, coalesce(u.safe, false) AS safe, u.slot_name, u.slot, t.ttl,
           least(greatest(coalesce(u.age, 0), 0), t.ttl) AS age         -- NaN: a lease ago
      FROM unnest(ids, keys, safe, ages, slot_names, slots, ttls) WITH ORDINALITY
           AS u(id, run_key, safe, age, slot_name, slot, ttl, n),
           LATERAL (SELECT least(greatest(coalesce(nullif(u.ttl, 'NaN'), 30), 1), 3600)
                        AS ttl) AS t),                                  -- an hour at most
run AS (
    -- old: the row as it was (this statement's snapshot), for whether its lease stood.
    -- A word a whole lease old renews nothing: its run may be dead (and
    -- recorded abandoned), and stays so.  A late word shortens no lease,
    -- nor undoes a newer word's safe_to_interrupt: a relay that stalled
    -- renews, as of their last word to it, scripts that left it and have
    -- renewed their own leases since.
    -- r, not old, in SET and WHERE: a run whose end is written while this
    -- waits for its row is checked again as it is then (ended: left alone),
    -- where old would still say running and undo the end.
    UPDATE cronpolicy.script_run AS r
       SET heartbeat_at = greatest(r.heartbeat_at, now() - w.age * interval '1 second'),
           safe_to_interrupt = CASE WHEN r.heartbeat_at > now() - w.age * interval '1 second'
                                    THEN r.safe_to_interrupt ELSE w.safe END,
           lease_expires_at = greatest(r.lease_expires_at,
                                       now() + (w.ttl - w.age) * interval '1 second'),
           status = 'running', finished_at = NULL, stop_reason = NULL
      FROM wanted AS w, cronpolicy.script_run AS old
     WHERE r.id = w.id AND r.spool_id = w.run_key AND old.id = r.id
       AND r.status IN ('running', 'abandoned') AND w.age < w.ttl
    RETURNING r.id, old.spool_id AS run_key,
              old.status = 'running'
              AND coalesce(old.lease_expires_at,
                           coalesce(old.heartbeat_at, old.started_at) + interval '30 seconds')
                  >= now() AS standing),
slot AS (
    -- Only the slot of a run renewed here: not a finished run's.
    UPDATE cronpolicy.run_slot AS s
       SET lease_expires_at = greatest(s.lease_expires_at,
                                       now() + (w.ttl - w.age) * interval '1 second')
      FROM wanted AS w, run
     WHERE w.slot IS NOT NULL AND s.name = w.slot_name AND s.slot = w.slot
       AND s.run_key = w.run_key AND run.id = w.id AND run.run_key = w.run_key
    RETURNING s.run_key)
SELECT w.id,
       run.id IS NOT NULL OR EXISTS (SELECT 1 FROM cronpolicy.script_run AS k
                                      WHERE k.id = w.id AND k.spool_id = w.run_key),
       coalesce(run.standing, false)
       AND (w.slot IS NULL OR EXISTS (SELECT 1 FROM slot WHERE slot.run_key = w.run_key))
  FROM wanted AS w LEFT JOIN run ON run.id = w.id AND run.run_key = w.run_key
 ORDER BY w.n
$$;
COMMENT ON FUNCTION cronpolicy.renew_relayed(bigint[], text[], boolean[], float8[], text[],
                                             integer[], float8[]) IS
    'A relay''s heartbeat for the runs it serves (patch 0020): renews each run (by id and key) '
    'and its fleet-wide slot as of age seconds ago, for its ttl seconds; says whether the run was '
    'known and whether its lease stood, one row for each run asked about, in the order asked.';
REVOKE ALL ON FUNCTION cronpolicy.renew_relayed(bigint[], text[], boolean[], float8[], text[],
                                                integer[], float8[]) FROM PUBLIC;

-- A cluster whose roles.sql already made cronpolicy_relay (for another database).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_relay') THEN
        GRANT EXECUTE ON FUNCTION cronpolicy.renew_relayed(bigint[], text[], boolean[], float8[],
                                                           text[], integer[], float8[])
            TO cronpolicy_relay;
    END IF;
END
$$;
