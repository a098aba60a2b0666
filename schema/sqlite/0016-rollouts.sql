-- cronpolicy schema patch 0016 for the embedded SQLite backend: see
-- ../0016-rollouts.sql.  SQLite has no logins: the owner and who ended a
-- rollout are what the cronpolicy command says (the operating-system
-- user), and a trigger cannot set a column before the row is written, so
-- times come from the columns' defaults and the statements that end and
-- mark rollouts.  The switches follow the rollouts as on PostgreSQL, by
-- triggers that act only where the two disagree.

CREATE TABLE cronpolicy.rollout (
    id                 INTEGER NOT NULL PRIMARY KEY,
    kind               TEXT NOT NULL DEFAULT 'full',
    services           TEXT NOT NULL DEFAULT '',
    reason             TEXT NOT NULL DEFAULT '',
    owner              TEXT NOT NULL DEFAULT '',
    owner_host         TEXT,
    owner_pid          INTEGER,
    began_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    expected_duration  DOUBLE,
    lease_expires_at   TEXT,
    quiet_at           TEXT,
    ended_at           TEXT,
    ended_by           TEXT,
    CONSTRAINT rollout_kind_known CHECK (kind IN ('full', 'services')),
    CONSTRAINT rollout_services_fit_kind CHECK (
        CASE kind WHEN 'full' THEN services = ''
                  ELSE services <> '' AND services NOT GLOB '*[^A-Za-z0-9_.,-]*'
                       AND services NOT LIKE ',%' AND services NOT LIKE '%,'
                       AND services NOT LIKE '%,,%' AND length(services) <= 1000 END),
    CONSTRAINT rollout_expected_duration_positive CHECK (expected_duration > 0),
    CONSTRAINT rollout_ends_after_it_begins CHECK (julianday(ended_at) >= julianday(began_at)),
    CONSTRAINT rollout_quiet_after_it_begins CHECK (julianday(quiet_at) >= julianday(began_at)),
    CONSTRAINT rollout_values_in_range CHECK (
        (began_at IS NULL OR (typeof(began_at) = 'text' AND coalesce(began_at IN (strftime('%Y-%m-%d %H:%M:%f', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', began_at, '+0 days'), strftime('%Y-%m-%d %H:%M', began_at, '+0 days'), strftime('%Y-%m-%d', began_at, '+0 days')), 0) AND coalesce(julianday(began_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (expected_duration IS NULL OR (typeof(expected_duration) IN ('integer', 'real') AND expected_duration BETWEEN 0 AND 3155760000))
        AND (lease_expires_at IS NULL OR (typeof(lease_expires_at) = 'text' AND coalesce(lease_expires_at IN (strftime('%Y-%m-%d %H:%M:%f', lease_expires_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', lease_expires_at, '+0 days'), strftime('%Y-%m-%d %H:%M', lease_expires_at, '+0 days'), strftime('%Y-%m-%d', lease_expires_at, '+0 days')), 0) AND coalesce(julianday(lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (quiet_at IS NULL OR (typeof(quiet_at) = 'text' AND coalesce(quiet_at IN (strftime('%Y-%m-%d %H:%M:%f', quiet_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', quiet_at, '+0 days'), strftime('%Y-%m-%d %H:%M', quiet_at, '+0 days'), strftime('%Y-%m-%d', quiet_at, '+0 days')), 0) AND coalesce(julianday(quiet_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (ended_at IS NULL OR (typeof(ended_at) = 'text' AND coalesce(ended_at IN (strftime('%Y-%m-%d %H:%M:%f', ended_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', ended_at, '+0 days'), strftime('%Y-%m-%d %H:%M', ended_at, '+0 days'), strftime('%Y-%m-%d', ended_at, '+0 days')), 0) AND coalesce(julianday(ended_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (owner_pid IS NULL OR typeof(owner_pid) = 'integer'))
);
CREATE INDEX cronpolicy.rollout_open_idx ON rollout (began_at) WHERE ended_at IS NULL;

-- What a rollout is does not change, and an ended one stays ended.
CREATE TRIGGER cronpolicy.rollout_stays_what_it_began BEFORE UPDATE ON rollout
    FOR EACH ROW WHEN NEW.kind IS NOT OLD.kind OR NEW.services IS NOT OLD.services
BEGIN
    SELECT RAISE(ABORT, 'a rollout stays of what it began with; end it and begin another');
END;

-- First seen quiet: once.
CREATE TRIGGER cronpolicy.rollout_quiet_once BEFORE UPDATE OF quiet_at ON rollout
    FOR EACH ROW WHEN OLD.quiet_at IS NOT NULL AND NEW.quiet_at IS NOT OLD.quiet_at
BEGIN
    SELECT RAISE(ABORT, 'a rollout is first seen quiet once: quiet_at stays as set');
END;

CREATE TRIGGER cronpolicy.rollout_stays_ended BEFORE UPDATE ON rollout
    FOR EACH ROW WHEN OLD.ended_at IS NOT NULL AND NEW.ended_at IS NOT OLD.ended_at
BEGIN
    SELECT RAISE(ABORT, 'an ended rollout stays ended; begin another');
END;

-- The switches follow the rollouts (each statement a no-op where they agree).
CREATE TRIGGER cronpolicy.rollout_deploy_switch AFTER INSERT ON rollout
    FOR EACH ROW WHEN NEW.kind = 'full' AND NEW.ended_at IS NULL
BEGIN
    UPDATE deploy_state
       SET deploy_pending = 1,
           reason = (SELECT reason FROM rollout WHERE ended_at IS NULL AND kind = 'full'
                      ORDER BY began_at, id LIMIT 1),
           changed_by = NEW.owner
     WHERE id = 1 AND (NOT deploy_pending OR reason IS NOT
                       (SELECT reason FROM rollout WHERE ended_at IS NULL AND kind = 'full'
                         ORDER BY began_at, id LIMIT 1));
END;

CREATE TRIGGER cronpolicy.rollout_deploy_switch_change AFTER UPDATE OF ended_at, reason ON rollout
    FOR EACH ROW WHEN NEW.kind = 'full'
BEGIN
    UPDATE deploy_state
       SET deploy_pending = EXISTS (SELECT 1 FROM rollout WHERE ended_at IS NULL AND kind = 'full'),
           reason = coalesce((SELECT reason FROM rollout WHERE ended_at IS NULL AND kind = 'full'
                               ORDER BY began_at, id LIMIT 1), ''),
           changed_by = coalesce(NEW.ended_by, NEW.owner)
     WHERE id = 1 AND (deploy_pending IS NOT EXISTS (SELECT 1 FROM rollout
                                                     WHERE ended_at IS NULL AND kind = 'full')
                       OR (deploy_pending AND reason IS NOT
                           (SELECT reason FROM rollout WHERE ended_at IS NULL AND kind = 'full'
                             ORDER BY began_at, id LIMIT 1)));
END;

CREATE TRIGGER cronpolicy.rollout_deploy_switch_delete AFTER DELETE ON rollout
    FOR EACH ROW WHEN OLD.kind = 'full'
BEGIN
    UPDATE deploy_state
       SET deploy_pending = EXISTS (SELECT 1 FROM rollout WHERE ended_at IS NULL AND kind = 'full'),
           reason = coalesce((SELECT reason FROM rollout WHERE ended_at IS NULL AND kind = 'full'
                               ORDER BY began_at, id LIMIT 1), '')
     WHERE id = 1 AND deploy_pending IS NOT EXISTS (SELECT 1 FROM rollout
                                                    WHERE ended_at IS NULL AND kind = 'full');
END;

CREATE TRIGGER cronpolicy.rollout_service_switch AFTER INSERT ON rollout
    FOR EACH ROW WHEN NEW.kind = 'services' AND NEW.ended_at IS NULL
BEGIN
    INSERT OR IGNORE INTO service_deploy (service, reason, changed_by)
    SELECT value, NEW.reason, NEW.owner
      FROM json_each('["' || replace(NEW.services, ',', '","') || '"]');
END;

CREATE TRIGGER cronpolicy.rollout_service_switch_change AFTER UPDATE OF ended_at ON rollout
    FOR EACH ROW WHEN NEW.kind = 'services' AND NEW.ended_at IS NOT NULL
BEGIN
    DELETE FROM service_deploy
     WHERE NOT EXISTS (SELECT 1 FROM rollout AS r WHERE r.ended_at IS NULL AND r.kind = 'services' AND instr(',' || r.services || ',', ',' || service_deploy.service || ',') > 0);
END;

CREATE TRIGGER cronpolicy.rollout_service_switch_delete AFTER DELETE ON rollout
    FOR EACH ROW WHEN OLD.kind = 'services'
BEGIN
    DELETE FROM service_deploy
     WHERE NOT EXISTS (SELECT 1 FROM rollout AS r WHERE r.ended_at IS NULL AND r.kind = 'services' AND instr(',' || r.services || ',', ',' || service_deploy.service || ',') > 0);
END;

-- Plain SQL on the switches: setting deploy_pending opens a full rollout,
-- clearing it ends every open one; a service_deploy row inserted opens a
-- rollout of that service, one deleted ends those that cover it.
CREATE TRIGGER cronpolicy.deploy_state_opens_rollout AFTER UPDATE OF deploy_pending ON deploy_state
    FOR EACH ROW WHEN NEW.deploy_pending
        AND NOT EXISTS (SELECT 1 FROM rollout WHERE ended_at IS NULL AND kind = 'full')
BEGIN
    INSERT INTO rollout (kind, reason, owner) VALUES ('full', NEW.reason, NEW.changed_by);
END;

CREATE TRIGGER cronpolicy.deploy_state_ends_rollouts AFTER UPDATE OF deploy_pending ON deploy_state
    FOR EACH ROW WHEN NOT NEW.deploy_pending
        AND EXISTS (SELECT 1 FROM rollout WHERE ended_at IS NULL AND kind = 'full')
BEGIN
    UPDATE rollout SET ended_at = strftime('%Y-%m-%d %H:%M:%f', 'now'), ended_by = NEW.changed_by
     WHERE ended_at IS NULL AND kind = 'full';
END;

CREATE TRIGGER cronpolicy.deploy_state_renames_rollout AFTER UPDATE OF reason ON deploy_state
    FOR EACH ROW WHEN NEW.deploy_pending AND NEW.reason IS NOT OLD.reason
BEGIN
    UPDATE rollout SET reason = NEW.reason
     WHERE id = (SELECT id FROM rollout WHERE ended_at IS NULL AND kind = 'full'
                  ORDER BY began_at, id LIMIT 1)
       AND reason IS NOT NEW.reason;
END;

CREATE TRIGGER cronpolicy.service_deploy_opens_rollout AFTER INSERT ON service_deploy
    FOR EACH ROW WHEN NOT EXISTS (SELECT 1 FROM rollout AS r WHERE r.ended_at IS NULL AND r.kind = 'services' AND instr(',' || r.services || ',', ',' || NEW.service || ',') > 0)
BEGIN
    INSERT INTO rollout (kind, services, reason, owner)
    VALUES ('services', NEW.service, NEW.reason, NEW.changed_by);
END;

CREATE TRIGGER cronpolicy.service_deploy_ends_rollouts AFTER DELETE ON service_deploy
    FOR EACH ROW WHEN EXISTS (SELECT 1 FROM rollout AS r WHERE r.ended_at IS NULL AND r.kind = 'services' AND instr(',' || r.services || ',', ',' || OLD.service || ',') > 0)
BEGIN
    UPDATE rollout SET ended_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
     WHERE ended_at IS NULL AND kind = 'services'
       AND instr(',' || services || ',', ',' || OLD.service || ',') > 0;
END;

CREATE TRIGGER cronpolicy.service_deploy_moves_rollout AFTER UPDATE OF service, reason
    ON service_deploy
    FOR EACH ROW WHEN NEW.service IS NOT OLD.service OR NEW.reason IS NOT OLD.reason
BEGIN
    INSERT INTO rollout (kind, services, reason, owner)
    SELECT 'services', NEW.service, NEW.reason, NEW.changed_by
     WHERE NOT EXISTS (SELECT 1 FROM rollout AS r WHERE r.ended_at IS NULL AND r.kind = 'services' AND instr(',' || r.services || ',', ',' || NEW.service || ',') > 0);
    UPDATE rollout SET ended_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
     WHERE NEW.service IS NOT OLD.service AND ended_at IS NULL AND kind = 'services'
       AND instr(',' || services || ',', ',' || OLD.service || ',') > 0;
    UPDATE rollout SET reason = NEW.reason
     WHERE id = (SELECT id FROM rollout WHERE ended_at IS NULL AND kind = 'services'
                    AND instr(',' || services || ',', ',' || NEW.service || ',') > 0
                  ORDER BY began_at, id LIMIT 1)
       AND reason IS NOT NEW.reason;
END;

-- SQLite fires a table's triggers newest first: the audit's are made (again)
-- last, so an entry is written before the changes it causes, in the order
-- PostgreSQL writes them (its triggers fire by name).
DROP TRIGGER cronpolicy.deploy_state_audit_insert;
DROP TRIGGER cronpolicy.deploy_state_audit_update;
DROP TRIGGER cronpolicy.deploy_state_audit_delete;
DROP TRIGGER cronpolicy.service_deploy_audit_insert;
DROP TRIGGER cronpolicy.service_deploy_audit_update;
DROP TRIGGER cronpolicy.service_deploy_audit_delete;

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

CREATE TRIGGER cronpolicy.rollout_audit_insert AFTER INSERT ON rollout
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, new_row)
    VALUES ('rollout', 'INSERT', NEW.id, json_object('id', NEW.id, 'kind', NEW.kind, 'services', NEW.services, 'reason', NEW.reason, 'owner', NEW.owner, 'owner_host', NEW.owner_host, 'owner_pid', NEW.owner_pid, 'began_at', NEW.began_at, 'expected_duration', NEW.expected_duration, 'lease_expires_at', NEW.lease_expires_at, 'quiet_at', NEW.quiet_at, 'ended_at', NEW.ended_at, 'ended_by', NEW.ended_by));
END;

-- Audited, but a lease renewed.
CREATE TRIGGER cronpolicy.rollout_audit_update AFTER UPDATE ON rollout
    FOR EACH ROW WHEN NOT (NEW.reason IS OLD.reason AND NEW.expected_duration IS OLD.expected_duration
                           AND NEW.quiet_at IS OLD.quiet_at AND NEW.ended_at IS OLD.ended_at
                           AND NEW.ended_by IS OLD.ended_by AND NEW.owner IS OLD.owner
                           AND NEW.owner_host IS OLD.owner_host AND NEW.owner_pid IS OLD.owner_pid
                           AND NEW.began_at IS OLD.began_at AND NEW.id IS OLD.id)
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row, new_row)
    VALUES ('rollout', 'UPDATE', NEW.id, json_object('id', OLD.id, 'kind', OLD.kind, 'services', OLD.services, 'reason', OLD.reason, 'owner', OLD.owner, 'owner_host', OLD.owner_host, 'owner_pid', OLD.owner_pid, 'began_at', OLD.began_at, 'expected_duration', OLD.expected_duration, 'lease_expires_at', OLD.lease_expires_at, 'quiet_at', OLD.quiet_at, 'ended_at', OLD.ended_at, 'ended_by', OLD.ended_by),
            json_object('id', NEW.id, 'kind', NEW.kind, 'services', NEW.services, 'reason', NEW.reason, 'owner', NEW.owner, 'owner_host', NEW.owner_host, 'owner_pid', NEW.owner_pid, 'began_at', NEW.began_at, 'expected_duration', NEW.expected_duration, 'lease_expires_at', NEW.lease_expires_at, 'quiet_at', NEW.quiet_at, 'ended_at', NEW.ended_at, 'ended_by', NEW.ended_by));
END;

CREATE TRIGGER cronpolicy.rollout_audit_delete AFTER DELETE ON rollout
BEGIN
    INSERT INTO policy_audit (table_name, operation, row_id, old_row)
    VALUES ('rollout', 'DELETE', OLD.id, json_object('id', OLD.id, 'kind', OLD.kind, 'services', OLD.services, 'reason', OLD.reason, 'owner', OLD.owner, 'owner_host', OLD.owner_host, 'owner_pid', OLD.owner_pid, 'began_at', OLD.began_at, 'expected_duration', OLD.expected_duration, 'lease_expires_at', OLD.lease_expires_at, 'quiet_at', OLD.quiet_at, 'ended_at', OLD.ended_at, 'ended_by', OLD.ended_by));
END;

-- A switch already set when this patch is applied is an open rollout.
INSERT INTO cronpolicy.rollout (kind, reason, owner, began_at)
SELECT 'full', reason, changed_by, changed_at FROM cronpolicy.deploy_state
 WHERE id = 1 AND deploy_pending;
INSERT INTO cronpolicy.rollout (kind, services, reason, owner, began_at)
SELECT 'services', service, reason, changed_by, changed_at FROM cronpolicy.service_deploy
 ORDER BY changed_at, id;

CREATE TABLE cronpolicy.rollout_awaited (
    rollout_id     INTEGER NOT NULL REFERENCES rollout (id) ON DELETE CASCADE,
    run_id         INTEGER NOT NULL,
    name           TEXT NOT NULL,
    host           TEXT NOT NULL,
    first_seen_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    last_seen_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (rollout_id, run_id),
    CONSTRAINT rollout_awaited_seen_in_order CHECK (julianday(last_seen_at) >= julianday(first_seen_at)),
    CONSTRAINT rollout_awaited_values_in_range CHECK (
        (first_seen_at IS NULL OR (typeof(first_seen_at) = 'text' AND coalesce(first_seen_at IN (strftime('%Y-%m-%d %H:%M:%f', first_seen_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', first_seen_at, '+0 days'), strftime('%Y-%m-%d %H:%M', first_seen_at, '+0 days'), strftime('%Y-%m-%d', first_seen_at, '+0 days')), 0) AND coalesce(julianday(first_seen_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (last_seen_at IS NULL OR (typeof(last_seen_at) = 'text' AND coalesce(last_seen_at IN (strftime('%Y-%m-%d %H:%M:%f', last_seen_at, '+0 days'), strftime('%Y-%m-%d %H:%M:%S', last_seen_at, '+0 days'), strftime('%Y-%m-%d %H:%M', last_seen_at, '+0 days'), strftime('%Y-%m-%d', last_seen_at, '+0 days')), 0) AND coalesce(julianday(last_seen_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
);

ALTER TABLE cronpolicy.script_run ADD COLUMN stop_block TEXT;
CREATE INDEX cronpolicy.script_run_skip_block_idx ON script_run (block) WHERE block IS NOT NULL;
CREATE INDEX cronpolicy.script_run_stop_block_idx ON script_run (stop_block)
    WHERE stop_block IS NOT NULL;
