-- What the operator commands write on PostgreSQL (cronpolicy.store.writes):
-- rollouts begun, renewed and ended (tooling.rollout_rows), windows added
-- and cancelled (tooling.windows), scripts disabled and enabled
-- (tooling.policy_edits), what deploy wait saw and the drains it timed
-- (tooling.deploy), the schedules a host registers (tooling.schedules),
-- the history pruned (tooling.retention).
-- Each statement is introduced by a "-- name: NAME"
-- line; parameters are psycopg2's %(name)s.  Who wrote a
-- row and when are the database's to say (session_user and now(), and
-- schema patch 0016's triggers); the reason reaches the audit through
-- set_reason.


-- name: set_reason
-- Read by the audit trigger; local to this transaction.
SELECT set_config('cronpolicy.reason', %(reason)s, true)


-- name: begin_rollout
-- The columns roles.sql grants cronpolicy_rollout; the owner is session_user.
INSERT INTO cronpolicy.rollout (kind, services, reason, expected_duration, owner_host,
                                owner_pid, lease_expires_at)
VALUES (%(kind)s, %(services)s, %(reason)s, %(expected_duration)s::interval, %(owner_host)s,
        %(owner_pid)s, %(lease_expires_at)s)
RETURNING id


-- name: open_full_rollouts
SELECT id FROM cronpolicy.rollout WHERE ended_at IS NULL AND kind = %(kind)s ORDER BY id


-- name: end_rollouts
-- The ones still open (re-checked on each row once held: another end may
-- have ended it meanwhile); ended_by is the trigger's to write.  The ids
-- it ended.
UPDATE cronpolicy.rollout SET ended_at = %(now)s, lease_expires_at = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND ended_at IS NULL
RETURNING id


-- name: renew_rollout
-- Given an owner (deploy run's host and pid), only the rollout that process
-- began: not one that took its id after its row was deleted.
UPDATE cronpolicy.rollout SET lease_expires_at = %(until)s
 WHERE id = %(id)s AND ended_at IS NULL
   AND (%(owner_pid)s::integer IS NULL
        OR (owner_pid = %(owner_pid)s AND owner_host IS NOT DISTINCT FROM %(owner_host)s))


-- name: add_window
-- created_by and created_at are the database's (session_user, now()).
INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason, host, script, service)
VALUES (%(starts_at)s, %(ends_at)s, %(reason)s, %(host)s, %(script)s, %(service)s)
RETURNING id


-- name: window_held
-- A window, held until the transaction ends (cancel_window).
SELECT * FROM cronpolicy.rollout_window WHERE id = %(id)s FOR UPDATE


-- name: window
SELECT * FROM cronpolicy.rollout_window WHERE id = %(id)s


-- name: cancel_window
UPDATE cronpolicy.rollout_window SET cancelled_at = %(now)s, cancelled_by = session_user
 WHERE id = %(id)s


-- name: policy_row_held
-- The row of exactly (name, host), held until the transaction ends
-- (disable, enable: tooling.policy_edits).
SELECT * FROM cronpolicy.script_policy WHERE name = %(name)s AND host = %(host)s FOR UPDATE


-- name: policy_row
SELECT * FROM cronpolicy.script_policy WHERE name = %(name)s AND host = %(host)s


-- name: add_policy_row
-- changed_by and changed_at are the database's.
INSERT INTO cronpolicy.script_policy (name, host, enabled, reason)
VALUES (%(name)s, %(host)s, %(enabled)s, %(reason)s)


-- name: set_policy_row
UPDATE cronpolicy.script_policy SET enabled = %(enabled)s, reason = %(reason)s
 WHERE name = %(name)s AND host = %(host)s


-- name: delete_policy_row
DELETE FROM cronpolicy.script_policy WHERE name = %(name)s AND host = %(host)s


-- name: known_hosts
-- Every host the history names (where a disabling row may be outranked).
SELECT DISTINCT host FROM cronpolicy.script_run


-- name: await_run
-- deploy wait saw a run in a rollout's way (tooling.deploy's _Witness):
-- written once, whichever wait of the rollout sees it first.  Only while
-- the rollout's row is there: one deleted by hand since the look (its
-- delete committed, or committing while this waits on it) is skipped, as
-- the next look will find it gone, where the row's foreign key would have
-- refused the note and ended the wait.
INSERT INTO cronpolicy.rollout_awaited (rollout_id, run_id, name, host, first_seen_at,
                                        last_seen_at)
SELECT rollout.id, %(run_id)s, %(name)s, %(host)s, %(first_seen_at)s::timestamptz,
       %(last_seen_at)s::timestamptz
  FROM cronpolicy.rollout WHERE rollout.id = %(rollout_id)s
   FOR KEY SHARE
ON CONFLICT (rollout_id, run_id) DO NOTHING


-- name: awaited_last_seen
-- (Another wait may have seen it later.)
UPDATE cronpolicy.rollout_awaited SET last_seen_at = %(last_seen_at)s
 WHERE rollout_id = %(rollout_id)s AND run_id = %(run_id)s AND last_seen_at < %(last_seen_at)s


-- name: rollout_quiet
-- Seen quiet while open: a rollout ended since the look (before this
-- write) was quiet by its end at the latest (least() passes over NULL).
UPDATE cronpolicy.rollout SET quiet_at = least(%(quiet_at)s::timestamptz, ended_at)
 WHERE id = %(id)s AND quiet_at IS NULL


-- name: record_drain
-- One deploy wait, for the metrics: how long, and who held it up longest.
INSERT INTO cronpolicy.drain (started_at, finished_at, host, quiet, longest_blocker,
                              longest_blocker_seconds)
VALUES (%(started_at)s, %(finished_at)s, %(host)s, %(quiet)s, %(longest_blocker)s,
        %(longest_blocker_seconds)s)


-- name: host_schedules
-- What a host's crontabs registered (schedule import, crontab wrap
-- --register: tooling.schedules.register).
SELECT name, schedule, schedule_tz, origin FROM cronpolicy.script_schedule
 WHERE host = %(host)s


-- name: add_schedule
-- registered_by and registered_at are the database's.
INSERT INTO cronpolicy.script_schedule (name, host, schedule, schedule_tz, origin)
VALUES (%(name)s, %(host)s, %(schedule)s, %(schedule_tz)s, %(origin)s)


-- name: set_schedule
-- (Row-level security may hide another host's row: then it changes nothing.)
UPDATE cronpolicy.script_schedule
   SET schedule = %(schedule)s, schedule_tz = %(schedule_tz)s, origin = %(origin)s,
       registered_at = %(now)s
 WHERE name = %(name)s AND host = %(host)s


-- name: drop_schedule
DELETE FROM cronpolicy.script_schedule WHERE name = %(name)s AND host = %(host)s


-- name: prune_batch
-- One batch of `cronpolicy prune` (tooling.retention), deleted and added to
-- pruned_runs (schema patch 0018) in one statement.  The batch: runs that
-- started before the cut-off, not running, not among the last `keep`
-- successes of their script (the estimates read them), oldest first.  It
-- is chosen by the statement's snapshot, each run with the status it had
-- there; a run is deleted only if it still has that status once the delete
-- holds its row (READ COMMITTED re-checks the row as it is then, but a list
-- of ids alone asks nothing of it): a run heard from again meanwhile
-- (revived: running) stays, and so does an old abandoned run whose end was
-- written meanwhile (a success, the newest, which keep would have kept).
WITH gone AS (
    DELETE FROM cronpolicy.script_run WHERE (id, status) IN (
        SELECT r.id, r.status FROM cronpolicy.script_run AS r
         WHERE r.started_at < %(cutoff)s AND r.status <> 'running'
           AND NOT (r.status = 'succeeded' AND r.id IN (
                SELECT k.id FROM cronpolicy.script_run AS k
                 WHERE k.name = r.name AND k.status = 'succeeded' AND NOT k.spooled
                 ORDER BY k.finished_at DESC LIMIT %(keep)s))
         ORDER BY r.started_at, r.id LIMIT %(batch)s)
    RETURNING name, host, status, decision, block),
tallied AS (
    INSERT INTO cronpolicy.pruned_runs (name, host, status, decision, blocked, runs)
    SELECT name, host, status, coalesce(decision, ''), block IS NOT NULL, count(*)
      FROM gone
     GROUP BY name, host, status, coalesce(decision, ''), block IS NOT NULL
    ON CONFLICT (name, host, status, decision, blocked)
    DO UPDATE SET runs = pruned_runs.runs + excluded.runs)
SELECT count(*) AS deleted FROM gone
