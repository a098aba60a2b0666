-- cronpolicy schema patch 0024: a relay's renewal judges a lease by the run
-- as it is once it holds the row.
--
-- renew_relayed (patch 0020) revives a relayed run recorded abandoned (its
-- script is alive: it spoke to the relay) and says whether its lease had
-- stood, so that a script whose lease was lost stops at its next safe
-- point.  It read whether the lease stood from this statement's snapshot.
-- When a reaper (or a DBA) recorded the run abandoned while the renewal
-- waited for the row, the snapshot still showed the lease standing: the
-- run was revived and its script told "renewed", so the abandonment, which
-- `deploy wait` may already have counted, was undone in silence and the
-- script went on.  The rows asked about are now read FOR UPDATE first
-- (READ COMMITTED: a locked row is read as it is once the lock is held),
-- in the order of their ids.  test_relay holds the race open with a
-- transaction that has not committed the abandonment; the script's own
-- heartbeat (store/postgresql.sql) had the same flaw and the same mend.
-- What it costs: a row lock for each run renewed, which its update then
-- takes over: renewing 1,000 runs 41.6 -> 43.2 ms, 5,000 runs 236 -> 246 ms
-- (the medians of 21 calls each, interleaved with patch 0020's function).
-- The locked rows are the wanted ones joined by id and key, so that the
-- plan the function keeps stays one pass whatever the number of runs.
--
-- Applying it again changes nothing (OR REPLACE keeps the owner and grants).

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
    SELECT w.id, w.run_key, w.safe, w.ttl, w.age, k.status, k.lease_expires_at,
           k.heartbeat_at, k.started_at
      FROM wanted AS w JOIN cronpolicy.script_run AS k ON k.id = w.id AND k.spool_id = w.run_key
     ORDER BY k.id
       FOR UPDATE OF k),
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
