-- cronpolicy schema patch 0024 (SQLite): nothing to change.
--
-- On PostgreSQL this patch makes a relay's renewal judge a run's lease by
-- the row as it is once it holds it.  SQLite has no relay, and its
-- heartbeat reads and renews in one write transaction (BEGIN IMMEDIATE),
-- which no other write can come between.  The number is kept so both
-- backends count their patches alike.
SELECT 1;
