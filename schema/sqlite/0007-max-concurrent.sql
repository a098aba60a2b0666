-- cronpolicy schema patch 0007 for the embedded SQLite backend: see
-- ../0007-max-concurrent.sql.  The script_policy audit triggers list the
-- columns by hand, so they are rebuilt to include the new one.

ALTER TABLE cronpolicy.script_policy ADD COLUMN max_concurrent INTEGER
    CONSTRAINT script_policy_max_concurrent_positive CHECK (max_concurrent > 0);

DROP TRIGGER cronpolicy.script_policy_audit_insert;
DROP TRIGGER cronpolicy.script_policy_audit_update;
DROP TRIGGER cronpolicy.script_policy_audit_delete;

CREATE TRIGGER cronpolicy.script_policy_audit_insert AFTER INSERT ON script_policy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('script_policy', 'INSERT', NEW.id, json_object('id', NEW.id, 'name', NEW.name, 'host', NEW.host, 'enabled', NEW.enabled, 'reason', NEW.reason, 'expected_runtime', NEW.expected_runtime, 'rollout_exempt', NEW.rollout_exempt, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at, 'interruptible', NEW.interruptible, 'fleet_single_instance', NEW.fleet_single_instance, 'expected_interval', NEW.expected_interval, 'max_concurrent', NEW.max_concurrent));
END;

CREATE TRIGGER cronpolicy.script_policy_audit_update AFTER UPDATE ON script_policy
    -- not for the changed_at touch of script_policy_touch
    FOR EACH ROW WHEN NOT (NEW.changed_at <> OLD.changed_at AND NEW.id IS OLD.id AND NEW.name IS OLD.name AND NEW.host IS OLD.host AND NEW.enabled IS OLD.enabled AND NEW.reason IS OLD.reason AND NEW.expected_runtime IS OLD.expected_runtime AND NEW.rollout_exempt IS OLD.rollout_exempt AND NEW.changed_by IS OLD.changed_by AND NEW.interruptible IS OLD.interruptible AND NEW.fleet_single_instance IS OLD.fleet_single_instance AND NEW.expected_interval IS OLD.expected_interval AND NEW.max_concurrent IS OLD.max_concurrent)
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('script_policy', 'UPDATE', NEW.id, json_object('id', OLD.id, 'name', OLD.name, 'host', OLD.host, 'enabled', OLD.enabled, 'reason', OLD.reason, 'expected_runtime', OLD.expected_runtime, 'rollout_exempt', OLD.rollout_exempt, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at, 'interruptible', OLD.interruptible, 'fleet_single_instance', OLD.fleet_single_instance, 'expected_interval', OLD.expected_interval, 'max_concurrent', OLD.max_concurrent),
            json_object('id', NEW.id, 'name', NEW.name, 'host', NEW.host, 'enabled', NEW.enabled, 'reason', NEW.reason, 'expected_runtime', NEW.expected_runtime, 'rollout_exempt', NEW.rollout_exempt, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at, 'interruptible', NEW.interruptible, 'fleet_single_instance', NEW.fleet_single_instance, 'expected_interval', NEW.expected_interval, 'max_concurrent', NEW.max_concurrent));
END;

CREATE TRIGGER cronpolicy.script_policy_audit_delete AFTER DELETE ON script_policy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('script_policy', 'DELETE', OLD.id, json_object('id', OLD.id, 'name', OLD.name, 'host', OLD.host, 'enabled', OLD.enabled, 'reason', OLD.reason, 'expected_runtime', OLD.expected_runtime, 'rollout_exempt', OLD.rollout_exempt, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at, 'interruptible', OLD.interruptible, 'fleet_single_instance', OLD.fleet_single_instance, 'expected_interval', OLD.expected_interval, 'max_concurrent', OLD.max_concurrent));
END;
