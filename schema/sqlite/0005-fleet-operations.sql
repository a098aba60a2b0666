-- cronpolicy schema patch 0005 for the embedded SQLite backend: see
-- ../0005-fleet-operations.sql.

ALTER TABLE cronpolicy.script_policy ADD COLUMN expected_interval DOUBLE
    CONSTRAINT script_policy_expected_interval_positive CHECK (expected_interval > 0);

ALTER TABLE cronpolicy.script_run ADD COLUMN expected_interval DOUBLE;

CREATE TABLE cronpolicy.drain (
    id                       INTEGER NOT NULL PRIMARY KEY,
    started_at               TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    finished_at              TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    host                     TEXT NOT NULL DEFAULT '*',
    quiet                    BOOLEAN NOT NULL,
    longest_blocker          TEXT,
    longest_blocker_seconds  DOUBLE,
    CONSTRAINT drain_finishes_after_start CHECK (julianday(finished_at) >= julianday(started_at)),
    CONSTRAINT drain_quiet_boolean CHECK (quiet IN (0, 1))
);
CREATE INDEX cronpolicy.drain_finished_at_idx ON drain (finished_at);
