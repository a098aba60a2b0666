-- cronpolicy schema patch 0017 for the embedded SQLite backend: see
-- ../0017-rollout-changes-take-the-switch-lock.sql.
--
-- The lock needs nothing here: SQLite has one writer at a time (cronpolicy
-- writes in BEGIN IMMEDIATE transactions, and a deferred one that read
-- before another's commit cannot write), so the triggers of patch 0016
-- always read the rollouts as the writer before left them.
--
-- A rollout never begins in the future: a began_at after now, inserted or
-- updated (SQLite has no logins: anyone may write one), is brought back to
-- now, and such rows written before this patch are mended.  (A trigger
-- cannot change the row before it is written: this one rewrites it after.)

UPDATE cronpolicy.rollout SET began_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
 WHERE julianday(began_at) > julianday('now');

CREATE TRIGGER cronpolicy.rollout_begins_by_now AFTER INSERT ON rollout
    FOR EACH ROW WHEN julianday(NEW.began_at) > julianday('now')
BEGIN
    UPDATE rollout SET began_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER cronpolicy.rollout_begins_by_now_update AFTER UPDATE OF began_at ON rollout
    FOR EACH ROW WHEN julianday(NEW.began_at) > julianday('now')
BEGIN
    UPDATE rollout SET began_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id;
END;

-- A rollout deleted by hand takes the runs it waited for along, as
-- PostgreSQL's ON DELETE CASCADE does (SQLite enforces no foreign keys):
-- left behind, they were the awaited runs of the next rollout given the
-- same id (the greatest rowid plus one).  Rows orphaned before this patch go.
DELETE FROM cronpolicy.rollout_awaited
 WHERE rollout_id NOT IN (SELECT id FROM cronpolicy.rollout);

CREATE TRIGGER cronpolicy.rollout_awaited_cascade AFTER DELETE ON rollout
BEGIN
    DELETE FROM rollout_awaited WHERE rollout_id = OLD.id;
END;
