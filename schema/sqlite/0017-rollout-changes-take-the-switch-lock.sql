-- cronpolicy schema patch 0017 for the embedded SQLite backend: see
-- ../0017-rollout-changes-take-the-switch-lock.sql.  Nothing to do here:
-- SQLite has one writer at a time (cronpolicy writes in BEGIN IMMEDIATE
-- transactions, and a deferred one that read before another's commit
-- cannot write), so the triggers of patch 0016 always read the rollouts as
-- the writer before left them.
SELECT 1;
