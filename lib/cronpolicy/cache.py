"""The last policy this host fetched, for when the database is out of reach.

After every successful read the gate writes the policy rows, the deploy
state and the standing windows to a small JSON file (atomically: a temporary
file renamed over the old one, so a reader never sees half a file).  When
the database cannot be reached, a cache younger than ``cache_max_age`` is
used instead of the blind ``on_database_error`` default, so a deploy-pending
flag seen a minute ago still holds while the database is down.

Ages are measured on this host's own clock between its own write and read;
the database time in the file is carried forward by that age, so windows
are still judged on (an estimate of) the database clock.
"""

import json
import os
import time

from cronpolicy.policy import DeployState, PolicyRow, Window
from cronpolicy.store import DecisionInputs
from cronpolicy.timeutil import from_epoch

FORMAT = 1


def _epoch(moment):
    return moment.timestamp() if moment is not None else None


def save(path, inputs):
    """Write ``inputs`` (a DecisionInputs) to ``path`` atomically."""
    deploy = inputs.deploy
    data = {
        "format": FORMAT,
        "saved_at": time.time(),
        "database_now": _epoch(inputs.now),
        "schema_version": inputs.schema_version,
        "deploy": None if deploy is None else [
            deploy.pending, deploy.reason, deploy.changed_by, _epoch(deploy.changed_at)],
        "policies": [[row.id, row.name, row.host, row.enabled, row.reason,
                      row.expected_runtime, row.rollout_exempt, row.changed_by,
                      _epoch(row.changed_at), row.interruptible, row.fleet_single_instance]
                     for row in inputs.policies],
        "windows": [[w.id, _epoch(w.starts_at), _epoch(w.ends_at), w.reason, w.host, w.script]
                    for w in inputs.windows],
    }
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    temporary = "%s.%d.tmp" % (path, os.getpid())
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(temporary, path)


def load(path, max_age):
    """(DecisionInputs, age in seconds) from the cache, or None when there is no
    usable cache younger than ``max_age`` seconds."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("format") != FORMAT:
            return None
        age = time.time() - float(data["saved_at"])
        if age < 0 or age > max_age:
            return None
        deploy = data["deploy"]
        inputs = DecisionInputs(
            now=from_epoch(float(data["database_now"]) + age),
            schema_version=data["schema_version"],
            deploy=None if deploy is None else DeployState(
                bool(deploy[0]), deploy[1], deploy[2], from_epoch(deploy[3])),
            policies=[PolicyRow(row[0], row[1], row[2], bool(row[3]), row[4], row[5],
                                bool(row[6]), row[7], from_epoch(row[8]), bool(row[9]),
                                row[10])
                      for row in data["policies"]],
            windows=[Window(row[0], from_epoch(row[1]), from_epoch(row[2]), row[3], row[4],
                            row[5]) for row in data["windows"]],
            recent_runtimes=[])
        return inputs, age
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # missing or damaged: as if there were none
