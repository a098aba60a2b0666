-- cronpolicy schema patch 0014 for the embedded SQLite backend: see
-- ../0014-services-and-releases.sql.  The script_policy and rollout_window
-- audit triggers list the columns by hand, so they are rebuilt to include
-- the new ones.

ALTER TABLE cronpolicy.script_policy ADD COLUMN needs TEXT
    CONSTRAINT script_policy_needs_known CHECK (
        needs NOT GLOB '*[^A-Za-z0-9_.,-]*' AND needs NOT LIKE ',%' AND needs NOT LIKE '%,'
        AND needs NOT LIKE '%,,%' AND length(needs) <= 1000);

ALTER TABLE cronpolicy.script_run ADD COLUMN needs TEXT;
ALTER TABLE cronpolicy.script_run ADD COLUMN release TEXT;

ALTER TABLE cronpolicy.rollout_window ADD COLUMN service TEXT
    CONSTRAINT rollout_window_service_known CHECK (
        service <> '' AND service NOT GLOB '*[^A-Za-z0-9_.-]*');

CREATE TABLE cronpolicy.service_deploy (
    id          INTEGER NOT NULL PRIMARY KEY,
    service     TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    changed_by  TEXT NOT NULL DEFAULT '',
    changed_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT service_deploy_one_per_service UNIQUE (service),
    CONSTRAINT service_deploy_service_known CHECK (
        service <> '' AND service NOT GLOB '*[^A-Za-z0-9_.-]*')
);

CREATE TRIGGER cronpolicy.service_deploy_values_in_range_insert BEFORE INSERT ON service_deploy
    FOR EACH ROW WHEN NOT ((NEW.changed_at IS NULL OR (typeof(NEW.changed_at) = 'text' AND coalesce(NEW.changed_at IN (strftime('%Y-%m-%d %H:%M:%f', NEW.changed_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', NEW.changed_at, '+0 days'), strftime('%Y-%m-%d %H:%M', NEW.changed_at, '+0 days'), strftime('%Y-%m-%d', NEW.changed_at, '+0 days')), 0) AND coalesce(julianday(NEW.changed_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: service_deploy_values_in_range: times (changed_at) UTC text YYYY-MM-DD[ HH:MM[:SS[.SSS]]] from 1970-01-01 to 9898-12-31');
END;

CREATE TRIGGER cronpolicy.service_deploy_values_in_range_update BEFORE UPDATE ON service_deploy
    FOR EACH ROW WHEN NOT ((NEW.changed_at IS NULL OR (typeof(NEW.changed_at) = 'text' AND coalesce(NEW.changed_at IN (strftime('%Y-%m-%d %H:%M:%f', NEW.changed_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', NEW.changed_at, '+0 days'), strftime('%Y-%m-%d %H:%M', NEW.changed_at, '+0 days'), strftime('%Y-%m-%d', NEW.changed_at, '+0 days')), 0) AND coalesce(julianday(NEW.changed_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: service_deploy_values_in_range: times (changed_at) UTC text YYYY-MM-DD[ HH:MM[:SS[.SSS]]] from 1970-01-01 to 9898-12-31');
END;

CREATE TRIGGER cronpolicy.service_deploy_audit_insert AFTER INSERT ON service_deploy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('service_deploy', 'INSERT', NEW.id, json_object('id', NEW.id, 'service', NEW.service, 'reason', NEW.reason, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at));
END;

CREATE TRIGGER cronpolicy.service_deploy_audit_update AFTER UPDATE ON service_deploy
    FOR EACH ROW WHEN NOT (NEW.changed_at IS OLD.changed_at AND NEW.reason IS OLD.reason
                           AND NEW.service IS OLD.service AND NEW.changed_by IS OLD.changed_by
                           AND NEW.id IS OLD.id)
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('service_deploy', 'UPDATE', NEW.id, json_object('id', OLD.id, 'service', OLD.service, 'reason', OLD.reason, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at),
            json_object('id', NEW.id, 'service', NEW.service, 'reason', NEW.reason, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at));
END;

CREATE TRIGGER cronpolicy.service_deploy_audit_delete AFTER DELETE ON service_deploy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('service_deploy', 'DELETE', OLD.id, json_object('id', OLD.id, 'service', OLD.service, 'reason', OLD.reason, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at));
END;

DROP TRIGGER cronpolicy.rollout_window_audit_insert;
DROP TRIGGER cronpolicy.rollout_window_audit_update;
DROP TRIGGER cronpolicy.rollout_window_audit_delete;

CREATE TRIGGER cronpolicy.rollout_window_audit_insert AFTER INSERT ON rollout_window
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('rollout_window', 'INSERT', NEW.id, json_object('id', NEW.id, 'starts_at', NEW.starts_at, 'ends_at', NEW.ends_at, 'reason', NEW.reason, 'host', NEW.host, 'script', NEW.script, 'created_by', NEW.created_by, 'created_at', NEW.created_at, 'cancelled_at', NEW.cancelled_at, 'cancelled_by', NEW.cancelled_by, 'service', NEW.service));
END;

CREATE TRIGGER cronpolicy.rollout_window_audit_update AFTER UPDATE ON rollout_window
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('rollout_window', 'UPDATE', NEW.id, json_object('id', OLD.id, 'starts_at', OLD.starts_at, 'ends_at', OLD.ends_at, 'reason', OLD.reason, 'host', OLD.host, 'script', OLD.script, 'created_by', OLD.created_by, 'created_at', OLD.created_at, 'cancelled_at', OLD.cancelled_at, 'cancelled_by', OLD.cancelled_by, 'service', OLD.service),
            json_object('id', NEW.id, 'starts_at', NEW.starts_at, 'ends_at', NEW.ends_at, 'reason', NEW.reason, 'host', NEW.host, 'script', NEW.script, 'created_by', NEW.created_by, 'created_at', NEW.created_at, 'cancelled_at', NEW.cancelled_at, 'cancelled_by', NEW.cancelled_by, 'service', NEW.service));
END;

CREATE TRIGGER cronpolicy.rollout_window_audit_delete AFTER DELETE ON rollout_window
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('rollout_window', 'DELETE', OLD.id, json_object('id', OLD.id, 'starts_at', OLD.starts_at, 'ends_at', OLD.ends_at, 'reason', OLD.reason, 'host', OLD.host, 'script', OLD.script, 'created_by', OLD.created_by, 'created_at', OLD.created_at, 'cancelled_at', OLD.cancelled_at, 'cancelled_by', OLD.cancelled_by, 'service', OLD.service));
END;

DROP TRIGGER cronpolicy.script_policy_audit_insert;
DROP TRIGGER cronpolicy.script_policy_audit_update;
DROP TRIGGER cronpolicy.script_policy_audit_delete;

CREATE TRIGGER cronpolicy.script_policy_audit_insert AFTER INSERT ON script_policy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('script_policy', 'INSERT', NEW.id, json_object('id', NEW.id, 'name', NEW.name, 'host', NEW.host, 'enabled', NEW.enabled, 'reason', NEW.reason, 'expected_runtime', NEW.expected_runtime, 'rollout_exempt', NEW.rollout_exempt, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at, 'interruptible', NEW.interruptible, 'fleet_single_instance', NEW.fleet_single_instance, 'expected_interval', NEW.expected_interval, 'max_concurrent', NEW.max_concurrent, 'schedule', NEW.schedule, 'schedule_tz', NEW.schedule_tz, 'catch_up', NEW.catch_up, 'needs', NEW.needs));
END;

CREATE TRIGGER cronpolicy.script_policy_audit_update AFTER UPDATE ON script_policy
    -- not for the changed_at touch of script_policy_touch
    FOR EACH ROW WHEN NOT (NEW.changed_at <> OLD.changed_at AND NEW.id IS OLD.id AND NEW.name IS OLD.name AND NEW.host IS OLD.host AND NEW.enabled IS OLD.enabled AND NEW.reason IS OLD.reason AND NEW.expected_runtime IS OLD.expected_runtime AND NEW.rollout_exempt IS OLD.rollout_exempt AND NEW.changed_by IS OLD.changed_by AND NEW.interruptible IS OLD.interruptible AND NEW.fleet_single_instance IS OLD.fleet_single_instance AND NEW.expected_interval IS OLD.expected_interval AND NEW.max_concurrent IS OLD.max_concurrent AND NEW.schedule IS OLD.schedule AND NEW.schedule_tz IS OLD.schedule_tz AND NEW.catch_up IS OLD.catch_up AND NEW.needs IS OLD.needs)
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('script_policy', 'UPDATE', NEW.id, json_object('id', OLD.id, 'name', OLD.name, 'host', OLD.host, 'enabled', OLD.enabled, 'reason', OLD.reason, 'expected_runtime', OLD.expected_runtime, 'rollout_exempt', OLD.rollout_exempt, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at, 'interruptible', OLD.interruptible, 'fleet_single_instance', OLD.fleet_single_instance, 'expected_interval', OLD.expected_interval, 'max_concurrent', OLD.max_concurrent, 'schedule', OLD.schedule, 'schedule_tz', OLD.schedule_tz, 'catch_up', OLD.catch_up, 'needs', OLD.needs),
            json_object('id', NEW.id, 'name', NEW.name, 'host', NEW.host, 'enabled', NEW.enabled, 'reason', NEW.reason, 'expected_runtime', NEW.expected_runtime, 'rollout_exempt', NEW.rollout_exempt, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at, 'interruptible', NEW.interruptible, 'fleet_single_instance', NEW.fleet_single_instance, 'expected_interval', NEW.expected_interval, 'max_concurrent', NEW.max_concurrent, 'schedule', NEW.schedule, 'schedule_tz', NEW.schedule_tz, 'catch_up', NEW.catch_up, 'needs', NEW.needs));
END;

CREATE TRIGGER cronpolicy.script_policy_audit_delete AFTER DELETE ON script_policy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('script_policy', 'DELETE', OLD.id, json_object('id', OLD.id, 'name', OLD.name, 'host', OLD.host, 'enabled', OLD.enabled, 'reason', OLD.reason, 'expected_runtime', OLD.expected_runtime, 'rollout_exempt', OLD.rollout_exempt, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at, 'interruptible', OLD.interruptible, 'fleet_single_instance', OLD.fleet_single_instance, 'expected_interval', OLD.expected_interval, 'max_concurrent', OLD.max_concurrent, 'schedule', OLD.schedule, 'schedule_tz', OLD.schedule_tz, 'catch_up', OLD.catch_up, 'needs', OLD.needs));
END;
