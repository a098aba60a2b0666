-- cronpolicy schema patch 0025 (SQLite): nothing to change.
--
-- On PostgreSQL this patch makes the reaper and a relay's renewal lock the
-- runs they share, and the counts of run_tally their triggers write, in
-- one order, so that neither holds what the other waits for (a deadlock).
-- SQLite locks no rows: a write holds the whole database until it commits
-- (the reaper and the heartbeat begin theirs with BEGIN IMMEDIATE), and
-- it has no relay.  The number is kept so both backends count their
-- patches alike.
SELECT 1;
