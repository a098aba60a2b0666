"""The fleet a play plays: from a fleet file (benchmarks/workload/fleet.json
is the reference: hosts, their crontab files, a runtime model per job),
from crontab files given one by one (--crontab HOST=FILE, models by
--model), or from the policy database (--from-database: see
from_database).  Jobs are named as `crontab wrap` names them."""

import json
import os
import sys

from cronpolicy.errors import UsageError
from cronpolicy.timeutil import parse_duration
from cronpolicy.tooling import planning, simulation
from cronpolicy.tooling.simulation import short_duration as _short


def seconds_of(text, what):
    """A duration (20m, 1h) or a number of seconds (a fleet file may say 1200)."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise UsageError("%s: a duration such as 20m, or seconds: %r" % (what, text))
    try:
        if isinstance(text, str):
            try:
                return float(text)
            except ValueError:
                return parse_duration(text)
        return float(text)
    except (UsageError, ValueError, TypeError) as error:
        raise UsageError("%s: %s" % (what, error)) from None


def parse_model(spec, what):
    """A simulation.Model from a mapping {median, p95, interruptible,
    safe_every, needs, exempt}."""
    if not isinstance(spec, dict):
        raise UsageError("%s: a model is {\"median\": ..., \"p95\": ...}, not %r" % (what, spec))
    unknown = set(spec) - {"median", "p95", "interruptible", "safe_every", "needs", "exempt"}
    if unknown:
        raise UsageError("%s: unknown model field %s" % (what, ", ".join(sorted(unknown))))
    if "median" not in spec or "p95" not in spec:
        raise UsageError("%s: a model needs a median and a p95" % what)
    median, p95 = seconds_of(spec["median"], what), seconds_of(spec["p95"], what)
    interruptible = spec.get("interruptible", False)
    safe_every = seconds_of(spec["safe_every"], what) if "safe_every" in spec else None
    problem = simulation.model_problem(median, p95, interruptible, safe_every)
    if problem:
        raise UsageError("%s: %s" % (what, problem))
    needs = spec.get("needs", [])
    if not isinstance(needs, list) or not all(
            isinstance(service, str) and service_problem(service) is None for service in needs):
        raise UsageError("%s: \"needs\" is a list of service names (letters, digits, - _ .): %r"
                         % (what, needs))
    exempt = spec.get("exempt", False)
    if exempt is not True and exempt is not False:
        raise UsageError("%s: \"exempt\" is true or false: %r" % (what, exempt))
    return simulation.Model(median, p95, interruptible, safe_every,
                            tuple(sorted(set(needs))), exempt)


def service_problem(service):
    """Why ``service`` cannot name a service, or None."""
    from cronpolicy.matching import parse_needs
    if not service or len(service) > 100 or parse_needs(service) != (service,) \
            or not all(char.isalnum() or char in "-_." for char in service):
        return "not a service name: %r" % (service,)
    return None


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


def _read_crontab(path, system=False):
    """A crontab file: a system one (a user field) when ``system`` or its
    path says so, as the crontab commands read it."""
    from cronpolicy.tooling.crontab.files import read_bytes
    from cronpolicy.tooling.crontab.host import Crontab, detect_system
    from cronpolicy.tooling.crontab.lines import read_crontab
    text = read_crontab(read_bytes(path, "the crontab"))
    return Crontab(path, text, system or detect_system(path, text))


def is_utf8(text):
    """Whether ``text`` is text (no lone surrogate from bytes that were not UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def host_problem(host):
    """Why ``host`` cannot name a host, or None (the names the gate records)."""
    if not host or len(host) > 200 or not host.isprintable() or host != host.strip() \
            or not is_utf8(host):
        return "not a host name: %r" % host
    return None


def _instances(hosts, models, default, system=False):
    """[simulation.Instance] of {host: [crontab path]}, named as wrap names
    them; every job with a model, every model a job's, each name once a host."""
    from cronpolicy.schedule import Schedule
    from cronpolicy.tooling.schedules import crontab_jobs
    instances, named = [], set()
    for host, paths in sorted(hosts.items()):
        if host_problem(host):
            raise UsageError(host_problem(host))
        jobs, left = crontab_jobs([_read_crontab(path, system) for path in paths])
        for path, number, name, problem in left:
            # (@reboot, a date that never comes: nothing to play; a line the
            # schedule commands would leave out too, said, not the play refused)
            note("%s, line %d: %s not played: %s" % (path, number, name, problem))
            named.add(name)
        seen = set()
        for job in jobs:
            if not is_utf8(job.name):
                raise UsageError("%s, line %d: a job name that is not UTF-8 text: %r"
                                 % (job.path, job.number, job.name))
            if job.name in seen:
                raise UsageError("two jobs named %s on %s (%s, line %d): they would share "
                                 "one lock and history; name one (# cronpolicy: name=...)"
                                 % (job.name, host, job.path, job.number))
            seen.add(job.name)
            model = models.get(job.name, default)
            if model is None:
                raise UsageError("no runtime model for %s (on %s): give one with --model"
                                 % (job.name, host))
            instances.append(simulation.Instance(job.name, host, Schedule(job.schedule, job.tz),
                                                 model))
        named |= seen
    unused = sorted(set(models) - named)
    if unused:
        raise UsageError("a model for no job: %s (job names: cronpolicy crontab names FILE)"
                         % ", ".join(unused[:5]))
    if not instances:
        raise UsageError("the crontabs hold no job to play")
    return instances


def _once_each(pairs):
    """A JSON object whose keys are each given once (a host given twice
    kept only its last list of crontabs, in silence)."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError("%r is given twice" % key)
        seen[key] = value
    return seen


def load_fleet(path):
    """[simulation.Instance] from a fleet file (see benchmarks/workload/README.txt)."""
    from cronpolicy.tooling.crontab.files import read_bytes
    try:
        data = json.loads(read_bytes(path, "the fleet file").decode("utf-8"),
                          object_pairs_hook=_once_each)
    except (ValueError, RecursionError) as error:
        raise UsageError("the fleet file %s is not JSON: %s" % (path, error)) from None
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), dict) or not data["hosts"]:
        raise UsageError("the fleet file %s has no \"hosts\" (a host: [crontab files])" % path)
    base = os.path.dirname(os.path.abspath(path))
    hosts = {}
    for host, paths in data["hosts"].items():
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise UsageError("%s: host %s: a list of crontab files, please" % (path, host))
        hosts[host] = [os.path.join(base, p) for p in paths]
    if not isinstance(data.get("models", {}), dict):
        raise UsageError("%s: \"models\" maps a job's name to its model" % path)
    models = {name: parse_model(spec, "%s: model %s" % (path, name))
              for name, spec in (data.get("models") or {}).items()}
    default = parse_model(data["default_model"], "%s: default_model" % path) \
        if data.get("default_model") is not None else None
    return _instances(hosts, models, default)


def from_crontabs(crontabs, model_words, default_words=None, system=False):
    """Instances from --crontab [HOST=]FILE and --model options."""
    hosts = {}
    for word in crontabs:
        host, _, path = word.rpartition("=")
        host = host or os.path.basename(path)
        hosts.setdefault(host, []).append(path)
    models = dict(model_from_words(text) for text in model_words)
    default = model_from_words("default=" + default_words)[1] if default_words else None
    return _instances(hosts, models, default, system)


def note(message):
    print("cronpolicy simulate: %s" % message, file=sys.stderr)


def from_database(settings, warn=note):
    """(instances, policy rows) from the policy database: schedules as
    `schedule list` has them, each model from its script's succeeded runs
    among its last 200 (``runtime_model``), interruptible as its policy
    row says; the rows go to the rules, as the gate would read them.  What
    is left out (no schedule, or one that cannot be read; a runtime no
    model or plan believes, as the history of a row imported with the
    wrong year gives), a script played with the default runtime and a
    script no host has run yet (played on host "*") are said through
    ``warn``: one script's rows never refuse the play."""
    from cronpolicy import policy
    from cronpolicy.matching import first_setting
    from cronpolicy.store.reads import reading
    from cronpolicy.tooling.rollout_plans import declarations
    from cronpolicy.tooling.schedules import RECENT, fleet_schedules
    instances, left_out, guessed = [], 0, []
    with reading(settings, "read the fleet") as reader:
        inputs = reader.inputs()
        found = fleet_schedules(reader, inputs, warn)
        declared = declarations(reader.declared_runtimes(inputs.now - RECENT))
        unscheduled = ["%s on %s" % pair for pair, schedule in sorted(found.items())
                       if schedule is None]
        if unscheduled:
            warn("not played, no schedule known (or none readable): %d (%s%s)" % (
                len(unscheduled), ", ".join(unscheduled[:5]),
                ", ..." if len(unscheduled) > 5 else ""))
        for (name, host), schedule in sorted(found.items()):
            if schedule is None:
                continue
            if host == "*":
                warn("%s: no host has run it yet; played on one host, \"*\"" % name)
            runs = [run["duration_seconds"] for run in reader.recent_runs(name, 200)
                    if run["status"] == "succeeded" and run["duration_seconds"]]
            situation = policy.Situation(inputs, policy.ScriptFacts(name, host))
            said = first_setting(situation.matching, "expected_runtime")[0]
            median, p95, source = runtime_model(runs, declared(name, host) if said is None
                                                else said, settings)
            row = situation.winner
            model = simulation.Model(max(median, 1.0), max(p95, median, 1.0),
                                     bool(row is not None and row.interruptible))
            problem = planning.runtime_problem(model.p95) or simulation.model_problem(*model[:4])
            if problem:
                warn("%s on %s left out: its %s gives no runtime model (%s); play it from its "
                     "crontab with --model" % (name, host, source, problem))
                left_out += 1
                continue
            if source in ("few runs", "default"):
                guessed.append("%s on %s" % (name, host))
            instances.append(simulation.Instance(name, host, schedule, model))
    if guessed:
        warn("too little history and nothing declared, played from the runs they have (with "
             "none, the default runtime, %s): %s%s" % (
                 _short(settings.default_runtime), ", ".join(guessed[:10]),
                 " and %d more" % (len(guessed) - 10) if len(guessed) > 10 else ""))
    if not instances and left_out:
        raise UsageError("nothing to play: the database's %d scheduled script%s left out, as "
                         "said above" % (left_out, " was" if left_out == 1 else "s were"))
    if not instances:
        raise UsageError("the database knows no schedules (cronpolicy schedule import)")
    return instances, inputs.policies


def runtime_model(runs, said, settings):
    """(median, p95, where from) of a script's runtime: its succeeded runs
    (``runs``, seconds) once there are as many as its estimate needs
    (estimate_min_runs: "history"); until then what is declared (``said``:
    a policy row's expected_runtime, else the script's own: "declaration"),
    as the gate believes it; else the runs it has ("few runs"), else the
    configured default_runtime ("default")."""
    from cronpolicy.estimate import quantile
    if len(runs) >= max(1, settings.estimate_min_runs):
        return quantile(runs, 0.5), quantile(runs, 0.95), "history"
    if said is not None:
        return said, said, "declaration"
    if runs:
        return quantile(runs, 0.5), quantile(runs, 0.95), "few runs"
    return settings.default_runtime, settings.default_runtime, "default"
