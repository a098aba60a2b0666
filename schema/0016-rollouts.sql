-- cronpolicy schema patch 0016: rollouts as owned, recorded objects.
--
-- A rollout is a row of cronpolicy.rollout: who began it (the login), why,
-- its kind ('full': every script stops, as for database patches;
-- 'services': only the scripts that need one of its services), when it
-- began, when the fleet was first seen quiet for it, when it ended, and how
-- long it was expected to take.  While any full rollout is open the fleet
-- is stopped; while a rollout of a service is open the scripts that need
-- that service are.  Several may be open at once, each ended on its own
-- (`cronpolicy deploy begin`, `deploy end ID`, `deploy run -- CMD`).
--
-- The switches of earlier versions keep their meaning and stay in step:
--
-- * deploy_state.deploy_pending is true exactly while a full rollout is
--   open (its reason: the oldest open one's).  A DBA's plain UPDATE that
--   sets it opens a full rollout owned by that login; one that clears it
--   ends every open full rollout, as it always released the fleet.
-- * service_deploy has a row for each service an open rollout covers.  A
--   DBA's INSERT opens a rollout of that service; a DELETE ends every open
--   rollout that covers the service.
--
-- Hosts running an older cronpolicy read those two tables, so a fleet may
-- be upgraded host by host.  Every change is audited (policy_audit), but a
-- running `deploy run` renewing its owner's lease (lease_expires_at), which
-- is neither audited nor announced.
--
-- Each run records the rollout behind its skip (script_run.block, now
-- 'rollout:ID') and behind its interruption (script_run.stop_block), and
-- rollout_awaited the runs `deploy wait` waited for: what each rollout
-- cost can be read back (`cronpolicy rollouts`).
--
-- Applying it again changes nothing (IF NOT EXISTS, OR REPLACE).

CREATE TABLE IF NOT EXISTS cronpolicy.rollout (
    id                 integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind               text NOT NULL DEFAULT 'full',
    services           text NOT NULL DEFAULT '',
    reason             text NOT NULL DEFAULT '',
    owner              text NOT NULL DEFAULT session_user,
    owner_host         text,
    owner_pid          integer,
    began_at           timestamptz NOT NULL DEFAULT now(),
    expected_duration  interval,
    lease_expires_at   timestamptz,
    quiet_at           timestamptz,
    ended_at           timestamptz,
    ended_by           text,
    CONSTRAINT rollout_kind_known CHECK (kind IN ('full', 'services')),
    CONSTRAINT rollout_services_fit_kind CHECK (
        CASE kind WHEN 'full' THEN services = ''
                  ELSE services <> '' AND cronpolicy.service_list_ok(services) END),
    CONSTRAINT rollout_expected_duration_positive CHECK (expected_duration > interval '0'),
    CONSTRAINT rollout_ends_after_it_begins CHECK (ended_at >= began_at),
    CONSTRAINT rollout_quiet_after_it_begins CHECK (quiet_at >= began_at),
    CONSTRAINT rollout_values_in_range CHECK (
        cronpolicy.time_in_range(began_at) AND cronpolicy.interval_in_range(expected_duration)
        AND cronpolicy.time_in_range(lease_expires_at) AND cronpolicy.time_in_range(quiet_at)
        AND cronpolicy.time_in_range(ended_at))
);
CREATE INDEX IF NOT EXISTS rollout_open_idx ON cronpolicy.rollout (began_at) WHERE ended_at IS NULL;
COMMENT ON TABLE cronpolicy.rollout IS
    'Rollouts, open and ended.  While a full rollout is open no script starts and running ones '
    'stop at their next safe point; a rollout of services does that to the scripts that need '
    'one of them.  End one by setting ended_at (`cronpolicy deploy end ID`).';
COMMENT ON COLUMN cronpolicy.rollout.id IS 'Rollout id, as `cronpolicy rollouts` and skip reasons show it.';
COMMENT ON COLUMN cronpolicy.rollout.kind IS
    'full: every script stops (database patches); services: only scripts that need one of services.';
COMMENT ON COLUMN cronpolicy.rollout.services IS
    'The services rolled out, comma-separated (''xmlrpc,librarian''); '''' for a full rollout.';
COMMENT ON COLUMN cronpolicy.rollout.reason IS 'What is rolled out; quoted in skip reasons.';
COMMENT ON COLUMN cronpolicy.rollout.owner IS 'The login that began it (set by the database).';
COMMENT ON COLUMN cronpolicy.rollout.owner_host IS
    'The host the owning process runs on (`deploy run`, `deploy begin`), for people; NULL from SQL.';
COMMENT ON COLUMN cronpolicy.rollout.owner_pid IS 'The owning process, on owner_host.';
COMMENT ON COLUMN cronpolicy.rollout.began_at IS 'When it began (set by the database).';
COMMENT ON COLUMN cronpolicy.rollout.expected_duration IS
    'How long it should stay open (--expect); past it the rollout is overdue.  NULL: the '
    'configured default (default_rollout_expect, 1h).';
COMMENT ON COLUMN cronpolicy.rollout.lease_expires_at IS
    'The owning process''s lease (`deploy run` renews it while it lives); past it, and still '
    'open, the rollout''s owner is lost.  NULL: no process keeps one.  At most an hour ahead.';
COMMENT ON COLUMN cronpolicy.rollout.quiet_at IS
    'When `deploy wait` first saw no run in its way (set once); quiet_at - began_at is its stall.';
COMMENT ON COLUMN cronpolicy.rollout.ended_at IS 'When it ended (set by the database); NULL: open.';
COMMENT ON COLUMN cronpolicy.rollout.ended_by IS 'The login that ended it (set by the database).';


-- Who and when are the database's to say; what a rollout is does not change.
CREATE OR REPLACE FUNCTION cronpolicy.touch_rollout() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NOT cronpolicy.is_administrator(session_user) THEN
        NEW.owner := session_user;
        NEW.began_at := now();
        NEW.quiet_at := NULL;
        NEW.ended_at := NULL;
        NEW.ended_by := NULL;
    ELSIF TG_OP = 'INSERT' THEN
        -- Administrators may record a rollout of the past (this patch does).
        NEW.ended_by := CASE WHEN NEW.ended_at IS NULL THEN NULL
                             ELSE coalesce(NEW.ended_by, session_user) END;
    ELSE
        IF NEW.kind IS DISTINCT FROM OLD.kind OR NEW.services IS DISTINCT FROM OLD.services THEN
            RAISE EXCEPTION 'rollout #% stays of what it began with (% %); end it and begin another',
                OLD.id, OLD.kind, nullif(OLD.services, '')
                USING ERRCODE = 'check_violation';
        END IF;
        IF OLD.ended_at IS NOT NULL AND NEW.ended_at IS DISTINCT FROM OLD.ended_at THEN
            RAISE EXCEPTION 'rollout #% ended at %; begin another', OLD.id, OLD.ended_at
                USING ERRCODE = 'check_violation';
        END IF;
        NEW.id := OLD.id;
        NEW.owner := OLD.owner;
        NEW.began_at := OLD.began_at;
        IF OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL THEN
            NEW.ended_at := now();
            NEW.ended_by := session_user;
            NEW.lease_expires_at := NULL;
        ELSE
            NEW.ended_by := OLD.ended_by;
        END IF;
        -- First seen quiet: once, and never before it began nor after now.
        NEW.quiet_at := CASE WHEN OLD.quiet_at IS NOT NULL THEN OLD.quiet_at
                             WHEN NEW.quiet_at IS NULL THEN NULL
                             ELSE greatest(OLD.began_at, least(NEW.quiet_at, now())) END;
    END IF;
    -- (least() would make a missing lease an hour's: NULL stays NULL.)
    IF NEW.lease_expires_at IS NOT NULL THEN
        NEW.lease_expires_at := least(NEW.lease_expires_at, now() + interval '1 hour');
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION cronpolicy.touch_rollout() IS
    'Sets a rollout''s owner, began_at, ended_at and ended_by (the login, the database clock; '
    'administrators may say otherwise when they insert one); keeps its kind and services; an '
    'ended rollout stays ended; caps the lease at an hour.';
DROP TRIGGER IF EXISTS rollout_touch ON cronpolicy.rollout;
CREATE TRIGGER rollout_touch BEFORE INSERT OR UPDATE ON cronpolicy.rollout
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.touch_rollout();

-- Audited, but a lease renewed.
DROP TRIGGER IF EXISTS rollout_audit ON cronpolicy.rollout;
CREATE TRIGGER rollout_audit AFTER INSERT OR DELETE ON cronpolicy.rollout
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.audit_change();
DROP TRIGGER IF EXISTS rollout_audit_update ON cronpolicy.rollout;
CREATE TRIGGER rollout_audit_update AFTER UPDATE ON cronpolicy.rollout
    FOR EACH ROW WHEN ((OLD.reason, OLD.expected_duration, OLD.quiet_at, OLD.ended_at,
                        OLD.owner_host, OLD.owner_pid)
                       IS DISTINCT FROM (NEW.reason, NEW.expected_duration, NEW.quiet_at,
                                         NEW.ended_at, NEW.owner_host, NEW.owner_pid))
    EXECUTE FUNCTION cronpolicy.audit_change();
DROP TRIGGER IF EXISTS rollout_audit_truncate ON cronpolicy.rollout;
CREATE TRIGGER rollout_audit_truncate BEFORE TRUNCATE ON cronpolicy.rollout
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.audit_truncate();

-- Running scripts hear of a rollout begun or ended (pg_notify sends one
-- notification per transaction and payload, however many rows).
DROP TRIGGER IF EXISTS rollout_notify ON cronpolicy.rollout;
CREATE TRIGGER rollout_notify AFTER INSERT OR DELETE ON cronpolicy.rollout
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.notify_policy_change();
DROP TRIGGER IF EXISTS rollout_notify_update ON cronpolicy.rollout;
CREATE TRIGGER rollout_notify_update AFTER UPDATE ON cronpolicy.rollout
    FOR EACH ROW WHEN ((OLD.ended_at, OLD.reason) IS DISTINCT FROM (NEW.ended_at, NEW.reason))
    EXECUTE FUNCTION cronpolicy.notify_policy_change();
DROP TRIGGER IF EXISTS rollout_notify_truncate ON cronpolicy.rollout;
CREATE TRIGGER rollout_notify_truncate AFTER TRUNCATE ON cronpolicy.rollout
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.notify_policy_change();


-- The switches follow the rollouts.  Each side acts only where the other
-- disagrees with it, so neither undoes the other and nothing loops.
CREATE OR REPLACE FUNCTION cronpolicy.switches_follow_rollouts() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    full_reason text;
    full_open boolean;
BEGIN
    SELECT r.reason INTO full_reason FROM cronpolicy.rollout AS r
     WHERE r.ended_at IS NULL AND r.kind = 'full' ORDER BY r.began_at, r.id LIMIT 1;
    full_open := FOUND;
    UPDATE cronpolicy.deploy_state AS d
       SET deploy_pending = full_open,
           reason = CASE WHEN full_open THEN full_reason WHEN d.deploy_pending THEN ''
                         ELSE d.reason END
     WHERE d.id = 1 AND (d.deploy_pending IS DISTINCT FROM full_open
                         OR (full_open AND d.reason IS DISTINCT FROM full_reason));
    DELETE FROM cronpolicy.service_deploy AS s
     WHERE NOT EXISTS (SELECT 1 FROM cronpolicy.rollout AS r
                        WHERE r.ended_at IS NULL AND r.kind = 'services'
                          AND s.service = ANY (string_to_array(r.services, ',')));
    INSERT INTO cronpolicy.service_deploy (service, reason)
    SELECT DISTINCT ON (service) service, r.reason
      FROM cronpolicy.rollout AS r, unnest(string_to_array(r.services, ',')) AS service
     WHERE r.ended_at IS NULL AND r.kind = 'services'
     ORDER BY service, r.began_at, r.id
        ON CONFLICT (service) DO NOTHING;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION cronpolicy.switches_follow_rollouts() IS
    'Keeps deploy_state and service_deploy in step with the open rollouts, for DBAs and for '
    'hosts running an older cronpolicy.';
DROP TRIGGER IF EXISTS rollout_switches ON cronpolicy.rollout;
CREATE TRIGGER rollout_switches AFTER INSERT OR DELETE OR UPDATE OF kind, services, reason, ended_at
    ON cronpolicy.rollout
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.switches_follow_rollouts();
DROP TRIGGER IF EXISTS rollout_switches_truncate ON cronpolicy.rollout;
CREATE TRIGGER rollout_switches_truncate AFTER TRUNCATE ON cronpolicy.rollout
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.switches_follow_rollouts();

CREATE OR REPLACE FUNCTION cronpolicy.deploy_switch_to_rollouts() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    oldest integer;
BEGIN
    SELECT r.id INTO oldest FROM cronpolicy.rollout AS r
     WHERE r.ended_at IS NULL AND r.kind = 'full' ORDER BY r.began_at, r.id LIMIT 1;
    IF NEW.deploy_pending AND oldest IS NULL THEN
        INSERT INTO cronpolicy.rollout (kind, reason) VALUES ('full', NEW.reason);
    ELSIF NOT NEW.deploy_pending AND oldest IS NOT NULL THEN
        UPDATE cronpolicy.rollout SET ended_at = now() WHERE ended_at IS NULL AND kind = 'full';
    ELSIF NEW.deploy_pending THEN
        UPDATE cronpolicy.rollout SET reason = NEW.reason
         WHERE id = oldest AND reason IS DISTINCT FROM NEW.reason;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION cronpolicy.deploy_switch_to_rollouts() IS
    'A plain UPDATE of deploy_state: setting deploy_pending opens a full rollout, clearing it '
    'ends every open one, a new reason is the oldest open one''s.';
DROP TRIGGER IF EXISTS deploy_state_rollouts ON cronpolicy.deploy_state;
CREATE TRIGGER deploy_state_rollouts AFTER INSERT OR UPDATE OF deploy_pending, reason
    ON cronpolicy.deploy_state
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.deploy_switch_to_rollouts();

CREATE OR REPLACE FUNCTION cronpolicy.service_switch_to_rollouts() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE cronpolicy.rollout SET ended_at = now()
         WHERE ended_at IS NULL AND kind = 'services';
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.service IS DISTINCT FROM OLD.service THEN
        -- One statement, so the switches follow once both are done.
        WITH ended AS (
            UPDATE cronpolicy.rollout SET ended_at = now()
             WHERE ended_at IS NULL AND kind = 'services'
               AND OLD.service = ANY (string_to_array(services, ','))
            RETURNING id)
        INSERT INTO cronpolicy.rollout (kind, services, reason)
        SELECT 'services', NEW.service, NEW.reason
         WHERE NOT EXISTS (SELECT 1 FROM cronpolicy.rollout
                            WHERE ended_at IS NULL AND kind = 'services'
                              AND NEW.service = ANY (string_to_array(services, ','))
                              AND id NOT IN (SELECT id FROM ended));
        RETURN NULL;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NOT EXISTS (SELECT 1 FROM cronpolicy.rollout
                        WHERE ended_at IS NULL AND kind = 'services'
                          AND NEW.service = ANY (string_to_array(services, ','))) THEN
            INSERT INTO cronpolicy.rollout (kind, services, reason)
            VALUES ('services', NEW.service, NEW.reason);
        ELSIF TG_OP = 'UPDATE' AND NEW.reason IS DISTINCT FROM OLD.reason THEN
            UPDATE cronpolicy.rollout SET reason = NEW.reason
             WHERE id = (SELECT id FROM cronpolicy.rollout
                          WHERE ended_at IS NULL AND kind = 'services'
                            AND NEW.service = ANY (string_to_array(services, ','))
                          ORDER BY began_at, id LIMIT 1)
               AND reason IS DISTINCT FROM NEW.reason;
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        UPDATE cronpolicy.rollout SET ended_at = now()
         WHERE ended_at IS NULL AND kind = 'services'
           AND OLD.service = ANY (string_to_array(services, ','));
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION cronpolicy.service_switch_to_rollouts() IS
    'Plain SQL on service_deploy: a row inserted opens a rollout of that service, one deleted '
    'ends every open rollout that covers it.';
DROP TRIGGER IF EXISTS service_deploy_rollouts ON cronpolicy.service_deploy;
CREATE TRIGGER service_deploy_rollouts AFTER INSERT OR DELETE OR UPDATE OF service, reason
    ON cronpolicy.service_deploy
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.service_switch_to_rollouts();
DROP TRIGGER IF EXISTS service_deploy_rollouts_truncate ON cronpolicy.service_deploy;
CREATE TRIGGER service_deploy_rollouts_truncate BEFORE TRUNCATE ON cronpolicy.service_deploy
    FOR EACH STATEMENT EXECUTE FUNCTION cronpolicy.service_switch_to_rollouts();

-- A switch already set when this patch is applied is an open rollout.
INSERT INTO cronpolicy.rollout (kind, reason, owner, began_at)
SELECT 'full', reason, changed_by, changed_at FROM cronpolicy.deploy_state
 WHERE id = 1 AND deploy_pending
   AND NOT EXISTS (SELECT 1 FROM cronpolicy.rollout WHERE ended_at IS NULL AND kind = 'full');
INSERT INTO cronpolicy.rollout (kind, services, reason, owner, began_at)
SELECT 'services', s.service, s.reason, s.changed_by, s.changed_at
  FROM cronpolicy.service_deploy AS s
 WHERE NOT EXISTS (SELECT 1 FROM cronpolicy.rollout AS r
                    WHERE r.ended_at IS NULL AND r.kind = 'services'
                      AND s.service = ANY (string_to_array(r.services, ',')))
 ORDER BY s.changed_at, s.id;


-- The runs a rollout waited for, as `deploy wait` saw them.
CREATE TABLE IF NOT EXISTS cronpolicy.rollout_awaited (
    rollout_id     integer NOT NULL REFERENCES cronpolicy.rollout (id) ON DELETE CASCADE,
    run_id         bigint NOT NULL,
    name           text NOT NULL,
    host           text NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rollout_id, run_id),
    CONSTRAINT rollout_awaited_seen_in_order CHECK (last_seen_at >= first_seen_at),
    CONSTRAINT rollout_awaited_values_in_range CHECK (
        cronpolicy.time_in_range(first_seen_at) AND cronpolicy.time_in_range(last_seen_at))
);
COMMENT ON TABLE cronpolicy.rollout_awaited IS
    'The runs each rollout waited for: seen still running by `deploy wait` after it began.';
COMMENT ON COLUMN cronpolicy.rollout_awaited.rollout_id IS 'The rollout.';
COMMENT ON COLUMN cronpolicy.rollout_awaited.run_id IS
    'The run (script_run.id; prune may have deleted its row since).';
COMMENT ON COLUMN cronpolicy.rollout_awaited.name IS 'The run''s script.';
COMMENT ON COLUMN cronpolicy.rollout_awaited.host IS 'The run''s host.';
COMMENT ON COLUMN cronpolicy.rollout_awaited.first_seen_at IS 'When a wait first found it in the way.';
COMMENT ON COLUMN cronpolicy.rollout_awaited.last_seen_at IS 'When a wait last found it in the way.';


-- Why a run was interrupted, by rollout; and counting a rollout's skips.
ALTER TABLE cronpolicy.script_run ADD COLUMN IF NOT EXISTS stop_block text;
COMMENT ON COLUMN cronpolicy.script_run.stop_block IS
    'The rollout or window that interrupted the run (''rollout:12'', ''window:7''), as block is for a skip.';
CREATE INDEX IF NOT EXISTS script_run_skip_block_idx ON cronpolicy.script_run (block)
    WHERE block IS NOT NULL;
CREATE INDEX IF NOT EXISTS script_run_stop_block_idx ON cronpolicy.script_run (stop_block)
    WHERE stop_block IS NOT NULL;


-- Databases whose roles were set up before this patch: the rights roles.sql gives.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_script') THEN
        GRANT SELECT ON cronpolicy.rollout, cronpolicy.rollout_awaited TO cronpolicy_script;
        GRANT UPDATE (stop_block) ON cronpolicy.script_run TO cronpolicy_script;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_rollout') THEN
        GRANT INSERT (kind, services, reason, owner_host, owner_pid, expected_duration,
                      lease_expires_at),
              UPDATE (reason, expected_duration, lease_expires_at, quiet_at, ended_at)
            ON cronpolicy.rollout TO cronpolicy_rollout;
        GRANT INSERT, UPDATE ON cronpolicy.rollout_awaited TO cronpolicy_rollout;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE
            ON cronpolicy.rollout, cronpolicy.rollout_awaited TO cronpolicy_admin;
        GRANT EXECUTE ON FUNCTION cronpolicy.touch_rollout(),
                                  cronpolicy.switches_follow_rollouts(),
                                  cronpolicy.deploy_switch_to_rollouts(),
                                  cronpolicy.service_switch_to_rollouts() TO cronpolicy_admin;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_auditor') THEN
        GRANT SELECT ON cronpolicy.rollout TO cronpolicy_auditor;
    END IF;
END
$$;
