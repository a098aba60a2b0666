-- cronpolicy schema patch 0021: a script's start and end ask nothing of the
-- catalogs that their answer does not need.
--
-- Every run is a new connection, and a new backend pays to read each
-- catalog and plan each statement the first time it meets them.  The
-- guards on script_run asked first whether the writer is an
-- administrator (cronpolicy.is_administrator: pg_roles, and pg_tables, a
-- view joining three catalogs), then, for a script, claimed the name and
-- the host through two SECURITY DEFINER functions: about 3 ms of the
-- server's time for a script's start on a new backend, the largest part
-- of what a gated no-op costs beyond the floor probe (issue 32.1).
--
-- Now the guard works out what it would make of the row first.  When that
-- is the row as written (a start: its times already now(); an end, a
-- heartbeat: nothing forced) and the login is listed for the name and the
-- host (script_owner, host_login: one index lookup each), the answer is
-- the same whoever writes, so it is given without asking who: the common
-- case of every script asks no catalog.  Otherwise it asks, as before.
-- The owner guard (a run updated by another login; guard_run_writer, the
-- guard_run_owner roles.sql defined) asks only when the run is another
-- login's.  SECURITY DEFINER functions that write many runs (renew_relayed,
-- reap_dead_runs) are asked about first, as before, and is_administrator
-- reads pg_class by the table's oid instead of the pg_tables view, a view
-- of three catalogs (the same answer, cheaper on a new backend and no
-- dearer per row: renew_relayed of 1,000 runs 56 ms before, 55 after).
--
-- guard_run_owner was defined in roles.sql; guard_run_writer's one home is
-- here (roles.sql attaches it), so databases whose roles were set up
-- before get the cheaper one too.  Applying it again changes nothing.

CREATE OR REPLACE FUNCTION cronpolicy.is_administrator(role_name text) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = role_name), false)
        OR role_name = (SELECT pg_get_userbyid(relowner) FROM pg_class
                         WHERE oid = 'cronpolicy.script_run'::regclass)
        OR CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin')
                THEN pg_has_role(role_name, 'cronpolicy_admin', 'MEMBER') ELSE false END
$$;
COMMENT ON FUNCTION cronpolicy.is_administrator(text) IS
    'Whether a role is a superuser, the owner of cronpolicy''s tables or a member of cronpolicy_admin.';


CREATE OR REPLACE FUNCTION cronpolicy.guard_run_times() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    written cronpolicy.script_run := NEW;
    claims boolean;
BEGIN
    -- current_user: the writer, or the owner inside SECURITY DEFINER
    -- functions such as reap_dead_runs and renew_relayed, which write
    -- many rows at once: asked first when it is not the login itself.
    IF current_user <> session_user AND cronpolicy.is_administrator(current_user) THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        -- The login's own script on its own host: nothing to claim.  The
        -- lists are read with the writer's rights (the claim functions read
        -- them with their owner's): a writer that may not read them, such
        -- as the owner of script_run when another role made the lists,
        -- asks who it is, as before, instead of failing.
        BEGIN
            claims := NOT (EXISTS (SELECT 1 FROM cronpolicy.script_owner
                                    WHERE name = NEW.name AND db_role = session_user)
                           AND EXISTS (SELECT 1 FROM cronpolicy.host_login
                                        WHERE host = NEW.host
                                          AND db_role = session_user));
        EXCEPTION WHEN insufficient_privilege THEN
            claims := true;
        END;
        IF NEW.spooled THEN
            -- (least and greatest skip NULLs: a column left NULL stays NULL.)
            NEW.started_at := least(NEW.started_at, now());
            NEW.finished_at := CASE WHEN NEW.finished_at IS NOT NULL
                                    THEN least(greatest(NEW.finished_at, NEW.started_at), now()) END;
            NEW.heartbeat_at := CASE WHEN NEW.heartbeat_at IS NOT NULL
                                     THEN least(greatest(NEW.heartbeat_at, NEW.started_at), now()) END;
        ELSE
            NEW.started_at := now();
            NEW.finished_at := CASE WHEN NEW.finished_at IS NOT NULL THEN now() END;
            NEW.heartbeat_at := CASE WHEN NEW.heartbeat_at IS NOT NULL THEN now() END;
        END IF;
    ELSE
        -- (roles.sql grants scripts no UPDATE of name or host: this is the second line.)
        claims := NEW.host IS DISTINCT FROM OLD.host;
        NEW.started_at := OLD.started_at;
        NEW.spooled := NEW.spooled OR OLD.spooled;
        IF NEW.finished_at IS DISTINCT FROM OLD.finished_at AND NEW.finished_at IS NOT NULL THEN
            NEW.finished_at := CASE WHEN NEW.spooled
                                    THEN least(greatest(NEW.finished_at, NEW.started_at), now())
                                    ELSE greatest(now(), NEW.started_at) END;
        END IF;
        IF NEW.heartbeat_at IS DISTINCT FROM OLD.heartbeat_at AND NEW.heartbeat_at IS NOT NULL THEN
            NEW.heartbeat_at := now();
        END IF;
    END IF;
    IF NEW.lease_expires_at IS NOT NULL THEN
        NEW.lease_expires_at := least(NEW.lease_expires_at, now() + interval '1 hour');
    END IF;
    -- Nothing to claim and nothing changed: an administrator's write would
    -- be kept as written, anyone else's as it now is, and they are the same.
    -- (The rows compare column by column: a column added to script_run
    -- needs a type with an equality operator, as every one has now.)
    IF NOT claims AND NEW IS NOT DISTINCT FROM written THEN
        RETURN NEW;
    END IF;
    IF cronpolicy.is_administrator(current_user) THEN
        RETURN written;
    END IF;
    IF claims AND TG_OP = 'INSERT' THEN
        PERFORM cronpolicy.claim_script(NEW.name);
    END IF;
    IF claims THEN
        PERFORM cronpolicy.claim_host(NEW.host);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION cronpolicy.guard_run_times() IS
    'For logins that are not administrators: runs of their own scripts (script_owner) on their '
    'own hosts (host_login) only, times from the database clock (spooled records: clamped to '
    '[started_at, now()]), leases of at most one hour.';


-- A host updates only the runs it wrote, and is told so when it tries
-- another's.  (SECURITY DEFINER functions run as their owner, so reaping
-- dead runs still works; administrators may update any run.)
--
-- A new name for what roles.sql defined as guard_run_owner: that one
-- belongs to whoever applied roles.sql, a superuser, and the database
-- owner, who may run this patch (docs/dbas.txt), could not replace it.
CREATE OR REPLACE FUNCTION cronpolicy.guard_run_writer() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- The writer is the login (session_user, as recorded in db_user), even
    -- after SET ROLE; current_user is the owner inside SECURITY DEFINER
    -- functions such as reap_dead_runs, which may update any run.  The
    -- catalogs are asked only about another login's run.
    IF OLD.db_user IS DISTINCT FROM session_user THEN
        IF NOT cronpolicy.is_administrator(current_user) THEN
            RAISE EXCEPTION 'run #% belongs to database user %; % may update only its own runs',
                OLD.id, OLD.db_user, session_user
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION cronpolicy.guard_run_writer() IS
    'Refuses, with a clear message, an update of a run written by another database user.';

-- roles.sql attaches it.  Here, for databases whose roles are set up: in
-- the place of guard_run_owner, and where roles.sql given to psql before
-- this patch (psql goes on past a failed statement) turned on row-level
-- security but could not attach it.  (Row-level security alone refuses
-- another login's run too, without naming whose.)  guard_run_owner goes
-- too if its owner is the one upgrading; roles.sql drops it otherwise.
DO $$
BEGIN
    IF (SELECT relrowsecurity FROM pg_class WHERE oid = 'cronpolicy.script_run'::regclass)
       OR EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'cronpolicy.script_run'::regclass
                     AND tgname = 'script_run_owner_guard') THEN
        DROP TRIGGER IF EXISTS script_run_owner_guard ON cronpolicy.script_run;
        CREATE TRIGGER script_run_owner_guard BEFORE UPDATE ON cronpolicy.script_run
            FOR EACH ROW EXECUTE FUNCTION cronpolicy.guard_run_writer();
    END IF;
    IF pg_has_role((SELECT proowner FROM pg_proc
                     WHERE oid = to_regprocedure('cronpolicy.guard_run_owner()')), 'USAGE') THEN
        DROP FUNCTION cronpolicy.guard_run_owner();
    END IF;
END
$$;
