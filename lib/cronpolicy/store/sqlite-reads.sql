-- What the read commands send to the embedded SQLite database
-- (cronpolicy/store/reads.py), besides now, deploy_state, policies,
-- standing_windows, reap_stale and reap_gone of sqlite.sql.  Each statement
-- is introduced by a "-- name: NAME" line; parameters are sqlite3's :name.
-- (Kept apart from sqlite.sql, which a cron job's start reads whole.)
--
-- A statement that reads the whole history by script and host says NOT
-- INDEXED: SQLite otherwise walks script_run_name_started_idx to have the
-- groups in order, fetching each row from the table apart (on a fleet of
-- 115,000 runs: recent_pairs 570 ms against 130, declared_runtimes 550
-- against 20).  metrics_latest_runs says CROSS JOIN so that the history is
-- read once, each row looking up its pair's moments in an automatic index,
-- where SQLite looked up each pair's runs by name (26 s against 0.5 s).

-- name: policy_sets_schedule
-- Whether a policy row sets a schedule (usually none does: then a script's
-- schedule is its host's crontab line or its own declaration, and `schedule
-- list` need not read the policy rows).
SELECT EXISTS (SELECT 1 FROM cronpolicy.script_policy WHERE schedule IS NOT NULL) AS sets


-- name: running_runs
-- Runs recorded as running, oldest first (dead ones among them until reaped),
-- by script_run_running_idx: ordered by the bare column, SQLite walked
-- script_run_started_idx through the whole history instead, to spare
-- itself sorting a few rows (290 ms of `status` on a fleet of 115,000 runs).
-- (+started_at orders as started_at does: its collation is the column's.)
SELECT * FROM cronpolicy.script_run WHERE status = 'running' ORDER BY +started_at, id


-- name: recent_runs
SELECT * FROM cronpolicy.script_run ORDER BY started_at DESC, id DESC LIMIT :limit


-- name: fleet_runs_since
-- The newest runs (and skipped starts) that started after a moment, newest
-- first, at most a limit: what `cronpolicy serve` draws (script_run_started_idx).
SELECT id, name, host, status, started_at, finished_at, exit_code, decision,
       skip_reason, stop_reason, estimate_seconds, safe_to_interrupt, release
  FROM cronpolicy.script_run WHERE julianday(started_at) > julianday(:since)
 ORDER BY started_at DESC, id DESC LIMIT :limit


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


-- name: all_windows
-- Every window, cancelled and over too, by start (`window list --all`).
SELECT * FROM cronpolicy.rollout_window ORDER BY starts_at, id


-- name: audit_entries
-- The newest audit entries (`cronpolicy audit`): at most limit, made since
-- a moment and of one table when those are given, newest first.
SELECT * FROM cronpolicy.policy_audit
 WHERE (:since IS NULL OR julianday(changed_at) >= julianday(:since))
   AND (:table_name IS NULL OR table_name = :table_name)
 ORDER BY id DESC LIMIT :limit


-- name: running_here
-- This host's running runs: the ones whose process can be looked for.
SELECT id, pid FROM cronpolicy.script_run WHERE status = 'running' AND host = :host


-- name: registered_schedules_since
-- What each host's crontab says (cronpolicy schedule import), its columns
-- named (read as tuples), who registered each left out: what the planners
-- and the reports of a fleet's schedules need (a line's registration is
-- since when it is known).  In no order: the callers look rows up by name
-- and host (sorting a fleet's 5,000 rows by their text took PostgreSQL 10
-- to 25 ms).  Of one host when :host is not NULL (`metrics --host H`,
-- every host each minute: not the fleet's rows each).
SELECT name, host, schedule, schedule_tz, origin, registered_at
  FROM cronpolicy.script_schedule
 WHERE :host IS NULL OR host = :host


-- name: registered_schedule_lines
-- The same, without who registered them when: what status's count of
-- schedules and their first starts need (turning 5,000 registration times
-- into datetimes was a tenth of its time on a fleet of that size).
SELECT name, host, schedule, schedule_tz, origin FROM cronpolicy.script_schedule


-- name: declared_schedules
-- What each script declared (CronScript.schedule) at its latest start on
-- each host (of one host when :host is not NULL) since a moment (SQLite:
-- the bare column of the max() row).
SELECT name, host, schedule, schedule_tz, max(started_at) AS started_at
  FROM cronpolicy.script_run
 WHERE schedule IS NOT NULL AND julianday(started_at) > julianday(:since)
   AND (:host IS NULL OR host = :host)
 GROUP BY name, host ORDER BY name, host


-- name: declared_runtimes
-- The runtime each script declared (CronScript.expected_runtime, `run
-- --expected-runtime`) at its latest start on each host since a moment
-- that decided with it: what planners believe until a script's history is
-- enough.  The runs that ended as run_tally keeps them (schema patch 0022),
-- the running ones from the history.
SELECT name, host, estimate_seconds, started_at
  FROM (SELECT name, host, estimate_seconds, started_at,
               row_number() OVER (PARTITION BY name, host
                                  ORDER BY started_at DESC, id DESC) AS nth
          FROM (SELECT name, host, declared_seconds AS estimate_seconds,
                       declared_started_at AS started_at, declared_id AS id
                  FROM cronpolicy.run_tally
                 WHERE julianday(declared_started_at) > julianday(:since)
                 UNION ALL
                SELECT name, host, estimate_seconds, started_at, id FROM cronpolicy.script_run
                 WHERE status = 'running' AND estimate_source LIKE :declared
                   AND julianday(started_at) > julianday(:since)))
 WHERE nth = 1 ORDER BY name, host


-- name: hosts_of
-- The hosts a script ran or was skipped on since a moment, and when last.
SELECT host, max(started_at) AS last_seen FROM cronpolicy.script_run
 WHERE name = :name AND julianday(started_at) > julianday(:since)
 GROUP BY host ORDER BY host


-- name: recent_pairs
-- Every (script, host) seen since a moment: what a rollout may meet.  The
-- runs that ended as run_tally keeps them (schema patch 0022), the runs
-- still running from the history (script_run_running_idx).  Of one
-- host when :host is not NULL.
SELECT name, host FROM cronpolicy.run_tally
 WHERE julianday(last_started_at) > julianday(:since) AND (:host IS NULL OR host = :host)
 UNION
SELECT name, host FROM cronpolicy.script_run
 WHERE status = 'running' AND julianday(started_at) > julianday(:since)
   AND (:host IS NULL OR host = :host)



-- name: ran_since
-- Whether the script started for real on a host after a moment.
SELECT count(*) AS runs FROM cronpolicy.script_run
 WHERE name = :name AND host = :host AND status <> 'skipped'
   AND julianday(started_at) > julianday(:since)


-- name: pair_starts
-- Of every (script, host) the history has seen: whether it started or was
-- skipped since a moment (recent_pairs) and when its newest success
-- started (last_success_on), from run_tally and the runs still running.
SELECT name, host, coalesce(max(julianday(started_at) > julianday(:since)), 0) AS recent,
       max(CASE WHEN status = 'succeeded' THEN started_at END) AS last_success
  FROM (SELECT name, host, status, last_started_at AS started_at FROM cronpolicy.run_tally
         WHERE last_started_at IS NOT NULL
         UNION ALL
        SELECT name, host, status, started_at FROM cronpolicy.script_run
         WHERE status = 'running')
 GROUP BY name, host

-- name: last_success_on
-- A script's latest success on one host (script_run_name_started_idx, newest first).
SELECT started_at, finished_at FROM cronpolicy.script_run
 WHERE name = :name AND host = :host AND status = 'succeeded'
 ORDER BY started_at DESC LIMIT 1


-- name: declared_intervals
-- The expected interval each script declared at its latest start that
-- declared one (seconds): of the runs that ended as run_tally keeps them
-- (schema patch 0022), and of the running ones.
SELECT name, expected_interval
  FROM (SELECT name, expected_interval,
               row_number() OVER (PARTITION BY name ORDER BY id DESC) AS nth
          FROM (SELECT name, interval_id AS id, expected_interval FROM cronpolicy.run_tally
                 WHERE interval_id IS NOT NULL
                 UNION ALL
                SELECT name, id, expected_interval FROM cronpolicy.script_run
                 WHERE status = 'running' AND expected_interval IS NOT NULL))
 WHERE nth = 1


-- name: last_finished_success_of_each
-- When each script last succeeded (its newest finish, any host) and, for
-- one that never did, when it was first heard of: what `overdue` measures
-- an expected interval from.
SELECT asked.value AS name,
       (SELECT finished_at FROM cronpolicy.script_run
         WHERE name = asked.value AND status = 'succeeded'
         ORDER BY finished_at DESC LIMIT 1) AS last_success,
       (SELECT started_at FROM cronpolicy.script_run
         WHERE name = asked.value ORDER BY started_at LIMIT 1) AS first_started
  FROM json_each(:names) AS asked


-- name: runs_since
-- A script's runs since a moment, newest first (at most 1000): what
-- `overdue` says happened after its last success.
SELECT status, started_at, skip_reason, exit_code, decision FROM cronpolicy.script_run
 WHERE name = :name AND julianday(started_at) >= julianday(:since)
 ORDER BY started_at DESC LIMIT 1000


-- name: rollouts_in_a_row
-- How many rollouts in a row skipped a script, on each of its hosts: the
-- distinct blocks of its rollout skips there since it last started there
-- for real.  One statement a script, for all its hosts.
SELECT host, count(DISTINCT block) AS blocks FROM cronpolicy.script_run AS skipped
 WHERE name = :name AND status = 'skipped' AND block IS NOT NULL
   AND decision IN (SELECT value FROM json_each(:rollout_skips))
   AND julianday(started_at) > coalesce((SELECT max(julianday(started_at))
                                          FROM cronpolicy.script_run
                                         WHERE name = :name AND host = skipped.host
                                           AND status <> 'skipped'), 0)
 GROUP BY host


-- name: rollouts_by_id
-- Oldest first, as open_rollouts.
SELECT * FROM cronpolicy.rollout WHERE id IN (SELECT value FROM json_each(:ids))
 ORDER BY began_at, id



-- name: rollouts
-- The newest rollouts, open or ended, and the oldest open ones however old
-- (as many again at most): one forgotten open must not fall off the list.
SELECT * FROM (SELECT * FROM cronpolicy.rollout ORDER BY began_at DESC, id DESC LIMIT :limit) AS newest
UNION
SELECT * FROM (SELECT * FROM cronpolicy.rollout WHERE ended_at IS NULL
                ORDER BY began_at, id LIMIT :limit) AS still_open
ORDER BY began_at DESC, id DESC


-- name: rollout_skipped_starts
-- The starts each rollout skipped (script_run_skip_block_idx); :blocks is a JSON list.
SELECT block, count(*) AS starts FROM cronpolicy.script_run
 WHERE block IN (SELECT value FROM json_each(:blocks)) AND status = 'skipped'
 GROUP BY block


-- name: rollout_interrupted_runs
-- The runs each rollout interrupted (script_run_stop_block_idx).
SELECT stop_block AS block, count(*) AS runs FROM cronpolicy.script_run
 WHERE stop_block IN (SELECT value FROM json_each(:blocks)) AND status = 'interrupted'
 GROUP BY stop_block


-- name: rollout_awaited_runs
-- The runs each rollout waited for, in the order they were first seen,
-- each with when it started (NULL once pruned): a run that started after
-- its rollout began did not hold it before.
SELECT a.*, r.started_at AS run_started_at
  FROM cronpolicy.rollout_awaited AS a
  LEFT JOIN cronpolicy.script_run AS r ON r.id = a.run_id
 WHERE a.rollout_id IN (SELECT value FROM json_each(:ids))
 ORDER BY a.rollout_id, a.first_seen_at, a.run_id


-- name: metrics_runs
-- What `metrics` counts of the runs: per script, host, status, decision
-- ('' for none) and whether a rollout's block is named, how many runs, and
-- of succeeded runs the latest finish and the latest start; of one host,
-- or of every host when host is NULL.  The runs that ended as run_tally
-- keeps them (schema patch 0022), the running ones from the history.
SELECT name, host, status, decision, blocked, runs,
       CASE WHEN status = 'succeeded' THEN last_finished_at END AS finished_at,
       CASE WHEN status = 'succeeded' THEN last_started_at END AS started_at
  FROM cronpolicy.run_tally
 WHERE :host IS NULL OR host = :host
 UNION ALL
SELECT name, host, status, coalesce(decision, ''), block IS NOT NULL, count(*), NULL, NULL
  FROM cronpolicy.script_run
 WHERE status = 'running' AND (:host IS NULL OR host = :host)
 GROUP BY name, host, status, coalesce(decision, ''), block IS NOT NULL



-- name: metrics_latest_runs
-- Per script and host, the run that finished last (not a skipped start;
-- by the clock, then the higher id) and the run with an estimate that
-- started last (the running ones among them), each flagged which; of one
-- host, or of every host when host is NULL.  From run_tally (schema patch
-- 0022) and the running runs.
SELECT name, host, id, started_at, finished_at, estimate_seconds, last_run, latest_estimate
  FROM (SELECT name, host, last_run_id AS id, last_run_started_at AS started_at,
               last_finished_at AS finished_at, last_run_estimate_seconds AS estimate_seconds,
               1 AS last_run, 0 AS latest_estimate,
               row_number() OVER (PARTITION BY name, host
                                  ORDER BY last_finished_at DESC, last_run_id DESC) AS nth
          FROM cronpolicy.run_tally
         WHERE status <> 'skipped' AND last_run_id IS NOT NULL
           AND (:host IS NULL OR host = :host)
         UNION ALL
        SELECT name, host, id, started_at, finished_at, estimate_seconds, 0, 1,
               row_number() OVER (PARTITION BY name, host ORDER BY started_at DESC, id DESC)
          FROM (SELECT name, host, estimated_id AS id, estimated_started_at AS started_at,
                       estimated_finished_at AS finished_at,
                       estimated_seconds AS estimate_seconds
                  FROM cronpolicy.run_tally WHERE estimated_id IS NOT NULL
                 UNION ALL
                SELECT name, host, id, started_at, finished_at, estimate_seconds
                  FROM cronpolicy.script_run
                 WHERE status = 'running' AND estimate_seconds IS NOT NULL)
         WHERE :host IS NULL OR host = :host)
 WHERE nth = 1


-- name: rollout_stalls
-- Of the rollouts deploy wait saw quiet, when each began and when it was quiet.
SELECT quiet_at, began_at FROM cronpolicy.rollout WHERE quiet_at IS NOT NULL


-- name: last_drain
-- The drain (deploy wait) that finished last.
SELECT * FROM cronpolicy.drain ORDER BY finished_at DESC, id DESC LIMIT 1
