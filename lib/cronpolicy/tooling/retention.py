"""Retention: delete old run history without hurting estimates or running scripts.

``prune`` deletes, in small batches each in its own short transaction (so
running scripts writing their rows are never locked out for long), the runs
that started before the cut-off, except:

* runs still marked running;
* the last ``keep`` succeeded runs of every script, which the runtime
  estimates read, however old they are.

What a batch deletes is added to cronpolicy.pruned_runs in the same
transaction (schema patch 0018).  The counters `metrics` exports read
run_tally (schema patch 0022), which deleting runs does not lower; the
tally folded pruned_runs in when it was made, and prune still adds to it
so that an older release's `metrics` on the same database counts right.
"""

from sqlalchemy import bindparam, text

from cronpolicy.errors import UsageError
from cronpolicy.tooling.tables import Timestamp

#: The runs one batch deletes.
_BATCH = """
    SELECT {columns} FROM cronpolicy.script_run AS r
     WHERE r.started_at < :cutoff AND r.status <> 'running'
       AND NOT (r.status = 'succeeded' AND r.id IN (
            SELECT k.id FROM cronpolicy.script_run AS k
             WHERE k.name = r.name AND k.status = 'succeeded' AND NOT k.spooled
             ORDER BY k.finished_at DESC LIMIT :keep))
     ORDER BY r.started_at, r.id LIMIT :batch"""

#: Adding deleted runs to the tally: the rows of {runs} that {which}.
_TALLY = """
INSERT INTO cronpolicy.pruned_runs (name, host, status, decision, blocked, runs)
SELECT name, host, status, coalesce(decision, ''), block IS NOT NULL, count(*)
  FROM {runs} WHERE {which}
 GROUP BY name, host, status, coalesce(decision, ''), block IS NOT NULL
ON CONFLICT (name, host, status, decision, blocked)
DO UPDATE SET runs = pruned_runs.runs + excluded.runs"""

#: PostgreSQL: one statement deletes a batch and tallies exactly the rows it deleted.
#: The batch is chosen by the statement's snapshot, each run with the status
#: it had there; a run is deleted only if it still has that status once the
#: delete holds its row (READ COMMITTED re-checks the row as it is then, but
#: a list of ids alone asks nothing of it).  A run heard from again while
#: this waited (revived: running) stays, and so does an old abandoned run
#: whose end was written meanwhile (a success, the newest, which keep
#: would have kept had it been one when the batch was chosen).
_PRUNE_BATCH_POSTGRESQL = text("""
WITH gone AS (
    DELETE FROM cronpolicy.script_run WHERE (id, status) IN (%s)
    RETURNING name, host, status, decision, block),
tallied AS (%s)
SELECT count(*) FROM gone
""" % (_BATCH.format(columns="r.id, r.status"), _TALLY.format(runs="gone", which="true"))
).bindparams(bindparam("cutoff", type_=Timestamp()))

#: SQLite: the tally, then the delete of the same rows (the tally's INSERT
#: takes the database's write lock: no other writer comes between).
_PRUNE_BATCH_SQLITE = (
    text(_TALLY.format(runs="cronpolicy.script_run",
                       which="id IN (%s)" % _BATCH.format(columns="r.id")))
    .bindparams(bindparam("cutoff", type_=Timestamp())),
    text("DELETE FROM cronpolicy.script_run WHERE id IN (%s)" % _BATCH.format(columns="r.id"))
    .bindparams(bindparam("cutoff", type_=Timestamp())))


def _prune_batch(db, connection, values):
    """Delete one batch and tally it; how many runs went."""
    if db.backend == "sqlite":
        tally, delete = _PRUNE_BATCH_SQLITE
        connection.execute(tally, values)
        return connection.execute(delete, values).rowcount
    return connection.execute(_PRUNE_BATCH_POSTGRESQL, values).scalar()


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
            deleted = _prune_batch(db, connection, {
                "cutoff": cutoff, "keep": keep, "batch": batch})
        total += deleted
        if on_batch is not None:
            on_batch(total)
        if deleted < batch:
            return total, cutoff
