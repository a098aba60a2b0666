"""Retention: delete old run history without hurting estimates or running scripts.

``prune`` deletes, in small batches each in its own short transaction (so
running scripts writing their rows are never locked out for long), the runs
that started before the cut-off, except:

* runs still marked running;
* the last ``keep`` succeeded runs of every script, which the runtime
  estimates read, however old they are.
"""

from sqlalchemy import bindparam, text

from cronpolicy.errors import UsageError
from cronpolicy.tooling.tables import Timestamp

_PRUNE_BATCH = text("""
DELETE FROM cronpolicy.script_run WHERE id IN (
    SELECT r.id FROM cronpolicy.script_run AS r
     WHERE r.started_at < :cutoff AND r.status <> 'running'
       AND NOT (r.status = 'succeeded' AND r.id IN (
            SELECT k.id FROM cronpolicy.script_run AS k
             WHERE k.name = r.name AND k.status = 'succeeded' AND NOT k.spooled
             ORDER BY k.finished_at DESC LIMIT :keep))
     ORDER BY r.started_at LIMIT :batch)
""").bindparams(bindparam("cutoff", type_=Timestamp()))


def prune(db, older_than, keep, batch=5000, on_batch=None):
    """Delete runs older than ``older_than`` seconds; return how many went."""
    import datetime
    if older_than <= 0:
        raise UsageError("--older-than must be positive")
    if batch < 1 or keep < 0:
        raise UsageError("batch must be at least 1 and keep at least 0")
    with db.read("read the clock") as connection:
        cutoff = db.now(connection) - datetime.timedelta(seconds=older_than)
    total = 0
    while True:
        with db.begin("prune the history") as connection:
            deleted = connection.execute(_PRUNE_BATCH, {
                "cutoff": cutoff, "keep": keep, "batch": batch}).rowcount
        total += deleted
        if on_batch is not None:
            on_batch(total)
        if deleted < batch:
            return total, cutoff
