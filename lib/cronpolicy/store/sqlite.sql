-- Every statement cronpolicy sends to the embedded SQLite database, in one place.
--
-- Each statement is introduced by a "-- name: NAME" line and read by
-- cronpolicy/store/queries.py; parameters are sqlite3's :name.  The file is
-- attached as "cronpolicy", so table names match PostgreSQL's.  Timestamps
-- are UTC text, 'YYYY-MM-DD HH:MM:SS.SSS'; intervals are seconds.


-- name: now
SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')


-- name: schema_version
SELECT max(version) FROM cronpolicy.schema_version


-- name: deploy_state
SELECT * FROM cronpolicy.deploy_state WHERE id = 1


-- name: policies
SELECT * FROM cronpolicy.script_policy


-- name: standing_windows
SELECT * FROM cronpolicy.rollout_window
 WHERE cancelled_at IS NULL AND julianday(ends_at) > julianday(:now)


-- name: recent_runtimes
SELECT (julianday(finished_at) - julianday(started_at)) * 86400.0
  FROM cronpolicy.script_run
 WHERE name = :name AND status = 'succeeded'
 ORDER BY finished_at DESC LIMIT :runs


-- name: record_start
INSERT INTO cronpolicy.script_run (
    name, host, pid, estimate_seconds, estimate_source, skip_reason, policy_ignored,
    decision, policy_id, window_id, expected_interval, heartbeat_at)
VALUES (:name, :host, :pid, :estimate_seconds, :estimate_source, :skip_reason,
        :policy_ignored, :decision, :policy_id, :window_id, :expected_interval,
        strftime('%Y-%m-%d %H:%M:%f', 'now'))


-- name: record_skip
INSERT INTO cronpolicy.script_run (
    name, host, pid, estimate_seconds, estimate_source, skip_reason, policy_ignored,
    decision, policy_id, window_id, expected_interval, status, finished_at)
VALUES (:name, :host, :pid, :estimate_seconds, :estimate_source, :skip_reason,
        :policy_ignored, :decision, :policy_id, :window_id, :expected_interval, 'skipped',
        strftime('%Y-%m-%d %H:%M:%f', 'now'))


-- name: record_finish
UPDATE cronpolicy.script_run
   SET status = :status, exit_code = :exit_code, stop_reason = :stop_reason,
       stop_decision = :stop_decision, stop_policy_id = :stop_policy_id,
       stop_window_id = :stop_window_id,
       finished_at = max(strftime('%Y-%m-%d %H:%M:%f', 'now'), started_at)
 WHERE id = :id


-- name: heartbeat
-- A run recorded as abandoned while it was stopped comes back to life with
-- its first heartbeat.
UPDATE cronpolicy.script_run
   SET heartbeat_at = strftime('%Y-%m-%d %H:%M:%f', 'now'), safe_to_interrupt = :safe,
       status = 'running', finished_at = NULL, stop_reason = NULL
 WHERE id = :id AND status IN ('running', 'abandoned')


-- name: apply_spooled_run
-- A whole run that never reached the database; spool_id makes it once only.
INSERT INTO cronpolicy.script_run (
    name, host, pid, started_at, finished_at, status, exit_code, skip_reason,
    estimate_seconds, estimate_source, policy_ignored, decision, policy_id, window_id,
    expected_interval, stop_reason, stop_decision, stop_policy_id, stop_window_id, spool_id)
VALUES (:name, :host, :pid, :started_at, max(:started_at, :finished_at), :status,
        :exit_code, :skip_reason, :estimate_seconds, :estimate_source, :policy_ignored,
        :decision, :policy_id, :window_id, :expected_interval, :stop_reason, :stop_decision,
        :stop_policy_id, :stop_window_id, :spool_id)
ON CONFLICT (spool_id) DO NOTHING


-- name: apply_spooled_finish
-- The end of a recorded run; it completes only a run still open.
UPDATE cronpolicy.script_run
   SET status = :status, exit_code = :exit_code, stop_reason = :stop_reason,
       stop_decision = :stop_decision, stop_policy_id = :stop_policy_id,
       stop_window_id = :stop_window_id, finished_at = max(started_at, :finished_at)
 WHERE id = :id AND status IN ('running', 'abandoned')


-- name: reap_stale
-- Runs whose heartbeat is older than :dead_after seconds are abandoned.
UPDATE cronpolicy.script_run
   SET status = 'abandoned',
       finished_at = max(started_at, coalesce(heartbeat_at, started_at)),
       stop_reason = 'abandoned: no heartbeat for more than ' || :dead_after || 's'
 WHERE status = 'running'
   AND (heartbeat_at IS NULL
        OR julianday(heartbeat_at) < julianday('now') - :dead_after / 86400.0)
RETURNING id


-- name: reap_gone
-- A run on this host whose process no longer exists is abandoned.
UPDATE cronpolicy.script_run
   SET status = 'abandoned',
       finished_at = max(started_at, coalesce(heartbeat_at, started_at)),
       stop_reason = 'abandoned: process ' || pid || ' is gone'
 WHERE id = :id AND status = 'running'
