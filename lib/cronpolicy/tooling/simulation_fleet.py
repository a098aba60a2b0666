"""The simulator's fleet: its words (strategies, kinds of rollout, knobs),
the jobs and their runtime models, the runtimes drawn, and the Fleet (each
instance's starts and durations over the play, the warm-up before it).

Apart from the play (simulation_starts, simulation_strategy) because it is
what every play of every strategy and seed shares, worked out once: the
plays read it and never change it.
"""

import bisect
import datetime
import math
import random

from cronpolicy import policy
from cronpolicy.matching import matching_policies
from cronpolicy.rows import DeployState, Inputs
from cronpolicy.shapes import shape

#: How a job behaves: ``median`` and ``p95`` seconds of its runtime;
#: ``interruptible``: True (may be stopped at any moment), False (never:
#: awaited, and a kill leaves a mess) or "safe-points" (safe every
#: ``safe_every`` seconds of its run).
#: ``needs``: the services it talks to (a code-only rollout restarting one
#: of them stops it under c and d); ``exempt``: a rollout neither awaits nor
#: stops it under c and d (a policy row's rollout_exempt, as the product has it).
Model = shape("Model", "median p95 interruptible safe_every needs exempt",
              defaults=(False, None, (), False))

#: A job instance: ``name`` on ``host``, by ``schedule``, behaving as ``model``.
Instance = shape("Instance", "name host schedule model")

#: The knobs of a simulation (seconds).
Knobs = shape("Knobs", "duration lead announce max_wait tolerance grace step",
              defaults=(1800.0, 3600.0, 86400.0, 1800.0, 3600.0, 600.0, 600.0))

STRATEGIES = ("all-stop", "all-stop-no-kills", "on-off", "on-off-no-kills", "cronpolicy",
              "cronpolicy-slot")
STRATEGY_LETTERS = dict(zip(("a", "a0", "b", "b0", "c", "d"), STRATEGIES))
#: The strategies that never kill: they await what may not be stopped at
#: any moment, however long it takes (a0, b0: the stall at equal safety).
NO_KILLS = ("all-stop-no-kills", "on-off-no-kills")
#: The kinds of rollout: a full one (a database patch: everything stops)
#: and a code-only one (it restarts some services; under c and d only the
#: jobs that need one of them stop).
FULL, CODE = "full", "code-only"
KINDS = (FULL, CODE)
Z95 = 1.6448536269514722

#: How often a job runs, for the split of skipped starts.
FREQUENCIES = (("every 5 minutes or more often", 300), ("up to hourly", 3600),
               ("up to daily", 86400), ("less than daily", float("inf")))

HISTORY_RUNS = 20


#: The longest run a model may give (its median and p95 are at most a
#: year; a draw far in the tail stops here, so every time stays in range).
LONGEST_RUN = 10 * 365.25 * 86400
#: The widest spread: a p95 at most this many medians.
MAX_SPREAD = 10000.0


def overdue_horizon(knobs):
    """How long after each ready time the jobs left overdue are counted: an
    hour after the latest a deploy awaited for --max-wait would end, had
    its start been moved by the whole --tolerance.  The same moment under
    every strategy, so no strategy's own stall moves (or drops) its count."""
    return knobs.tolerance + knobs.max_wait + knobs.duration + 3600.0


def _seconds_problem(what, value, least):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or not least <= value <= 365.25 * 86400:
        return "%s must be a duration from %gs to a year: %r" % (what, least, value)
    return None


def model_problem(median, p95, interruptible=False, safe_every=None):
    """Why these numbers are not a runtime model, or None."""
    problem = _seconds_problem("median", median, 1.0) or _seconds_problem("p95", p95, 1.0)
    if problem:
        return problem
    if p95 < median:
        return "p95 (%gs) is below the median (%gs)" % (p95, median)
    if p95 > MAX_SPREAD * median:
        return "p95 (%gs) is more than %g times the median (%gs)" % (p95, MAX_SPREAD, median)
    if not (interruptible is True or interruptible is False or interruptible == "safe-points"):
        return "interruptible must be true, false or \"safe-points\": %r" % (interruptible,)
    if interruptible == "safe-points" and (
            safe_every is None or _seconds_problem("safe_every", safe_every, 1.0)):
        return "a job with safe points needs safe_every, a duration from 1s to a year"
    return None


def draw(model, generator):
    """One runtime (seconds) from the model's lognormal distribution."""
    sigma = max(0.0, math.log(model.p95 / model.median) / Z95)
    return min(LONGEST_RUN, model.median * math.exp(sigma * generator.gauss(0.0, 1.0)))


def draws(model, generator, count):
    """``count`` runtimes, as ``count`` calls of draw make them (the same
    numbers: the spread worked out once, not at each of a week's 200000)."""
    sigma = max(0.0, math.log(model.p95 / model.median) / Z95)
    median, gauss, exp = model.median, generator.gauss, math.exp
    return [min(LONGEST_RUN, median * exp(sigma * gauss(0.0, 1.0))) for _ in range(count)]


#: One run of the simulation: where, when, how long it would take, how it ended.
Run = shape("Run", "index start natural_end end outcome lost", defaults=(None, "succeeded", 0.0))
#: Makes a Run from all its fields (tuple.__new__: a shape's own __new__,
#: with its keyword and default handling, costs more than the rest of a start).
_new_tuple = tuple.__new__


class TooLarge(ValueError):
    """A play with more starts than MAX_STARTS."""


#: The most scheduled starts one play takes (the reference fleet has about
#: 31000 a day): each is a run or a skip kept in memory, four times over.
MAX_STARTS = 2000000


#: A warm-up plays at most this many of each job's last starts before the
#: play (its history keeps HISTORY_RUNS runs; the rest would be forgotten).
WARM_STARTS = 2 * HISTORY_RUNS
#: The longest warm-up (a job that runs less often keeps a cold estimate).
MAX_WARM_UP = 92 * 86400.0


def default_warm_up(instances, begin, min_runs):
    """The warm-up (seconds, whole days) after which every job has had
    ``min_runs`` starts that ended before ``begin`` (as its model's p95
    has them), at most MAX_WARM_UP."""
    longest = 0.0
    for instance in instances:
        earliest = begin - datetime.timedelta(seconds=MAX_WARM_UP)
        starts = _last_starts(instance.schedule, begin - datetime.timedelta(
            seconds=instance.model.p95), earliest, max(1, min_runs))
        reach = (begin - starts[0]).total_seconds() if len(starts) >= min_runs else MAX_WARM_UP
        longest = max(longest, reach)
    return min(MAX_WARM_UP, math.ceil(longest / 86400.0) * 86400.0)


def _last_starts(schedule, before, earliest, count):
    """The last ``count`` starts of ``schedule`` in [earliest, before), in order."""
    found = []
    for moment in schedule._iterate(before.replace(microsecond=0), reverse=True):
        if moment < earliest or len(found) >= count:
            break
        if moment < before:
            found.append(moment)
    return found[::-1]


class Fleet:
    """The instances with their starts and durations over [begin, end), and
    the policy rows the rules are asked with (none for a fleet from files).

    ``warm_up`` seconds before ``begin`` are played first with no rollout,
    the same for every strategy, so that each job's history (its estimate)
    is what a fleet in service would have: each job plays the last
    WARM_STARTS of its starts in them, with runtimes of their own (seed,
    job, host, "warm-up"), so the durations of the play do not depend on
    it.  Nothing in the warm-up is counted.  ``schedules``: the starts of
    each schedule over [begin, end), shared by the plays of several seeds."""

    def __init__(self, instances, begin, end, seed, policies=(), warm_up=0.0, settings=None,
                 schedules=None):
        self.instances = list(instances)
        self.begin, self.end = begin, end
        self.seed = seed
        self.policies = list(policies)
        self.warm_up = warm_up
        cache = schedules if schedules is not None else {}
        self.starts, self.durations, self.ends, self.periods = [], [], [], []
        total = 0
        for instance in self.instances:
            key = (tuple(instance.schedule.fields), instance.schedule.tz)
            if key not in cache:
                cache[key] = instance.schedule.starts_between(begin, end)
                cache[key, "period"] = instance.schedule.period(begin)
            total += len(cache[key])
            if total > MAX_STARTS:
                raise TooLarge("more than %d scheduled starts to play: fewer days or jobs"
                               % MAX_STARTS)
        for instance in self.instances:
            starts = cache[(tuple(instance.schedule.fields), instance.schedule.tz)]
            generator = random.Random("%s:%s:%s" % (seed, instance.name, instance.host))
            self.starts.append(starts)
            timedelta = datetime.timedelta
            durations = draws(instance.model, generator, len(starts))
            self.durations.append(durations)
            # When each start's run would end: the same for every strategy,
            # so worked out once here rather than at each start of each play.
            # (timedelta(0, duration) is timedelta(seconds=duration), without
            # the keyword: a third less, 200000 times a seed)
            self.ends.append([start + timedelta(0, duration)
                              for start, duration in zip(starts, durations)])
            self.periods.append(cache[(tuple(instance.schedule.fields), instance.schedule.tz),
                                      "period"])
        self._by_schedule = cache
        self.scheduled = sum(len(starts) for starts in self.starts)
        self.known = [_KnownStarts(instance.schedule, starts, begin, end)
                      for instance, starts in zip(self.instances, self.starts)]
        self._warm(settings)

    def _warm(self, settings):
        """The state the warm-up leaves: ``history`` (name -> runtimes,
        oldest first), and per instance its run in flight at ``begin``, its
        last start and the start of its last success."""
        count = len(self.instances)
        self.history, self.warm_running = {}, [None] * count
        self.warm_last_start, self.warm_last_success = [None] * count, [None] * count
        if not self.warm_up:
            return
        earliest = self.begin - datetime.timedelta(seconds=self.warm_up)
        ended, found = [], self._by_schedule      # (the last starts shared by the seeds too)
        for index, instance in enumerate(self.instances):
            key = (tuple(instance.schedule.fields), instance.schedule.tz, "warm-up", self.begin,
                   earliest)
            if key not in found:
                found[key] = _last_starts(instance.schedule, self.begin, earliest, WARM_STARTS)
            generator = random.Random("%s:%s:%s:warm-up" % (self.seed, instance.name,
                                                            instance.host))
            ruled = bool(self.policies) and bool(matching_policies(
                self.policies, instance.name, instance.host))
            facts = policy.ScriptFacts(instance.name, instance.host,
                                       expected_runtime=instance.model.p95,
                                       needs=tuple(instance.model.needs))
            busy_until, own = None, []
            for moment in found[key]:
                duration = draw(instance.model, generator)
                if busy_until is not None and busy_until > moment:
                    continue                    # still running: the lock skips it
                if ruled and settings is not None and not policy.decide(
                        Inputs(moment, None, DeployState(False), self.policies, [],
                               own[::-1][:HISTORY_RUNS]), facts, settings,
                        explain=False).run:
                    continue                    # a row holds it (disabled)
                natural = moment + datetime.timedelta(seconds=duration)
                busy_until = natural
                self.warm_last_start[index] = moment
                if natural <= self.begin:
                    ended.append((natural, index, duration, moment))
                    own.append(duration)
                else:
                    self.warm_running[index] = Run(index, moment, natural, natural)
        ended.sort(key=lambda item: (item[0], item[1]))
        for natural, index, duration, moment in ended:
            self.history.setdefault(self.instances[index].name, []).append(duration)
            self.warm_last_success[index] = moment
        for runtimes in self.history.values():
            del runtimes[:-HISTORY_RUNS]

    def cold(self, min_runs):
        """The job names with fewer than ``min_runs`` runs in their history
        when the play begins (estimated from what they declare)."""
        return sorted({instance.name for instance in self.instances
                       if len(self.history.get(instance.name, ())) < min_runs})

    def starts_of(self, schedule, begin, end):
        """The starts of ``schedule`` in [begin, end), from those worked out once."""
        starts = self._by_schedule.get((tuple(schedule.fields), schedule.tz))
        if starts is None or begin < self.begin or end > self.end:
            return schedule.starts_between(begin, end)
        return starts[bisect.bisect_left(starts, begin):bisect.bisect_left(starts, end)]


class _KnownStarts:
    """A schedule's previous_before from its starts worked out once (what
    planning.overdue_by_schedule asks, thousands of times a simulation)."""

    def __init__(self, schedule, starts, begin, end):
        self.schedule, self.starts, self.begin, self.end = schedule, starts, begin, end
        self.before_begin = False       # the last start before begin, once asked

    def previous_before(self, moment):
        moment = moment.replace(microsecond=0)      # as Schedule.previous_before reads it
        position = bisect.bisect_left(self.starts, moment)
        if self.begin < moment <= self.end:
            if position:
                return self.starts[position - 1]
            # No start in [begin, moment): the last one is the last before begin.
            if self.before_begin is False:
                self.before_begin = self.schedule.previous_before(self.begin)
            return self.before_begin
        return self.schedule.previous_before(moment)
