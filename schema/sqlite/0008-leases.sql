-- cronpolicy schema patch 0008 for the embedded SQLite backend: see
-- ../0008-leases.sql.  Timestamps are UTC text as everywhere here; SQLite
-- has one user, so db_user stays ''.

ALTER TABLE cronpolicy.script_run ADD COLUMN lease_expires_at TEXT;

CREATE TABLE cronpolicy.run_slot (
    name              TEXT NOT NULL,
    slot              INTEGER NOT NULL,
    run_key           TEXT NOT NULL,
    host              TEXT NOT NULL,
    lease_expires_at  TEXT NOT NULL,
    db_user           TEXT NOT NULL DEFAULT '',
    CONSTRAINT run_slot_pkey PRIMARY KEY (name, slot),
    CONSTRAINT run_slot_slot_not_negative CHECK (slot >= 0)
);
