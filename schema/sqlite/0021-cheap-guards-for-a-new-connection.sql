-- cronpolicy schema patch 0021 (SQLite): nothing to change.
--
-- On PostgreSQL this patch makes the guards on script_run ask the catalogs
-- (who is an administrator, who owns a name or a host) only when their
-- answer matters, which a new connection paid for at every start.  A
-- SQLite database has no logins and its triggers ask no catalog.  The
-- number is kept so both backends count their patches alike.
SELECT 1;
