-- cronpolicy schema patch 0006 for the embedded SQLite backend: see
-- ../0006-why-runs-stopped.sql.
--
-- It also repairs the script_policy audit triggers of patch 0004, which list
-- the columns by hand (SQLite has no row-to-JSON) and had not learned of
-- expected_interval (patch 0005): an UPDATE of it alone was not audited and
-- the audited rows lacked it.  tests/test_schema.py now checks that every
-- column of every audited table is audited, on both backends.

ALTER TABLE cronpolicy.script_run ADD COLUMN stop_decision TEXT;
ALTER TABLE cronpolicy.script_run ADD COLUMN stop_policy_id INTEGER;
ALTER TABLE cronpolicy.script_run ADD COLUMN stop_window_id INTEGER;

DROP TRIGGER cronpolicy.script_policy_audit_insert;
DROP TRIGGER cronpolicy.script_policy_audit_update;
DROP TRIGGER cronpolicy.script_policy_audit_delete;

CREATE TRIGGER cronpolicy.script_policy_audit_insert AFTER INSERT ON script_policy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('script_policy', 'INSERT', NEW.id, json_object('id', NEW.id, 'name', NEW.name, 'host', NEW.host, 'enabled', NEW.enabled, 'reason', NEW.reason, 'expected_runtime', NEW.expected_runtime, 'rollout_exempt', NEW.rollout_exempt, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at, 'interruptible', NEW.interruptible, 'fleet_single_instance', NEW.fleet_single_instance, 'expected_interval', NEW.expected_interval));
END;

CREATE TRIGGER cronpolicy.script_policy_audit_update AFTER UPDATE ON script_policy
    -- not for the changed_at touch of script_policy_touch
    FOR EACH ROW WHEN NOT (NEW.changed_at <> OLD.changed_at AND NEW.id IS OLD.id AND NEW.name IS OLD.name AND NEW.host IS OLD.host AND NEW.enabled IS OLD.enabled AND NEW.reason IS OLD.reason AND NEW.expected_runtime IS OLD.expected_runtime AND NEW.rollout_exempt IS OLD.rollout_exempt AND NEW.changed_by IS OLD.changed_by AND NEW.interruptible IS OLD.interruptible AND NEW.fleet_single_instance IS OLD.fleet_single_instance AND NEW.expected_interval IS OLD.expected_interval)
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('script_policy', 'UPDATE', NEW.id, json_object('id', OLD.id, 'name', OLD.name, 'host', OLD.host, 'enabled', OLD.enabled, 'reason', OLD.reason, 'expected_runtime', OLD.expected_runtime, 'rollout_exempt', OLD.rollout_exempt, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at, 'interruptible', OLD.interruptible, 'fleet_single_instance', OLD.fleet_single_instance, 'expected_interval', OLD.expected_interval),
            json_object('id', NEW.id, 'name', NEW.name, 'host', NEW.host, 'enabled', NEW.enabled, 'reason', NEW.reason, 'expected_runtime', NEW.expected_runtime, 'rollout_exempt', NEW.rollout_exempt, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at, 'interruptible', NEW.interruptible, 'fleet_single_instance', NEW.fleet_single_instance, 'expected_interval', NEW.expected_interval));
END;

CREATE TRIGGER cronpolicy.script_policy_audit_delete AFTER DELETE ON script_policy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('script_policy', 'DELETE', OLD.id, json_object('id', OLD.id, 'name', OLD.name, 'host', OLD.host, 'enabled', OLD.enabled, 'reason', OLD.reason, 'expected_runtime', OLD.expected_runtime, 'rollout_exempt', OLD.rollout_exempt, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at, 'interruptible', OLD.interruptible, 'fleet_single_instance', OLD.fleet_single_instance, 'expected_interval', OLD.expected_interval));
END;
