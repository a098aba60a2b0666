-- cronpolicy schema patch 0020 (SQLite): nothing to change.
--
-- On PostgreSQL this patch adds cronpolicy.renew_relayed, with which
-- `cronpolicy relay` renews the leases of the many runs it serves.  A
-- SQLite database is one host's: its running scripts read the file
-- themselves and no relay serves them.  The number is kept so both
-- backends count their patches alike.
SELECT 1;
