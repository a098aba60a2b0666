-- Every statement the gate sends to PostgreSQL, in one place.
--
-- Each statement is introduced by a "-- name: NAME" line and read by
-- cronpolicy/store/queries.py; parameters are psycopg2's %(name)s.  The
-- statements run in autocommit mode, each its own transaction.
--
-- Advisory lock keys (two int4 form; reap_dead_runs in schema patch 0004
-- knows the first one):
--   1129467726 ('CRON'), mod(run id, 2147483647): held by a running script's
--       session for the run's lifetime, so its death is seen at once;
--   1129467718 ('CROF'), hashtext(slot key): one of a script's fleet-wide
--       slots (max_concurrent); the key of slot 0 is the script's name, of
--       slot k > 0 the name, '#' and k.


-- name: load_inputs
-- Everything one decision needs, in one round trip, on the server's clock.
-- Rows travel as JSON objects keyed by column name (cronpolicy/rows.py
-- turns them into objects); timestamps and intervals as epoch seconds.
SELECT extract(epoch FROM now()) AS now,
       (SELECT max(version) FROM cronpolicy.schema_version) AS schema_version,
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
       (SELECT coalesce(json_agg(recent.seconds), '[]') FROM (
            SELECT extract(epoch FROM finished_at - started_at) AS seconds
              FROM cronpolicy.script_run
             WHERE name = %(name)s AND status = 'succeeded'
             ORDER BY finished_at DESC LIMIT %(runs)s) AS recent) AS recent_runtimes


-- name: record_start
-- One statement: the row becomes visible only once this session holds the
-- run's liveness lock, so no reader ever sees a live run unlocked.
WITH run AS (
    INSERT INTO cronpolicy.script_run (
        name, host, pid, estimate_seconds, estimate_source, skip_reason, policy_ignored,
        decision, policy_id, window_id, expected_interval, heartbeat_at)
    VALUES (%(name)s, %(host)s, %(pid)s, %(estimate_seconds)s, %(estimate_source)s,
            %(skip_reason)s, %(policy_ignored)s, %(decision)s, %(policy_id)s, %(window_id)s,
            %(expected_interval)s, now())
    RETURNING id)
SELECT id, pg_advisory_lock(1129467726, mod(id, 2147483647)::integer) AS locked FROM run


-- name: record_skip
INSERT INTO cronpolicy.script_run (
    name, host, pid, estimate_seconds, estimate_source, skip_reason, policy_ignored,
    decision, policy_id, window_id, expected_interval, status, finished_at)
VALUES (%(name)s, %(host)s, %(pid)s, %(estimate_seconds)s, %(estimate_source)s,
        %(skip_reason)s, %(policy_ignored)s, %(decision)s, %(policy_id)s, %(window_id)s,
        %(expected_interval)s, 'skipped', now())
RETURNING id


-- name: record_finish
UPDATE cronpolicy.script_run
   SET status = %(status)s, exit_code = %(exit_code)s, stop_reason = %(stop_reason)s,
       stop_decision = %(stop_decision)s, stop_policy_id = %(stop_policy_id)s,
       stop_window_id = %(stop_window_id)s, finished_at = greatest(now(), started_at)
 WHERE id = %(id)s


-- name: heartbeat
-- A run recorded as abandoned while its host could not reach the database
-- comes back to life with its first heartbeat.
UPDATE cronpolicy.script_run
   SET heartbeat_at = now(), safe_to_interrupt = %(safe)s,
       status = 'running', finished_at = NULL, stop_reason = NULL
 WHERE id = %(id)s AND status IN ('running', 'abandoned')


-- name: take_run_lock
-- On a reconnect: take back the liveness lock of the run this session holds.
SELECT pg_try_advisory_lock(1129467726, mod(%(id)s, 2147483647)::integer) AS taken


-- name: take_slot
SELECT pg_try_advisory_lock(1129467718, hashtext(%(key)s)) AS taken


-- name: unlock_all
-- At the end of a run, before the session closes: its locks free at once.
SELECT pg_advisory_unlock_all()


-- name: listen
LISTEN cronpolicy_policy


-- name: apply_spooled_run
-- A whole run that never reached the database; spool_id makes it once only.
INSERT INTO cronpolicy.script_run (
    name, host, pid, started_at, finished_at, status, exit_code, skip_reason,
    estimate_seconds, estimate_source, policy_ignored, decision, policy_id, window_id,
    expected_interval, stop_reason, stop_decision, stop_policy_id, stop_window_id, spool_id)
VALUES (%(name)s, %(host)s, %(pid)s, %(started_at)s,
        greatest(%(started_at)s::timestamptz, %(finished_at)s::timestamptz),
        %(status)s, %(exit_code)s, %(skip_reason)s, %(estimate_seconds)s,
        %(estimate_source)s, %(policy_ignored)s, %(decision)s, %(policy_id)s,
        %(window_id)s, %(expected_interval)s, %(stop_reason)s, %(stop_decision)s,
        %(stop_policy_id)s, %(stop_window_id)s, %(spool_id)s)
ON CONFLICT (spool_id) DO NOTHING


-- name: apply_spooled_finish
-- The end of a recorded run; it completes only a run still open.
UPDATE cronpolicy.script_run
   SET status = %(status)s, exit_code = %(exit_code)s, stop_reason = %(stop_reason)s,
       stop_decision = %(stop_decision)s, stop_policy_id = %(stop_policy_id)s,
       stop_window_id = %(stop_window_id)s,
       finished_at = greatest(started_at, %(finished_at)s::timestamptz)
 WHERE id = %(id)s AND status IN ('running', 'abandoned')

