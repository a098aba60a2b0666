-- cronpolicy schema patch 0003 for the embedded SQLite backend: see
-- ../0003-spool-and-retention.sql.

ALTER TABLE cronpolicy.script_run ADD COLUMN spool_id TEXT;

CREATE UNIQUE INDEX cronpolicy.script_run_spool_id_key ON script_run (spool_id);
