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


-- name: policy_sets_schedule
-- Whether a policy row sets a schedule (usually none does: then a script's
-- schedule is its host's crontab line or its own declaration, and `schedule
-- list` need not read the policy rows).
SELECT EXISTS (SELECT 1 FROM cronpolicy.script_policy WHERE schedule IS NOT NULL) AS sets


-- name: standing_windows
-- Windows neither cancelled nor over, soonest first.
SELECT * FROM cronpolicy.rollout_window
 WHERE cancelled_at IS NULL AND ends_at > %(now)s
 ORDER BY starts_at, id


-- name: all_windows
-- Every window, cancelled and over too, by start (`window list --all`).
SELECT * FROM cronpolicy.rollout_window ORDER BY starts_at, id


-- name: running_runs
-- Runs recorded as running, oldest first (dead ones among them until reaped).
SELECT * FROM cronpolicy.script_run WHERE status = 'running' ORDER BY started_at, id


-- name: recent_runs
SELECT * FROM cronpolicy.script_run ORDER BY started_at DESC, id DESC LIMIT %(limit)s


-- name: fleet_runs_since
-- The newest runs (and skipped starts) that started after a moment, newest
-- first, at most a limit: what `cronpolicy serve` draws (script_run_started_idx).
SELECT id, name, host, status, started_at, finished_at, exit_code, decision,
       skip_reason, stop_reason, estimate_seconds, safe_to_interrupt, release
  FROM cronpolicy.script_run WHERE started_at > %(since)s
 ORDER BY started_at DESC, id DESC LIMIT %(limit)s


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


-- name: audit_entries
-- The newest audit entries (`cronpolicy audit`): at most limit, made since
-- a moment and of one table when those are given, newest first.
SELECT * FROM cronpolicy.policy_audit
 WHERE (%(since)s::timestamptz IS NULL OR changed_at >= %(since)s::timestamptz)
   AND (%(table_name)s::text IS NULL OR table_name = %(table_name)s::text)
 ORDER BY id DESC LIMIT %(limit)s


-- name: reap_dead_runs
-- A SECURITY DEFINER function (patch 0004): roles that may only update
-- their own runs can still record other hosts' dead runs as abandoned.
SELECT cronpolicy.reap_dead_runs() AS id


-- name: owners_without_roles
-- Ownership rows naming a role the server does not know (dropped since:
-- schema patch 0015 refuses new ones), which give a name or a host to no one.
SELECT 'script_owner' AS table_name, o.id, o.name AS owned, o.db_role
  FROM cronpolicy.script_owner AS o
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = o.db_role)
UNION ALL
SELECT 'host_login', h.id, h.host, h.db_role FROM cronpolicy.host_login AS h
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = h.db_role)
ORDER BY 1, 2


-- name: registered_schedules_since
-- What each host's crontab says (cronpolicy schedule import), its columns
-- named (read as tuples), who registered each left out: what the planners
-- and the reports of a fleet's schedules need (a line's registration is
-- since when it is known).  In no order: the callers look rows up by name
-- and host (sorting a fleet's 5,000 rows by their text took PostgreSQL 10
-- to 25 ms).  Of one host when %(host)s is not NULL (`metrics --host H`,
-- every host each minute: not the fleet's rows each).
SELECT name, host, schedule, schedule_tz, origin, registered_at
  FROM cronpolicy.script_schedule
 WHERE %(host)s::text IS NULL OR host = %(host)s


-- name: registered_schedule_lines
-- The same, without who registered them when: what status's count of
-- schedules and their first starts need (turning 5,000 registration times
-- into datetimes was a tenth of its time on a fleet of that size).
SELECT name, host, schedule, schedule_tz, origin FROM cronpolicy.script_schedule


-- name: declared_schedules
-- What each script declared (CronScript.schedule) at its latest start on
-- each host (of one host when %(host)s is not NULL) since a moment
-- (script_run_declared_schedule_idx).
SELECT DISTINCT ON (name, host) name, host, schedule, schedule_tz, started_at
  FROM cronpolicy.script_run
 WHERE schedule IS NOT NULL AND started_at > %(since)s
   AND (%(host)s::text IS NULL OR host = %(host)s)
 ORDER BY name, host, started_at DESC


-- name: declared_runtimes
-- The runtime each script declared (CronScript.expected_runtime, `run
-- --expected-runtime`) at its latest start on each host since a moment
-- that decided with it: its estimate came from the declaration (too
-- little history, no policy row's runtime).  What planners believe until
-- a script's history is enough.  The runs that ended as run_tally keeps
-- them (schema patch 0022; its trigger knows the declared source's words
-- as estimate.SCRIPT_SOURCE says them), the running ones from the history.
SELECT DISTINCT ON (name, host) name, host, estimate_seconds, started_at
  FROM (SELECT name, host, declared_seconds AS estimate_seconds,
               declared_started_at AS started_at, declared_id AS id
          FROM cronpolicy.run_tally WHERE declared_started_at > %(since)s
         UNION ALL
        SELECT name, host, estimate_seconds, started_at, id FROM cronpolicy.script_run
         WHERE status = 'running' AND estimate_source LIKE %(declared)s
           AND started_at > %(since)s) AS declared
 ORDER BY name, host, started_at DESC, id DESC


-- name: recent_runtimes
-- A script's last succeeded runs as its estimate reads them (the gate
-- reads the same in load_inputs, postgresql.sql, in its one round trip;
-- SQLite's statement of this name is in sqlite.sql): timed by the
-- database's clock only, a spooled run's times are a host's.
SELECT extract(epoch FROM finished_at - started_at)::float8 AS seconds
  FROM cronpolicy.script_run
 WHERE name = %(name)s AND status = 'succeeded' AND NOT spooled
 ORDER BY finished_at DESC LIMIT %(runs)s


-- name: hosts_of
-- The hosts a script ran or was skipped on since a moment, and when last.
SELECT host, max(started_at) AS last_seen FROM cronpolicy.script_run
 WHERE name = %(name)s AND started_at > %(since)s
 GROUP BY host ORDER BY host


-- name: recent_pairs
-- Every (script, host) seen since a moment: what a rollout may meet.  The
-- runs that ended as run_tally keeps them (schema patch 0022), the runs
-- still running from the history (script_run_running_idx): not a pass
-- over the history.  Of one host when %(host)s is not NULL.
SELECT name, host FROM cronpolicy.run_tally
 WHERE last_started_at > %(since)s AND (%(host)s::text IS NULL OR host = %(host)s)
 UNION
SELECT name, host FROM cronpolicy.script_run
 WHERE status = 'running' AND started_at > %(since)s
   AND (%(host)s::text IS NULL OR host = %(host)s)



-- name: ran_since
-- Whether the script started for real on a host after a moment.
SELECT count(*) AS runs FROM cronpolicy.script_run
 WHERE name = %(name)s AND host = %(host)s AND status <> 'skipped' AND started_at > %(since)s


-- name: pair_starts
-- Of every (script, host) the history has seen: whether it started or was
-- skipped since a moment (recent_pairs) and when its newest success
-- started (last_success_on), from run_tally and the runs still running.
SELECT name, host, bool_or(started_at > %(since)s) AS recent,
       max(CASE WHEN status = 'succeeded' THEN started_at END) AS last_success
  FROM (SELECT name, host, status, last_started_at AS started_at FROM cronpolicy.run_tally
         WHERE last_started_at IS NOT NULL
         UNION ALL
        SELECT name, host, status, started_at FROM cronpolicy.script_run
         WHERE status = 'running') AS seen
 GROUP BY name, host

-- name: last_success_on
-- A script's latest success on one host (script_run_name_started_idx, newest first).
SELECT started_at, finished_at FROM cronpolicy.script_run
 WHERE name = %(name)s AND host = %(host)s AND status = 'succeeded'
 ORDER BY started_at DESC LIMIT 1


-- name: recent_starts_of_each
-- Each script's newest starts (host, status, needs), for many scripts in one
-- round trip (a planner over a fleet of thousands of jobs), by
-- script_run_name_started_idx.
SELECT asked.name, run.host, run.status, run.started_at, run.needs
  FROM unnest(%(names)s::text[]) AS asked (name)
 CROSS JOIN LATERAL (SELECT host, status, started_at, needs FROM cronpolicy.script_run
                      WHERE name = asked.name
                      ORDER BY started_at DESC, id DESC LIMIT %(limit)s) AS run
 ORDER BY asked.name, run.started_at DESC


-- name: recent_runtimes_of_each
-- recent_runtimes for many scripts in one round trip, newest first per name.
SELECT asked.name, timed.seconds FROM unnest(%(names)s::text[]) AS asked (name)
 CROSS JOIN LATERAL (SELECT extract(epoch FROM finished_at - started_at)::float8 AS seconds,
                            finished_at
                       FROM cronpolicy.script_run
                      WHERE name = asked.name AND status = 'succeeded' AND NOT spooled
                      ORDER BY finished_at DESC LIMIT %(runs)s) AS timed
 ORDER BY asked.name, timed.finished_at DESC


-- name: last_success_of_each
-- last_success_on for many (script, host) pairs in one round trip.
SELECT asked.name, asked.host, found.started_at
  FROM unnest(%(names)s::text[], %(hosts)s::text[]) AS asked (name, host)
 CROSS JOIN LATERAL (SELECT started_at FROM cronpolicy.script_run
                      WHERE name = asked.name AND host = asked.host AND status = 'succeeded'
                      ORDER BY started_at DESC LIMIT 1) AS found


-- name: declared_intervals
-- The expected interval each script declared at its latest start that
-- declared one (seconds): of the runs that ended as run_tally keeps them
-- (schema patch 0022), and of the running ones.
SELECT DISTINCT ON (name) name, expected_interval
  FROM (SELECT name, interval_id AS id, expected_interval FROM cronpolicy.run_tally
         WHERE interval_id IS NOT NULL
         UNION ALL
        SELECT name, id, expected_interval FROM cronpolicy.script_run
         WHERE status = 'running' AND expected_interval IS NOT NULL) AS declared
 ORDER BY name, id DESC


-- name: last_finished_success_of_each
-- When each script last succeeded (its newest finish, any host) and, for
-- one that never did, when it was first heard of: what `overdue` measures
-- an expected interval from (script_run_estimate_idx, script_run_name_started_idx).
SELECT asked.name,
       (SELECT max(finished_at) FROM cronpolicy.script_run
         WHERE name = asked.name AND status = 'succeeded') AS last_success,
       (SELECT min(started_at) FROM cronpolicy.script_run
         WHERE name = asked.name) AS first_started
  FROM unnest(%(names)s::text[]) AS asked (name)


-- name: runs_since
-- A script's runs since a moment, newest first (at most 1000): what
-- `overdue` says happened after its last success.
SELECT status, started_at, skip_reason, exit_code, decision FROM cronpolicy.script_run
 WHERE name = %(name)s AND started_at >= %(since)s
 ORDER BY started_at DESC LIMIT 1000


-- name: rollouts_in_a_row_of_each
-- rollouts_in_a_row for many scripts in one round trip.
SELECT name, host, count(DISTINCT block) AS blocks FROM cronpolicy.script_run AS skipped
 WHERE name = ANY(%(names)s::text[]) AND status = 'skipped' AND block IS NOT NULL
   AND decision = ANY(%(rollout_skips)s::text[])
   AND started_at > coalesce((SELECT max(started_at) FROM cronpolicy.script_run
                               WHERE name = skipped.name AND host = skipped.host
                                 AND status <> 'skipped'), '-infinity')
 GROUP BY name, host


-- name: services
-- The services with a deploy pending.
SELECT * FROM cronpolicy.service_deploy ORDER BY service


-- name: rollouts_in_a_row
-- How many rollouts in a row skipped a script, on each of its hosts: the
-- distinct blocks of its rollout skips there since it last started there
-- for real (script_run_block_idx; the last real start by
-- script_run_name_started_idx).  One statement a script, for all its hosts.
SELECT host, count(DISTINCT block) AS blocks FROM cronpolicy.script_run AS skipped
 WHERE name = %(name)s AND status = 'skipped' AND block IS NOT NULL
   AND decision = ANY(%(rollout_skips)s::text[])
   AND started_at > coalesce((SELECT max(started_at) FROM cronpolicy.script_run
                               WHERE name = %(name)s AND host = skipped.host
                                 AND status <> 'skipped'), '-infinity')
 GROUP BY host


-- name: open_rollouts
-- Rollouts not ended, oldest first (rollout_open_idx).
SELECT * FROM cronpolicy.rollout WHERE ended_at IS NULL ORDER BY began_at, id


-- name: rollouts_by_id
-- Oldest first, as open_rollouts.
SELECT * FROM cronpolicy.rollout WHERE id = ANY(%(ids)s::bigint[]) ORDER BY began_at, id



-- name: listen_runs
-- deploy wait hears of the end of runs (schema patch 0012's NOTIFY).
LISTEN cronpolicy_run


-- name: rollouts
-- The newest rollouts, open or ended, and the oldest open ones however old
-- (as many again at most): one forgotten open must not fall off the list.
SELECT * FROM (SELECT * FROM cronpolicy.rollout ORDER BY began_at DESC, id DESC LIMIT %(limit)s) AS newest
UNION
SELECT * FROM (SELECT * FROM cronpolicy.rollout WHERE ended_at IS NULL
                ORDER BY began_at, id LIMIT %(limit)s) AS still_open
ORDER BY began_at DESC, id DESC


-- name: rollout_skipped_starts
-- The starts each rollout skipped (script_run_skip_block_idx).
SELECT block, count(*) AS starts FROM cronpolicy.script_run
 WHERE block = ANY (%(blocks)s) AND status = 'skipped'
 GROUP BY block


-- name: rollout_interrupted_runs
-- The runs each rollout interrupted (script_run_stop_block_idx).
SELECT stop_block AS block, count(*) AS runs FROM cronpolicy.script_run
 WHERE stop_block = ANY (%(blocks)s) AND status = 'interrupted'
 GROUP BY stop_block


-- name: rollout_awaited_runs
-- The runs each rollout waited for, in the order they were first seen,
-- each with when it started (NULL once pruned): a run that started after
-- its rollout began did not hold it before.
SELECT a.*, r.started_at AS run_started_at
  FROM cronpolicy.rollout_awaited AS a
  LEFT JOIN cronpolicy.script_run AS r ON r.id = a.run_id
 WHERE a.rollout_id = ANY (%(ids)s)
 ORDER BY a.rollout_id, a.first_seen_at, a.run_id


-- name: writable_tables
-- The tables of the schema this login may change in any way (column rights
-- included): `cronpolicy serve` refuses a login that can write.
SELECT c.relname AS table_name
  FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE n.nspname = 'cronpolicy' AND c.relkind IN ('r', 'p')
   AND (has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
        OR has_any_column_privilege(c.oid, 'INSERT, UPDATE'))
 ORDER BY 1


-- name: metrics_runs
-- What `metrics` counts of the runs: per script, host, status, decision
-- ('' for none) and whether a rollout's block is named, how many runs, and
-- of succeeded runs the latest finish and the latest start (of the rest
-- none: metrics asks only a success's); of one host, or of every host when
-- host is NULL.  The runs that ended as run_tally keeps them (schema patch
-- 0022: with what prune deleted, never less), the running ones counted
-- from the history by script_run_running_idx.
SELECT name, host, status, decision, blocked, runs,
       CASE WHEN status = 'succeeded' THEN last_finished_at END AS finished_at,
       CASE WHEN status = 'succeeded' THEN last_started_at END AS started_at
  FROM cronpolicy.run_tally
 WHERE %(host)s::text IS NULL OR host = %(host)s
 UNION ALL
SELECT name, host, status, coalesce(decision, ''), block IS NOT NULL, count(*), NULL, NULL
  FROM cronpolicy.script_run
 WHERE status = 'running' AND (%(host)s::text IS NULL OR host = %(host)s)
 GROUP BY name, host, status, coalesce(decision, ''), block IS NOT NULL



-- name: metrics_latest_runs
-- Per script and host, the run that finished last (a finished run, not a
-- skipped start; by the clock, not by id: an imported or late-flushed old
-- run has a high id; then the higher id) and the run with an estimate that
-- started last (the runs still running among them), each flagged which;
-- of one host, or of every host when host is NULL.  From run_tally (schema
-- patch 0022) and the running runs: not a pass over the history.  (NULLS
-- LAST: a row a DBA wrote with a run and no time is not the latest, as on
-- SQLite.)
(SELECT DISTINCT ON (name, host) name, host, last_run_id, last_run_started_at,
        last_finished_at, last_run_estimate_seconds, true AS last_run, false AS latest_estimate
   FROM cronpolicy.run_tally
  WHERE status <> 'skipped' AND last_run_id IS NOT NULL
    AND (%(host)s::text IS NULL OR host = %(host)s)
  ORDER BY name, host, last_finished_at DESC NULLS LAST, last_run_id DESC)
UNION ALL
(SELECT DISTINCT ON (name, host) name, host, id, started_at, finished_at, estimate_seconds,
        false, true
   FROM (SELECT name, host, estimated_id AS id, estimated_started_at AS started_at,
                estimated_finished_at AS finished_at, estimated_seconds AS estimate_seconds
           FROM cronpolicy.run_tally WHERE estimated_id IS NOT NULL
          UNION ALL
         SELECT name, host, id, started_at, finished_at, estimate_seconds
           FROM cronpolicy.script_run
          WHERE status = 'running' AND estimate_seconds IS NOT NULL) AS estimated
  WHERE %(host)s::text IS NULL OR host = %(host)s
  ORDER BY name, host, started_at DESC NULLS LAST, id DESC)


-- name: rollout_stalls
-- Of the rollouts deploy wait saw quiet, when each began and when it was quiet.
SELECT quiet_at, began_at FROM cronpolicy.rollout WHERE quiet_at IS NOT NULL


-- name: last_drain
-- The drain (deploy wait) that finished last.
SELECT * FROM cronpolicy.drain ORDER BY finished_at DESC, id DESC LIMIT 1
