-- cronpolicy schema patch 0027 for the embedded SQLite backend: see
-- ../0027-run-keys-an-index-can-hold.sql.
--
-- SQLite has no limit on an index entry: a run of any name, host or
-- decision is tallied and reaped, and no row written before this patch
-- stops anything, so none is mended.  What PostgreSQL refuses is refused
-- here too (the same rows on both backends, and a DBA's mistake found
-- where it is made): a new run, or a change of a run's name, host or
-- decision, past 255 characters of name or host or 64 of decision, named
-- script_run_keys_fit as PostgreSQL's constraint is.  SQLite cannot add a
-- CHECK to a table that exists: two BEFORE triggers hold it, as patch 0009
-- held the ranges.  The update's fires only when one of the three is set,
-- so that a run written before it is still recorded abandoned, ended or
-- renewed.

CREATE TRIGGER cronpolicy.script_run_keys_fit_insert BEFORE INSERT ON script_run
    FOR EACH ROW WHEN length(NEW.name) > 255 OR length(NEW.host) > 255
        OR length(NEW.decision) > 64
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: script_run_keys_fit: a name and a host of at most 255 characters, a decision of at most 64');
END;

CREATE TRIGGER cronpolicy.script_run_keys_fit_update BEFORE UPDATE OF name, host, decision
    ON script_run
    FOR EACH ROW WHEN length(NEW.name) > 255 OR length(NEW.host) > 255
        OR length(NEW.decision) > 64
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: script_run_keys_fit: a name and a host of at most 255 characters, a decision of at most 64');
END;

-- PostgreSQL's record of the values its patch shortened: the same table
-- here, which nothing writes (SQLite mends nothing).
CREATE TABLE cronpolicy.mended_run_key (
    column_name TEXT NOT NULL,
    mended      TEXT NOT NULL,
    original    TEXT NOT NULL,
    mended_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (column_name, mended)
);
