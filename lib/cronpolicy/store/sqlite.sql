-- Every statement the gate sends to the embedded SQLite database, in one place
-- (the read commands' own are in sqlite-reads.sql).
--
-- Each statement is introduced by a "-- name: NAME" line and read by
-- cronpolicy/store/__init__.py (queries); parameters are sqlite3's :name.  The file is
-- attached as "cronpolicy", so table names match PostgreSQL's.  Timestamps
-- are UTC text, 'YYYY-MM-DD HH:MM:SS.SSS'; intervals are seconds.


-- name: policy_version
-- What a poller reads instead of the whole policy (schema patch 0019).
SELECT version FROM cronpolicy.policy_version WHERE id = 1


-- name: now
SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')


-- name: schema_version
SELECT max(version) FROM cronpolicy.schema_version


-- name: deploy_state
SELECT * FROM cronpolicy.deploy_state WHERE id = 1


-- name: policies
SELECT * FROM cronpolicy.script_policy


-- name: services
SELECT * FROM cronpolicy.service_deploy


-- name: open_rollouts
-- Rollouts not ended, oldest first.
SELECT * FROM cronpolicy.rollout WHERE ended_at IS NULL ORDER BY began_at, id


-- name: standing_windows
-- Windows neither cancelled nor over, soonest first.
SELECT * FROM cronpolicy.rollout_window
 WHERE cancelled_at IS NULL AND julianday(ends_at) > julianday(:now)
 ORDER BY starts_at, id


-- name: recent_runtimes
-- Runs timed by the database's clock only: a spooled run's times are a host's.
SELECT (julianday(finished_at) - julianday(started_at)) * 86400.0
  FROM cronpolicy.script_run
 WHERE name = :name AND status = 'succeeded' AND NOT spooled
 ORDER BY finished_at DESC LIMIT :runs


-- name: record_start
-- The run is alive from here for one lease (:ttl seconds).  started_at is
-- given only when the start is written late: then it is the host's clock
-- (no later than now), and the row is marked spooled.
INSERT INTO cronpolicy.script_run (
    started_at, spooled, name, host, pid, estimate_seconds, estimate_source, skip_reason,
    policy_ignored, decision, policy_id, window_id, expected_interval, spool_id,
    schedule, schedule_tz, block, needs, release, heartbeat_at, lease_expires_at)
VALUES (min(coalesce(:started_at, strftime('%Y-%m-%d %H:%M:%f', 'now')), strftime('%Y-%m-%d %H:%M:%f', 'now')), :started_at IS NOT NULL,
        :name, :host, :pid, :estimate_seconds, :estimate_source, :skip_reason,
        :policy_ignored, :decision, :policy_id, :window_id, :expected_interval, :spool_id,
        :schedule, :schedule_tz, :block, :needs, :release,
        strftime('%Y-%m-%d %H:%M:%f', 'now'),
        strftime('%Y-%m-%d %H:%M:%f', 'now', '+' || :ttl || ' seconds'))
ON CONFLICT (spool_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at
RETURNING id


-- name: record_skip
INSERT INTO cronpolicy.script_run (
    name, host, pid, estimate_seconds, estimate_source, skip_reason, policy_ignored,
    decision, policy_id, window_id, expected_interval, spool_id, schedule, schedule_tz, block,
    needs, release, status, finished_at)
VALUES (:name, :host, :pid, :estimate_seconds, :estimate_source, :skip_reason,
        :policy_ignored, :decision, :policy_id, :window_id, :expected_interval, :spool_id,
        :schedule, :schedule_tz, :block, :needs, :release, 'skipped',
        strftime('%Y-%m-%d %H:%M:%f', 'now'))
ON CONFLICT (spool_id) DO UPDATE SET finished_at = script_run.finished_at
RETURNING id


-- name: record_finish
UPDATE cronpolicy.script_run
   SET status = :status, exit_code = :exit_code, stop_reason = :stop_reason,
       stop_decision = :stop_decision, stop_policy_id = :stop_policy_id,
       stop_window_id = :stop_window_id, stop_block = :stop_block, lease_expires_at = NULL,
       finished_at = max(strftime('%Y-%m-%d %H:%M:%f', 'now'), started_at)
 WHERE id = :id


-- name: lease_standing
-- Whether the run's lease still stands (rows without one: 30s from their heartbeat).
SELECT status = 'running'
       AND julianday(coalesce(lease_expires_at,
                              strftime('%Y-%m-%d %H:%M:%f', coalesce(heartbeat_at, started_at),
                                       '+30 seconds'))) >= julianday('now')
  FROM cronpolicy.script_run WHERE id = :id


-- name: heartbeat
-- Renews the run's lease.  A run recorded as abandoned while it was stopped
-- is shown as running again (it is).
UPDATE cronpolicy.script_run
   SET heartbeat_at = strftime('%Y-%m-%d %H:%M:%f', 'now'), safe_to_interrupt = :safe,
       lease_expires_at = strftime('%Y-%m-%d %H:%M:%f', 'now', '+' || :ttl || ' seconds'),
       status = 'running', finished_at = NULL, stop_reason = NULL
 WHERE id = :id AND status IN ('running', 'abandoned')


-- name: renew_slot
UPDATE cronpolicy.run_slot
   SET lease_expires_at = strftime('%Y-%m-%d %H:%M:%f', 'now', '+' || :ttl || ' seconds')
 WHERE name = :name AND slot = :slot AND run_key = :run_key


-- name: free_expired_slot
DELETE FROM cronpolicy.run_slot
 WHERE name = :name AND slot = :slot AND julianday(lease_expires_at) < julianday('now')


-- name: take_slot
-- Slot :slot of script :name, if it is free (after free_expired_slot).
INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)
VALUES (:name, :slot, :run_key, :host,
        strftime('%Y-%m-%d %H:%M:%f', 'now', '+' || :ttl || ' seconds'))
ON CONFLICT (name, slot) DO NOTHING
RETURNING slot


-- name: give_back_slot
DELETE FROM cronpolicy.run_slot WHERE name = :name AND slot = :slot AND run_key = :run_key


-- name: apply_spooled_run
-- A whole run whose record could not be written at the time; its key makes
-- it one row with its start, if that reached the database after all.  Its
-- times are the host's clock, clamped to [started_at, now], marked spooled.
INSERT INTO cronpolicy.script_run (
    name, host, pid, started_at, finished_at, status, exit_code, skip_reason,
    estimate_seconds, estimate_source, policy_ignored, decision, policy_id, window_id,
    expected_interval, stop_reason, stop_decision, stop_policy_id, stop_window_id, stop_block,
    spool_id, schedule, schedule_tz, block, needs, release, spooled)
VALUES (:name, :host, :pid, min(:started_at, strftime('%Y-%m-%d %H:%M:%f', 'now')),
        min(max(:started_at, :finished_at), strftime('%Y-%m-%d %H:%M:%f', 'now')), :status,
        :exit_code, :skip_reason, :estimate_seconds, :estimate_source, :policy_ignored,
        :decision, :policy_id, :window_id, :expected_interval, :stop_reason, :stop_decision,
        :stop_policy_id, :stop_window_id, :stop_block, :spool_id, :schedule, :schedule_tz,
        :block, :needs,
        :release, 1)
ON CONFLICT (spool_id) DO UPDATE
   SET status = excluded.status, exit_code = excluded.exit_code, spooled = 1,
       skip_reason = excluded.skip_reason, decision = excluded.decision,
       policy_ignored = excluded.policy_ignored, block = excluded.block,
       stop_reason = excluded.stop_reason, stop_decision = excluded.stop_decision,
       stop_policy_id = excluded.stop_policy_id, stop_window_id = excluded.stop_window_id,
       stop_block = excluded.stop_block,
       finished_at = min(max(script_run.started_at, excluded.finished_at), strftime('%Y-%m-%d %H:%M:%f', 'now')),
       lease_expires_at = NULL
 WHERE script_run.status IN ('running', 'abandoned')


-- name: apply_spooled_finish
-- The end of a recorded run; it completes only a run still open.
UPDATE cronpolicy.script_run
   SET status = :status, exit_code = :exit_code, stop_reason = :stop_reason,
       stop_decision = :stop_decision, stop_policy_id = :stop_policy_id,
       stop_window_id = :stop_window_id, stop_block = :stop_block, lease_expires_at = NULL, spooled = 1,
       finished_at = min(max(started_at, :finished_at), strftime('%Y-%m-%d %H:%M:%f', 'now'))
 WHERE id = :id AND status IN ('running', 'abandoned')


-- name: reap_stale
-- Runs whose lease ran out are abandoned (rows without one, from an older
-- cronpolicy, count as leased for 30 seconds from their last heartbeat).
UPDATE cronpolicy.script_run
   SET status = 'abandoned',
       finished_at = max(started_at, coalesce(heartbeat_at, started_at)),
       lease_expires_at = NULL,
       stop_reason = 'abandoned: its lease ran out (not heard from since '
                     || substr(coalesce(heartbeat_at, started_at), 1, 19) || 'Z)'
 WHERE status = 'running'
   AND julianday(coalesce(lease_expires_at,
                          strftime('%Y-%m-%d %H:%M:%f', coalesce(heartbeat_at, started_at),
                                   '+30 seconds'))) < julianday('now')
RETURNING id


-- name: reap_gone
-- A run on this host whose process no longer exists is abandoned.
UPDATE cronpolicy.script_run
   SET status = 'abandoned',
       finished_at = max(started_at, coalesce(heartbeat_at, started_at)),
       lease_expires_at = NULL,
       stop_reason = 'abandoned: process ' || pid || ' is gone'
 WHERE id = :id AND status = 'running'
