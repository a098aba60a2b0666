"""Replaying days of a fleet's cron jobs under rollout strategies.

Given job instances (a script on a host, its schedule, a runtime model),
the ready times of K rollouts and a strategy, ``simulate`` plays the fleet
forward in simulated time and measures what each rollout cost: how long
from "ready to deploy" to "fleet quiet" (the stall), which scheduled starts
were skipped, which runs were stopped (at a safe point, or at once when
they may be stopped at any moment), which had to be
killed while unsafe, the job-minutes lost, and the jobs left overdue.
Whether a start runs is asked of ``cronpolicy.policy.decide`` with the
rollout as the rules would see it (deploy pending, a window announced
ahead, and the policy rows of a fleet read from the database), and its
estimate comes from the simulated history of its job, as the gate's
would; only starts that no rollout could touch (before any is announced
or pending, after it is over) and no policy row matches are not asked,
since nothing could skip them.  Slots (strategy d) are chosen by ``cronpolicy.tooling.planning``.

The strategies, for a rollout ready at R that takes ``duration`` once the
fleet is quiet:

a. all-stop: every crontab disabled ``lead`` before R; the runs still going
   at R are awaited (up to ``max_wait``, then killed), as operators do by
   editing crontabs;
a0. as a, never killing: runs that may be stopped at any moment stop at R,
   the others are awaited however long they take;
b. on/off: one central switch set at R, runs awaited as in a;
b0. as b, never killing, as a0 (a0 and b0 give the stall at equal safety);
c. cronpolicy: a rollout window announced ``announce`` ahead, so starts
   whose estimated run would reach R are cut off; at R deploy pending: runs
   that may be stopped stop (at once, or at their next safe point), the
   others are awaited (never killed);
d. as c, its start moved to the best slot within ``tolerance`` after R
   (``deploy slot``); the move counts as stall.

A rollout is full (everything stops) or code-only: under c and d a
code-only rollout is one of the services it restarts, so only the jobs
that need one of them are cut off, skipped, stopped or awaited; a, a0, b
and b0 know no kinds and stop everything.  The stall counts from R even
when the rollout waited for the deploy before (the queue, kept apart).
The history is warmed before the play (Fleet), and a job declares its
model's p95 as its runtime.

Under c and d, as the product does: a rollout-exempt script's runs are
neither awaited nor stopped, and a start a rollout skipped is caught up
once when the deploy is over if its policy row says catch_up = once.  The
jobs left overdue are counted at each ready time plus one horizon
(overdue_horizon), the same moments under every strategy.

Runs are single-instance per host (a start while the job still runs there
is skipped, as the gate's lock does).  Durations are drawn from a
lognormal distribution with the model's median and 95th percentile, one
draw per scheduled start from a generator seeded with the seed, the job
and the host, so every strategy meets the same durations.
"""

import bisect
import datetime
import math
import random

from cronpolicy import policy
from cronpolicy.tooling import planning
from cronpolicy.matching import matching_policies
from cronpolicy.rows import FROM_DATABASE, DeployState, Inputs, Window
from cronpolicy.rows import Rollout as RolloutRow
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

#: What became of one rollout: when it was ready, when it began (the slot),
#: when the fleet was quiet, when the deploy ended.  ``stall``: from ready
#: to quiet, all of it: ``queued`` (waiting for the deploy before to end),
#: ``moved`` (d: the wait for the slot after the queue) and the wait for
#: the runs.  ``kind``: FULL or CODE; ``lost``: job-seconds thrown away by
#: its kills and stops; ``killed``: runs killed (``killed_unsafe`` of them
#: while unsafe); ``skipped``: the scheduled starts it skipped (filled in by
#: summary); ``overdue``: the jobs left overdue a horizon after its ready time.
RolloutOutcome = shape("RolloutOutcome",
                       "ready start quiet deploy_end stall moved killed_unsafe queued kind lost "
                       "killed stopped interrupted skipped overdue",
                       defaults=(FULL, 0.0, 0, 0, 0, None, None))


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
            durations = draws(instance.model, generator, len(starts))
            self.durations.append(durations)
            # When each start's run would end: the same for every strategy,
            # so worked out once here rather than at each start of each play.
            self.ends.append([start + datetime.timedelta(seconds=duration)
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


class _Strategy:
    """The state of one simulation under one strategy."""

    def __init__(self, fleet, strategy, knobs, settings, restart=()):
        self.fleet = fleet
        self.strategy = strategy
        self.knobs = knobs
        self.settings = settings
        self.cronpolicy = strategy in ("cronpolicy", "cronpolicy-slot")
        self.no_kills = strategy in NO_KILLS
        count = len(fleet.instances)
        self.next = [0] * count                 # index of each instance's next start
        self.names = [instance.name for instance in fleet.instances]
        self.running = list(fleet.warm_running)     # its run in flight (a Run), if any
        self.history = {name: list(runtimes)    # name -> durations, newest last
                        for name, runtimes in fleet.history.items()}
        self.estimates = {}                     # name -> its Estimate now (dropped on change)
        self.own_estimates = {}                 # name -> {index: its Estimate}, as well
        self.pending_verdicts = {}              # index -> its verdict in the deploy pending
        self.pending_verdicts_of = None         # (the pending deploy they are of)
        self.reaches = {}                       # name -> how far ahead a window skips it
        self.last_success = list(fleet.warm_last_success)   # start of its last success
        self.margin = getattr(settings, "cutoff_margin", policy.DEFAULT_MARGIN)
        self.windows = []                       # announced (cronpolicy, cronpolicy-slot)
        # (since, until, DeployState, open rollouts, kind): deploy pending
        self.pending = None
        # What a job declares: its model's p95 (what a careful owner would say).
        self.facts = [policy.ScriptFacts(instance.name, instance.host,
                                         expected_runtime=instance.model.p95,
                                         needs=tuple(instance.model.needs))
                      for instance in fleet.instances]
        self.clear = DeployState(False)
        self.runs = []
        self.skips = []                         # (index, start, code, rollout position)
        self.outcomes = []
        self.overdue = 0
        self.overdue_checks = 0
        self.checks = []                        # when to count the jobs left overdue
        self.not_played = 0                     # rollouts queued past the end of the play
        self.decided_until = fleet.begin        # every start before it is decided
        # Instances some policy row matches: the rules are asked at each of
        # their starts (a row may disable them), not only near a rollout.
        self.ruled = [bool(matching_policies(fleet.policies, instance.name,
                                              instance.host))
                      for instance in fleet.instances]
        # Rollout-exempt instances: a rollout neither awaits nor stops their
        # runs under c and d (`deploy wait` leaves them out: blocking_runs).
        # (Or its model says so: it is then neither asked about a rollout.)
        self.exempt = [instance.model.exempt or (ruled and policy.rollout_exempt(
            fleet.policies, instance.name, instance.host))
            for ruled, instance in zip(self.ruled, fleet.instances)]
        # The services a code-only rollout restarts, and the instances it stops
        # under c and d (needing one of them; a policy row's needs win).
        self.restart = tuple(restart)
        self.affected = [not exempt and bool(set(self.restart) & set(policy.effective_needs(
            Inputs(fleet.begin, None, None, fleet.policies, [], ()), facts)))
            for exempt, facts in zip(self.exempt, self.facts)]
        self.current = None                     # the position of the rollout under way
        self.window_rollout = {}                # window id -> the position of its rollout
        self.tickets = {}                       # index -> (skipped at, block): catch_up once
        self.last_start = list(fleet.warm_last_start)   # start of its last run
        self.catch_up_runs = 0
        self.catch_up_draws = {}                # index -> its generator of catch-up runtimes
        self.figures = None                     # summary(), once worked out where played
        self.window_count = 0
        self.overdue_at = {}                    # rollout position -> jobs left overdue

    # Starts --------------------------------------------------------------------------

    def advance(self, until):
        """Make every start before ``until`` (counting the jobs left overdue
        at the checks due meanwhile)."""
        while self.checks and self.checks[0][0] < until:
            moment, position = self.checks.pop(0)
            self._advance(moment)
            self.overdue_at[position] = self._count_overdue(moment)
        self._advance(until)

    def _advance(self, until):
        self.decided_until = max(self.decided_until, until)
        if self.windows:            # a window over before the next start meets none
            cursor = _cursor(self)
            self.windows = [window for window in self.windows if window.ends_at > cursor]
        fleet = self.fleet
        for index, instance in enumerate(fleet.instances):
            starts = fleet.starts[index]
            position = self.next[index]
            stop = bisect.bisect_left(starts, until, position)
            if position < stop:
                self._starts(index, instance, position, stop)
                self.next[index] = stop

    def _starts(self, index, instance, position, stop):
        """Make the starts ``position`` to ``stop`` of ``index``.  Most
        starts meet nothing that could skip them but the lock (no deploy
        pending, no window near, no policy row): those are made here
        without asking the rules, exactly as _start would make them (the
        play makes about 200000 a strategy and seed); the others go to
        _start.  Neither the pending deploy nor the windows change within
        one _advance, so what makes a start plain is read once."""
        starts, ends = self.fleet.starts[index], self.fleet.ends[index]
        running, skips, last_start = self.running, self.skips, self.last_start
        pending = self.pending
        if self.ruled[index]:
            plain = None                    # every start asks the rules
        elif self.cronpolicy and instance.model.exempt:
            plain = "always"                # left alone by every rollout
        else:
            plain = "unless pending or near"
            if pending is not None and self.cronpolicy and pending[4] == CODE \
                    and not self.affected[index]:
                pending = None              # it needs no restarted service
        near = self.cronpolicy and plain != "always" and bool(self.windows)
        # From when a start is near the first window (_reach), worked out
        # when first needed: it changes only when the job's history does, at
        # a run's end (_close) below.  Before ``far_until`` no start is
        # near, whatever the runs ending meanwhile add to the history (each
        # can only bring it closer by its own length): most starts are far
        # from any window, and the reach is not worked out for them.
        near_from = far_until = None
        if near:
            first_window = self.windows[0].starts_at
            margin, spare = datetime.timedelta(seconds=self.margin), datetime.timedelta(seconds=1)
            far_until = first_window - self._reach(instance) - spare    # (rounding aside)
        switched_off = not self.cronpolicy and plain is not None    # a, b: no rules asked
        run = running[index]
        for position in range(position, stop):
            moment = starts[position]
            if run is not None:
                if run[3] > moment:         # (run.end) still running: the lock skips it
                    skips.append((index, moment, policy.LOCKED, None))
                    continue
                self._close(index, run)
                if near:
                    far_until = min(far_until,
                                    first_window - (run[3] - run[1]) - margin - spare)
                run = near_from = None
            if plain is None:
                self._start(index, instance, position, moment)
                run = running[index]
                continue
            if pending is not None and pending[0] <= moment < pending[1]:
                if switched_off:    # crontabs disabled, or the switch off: no start
                    skips.append((index, moment, policy.DEPLOY_PENDING, self.current))
                    continue
                if plain != "always":
                    self._start(index, instance, position, moment)
                    run = running[index]
                    continue
            if near and moment >= far_until:
                if near_from is None:
                    near_from = self.windows[0].starts_at - self._reach(instance)
                if near_from <= moment:
                    self._start(index, instance, position, moment)
                    run = running[index]
                    continue
            end = ends[position]
            run = running[index] = _new_tuple(Run, (index, moment, end, end, "succeeded", 0.0))
            last_start[index] = moment

    def _reach(self, instance):
        """How far ahead a window can skip a start of ``instance``: no
        estimate of it is longer than its history's longest run or, with too
        little history, the runtime it declares; then the margin."""
        reach = self.reaches.get(instance.name)
        if reach is None:
            longest = max([instance.model.p95] + self.history.get(instance.name, []))
            reach = self.reaches[instance.name] = datetime.timedelta(
                seconds=longest + self.margin)
        return reach

    def _start(self, index, instance, position, moment):
        self._settle(index, moment)
        if self.running[index] is not None:
            self.skips.append((index, moment, policy.LOCKED, None))
            return
        pending = self.pending is not None and self.pending[0] <= moment < self.pending[1]
        if not self.cronpolicy:
            if pending:     # the crontabs are disabled (or the switch is off): no start
                self.skips.append((index, moment, policy.DEPLOY_PENDING, self.current))
                return
            # The fleet's own rows (a script disabled) hold whatever the strategy.
            if self.ruled[index] and not self._allowed(index, instance, moment, False, []):
                return
        else:
            if instance.model.exempt:
                pending, near = False, False    # left alone by every rollout
            else:
                if pending and self.pending[4] == CODE and not self.affected[index]:
                    pending = False             # it needs no restarted service: it runs
                near = bool(self.windows) and self.windows[0].starts_at \
                    - self._reach(instance) <= moment
            if pending or self.ruled[index] or near:
                # (windows in order of start: the first is nearest)
                # (a policy row may declare a longer runtime than _reach knows of)
                reach = self.fleet.end - self.fleet.begin if self.ruled[index] \
                    else self._reach(instance)
                windows = []
                if near or self.ruled[index]:
                    for window in self.windows:     # (in order of start)
                        if window.starts_at - reach > moment:
                            break
                        if window.created_at <= moment < window.ends_at and (
                                window.service is None or self.affected[index]):
                            windows.append(window)
                if pending or windows or self.ruled[index]:
                    # (else nothing could skip it: the rules need not be asked)
                    if not self._allowed(index, instance, moment, pending, windows):
                        return
        self._run(index, moment, None, self.fleet.ends[index][position])

    def _run(self, index, moment, duration, natural=None):
        if natural is None:
            natural = moment + datetime.timedelta(seconds=duration)
        self.running[index] = _new_tuple(Run, (index, moment, natural, natural, "succeeded", 0.0))
        self.last_start[index] = moment

    def _gate_inputs(self, name, moment, deploy, windows, rollouts=()):
        """What the gate of a start of ``name`` at ``moment`` would read."""
        history = self.history.get(name, [])
        return Inputs(moment, None, deploy, self.fleet.policies, windows,
                      history[::-1][:HISTORY_RUNS], FROM_DATABASE, None, None, (), rollouts)

    def _allowed(self, index, instance, moment, pending, windows):
        """Whether the rules let this start run (a skip is recorded, with
        the position of the rollout that caused it)."""
        verdict = self._pending_verdict(index) if pending else None
        inputs = None
        if verdict is None or instance.name not in self.estimates:
            inputs = self._gate_inputs(instance.name, moment,
                                       self.pending[2] if pending else self.clear, windows,
                                       self.pending[3] if pending else ())
        estimate = None if self.ruled[index] else self.estimates.get(instance.name)
        if estimate is None:    # (rows may differ by host: a ruled one is not kept by name)
            estimate = policy.runtime_estimate(inputs, self.facts[index], self.settings)
            if not self.ruled[index]:
                self.estimates[instance.name] = estimate
        if verdict is None:
            verdict = policy.decide(inputs, self.facts[index], self.settings, estimate,
                                    explain=False)
            if pending and verdict.code in (policy.DEPLOY_PENDING, policy.SERVICE_PENDING) \
                    and not self.ruled[index]:
                self.pending_verdicts[index] = verdict
        if not verdict.run:
            kind, _, number = (verdict.block or "").partition(":")
            cause = self.window_rollout.get(int(number)) if kind == "window" \
                and number.isdigit() else self.current
            self.skips.append((index, moment, verdict.code, cause))
            if policy.catches_up(verdict):      # a later skip rewrites the ticket
                self.tickets[index] = (moment, verdict.block)
        return verdict.run

    def _pending_verdict(self, index):
        """The verdict of a start of ``index`` in the deploy pending now,
        when an earlier one was a skip for the deploy: the rules before
        and at that skip read nothing of the moment, the windows or the
        estimate (an instance no row matches: no row disables or exempts
        it), so every start of it in this deploy gets the same (the deploy
        stops about a third of a play's starts under c and d)."""
        if self.pending_verdicts_of is not self.pending:
            self.pending_verdicts, self.pending_verdicts_of = {}, self.pending
        return self.pending_verdicts.get(index)

    def _catch_up(self, moment):
        """What `cronpolicy catch-up` starts at ``moment``, its block over:
        each ticket's start again, unless the job started since it was
        skipped; a ticket still blocked (by the next rollout's window)
        waits for the end of that rollout.  A catch-up's runtime is drawn
        from a generator of its own (seed, job, host), so it does not
        shift the scheduled starts' draws."""
        for index in sorted(self.tickets):
            skipped_at, block = self.tickets.pop(index)
            self._settle(index, moment)
            if self.running[index] is not None or (
                    self.last_start[index] is not None and self.last_start[index] > skipped_at):
                continue        # it started since it was skipped: nothing to catch up
            instance = self.fleet.instances[index]
            inputs = self._gate_inputs(instance.name, moment, self.clear,
                                       [window for window in self.windows
                                        if window.created_at <= moment < window.ends_at])
            facts = self.facts[index]._replace(catch_up_of=block)
            verdict = policy.decide(inputs, facts, self.settings, explain=False)
            if not verdict.run:
                if verdict.code != policy.DISABLED:     # still blocked: it waits
                    self.tickets[index] = (skipped_at, block)
                continue
            generator = self.catch_up_draws.get(index)
            if generator is None:
                generator = self.catch_up_draws[index] = random.Random("%s:%s:%s:catch-up" % (
                    self.fleet.seed, instance.name, instance.host))
            self._run(index, moment, draw(instance.model, generator))
            self.catch_up_runs += 1

    def _settle(self, index, moment):
        """The run in flight of ``index`` has ended by ``moment``: record it."""
        run = self.running[index]
        if run is not None and run.end <= moment:
            self._close(index, run)

    def _close(self, index, run):
        # (A run's fields by position: run.end, run.start...; this is called
        # at the end of each of some 180000 runs a strategy and seed.)
        self.running[index] = None
        self.runs.append(run)
        if run[4] == "succeeded":                       # run.outcome
            name = self.names[index]
            history = self.history.get(name)
            if history is None:
                history = self.history[name] = []
            history.append((run[3] - run[1]).total_seconds())     # run.end - run.start
            if len(history) > HISTORY_RUNS:
                del history[:-HISTORY_RUNS]
            self.estimates.pop(name, None)
            self.own_estimates.pop(name, None)
            self.reaches.pop(name, None)
            self.last_success[index] = run[1]

    # Rollouts ----------------------------------------------------------------------------

    def announce(self, position, ready, at, kind=FULL):
        """Announce the rollout ready at ``ready`` (the ``position``-th) at
        ``at``: from ``ready``, or (cronpolicy-slot) from the best slot after
        it within the tolerance, as `deploy slot` would choose it then.  A
        full rollout is one window of everything; a code-only one, a window
        of each service it restarts (as `deploy window --service` makes them)."""
        start = self._best_slot(ready, at, kind) if self.strategy == "cronpolicy-slot" \
            else ready
        windows = []
        for service in ((None,) if kind == FULL else self.restart):
            self.window_count += 1
            window = Window(id=self.window_count, starts_at=start, created_at=at,
                            ends_at=start + datetime.timedelta(seconds=self.knobs.duration),
                            reason="simulated rollout", service=service)
            self.window_rollout[window.id] = position
            self._add_window(window)
            windows.append(window)
        return windows

    def _add_window(self, window):
        self.windows.append(window)
        self.windows.sort(key=lambda window: (window.starts_at, window.id))

    def rollout(self, position, planned, ready, windows=(), kind=FULL):
        """The ``position``-th rollout, ready at ``planned``, played from
        ``ready`` (later when it queued behind the deploy before), announced
        as ``windows`` (c, d).  Under c and d a code-only rollout is one of
        the services it restarts (`deploy begin --service`): only the jobs
        that need one of them are stopped or awaited; a, b and their no-kill
        forms know no kinds and stop everything."""
        knobs = self.knobs
        start = windows[0].starts_at if windows else ready
        if self.strategy in ("all-stop", "all-stop-no-kills"):
            pending_from = ready - datetime.timedelta(seconds=knobs.lead)
        else:
            pending_from = start
        self.advance(pending_from)
        self.current = position
        forever = self.fleet.end + datetime.timedelta(days=365)
        if kind == CODE and self.cronpolicy:
            self.pending = (pending_from, forever, self.clear, (RolloutRow(
                id=position + 1, kind=policy.SERVICES, services=",".join(self.restart),
                reason="simulated rollout", began_at=pending_from),), kind)
        else:
            self.pending = (pending_from, forever, DeployState(
                True, "simulated rollout", "simulation", pending_from), (), kind)
        self.advance(start)
        quiet, ended = self._quiet(start, ready, kind)
        deploy_end = quiet + datetime.timedelta(seconds=knobs.duration)
        self.advance(deploy_end)
        self.pending = None
        self.current = None
        for window in windows:
            if window in self.windows and window.ends_at > deploy_end:
                # The deploy is over: the window is cancelled, as an operator would.
                self.windows[self.windows.index(window)] = window._replace(ends_at=deploy_end)
        if self.tickets:
            self._catch_up(deploy_end)
        self.outcomes.append(RolloutOutcome(
            planned, start, quiet, deploy_end, (quiet - planned).total_seconds(),
            (start - ready).total_seconds(), ended["killed_unsafe"],
            (ready - planned).total_seconds(), kind, ended["lost"], ended["killed"],
            ended["stopped"], ended["interrupted"]))

    def _quiet(self, start, ready, kind):
        """Stop or await the runs in flight at ``start``; (when the fleet is
        quiet, {killed, killed_unsafe, stopped, interrupted, lost})."""
        quiet = start
        ended = {"killed": 0, "killed_unsafe": 0, "stopped": 0, "interrupted": 0, "lost": 0.0}
        deadline = max(start, ready + datetime.timedelta(seconds=self.knobs.max_wait))
        kills = not self.cronpolicy and not self.no_kills
        for index, run in enumerate(self.running):
            if run is None or run.end <= start:
                continue
            if self.cronpolicy and (self.exempt[index] or (
                    kind == CODE and not self.affected[index])):
                continue        # left running (pinned to its release)
            model = self.fleet.instances[index].model
            elapsed = (start - run.start).total_seconds()
            if not kills and model.interruptible is True:
                run = run._replace(end=start, outcome="stopped", lost=elapsed)
                ended["stopped"] += 1
            elif self.cronpolicy and model.interruptible == "safe-points":
                steps = math.floor(elapsed / model.safe_every) + 1
                safe = run.start + datetime.timedelta(seconds=steps * model.safe_every)
                if safe < run.natural_end:
                    run = run._replace(end=safe, outcome="interrupted", lost=0.0)
                    ended["interrupted"] += 1
            elif kills and run.natural_end > deadline:
                ended["killed"] += 1
                ended["killed_unsafe"] += model.interruptible is not True
                run = run._replace(end=deadline, outcome="killed",
                                   lost=(deadline - run.start).total_seconds())
            ended["lost"] += run.lost
            self.running[index] = run
            quiet = max(quiet, run.end)
        return quiet, ended

    def _best_slot(self, ready, at, kind=FULL):
        """The best start in [ready, ready + tolerance], as `deploy slot`
        run at ``at`` would rank it (runs in flight then end long before)."""
        [(start, _)] = self.planner(ready, at, kind).best_slots(
            self.knobs.duration, within=self.knobs.tolerance, step=self.knobs.step, count=1,
            earliest=ready, exact=False)
        return start

    def planner(self, ready, at, kind=FULL):
        """The planner `deploy slot` would use at ``at`` for a rollout ready
        at ``ready`` (of a code-only one: over the jobs it stops)."""
        knobs = self.knobs
        # One job for the instances that run alike on several hosts (its copies).
        alike = {}
        for index, instance in enumerate(self.fleet.instances):
            if kind == CODE and not self.affected[index]:
                continue
            key = (instance.name, tuple(instance.schedule.fields), instance.schedule.tz)
            alike.setdefault(key, []).append(index)
        until = ready + datetime.timedelta(seconds=knobs.tolerance + knobs.duration + 3600)
        # The windows that can decide a start the planner weighs: not over
        # by ``at``, and not beginning past what any job's estimate can
        # reach from until (the others leave every verdict as it is).
        reach = datetime.timedelta(seconds=max(
            [instance.model.p95 for instance in self.fleet.instances]
            + [max(runtimes, default=0.0) for runtimes in self.history.values()])
            + self.margin + 60)
        windows = [window for window in self.windows
                   if window.ends_at > at and window.starts_at <= until + reach]
        jobs = []
        for indexes in alike.values():
            instance = self.fleet.instances[indexes[0]]
            history = self.history.get(instance.name, [])
            inputs = Inputs(at, None, DeployState(False), self.fleet.policies,
                            self._windows_met(windows, ready, instance, history),
                            history[::-1][:HISTORY_RUNS])
            # (The planner's own estimate of it: the same facts and history.)
            jobs.append(planning.Job(instance.name, instance.host, instance.schedule,
                                     instance.model.p95, inputs,
                                     needs=tuple(instance.model.needs), copies=len(indexes),
                                     period=self.fleet.periods[indexes[0]],
                                     estimate=None if self.ruled[indexes[0]]
                                     else self._own_estimate(indexes[0], at)))
        return planning.Planner(jobs, [], self.settings, at, until, since=ready,
                                starts=self.fleet.starts_of)

    def _windows_met(self, windows, ready, instance, history):
        """Of ``windows``, those a start of ``instance`` the planner weighs
        can meet: not over by the earliest it weighs, as far before
        ``ready`` as its estimate (at most its history's longest run or
        what it declares), the margin and a minute.  The planner runs a
        day ahead (--announce), when the windows of the day's rollouts
        (some 15) are all announced; matching each start with each of those
        over long before it decides nothing.  With policy rows, all of them
        (a row may declare a longer runtime)."""
        if self.fleet.policies:
            return windows
        earliest = ready - datetime.timedelta(
            seconds=max([instance.model.p95] + history) + self.margin + 60)
        return [window for window in windows if window.ends_at > earliest]

    def _own_estimate(self, index, moment):
        """policy.runtime_estimate of ``index`` at ``moment``, from its own
        facts (not by name, as _allowed keeps them).  Of an instance no row
        matches it reads only its name's history and its facts: kept until
        that history changes (the overdue counts and d's planner ask for
        every instance, a hundred times a play)."""
        name = self.names[index]
        known = None if self.ruled[index] else self.own_estimates.setdefault(name, {})
        estimate = known.get(index) if known is not None else None
        if estimate is None:
            estimate = policy.runtime_estimate(
                Inputs(moment, None, None, self.fleet.policies, [],
                       self.history.get(name, [])[::-1][:HISTORY_RUNS]),
                self.facts[index], self.settings)
            if known is not None:
                known[index] = estimate
        return estimate

    def _count_overdue(self, moment):
        """Instances overdue by schedule at ``moment`` (planning.overdue_by_schedule)."""
        count = 0
        for index, instance in enumerate(self.fleet.instances):
            self._settle(index, moment)
            if self.last_success[index] is None:
                continue            # never succeeded yet in the simulation: not counted
            late, _ = planning.overdue_by_schedule(self.fleet.known[index],
                                                   self.last_success[index],
                                                   self._own_estimate(index, moment).seconds,
                                                   self.knobs.grace, moment)
            count += late
        self.overdue += count
        self.overdue_checks += 1
        return count

    def finish(self):
        self.advance(self.fleet.end)
        for index, run in enumerate(self.running):
            if run is not None:
                self._close(index, run)


def rollout_times(begin, end, count, seed, knobs):
    """``count`` ready times at random, in order, between ``begin`` (after
    a lead and an hour) and ``end`` (before a deploy and an hour), each at
    least a lead and a deploy after the one before; ValueError when they
    cannot fit."""
    spacing = knobs.lead + knobs.duration
    first = knobs.lead + 3600.0
    room = (end - begin).total_seconds() - first - knobs.duration - 3600.0 \
        - spacing * max(0, count - 1)
    if count and room < 0:
        raise ValueError("%d rollouts %gs apart do not fit in %g days" % (
            count, spacing, (end - begin).total_seconds() / 86400))
    generator = random.Random("%s:rollouts" % seed)
    offsets = sorted(generator.random() * room for _ in range(count))
    return [begin + datetime.timedelta(seconds=first + offset + index * spacing)
            for index, offset in enumerate(offsets)]


def overdue_horizon(knobs):
    """How long after each ready time the jobs left overdue are counted: an
    hour after the latest a deploy awaited for --max-wait would end, had
    its start been moved by the whole --tolerance.  The same moment under
    every strategy, so no strategy's own stall moves (or drops) its count."""
    return knobs.tolerance + knobs.max_wait + knobs.duration + 3600.0


def rollout_kinds(count, share, seed):
    """The kind of each of ``count`` rollouts: round(share * count) of them,
    at random places (from the seed alone), code-only; the rest full."""
    code = round(share * count)
    generator = random.Random("%s:kinds" % seed)
    chosen = set(generator.sample(range(count), code)) if code else set()
    return [CODE if position in chosen else FULL for position in range(count)]


def simulate(fleet, strategy, readies, knobs, settings, kinds=None, restart=()):
    """The state of ``fleet`` played through the rollouts ready at ``readies``
    (in order; ``kinds`` their kinds, all full unless told; a code-only one
    restarts the services ``restart``) under ``strategy``: one rollout at a
    time (one ready before the last deploy ended waits for it, and is not
    played if that wait reaches the end of the play); for cronpolicy, each
    announced ``knobs.announce`` ahead, but not before the play begins
    (the warm-up knows no rollout)."""
    kinds = list(kinds) if kinds is not None else [FULL] * len(readies)
    state = _Strategy(fleet, strategy, knobs, settings, restart)
    horizon = datetime.timedelta(seconds=overdue_horizon(knobs))
    state.checks = [(ready + horizon, position) for position, ready in enumerate(readies)
                    if ready + horizon < fleet.end]
    announce = datetime.timedelta(seconds=knobs.announce)
    announced = {}
    for position, planned in enumerate(readies):
        ready = planned
        if state.outcomes and ready < state.outcomes[-1].deploy_end:
            ready = state.outcomes[-1].deploy_end
        if ready >= fleet.end:
            state.not_played = len(readies) - position
            break
        if state.cronpolicy:
            # Announce, in order, every rollout whose announcement falls before
            # this one begins (they may be closer together than the lead).
            for later in range(position, len(readies)):
                if later in announced:
                    continue
                moment = ready if later == position else readies[later]
                at = max(fleet.begin, moment - announce)
                if at > ready or moment >= fleet.end:
                    break
                at = max(at, state.decided_until)   # no start is decided twice
                state.advance(at)
                announced[later] = state.announce(later, moment, at, kinds[later])
            windows = announced.get(position, [])
            if windows and windows[0].starts_at < ready:
                # The deploy before ran late: this one's windows move with it.
                moved = [window._replace(starts_at=ready, ends_at=ready + datetime.timedelta(
                    seconds=knobs.duration)) for window in windows]
                for window in windows:
                    if window in state.windows:
                        state.windows.remove(window)
                for window in moved:
                    state._add_window(window)
                announced[position] = moved
        state.rollout(position, planned, ready, announced.get(position, []), kinds[position])
    state.finish()
    return state


def _cursor(state):
    """The earliest time the simulation has not yet decided a start at."""
    moments = [state.fleet.starts[index][position]
               for index, position in enumerate(state.next)
               if position < len(state.fleet.starts[index])]
    return min(moments) if moments else state.fleet.end


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _figures(outcomes, scheduled, skipped_by_frequency):
    """The figures of some rollouts of one strategy (one kind, or all)."""
    stalls = [outcome.stall for outcome in outcomes]
    queued = [outcome.queued for outcome in outcomes]
    waits = [outcome.stall - outcome.queued for outcome in outcomes]
    skipped = sum(outcome.skipped or 0 for outcome in outcomes)
    return {
        "rollouts": len(outcomes),
        "stall_seconds": {"p50": percentile(stalls, 0.5), "p95": percentile(stalls, 0.95),
                          "max": max(stalls) if stalls else None},
        "queued_seconds": {"p50": percentile(queued, 0.5), "p95": percentile(queued, 0.95),
                           "max": max(queued) if queued else None},
        "wait_seconds": {"p50": percentile(waits, 0.5), "p95": percentile(waits, 0.95),
                         "max": max(waits) if waits else None},
        "queued": sum(1 for value in queued if value),
        "moved_seconds": {"p50": percentile([o.moved for o in outcomes], 0.5),
                          "max": max([o.moved for o in outcomes], default=None)},
        "skipped_starts": skipped,
        "skipped_share": round(skipped / scheduled, 6) if scheduled else None,
        "skipped_by_frequency": skipped_by_frequency,
        "interrupted_at_safe_points": sum(outcome.interrupted for outcome in outcomes),
        "stopped_at_once": sum(outcome.stopped for outcome in outcomes),
        "killed": sum(outcome.killed for outcome in outcomes),
        "killed_while_unsafe": sum(outcome.killed_unsafe for outcome in outcomes),
        "job_minutes_lost": round(sum(outcome.lost for outcome in outcomes) / 60.0, 1),
        "left_overdue": sum(outcome.overdue or 0 for outcome in outcomes),
    }


def summary(state):
    """The figures of one strategy (a dict of plain values): of all its
    rollouts, and under "kinds" of each kind's.  A skip counts for the
    rollout that caused it (its window, or the deploy under way); the
    share of skipped starts is of every scheduled start of the play."""
    if state.figures is not None:       # worked out where it was played (runs not sent back)
        return state.figures
    fleet = state.fleet
    by_rollout = [0] * len(state.outcomes)
    by_frequency = {kind: {label: 0 for label, _ in FREQUENCIES} for kind in KINDS}
    rollout_skips = policy.rollout_skips()
    labels = {}         # index -> how often it runs (FREQUENCIES), once asked
    for index, _, code, cause in state.skips:
        if cause is not None and code in rollout_skips and cause < len(by_rollout):
            by_rollout[cause] += 1
            label = labels.get(index)
            if label is None:
                period = fleet.periods[index]
                label = labels[index] = next(label for label, limit in FREQUENCIES
                                             if period <= limit)
            by_frequency[state.outcomes[cause].kind][label] += 1
    state.outcomes = [outcome._replace(skipped=count, overdue=state.overdue_at.get(position, 0))
                      for position, (outcome, count) in enumerate(zip(state.outcomes,
                                                                      by_rollout))]
    everything = {label: sum(by_frequency[kind][label] for kind in KINDS)
                  for label, _ in FREQUENCIES}
    figures = _figures(state.outcomes, fleet.scheduled, everything)
    figures.update({
        "strategy": state.strategy,
        "kinds": {kind: _figures([o for o in state.outcomes if o.kind == kind],
                                 fleet.scheduled, by_frequency[kind]) for kind in KINDS},
        "scheduled_starts": fleet.scheduled,
        "left_overdue": state.overdue,
        "overdue_checks": state.overdue_checks,
        "overdue_horizon_seconds": overdue_horizon(state.knobs),
        "not_played": state.not_played,
        "catch_up_runs": state.catch_up_runs,
        # (A run that began before the play is the one each instance had in
        # flight when the warm-up ended: none begins before it otherwise.)
        "runs": len(state.runs) - sum(run is not None for run in fleet.warm_running),
    })
    return figures


def records(state):
    """One record a rollout (after summary): when it was ready, its kind,
    and what it cost this strategy, so any rollout can be checked by hand."""
    return [{"ready": outcome.ready, "kind": outcome.kind, "start": outcome.start,
             "quiet": outcome.quiet, "deploy_end": outcome.deploy_end,
             "stall_seconds": outcome.stall, "queued_seconds": outcome.queued,
             "moved_seconds": outcome.moved, "killed": outcome.killed,
             "killed_while_unsafe": outcome.killed_unsafe,
             "stopped_at_once": outcome.stopped, "interrupted_at_safe_points": outcome.interrupted,
             "job_minutes_lost": round(outcome.lost / 60.0, 1),
             "skipped_starts": outcome.skipped, "left_overdue": outcome.overdue}
            for outcome in state.outcomes]


def short_duration(seconds):
    """Seconds as people read them: 45s, 28m10s, 1h08m."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return "%ds" % seconds
    if seconds < 3600:
        return "%dm%02ds" % divmod(seconds, 60) if seconds % 60 else "%dm" % (seconds // 60)
    hours, rest = divmod(seconds, 3600)
    return "%dh%02dm" % (hours, rest // 60)
