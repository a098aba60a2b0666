-- cronpolicy schema patch 0019 for the embedded SQLite backend: see
-- ../0019-policy-version.sql.
--
-- SQLite has one writer at a time, so the row is bumped at once, row by
-- row, in the writer's transaction (there is no lock order to keep).
-- A DELETE without WHERE fires row triggers like any other once a table
-- has triggers, so TRUNCATE's case needs nothing.

CREATE TABLE cronpolicy.policy_version (
    id       INTEGER NOT NULL PRIMARY KEY DEFAULT 1,
    version  INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT policy_version_single_row CHECK (id = 1)
);

INSERT INTO cronpolicy.policy_version (id) VALUES (1);

CREATE TRIGGER cronpolicy.script_policy_version_insert AFTER INSERT ON script_policy
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.script_policy_version_update AFTER UPDATE ON script_policy
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.script_policy_version_delete AFTER DELETE ON script_policy
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.deploy_state_version_insert AFTER INSERT ON deploy_state
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.deploy_state_version_update AFTER UPDATE ON deploy_state
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.deploy_state_version_delete AFTER DELETE ON deploy_state
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.rollout_window_version_insert AFTER INSERT ON rollout_window
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.rollout_window_version_update AFTER UPDATE ON rollout_window
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.rollout_window_version_delete AFTER DELETE ON rollout_window
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.service_deploy_version_insert AFTER INSERT ON service_deploy
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.service_deploy_version_update AFTER UPDATE ON service_deploy
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.service_deploy_version_delete AFTER DELETE ON service_deploy
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.rollout_version_insert AFTER INSERT ON rollout
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
-- A lease renewed or a rollout marked quiet changes no decision.
CREATE TRIGGER cronpolicy.rollout_version_update AFTER UPDATE OF ended_at, reason ON rollout
    FOR EACH ROW WHEN OLD.ended_at IS NOT NEW.ended_at OR OLD.reason IS NOT NEW.reason
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cronpolicy.rollout_version_delete AFTER DELETE ON rollout
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
