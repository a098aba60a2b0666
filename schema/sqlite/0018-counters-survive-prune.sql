-- cronpolicy schema patch 0018 for the embedded SQLite backend: see
-- ../0018-counters-survive-prune.sql.

CREATE TABLE cronpolicy.pruned_runs (
    name      TEXT NOT NULL,
    host      TEXT NOT NULL,
    status    TEXT NOT NULL,
    decision  TEXT NOT NULL DEFAULT '',
    blocked   BOOLEAN NOT NULL DEFAULT 0,
    runs      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, host, status, decision, blocked),
    CONSTRAINT pruned_runs_runs_not_negative CHECK (typeof(runs) = 'integer' AND runs >= 0),
    CONSTRAINT pruned_runs_blocked_boolean CHECK (blocked IN (0, 1))
);
