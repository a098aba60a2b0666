"""`cronpolicy simulate`: days of a fleet under each rollout strategy.

The fleet comes from a fleet file (benchmarks/workload/fleet.json is the
reference: hosts, their crontab files, a runtime model per job), from
crontab files given one by one (--crontab HOST=FILE, models by --model),
or from the policy database (--from-database: see from_database).
Jobs are named as `crontab wrap` names them.  The play itself is
cronpolicy.tooling.simulation; the picture is simulation_picture.py.
"""

import collections
import copy
import datetime
import json
import os
import sys

from cronpolicy.arguments import positive_int
from cronpolicy.tooling import planning, simulation
from cronpolicy.tooling.simulation import short_duration as _short
from cronpolicy.errors import CronPolicyError, UsageError
from cronpolicy.timeutil import UTC, parse_duration

#: Where the simulated days begin unless told: a Monday, so that weekly
#: jobs fall as they would.
DEFAULT_BEGIN = datetime.datetime(2026, 1, 5, tzinfo=UTC)


def _seconds(text, what):
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
    median, p95 = _seconds(spec["median"], what), _seconds(spec["p95"], what)
    interruptible = spec.get("interruptible", False)
    safe_every = _seconds(spec["safe_every"], what) if "safe_every" in spec else None
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


def _utf8(text):
    """Whether ``text`` is text (no lone surrogate from bytes that were not UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def host_problem(host):
    """Why ``host`` cannot name a host, or None (the names the gate records)."""
    if not host or len(host) > 200 or not host.isprintable() or host != host.strip() \
            or not _utf8(host):
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
            _note("%s, line %d: %s not played: %s" % (path, number, name, problem))
            named.add(name)
        seen = set()
        for job in jobs:
            if not _utf8(job.name):
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


def _note(message):
    print("cronpolicy simulate: %s" % message, file=sys.stderr)


def from_database(settings, warn=_note):
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


#: The strategies, costliest first: a pool hands them out in this order.
COSTLIEST_FIRST = ("cronpolicy-slot", "cronpolicy", "on-off-no-kills", "on-off",
                   "all-stop-no-kills", "all-stop")


#: One seed's play: its seed, ready times, kinds, and {strategy: state}.
Played = collections.namedtuple("Played", "seed readies kinds states")


def seeds_from(seed, count):
    """``count`` seeds from --seed: consecutive numbers from a number
    (1, 2, 3...), else the seed and "SEED/2", "SEED/3"..."""
    seed = str(seed)
    if seed.isdigit() and len(seed) < 30:
        return [str(int(seed) + offset) for offset in range(count)]
    return [seed] + ["%s/%d" % (seed, offset + 1) for offset in range(1, count)]


def needed_services(instances, policies=()):
    """Every service some job needs (its model's, or its policy row's), sorted."""
    from cronpolicy import policy
    from cronpolicy.rows import Inputs
    found = set()
    for instance in instances:
        facts = policy.ScriptFacts(instance.name, instance.host, needs=instance.model.needs)
        found.update(policy.effective_needs(Inputs(None, None, None, list(policies), [], ()), facts)
                     if policies else instance.model.needs)
    return tuple(sorted(found))


def run(instances, settings, days=7.0, rollouts=10, at=(), strategies=simulation.STRATEGIES,
        seed="1", begin=DEFAULT_BEGIN, knobs=simulation.Knobs(), workers=None, detail=True,
        policies=(), warm_up=0.0, code_share=0.0, restart=None):
    """({strategy: simulation state}, ready times) of one seed: run_seeds' first."""
    played = run_seeds(instances, settings, days, rollouts, at, strategies, seed, begin, knobs,
                       workers, detail, policies, 1, warm_up, code_share, restart)[0]
    return played.states, played.readies


def run_seeds(instances, settings, days=7.0, rollouts=10, at=(),
              strategies=simulation.STRATEGIES, seed="1", begin=DEFAULT_BEGIN,
              knobs=simulation.Knobs(), workers=None, detail=True, policies=(), seeds=1,
              warm_up=None, code_share=0.0, restart=None):
    """[Played], one a seed (seeds_from(seed, seeds)).  The plays of each
    seed and strategy go to ``workers`` processes (default: one per CPU):
    each plays alone on its seed's fleet, so the figures do not depend on
    it.  ``detail`` False: a state played in another process comes back
    with its figures (simulation.summary) and rollouts but without its runs
    and skips, which only the picture reads (and it only the first seed's,
    which alone come back with ``detail``): sending those back (some
    400000 objects a strategy for a week of the reference fleet) takes
    longer than playing two of the strategies.  ``policies``: the rows the
    rules see (none for a fleet from files).  ``warm_up``: seconds played
    before ``begin`` to fill the jobs' histories (None: long enough for
    each job's estimate_min_runs, simulation.default_warm_up).
    ``code_share`` of the rollouts are code-only, restarting ``restart``
    (None: every service a job needs)."""
    end = begin + datetime.timedelta(days=days)
    if warm_up is None:
        warm_up = simulation.default_warm_up(instances, begin, settings.estimate_min_runs)
    if restart is None:
        restart = needed_services(instances, policies)
    schedules, plays = {}, []
    for text in seeds_from(seed, seeds):
        try:
            fleet = simulation.Fleet(instances, begin, end, text, policies, warm_up, settings,
                                     schedules)
        except simulation.TooLarge as error:
            raise UsageError(str(error)) from None
        readies = sorted(at) if at else _random_readies(begin, end, rollouts, text, knobs)
        plays.append((fleet, readies, simulation.rollout_kinds(len(readies), code_share, text)))
    order = sorted(strategies, key=lambda name: COSTLIEST_FIRST.index(name))
    tasks = [(number, name) for name in order for number in range(len(plays))]
    workers = min(len(tasks), workers or len(os.sched_getaffinity(0)))
    if workers <= 1:
        states = {task: _play_one(plays[task[0]], task[1], knobs, settings, restart)
                  for task in tasks}
    else:
        states = _in_processes(plays, tasks, knobs, settings, restart, workers, detail)
    return [Played(fleet.seed, readies, kinds,
                   {name: states[number, name] for name in strategies})
            for number, (fleet, readies, kinds) in enumerate(plays)]


def _play_one(play, strategy, knobs, settings, restart):
    fleet, readies, kinds = play
    state = simulation.simulate(fleet, strategy, readies, knobs, settings, kinds, restart)
    state.figures = simulation.summary(state)
    return state


def _random_readies(begin, end, rollouts, seed, knobs):
    try:
        return simulation.rollout_times(begin, end, rollouts, seed, knobs)
    except ValueError as error:
        raise UsageError(str(error)) from None


#: What the worker processes play (set before they fork: nothing is pickled to them).
_PLAY = {}


def _play(task):
    number, strategy = task
    state = _play_one(_PLAY["plays"][number], strategy, _PLAY["knobs"], _PLAY["settings"],
                      _PLAY["restart"])
    state.fleet = None          # the parent has it; only what was played goes back
    if not _PLAY["detail"] or number:      # (the picture draws the first seed's)
        state.runs = state.skips = None
    return state


def _in_processes(plays, tasks, knobs, settings, restart, workers, detail):
    # concurrent.futures, not multiprocessing.Pool: a worker that dies (the
    # OOM killer, kill -9) is an error here, where Pool would wait forever.
    # No `with`: leaving it waits for every play to end, and after Ctrl-C
    # or SIGTERM the workers are killed instead.  Either way the pool is
    # shut down whole before this returns (_shut_down).
    import multiprocessing
    import signal
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    _PLAY.update(plays=plays, knobs=knobs, settings=settings, restart=restart, detail=detail)
    others = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_worker_start, initargs=(os.getpid(),))
    stopping = {signal.SIGINT, signal.SIGTERM}
    try:
        with _terminated_as_interrupted():
            # The workers fork at the first submit: with Ctrl-C and SIGTERM
            # held until each has set its own handling (_worker_start), and
            # then delivered here.
            signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
            try:
                futures = [pool.submit(_play, task) for task in tasks]
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)
            played = [future.result() for future in futures]
    except BrokenProcessPool:
        raise CronPolicyError("a simulation process died before it finished (out of "
                              "memory? try fewer --days or --workers 1)") from None
    except BaseException:
        for worker in set(multiprocessing.active_children()) - others:
            worker.kill()
        raise
    finally:
        _shut_down(pool)
        _PLAY.clear()
    for (number, _), state in zip(tasks, played):
        state.fleet = plays[number][0]
    return dict(zip(tasks, played))


#: How long the pool's manager thread gets to end once every play is over
#: or its workers were killed (it joins processes that are exiting or dead).
SHUTDOWN_TIMEOUT = 30.0


def _shut_down(pool):
    """Shut ``pool`` down and wait for its manager thread, within a bound.
    Not shutdown(wait=False) alone: the thread it leaves running closes its
    wake-up pipe while the interpreter's exit hook for concurrent.futures
    writes to it, and 1 exit in 10 to 20 printed "OSError: Bad file
    descriptor" (a traceback from a command that had succeeded)."""
    manager = getattr(pool, "_executor_manager_thread", None)    # CPython's
    pool.shutdown(wait=False, cancel_futures=True)
    if manager is not None:
        manager.join(SHUTDOWN_TIMEOUT)


def _worker_start(parent):
    """In each worker: Ctrl-C goes to the whole process group, and only the
    parent says so (no traceback of each worker); and a worker dies with
    its parent, however the parent dies (kill -9 included)."""
    import ctypes
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):   # not Linux: the parent kills them when it can
        pass
    if os.getppid() != parent:          # it died before prctl took effect
        os._exit(1)


class _terminated_as_interrupted:
    """SIGTERM in the parent while it plays is Ctrl-C (one line, exit 130,
    the workers killed), where Python's default would leave them playing."""

    def __enter__(self):
        import signal
        import threading
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._interrupt)

    @staticmethod
    def _interrupt(number, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        import signal
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


# The command ------------------------------------------------------------------------------

#: The longest play the command accepts: a week takes seconds, a quarter minutes.
MAX_DAYS = 92
MAX_ROLLOUTS = 10000
#: The slot search (strategy d) looks at most this far past the ready time,
#: as `deploy slot --within` does.
MAX_TOLERANCE = 14 * 86400.0
#: Slot search (strategy d): at most this many candidate slots over all
#: rollouts (the reference play weighs 700).
MAX_SLOTS = 20000
#: The most work one play may take, in units of about 13 microseconds here
#: (about two minutes; the estimate is high rather than low): each rollout
#: costs each instance about 12 (c: cut-offs, the wait, the overdue
#: count), and d about one more per slot and half hour of deploy (the
#: planner weighs each job's starts in each candidate), more when many
#: windows are announced at once (each start weighed is matched to each).
MAX_WORK = 10000000


def work(instances, readies, strategies, knobs):
    """The units of work (MAX_WORK) a play of the rollouts ready at
    ``readies`` (in order) over ``instances`` job instances takes."""
    per_instance = 12.0
    if "cronpolicy-slot" in strategies:
        slots = knobs.tolerance // knobs.step + 1
        per_instance += slots * (1 + knobs.duration / 1800.0) * (
            1 + _most_at_once(readies, knobs.announce + knobs.duration) / 5.5)
    return instances * len(readies) * per_instance


def _most_at_once(readies, span):
    """The most ready times within ``span`` seconds of one another (the
    windows announced at once)."""
    most, first = 0, 0
    for last, ready in enumerate(readies):
        while (ready - readies[first]).total_seconds() > span:
            first += 1
        most = max(most, last - first + 1)
    return most


#: The simulated days begin between these (every time a play reaches stays
#: within what datetime holds).
EARLIEST_START = datetime.datetime(1971, 1, 1, tzinfo=UTC)
LATEST_START = datetime.datetime(9000, 1, 1, tzinfo=UTC)
LABELS = {"all-stop": "a. all-stop", "all-stop-no-kills": "a0. all-stop, no kills",
          "on-off": "b. on/off", "on-off-no-kills": "b0. on/off, no kills",
          "cronpolicy": "c. cronpolicy", "cronpolicy-slot": "d. cronpolicy+slot"}
#: The most seeds one play takes.
MAX_SEEDS = 100


def strategies_from_words(text):
    """--strategies a,b0,c (letters or names) as a tuple of names, in the given order."""
    chosen = []
    for word in (part.strip() for part in text.split(",")):
        name = simulation.STRATEGY_LETTERS.get(word, word)
        if name not in simulation.STRATEGIES:
            raise UsageError("--strategies: no strategy %r (%s or %s)" % (
                word, ", ".join(simulation.STRATEGY_LETTERS), ", ".join(simulation.STRATEGIES)))
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def knobs_from_args(args):
    """simulation.Knobs from the command's options, each checked."""
    values = {}
    for field, option, least in (("duration", "--duration", None), ("lead", "--lead", 0.0),
                                 ("announce", "--announce", 0.0),
                                 ("max_wait", "--max-wait", None),
                                 ("tolerance", "--tolerance", 0.0), ("grace", "--grace", 0.0),
                                 ("step", "--step", 60.0)):
        seconds = _seconds(getattr(args, field), option)
        if seconds != seconds or seconds > 365 * 86400:
            raise UsageError("%s: at most a year: %r" % (option, getattr(args, field)))
        if (least is None and seconds <= 0) or (least is not None and seconds < least):
            raise UsageError("%s must be %s: %r" % (
                option, "longer than 0" if least is None else "at least %gs" % least,
                getattr(args, field)))
        values[field] = seconds
    if values["duration"] > planning.MAX_ROLLOUT_DURATION:
        raise UsageError("--duration: at most a day: %r" % args.duration)
    if values["tolerance"] > MAX_TOLERANCE:
        raise UsageError("--tolerance: at most 14d (deploy slot looks no further)")
    return simulation.Knobs(**values)


def instances_from_args(args, settings):
    sources = [bool(args.fleet), bool(args.crontab), args.from_database]
    if sum(sources) != 1:
        raise UsageError("give the fleet one way: a FLEET file, --crontab files, or "
                         "--from-database")
    if (args.model or args.default_model) and not args.crontab:
        raise UsageError("--model and --default-model go with --crontab (a fleet file has "
                         "its models; the database, its history)")
    if args.fleet:
        return load_fleet(args.fleet), ()
    if args.crontab:
        if any(word.rpartition("=")[2] in ("", "-") for word in args.crontab):
            raise UsageError("--crontab: name a file ([HOST=]FILE; not standard input)")
        return from_crontabs(args.crontab, args.model, args.default_model, args.system), ()
    return from_database(settings)


def add_arguments(parsers):
    """The parser of simulate (see cli.CommandParsers)."""
    add, common, reader = parsers.add, parsers.common, parsers.reader
    sub = add("simulate", "cmd_simulate", parents=(common, reader))
    sub.add_argument("fleet", nargs="?", metavar="FLEET",
                     help="a fleet file: hosts, their crontabs, a runtime model per job "
                          "(benchmarks/workload/fleet.json is the reference)")
    sub.add_argument("--crontab", action="append", default=[], metavar="[HOST=]FILE",
                     help="a crontab file of a host (repeat; host: the file's name)")
    sub.add_argument("--model", action="append", default=[],
                     metavar="NAME=MEDIAN,P95[,true|false|safe:EVERY]",
                     help="a job's runtimes (lognormal) and whether it may be interrupted")
    sub.add_argument("--default-model", metavar="MEDIAN,P95[,...]",
                     help="the model of the jobs --model does not name")
    sub.add_argument("--from-database", action="store_true",
                     help="the schedules the policy database knows, models from their history")
    sub.add_argument("--days", type=float, default=7.0, help="how long to play (default 7)")
    sub.add_argument("--rollouts", type=int, default=10,
                     help="how many rollouts, at random times (default 10)")
    sub.add_argument("--at", action="append", metavar="TIME",
                     help="a rollout ready at this time instead (ISO 8601, or +D from --start; "
                          "repeat)")
    sub.add_argument("--start", metavar="TIME", help="when the play begins, ISO 8601 (default "
                                                     "2026-01-05T00:00Z, a Monday)")
    sub.add_argument("--seed", default="1", help="runtimes and rollout times follow from it")
    sub.add_argument("--seeds", type=int, default=1, metavar="N",
                     help="play N seeds from --seed on; each figure is their median and range")
    sub.add_argument("--warm-up", metavar="D",
                     help="play this long before --start with no rollout, to fill the jobs' "
                          "histories (default: long enough for every job's estimate)")
    sub.add_argument("--code-share", type=float, default=0.0, metavar="F",
                     help="this fraction of the rollouts are code-only (default 0)")
    sub.add_argument("--restart", metavar="S[,S...]",
                     help="the services a code-only rollout restarts (default: every service "
                          "a job needs)")
    sub.add_argument("--system", action="store_true",
                     help="--crontab files have a user field (system crontabs), whatever "
                          "their path")
    sub.add_argument("--picture-at", metavar="TIME",
                     help="--svg draws the rollout ready nearest this time (default: the one "
                          "with cronpolicy's median stall)")
    for option, default, text in (
            ("--duration", "30m", "how long a deploy takes once the fleet is quiet"),
            ("--lead", "1h", "a: how long before the rollout the crontabs are disabled"),
            ("--announce", "1d", "c, d: how long ahead the rollout window is announced"),
            ("--max-wait", "30m", "a, b: how long runs are awaited before they are killed"),
            ("--tolerance", "1h", "d: how far past ready the rollout may move"),
            ("--step", "10m", "d: the slots tried, this far apart"),
            ("--grace", "10m", "what a run is allowed beyond its estimate before it is "
                               "overdue")):
        sub.add_argument(option, default=default,
                         help="%s (default %s)" % (text, default))
    sub.add_argument("--margin", metavar="D", help="the cut-off margin (default: the "
                                                   "configured cutoff_margin)")
    sub.add_argument("--strategies", default="a,a0,b,b0,c,d",
                     help="which to play (default a,a0,b,b0,c,d; a0 and b0: a and b "
                          "awaiting what may not be stopped, never killing)")
    sub.add_argument("--workers", type=positive_int, help="processes (default: one per CPU)")
    sub.add_argument("--svg", metavar="FILE",
                     help="also draw one rollout under each strategy and every stall here")


def cmd_simulate(args, settings):
    from cronpolicy import exitcodes
    from cronpolicy.timeutil import parse_time
    if not 0 < args.days <= MAX_DAYS:
        raise UsageError("--days: more than 0 and at most %d: %g" % (MAX_DAYS, args.days))
    if not 0 <= args.rollouts <= MAX_ROLLOUTS:
        raise UsageError("--rollouts: from 0 to %d: %d" % (MAX_ROLLOUTS, args.rollouts))
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise UsageError("--seeds: from 1 to %d: %d" % (MAX_SEEDS, args.seeds))
    if not (args.seed.isprintable() and _utf8(args.seed) and len(args.seed) <= 200):
        raise UsageError("--seed: printable text of at most 200 characters: %r" % args.seed)
    if not (args.code_share == args.code_share and 0 <= args.code_share <= 1):
        raise UsageError("--code-share: a fraction from 0 to 1: %r" % args.code_share)
    restart = None
    if args.restart is not None:
        restart = tuple(sorted({word.strip() for word in args.restart.split(",")}))
        bad = [word for word in restart if service_problem(word)]
        if bad:
            raise UsageError("--restart: %s" % service_problem(bad[0]))
    warm_up = None
    if args.warm_up is not None:
        warm_up = _seconds(args.warm_up, "--warm-up") if args.warm_up != "0" else 0.0
        if not 0 <= warm_up <= simulation.MAX_WARM_UP:
            raise UsageError("--warm-up: from 0 to %dd: %r" % (
                simulation.MAX_WARM_UP // 86400, args.warm_up))
    if args.system and not args.crontab:
        raise UsageError("--system goes with --crontab (a fleet file's crontabs are read as "
                         "their paths say)")
    knobs = knobs_from_args(args)
    strategies = strategies_from_words(args.strategies)
    begin = _start(args.start) if args.start else DEFAULT_BEGIN
    end = begin + datetime.timedelta(days=args.days)
    if len(args.at or ()) > MAX_ROLLOUTS:
        raise UsageError("--at: at most %d rollouts: %d" % (MAX_ROLLOUTS, len(args.at)))
    at = sorted(parse_time(text, begin) for text in args.at or ())
    outside = [moment for moment in at if not begin <= moment < end]
    if outside:
        raise UsageError("--at %s is not within the simulated days (%s to %s)" % (
            outside[0].isoformat(), begin.isoformat(), end.isoformat()))
    if args.margin is not None:
        settings = copy.copy(settings)
        settings.cutoff_margin = _seconds(args.margin, "--margin")
        if not 0 <= settings.cutoff_margin <= 86400:
            raise UsageError("--margin: from 0 to a day: %r" % args.margin)
    if args.svg is not None:            # (before the play)
        if not args.svg or args.svg.endswith(os.sep) \
                or not os.path.isdir(os.path.dirname(os.path.abspath(args.svg))):
            raise UsageError("--svg %s: not a file in a directory" % args.svg)
        from cronpolicy.safety import check_replaceable
        check_replaceable(args.svg)
    if "cronpolicy-slot" in strategies:
        slots = (len(at) or args.rollouts) * (knobs.tolerance // knobs.step + 1) * args.seeds
        if slots > MAX_SLOTS:
            raise UsageError("%d slots to weigh (rollouts times --tolerance over --step, times "
                             "--seeds): at most %d" % (slots, MAX_SLOTS))
    instances, policies = instances_from_args(args, settings)
    if args.code_share and not (restart or needed_services(instances, policies)):
        raise UsageError("--code-share: no job needs a service, so a code-only rollout would "
                         "restart nothing (give the models \"needs\", or name --restart)")
    readies = at or _random_readies(begin, end, args.rollouts, args.seed, knobs)
    units = work(len(instances), readies, strategies, knobs) * args.seeds
    if units > MAX_WORK:
        raise UsageError("a play of %d job instances and %d rollouts is too long (up to %d "
                         "minutes): fewer rollouts, seeds, jobs or d's slots" % (
                             len(instances), len(readies), units * 13e-6 / 60 + 1))
    at_picture = parse_time(args.picture_at, begin) if args.picture_at is not None \
        else at[0] if len(at) == 1 else None
    plays = run_seeds(instances, settings, args.days, args.rollouts, at, strategies,
                      args.seed, begin, knobs, args.workers, detail=bool(args.svg),
                      policies=policies, seeds=args.seeds, warm_up=warm_up,
                      code_share=args.code_share, restart=restart)
    warm_up = plays[0].states[strategies[0]].fleet.warm_up
    restart = restart if restart is not None else needed_services(instances, policies)
    cold = plays[0].states[strategies[0]].fleet.cold(settings.estimate_min_runs)
    if cold:
        _note("%d job%s had fewer than %d runs after the warm-up of %s (estimated from the "
              "runtime they declare, their model's p95): %s%s" % (
                  len(cold), "" if len(cold) == 1 else "s", settings.estimate_min_runs,
                  _short(warm_up), ", ".join(cold[:5]), ", ..." if len(cold) > 5 else ""))
    by_seed = [{name: simulation.summary(state) for name, state in played.states.items()}
               for played in plays]
    figures = combine(by_seed, statistics_median)
    affected = plays[0].states[strategies[0]].affected
    if args.svg:
        _write_picture(args.svg, plays[0].states, knobs, at_picture)
    if args.json:
        from cronpolicy.tooling.output import print_json
        print_json({"instances": len(instances),
                    "hosts": len({instance.host for instance in instances}),
                    "begin": begin, "end": end, "seed": args.seed,
                    "seeds": [played.seed for played in plays],
                    "warm_up_seconds": warm_up, "cold_jobs": cold,
                    "code_share": args.code_share, "restart": list(restart),
                    "knobs": knobs._asdict(), "ready_times": plays[0].readies,
                    "strategies": figures,
                    "ranges": {"min": combine(by_seed, min), "max": combine(by_seed, max)},
                    "longest_needing_p95_seconds": max(
                        [instance.model.p95 for instance, stops in zip(instances, affected)
                         if stops], default=None),
                    "plays": [{"seed": played.seed, "strategies": figures_of_seed,
                               "longest_needing_run_seconds": longest_needing_run(played),
                               "rollouts": rollout_records(played)}
                              for played, figures_of_seed in zip(plays, by_seed)]})
        return exitcodes.OK
    kinds = plays[0].kinds
    print("%s on %s, %s from %s, %s of %s (%d full, %d code-only restarting %s), %s; "
          "warm-up %s, announce %s, max-wait %s" % (
              _count(len(instances), "job instance"),
              _count(len({instance.host for instance in instances}), "host"),
              _count(args.days, "day"), begin.strftime("%Y-%m-%d %H:%M UTC"),
              _count(len(plays[0].readies), "rollout"), _short(knobs.duration),
              kinds.count(simulation.FULL), kinds.count(simulation.CODE),
              ", ".join(restart) or "nothing",
              "seed %s" % plays[0].seed if len(plays) == 1 else "seeds %s to %s" % (
                  plays[0].seed, plays[-1].seed),
              _days(warm_up), _days(knobs.announce), _short(knobs.max_wait)))
    if len(plays) > 1:
        print("each figure: the median of the %d seeds [lowest to highest]" % len(plays))
    print()
    print_figures(by_seed)
    print()
    print("\n".join(quote_lines(figures, kinds)))
    return exitcodes.OK


def statistics_median(values):
    import statistics
    return statistics.median(values)


def combine(by_seed, how):
    """The figures of several seeds ([{strategy: summary}]) as one, each
    number combined with ``how`` (median, min, max); the rest as the first's."""
    def merge(values):
        first = values[0]
        if isinstance(first, dict):
            return {key: merge([value[key] for value in values]) for key in first}
        numbers = [value for value in values if isinstance(value, (int, float))
                   and not isinstance(value, bool)]
        if len(numbers) == len(values) and numbers:
            found = how(numbers)
            return round(found, 6) if isinstance(found, float) else found
        return first if all(value == first for value in values) else None
    return merge(by_seed)


def longest_needing_run(played):
    """The longest runtime drawn in the play (seconds) of a job that a
    code-only rollout stops (needing a restarted service), or None."""
    state = next(iter(played.states.values()))
    fleet = state.fleet
    return max([max(durations, default=0.0) for durations, stops
                in zip(fleet.durations, state.affected) if stops], default=None)


def rollout_records(played):
    """One record a rollout of one seed: its ready time and kind, and per
    strategy what it cost (simulation.records), or that it was not played
    (queued past the end of the play)."""
    per_strategy = {name: simulation.records(state) for name, state in played.states.items()}
    return [{"ready": ready, "kind": kind,
             "strategies": {name: {key: value for key, value in found[position].items()
                                   if key not in ("ready", "kind")}
                            if position < len(found) else {"not_played": True}
                            for name, found in per_strategy.items()}}
            for position, (ready, kind) in enumerate(zip(played.readies, played.kinds))]


def _start(text):
    """--start: an ISO 8601 time (no `now`: a play is not about today)."""
    from cronpolicy.timeutil import parse_time
    if text.strip().lower().startswith(("now", "+", "-")):
        raise UsageError("--start: an ISO 8601 time such as 2026-01-05T00:00Z: %r" % text)
    begin = parse_time(text, DEFAULT_BEGIN)
    if not EARLIEST_START <= begin <= LATEST_START:
        raise UsageError("--start: from %s to %s: %r" % (
            EARLIEST_START.year, LATEST_START.year, text))
    return begin


def _write_picture(path, states, knobs, at=None):
    from cronpolicy.safety import write_atomically
    from cronpolicy.tooling import simulation_picture
    text = simulation_picture.render(states, knobs, at)
    try:
        write_atomically(path, lambda handle: handle.write(text), 0o644, durable=True)
    except OSError as error:
        raise UsageError("cannot write %s: %s" % (path, error.strerror)) from None


def _count(number, what):
    return "%g %s%s" % (number, what, "" if number == 1 else "s")


def _days(seconds):
    """Whole days as 21d, else as _short has it."""
    if seconds and seconds % 86400 == 0:
        return "%dd" % (seconds // 86400)
    return _short(seconds)


def _percent(share):
    return "-" if share is None else "%.2f%%" % (100.0 * share)


def _number(value):
    return "-" if value is None else "%g" % value


#: The rows of the text table for one kind of rollout: (label, the figure
#: in simulation._figures' dict, how it reads).
KIND_ROWS = (
    ("stall p50 (from ready, queue included)", lambda f: f["stall_seconds"]["p50"], _short),
    ("stall p95", lambda f: f["stall_seconds"]["p95"], _short),
    ("stall max", lambda f: f["stall_seconds"]["max"], _short),
    ("  of it queued behind the deploy before, p95", lambda f: f["queued_seconds"]["p95"],
     _short),
    ("  its own wait (stall less the queue), p95", lambda f: f["wait_seconds"]["p95"], _short),
    ("  of it moved to the slot (d), p50", lambda f: f["moved_seconds"]["p50"], _short),
    ("scheduled starts skipped", lambda f: f["skipped_starts"], _number),
    ("  share of all scheduled starts", lambda f: f["skipped_share"], _percent),
) + tuple(("  jobs run %s" % label, lambda f, label=label: f["skipped_by_frequency"][label],
           _number) for label, _ in simulation.FREQUENCIES) + (
    ("runs interrupted at safe points", lambda f: f["interrupted_at_safe_points"], _number),
    ("runs stopped at once (interruptible)", lambda f: f["stopped_at_once"], _number),
    ("runs killed", lambda f: f["killed"], _number),
    ("  of them while unsafe", lambda f: f["killed_while_unsafe"], _number),
    ("job-minutes lost", lambda f: f["job_minutes_lost"], _number),
    ("jobs left overdue (HORIZON after each ready, summed)", lambda f: f["left_overdue"],
     _number),
)
#: The rows about the play as a whole.
PLAY_ROWS = (
    ("rollouts played", lambda f: f["rollouts"], _number),
    ("  queued behind the deploy before", lambda f: f["queued"], _number),
    ("not played (queued past the end)", lambda f: f["not_played"], _number),
    ("catch-up runs (catch_up = once)", lambda f: f["catch_up_runs"], _number),
)
KIND_TITLES = {simulation.FULL: "full rollouts (database patches: everything stops)",
               simulation.CODE: "code-only rollouts (under c and d only the jobs needing a "
                                "restarted service stop)"}


def _cell(by_seed, name, figure, shown):
    values = [figure(figures[name]) for figures in by_seed]
    numbers = [value for value in values if value is not None]
    if len(numbers) != len(values) or not numbers:
        return shown(None) if not numbers else "-"
    import statistics
    middle = statistics.median(numbers)
    text = shown(middle)
    if len(values) > 1 and min(numbers) != max(numbers):
        text += " [%s-%s]" % (shown(min(numbers)), shown(max(numbers)))
    return text


def print_figures(by_seed):
    """The figures of each strategy, a column each: each kind's, then the
    play's ([{strategy: summary}], one a seed: medians and ranges)."""
    names = list(by_seed[0])
    horizon = _short(by_seed[0][names[0]]["overdue_horizon_seconds"])
    cells = [[""] + [LABELS[name] for name in names]]
    for kind in simulation.KINDS:
        count = by_seed[0][names[0]]["kinds"][kind]["rollouts"]
        if not any(figures[names[0]]["kinds"][kind]["rollouts"] for figures in by_seed):
            continue
        cells.append(["%s: %s" % (KIND_TITLES[kind], count)] + [""] * len(names))
        for label, figure, shown in KIND_ROWS:
            if "(d)" in label and "cronpolicy-slot" not in names:
                continue
            cells.append(["  " + label.replace("HORIZON", horizon)] + [
                _cell(by_seed, name, lambda f, figure=figure, kind=kind: figure(
                    f["kinds"][kind]), shown) for name in names])
    cells.append(["the play"] + [""] * len(names))
    cells += [["  " + label] + [_cell(by_seed, name, figure, shown) for name in names]
              for label, figure, shown in PLAY_ROWS]
    widths = [max(len(line[column]) for line in cells) for column in range(len(names) + 1)]
    for line in cells:
        print("  ".join([line[0].ljust(widths[0])] + [cell.rjust(width) for cell, width
                                                       in zip(line[1:], widths[1:])]).rstrip())


#: The headline's figures of each kind: (what, the figure, how it reads).
HEADLINE = (
    ("stall p95", lambda f: f["stall_seconds"]["p95"], _short),
    ("runs killed while unsafe", lambda f: f["killed_while_unsafe"], _number),
    ("job-minutes lost", lambda f: f["job_minutes_lost"], lambda value: "%.0f" % value),
    ("starts skipped (of all)", lambda f: f["skipped_share"], _percent),
    ("jobs left overdue", lambda f: f["left_overdue"], _number),
)


def quote_lines(figures, kinds=(simulation.FULL,)):
    """The lines README.txt quotes: for each kind played, its headline
    figures per strategy (by letter; the medians over the seeds played)."""
    letters = {name: letter for letter, name in simulation.STRATEGY_LETTERS.items()}
    lines = []
    for kind in simulation.KINDS:
        if kind not in kinds:
            continue
        for what, figure, shown in HEADLINE:
            lines.append("%-45s %s" % ("%s rollouts, %s:" % (kind, what), ", ".join(
                "%s %s" % (letters[name], shown(figure(found["kinds"][kind])))
                for name, found in figures.items())))
    return lines
