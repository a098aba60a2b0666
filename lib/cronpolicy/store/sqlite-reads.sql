-- What the read commands send to the embedded SQLite database
-- (cronpolicy/store/reads.py), besides now, deploy_state, policies,
-- standing_windows, reap_stale and reap_gone of sqlite.sql.  Each statement
-- is introduced by a "-- name: NAME" line; parameters are sqlite3's :name.
-- (Kept apart from sqlite.sql, which a cron job's start reads whole.)

-- name: running_runs
-- Runs recorded as running, oldest first (dead ones among them until reaped).
SELECT * FROM cronpolicy.script_run WHERE status = 'running' ORDER BY started_at, id


-- name: recent_runs
SELECT * FROM cronpolicy.script_run ORDER BY started_at DESC, id DESC LIMIT :limit


-- name: recent_runs_of
SELECT * FROM cronpolicy.script_run WHERE name = :name
 ORDER BY started_at DESC, id DESC LIMIT :limit


-- name: known_names
SELECT DISTINCT name FROM cronpolicy.script_run ORDER BY name


-- name: audit_before
-- The newest audit entries of a table (of one row of it, when row_id is
-- given) up to a moment: where the change behind a decision is looked for.
SELECT * FROM cronpolicy.policy_audit
 WHERE table_name = :table_name AND julianday(changed_at) <= julianday(:moment)
   AND (:row_id IS NULL OR row_id = :row_id)
 ORDER BY changed_at DESC, id DESC LIMIT 50


-- name: running_here
-- This host's running runs: the ones whose process can be looked for.
SELECT id, pid FROM cronpolicy.script_run WHERE status = 'running' AND host = :host
