-- What the operator commands write on SQLite (cronpolicy.store.writes):
-- rollouts begun, renewed and ended (tooling.rollout_rows), windows added
-- and cancelled (tooling.windows), scripts disabled and enabled
-- (tooling.policy_edits), what deploy wait saw and the drains it timed
-- (tooling.deploy), the schedules a host registers (tooling.schedules),
-- the history pruned (tooling.retention).
-- Each statement is introduced by a "-- name: NAME"
-- line; parameters are sqlite3's :name.  SQLite's triggers
-- know no user: the writer names it (owner, ended_by, created_by,
-- cancelled_by) and signs the audit entries it wrote (sign_audit).


-- name: audit_high_water
-- The newest audit entry before this transaction's changes.
SELECT coalesce(max(id), 0) AS high_water FROM cronpolicy.policy_audit


-- name: sign_audit
-- This transaction's audit entries: who made them, and why.
UPDATE cronpolicy.policy_audit SET db_user = :who, reason = coalesce(reason, :reason)
 WHERE id > :before


-- name: begin_rollout
INSERT INTO cronpolicy.rollout (kind, services, reason, expected_duration, owner_host,
                                owner_pid, lease_expires_at, owner)
VALUES (:kind, :services, :reason, :expected_duration, :owner_host, :owner_pid,
        :lease_expires_at, :who)
RETURNING id


-- name: open_full_rollouts
SELECT id FROM cronpolicy.rollout WHERE ended_at IS NULL AND kind = :kind ORDER BY id


-- name: end_rollouts
-- The ones still open.  The ids it ended.  A row holding values past the
-- range guards is brought into range as it ends (schema patch 0026: the
-- table's CHECK refused the end otherwise, and the fleet stayed stopped).
UPDATE cronpolicy.rollout
   SET ended_at = :now, lease_expires_at = NULL, ended_by = :who,
       began_at = CASE WHEN (typeof(began_at) = 'text' AND coalesce(began_at IN (strftime('%Y-%m-%d %H:%M:%f', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M', began_at, '+0 days'), strftime('%Y-%m-%d', began_at, '+0 days')), 0) AND coalesce(julianday(began_at) BETWEEN 2440587.5 AND 5336594.5, 0)) AND julianday(began_at) <= julianday(:now) THEN began_at ELSE min(CASE WHEN (typeof(began_at) = 'text' AND coalesce(began_at IN (strftime('%Y-%m-%d %H:%M:%f', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M', began_at, '+0 days'), strftime('%Y-%m-%d', began_at, '+0 days')), 0) AND coalesce(julianday(began_at) BETWEEN 2440587.5 AND 5336594.5, 0)) THEN began_at WHEN coalesce(julianday(began_at) BETWEEN 2440587.5 AND 5336594.5, 0) THEN strftime('%Y-%m-%d %H:%M:%f', began_at) WHEN lower(trim(began_at)) IN ('infinity', '+infinity') OR began_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(began_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END, :now) END,
       expected_duration = CASE WHEN expected_duration IS NULL OR (typeof(expected_duration) IN ('integer', 'real') AND expected_duration > 0 AND expected_duration <= 3155760000) THEN expected_duration WHEN typeof(expected_duration) IN ('integer', 'real') AND expected_duration > 3155760000 THEN 3155760000 ELSE NULL END,
       quiet_at = CASE WHEN quiet_at IS NULL OR (typeof(quiet_at) = 'text' AND coalesce(quiet_at IN (strftime('%Y-%m-%d %H:%M:%f', quiet_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', quiet_at, '+0 days'), strftime('%Y-%m-%d %H:%M', quiet_at, '+0 days'), strftime('%Y-%m-%d', quiet_at, '+0 days')), 0) AND coalesce(julianday(quiet_at) BETWEEN 2440587.5 AND 5336594.5, 0)) THEN quiet_at ELSE max(min(CASE WHEN (typeof(quiet_at) = 'text' AND coalesce(quiet_at IN (strftime('%Y-%m-%d %H:%M:%f', quiet_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', quiet_at, '+0 days'), strftime('%Y-%m-%d %H:%M', quiet_at, '+0 days'), strftime('%Y-%m-%d', quiet_at, '+0 days')), 0) AND coalesce(julianday(quiet_at) BETWEEN 2440587.5 AND 5336594.5, 0)) THEN quiet_at WHEN coalesce(julianday(quiet_at) BETWEEN 2440587.5 AND 5336594.5, 0) THEN strftime('%Y-%m-%d %H:%M:%f', quiet_at) WHEN lower(trim(quiet_at)) IN ('infinity', '+infinity') OR quiet_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(quiet_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END, :now), CASE WHEN (typeof(began_at) = 'text' AND coalesce(began_at IN (strftime('%Y-%m-%d %H:%M:%f', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M', began_at, '+0 days'), strftime('%Y-%m-%d', began_at, '+0 days')), 0) AND coalesce(julianday(began_at) BETWEEN 2440587.5 AND 5336594.5, 0)) AND julianday(began_at) <= julianday(:now) THEN began_at ELSE min(CASE WHEN (typeof(began_at) = 'text' AND coalesce(began_at IN (strftime('%Y-%m-%d %H:%M:%f', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M', began_at, '+0 days'), strftime('%Y-%m-%d', began_at, '+0 days')), 0) AND coalesce(julianday(began_at) BETWEEN 2440587.5 AND 5336594.5, 0)) THEN began_at WHEN coalesce(julianday(began_at) BETWEEN 2440587.5 AND 5336594.5, 0) THEN strftime('%Y-%m-%d %H:%M:%f', began_at) WHEN lower(trim(began_at)) IN ('infinity', '+infinity') OR began_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(began_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END, :now) END) END
 WHERE id IN (SELECT value FROM json_each(:ids)) AND ended_at IS NULL
RETURNING id


-- name: renew_rollout
-- Given an owner (deploy run's host and pid), only the rollout that process
-- began: not one that took its id (the greatest rowid plus one) after its
-- row was deleted.
UPDATE cronpolicy.rollout SET lease_expires_at = :until
 WHERE id = :id AND ended_at IS NULL
   AND (:owner_pid IS NULL OR (owner_pid = :owner_pid AND owner_host IS :owner_host))


-- name: add_window
INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason, host, script, service,
                                       created_by)
VALUES (:starts_at, :ends_at, :reason, :host, :script, :service, :who)
RETURNING id


-- name: window_held
-- (The write transaction holds the whole file.)
SELECT * FROM cronpolicy.rollout_window WHERE id = :id


-- name: window
SELECT * FROM cronpolicy.rollout_window WHERE id = :id


-- name: cancel_window
UPDATE cronpolicy.rollout_window SET cancelled_at = :now, cancelled_by = :who WHERE id = :id


-- name: policy_row_held
-- The row of exactly (name, host) (disable, enable: tooling.policy_edits;
-- the write transaction holds the whole file).
SELECT * FROM cronpolicy.script_policy WHERE name = :name AND host = :host


-- name: policy_row
SELECT * FROM cronpolicy.script_policy WHERE name = :name AND host = :host


-- name: add_policy_row
INSERT INTO cronpolicy.script_policy (name, host, enabled, reason, changed_by)
VALUES (:name, :host, :enabled, :reason, :who)


-- name: set_policy_row
UPDATE cronpolicy.script_policy SET enabled = :enabled, reason = :reason, changed_by = :who
 WHERE name = :name AND host = :host


-- name: delete_policy_row
DELETE FROM cronpolicy.script_policy WHERE name = :name AND host = :host


-- name: known_hosts
-- Every host the history names (where a disabling row may be outranked).
SELECT DISTINCT host FROM cronpolicy.script_run


-- name: await_run
-- deploy wait saw a run in a rollout's way (tooling.deploy's _Witness):
-- written once, whichever wait of the rollout sees it first.
INSERT INTO cronpolicy.rollout_awaited (rollout_id, run_id, name, host, first_seen_at,
                                        last_seen_at)
VALUES (:rollout_id, :run_id, :name, :host, :first_seen_at, :last_seen_at)
ON CONFLICT (rollout_id, run_id) DO NOTHING


-- name: awaited_last_seen
-- (Another wait may have seen it later.)
UPDATE cronpolicy.rollout_awaited SET last_seen_at = :last_seen_at
 WHERE rollout_id = :rollout_id AND run_id = :run_id
   AND julianday(last_seen_at) < julianday(:last_seen_at)


-- name: rollout_quiet
-- Seen quiet while open: a rollout ended since the look (before this
-- write) was quiet by its end at the latest.  A row holding values past
-- the range guards is brought into range (schema patch 0026).
UPDATE cronpolicy.rollout
   SET quiet_at = CASE WHEN julianday(ended_at) < julianday(:quiet_at) THEN ended_at
                       ELSE :quiet_at END,
       began_at = CASE WHEN (typeof(began_at) = 'text' AND coalesce(began_at IN (strftime('%Y-%m-%d %H:%M:%f', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M', began_at, '+0 days'), strftime('%Y-%m-%d', began_at, '+0 days')), 0) AND coalesce(julianday(began_at) BETWEEN 2440587.5 AND 5336594.5, 0)) AND julianday(began_at) <= julianday(:quiet_at) THEN began_at ELSE min(CASE WHEN (typeof(began_at) = 'text' AND coalesce(began_at IN (strftime('%Y-%m-%d %H:%M:%f', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M', began_at, '+0 days'), strftime('%Y-%m-%d', began_at, '+0 days')), 0) AND coalesce(julianday(began_at) BETWEEN 2440587.5 AND 5336594.5, 0)) THEN began_at WHEN coalesce(julianday(began_at) BETWEEN 2440587.5 AND 5336594.5, 0) THEN strftime('%Y-%m-%d %H:%M:%f', began_at) WHEN lower(trim(began_at)) IN ('infinity', '+infinity') OR began_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(began_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END, :quiet_at) END,
       expected_duration = CASE WHEN expected_duration IS NULL OR (typeof(expected_duration) IN ('integer', 'real') AND expected_duration > 0 AND expected_duration <= 3155760000) THEN expected_duration WHEN typeof(expected_duration) IN ('integer', 'real') AND expected_duration > 3155760000 THEN 3155760000 ELSE NULL END,
       lease_expires_at = CASE WHEN lease_expires_at IS NULL OR (typeof(lease_expires_at) = 'text' AND coalesce(lease_expires_at IN (strftime('%Y-%m-%d %H:%M:%f', lease_expires_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', lease_expires_at, '+0 days'), strftime('%Y-%m-%d %H:%M', lease_expires_at, '+0 days'), strftime('%Y-%m-%d', lease_expires_at, '+0 days')), 0) AND coalesce(julianday(lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0)) THEN lease_expires_at ELSE min(CASE WHEN (typeof(lease_expires_at) = 'text' AND coalesce(lease_expires_at IN (strftime('%Y-%m-%d %H:%M:%f', lease_expires_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', lease_expires_at, '+0 days'), strftime('%Y-%m-%d %H:%M', lease_expires_at, '+0 days'), strftime('%Y-%m-%d', lease_expires_at, '+0 days')), 0) AND coalesce(julianday(lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0)) THEN lease_expires_at WHEN coalesce(julianday(lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0) THEN strftime('%Y-%m-%d %H:%M:%f', lease_expires_at) WHEN lower(trim(lease_expires_at)) IN ('infinity', '+infinity') OR lease_expires_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(lease_expires_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END, strftime('%Y-%m-%d %H:%M:%f', :quiet_at, '+1 hour')) END
 WHERE id = :id AND quiet_at IS NULL


-- name: record_drain
-- One deploy wait, for the metrics: how long, and who held it up longest.
INSERT INTO cronpolicy.drain (started_at, finished_at, host, quiet, longest_blocker,
                              longest_blocker_seconds)
VALUES (:started_at, :finished_at, :host, :quiet, :longest_blocker, :longest_blocker_seconds)


-- name: host_schedules
-- What a host's crontabs registered (schedule import, crontab wrap
-- --register: tooling.schedules.register).
SELECT name, schedule, schedule_tz, origin FROM cronpolicy.script_schedule
 WHERE host = :host


-- name: add_schedule
INSERT INTO cronpolicy.script_schedule (name, host, schedule, schedule_tz, origin,
                                        registered_by)
VALUES (:name, :host, :schedule, :schedule_tz, :origin, :who)


-- name: set_schedule
UPDATE cronpolicy.script_schedule
   SET schedule = :schedule, schedule_tz = :schedule_tz, origin = :origin,
       registered_at = :now, registered_by = :who
 WHERE name = :name AND host = :host


-- name: drop_schedule
DELETE FROM cronpolicy.script_schedule WHERE name = :name AND host = :host


-- name: prune_batch_ids
-- One batch of `cronpolicy prune` (tooling.retention): runs that started
-- before the cut-off, not running, not among the last `keep` successes of
-- their script (the estimates read them), oldest first.  tally_pruned and
-- prune_delete then take these ids in the same write transaction (the
-- write lock is held: no other writer comes between).
SELECT r.id FROM cronpolicy.script_run AS r
 WHERE r.started_at < :cutoff AND r.status <> 'running'
   AND NOT (r.status = 'succeeded' AND r.id IN (
        SELECT k.id FROM cronpolicy.script_run AS k
         WHERE k.name = r.name AND k.status = 'succeeded' AND NOT k.spooled
         ORDER BY k.finished_at DESC LIMIT :keep))
 ORDER BY r.started_at, r.id LIMIT :batch


-- name: tally_pruned
-- The runs of a batch, added to pruned_runs (schema patch 0018) before
-- they go.
INSERT INTO cronpolicy.pruned_runs (name, host, status, decision, blocked, runs)
SELECT name, host, status, coalesce(decision, ''), block IS NOT NULL, count(*)
  FROM cronpolicy.script_run WHERE id IN (SELECT value FROM json_each(:ids))
 GROUP BY name, host, status, coalesce(decision, ''), block IS NOT NULL
ON CONFLICT (name, host, status, decision, blocked)
DO UPDATE SET runs = pruned_runs.runs + excluded.runs


-- name: prune_delete
DELETE FROM cronpolicy.script_run WHERE id IN (SELECT value FROM json_each(:ids))
