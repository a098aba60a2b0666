-- cronpolicy schema patch 0023 (SQLite): nothing to change.
--
-- On PostgreSQL this patch makes the guard on script_run compare only the
-- columns it forces.  A SQLite database has no such guard (its triggers
-- check each value as written).  The number is kept so both backends count
-- their patches alike.
SELECT 1;
