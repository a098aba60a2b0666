"""Reading run history: recent runs, and the runtime estimates drawn from them.

Read commands: no SQLAlchemy (``cronpolicy.store.reads``).  Estimates are
computed by exactly the code the gate uses (the store's read, then
``policy.runtime_estimate``), so what ``cronpolicy estimate`` prints is what
the next start will decide with.
"""

from cronpolicy import policy
from cronpolicy.errors import UsageError
from cronpolicy.store import open_store
from cronpolicy.store.reads import reading


def recent_runs(settings, name=None, limit=20):
    """The newest ``limit`` runs (of ``name``, if given), newest first."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    with reading(settings, "read the history") as reader:
        return reader.recent_runs(name, limit)


def known_names(settings):
    with reading(settings, "list script names") as reader:
        return reader.known_names()


def estimates(settings, names, host, script_runtime=None, warn=None):
    """[{name, estimate_seconds, source, runs_considered, and the schedule
    with its next start on ``host``}] for each name, computed exactly as
    the gate computes them."""
    from cronpolicy.tooling.schedules import describe, schedules_of
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
    finally:
        store.close()
    with reading(settings, "read the schedules") as reader:
        inputs = reader.inputs()
        found = schedules_of(reader, inputs, [(name, host) for name in names], warn)
    for result in results:
        result.update(describe(found[(result["name"], host)], inputs.now))
    return results
