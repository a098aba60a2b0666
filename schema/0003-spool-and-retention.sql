-- cronpolicy schema patch 0003: runs recorded late, exactly once.
--
-- When a host cannot reach the database it spools its run records locally
-- and writes them later (`cronpolicy flush`, or its next run).  Each spooled
-- record carries a unique id, so writing it twice inserts it once.

ALTER TABLE cronpolicy.script_run ADD COLUMN spool_id text;
COMMENT ON COLUMN cronpolicy.script_run.spool_id IS
    'For a run recorded late from a host''s local spool: the spool entry''s id (written once).';

CREATE UNIQUE INDEX script_run_spool_id_key ON cronpolicy.script_run (spool_id);
