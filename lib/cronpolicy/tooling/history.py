"""Reading run history: recent runs, and the runtime estimates drawn from them.

Estimates are computed by exactly the code the gate uses (the store's read,
then ``policy.runtime_estimate``), so what ``cronpolicy estimate`` prints is
what the next start will decide with.
"""

from sqlalchemy import select

from cronpolicy import policy
from cronpolicy.errors import UsageError
from cronpolicy.store import open_store
from cronpolicy.tooling.tables import script_run


def recent_runs(db, name=None, limit=20):
    """The newest ``limit`` runs (of ``name``, if given), newest first."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    query = select(script_run).order_by(script_run.c.started_at.desc(),
                                        script_run.c.id.desc()).limit(limit)
    if name:
        query = query.where(script_run.c.name == name)
    with db.read("read the history") as connection:
        runs = []
        for row in connection.execute(query).mappings():
            run = dict(row)
            run["duration_seconds"] = (
                (row["finished_at"] - row["started_at"]).total_seconds()
                if row["finished_at"] is not None else None)
            runs.append(run)
        return runs


def known_names(db):
    with db.read("list script names") as connection:
        return [name for (name,) in connection.execute(
            select(script_run.c.name).distinct().order_by(script_run.c.name))]


def estimates(settings, names, host, script_runtime=None):
    """[{name, estimate_seconds, source, runs_considered}] for each name, computed
    exactly as the gate computes them."""
    store = open_store(settings, application_name="cronpolicy-cli")
    try:
        results = []
        for name in names:
            inputs = store.load_inputs(name, settings.estimate_runs)
            estimate = policy.runtime_estimate(
                inputs, policy.ScriptFacts(name, host, expected_runtime=script_runtime), settings)
            results.append({"name": name, "estimate_seconds": estimate.seconds,
                            "source": estimate.source,
                            "runs_considered": len(inputs.recent_runtimes)})
        return results
    finally:
        store.close()
