-- cronpolicy schema patch 0015 for the embedded SQLite backend: see
-- ../0015-hosts-belong-to-logins.sql.  SQLite has no logins: whoever can
-- write the database file can write anything in it, and one machine is one
-- host.  The table exists here too (and is audited) so that both backends
-- have the same tables; nothing enforces host_login on SQLite, nor that a
-- db_role names a role (there are none).

CREATE TABLE cronpolicy.host_login (
    id          INTEGER NOT NULL PRIMARY KEY,
    host        TEXT NOT NULL,
    db_role     TEXT NOT NULL,
    granted_by  TEXT NOT NULL DEFAULT '',
    granted_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT host_login_host_role_key UNIQUE (host, db_role),
    CONSTRAINT host_login_host_not_empty CHECK (host <> ''),
    CONSTRAINT host_login_db_role_not_empty CHECK (db_role <> '')
);
CREATE UNIQUE INDEX cronpolicy.host_login_first_claim_key ON host_login (host)
    WHERE granted_by = 'first run';

CREATE TRIGGER cronpolicy.host_login_values_in_range_insert BEFORE INSERT ON host_login
    FOR EACH ROW WHEN NOT ((NEW.granted_at IS NULL OR (typeof(NEW.granted_at) = 'text' AND coalesce(NEW.granted_at IN (strftime('%Y-%m-%d %H:%M:%f', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d %H:%M', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d', NEW.granted_at, '+0 days')), 0) AND coalesce(julianday(NEW.granted_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: host_login_values_in_range: times (granted_at) UTC text YYYY-MM-DD[ HH:MM[:SS[.SSS]]] from 1970-01-01 to 9898-12-31');
END;

CREATE TRIGGER cronpolicy.host_login_values_in_range_update BEFORE UPDATE ON host_login
    FOR EACH ROW WHEN NOT ((NEW.granted_at IS NULL OR (typeof(NEW.granted_at) = 'text' AND coalesce(NEW.granted_at IN (strftime('%Y-%m-%d %H:%M:%f', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d %H:%M', NEW.granted_at, '+0 days'), strftime('%Y-%m-%d', NEW.granted_at, '+0 days')), 0) AND coalesce(julianday(NEW.granted_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: host_login_values_in_range: times (granted_at) UTC text YYYY-MM-DD[ HH:MM[:SS[.SSS]]] from 1970-01-01 to 9898-12-31');
END;

CREATE TRIGGER cronpolicy.host_login_audit_insert AFTER INSERT ON host_login
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('host_login', 'INSERT', NEW.id, json_object('id', NEW.id, 'host', NEW.host, 'db_role', NEW.db_role, 'granted_by', NEW.granted_by, 'granted_at', NEW.granted_at));
END;

CREATE TRIGGER cronpolicy.host_login_audit_update AFTER UPDATE ON host_login
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('host_login', 'UPDATE', NEW.id, json_object('id', OLD.id, 'host', OLD.host, 'db_role', OLD.db_role, 'granted_by', OLD.granted_by, 'granted_at', OLD.granted_at),
            json_object('id', NEW.id, 'host', NEW.host, 'db_role', NEW.db_role, 'granted_by', NEW.granted_by, 'granted_at', NEW.granted_at));
END;

CREATE TRIGGER cronpolicy.host_login_audit_delete AFTER DELETE ON host_login
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('host_login', 'DELETE', OLD.id, json_object('id', OLD.id, 'host', OLD.host, 'db_role', OLD.db_role, 'granted_by', OLD.granted_by, 'granted_at', OLD.granted_at));
END;
