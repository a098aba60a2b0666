-- cronpolicy schema patch 0017: every change of the rollouts takes the
-- deploy switch's row lock first.
--
-- Patch 0016 keeps deploy_state and service_deploy in step with the open
-- rollouts by triggers that read the rollouts after each change.  Two
-- transactions changing different rollouts at once each read the other's
-- rows as they were before it (READ COMMITTED, neither committed): two
-- `deploy end`s of the last two full rollouts each saw the other still
-- open and left deploy_pending set with no rollout open; a `deploy end`
-- racing a `deploy begin` cleared it under the new rollout; a DBA's plain
-- UPDATE of the switch racing `deploy begin` did the same.
--
-- Now a statement that opens, ends or changes a rollout (or a row of
-- service_deploy) first locks the one row of deploy_state, as a plain
-- UPDATE of the switch does: changes of the rollouts are made one after the
-- other, and the triggers that follow read what the one before committed.
-- A lease renewed, or a rollout marked quiet, takes no lock (they change
-- neither switch).  The order is always deploy_state, then rollout and
-- service_deploy rows, so these locks cannot deadlock each other.
--
-- Applying it again changes nothing (OR REPLACE, IF EXISTS).

CREATE OR REPLACE FUNCTION cronpolicy.lock_deploy_switch() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM cronpolicy.deploy_state WHERE id = 1 FOR UPDATE;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION cronpolicy.lock_deploy_switch() IS
    'Locks the row of deploy_state before a change of the rollouts or of service_deploy, so '
    'concurrent changes are made one after the other and the switches follow them all.';

DROP TRIGGER IF EXISTS rollout_lock_switch ON cronpolicy.rollout;
CREATE TRIGGER rollout_lock_switch
    BEFORE INSERT OR DELETE OR UPDATE OF kind, services, reason, ended_at ON cronpolicy.rollout
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.lock_deploy_switch();
DROP TRIGGER IF EXISTS rollout_lock_switch_truncate ON cronpolicy.rollout;
CREATE TRIGGER rollout_lock_switch_truncate BEFORE TRUNCATE ON cronpolicy.rollout
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.lock_deploy_switch();
DROP TRIGGER IF EXISTS service_deploy_lock_switch ON cronpolicy.service_deploy;
CREATE TRIGGER service_deploy_lock_switch
    BEFORE INSERT OR DELETE OR UPDATE ON cronpolicy.service_deploy
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.lock_deploy_switch();
DROP TRIGGER IF EXISTS service_deploy_lock_switch_truncate ON cronpolicy.service_deploy;
CREATE TRIGGER service_deploy_lock_switch_truncate BEFORE TRUNCATE ON cronpolicy.service_deploy
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.lock_deploy_switch();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin') THEN
        GRANT EXECUTE ON FUNCTION cronpolicy.lock_deploy_switch() TO cronpolicy_admin;
    END IF;
END
$$;
