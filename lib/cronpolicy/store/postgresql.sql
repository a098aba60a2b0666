-- Every statement the gate sends to PostgreSQL, in one place (the read
-- commands' are in postgresql-reads.sql).
--
-- Each statement is introduced by a "-- name: NAME" line and read by
-- cronpolicy/store/__init__.py (queries); parameters are psycopg2's %(name)s.  The
-- statements run in autocommit mode, each its own transaction.
--
-- A running run is alive while its lease stands (script_run.lease_expires_at,
-- renewed by every heartbeat for %(ttl)s seconds); a fleet-wide slot is a
-- row of run_slot with a lease of its own.  No statement relies on session
-- state but LISTEN, so every one of them works through a connection pooler.


-- name: load_inputs
-- Everything one decision needs, in one round trip, on the server's clock.
-- Rows travel as JSON objects keyed by column name (cronpolicy/rows.py
-- turns them into objects); timestamps and intervals as epoch seconds.
SELECT extract(epoch FROM now()) AS now,
       (SELECT max(version) FROM cronpolicy.schema_version) AS schema_version,
       -- (the gate reads it again once its start is written: gate._moved)
       (SELECT version FROM cronpolicy.policy_version WHERE id = 1) AS policy_version,
       cronpolicy.connections_scarce() AS scarce,
       (SELECT to_jsonb(d) || jsonb_build_object(
                   'changed_at', extract(epoch FROM d.changed_at))
          FROM cronpolicy.deploy_state AS d WHERE d.id = 1) AS deploy,
       (SELECT coalesce(jsonb_agg(to_jsonb(p) || jsonb_build_object(
                   'expected_runtime', extract(epoch FROM p.expected_runtime),
                   'expected_interval', extract(epoch FROM p.expected_interval),
                   'changed_at', extract(epoch FROM p.changed_at))), '[]')
          FROM cronpolicy.script_policy AS p) AS policies,
       (SELECT coalesce(jsonb_agg(to_jsonb(w) || jsonb_build_object(
                   'starts_at', extract(epoch FROM w.starts_at),
                   'ends_at', extract(epoch FROM w.ends_at),
                   'created_at', extract(epoch FROM w.created_at),
                   'cancelled_at', extract(epoch FROM w.cancelled_at))), '[]')
          FROM cronpolicy.rollout_window AS w
         WHERE w.cancelled_at IS NULL AND w.ends_at > now()) AS windows,
       (SELECT coalesce(jsonb_agg(to_jsonb(s) || jsonb_build_object(
                   'changed_at', extract(epoch FROM s.changed_at))), '[]')
          FROM cronpolicy.service_deploy AS s) AS services,
       (SELECT coalesce(jsonb_agg(to_jsonb(r) || jsonb_build_object(
                   'began_at', extract(epoch FROM r.began_at),
                   'expected_duration', extract(epoch FROM r.expected_duration),
                   'lease_expires_at', extract(epoch FROM r.lease_expires_at),
                   'quiet_at', extract(epoch FROM r.quiet_at)) ORDER BY r.began_at, r.id), '[]')
          FROM cronpolicy.rollout AS r WHERE r.ended_at IS NULL) AS rollouts,
       (SELECT coalesce(json_agg(recent.seconds), '[]') FROM (
            SELECT extract(epoch FROM finished_at - started_at) AS seconds
              FROM cronpolicy.script_run
             WHERE name = %(name)s AND status = 'succeeded'
               AND NOT spooled      -- timed by the database clock only: hosts' clocks lie
             ORDER BY finished_at DESC LIMIT %(runs)s) AS recent) AS recent_runtimes


-- name: policy_version
-- What a poller reads instead of the whole policy (schema patch 0019): the
-- number moves with every change it would hear of if it could LISTEN.
SELECT version FROM cronpolicy.policy_version WHERE id = 1


-- name: record_start
-- The run is alive from here for one lease.  Its key was chosen by the host:
-- written again (a retry, a spooled copy), it is still one row.  started_at
-- is given only when the start is written late: then it is the host's
-- clock (no later than now), and the row is marked spooled.
INSERT INTO cronpolicy.script_run (
    started_at, spooled, name, host, pid, estimate_seconds, estimate_source, skip_reason,
    policy_ignored, decision, policy_id, window_id, expected_interval, spool_id,
    schedule, schedule_tz, block, needs, release, heartbeat_at, lease_expires_at)
VALUES (least(coalesce(%(started_at)s::timestamptz, now()), now()),
        %(started_at)s::timestamptz IS NOT NULL,
        %(name)s, %(host)s, %(pid)s, %(estimate_seconds)s, %(estimate_source)s,
        %(skip_reason)s, %(policy_ignored)s, %(decision)s, %(policy_id)s, %(window_id)s,
        %(expected_interval)s, %(spool_id)s, %(schedule)s, %(schedule_tz)s, %(block)s,
        %(needs)s, %(release)s, now(), now() + %(ttl)s * interval '1 second')
ON CONFLICT (spool_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at
RETURNING id


-- name: record_skip
INSERT INTO cronpolicy.script_run (
    name, host, pid, estimate_seconds, estimate_source, skip_reason, policy_ignored,
    decision, policy_id, window_id, expected_interval, spool_id, schedule, schedule_tz, block,
    needs, release, status, finished_at)
VALUES (%(name)s, %(host)s, %(pid)s, %(estimate_seconds)s, %(estimate_source)s,
        %(skip_reason)s, %(policy_ignored)s, %(decision)s, %(policy_id)s, %(window_id)s,
        %(expected_interval)s, %(spool_id)s, %(schedule)s, %(schedule_tz)s, %(block)s,
        %(needs)s, %(release)s, 'skipped', now())
ON CONFLICT (spool_id) DO UPDATE SET finished_at = cronpolicy.script_run.finished_at
RETURNING id


-- name: record_finish
UPDATE cronpolicy.script_run
   SET status = %(status)s, exit_code = %(exit_code)s, stop_reason = %(stop_reason)s,
       stop_decision = %(stop_decision)s, stop_policy_id = %(stop_policy_id)s,
       stop_window_id = %(stop_window_id)s, stop_block = %(stop_block)s,
       finished_at = greatest(now(), started_at),
       lease_expires_at = NULL
 WHERE id = %(id)s


-- name: heartbeat
-- Renews the run's lease, and its fleet-wide slot's when it holds one
-- (slot NULL otherwise).  A run recorded as abandoned while its host could
-- not reach the database is shown as running again (it is), but the host
-- learns whether its lease still stood (standing) and whether it kept its
-- slot (slots): if not, it stops at its next safe point.  scarce: most
-- connections are in use (schema patch 0019; store.postgresql: the script
-- then holds none between uses).  before reads the run FOR UPDATE: as it is
-- once the row is held, not as the statement's snapshot had it, so that a
-- run recorded abandoned while this waited for its row learns that its
-- lease was lost (the snapshot still showed it standing).
WITH before AS MATERIALIZED (
    SELECT status = 'running'
           AND coalesce(lease_expires_at,
                        coalesce(heartbeat_at, started_at) + interval '30 seconds') >= now()
           AS standing
      FROM cronpolicy.script_run WHERE id = %(id)s FOR UPDATE),
run AS (
    -- FROM before: the row is read (and held) before it is updated; read
    -- after, the update of this very statement would hide it.
    UPDATE cronpolicy.script_run
       SET heartbeat_at = now(), safe_to_interrupt = %(safe)s,
           lease_expires_at = now() + %(ttl)s * interval '1 second',
           status = 'running', finished_at = NULL, stop_reason = NULL
      FROM before
     WHERE id = %(id)s AND status IN ('running', 'abandoned')
    RETURNING before.standing),
slot AS (
    UPDATE cronpolicy.run_slot
       SET lease_expires_at = now() + %(ttl)s * interval '1 second'
     WHERE name = %(name)s AND slot = %(slot)s AND run_key = %(run_key)s
    RETURNING slot)
SELECT (SELECT count(*) FROM run) AS runs, (SELECT bool_and(standing) FROM run) AS standing,
       (SELECT count(*) FROM slot) AS slots, cronpolicy.connections_scarce() AS scarce


-- name: renew_relayed
-- A relay's heartbeat for every run it serves (cronpolicy.tooling.relay),
-- one statement however many (schema patch 0020), with the policy's
-- version read along: one transaction per relay per poll.
SELECT r.id, r.known, r.renewed,
       (SELECT version FROM cronpolicy.policy_version WHERE id = 1) AS version
  FROM cronpolicy.renew_relayed(%(ids)s::bigint[], %(keys)s::text[], %(safe)s::boolean[],
                                %(ages)s::float8[], %(slot_names)s::text[],
                                %(slots)s::integer[], %(ttls)s::float8[]) AS r


-- name: take_slot
-- Slot slot of script name: freed first if its lease ran out, then taken if
-- it is free.  Two statements, each atomic: of hosts racing for the slot,
-- exactly one gets a row back.
DELETE FROM cronpolicy.run_slot
 WHERE name = %(name)s AND slot = %(slot)s AND lease_expires_at < now();
INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)
VALUES (%(name)s, %(slot)s, %(run_key)s, %(host)s, now() + %(ttl)s * interval '1 second')
ON CONFLICT (name, slot) DO NOTHING
RETURNING slot


-- name: give_back_slot
DELETE FROM cronpolicy.run_slot
 WHERE name = %(name)s AND slot = %(slot)s AND run_key = %(run_key)s


-- name: listen
LISTEN cronpolicy_policy


-- name: listen_first
-- Sent ahead of a statement (store.postgresql): the LISTEN commits before
-- that statement takes its snapshot, in the same round trip.
BEGIN; LISTEN cronpolicy_policy; COMMIT;


-- name: apply_spooled_run
-- A whole run whose record could not be written at the time.  Its key
-- makes it one row: if its start did reach the database after all (late),
-- the spooled end completes that row.  Its times are the host's clock,
-- clamped to [started_at, now()], and the row is marked spooled.
INSERT INTO cronpolicy.script_run (
    name, host, pid, started_at, finished_at, status, exit_code, skip_reason,
    estimate_seconds, estimate_source, policy_ignored, decision, policy_id, window_id,
    expected_interval, stop_reason, stop_decision, stop_policy_id, stop_window_id, stop_block,
    spool_id, schedule, schedule_tz, block, needs, release, spooled)
VALUES (%(name)s, %(host)s, %(pid)s, least(%(started_at)s::timestamptz, now()),
        least(greatest(%(started_at)s::timestamptz, %(finished_at)s::timestamptz), now()),
        %(status)s, %(exit_code)s, %(skip_reason)s, %(estimate_seconds)s,
        %(estimate_source)s, %(policy_ignored)s, %(decision)s, %(policy_id)s,
        %(window_id)s, %(expected_interval)s, %(stop_reason)s, %(stop_decision)s,
        %(stop_policy_id)s, %(stop_window_id)s, %(stop_block)s, %(spool_id)s, %(schedule)s,
        %(schedule_tz)s,
        %(block)s, %(needs)s, %(release)s, true)
ON CONFLICT (spool_id) DO UPDATE
   SET status = EXCLUDED.status, exit_code = EXCLUDED.exit_code, spooled = true,
       skip_reason = EXCLUDED.skip_reason, decision = EXCLUDED.decision,
       policy_ignored = EXCLUDED.policy_ignored, block = EXCLUDED.block,
       stop_reason = EXCLUDED.stop_reason, stop_decision = EXCLUDED.stop_decision,
       stop_policy_id = EXCLUDED.stop_policy_id, stop_window_id = EXCLUDED.stop_window_id,
       stop_block = EXCLUDED.stop_block,
       finished_at = least(greatest(cronpolicy.script_run.started_at, EXCLUDED.finished_at),
                           now()),
       lease_expires_at = NULL
 WHERE cronpolicy.script_run.status IN ('running', 'abandoned')


-- name: apply_spooled_finish
-- The end of a recorded run; it completes only a run still open.
UPDATE cronpolicy.script_run
   SET status = %(status)s, exit_code = %(exit_code)s, stop_reason = %(stop_reason)s,
       stop_decision = %(stop_decision)s, stop_policy_id = %(stop_policy_id)s,
       stop_window_id = %(stop_window_id)s, stop_block = %(stop_block)s,
       lease_expires_at = NULL, spooled = true,
       finished_at = least(greatest(started_at, %(finished_at)s::timestamptz), now())
 WHERE id = %(id)s AND status IN ('running', 'abandoned')
