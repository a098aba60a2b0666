-- cronpolicy schema patch 0001 for the embedded SQLite backend.
--
-- The same tables, columns and constraints as ../0001-initial.sql, in
-- SQLite's dialect.  cronpolicy attaches the database file under the name
-- "cronpolicy", so code and recipes say cronpolicy.script_policy on both
-- backends; inside the sqlite3 shell the tables have no prefix.
--
-- Timestamps are TEXT in UTC, 'YYYY-MM-DD HH:MM:SS.SSS' (what
-- strftime('%Y-%m-%d %H:%M:%f', 'now') gives); intervals are seconds.
-- Applied automatically on first use, inside one transaction.

CREATE TABLE cronpolicy.schema_version (
    version     INTEGER NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE cronpolicy.script_policy (
    id                INTEGER NOT NULL PRIMARY KEY,
    name              TEXT NOT NULL,
    host              TEXT NOT NULL DEFAULT '*',
    enabled           BOOLEAN NOT NULL DEFAULT 1,
    reason            TEXT NOT NULL DEFAULT '',
    expected_runtime  DOUBLE,
    rollout_exempt    BOOLEAN NOT NULL DEFAULT 0,
    changed_by        TEXT NOT NULL DEFAULT '',
    changed_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT script_policy_name_host_key UNIQUE (name, host),
    CONSTRAINT script_policy_name_not_empty CHECK (name <> ''),
    CONSTRAINT script_policy_host_not_empty CHECK (host <> ''),
    CONSTRAINT script_policy_enabled_boolean CHECK (enabled IN (0, 1)),
    CONSTRAINT script_policy_rollout_exempt_boolean CHECK (rollout_exempt IN (0, 1)),
    CONSTRAINT script_policy_expected_runtime_positive CHECK (expected_runtime > 0)
);

CREATE TRIGGER cronpolicy.script_policy_touch AFTER UPDATE ON script_policy
    FOR EACH ROW WHEN NEW.changed_at = OLD.changed_at
BEGIN
    UPDATE script_policy SET changed_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
     WHERE id = NEW.id;
END;

CREATE TABLE cronpolicy.deploy_state (
    id              INTEGER NOT NULL PRIMARY KEY DEFAULT 1,
    deploy_pending  BOOLEAN NOT NULL DEFAULT 0,
    reason          TEXT NOT NULL DEFAULT '',
    changed_by      TEXT NOT NULL DEFAULT '',
    changed_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT deploy_state_single_row CHECK (id = 1),
    CONSTRAINT deploy_state_deploy_pending_boolean CHECK (deploy_pending IN (0, 1))
);

INSERT INTO cronpolicy.deploy_state (id) VALUES (1);

CREATE TRIGGER cronpolicy.deploy_state_touch AFTER UPDATE ON deploy_state
    FOR EACH ROW WHEN NEW.changed_at = OLD.changed_at
BEGIN
    UPDATE deploy_state SET changed_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
     WHERE id = NEW.id;
END;

CREATE TRIGGER cronpolicy.deploy_state_keep_row BEFORE DELETE ON deploy_state
BEGIN
    SELECT RAISE(ABORT, 'cronpolicy.deploy_state must keep its single row; UPDATE deploy_pending instead');
END;

CREATE TABLE cronpolicy.rollout_window (
    id            INTEGER NOT NULL PRIMARY KEY,
    starts_at     TEXT NOT NULL,
    ends_at       TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    host          TEXT NOT NULL DEFAULT '*',
    script        TEXT NOT NULL DEFAULT '*',
    created_by    TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    cancelled_at  TEXT,
    cancelled_by  TEXT,
    CONSTRAINT rollout_window_ends_after_start CHECK (julianday(ends_at) > julianday(starts_at)),
    CONSTRAINT rollout_window_host_not_empty CHECK (host <> ''),
    CONSTRAINT rollout_window_script_not_empty CHECK (script <> '')
);

CREATE INDEX cronpolicy.rollout_window_standing_idx ON rollout_window (ends_at)
    WHERE cancelled_at IS NULL;

CREATE TABLE cronpolicy.script_run (
    id                INTEGER NOT NULL PRIMARY KEY,
    name              TEXT NOT NULL,
    host              TEXT NOT NULL,
    pid               INTEGER,
    started_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    finished_at       TEXT,
    status            TEXT NOT NULL DEFAULT 'running',
    exit_code         INTEGER,
    skip_reason       TEXT,
    estimate_seconds  DOUBLE,
    estimate_source   TEXT,
    policy_ignored    BOOLEAN NOT NULL DEFAULT 0,
    CONSTRAINT script_run_name_not_empty CHECK (name <> ''),
    CONSTRAINT script_run_known_status
        CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    CONSTRAINT script_run_finished_unless_running
        CHECK ((status = 'running') = (finished_at IS NULL)),
    CONSTRAINT script_run_finishes_after_start
        CHECK (julianday(finished_at) >= julianday(started_at)),
    CONSTRAINT script_run_policy_ignored_boolean CHECK (policy_ignored IN (0, 1))
);

CREATE INDEX cronpolicy.script_run_estimate_idx ON script_run (name, finished_at DESC)
    WHERE status = 'succeeded';
CREATE INDEX cronpolicy.script_run_running_idx ON script_run (name)
    WHERE status = 'running';
CREATE INDEX cronpolicy.script_run_name_started_idx ON script_run (name, started_at DESC);
CREATE INDEX cronpolicy.script_run_started_idx ON script_run (started_at);
