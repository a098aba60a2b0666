-- cronpolicy schema patch 0012: the end of a run is announced.
--
-- `cronpolicy deploy wait` waits for the last run in a rollout's way to
-- end.  It used to look every 250 ms, on a new connection each time; it
-- now holds one connection, LISTENs on cronpolicy_run, and looks again the
-- moment a run leaves the state running (it succeeded, failed, was
-- interrupted, or was recorded as abandoned once its lease ran out).  The
-- payload is empty, so the ends of many runs in one transaction (a reap of
-- dead runs, say) reach a listener as one notification.  Heartbeats, which
-- leave a run running, announce nothing.

CREATE OR REPLACE FUNCTION cronpolicy.notify_run_end() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM pg_notify('cronpolicy_run', '');
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION cronpolicy.notify_run_end() IS
    'Announces on channel cronpolicy_run that a run left the state running (deploy wait listens).';

DROP TRIGGER IF EXISTS script_run_end_notify ON cronpolicy.script_run;
CREATE TRIGGER script_run_end_notify
    AFTER UPDATE OF status ON cronpolicy.script_run
    FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status IS DISTINCT FROM 'running')
    EXECUTE FUNCTION cronpolicy.notify_run_end();
COMMENT ON TRIGGER script_run_end_notify ON cronpolicy.script_run IS
    'Tells listeners (cronpolicy deploy wait) that a run ended; see notify_run_end().';
