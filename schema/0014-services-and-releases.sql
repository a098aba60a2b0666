-- cronpolicy schema patch 0014: rollouts of one service, and the release each run executes.
--
-- Needs.  A script declares the services it depends on (CronScript.needs,
-- `cronpolicy run --needs`), or a DBA says so in script_policy.needs, which
-- wins: a comma-separated list of service names ('xmlrpc,librarian'; ''
-- means none).  Each run records the needs it ran with (script_run.needs).
--
-- Scoped rollouts.  A row of service_deploy means a deploy of that service is
-- pending: only the scripts that need it are skipped and stopped, while the
-- global switch (deploy_state) stays as it is; several services may be
-- pending at once.  A rollout window with a service (rollout_window.service)
-- covers only the scripts that need it.  A script with no needs follows
-- only global rollouts.  DBAs write both with plain SQL:
--
--     INSERT INTO cronpolicy.service_deploy (service, reason) VALUES ('xmlrpc', 'r4522');
--     DELETE FROM cronpolicy.service_deploy WHERE service = 'xmlrpc';
--
-- Releases.  script_run.release is the release directory a run executes
-- (the symlink of its path, such as /srv/app/current, resolved at its
-- start): `deploy wait --release-not R` waits only for runs of older ones.
--
-- Applying it again changes nothing (IF NOT EXISTS, OR REPLACE).

-- A service name: letters, digits, '_', '.', '-'; a list: names and commas.
CREATE OR REPLACE FUNCTION cronpolicy.service_list_ok(needs text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT needs ~ '^([A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*)?$' AND length(needs) <= 1000
$$;
COMMENT ON FUNCTION cronpolicy.service_list_ok(text) IS
    'Whether a list of services is one cronpolicy reads: names of letters, digits, _ . - '
    'separated by commas, or empty (NULL for NULL).';

ALTER TABLE cronpolicy.script_policy
    ADD COLUMN IF NOT EXISTS needs text CONSTRAINT script_policy_needs_known
        CHECK (cronpolicy.service_list_ok(needs));
COMMENT ON COLUMN cronpolicy.script_policy.needs IS
    'The services the matching scripts need, comma-separated (''xmlrpc,librarian''; '''': '
    'none); NULL: as the script declares.  A rollout of a service stops only those that need it.';

ALTER TABLE cronpolicy.script_run
    ADD COLUMN IF NOT EXISTS needs text,
    ADD COLUMN IF NOT EXISTS release text;
COMMENT ON COLUMN cronpolicy.script_run.needs IS
    'The services the run needed, comma-separated, as it ran.';
COMMENT ON COLUMN cronpolicy.script_run.release IS
    'The release directory the run executes (its path''s symlink resolved at its start), '
    'if it is pinned to one.';

ALTER TABLE cronpolicy.rollout_window ADD COLUMN IF NOT EXISTS service text
    CONSTRAINT rollout_window_service_known CHECK (service ~ '^[A-Za-z0-9_.-]+$');
COMMENT ON COLUMN cronpolicy.rollout_window.service IS
    'The service rolled out: the window covers only scripts that need it; NULL: every script '
    'its patterns match.';

CREATE TABLE IF NOT EXISTS cronpolicy.service_deploy (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service text NOT NULL,
    reason text NOT NULL DEFAULT '',
    changed_by text NOT NULL DEFAULT session_user,
    changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT service_deploy_one_per_service UNIQUE (service),
    CONSTRAINT service_deploy_service_known CHECK (service ~ '^[A-Za-z0-9_.-]+$'),
    CONSTRAINT service_deploy_values_in_range CHECK (cronpolicy.time_in_range(changed_at))
);
COMMENT ON TABLE cronpolicy.service_deploy IS
    'Services with a deploy pending: while a row stands, scripts that need the service do not '
    'start and running ones stop at their next safe point.  Delete the row to end it.';
COMMENT ON COLUMN cronpolicy.service_deploy.id IS 'Row id.';
COMMENT ON COLUMN cronpolicy.service_deploy.service IS 'The service being deployed.';
COMMENT ON COLUMN cronpolicy.service_deploy.reason IS 'Why; quoted in skip reasons.';
COMMENT ON COLUMN cronpolicy.service_deploy.changed_by IS
    'Database user who began it (set by the database).';
COMMENT ON COLUMN cronpolicy.service_deploy.changed_at IS
    'Since when it is pending (set by the database when the row is made).';

CREATE OR REPLACE FUNCTION cronpolicy.touch_service_deploy() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.changed_by := session_user;
    NEW.changed_at := CASE WHEN TG_OP = 'UPDATE' AND NEW.service = OLD.service
                           THEN OLD.changed_at ELSE now() END;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION cronpolicy.touch_service_deploy() IS
    'Sets who began a service deploy and since when (kept across updates of its reason).';
DROP TRIGGER IF EXISTS service_deploy_touch ON cronpolicy.service_deploy;
CREATE TRIGGER service_deploy_touch BEFORE INSERT OR UPDATE ON cronpolicy.service_deploy
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.touch_service_deploy();
DROP TRIGGER IF EXISTS service_deploy_audit ON cronpolicy.service_deploy;
CREATE TRIGGER service_deploy_audit AFTER INSERT OR UPDATE OR DELETE ON cronpolicy.service_deploy
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.audit_change();
DROP TRIGGER IF EXISTS service_deploy_audit_truncate ON cronpolicy.service_deploy;
CREATE TRIGGER service_deploy_audit_truncate AFTER TRUNCATE ON cronpolicy.service_deploy
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.audit_truncate();
-- Running scripts hear of it as of any policy change.
DROP TRIGGER IF EXISTS service_deploy_notify ON cronpolicy.service_deploy;
CREATE TRIGGER service_deploy_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON cronpolicy.service_deploy
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.notify_policy_change();

-- Databases whose roles were set up before this patch: the rights roles.sql gives.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_script') THEN
        GRANT SELECT ON cronpolicy.service_deploy TO cronpolicy_script;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_rollout') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON cronpolicy.service_deploy TO cronpolicy_rollout;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON cronpolicy.service_deploy
            TO cronpolicy_admin;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_auditor') THEN
        GRANT SELECT ON cronpolicy.service_deploy TO cronpolicy_auditor;
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION cronpolicy.service_list_ok(text) TO PUBLIC;
