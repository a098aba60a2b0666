-- What the read commands send to PostgreSQL (cronpolicy/store/reads.py), in
-- one place: status, history, why, estimate, and deploy wait and plan
-- through the same Reader.  Each statement is introduced by a "-- name:
-- NAME" line; parameters are psycopg2's %(name)s.  They run in the
-- transaction of whoever asks.  (Kept apart from postgresql.sql, which a
-- cron job's start reads whole.)

-- name: now
SELECT now() AS now


-- name: deploy_state
SELECT * FROM cronpolicy.deploy_state WHERE id = 1


-- name: policies
SELECT * FROM cronpolicy.script_policy ORDER BY name, host, id


-- name: standing_windows
-- Windows neither cancelled nor over, soonest first.
SELECT * FROM cronpolicy.rollout_window
 WHERE cancelled_at IS NULL AND ends_at > %(now)s
 ORDER BY starts_at, id


-- name: running_runs
-- Runs recorded as running, oldest first (dead ones among them until reaped).
SELECT * FROM cronpolicy.script_run WHERE status = 'running' ORDER BY started_at, id


-- name: recent_runs
SELECT * FROM cronpolicy.script_run ORDER BY started_at DESC, id DESC LIMIT %(limit)s


-- name: recent_runs_of
SELECT * FROM cronpolicy.script_run WHERE name = %(name)s
 ORDER BY started_at DESC, id DESC LIMIT %(limit)s


-- name: known_names
SELECT DISTINCT name FROM cronpolicy.script_run ORDER BY name


-- name: audit_before
-- The newest audit entries of a table (of one row of it, when row_id is
-- given) up to a moment: where the change behind a decision is looked for.
SELECT * FROM cronpolicy.policy_audit
 WHERE table_name = %(table_name)s AND changed_at <= %(moment)s
   AND (%(row_id)s::bigint IS NULL OR row_id = %(row_id)s::bigint)
 ORDER BY changed_at DESC, id DESC LIMIT 50


-- name: reap_dead_runs
-- A SECURITY DEFINER function (patch 0004): roles that may only update
-- their own runs can still record other hosts' dead runs as abandoned.
SELECT cronpolicy.reap_dead_runs() AS id
