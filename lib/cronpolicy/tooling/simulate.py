"""`cronpolicy simulate`: days of a fleet under each rollout strategy.

The fleet comes from a fleet file (benchmarks/workload/fleet.json is the
reference: hosts, their crontab files, a runtime model per job), from
crontab files given one by one (--crontab HOST=FILE, models by --model),
or from the policy database (--from-database: the schedules `schedule
list` shows, and models from each script's history of the last 30 days:
its median and 95th percentile; interruptible when a policy row says so).
Jobs are named as `crontab wrap` names them.  The play itself is
cronpolicy.simulation; the picture is simulation_picture.py.
"""

import datetime
import json
import os

from cronpolicy import simulation
from cronpolicy.errors import UsageError
from cronpolicy.timeutil import UTC, parse_duration

#: Where the simulated days begin unless told: a Monday, so that weekly
#: jobs fall as they would.
DEFAULT_BEGIN = datetime.datetime(2026, 1, 5, tzinfo=UTC)


def _seconds(text, what):
    try:
        return parse_duration(text) if isinstance(text, str) else float(text)
    except (UsageError, ValueError, TypeError) as error:
        raise UsageError("%s: %s" % (what, error)) from None


def parse_model(spec, what):
    """A simulation.Model from a mapping {median, p95, interruptible, safe_every}."""
    if not isinstance(spec, dict):
        raise UsageError("%s: a model is {\"median\": ..., \"p95\": ...}, not %r" % (what, spec))
    unknown = set(spec) - {"median", "p95", "interruptible", "safe_every"}
    if unknown:
        raise UsageError("%s: unknown model field %s" % (what, ", ".join(sorted(unknown))))
    if "median" not in spec or "p95" not in spec:
        raise UsageError("%s: a model needs a median and a p95" % what)
    median, p95 = _seconds(spec["median"], what), _seconds(spec["p95"], what)
    interruptible = spec.get("interruptible", False)
    safe_every = _seconds(spec["safe_every"], what) if "safe_every" in spec else None
    problem = simulation.model_problem(median, p95, interruptible, safe_every)
    if problem:
        raise UsageError("%s: %s" % (what, problem))
    return simulation.Model(median, p95, interruptible, safe_every)


def model_from_words(text):
    """NAME=MEDIAN,P95[,true|false|safe:EVERY] (--model) as (name, Model)."""
    name, _, rest = text.partition("=")
    parts = [part.strip() for part in rest.split(",")]
    if not name or len(parts) not in (2, 3):
        raise UsageError("--model %r: write NAME=MEDIAN,P95[,true|false|safe:EVERY]" % text)
    spec = {"median": parts[0], "p95": parts[1]}
    if len(parts) == 3:
        if parts[2].startswith("safe:"):
            spec.update(interruptible="safe-points", safe_every=parts[2][5:])
        elif parts[2] in ("true", "false"):
            spec["interruptible"] = parts[2] == "true"
        else:
            raise UsageError("--model %r: the third part is true, false or safe:EVERY" % text)
    return name, parse_model(spec, "--model %s" % name)


def _read_crontab(path):
    from cronpolicy.tooling.crontab import Crontab, files
    text = files.read(path, None)
    return Crontab(path, text, False)


def _instances(hosts, models, default):
    """[simulation.Instance] of {host: [crontab path]}, named as wrap names them."""
    from cronpolicy.tooling.schedules import crontab_jobs
    instances = []
    for host, paths in sorted(hosts.items()):
        jobs, left = crontab_jobs([_read_crontab(path) for path in paths])
        for path, number, message in left:
            raise UsageError("%s, line %d: %s" % (path, number, message))
        for job in jobs:
            model = models.get(job.name, default)
            if model is None:
                raise UsageError("no runtime model for %s (on %s): give one with --model"
                                 % (job.name, host))
            from cronpolicy.schedule import Schedule
            instances.append(simulation.Instance(job.name, host, Schedule(job.schedule, job.tz),
                                                 model))
    return instances


def load_fleet(path):
    """[simulation.Instance] from a fleet file (see benchmarks/workload/README.txt)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as error:
        raise UsageError("cannot read the fleet file %s: %s" % (path, error.strerror)) from None
    except ValueError as error:
        raise UsageError("the fleet file %s is not JSON: %s" % (path, error)) from None
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), dict) or not data["hosts"]:
        raise UsageError("the fleet file %s has no \"hosts\" (a host: [crontab files])" % path)
    base = os.path.dirname(os.path.abspath(path))
    hosts = {}
    for host, paths in data["hosts"].items():
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise UsageError("%s: host %s: a list of crontab files, please" % (path, host))
        hosts[host] = [os.path.join(base, p) for p in paths]
    models = {name: parse_model(spec, "%s: model %s" % (path, name))
              for name, spec in (data.get("models") or {}).items()}
    default = parse_model(data["default_model"], "%s: default_model" % path) \
        if data.get("default_model") is not None else None
    return _instances(hosts, models, default)


def from_crontabs(crontabs, model_words, default_words=None):
    """Instances from --crontab [HOST=]FILE and --model options."""
    hosts = {}
    for word in crontabs:
        host, _, path = word.rpartition("=")
        host = host or os.path.basename(path)
        hosts.setdefault(host, []).append(path)
    models = dict(model_from_words(text) for text in model_words)
    default = model_from_words("default=" + default_words)[1] if default_words else None
    return _instances(hosts, models, default)


def from_database(settings):
    """Instances from the policy database: schedules as `schedule list` has
    them, models from 30 days of history (median, p95 of succeeded runs)."""
    from cronpolicy import policy
    from cronpolicy.estimate import quantile
    from cronpolicy.store.reads import reading
    from cronpolicy.tooling.schedules import fleet_schedules
    instances = []
    with reading(settings, "read the fleet") as reader:
        inputs = reader.inputs()
        found = fleet_schedules(reader, inputs)
        for (name, host), schedule in sorted(found.items()):
            if schedule is None:
                continue
            runs = [run["duration_seconds"] for run in reader.recent_runs(name, 200)
                    if run["status"] == "succeeded" and run["duration_seconds"]]
            median = quantile(runs, 0.5) if runs else settings.default_runtime
            p95 = quantile(runs, 0.95) if runs else median
            row = policy.Situation(inputs, policy.ScriptFacts(name, host)).winner
            model = simulation.Model(max(median, 1.0), max(p95, median, 1.0),
                                     bool(row is not None and row.interruptible))
            instances.append(simulation.Instance(name, host, schedule, model))
    if not instances:
        raise UsageError("the database knows no schedules (cronpolicy schedule import)")
    return instances


#: The strategies, costliest first: a pool hands them out in this order.
COSTLIEST_FIRST = ("cronpolicy-slot", "cronpolicy", "on-off", "all-stop")


def run(instances, settings, days=7.0, rollouts=10, at=(), strategies=simulation.STRATEGIES,
        seed=1, begin=DEFAULT_BEGIN, knobs=simulation.Knobs(), workers=None):
    """{strategy: simulation state} and the ready times played.  The
    strategies play in ``workers`` processes (default: one per CPU): each
    plays alone on the same fleet, so the figures do not depend on it."""
    end = begin + datetime.timedelta(days=days)
    fleet = simulation.Fleet(instances, begin, end, seed)
    if at:
        readies = sorted(at)
    else:
        try:
            readies = simulation.rollout_times(begin, end, rollouts, seed, knobs)
        except ValueError as error:
            raise UsageError(str(error)) from None
    order = sorted(strategies, key=lambda name: COSTLIEST_FIRST.index(name))
    workers = min(len(order), workers or len(os.sched_getaffinity(0)))
    if workers <= 1:
        states = {name: simulation.simulate(fleet, name, readies, knobs, settings)
                  for name in order}
    else:
        states = _in_processes(fleet, order, readies, knobs, settings, workers)
    return {name: states[name] for name in strategies}, readies


#: What the worker processes play (set before they fork: nothing is pickled to them).
_PLAY = {}


def _play(strategy):
    state = simulation.simulate(_PLAY["fleet"], strategy, _PLAY["readies"], _PLAY["knobs"],
                                _PLAY["settings"])
    state.fleet = None          # the parent has it; only what was played goes back
    return state


def _in_processes(fleet, order, readies, knobs, settings, workers):
    import multiprocessing
    _PLAY.update(fleet=fleet, readies=readies, knobs=knobs, settings=settings)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            played = pool.map(_play, order, chunksize=1)
    finally:
        _PLAY.clear()
    for state in played:
        state.fleet = fleet
    return dict(zip(order, played))
