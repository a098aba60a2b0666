-- cronpolicy schema patch 0011: an audit that administrators cannot bend.
--
-- * TRUNCATE of script_policy, rollout_window or script_owner is audited
--   with its rows: one TRUNCATE entry for the statement (row_id NULL), then
--   one per row removed, with the row in old_row.  (Before, the rows were
--   gone without a trace.)
-- * Who changed a row is set by the database: changed_by, created_by and
--   cancelled_by are the login (session_user), whatever the statement
--   said; policy_audit.db_user, written by the audit triggers, is the same.
-- * roles.sql (applied again after this patch) gives policy_audit and the
--   audit functions to the role cronpolicy_auditor, which is granted to no
--   one, and leaves administrators SELECT on the audit and no TRIGGER right
--   anywhere: an administrator can no longer delete entries, nor add a
--   trigger that drops them.  Only a superuser can.

-- Row documents spell intervals one way ('1 day 02:00:00'), whatever
-- IntervalStyle the session that made the change had.
ALTER FUNCTION cronpolicy.audit_change() SET intervalstyle = 'postgres';

CREATE OR REPLACE FUNCTION cronpolicy.audit_truncate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET intervalstyle = 'postgres' AS $$
DECLARE
    why text := nullif(current_setting('cronpolicy.reason', true), '');
BEGIN
    INSERT INTO cronpolicy.policy_audit (table_name, operation, reason)
    VALUES (TG_TABLE_NAME, TG_OP, why);
    EXECUTE format('INSERT INTO cronpolicy.policy_audit (table_name, operation, row_id, old_row, reason)'
                   ' SELECT %L, %L, t.id, to_jsonb(t), $1 FROM %I.%I AS t ORDER BY t.id',
                   TG_TABLE_NAME, TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME)
        USING why;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION cronpolicy.audit_truncate() IS
    'Writes policy_audit entries for a TRUNCATE: one for the statement, one per row removed.';

-- Before the rows are gone, not after.
DROP TRIGGER script_policy_audit_truncate ON cronpolicy.script_policy;
DROP TRIGGER rollout_window_audit_truncate ON cronpolicy.rollout_window;
DROP TRIGGER script_owner_audit_truncate ON cronpolicy.script_owner;
CREATE TRIGGER script_policy_audit_truncate BEFORE TRUNCATE ON cronpolicy.script_policy
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.audit_truncate();
CREATE TRIGGER rollout_window_audit_truncate BEFORE TRUNCATE ON cronpolicy.rollout_window
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.audit_truncate();
CREATE TRIGGER script_owner_audit_truncate BEFORE TRUNCATE ON cronpolicy.script_owner
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.audit_truncate();


-- The login, not what the statement claims.
CREATE OR REPLACE FUNCTION cronpolicy.touch_changed() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    NEW.changed_at := now();
    NEW.changed_by := session_user;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION cronpolicy.touch_changed() IS
    'Sets changed_at and changed_by (the login) on every insert and update.';

CREATE TRIGGER script_policy_touch_insert BEFORE INSERT ON cronpolicy.script_policy
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.touch_changed();

CREATE FUNCTION cronpolicy.touch_window() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.created_by := session_user;
        NEW.created_at := now();
    ELSE
        NEW.created_by := OLD.created_by;
        NEW.created_at := OLD.created_at;
    END IF;
    IF NEW.cancelled_at IS NULL THEN
        NEW.cancelled_by := NULL;
    ELSIF TG_OP = 'INSERT' OR OLD.cancelled_at IS NULL
          OR NEW.cancelled_at IS DISTINCT FROM OLD.cancelled_at THEN
        NEW.cancelled_by := session_user;
    ELSE
        NEW.cancelled_by := OLD.cancelled_by;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION cronpolicy.touch_window() IS
    'Sets created_by/created_at when a window is scheduled and cancelled_by (the login) when it '
    'is cancelled.';

CREATE TRIGGER rollout_window_touch BEFORE INSERT OR UPDATE ON cronpolicy.rollout_window
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.touch_window();

COMMENT ON COLUMN cronpolicy.script_policy.changed_by IS
    'Database user (login) who last changed the row; set by a trigger, whatever the statement says.';
COMMENT ON COLUMN cronpolicy.deploy_state.changed_by IS
    'Database user (login) who last flipped the switch; set by a trigger, whatever the statement says.';
COMMENT ON COLUMN cronpolicy.rollout_window.created_by IS
    'Database user (login) who scheduled the window; set by a trigger.';
COMMENT ON COLUMN cronpolicy.rollout_window.cancelled_by IS
    'Database user (login) who cancelled the window; set by a trigger.';
-- Until roles.sql is applied again, take from administrators at once what
-- it no longer grants them, and remove what they could have planted with
-- it: triggers on the audit itself (cronpolicy puts none there).
DO $$
DECLARE
    planted record;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin') THEN
        REVOKE TRIGGER ON ALL TABLES IN SCHEMA cronpolicy FROM cronpolicy_admin;
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES ON cronpolicy.policy_audit
            FROM cronpolicy_admin;
        REVOKE ALL ON SEQUENCE cronpolicy.policy_audit_id_seq FROM cronpolicy_admin;
    END IF;
    FOR planted IN SELECT tgname FROM pg_trigger
                    WHERE tgrelid = 'cronpolicy.policy_audit'::regclass AND NOT tgisinternal LOOP
        RAISE NOTICE 'dropping trigger % on cronpolicy.policy_audit: nothing may filter the audit',
            planted.tgname;
        EXECUTE format('DROP TRIGGER %I ON cronpolicy.policy_audit', planted.tgname);
    END LOOP;
END
$$;

COMMENT ON TABLE cronpolicy.policy_audit IS
    'Every change to script_policy, rollout_window, deploy_state and script_owner, written by '
    'triggers (TRUNCATE included, row by row).  With roles.sql applied it belongs to '
    'cronpolicy_auditor, a role granted to no one: only superusers may change or delete entries.';
