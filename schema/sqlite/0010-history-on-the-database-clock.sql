-- cronpolicy schema patch 0010 for the embedded SQLite backend: see
-- ../0010-history-on-the-database-clock.sql.  SQLite has no logins: whoever
-- can write the database file can write anything in it, so its file
-- permissions are the access control, and the times of runs are the one
-- host's clock anyway.  The column and the table exist here too (and are
-- audited) so that both backends have the same tables; nothing enforces
-- script_owner on SQLite.

ALTER TABLE cronpolicy.script_run ADD COLUMN spooled BOOLEAN NOT NULL DEFAULT 0
    CONSTRAINT script_run_spooled_boolean CHECK (spooled IN (0, 1));

CREATE TABLE cronpolicy.script_owner (
    id          INTEGER NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL,
    db_role     TEXT NOT NULL,
    granted_by  TEXT NOT NULL DEFAULT '',
    granted_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT script_owner_name_role_key UNIQUE (name, db_role),
    CONSTRAINT script_owner_name_not_empty CHECK (name <> ''),
    CONSTRAINT script_owner_db_role_not_empty CHECK (db_role <> '')
);
CREATE UNIQUE INDEX cronpolicy.script_owner_first_claim_key ON script_owner (name)
    WHERE granted_by = 'first run';

CREATE TRIGGER cronpolicy.script_owner_values_in_range_insert BEFORE INSERT ON script_owner
    FOR EACH ROW WHEN NOT ((NEW.granted_at IS NULL OR (typeof(NEW.granted_at) = 'text' AND coalesce(NEW.granted_at IN (strftime('%Y-%m-%d %H:%M:%f', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d %H:%M', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d', NEW.granted_at, '+0 days')), 0) AND coalesce(julianday(NEW.granted_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: script_owner_values_in_range: times (granted_at) UTC text YYYY-MM-DD[ HH:MM[:SS[.SSS]]] from 1970-01-01 to 9898-12-31');
END;

CREATE TRIGGER cronpolicy.script_owner_values_in_range_update BEFORE UPDATE ON script_owner
    FOR EACH ROW WHEN NOT ((NEW.granted_at IS NULL OR (typeof(NEW.granted_at) = 'text' AND coalesce(NEW.granted_at IN (strftime('%Y-%m-%d %H:%M:%f', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d %H:%M', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d', NEW.granted_at, '+0 days')), 0) AND coalesce(julianday(NEW.granted_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: script_owner_values_in_range: times (granted_at) UTC text YYYY-MM-DD[ HH:MM[:SS[.SSS]]] from 1970-01-01 to 9898-12-31');
END;

CREATE TRIGGER cronpolicy.script_owner_audit_insert AFTER INSERT ON script_owner
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('script_owner', 'INSERT', NEW.id, json_object('id', NEW.id, 'name', NEW.name, 'db_role', NEW.db_role, 'granted_by', NEW.granted_by, 'granted_at', NEW.granted_at));
END;

CREATE TRIGGER cronpolicy.script_owner_audit_update AFTER UPDATE ON script_owner
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('script_owner', 'UPDATE', NEW.id, json_object('id', OLD.id, 'name', OLD.name, 'db_role', OLD.db_role, 'granted_by', OLD.granted_by, 'granted_at', OLD.granted_at),
            json_object('id', NEW.id, 'name', NEW.name, 'db_role', NEW.db_role, 'granted_by', NEW.granted_by, 'granted_at', NEW.granted_at));
END;

CREATE TRIGGER cronpolicy.script_owner_audit_delete AFTER DELETE ON script_owner
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('script_owner', 'DELETE', OLD.id, json_object('id', OLD.id, 'name', OLD.name, 'db_role', OLD.db_role, 'granted_by', OLD.granted_by, 'granted_at', OLD.granted_at));
END;
