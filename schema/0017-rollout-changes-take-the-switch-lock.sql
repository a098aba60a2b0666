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
-- A rollout marked quiet takes it too: `deploy wait` marks every rollout
-- it finds quiet in one transaction, row after row, and `deploy end --all`
-- ends them in one statement in its own order: each held a row the other
-- wanted (deadlock detected, one of them exit 4).  A lease renewed takes
-- no lock (one row, and it changes neither switch).  The order is always
-- deploy_state, then rollout and service_deploy rows, so these locks
-- cannot deadlock each other.
--
-- And a rollout never begins in the future.  An administrator may say when
-- a rollout began (to record one of the past); one said to begin tomorrow
-- could not be ended (ended_at, now, before began_at: a check violation,
-- the plain-SQL switch refused too) nor marked quiet, and kept the fleet
-- stopped.  Its began_at is now at most the database's now, when inserted
-- and whenever the row changes (so such a row written before this patch is
-- mended by the change that ends it).
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
    BEFORE INSERT OR DELETE OR UPDATE OF kind, services, reason, ended_at, quiet_at
    ON cronpolicy.rollout
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


-- patch 0016's touch_rollout, but that began_at is never after now().
CREATE OR REPLACE FUNCTION cronpolicy.touch_rollout() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NOT cronpolicy.is_administrator(session_user) THEN
        NEW.owner := session_user;
        NEW.began_at := now();
        NEW.quiet_at := NULL;
        NEW.ended_at := NULL;
        NEW.ended_by := NULL;
    ELSIF TG_OP = 'INSERT' THEN
        -- Administrators may record a rollout of the past (patch 0016 does),
        -- not one of the future.
        NEW.began_at := least(NEW.began_at, now());
        NEW.ended_by := CASE WHEN NEW.ended_at IS NULL THEN NULL
                             ELSE coalesce(NEW.ended_by, session_user) END;
    ELSE
        IF NEW.kind IS DISTINCT FROM OLD.kind OR NEW.services IS DISTINCT FROM OLD.services THEN
            RAISE EXCEPTION 'rollout #% stays of what it began with (% %); end it and begin another',
                OLD.id, OLD.kind, nullif(OLD.services, '')
                USING ERRCODE = 'check_violation';
        END IF;
        IF OLD.ended_at IS NOT NULL AND NEW.ended_at IS DISTINCT FROM OLD.ended_at THEN
            RAISE EXCEPTION 'rollout #% ended at %; begin another', OLD.id, OLD.ended_at
                USING ERRCODE = 'check_violation';
        END IF;
        NEW.id := OLD.id;
        NEW.owner := OLD.owner;
        -- (A row said to begin in the future before patch 0017: mended now.)
        NEW.began_at := CASE WHEN OLD.ended_at IS NULL THEN least(OLD.began_at, now())
                             ELSE OLD.began_at END;
        IF OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL THEN
            NEW.ended_at := now();
            NEW.ended_by := session_user;
            NEW.lease_expires_at := NULL;
        ELSE
            NEW.ended_by := OLD.ended_by;
        END IF;
        -- First seen quiet: once, and never before it began nor after now.
        NEW.quiet_at := CASE WHEN OLD.quiet_at IS NOT NULL THEN OLD.quiet_at
                             WHEN NEW.quiet_at IS NULL THEN NULL
                             ELSE greatest(NEW.began_at, least(NEW.quiet_at, now())) END;
    END IF;
    -- (least() would make a missing lease an hour's: NULL stays NULL.)
    IF NEW.lease_expires_at IS NOT NULL THEN
        NEW.lease_expires_at := least(NEW.lease_expires_at, now() + interval '1 hour');
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION cronpolicy.touch_rollout() IS
    'Sets a rollout''s owner, began_at, ended_at and ended_by (the login, the database clock; '
    'administrators may say otherwise when they insert one, but never a beginning after now); '
    'keeps its kind and services; an ended rollout stays ended; caps the lease at an hour.';
