-- cronpolicy schema patch 0027: a run's name, host and decision are held
-- to what an index entry can hold.
--
-- run_tally (patch 0022) is keyed by a run's name, host, status, decision
-- and whether a rollout or window skipped it.  A btree entry holds at most
-- 2,704 bytes, so a run whose name, host or decision was longer than that
-- together (3,000 random characters, say; written by plain SQL, by a
-- cronpolicy older than 0.2.0, which took any host name, or by any writer
-- as decision, which nothing limited) could be started but never tallied:
-- PostgreSQL refused its end ('index row size exceeds btree maximum',
-- 54000).  Once such a run's lease ran out, the reap that records dead runs
-- abandoned (reap_dead_runs, one statement for all of them) was refused
-- whole, and every command that records dead runs before it reads (status,
-- overdue, deploy plan, deploy wait) failed for the whole fleet, with no
-- dead run given up on anywhere, until someone deleted the row.
--
-- script_run_keys_fit now holds every new or changed run to what
-- cronpolicy itself writes: a name and a host of at most 255 characters
-- (matching.MAX_NAME_LENGTH; config refuses a longer host since 0.2.0)
-- and a decision of at most 64 (cronpolicy's codes have 20 at most).  At
-- 4 bytes a character that is 2,296 bytes of name, host and decision at
-- most: every such run fits run_tally's index, and the writer of a longer
-- one is refused when it writes it (23514, naming the constraint; this
-- cronpolicy takes that as a refusal of its data, not an outage), not the
-- fleet when the run dies.
-- Control characters stay allowed here (they fit any index; cronpolicy
-- writes none).  A CHECK of three lengths is all a start's INSERT pays
-- (benchmarks/README.txt: not measurable).
--
-- Rows written before this patch are mended by it (mend_run_keys): a
-- value past its limit keeps its first characters and ends in '~' and 32
-- hex digits of its SHA-256 (key_that_fits), so runs that shared a value
-- still share one, and two values share one only if their hashes begin
-- alike.  Each value so shortened is kept whole in the new table
-- mended_run_key, beside what the rows hold now (policy_audit is written
-- only by the audit's own functions once roles.sql is applied); a count of
-- run_tally under such a key is added to the count under the mended key.
-- No run and no count is lost, and a DBA can find every one by its
-- mended value.  A running run so mended goes on (its writer finds it by
-- id); once dead it is reaped and counted as any other.
--
-- Locks: the mend reads the whole history once while runs start and end
-- (it locks only the rows it changes); the constraint is added NOT VALID
-- (a moment of ACCESS EXCLUSIVE, then held to the commit), and the runs
-- still running are mended again, through the index of running runs, for
-- one started between the two.  A finished run written in that moment past
-- the limits stays as it is (it was tallied, so it fits the index); it
-- is never reaped, and a change to it is refused until it is mended.
-- The old rows are not validated here: a scan of the history holding the
-- lock would stop every start for its length.  To have PostgreSQL vouch
-- for them at a quiet time (SHARE UPDATE EXCLUSIVE: starts go on):
--     SELECT cronpolicy.mend_run_keys();
--     ALTER TABLE cronpolicy.script_run VALIDATE CONSTRAINT script_run_keys_fit;
--
-- Applying it again changes nothing (the constraint is added only if missing).

CREATE OR REPLACE FUNCTION cronpolicy.key_that_fits(value text, longest integer)
    RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT CASE WHEN pg_catalog.char_length(value) <= longest THEN value
            ELSE pg_catalog.left(value, longest - 33) || '~'
                 || pg_catalog.left(pg_catalog.encode(
                        pg_catalog.sha256(pg_catalog.convert_to(value, 'UTF8')), 'hex'), 32)
       END
$$;
COMMENT ON FUNCTION cronpolicy.key_that_fits(text, integer) IS
    'value if it has at most longest characters, else its first longest - 33 characters, ''~'' and '
    'the first 32 hex digits of its SHA-256 (longest characters in all): how mend_run_keys '
    'shortens a run''s name, host or decision (patch 0027).';

CREATE TABLE IF NOT EXISTS cronpolicy.mended_run_key (
    column_name text NOT NULL,
    mended      text NOT NULL,
    original    text NOT NULL,
    mended_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (column_name, mended)
);
COMMENT ON TABLE cronpolicy.mended_run_key IS
    'The names, hosts and decisions of runs (script_run, run_tally) too long for run_tally''s '
    'index that mend_run_keys shortened, each with the value it was (patch 0027).  The runs and '
    'counts now hold mended: find them by it.  (Never written on SQLite, which mends nothing.)';
COMMENT ON COLUMN cronpolicy.mended_run_key.column_name IS 'name, host or decision.';
COMMENT ON COLUMN cronpolicy.mended_run_key.mended IS
    'What the runs hold now: key_that_fits(original).';
COMMENT ON COLUMN cronpolicy.mended_run_key.original IS 'What they held, whole.';
COMMENT ON COLUMN cronpolicy.mended_run_key.mended_at IS 'When it was first mended.';

CREATE OR REPLACE FUNCTION cronpolicy.mend_run_keys(running_only boolean DEFAULT false)
    RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mended bigint;
BEGIN
    -- Each value shortened, kept whole first (the same value, the same
    -- mended one: once).  (Written here, not in policy_audit, which only
    -- the audit's own functions may write once roles.sql is applied.)
    INSERT INTO cronpolicy.mended_run_key (column_name, mended, original)
    SELECT DISTINCT v.column_name, cronpolicy.key_that_fits(v.original, v.longest), v.original
      FROM (SELECT r.name, r.host, r.decision FROM cronpolicy.script_run AS r
             WHERE (NOT running_only OR r.status = 'running')
            UNION ALL
            SELECT t.name, t.host, t.decision FROM cronpolicy.run_tally AS t
             WHERE NOT running_only) AS k,
           LATERAL (VALUES ('name', k.name, 255), ('host', k.host, 255),
                           ('decision', k.decision, 64)) AS v(column_name, original, longest)
     WHERE char_length(v.original) > v.longest
    ON CONFLICT DO NOTHING;
    -- The runs.  The tally's triggers move an ended run's count from its
    -- old key to its new (a running run is in no count).
    UPDATE cronpolicy.script_run AS r
       SET name = cronpolicy.key_that_fits(r.name, 255),
           host = cronpolicy.key_that_fits(r.host, 255),
           decision = cronpolicy.key_that_fits(r.decision, 64)
     WHERE (char_length(r.name) > 255 OR char_length(r.host) > 255
            OR char_length(r.decision) > 64)
       AND (NOT running_only OR r.status = 'running');
    GET DIAGNOSTICS mended = ROW_COUNT;
    IF running_only THEN
        RETURN mended;
    END IF;
    -- The counts still under an old key (of runs pruned before, or of a
    -- DBA's): added to the count under the mended key, then deleted.
    INSERT INTO cronpolicy.run_tally AS t
    SELECT cronpolicy.key_that_fits(o.name, 255), cronpolicy.key_that_fits(o.host, 255),
           o.status, cronpolicy.key_that_fits(o.decision, 64), o.blocked, o.runs,
           o.last_started_at, o.last_finished_at, o.last_run_id, o.last_run_started_at,
           o.last_run_estimate_seconds, o.estimated_id, o.estimated_started_at,
           o.estimated_finished_at, o.estimated_seconds, o.interval_id, o.expected_interval,
           o.declared_id, o.declared_started_at, o.declared_seconds
      FROM cronpolicy.run_tally AS o
     WHERE char_length(o.name) > 255 OR char_length(o.host) > 255
        OR char_length(o.decision) > 64
    ON CONFLICT (name, host, status, decision, blocked) DO UPDATE SET
        runs = least(t.runs::numeric + excluded.runs, 9223372036854775807)::bigint,
        last_started_at = greatest(t.last_started_at, excluded.last_started_at),
        last_finished_at = greatest(t.last_finished_at, excluded.last_finished_at);
    DELETE FROM cronpolicy.run_tally AS t
     WHERE char_length(t.name) > 255 OR char_length(t.host) > 255
        OR char_length(t.decision) > 64;
    RETURN mended;
END
$$;
COMMENT ON FUNCTION cronpolicy.mend_run_keys(boolean) IS
    'Shortens (key_that_fits) the names and hosts past 255 characters and decisions past 64 of '
    'script_run (only its running runs if running_only) and run_tally, keeping each value whole '
    'in mended_run_key first; returns the number of runs mended (patch 0027).';
-- (the schema owner's and administrators': no script login calls it)
REVOKE ALL ON FUNCTION cronpolicy.mend_run_keys(boolean) FROM PUBLIC;

-- Databases whose roles were set up before this patch: the rights roles.sql gives.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON cronpolicy.mended_run_key
            TO cronpolicy_admin;
        GRANT EXECUTE ON FUNCTION cronpolicy.mend_run_keys(boolean) TO cronpolicy_admin;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_reader') THEN
        GRANT SELECT ON cronpolicy.mended_run_key TO cronpolicy_reader;
    END IF;
END
$$;

SELECT cronpolicy.mend_run_keys();

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = 'cronpolicy.script_run'::regclass
                      AND conname = 'script_run_keys_fit') THEN
        ALTER TABLE cronpolicy.script_run ADD CONSTRAINT script_run_keys_fit
            CHECK (char_length(name) <= 255 AND char_length(host) <= 255
                   AND char_length(decision) <= 64) NOT VALID;
    END IF;
END
$$;
COMMENT ON CONSTRAINT script_run_keys_fit ON cronpolicy.script_run IS
    'A name and a host of at most 255 characters, a decision of at most 64: what cronpolicy '
    'writes, and what run_tally''s index holds (patch 0027).  Added NOT VALID after mending the '
    'rows before it (mend_run_keys); VALIDATE CONSTRAINT checks them at a quiet time.';

-- A run started while the history was read (it holds the lock now).
SELECT cronpolicy.mend_run_keys(running_only => true);
