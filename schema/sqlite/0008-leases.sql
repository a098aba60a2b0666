-- cronpolicy schema patch 0008 for the embedded SQLite backend: see
-- ../0008-leases.sql.  Timestamps are UTC text as everywhere here.

ALTER TABLE cronpolicy.script_run ADD COLUMN lease_expires_at TEXT;

ALTER TABLE cronpolicy.script_run RENAME COLUMN spool_id TO run_key;
DROP INDEX cronpolicy.script_run_spool_id_key;
CREATE UNIQUE INDEX cronpolicy.script_run_run_key_key ON script_run (run_key);

CREATE TABLE cronpolicy.run_slot (
    name              TEXT NOT NULL,
    slot              INTEGER NOT NULL,
    run_key           TEXT NOT NULL,
    host              TEXT NOT NULL,
    lease_expires_at  TEXT NOT NULL,
    CONSTRAINT run_slot_pkey PRIMARY KEY (name, slot),
    CONSTRAINT run_slot_slot_not_negative CHECK (slot >= 0)
);
