-- cronpolicy schema patch 0025: a reap and a relay's renewal lock what they
-- share in one order.
--
-- A relay's renewal (renew_relayed, patch 0024) locks the runs it renews in
-- the order of their ids.  The reaper (reap_dead_runs, patch 0008) updated
-- every dead run in the order its scan met them: the order of the rows in
-- the table or an index, not of their ids (a row rewritten moves to the
-- table's end).  A reap holding a later run and waiting for an earlier one
-- the renewal held, while the renewal waited for the later one: PostgreSQL
-- killed one of the two (40P01, deadlock detected).  The reap now locks
-- its dead runs first, in the order of their ids (FOR NO KEY UPDATE, the
-- lock its update takes), and judges each as it is once it holds it
-- (READ COMMITTED: a locked row is read as it is then): a run renewed, or
-- ended, while the reap waited for it is left as it is.  Only then does
-- it update them.
--
-- The same cross, one table on: the triggers of patch 0022 add each run a
-- reap records abandoned to its script's count of abandoned runs (a row of
-- run_tally), and take each run a renewal revives (its host came back)
-- from it, each statement in the order it updated its runs.  A reap of
-- runs of scripts p, q and r and a renewal reviving runs of r and p could
-- each hold one count and wait for the other's (test_races holds both
-- crosses open).  Both now lock the counts they will write, once they
-- hold their runs, in the order of the counts' keys (a reap inserts a
-- count its script does not have yet, in that order too: it is counted
-- into before the reap commits; a renewal locks only counts that exist).
-- The triggers then find them held.  The other writers of counts (a
-- run's end, a heartbeat reviving its run, a spooled record) write one
-- run, and its counts after it: at most the count it leaves, then the one
-- it joins.  None waits for a count of abandoned runs while it holds
-- another (a run that leaves one joins one of another status, which
-- neither a reap nor a renewal takes), so none closes a circle with them.
-- (A DBA's UPDATE of many runs still meets their counts in its own order:
-- docs/dbas.txt.)
--
-- What it costs (benchmarks/README.txt): a reap that finds nothing dead
-- costs a new connection about 0.7 ms more (1.6 -> 2.3 ms: the plan of a
-- larger statement, made at every call of a SQL function); a reap of
-- dead runs and a renewal cost the same, within the noise of 10%.  A
-- renewal looks for the counts of the runs it revives one by one: none at
-- all when it revives none, as nearly always.
--
-- Applying it again changes nothing (OR REPLACE keeps the owner and grants).

CREATE OR REPLACE FUNCTION cronpolicy.reap_dead_runs() RETURNS SETOF bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
WITH dead AS MATERIALIZED (
    -- Running runs whose lease ran out, locked in the order of their ids
    -- (as renew_relayed locks the runs it renews) and each judged as it
    -- is once it is held: a run renewed or ended meanwhile is not dead.
    -- Rows written by hosts that do not set a lease (older than schema 8)
    -- count as leased for 30 seconds from their last heartbeat.
    SELECT r.id, r.name, r.host, coalesce(r.decision, '') AS decision,
           r.block IS NOT NULL AS blocked
      FROM cronpolicy.script_run AS r
     WHERE r.status = 'running'
       AND coalesce(r.lease_expires_at,
                    coalesce(r.heartbeat_at, r.started_at) + interval '30 seconds') < now()
     ORDER BY r.id
       FOR NO KEY UPDATE OF r),
counts AS (
    -- Their scripts' counts of abandoned runs (run_tally), which the
    -- triggers add them to at the end of this statement, locked first in
    -- the order of their keys; a count not there yet is inserted (runs 0,
    -- which the trigger makes 1 before this commits).  A WHERE that is
    -- never true updates nothing but locks the row (ON CONFLICT DO UPDATE).
    -- Data-modifying: run whatever reads it, after dead (read whole).
    INSERT INTO cronpolicy.run_tally AS t (name, host, status, decision, blocked)
    SELECT DISTINCT d.name, d.host, 'abandoned', d.decision, d.blocked
      FROM dead AS d
     ORDER BY d.name, d.host, d.decision, d.blocked
    ON CONFLICT (name, host, status, decision, blocked) DO UPDATE SET runs = t.runs
     WHERE false)
UPDATE cronpolicy.script_run AS r
   SET status = 'abandoned',
       finished_at = greatest(r.started_at, coalesce(r.heartbeat_at, r.started_at)),
       lease_expires_at = NULL,
       stop_reason = 'abandoned: its lease ran out (not heard from since '
                     || to_char(coalesce(r.heartbeat_at, r.started_at) AT TIME ZONE 'UTC',
                                'YYYY-MM-DD HH24:MI:SS"Z"') || ')'
 -- (dead by its ids, through the primary key: a join to dead hashed
 -- every running run, dead or alive)
 WHERE r.id = ANY (ARRAY(SELECT d.id FROM dead AS d)) AND r.status = 'running'
RETURNING r.id
$$;
COMMENT ON FUNCTION cronpolicy.reap_dead_runs() IS
    'Records running runs whose lease ran out as abandoned; returns their ids.  Locks them in the '
    'order of their ids, and their counts in run_tally in the order of their keys (patch 0025).';

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
held AS MATERIALIZED (
    -- old: each run asked about (by id and key) as it is once this holds its
    -- row, for whether its lease stood.  Read FOR UPDATE, so that a run
    -- recorded abandoned (or ended) while this waited for its row is judged
    -- as it is then: this statement's snapshot still had its lease standing.
    -- In the order of their ids, as reap_dead_runs locks them (patch 0025).
    SELECT w.id, w.run_key, w.safe, w.ttl, w.age, k.status, k.lease_expires_at,
           k.heartbeat_at, k.started_at, k.name, k.host,
           coalesce(k.decision, '') AS decision, k.block IS NOT NULL AS blocked
      FROM wanted AS w JOIN cronpolicy.script_run AS k ON k.id = w.id AND k.spool_id = w.run_key
     ORDER BY k.id
       FOR UPDATE OF k),
counts AS (
    -- The counts of abandoned runs (run_tally) that the runs this revives
    -- leave (the triggers take them from their counts at the end of this
    -- statement), locked first in the order of their keys, as
    -- reap_dead_runs locks the counts it adds to (patch 0025).  Only
    -- counts that exist: a WHERE never true updates nothing but locks
    -- the row (ON CONFLICT DO UPDATE).  Data-modifying: run whatever
    -- reads it, after held (read whole).
    -- (A subquery for each run revived, not a join: the plan this
    -- function keeps does not know how few they are, and a join read the
    -- whole of run_tally at every renewal.)
    INSERT INTO cronpolicy.run_tally AS t (name, host, status, decision, blocked)
    SELECT DISTINCT old.name, old.host, old.status, old.decision, old.blocked
      FROM held AS old
     WHERE old.status = 'abandoned' AND old.age < old.ttl           -- (run revives it)
       AND (SELECT true FROM cronpolicy.run_tally AS c
             WHERE c.name = old.name AND c.host = old.host AND c.status = old.status
               AND c.decision = old.decision AND c.blocked = old.blocked)
     ORDER BY old.name, old.host, old.status, old.decision, old.blocked
    ON CONFLICT (name, host, status, decision, blocked) DO UPDATE SET runs = t.runs
     WHERE false),
run AS (
    -- A word a whole lease old renews nothing: its run may be dead (and
    -- recorded abandoned), and stays so.  A late word shortens no lease,
    -- nor undoes a newer word's safe_to_interrupt: a relay that stalled
    -- renews, as of their last word to it, scripts that left it and have
    -- renewed their own leases since.
    -- r in SET and WHERE: a run whose end was written while this waited
    -- for its row is left ended (old, read FOR UPDATE, is that row too).
    UPDATE cronpolicy.script_run AS r
       SET heartbeat_at = greatest(r.heartbeat_at, now() - old.age * interval '1 second'),
           safe_to_interrupt = CASE WHEN r.heartbeat_at > now() - old.age * interval '1 second'
                                    THEN r.safe_to_interrupt ELSE old.safe END,
           lease_expires_at = greatest(r.lease_expires_at,
                                       now() + (old.ttl - old.age) * interval '1 second'),
           status = 'running', finished_at = NULL, stop_reason = NULL
      FROM held AS old
     WHERE r.id = old.id AND r.spool_id = old.run_key
       AND r.status IN ('running', 'abandoned') AND old.age < old.ttl
    RETURNING r.id, old.run_key,
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
    'known and whether its lease stood, one row for each run asked about, in the order asked.  '
    'Judges each run as it is once it holds it (patch 0024), and locks the runs in the order of '
    'their ids and the counts in run_tally of the runs it revives in the order of their keys, '
    'as reap_dead_runs does (patch 0025).';
