-- cronpolicy schema patch 0013 for the embedded SQLite backend: see
-- ../0013-schedules-and-catch-up.sql.  SQLite cannot run cronpolicy's
-- schedule check when a row is written (it has no such function), so a
-- schedule that is not one is said, with a warning, when it is read, and
-- decides nothing.  The script_policy audit triggers list the columns by
-- hand, so they are rebuilt to include the new ones.

ALTER TABLE cronpolicy.script_policy ADD COLUMN schedule TEXT;
ALTER TABLE cronpolicy.script_policy ADD COLUMN schedule_tz TEXT;
ALTER TABLE cronpolicy.script_policy ADD COLUMN catch_up TEXT
    CONSTRAINT script_policy_catch_up_known CHECK (catch_up IN ('none', 'once'));

ALTER TABLE cronpolicy.script_run ADD COLUMN schedule TEXT;
ALTER TABLE cronpolicy.script_run ADD COLUMN schedule_tz TEXT;
ALTER TABLE cronpolicy.script_run ADD COLUMN block TEXT;
CREATE INDEX cronpolicy.script_run_declared_schedule_idx
    ON script_run (name, host, started_at DESC) WHERE schedule IS NOT NULL;
CREATE INDEX cronpolicy.script_run_block_idx ON script_run (name, started_at DESC)
    WHERE block IS NOT NULL;

CREATE TABLE cronpolicy.script_schedule (
    id            INTEGER NOT NULL PRIMARY KEY,
    name          TEXT NOT NULL,
    host          TEXT NOT NULL,
    schedule      TEXT NOT NULL,
    schedule_tz   TEXT,
    origin        TEXT NOT NULL DEFAULT '',
    registered_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    registered_by TEXT NOT NULL DEFAULT '',
    CONSTRAINT script_schedule_one_per_host UNIQUE (name, host)
);

CREATE TRIGGER cronpolicy.script_schedule_values_in_range_insert BEFORE INSERT ON script_schedule
    FOR EACH ROW WHEN NOT ((NEW.registered_at IS NULL OR (typeof(NEW.registered_at) = 'text' AND coalesce(NEW.registered_at IN (strftime('%Y-%m-%d %H:%M:%f', NEW.registered_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', NEW.registered_at, '+0 days'), strftime('%Y-%m-%d %H:%M', NEW.registered_at, '+0 days'), strftime('%Y-%m-%d', NEW.registered_at, '+0 days')), 0) AND coalesce(julianday(NEW.registered_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: script_schedule_values_in_range: times (registered_at) UTC text YYYY-MM-DD[ HH:MM[:SS[.SSS]]] from 1970-01-01 to 9898-12-31');
END;

CREATE TRIGGER cronpolicy.script_schedule_values_in_range_update BEFORE UPDATE ON script_schedule
    FOR EACH ROW WHEN NOT ((NEW.registered_at IS NULL OR (typeof(NEW.registered_at) = 'text' AND coalesce(NEW.registered_at IN (strftime('%Y-%m-%d %H:%M:%f', NEW.registered_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', NEW.registered_at, '+0 days'), strftime('%Y-%m-%d %H:%M', NEW.registered_at, '+0 days'), strftime('%Y-%m-%d', NEW.registered_at, '+0 days')), 0) AND coalesce(julianday(NEW.registered_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: script_schedule_values_in_range: times (registered_at) UTC text YYYY-MM-DD[ HH:MM[:SS[.SSS]]] from 1970-01-01 to 9898-12-31');
END;

DROP TRIGGER cronpolicy.script_policy_audit_insert;
DROP TRIGGER cronpolicy.script_policy_audit_update;
DROP TRIGGER cronpolicy.script_policy_audit_delete;

CREATE TRIGGER cronpolicy.script_policy_audit_insert AFTER INSERT ON script_policy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('script_policy', 'INSERT', NEW.id, json_object('id', NEW.id, 'name', NEW.name, 'host', NEW.host, 'enabled', NEW.enabled, 'reason', NEW.reason, 'expected_runtime', NEW.expected_runtime, 'rollout_exempt', NEW.rollout_exempt, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at, 'interruptible', NEW.interruptible, 'fleet_single_instance', NEW.fleet_single_instance, 'expected_interval', NEW.expected_interval, 'max_concurrent', NEW.max_concurrent, 'schedule', NEW.schedule, 'schedule_tz', NEW.schedule_tz, 'catch_up', NEW.catch_up));
END;

CREATE TRIGGER cronpolicy.script_policy_audit_update AFTER UPDATE ON script_policy
    -- not for the changed_at touch of script_policy_touch
    FOR EACH ROW WHEN NOT (NEW.changed_at <> OLD.changed_at AND NEW.id IS OLD.id AND NEW.name IS OLD.name AND NEW.host IS OLD.host AND NEW.enabled IS OLD.enabled AND NEW.reason IS OLD.reason AND NEW.expected_runtime IS OLD.expected_runtime AND NEW.rollout_exempt IS OLD.rollout_exempt AND NEW.changed_by IS OLD.changed_by AND NEW.interruptible IS OLD.interruptible AND NEW.fleet_single_instance IS OLD.fleet_single_instance AND NEW.expected_interval IS OLD.expected_interval AND NEW.max_concurrent IS OLD.max_concurrent AND NEW.schedule IS OLD.schedule AND NEW.schedule_tz IS OLD.schedule_tz AND NEW.catch_up IS OLD.catch_up)
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('script_policy', 'UPDATE', NEW.id, json_object('id', OLD.id, 'name', OLD.name, 'host', OLD.host, 'enabled', OLD.enabled, 'reason', OLD.reason, 'expected_runtime', OLD.expected_runtime, 'rollout_exempt', OLD.rollout_exempt, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at, 'interruptible', OLD.interruptible, 'fleet_single_instance', OLD.fleet_single_instance, 'expected_interval', OLD.expected_interval, 'max_concurrent', OLD.max_concurrent, 'schedule', OLD.schedule, 'schedule_tz', OLD.schedule_tz, 'catch_up', OLD.catch_up),
            json_object('id', NEW.id, 'name', NEW.name, 'host', NEW.host, 'enabled', NEW.enabled, 'reason', NEW.reason, 'expected_runtime', NEW.expected_runtime, 'rollout_exempt', NEW.rollout_exempt, 'changed_by', NEW.changed_by, 'changed_at', NEW.changed_at, 'interruptible', NEW.interruptible, 'fleet_single_instance', NEW.fleet_single_instance, 'expected_interval', NEW.expected_interval, 'max_concurrent', NEW.max_concurrent, 'schedule', NEW.schedule, 'schedule_tz', NEW.schedule_tz, 'catch_up', NEW.catch_up));
END;

CREATE TRIGGER cronpolicy.script_policy_audit_delete AFTER DELETE ON script_policy
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('script_policy', 'DELETE', OLD.id, json_object('id', OLD.id, 'name', OLD.name, 'host', OLD.host, 'enabled', OLD.enabled, 'reason', OLD.reason, 'expected_runtime', OLD.expected_runtime, 'rollout_exempt', OLD.rollout_exempt, 'changed_by', OLD.changed_by, 'changed_at', OLD.changed_at, 'interruptible', OLD.interruptible, 'fleet_single_instance', OLD.fleet_single_instance, 'expected_interval', OLD.expected_interval, 'max_concurrent', OLD.max_concurrent, 'schedule', OLD.schedule, 'schedule_tz', OLD.schedule_tz, 'catch_up', OLD.catch_up));
END;
