-- cronpolicy schema patch 0002: running scripts hear about rollouts.
--
-- * script_run rows of running scripts carry a heartbeat and whether the
--   script currently says it is safe to interrupt; runs can end as
--   'interrupted' (stopped at a safe point) or 'abandoned' (the process died).
-- * script_policy can mark scripts interruptible at any time, and ask for a
--   fleet-wide single instance.
-- * Changes to policies, windows and the deploy switch, by the CLI or by a
--   DBA's plain SQL, are announced on the channel cronpolicy_policy so that
--   running scripts (which LISTEN) hear of them at once.

ALTER TABLE cronpolicy.script_run
    ADD COLUMN heartbeat_at       timestamptz,
    ADD COLUMN safe_to_interrupt  boolean NOT NULL DEFAULT false,
    ADD COLUMN stop_reason        text;
COMMENT ON COLUMN cronpolicy.script_run.heartbeat_at IS
    'Last sign of life of a running script (database clock), refreshed every few seconds.';
COMMENT ON COLUMN cronpolicy.script_run.safe_to_interrupt IS
    'What the running script last said: true if stopping it now would leave no mess.';
COMMENT ON COLUMN cronpolicy.script_run.stop_reason IS
    'Why a run was interrupted or abandoned.';

ALTER TABLE cronpolicy.script_run DROP CONSTRAINT script_run_known_status;
ALTER TABLE cronpolicy.script_run ADD CONSTRAINT script_run_known_status
    CHECK (status IN ('running', 'succeeded', 'failed', 'skipped', 'interrupted', 'abandoned'));
COMMENT ON COLUMN cronpolicy.script_run.status IS
    'running, succeeded, failed, skipped, interrupted (stopped at a safe point for a rollout or '
    'SIGTERM) or abandoned (the process died without recording an end).';

ALTER TABLE cronpolicy.script_policy
    ADD COLUMN interruptible          boolean NOT NULL DEFAULT false,
    ADD COLUMN fleet_single_instance  boolean;
COMMENT ON COLUMN cronpolicy.script_policy.interruptible IS
    'true: the script may be stopped at any moment, even without an is_safe_to_interrupt() hook.';
COMMENT ON COLUMN cronpolicy.script_policy.fleet_single_instance IS
    'true: at most one live run across all hosts; false: per host only; NULL: as the script declares.';


CREATE FUNCTION cronpolicy.notify_policy_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM pg_notify('cronpolicy_policy', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION cronpolicy.notify_policy_change() IS
    'Announces a change of policies, windows or the deploy switch to running scripts.';

CREATE TRIGGER script_policy_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cronpolicy.script_policy
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.notify_policy_change();
CREATE TRIGGER deploy_state_notify
    AFTER INSERT OR UPDATE OR DELETE ON cronpolicy.deploy_state
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.notify_policy_change();
CREATE TRIGGER rollout_window_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cronpolicy.rollout_window
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.notify_policy_change();
