-- cronpolicy schema patch 0004 for the embedded SQLite backend: see
-- ../0004-audit-and-ownership.sql.  SQLite has one user, so db_user stays ''
-- and there is no row-level security; the audit triggers record the changes
-- (the cronpolicy command fills in the reason afterwards, in the same
-- transaction).

ALTER TABLE cronpolicy.script_run ADD COLUMN db_user TEXT NOT NULL DEFAULT '';
ALTER TABLE cronpolicy.script_run ADD COLUMN decision TEXT;
ALTER TABLE cronpolicy.script_run ADD COLUMN policy_id INTEGER;
ALTER TABLE cronpolicy.script_run ADD COLUMN window_id INTEGER;

DROP INDEX cronpolicy.script_run_estimate_idx;
CREATE INDEX cronpolicy.script_run_estimate_idx ON script_run (name, finished_at DESC, started_at)
    WHERE status = 'succeeded';

CREATE TABLE cronpolicy.policy_audit (
    id          INTEGER NOT NULL PRIMARY KEY,
    changed_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    db_user     TEXT NOT NULL DEFAULT '',
    table_name  TEXT NOT NULL,
    operation   TEXT NOT NULL,
    row_id      INTEGER,
    old_row     TEXT,
    new_row     TEXT,
    reason      TEXT,
    CONSTRAINT policy_audit_known_operation
        CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'))
);
CREATE INDEX cronpolicy.policy_audit_changed_at_idx ON policy_audit (changed_at);
CREATE INDEX cronpolicy.policy_audit_row_idx ON policy_audit (table_name, row_id, changed_at);

CREATE TRIGGER cronpolicy.script_policy_audit_insert AFTER INSERT ON script_policy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('script_policy', 'INSERT', NEW.id, json_object('id', NEW.id, 'name', NEW.name, 'host', NEW.host, 'enabled', NEW.enabled, 'reason', NEW.reason, 'expected_runtime', NEW.expected_runtime, 'rollout_exempt', NEW.rollout_exempt, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at, 'interruptible', NEW.interruptible, 'fleet_single_instance', NEW.fleet_single_instance));
END;

CREATE TRIGGER cronpolicy.script_policy_audit_update AFTER UPDATE ON script_policy
    -- not for the changed_at touch of the trigger above
    FOR EACH ROW WHEN NOT (NEW.changed_at <> OLD.changed_at AND NEW.name IS OLD.name AND NEW.host IS OLD.host AND NEW.enabled IS OLD.enabled AND NEW.reason IS OLD.reason AND NEW.expected_runtime IS OLD.expected_runtime AND NEW.rollout_exempt IS OLD.rollout_exempt AND NEW.changed_by IS OLD.changed_by AND NEW.interruptible IS OLD.interruptible AND NEW.fleet_single_instance IS OLD.fleet_single_instance)
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('script_policy', 'UPDATE', NEW.id, json_object('id', OLD.id, 'name', OLD.name, 'host', OLD.host, 'enabled', OLD.enabled, 'reason', OLD.reason, 'expected_runtime', OLD.expected_runtime, 'rollout_exempt', OLD.rollout_exempt, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at, 'interruptible', OLD.interruptible, 'fleet_single_instance', OLD.fleet_single_instance),
            json_object('id', NEW.id, 'name', NEW.name, 'host', NEW.host, 'enabled', NEW.enabled, 'reason', NEW.reason, 'expected_runtime', NEW.expected_runtime, 'rollout_exempt', NEW.rollout_exempt, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at, 'interruptible', NEW.interruptible, 'fleet_single_instance', NEW.fleet_single_instance));
END;

CREATE TRIGGER cronpolicy.script_policy_audit_delete AFTER DELETE ON script_policy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('script_policy', 'DELETE', OLD.id, json_object('id', OLD.id, 'name', OLD.name, 'host', OLD.host, 'enabled', OLD.enabled, 'reason', OLD.reason, 'expected_runtime', OLD.expected_runtime, 'rollout_exempt', OLD.rollout_exempt, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at, 'interruptible', OLD.interruptible, 'fleet_single_instance', OLD.fleet_single_instance));
END;

CREATE TRIGGER cronpolicy.rollout_window_audit_insert AFTER INSERT ON rollout_window
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('rollout_window', 'INSERT', NEW.id, json_object('id', NEW.id, 'starts_at', NEW.starts_at, 'ends_at', NEW.ends_at, 'reason', NEW.reason, 'host', NEW.host, 'script', NEW.script, 'created_by', NEW.created_by, 'created_at', NEW.created_at, 'cancelled_at', NEW.cancelled_at, 'cancelled_by', NEW.cancelled_by));
END;

CREATE TRIGGER cronpolicy.rollout_window_audit_update AFTER UPDATE ON rollout_window
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('rollout_window', 'UPDATE', NEW.id, json_object('id', OLD.id, 'starts_at', OLD.starts_at, 'ends_at', OLD.ends_at, 'reason', OLD.reason, 'host', OLD.host, 'script', OLD.script, 'created_by', OLD.created_by, 'created_at', OLD.created_at, 'cancelled_at', OLD.cancelled_at, 'cancelled_by', OLD.cancelled_by),
            json_object('id', NEW.id, 'starts_at', NEW.starts_at, 'ends_at', NEW.ends_at, 'reason', NEW.reason, 'host', NEW.host, 'script', NEW.script, 'created_by', NEW.created_by, 'created_at', NEW.created_at, 'cancelled_at', NEW.cancelled_at, 'cancelled_by', NEW.cancelled_by));
END;

CREATE TRIGGER cronpolicy.rollout_window_audit_delete AFTER DELETE ON rollout_window
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('rollout_window', 'DELETE', OLD.id, json_object('id', OLD.id, 'starts_at', OLD.starts_at, 'ends_at', OLD.ends_at, 'reason', OLD.reason, 'host', OLD.host, 'script', OLD.script, 'created_by', OLD.created_by, 'created_at', OLD.created_at, 'cancelled_at', OLD.cancelled_at, 'cancelled_by', OLD.cancelled_by));
END;

CREATE TRIGGER cronpolicy.deploy_state_audit_insert AFTER INSERT ON deploy_state
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('deploy_state', 'INSERT', NEW.id, json_object('id', NEW.id, 'deploy_pending', NEW.deploy_pending, 'reason', NEW.reason, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at));
END;

CREATE TRIGGER cronpolicy.deploy_state_audit_update AFTER UPDATE ON deploy_state
    -- not for the changed_at touch of the trigger above
    FOR EACH ROW WHEN NOT (NEW.changed_at <> OLD.changed_at AND NEW.deploy_pending IS OLD.deploy_pending AND NEW.reason IS OLD.reason AND NEW.changed_by IS OLD.changed_by)
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('deploy_state', 'UPDATE', NEW.id, json_object('id', OLD.id, 'deploy_pending', OLD.deploy_pending, 'reason', OLD.reason, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at),
            json_object('id', NEW.id, 'deploy_pending', NEW.deploy_pending, 'reason', NEW.reason, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at));
END;

CREATE TRIGGER cronpolicy.deploy_state_audit_delete AFTER DELETE ON deploy_state
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('deploy_state', 'DELETE', OLD.id, json_object('id', OLD.id, 'deploy_pending', OLD.deploy_pending, 'reason', OLD.reason, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at));
END;
