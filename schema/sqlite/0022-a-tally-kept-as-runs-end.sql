-- cronpolicy schema patch 0022 for the embedded SQLite backend: see
-- ../0022-a-tally-kept-as-runs-end.sql.  The same table, kept by triggers
-- that do what tally_run() does there; times compare as the text the
-- library writes, as the reads' max() compares them.

CREATE TABLE cronpolicy.run_tally (
    name                      TEXT NOT NULL,
    host                      TEXT NOT NULL,
    status                    TEXT NOT NULL,
    decision                  TEXT NOT NULL DEFAULT '',
    blocked                   BOOLEAN NOT NULL DEFAULT 0,
    runs                      INTEGER NOT NULL DEFAULT 0,
    last_started_at           TEXT,
    last_finished_at          TEXT,
    last_run_id               INTEGER,
    last_run_started_at       TEXT,
    last_run_estimate_seconds DOUBLE,
    estimated_id              INTEGER,
    estimated_started_at      TEXT,
    estimated_finished_at     TEXT,
    estimated_seconds         DOUBLE,
    interval_id               INTEGER,
    expected_interval         DOUBLE,
    declared_id               INTEGER,
    declared_started_at       TEXT,
    declared_seconds          DOUBLE,
    PRIMARY KEY (name, host, status, decision, blocked),
    CONSTRAINT run_tally_runs_not_negative CHECK (typeof(runs) = 'integer' AND runs >= 0)
);

-- An ended run joining its bucket, in one home for both triggers below:
-- inserting a run's row here counts it and keeps its times when later.
CREATE VIEW cronpolicy.run_tally_add AS
    SELECT id, name, host, status, decision, block, started_at, finished_at, estimate_seconds,
           estimate_source, expected_interval
      FROM script_run WHERE 0;

CREATE TRIGGER cronpolicy.run_tally_add_run INSTEAD OF INSERT ON run_tally_add
BEGIN
    INSERT OR IGNORE INTO run_tally (name, host, status, decision, blocked)
    VALUES (NEW.name, NEW.host, NEW.status, coalesce(NEW.decision, ''), NEW.block IS NOT NULL);
    -- One UPDATE: each SET sees the row as it was (so a group's
    -- comparisons agree, and each compares with the times before this run).
    UPDATE run_tally SET
        -- A count at the largest an integer holds, a DBA's, stays there (past
        -- it the sum is real, which the CHECK refuses, and the run's end with
        -- it); one written with the checks off, which metrics leaves out, is
        -- counted afresh.
        runs = CASE WHEN typeof(runs) = 'integer' AND runs >= 0
                    THEN runs + (runs < 9223372036854775807) ELSE 1 END,
        last_started_at = max(coalesce(last_started_at, ''), NEW.started_at),
        last_finished_at = max(coalesce(last_finished_at, ''), NEW.finished_at),
        -- the run that finished last (then the higher id)
        (last_run_id, last_run_started_at, last_run_estimate_seconds) = (
            SELECT CASE WHEN later THEN NEW.id ELSE last_run_id END,
                   CASE WHEN later THEN NEW.started_at ELSE last_run_started_at END,
                   CASE WHEN later THEN NEW.estimate_seconds ELSE last_run_estimate_seconds END
              FROM (SELECT last_run_id IS NULL OR NEW.finished_at > last_finished_at
                           OR (NEW.finished_at = last_finished_at
                               AND NEW.id > last_run_id) AS later)),
        -- the run with an estimate that started last (then the higher id)
        (estimated_id, estimated_started_at, estimated_finished_at, estimated_seconds) = (
            SELECT CASE WHEN later THEN NEW.id ELSE estimated_id END,
                   CASE WHEN later THEN NEW.started_at ELSE estimated_started_at END,
                   CASE WHEN later THEN NEW.finished_at ELSE estimated_finished_at END,
                   CASE WHEN later THEN NEW.estimate_seconds ELSE estimated_seconds END
              FROM (SELECT NEW.estimate_seconds IS NOT NULL AND (
                               estimated_id IS NULL OR NEW.started_at > estimated_started_at
                               OR (NEW.started_at = estimated_started_at
                                   AND NEW.id > estimated_id)) AS later)),
        -- the newest run that declared an expected interval
        (interval_id, expected_interval) = (
            SELECT CASE WHEN later THEN NEW.id ELSE interval_id END,
                   CASE WHEN later THEN NEW.expected_interval ELSE expected_interval END
              FROM (SELECT NEW.expected_interval IS NOT NULL
                           AND (interval_id IS NULL OR NEW.id > interval_id) AS later)),
        -- the run deciding with its script's declared runtime
        -- (estimate.SCRIPT_SOURCE) that started last, then the higher id
        (declared_id, declared_started_at, declared_seconds) = (
            SELECT CASE WHEN later THEN NEW.id ELSE declared_id END,
                   CASE WHEN later THEN NEW.started_at ELSE declared_started_at END,
                   CASE WHEN later THEN NEW.estimate_seconds ELSE declared_seconds END
              FROM (SELECT NEW.estimate_source LIKE 'script''s expected_runtime%' AND (
                               declared_id IS NULL OR NEW.started_at > declared_started_at
                               OR (NEW.started_at = declared_started_at
                                   AND NEW.id > declared_id)) AS later))
     WHERE name = NEW.name AND host = NEW.host AND status = NEW.status
       AND decision = coalesce(NEW.decision, '') AND blocked = (NEW.block IS NOT NULL);
END;

CREATE TRIGGER cronpolicy.script_run_tally_insert AFTER INSERT ON script_run
    FOR EACH ROW WHEN NEW.status <> 'running'
BEGIN
    INSERT INTO run_tally_add VALUES (NEW.id, NEW.name, NEW.host, NEW.status, NEW.decision,
                                      NEW.block, NEW.started_at, NEW.finished_at,
                                      NEW.estimate_seconds, NEW.estimate_source,
                                      NEW.expected_interval);
END;

CREATE TRIGGER cronpolicy.script_run_tally_update AFTER UPDATE ON script_run
    FOR EACH ROW WHEN (OLD.status <> 'running' OR NEW.status <> 'running')
        AND NOT (OLD.name IS NEW.name AND OLD.host IS NEW.host AND OLD.status IS NEW.status
                 AND OLD.decision IS NEW.decision AND OLD.block IS NEW.block
                 AND OLD.started_at IS NEW.started_at AND OLD.finished_at IS NEW.finished_at
                 AND OLD.estimate_seconds IS NEW.estimate_seconds
                 AND OLD.estimate_source IS NEW.estimate_source
                 AND OLD.expected_interval IS NEW.expected_interval)
BEGIN
    UPDATE run_tally
       SET runs = CASE WHEN typeof(runs) = 'integer' AND runs > 0 THEN runs - 1 ELSE 0 END
     WHERE OLD.status <> 'running' AND name = OLD.name AND host = OLD.host
       AND status = OLD.status AND decision = coalesce(OLD.decision, '')
       AND blocked = (OLD.block IS NOT NULL);
    -- The run that left was its old bucket's latest start, last finished
    -- run, latest estimate, newest interval or latest declared runtime:
    -- the bucket's rows in the history say which run is now (see
    -- tally_run() there).  Each UPDATE finds nothing to do unless it was.
    UPDATE run_tally SET last_started_at = (
            SELECT max(r.started_at) FROM script_run AS r
                WHERE r.name = OLD.name AND r.host = OLD.host AND r.status = OLD.status
                  AND coalesce(r.decision, '') = coalesce(OLD.decision, '')
                  AND (r.block IS NOT NULL) = (OLD.block IS NOT NULL))
     WHERE OLD.status <> 'running' AND name = OLD.name AND host = OLD.host
       AND status = OLD.status AND decision = coalesce(OLD.decision, '')
       AND blocked = (OLD.block IS NOT NULL)
       AND last_started_at = OLD.started_at;
    UPDATE run_tally
       SET (last_run_id, last_run_started_at, last_finished_at, last_run_estimate_seconds) = (
            SELECT r.id, r.started_at, r.finished_at, r.estimate_seconds FROM script_run AS r
                WHERE r.name = OLD.name AND r.host = OLD.host AND r.status = OLD.status
                  AND coalesce(r.decision, '') = coalesce(OLD.decision, '')
                  AND (r.block IS NOT NULL) = (OLD.block IS NOT NULL)
                ORDER BY r.finished_at DESC, r.id DESC LIMIT 1)
     WHERE OLD.status <> 'running' AND name = OLD.name AND host = OLD.host
       AND status = OLD.status AND decision = coalesce(OLD.decision, '')
       AND blocked = (OLD.block IS NOT NULL)
       AND last_run_id = OLD.id;
    UPDATE run_tally
       SET (estimated_id, estimated_started_at, estimated_finished_at, estimated_seconds) = (
            SELECT r.id, r.started_at, r.finished_at, r.estimate_seconds FROM script_run AS r
                WHERE r.name = OLD.name AND r.host = OLD.host AND r.status = OLD.status
                  AND coalesce(r.decision, '') = coalesce(OLD.decision, '')
                  AND (r.block IS NOT NULL) = (OLD.block IS NOT NULL)
                  AND r.estimate_seconds IS NOT NULL
                ORDER BY r.started_at DESC, r.id DESC LIMIT 1)
     WHERE OLD.status <> 'running' AND name = OLD.name AND host = OLD.host
       AND status = OLD.status AND decision = coalesce(OLD.decision, '')
       AND blocked = (OLD.block IS NOT NULL)
       AND estimated_id = OLD.id;
    UPDATE run_tally SET (interval_id, expected_interval) = (
            SELECT r.id, r.expected_interval FROM script_run AS r
                WHERE r.name = OLD.name AND r.host = OLD.host AND r.status = OLD.status
                  AND coalesce(r.decision, '') = coalesce(OLD.decision, '')
                  AND (r.block IS NOT NULL) = (OLD.block IS NOT NULL)
                  AND r.expected_interval IS NOT NULL
                ORDER BY r.id DESC LIMIT 1)
     WHERE OLD.status <> 'running' AND name = OLD.name AND host = OLD.host
       AND status = OLD.status AND decision = coalesce(OLD.decision, '')
       AND blocked = (OLD.block IS NOT NULL)
       AND interval_id = OLD.id;
    UPDATE run_tally SET (declared_id, declared_started_at, declared_seconds) = (
            SELECT r.id, r.started_at, r.estimate_seconds FROM script_run AS r
                WHERE r.name = OLD.name AND r.host = OLD.host AND r.status = OLD.status
                  AND coalesce(r.decision, '') = coalesce(OLD.decision, '')
                  AND (r.block IS NOT NULL) = (OLD.block IS NOT NULL)
                  AND r.estimate_source LIKE 'script''s expected_runtime%'
                ORDER BY r.started_at DESC, r.id DESC LIMIT 1)
     WHERE OLD.status <> 'running' AND name = OLD.name AND host = OLD.host
       AND status = OLD.status AND decision = coalesce(OLD.decision, '')
       AND blocked = (OLD.block IS NOT NULL)
       AND declared_id = OLD.id;
    INSERT INTO run_tally_add SELECT NEW.id, NEW.name, NEW.host, NEW.status, NEW.decision,
                                     NEW.block, NEW.started_at, NEW.finished_at,
                                     NEW.estimate_seconds, NEW.estimate_source,
                                     NEW.expected_interval
     WHERE NEW.status <> 'running';
END;

-- What the history holds now, and what prune deleted before (pruned_runs).
INSERT INTO cronpolicy.run_tally_add
SELECT id, name, host, status, decision, block, started_at, finished_at, estimate_seconds,
       estimate_source, expected_interval
  FROM cronpolicy.script_run WHERE status <> 'running' ORDER BY id;
-- A row of pruned_runs written with its checks off (no integer, or below
-- zero) holds no count: schema 21's metrics left it out, and so does this
-- (one such was a CHECK failure here, and a SQLite file upgrades as the
-- gate opens it).  A sum past the largest integer stays at it.
INSERT INTO cronpolicy.run_tally (name, host, status, decision, blocked, runs)
SELECT name, host, status, decision, blocked, 0 FROM cronpolicy.pruned_runs
 WHERE status <> 'running' AND typeof(runs) = 'integer' AND runs >= 0
ON CONFLICT DO NOTHING;
UPDATE cronpolicy.run_tally
   SET runs = (SELECT CASE WHEN p.runs > 9223372036854775807 - run_tally.runs
                           THEN 9223372036854775807 ELSE run_tally.runs + p.runs END
                 FROM cronpolicy.pruned_runs AS p
                WHERE p.name = run_tally.name AND p.host = run_tally.host
                  AND p.status = run_tally.status AND p.decision = run_tally.decision
                  AND p.blocked = run_tally.blocked
                  AND typeof(p.runs) = 'integer' AND p.runs >= 0)
 WHERE EXISTS (SELECT 1 FROM cronpolicy.pruned_runs AS p
                WHERE p.name = run_tally.name AND p.host = run_tally.host
                  AND p.status = run_tally.status AND p.decision = run_tally.decision
                  AND p.blocked = run_tally.blocked
                  AND typeof(p.runs) = 'integer' AND p.runs >= 0);
