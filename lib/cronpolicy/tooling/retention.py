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
``db``: the commands' store.writes.Plain, or a tooling Database.
"""

from cronpolicy.errors import UsageError


def _prune_batch(writer, values):
    """Delete one batch and tally it; how many runs went.  The statements
    (store/*-writes.sql: prune_batch; on SQLite prune_batch_ids, then
    tally_pruned and prune_delete of those ids) say which runs a batch takes."""
    if writer.backend != "sqlite":
        [row] = writer.rows("prune_batch", values)
        return row["deleted"]
    ids = writer._list(row[0] for row in writer.tuples("prune_batch_ids", values))
    writer.count("tally_pruned", {"ids": ids})
    return writer.count("prune_delete", {"ids": ids})


def prune(db, older_than, keep, batch=5000, on_batch=None):
    """Delete runs older than ``older_than`` seconds; return how many went."""
    import datetime
    if older_than <= 0:
        raise UsageError("--older-than must be positive")
    if batch < 1 or keep < 0:
        raise UsageError("batch must be at least 1 and keep at least 0")
    with db.reading("read the clock") as reader:
        cutoff = reader.now() - datetime.timedelta(seconds=older_than)
    total = 0
    while True:
        with db.writing("prune the history") as writer:
            deleted = _prune_batch(writer, {
                "cutoff": writer._time(cutoff), "keep": keep, "batch": batch})
        total += deleted
        if on_batch is not None:
            on_batch(total)
        if deleted < batch:
            return total, cutoff
