-- cronpolicy schema patch 0022: a tally of the runs, kept as each run ends.
--
-- `cronpolicy metrics` and `cronpolicy overdue` read, of every script and
-- host, how many runs ended in each way, when the latest of them started
-- and finished, the run that finished last and the run with an estimate
-- that started last.  They worked it out from the whole of script_run at
-- every scrape: at 5,000 schedules and a million rows of history a scrape
-- read for 1.7 s of the server's time, and a fleet keeping 90 days of
-- history has tens of millions of rows.  The database now keeps those
-- answers in run_tally as each run reaches its end (a skip as it is
-- recorded, a run as it stops running), so the readers read one row per
-- script, host and way of ending, however long the history.
--
-- What a run's start costs is unchanged: a run still running is in no
-- tally row (the readers count running runs from script_run, by its index
-- of running runs), so the start's INSERT and the heartbeats fire nothing.
-- A run's end adds one upsert of one small row.
--
-- The tally remembers: deleting rows of script_run (prune, or a DBA) takes
-- nothing from it, so counters never go down and a pair's last success
-- stays known after its row is pruned.  A row whose end is changed (its
-- status, decision or block rewritten, or a run recorded abandoned that is
-- heard from again) leaves the count of what it was and joins the count of
-- what it is; when it was what its old bucket knew latest (a start, the
-- last finished run, an estimate, an interval, a declared runtime), the
-- bucket's rows still in the history say what is latest now.
--
-- Locks: the upsert runs at the end of the statement that ended the run
-- (an AFTER ROW trigger), after the statement has locked every script_run
-- row it changes, so a reap of many dead runs never holds a tally row
-- while it waits for a run's row.

CREATE TABLE IF NOT EXISTS cronpolicy.run_tally (
    name                      text NOT NULL,
    host                      text NOT NULL,
    status                    text NOT NULL,
    decision                  text NOT NULL DEFAULT '',
    blocked                   boolean NOT NULL DEFAULT false,
    runs                      bigint NOT NULL DEFAULT 0,
    last_started_at           timestamptz,
    last_finished_at          timestamptz,
    last_run_id               bigint,
    last_run_started_at       timestamptz,
    last_run_estimate_seconds double precision,
    estimated_id              bigint,
    estimated_started_at      timestamptz,
    estimated_finished_at     timestamptz,
    estimated_seconds         double precision,
    interval_id               bigint,
    expected_interval         double precision,
    declared_id               bigint,
    declared_started_at       timestamptz,
    declared_seconds          double precision,
    PRIMARY KEY (name, host, status, decision, blocked),
    CONSTRAINT run_tally_runs_not_negative CHECK (runs >= 0)
);
COMMENT ON TABLE cronpolicy.run_tally IS
    'The runs that ended, by script, host, final status, decision and whether a rollout or window skipped them, kept by the database as each run ends (trigger script_run_tally): what metrics and overdue read instead of the whole history. Deleting history takes nothing from it.';
COMMENT ON COLUMN cronpolicy.run_tally.name IS 'The script the runs were of.';
COMMENT ON COLUMN cronpolicy.run_tally.host IS 'The host they ran (or were skipped) on.';
COMMENT ON COLUMN cronpolicy.run_tally.status IS 'Their final status (script_run.status; never running).';
COMMENT ON COLUMN cronpolicy.run_tally.decision IS 'The decision they recorded ('''' for none).';
COMMENT ON COLUMN cronpolicy.run_tally.blocked IS
    'Whether they were skips that named the rollout or window behind them (script_run.block).';
COMMENT ON COLUMN cronpolicy.run_tally.runs IS
    'How many runs ended so, in all (with those prune deleted before schema 22: pruned_runs).';
COMMENT ON COLUMN cronpolicy.run_tally.last_started_at IS 'The latest start among them.';
COMMENT ON COLUMN cronpolicy.run_tally.last_finished_at IS 'The latest end among them.';
COMMENT ON COLUMN cronpolicy.run_tally.last_run_id IS
    'The run among them that finished last (the higher id of those that finished together).';
COMMENT ON COLUMN cronpolicy.run_tally.last_run_started_at IS 'When that run started.';
COMMENT ON COLUMN cronpolicy.run_tally.last_run_estimate_seconds IS 'That run''s estimate.';
COMMENT ON COLUMN cronpolicy.run_tally.estimated_id IS
    'The run among them with an estimate that started last (the higher id of those that started together).';
COMMENT ON COLUMN cronpolicy.run_tally.estimated_started_at IS 'When that run started.';
COMMENT ON COLUMN cronpolicy.run_tally.estimated_finished_at IS 'When that run ended.';
COMMENT ON COLUMN cronpolicy.run_tally.estimated_seconds IS 'That run''s estimate.';
COMMENT ON COLUMN cronpolicy.run_tally.interval_id IS
    'The newest run among them (by id) that declared an expected interval.';
COMMENT ON COLUMN cronpolicy.run_tally.expected_interval IS 'The interval it declared (seconds).';
COMMENT ON COLUMN cronpolicy.run_tally.declared_id IS
    'The run among them that started last deciding with the runtime its script declared (estimate_source script''s expected_runtime...; then the higher id).';
COMMENT ON COLUMN cronpolicy.run_tally.declared_started_at IS 'When that run started.';
COMMENT ON COLUMN cronpolicy.run_tally.declared_seconds IS 'The runtime it declared.';

-- A run that ended joins its bucket (tally_run), and an ended run that is
-- rewritten leaves its old one first (tally_leave): two functions, so that
-- a run's end, on a new connection every time, compiles only the one it
-- calls (the rare leave's statements cost it 0.2 ms as one).  SECURITY
-- DEFINER: a script's login writes script_run, never the tally.
CREATE OR REPLACE FUNCTION cronpolicy.tally_run() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- Decided with the runtime its script declared: estimate.SCRIPT_SOURCE
    -- (test_run_tally holds the two together).
    declared boolean := NEW.estimate_source LIKE 'script''s expected_runtime%';
BEGIN
    INSERT INTO cronpolicy.run_tally AS t
           (name, host, status, decision, blocked, runs, last_started_at,
            last_finished_at, last_run_id, last_run_started_at, last_run_estimate_seconds,
            estimated_id, estimated_started_at, estimated_finished_at, estimated_seconds,
            interval_id, expected_interval, declared_id, declared_started_at,
            declared_seconds)
    VALUES (NEW.name, NEW.host, NEW.status, coalesce(NEW.decision, ''),
            NEW.block IS NOT NULL, 1, NEW.started_at, NEW.finished_at, NEW.id,
            NEW.started_at, NEW.estimate_seconds,
            CASE WHEN NEW.estimate_seconds IS NOT NULL THEN NEW.id END,
            CASE WHEN NEW.estimate_seconds IS NOT NULL THEN NEW.started_at END,
            CASE WHEN NEW.estimate_seconds IS NOT NULL THEN NEW.finished_at END,
            NEW.estimate_seconds,
            CASE WHEN NEW.expected_interval IS NOT NULL THEN NEW.id END,
            NEW.expected_interval,
            CASE WHEN declared THEN NEW.id END,
            CASE WHEN declared THEN NEW.started_at END,
            CASE WHEN declared THEN NEW.estimate_seconds END)
    ON CONFLICT (name, host, status, decision, blocked) DO UPDATE SET
        -- (a count at the largest a bigint holds, a DBA's, stays there:
        -- it must not refuse the end of a run)
        runs = t.runs + CASE WHEN t.runs < 9223372036854775807 THEN 1 ELSE 0 END,
        last_started_at = greatest(t.last_started_at, excluded.last_started_at),
        last_finished_at = greatest(t.last_finished_at, excluded.last_finished_at),
        -- Each SET sees the row as it was, so a group's comparisons
        -- agree.  (Row comparisons written out, not a function: a call
        -- apiece cost a run's end on a new connection a third of a
        -- millisecond.)
        -- the run that finished last, then the higher id
        last_run_id = CASE WHEN t.last_run_id IS NULL
                OR (excluded.last_finished_at, excluded.last_run_id)
                   > (t.last_finished_at, t.last_run_id)
            THEN excluded.last_run_id ELSE t.last_run_id END,
        last_run_started_at = CASE WHEN t.last_run_id IS NULL
                OR (excluded.last_finished_at, excluded.last_run_id)
                   > (t.last_finished_at, t.last_run_id)
            THEN excluded.last_run_started_at ELSE t.last_run_started_at END,
        last_run_estimate_seconds = CASE WHEN t.last_run_id IS NULL
                OR (excluded.last_finished_at, excluded.last_run_id)
                   > (t.last_finished_at, t.last_run_id)
            THEN excluded.last_run_estimate_seconds ELSE t.last_run_estimate_seconds END,
        -- the run with an estimate that started last, then the higher id
        estimated_id = CASE WHEN excluded.estimated_id IS NOT NULL
                AND (t.estimated_id IS NULL
                OR (excluded.estimated_started_at, excluded.estimated_id)
                   > (t.estimated_started_at, t.estimated_id))
            THEN excluded.estimated_id ELSE t.estimated_id END,
        estimated_started_at = CASE WHEN excluded.estimated_id IS NOT NULL
                AND (t.estimated_id IS NULL
                OR (excluded.estimated_started_at, excluded.estimated_id)
                   > (t.estimated_started_at, t.estimated_id))
            THEN excluded.estimated_started_at ELSE t.estimated_started_at END,
        estimated_finished_at = CASE WHEN excluded.estimated_id IS NOT NULL
                AND (t.estimated_id IS NULL
                OR (excluded.estimated_started_at, excluded.estimated_id)
                   > (t.estimated_started_at, t.estimated_id))
            THEN excluded.estimated_finished_at ELSE t.estimated_finished_at END,
        estimated_seconds = CASE WHEN excluded.estimated_id IS NOT NULL
                AND (t.estimated_id IS NULL
                OR (excluded.estimated_started_at, excluded.estimated_id)
                   > (t.estimated_started_at, t.estimated_id))
            THEN excluded.estimated_seconds ELSE t.estimated_seconds END,
        -- the newest run that declared an expected interval
        interval_id = CASE WHEN t.interval_id IS NULL
                OR excluded.interval_id > t.interval_id
            THEN excluded.interval_id ELSE t.interval_id END,
        expected_interval = CASE WHEN t.interval_id IS NULL
                OR excluded.interval_id > t.interval_id
            THEN excluded.expected_interval ELSE t.expected_interval END,
        -- the run deciding with a declared runtime that started last, then the higher id
        declared_id = CASE WHEN excluded.declared_id IS NOT NULL
                AND (t.declared_id IS NULL
                OR (excluded.declared_started_at, excluded.declared_id)
                   > (t.declared_started_at, t.declared_id))
            THEN excluded.declared_id ELSE t.declared_id END,
        declared_started_at = CASE WHEN excluded.declared_id IS NOT NULL
                AND (t.declared_id IS NULL
                OR (excluded.declared_started_at, excluded.declared_id)
                   > (t.declared_started_at, t.declared_id))
            THEN excluded.declared_started_at ELSE t.declared_started_at END,
        declared_seconds = CASE WHEN excluded.declared_id IS NOT NULL
                AND (t.declared_id IS NULL
                OR (excluded.declared_started_at, excluded.declared_id)
                   > (t.declared_started_at, t.declared_id))
            THEN excluded.declared_seconds ELSE t.declared_seconds END;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION cronpolicy.tally_run() IS
    'Keeps run_tally: a run that ended joins its bucket.';

CREATE OR REPLACE FUNCTION cronpolicy.tally_leave() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- What of its old bucket the run that left it was (each NULL or false: not it).
    was_start boolean; was_last boolean; was_estimated boolean; was_interval boolean;
    was_declared boolean;
BEGIN
    UPDATE cronpolicy.run_tally SET runs = greatest(runs - 1, 0)
     WHERE name = OLD.name AND host = OLD.host AND status = OLD.status
       AND decision = coalesce(OLD.decision, '') AND blocked = (OLD.block IS NOT NULL)
    RETURNING last_started_at = OLD.started_at, last_run_id = OLD.id, estimated_id = OLD.id,
              interval_id = OLD.id, declared_id = OLD.id
         INTO was_start, was_last, was_estimated, was_interval, was_declared;
    -- The run was its bucket's latest start, last finished run, latest
    -- estimate, newest interval or latest declared runtime: the bucket's
    -- rows in the history say which run is now (a run heard from again
    -- is running, not the pair's last finished run; a success rewritten
    -- as a failure is no longer its last success).  Rare (an ended row
    -- rewritten), and one script's rows by script_run_name_started_idx.
    IF was_start THEN
        UPDATE cronpolicy.run_tally SET last_started_at = (
                SELECT max(r.started_at) FROM cronpolicy.script_run AS r
                 WHERE r.name = OLD.name AND r.host = OLD.host AND r.status = OLD.status
                   AND coalesce(r.decision, '') = coalesce(OLD.decision, '')
                   AND (r.block IS NOT NULL) = (OLD.block IS NOT NULL))
         WHERE name = OLD.name AND host = OLD.host AND status = OLD.status
           AND decision = coalesce(OLD.decision, '') AND blocked = (OLD.block IS NOT NULL);
    END IF;
    IF was_last THEN
        UPDATE cronpolicy.run_tally
           SET (last_run_id, last_run_started_at, last_finished_at,
                last_run_estimate_seconds) = (
                SELECT r.id, r.started_at, r.finished_at, r.estimate_seconds
                  FROM cronpolicy.script_run AS r
                 WHERE r.name = OLD.name AND r.host = OLD.host AND r.status = OLD.status
                   AND coalesce(r.decision, '') = coalesce(OLD.decision, '')
                   AND (r.block IS NOT NULL) = (OLD.block IS NOT NULL)
                 ORDER BY r.finished_at DESC, r.id DESC LIMIT 1)
         WHERE name = OLD.name AND host = OLD.host AND status = OLD.status
           AND decision = coalesce(OLD.decision, '') AND blocked = (OLD.block IS NOT NULL);
    END IF;
    IF was_estimated THEN
        UPDATE cronpolicy.run_tally
           SET (estimated_id, estimated_started_at, estimated_finished_at,
                estimated_seconds) = (
                SELECT r.id, r.started_at, r.finished_at, r.estimate_seconds
                  FROM cronpolicy.script_run AS r
                 WHERE r.name = OLD.name AND r.host = OLD.host AND r.status = OLD.status
                   AND coalesce(r.decision, '') = coalesce(OLD.decision, '')
                   AND (r.block IS NOT NULL) = (OLD.block IS NOT NULL)
                   AND r.estimate_seconds IS NOT NULL
                 ORDER BY r.started_at DESC, r.id DESC LIMIT 1)
         WHERE name = OLD.name AND host = OLD.host AND status = OLD.status
           AND decision = coalesce(OLD.decision, '') AND blocked = (OLD.block IS NOT NULL);
    END IF;
    IF was_interval THEN
        UPDATE cronpolicy.run_tally SET (interval_id, expected_interval) = (
                SELECT r.id, r.expected_interval FROM cronpolicy.script_run AS r
                 WHERE r.name = OLD.name AND r.host = OLD.host AND r.status = OLD.status
                   AND coalesce(r.decision, '') = coalesce(OLD.decision, '')
                   AND (r.block IS NOT NULL) = (OLD.block IS NOT NULL)
                   AND r.expected_interval IS NOT NULL
                 ORDER BY r.id DESC LIMIT 1)
         WHERE name = OLD.name AND host = OLD.host AND status = OLD.status
           AND decision = coalesce(OLD.decision, '') AND blocked = (OLD.block IS NOT NULL);
    END IF;
    IF was_declared THEN
        UPDATE cronpolicy.run_tally
           SET (declared_id, declared_started_at, declared_seconds) = (
                SELECT r.id, r.started_at, r.estimate_seconds
                  FROM cronpolicy.script_run AS r
                 WHERE r.name = OLD.name AND r.host = OLD.host AND r.status = OLD.status
                   AND coalesce(r.decision, '') = coalesce(OLD.decision, '')
                   AND (r.block IS NOT NULL) = (OLD.block IS NOT NULL)
                   AND r.estimate_source LIKE 'script''s expected_runtime%'
                 ORDER BY r.started_at DESC, r.id DESC LIMIT 1)
         WHERE name = OLD.name AND host = OLD.host AND status = OLD.status
           AND decision = coalesce(OLD.decision, '') AND blocked = (OLD.block IS NOT NULL);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION cronpolicy.tally_leave() IS
    'Keeps run_tally: an ended run rewritten leaves its old bucket, which takes its latest runs again from the history when it was one of them.';

DROP TRIGGER IF EXISTS script_run_tally_insert ON cronpolicy.script_run;
CREATE TRIGGER script_run_tally_insert
    AFTER INSERT ON cronpolicy.script_run
    FOR EACH ROW WHEN (NEW.status <> 'running')
    EXECUTE FUNCTION cronpolicy.tally_run();
COMMENT ON TRIGGER script_run_tally_insert ON cronpolicy.script_run IS
    'A run recorded already ended (a skip, a spooled run) joins run_tally; a start does nothing.';
-- (leave before update: a row's triggers fire in the order of their names)
DROP TRIGGER IF EXISTS script_run_tally_leave ON cronpolicy.script_run;
CREATE TRIGGER script_run_tally_leave
    AFTER UPDATE ON cronpolicy.script_run
    FOR EACH ROW WHEN (OLD.status <> 'running'
                       AND (OLD.name, OLD.host, OLD.status, OLD.decision, OLD.block,
                            OLD.started_at, OLD.finished_at, OLD.estimate_seconds,
                            OLD.estimate_source, OLD.expected_interval)
                           IS DISTINCT FROM
                           (NEW.name, NEW.host, NEW.status, NEW.decision, NEW.block,
                            NEW.started_at, NEW.finished_at, NEW.estimate_seconds,
                            NEW.estimate_source, NEW.expected_interval))
    EXECUTE FUNCTION cronpolicy.tally_leave();
COMMENT ON TRIGGER script_run_tally_leave ON cronpolicy.script_run IS
    'An ended run rewritten (or heard from again) leaves its bucket of run_tally; an end or a heartbeat does nothing.';
DROP TRIGGER IF EXISTS script_run_tally_update ON cronpolicy.script_run;
CREATE TRIGGER script_run_tally_update
    AFTER UPDATE ON cronpolicy.script_run
    FOR EACH ROW WHEN (NEW.status <> 'running'
                       AND (OLD.name, OLD.host, OLD.status, OLD.decision, OLD.block,
                            OLD.started_at, OLD.finished_at, OLD.estimate_seconds,
                            OLD.estimate_source, OLD.expected_interval)
                           IS DISTINCT FROM
                           (NEW.name, NEW.host, NEW.status, NEW.decision, NEW.block,
                            NEW.started_at, NEW.finished_at, NEW.estimate_seconds,
                            NEW.estimate_source, NEW.expected_interval))
    EXECUTE FUNCTION cronpolicy.tally_run();
COMMENT ON TRIGGER script_run_tally_update ON cronpolicy.script_run IS
    'A run that ended, or an ended run rewritten, joins its bucket of run_tally; a heartbeat does nothing.';

-- What the history holds now, and what prune deleted before (pruned_runs:
-- the tally takes their counts; prune still adds to pruned_runs, which
-- metrics no longer reads).
INSERT INTO cronpolicy.run_tally
       (name, host, status, decision, blocked, runs, last_started_at, last_finished_at,
        last_run_id, last_run_started_at, last_run_estimate_seconds,
        estimated_id, estimated_started_at, estimated_finished_at, estimated_seconds,
        interval_id, expected_interval, declared_id, declared_started_at, declared_seconds)
-- (a sum past the largest bigint, of an absurd pruned_runs count, stays at it)
SELECT b.name, b.host, b.status, b.decision, b.blocked,
       least(b.runs::numeric + coalesce(p.runs, 0), 9223372036854775807)::bigint,
       b.last_started_at, b.last_finished_at,
       l.id, l.started_at, l.estimate_seconds,
       e.id, e.started_at, e.finished_at, e.estimate_seconds,
       i.id, i.expected_interval, d.id, d.started_at, d.estimate_seconds
  FROM (SELECT name, host, status, coalesce(decision, '') AS decision,
               block IS NOT NULL AS blocked, count(*) AS runs,
               max(started_at) AS last_started_at, max(finished_at) AS last_finished_at
          FROM cronpolicy.script_run WHERE status <> 'running'
         GROUP BY 1, 2, 3, 4, 5) AS b
  LEFT JOIN cronpolicy.pruned_runs AS p USING (name, host, status, decision, blocked)
  LEFT JOIN (SELECT DISTINCT ON (name, host, status, coalesce(decision, ''), block IS NOT NULL)
                    name, host, status, coalesce(decision, '') AS decision,
                    block IS NOT NULL AS blocked, id, started_at, estimate_seconds
               FROM cronpolicy.script_run WHERE status <> 'running'
              ORDER BY name, host, status, coalesce(decision, ''), block IS NOT NULL,
                       finished_at DESC, id DESC) AS l
         USING (name, host, status, decision, blocked)
  LEFT JOIN (SELECT DISTINCT ON (name, host, status, coalesce(decision, ''), block IS NOT NULL)
                    name, host, status, coalesce(decision, '') AS decision,
                    block IS NOT NULL AS blocked, id, started_at, finished_at, estimate_seconds
               FROM cronpolicy.script_run
              WHERE status <> 'running' AND estimate_seconds IS NOT NULL
              ORDER BY name, host, status, coalesce(decision, ''), block IS NOT NULL,
                       started_at DESC, id DESC) AS e
         USING (name, host, status, decision, blocked)
  LEFT JOIN (SELECT DISTINCT ON (name, host, status, coalesce(decision, ''), block IS NOT NULL)
                    name, host, status, coalesce(decision, '') AS decision,
                    block IS NOT NULL AS blocked, id, expected_interval
               FROM cronpolicy.script_run
              WHERE status <> 'running' AND expected_interval IS NOT NULL
              ORDER BY name, host, status, coalesce(decision, ''), block IS NOT NULL,
                       id DESC) AS i
         USING (name, host, status, decision, blocked)
  LEFT JOIN (SELECT DISTINCT ON (name, host, status, coalesce(decision, ''), block IS NOT NULL)
                    name, host, status, coalesce(decision, '') AS decision,
                    block IS NOT NULL AS blocked, id, started_at, estimate_seconds
               FROM cronpolicy.script_run
              WHERE status <> 'running'
                AND estimate_source LIKE 'script''s expected_runtime%'
              ORDER BY name, host, status, coalesce(decision, ''), block IS NOT NULL,
                       started_at DESC, id DESC) AS d
         USING (name, host, status, decision, blocked)
ON CONFLICT DO NOTHING;
INSERT INTO cronpolicy.run_tally (name, host, status, decision, blocked, runs)
SELECT name, host, status, decision, blocked, runs FROM cronpolicy.pruned_runs
    WHERE status <> 'running'
ON CONFLICT DO NOTHING;

-- Databases whose roles were set up before this patch: the rights roles.sql gives.
DO $$
BEGIN
    -- (what script_run tells anyone who may read it; rollout tooling has
    -- it through cronpolicy_script)
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_script') THEN
        GRANT SELECT ON cronpolicy.run_tally TO cronpolicy_script;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_reader') THEN
        GRANT SELECT ON cronpolicy.run_tally TO cronpolicy_reader;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON cronpolicy.run_tally
            TO cronpolicy_admin;
    END IF;
END
$$;
