-- cronpolicy schema patch 0018: counters that pruning never lowers.
--
-- `cronpolicy metrics` exports Prometheus counters counted from script_run:
-- runs by final status, skips by the decision, starts rollouts skipped,
-- catch-up runs.  `cronpolicy prune` deleting old rows made them go down
-- (37 to 20 in one prune), which Prometheus reads as a counter reset.
-- prune now adds what it deletes to pruned_runs, in the same transaction
-- as the delete, and each counter is script_run's rows plus these.  (Rows
-- deleted by other means than prune still lower them.)

CREATE TABLE IF NOT EXISTS cronpolicy.pruned_runs (
    name      text NOT NULL,
    host      text NOT NULL,
    status    text NOT NULL,
    decision  text NOT NULL DEFAULT '',
    blocked   boolean NOT NULL DEFAULT false,
    runs      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, host, status, decision, blocked),
    CONSTRAINT pruned_runs_runs_not_negative CHECK (runs >= 0)
);
COMMENT ON TABLE cronpolicy.pruned_runs IS
    'How many runs `cronpolicy prune` deleted, by script, host, final status, decision and whether a rollout or window skipped them: the metrics counters add them to script_run''s rows.';
COMMENT ON COLUMN cronpolicy.pruned_runs.name IS 'The script the runs were of.';
COMMENT ON COLUMN cronpolicy.pruned_runs.host IS 'The host they ran (or were skipped) on.';
COMMENT ON COLUMN cronpolicy.pruned_runs.status IS 'Their final status (script_run.status).';
COMMENT ON COLUMN cronpolicy.pruned_runs.runs IS 'How many such runs prune deleted, in all.';
COMMENT ON COLUMN cronpolicy.pruned_runs.decision IS
    'The decision the runs recorded ('''' for none).';
COMMENT ON COLUMN cronpolicy.pruned_runs.blocked IS
    'Whether the runs were skips that named the rollout or window behind them (script_run.block).';

-- Databases whose roles were set up before this patch: the rights roles.sql gives.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_rollout') THEN
        GRANT SELECT ON cronpolicy.pruned_runs TO cronpolicy_rollout;     -- metrics
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON cronpolicy.pruned_runs
            TO cronpolicy_admin;
    END IF;
END
$$;
