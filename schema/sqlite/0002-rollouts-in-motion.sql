-- cronpolicy schema patch 0002 for the embedded SQLite backend: see
-- ../0002-rollouts-in-motion.sql.  SQLite cannot change a CHECK constraint in
-- place, so script_run is rebuilt; there is no NOTIFY here, running scripts
-- poll instead.

CREATE TABLE cronpolicy.script_run_new (
    id                 INTEGER NOT NULL PRIMARY KEY,
    name               TEXT NOT NULL,
    host               TEXT NOT NULL,
    pid                INTEGER,
    started_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    finished_at        TEXT,
    status             TEXT NOT NULL DEFAULT 'running',
    exit_code          INTEGER,
    skip_reason        TEXT,
    estimate_seconds   DOUBLE,
    estimate_source    TEXT,
    policy_ignored     BOOLEAN NOT NULL DEFAULT 0,
    heartbeat_at       TEXT,
    safe_to_interrupt  BOOLEAN NOT NULL DEFAULT 0,
    stop_reason        TEXT,
    CONSTRAINT script_run_name_not_empty CHECK (name <> ''),
    CONSTRAINT script_run_known_status
        CHECK (status IN ('running', 'succeeded', 'failed', 'skipped', 'interrupted', 'abandoned')),
    CONSTRAINT script_run_finished_unless_running
        CHECK ((status = 'running') = (finished_at IS NULL)),
    CONSTRAINT script_run_finishes_after_start
        CHECK (julianday(finished_at) >= julianday(started_at)),
    CONSTRAINT script_run_policy_ignored_boolean CHECK (policy_ignored IN (0, 1)),
    CONSTRAINT script_run_safe_to_interrupt_boolean CHECK (safe_to_interrupt IN (0, 1))
);

INSERT INTO cronpolicy.script_run_new
    (id, name, host, pid, started_at, finished_at, status, exit_code, skip_reason,
     estimate_seconds, estimate_source, policy_ignored)
SELECT id, name, host, pid, started_at, finished_at, status, exit_code, skip_reason,
       estimate_seconds, estimate_source, policy_ignored
  FROM cronpolicy.script_run;

DROP TABLE cronpolicy.script_run;
ALTER TABLE cronpolicy.script_run_new RENAME TO script_run;

CREATE INDEX cronpolicy.script_run_estimate_idx ON script_run (name, finished_at DESC)
    WHERE status = 'succeeded';
CREATE INDEX cronpolicy.script_run_running_idx ON script_run (name)
    WHERE status = 'running';
CREATE INDEX cronpolicy.script_run_name_started_idx ON script_run (name, started_at DESC);
CREATE INDEX cronpolicy.script_run_started_idx ON script_run (started_at);

ALTER TABLE cronpolicy.script_policy ADD COLUMN interruptible BOOLEAN NOT NULL DEFAULT 0
    CONSTRAINT script_policy_interruptible_boolean CHECK (interruptible IN (0, 1));
ALTER TABLE cronpolicy.script_policy ADD COLUMN fleet_single_instance BOOLEAN
    CONSTRAINT script_policy_fleet_single_instance_boolean
        CHECK (fleet_single_instance IN (0, 1));
