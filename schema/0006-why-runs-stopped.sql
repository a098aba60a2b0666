-- cronpolicy schema patch 0006: why a run stopped, as data.
--
-- An interrupted run records its stop verdict the way every start records
-- its decision: the rule's code and the policy row and window involved, so
-- `cronpolicy why` finds the change behind an interruption from columns,
-- never from reason text.  (The SQLite twin of this patch also repairs that
-- backend's audit triggers, which had not learned of expected_interval.)

ALTER TABLE cronpolicy.script_run
    ADD COLUMN stop_decision   text,
    ADD COLUMN stop_policy_id  integer,
    ADD COLUMN stop_window_id  integer;
COMMENT ON COLUMN cronpolicy.script_run.stop_decision IS
    'Why a run was interrupted: disabled, deploy-pending or in-window (the policy asked it '
    'to stop), or signal (SIGTERM/SIGINT).  NULL for runs that were not interrupted.';
COMMENT ON COLUMN cronpolicy.script_run.stop_policy_id IS
    'The script_policy row of the stop verdict (the most specific matching row), if any.';
COMMENT ON COLUMN cronpolicy.script_run.stop_window_id IS
    'The rollout_window that stopped the run, if any.';
COMMENT ON COLUMN cronpolicy.script_run.decision IS
    'What the gate decided: run, disabled, deploy-pending, in-window, window-cutoff, locked or '
    'database-unreachable; for a run forced with --ignore-policy, the decision it overrode.';

-- Scripts record these when a run ends.  roles.sql grants them too, but a
-- database whose roles were set up before this patch keeps the older grants
-- until roles.sql is applied again: grant them here, so no run's end is
-- refused after an upgrade.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_script') THEN
        GRANT UPDATE (stop_decision, stop_policy_id, stop_window_id)
            ON cronpolicy.script_run TO cronpolicy_script;
    END IF;
END
$$;
