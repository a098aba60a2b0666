"""Planning a rollout around the jobs' schedules: pure functions.

``deploy plan``, ``deploy slot`` and the simulator ask the same questions of
a rollout (a window from ``starts_at`` for ``duration`` over the scripts and
hosts its patterns cover), and answer them with the real rules
(``policy.decide``) at each scheduled start, not with a copy of them (asked
once for all the starts of a job that the windows do not tell apart,
``policy.moment_key``: a day of a job every minute is a few questions):

* which scheduled starts it skips: those the rules skip with the rollout
  announced as a window and would run without it (the cut-off before it
  included), each with the job's next start after it;
* which runs are still going when it begins, and until when (runs in
  flight now, by their estimates);
* how much it costs (``cost``): the time spent waiting for runs that cannot
  be interrupted, then the weight of the starts it skips (a skipped daily
  run weighs a day, a five-minute one five minutes: the staleness each
  leaves), and the jobs it would starve (skipped by the last
  STARVING_AFTER rollouts in a row already);

``Planner.best_slots`` ranks the times to start within a horizon by that
cost.  A slot that makes nothing wait always ranks above one that waits.
"""

import bisect
import datetime
import math

from cronpolicy import policy
from cronpolicy.estimate import is_default
from cronpolicy.matching import glob_matches, matching_policies
from cronpolicy.rows import Window
from cronpolicy.shapes import shape

#: A job a rollout may meet: ``name`` on ``host`` runs by ``schedule``
#: (a cronpolicy.schedule.Schedule, or None); ``expected_runtime``: what
#: the script declares (seconds, or None); ``inputs``: what a start of it
#: decides with (rows.Inputs, with its own history); ``starving``: how many
#: rollouts in a row already skipped it; ``needs``: the services it
#: declares it needs (a policy row may say otherwise).  How long it runs is
#: the gate's estimate from these (Planner.estimate).
#: ``copies``: how many hosts run it alike (the simulator plans one for all);
#: ``period``: seconds between its starts when the caller knows (else the
#: schedule's period now); ``estimate``: its Estimate, when the caller
#: has worked it out from these (a fleet's is asked by several planners).
Job = shape("Job", "name host schedule expected_runtime inputs starving needs copies period "
            "estimate", defaults=(0, (), 1, None, None))

#: A run in flight now: ``expected_end`` by its estimate; ``interruptible``:
#: a rollout need not wait for it (a policy says so, or it says it is safe
#: now); ``needs``: the services it ran with.
Flight = shape("Flight", "name host started_at expected_end interruptible run_id needs",
               defaults=(None, ()))

#: A planned rollout, of one ``service`` (None: of everything its patterns cover).
Rollout = shape("Rollout", "starts_at duration host script service", defaults=("*", "*", None))

#: Skipped by a rollout: the job, the start it skips, the rule's code, and
#: the job's next start after the rollout.
SkippedStart = shape("SkippedStart", "name host at code next_start")

#: Rollouts in a row that skipped a job before it counts as starving.
STARVING_AFTER = 3
#: A skipped start weighs the time until the job's next chance, at most this.
MAX_SKIP_WEIGHT = 86400.0
#: What starving a job once more weighs (a week: always worth avoiding).
STARVING_WEIGHT = 7 * 86400.0
#: The id the planned rollout has among the windows (no real window has it).
PLANNED_WINDOW_ID = 0
#: How soon a run already past its expected end is taken to end (seconds).
OVERRUN = 60.0
#: The longest rollout weighed (deploy plan, deploy slot, simulate): one
#: the fleet waits for longer than a day is not a rollout, and weighing it
#: costs as long as it is (every start of every job in it).
MAX_ROLLOUT_DURATION = 86400.0
#: The longest runtime a plan believes.  Longer is not a job but a typo
#: ('100 years' for '100 minutes' in a policy row or a declaration,
#: history imported with the wrong year, a run's estimate written by
#: hand): planning around it would skip every start of its job from now
#: on and ask about each.  The tooling names such a job (or run in flight)
#: in a warning and plans without it (``runtime_problem``); a job of days
#: is planned as the gate decides it.
LONGEST_BELIEVED_RUNTIME = 30 * 86400.0


def runtime_problem(seconds):
    """Why a plan cannot believe a runtime of ``seconds``, or None."""
    if seconds is None or seconds <= LONGEST_BELIEVED_RUNTIME:
        return None
    from cronpolicy.timeutil import format_duration
    return "its runtime estimate, %s, is longer than the %s a plan believes" % (
        format_duration(seconds), format_duration(LONGEST_BELIEVED_RUNTIME))


def covers(rollout, name, host, needs=()):
    """Whether the rollout covers ``name`` on ``host`` (needing ``needs``)."""
    return glob_matches(rollout.script, name) and glob_matches(rollout.host, host) and (
        rollout.service is None or rollout.service in needs)


def rollout_window(rollout):
    """The rollout as the window the rules see."""
    try:
        ends_at = rollout.starts_at + datetime.timedelta(seconds=rollout.duration)
    except OverflowError:
        ends_at = datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)
    return Window(id=PLANNED_WINDOW_ID, starts_at=rollout.starts_at, ends_at=ends_at,
                  reason="the planned rollout", host=rollout.host, script=rollout.script,
                  service=rollout.service)


def ends_at(rollout):
    return rollout_window(rollout).ends_at


def _key(job):
    return job.name, job.host


def _window_order(window):
    """The order the rules meet windows in (matching.covering_windows)."""
    return window.starts_at, window.id


def job_facts(job):
    """What ``job``'s starts tell the rules about the script."""
    return policy.ScriptFacts(job.name, job.host, expected_runtime=job.expected_runtime,
                              needs=tuple(job.needs or ()))


def job_estimate(job, settings):
    """The Estimate a start of ``job`` decides with, as the gate computes it."""
    return job.estimate or policy.runtime_estimate(job.inputs, job_facts(job), settings)


def alike_key(job, needs=None):
    """What the rules read of ``job`` but its host: two jobs with one key
    (a crontab line every host of a role has) are decided alike at every
    moment, by any rollout that covers both (deploy slot weighs them once;
    a plan works out one's skipped starts for all).  ``needs``: its
    policy.effective_needs, when the caller has them."""
    from cronpolicy.matching import window_covers
    if needs is None:
        needs = policy.effective_needs(job.inputs, job_facts(job))
    return (job.name, job.schedule, job.expected_runtime, job.starving, tuple(job.needs),
            tuple(row.id for row in matching_policies(job.inputs.policies, job.name, job.host)),
            tuple(window.id for window in job.inputs.windows
                  if window_covers(window, job.name, job.host, needs)))


class Planner:
    """The questions above for ``jobs`` ([Job]) and ``flights`` ([Flight])
    as of ``now``, for rollouts ending by ``until``: each job's starts are
    worked out once, and its verdicts once for all the starts that the
    windows (the rollout's among them) do not tell apart."""

    def __init__(self, jobs, flights, settings, now, until, since=None, starts=None):
        """``since``: the earliest rollout start asked about (default now);
        ``starts(schedule, begin, end)``: a schedule's starts in [begin,
        end), when the caller has them (default: Schedule.starts_between,
        once per distinct schedule)."""
        self.jobs = list(jobs)
        self.flights = list(flights)
        self.settings = settings
        self.now = now
        self.margin = getattr(settings, "cutoff_margin", policy.DEFAULT_MARGIN)
        self._made_facts = {}
        self._alike_keys = {}
        # Each job's inputs with only the policy rows that match it: all
        # the rules read of them, found once rather than at each start.
        narrowed = [job._replace(inputs=job.inputs._replace(policies=matching_policies(
            job.inputs.policies, job.name, job.host))) for job in self.jobs]
        self._estimates = {_key(job): job_estimate(job, settings) for job in narrowed}
        self._needs = {_key(job): policy.effective_needs(job.inputs, self.facts(job))
                       for job in narrowed}
        self._starts = self._starts_from(max(now, since or now), until, starts or _starts_between)
        self._verdicts = {}     # (name, host, policy.moment_key): the verdict
        self._weights = {}
        self._periods = {}
        self._covered = {}
        #: What each job's starts decide with, but the moment and the rollout.
        self._prepared = {_key(job): (self.facts(job), self._estimates[_key(job)], job.inputs,
                                      list(job.inputs.windows), job.inputs.policies)
                          for job in narrowed}
        #: The standing windows that cover each job, in the rules' order, and
        #: its estimate and the margin: with the moment, all a verdict reads
        #: of the windows (policy.moment_key).
        self._covering = {_key(job): sorted(
            (window for window in job.inputs.windows
             if covers(window, job.name, job.host, self._needs[_key(job)])),
            key=_window_order) for job in narrowed}
        self._reach = {key: datetime.timedelta(seconds=estimate.seconds + self.margin)
                       for key, estimate in self._estimates.items()}
        self._with = (None, None, None)     # the last job and window asked, and their windows

    def _starts_from(self, first, until, starts):
        """{(name, host): its scheduled starts} up to ``until``, each job's
        from the earliest whose run could reach a rollout beginning at
        ``first`` or later (its own estimate and the margin before it; the
        longest estimate in the fleet made every job look back that far),
        and never from before now: no question asks about those.  Each
        schedule's starts are worked out once, for all its jobs."""
        begins = {}
        for job in self.jobs:
            if job.schedule is not None:
                begin = max(self.now, first - datetime.timedelta(
                    seconds=self.estimate(job) + self.margin + 60))
                schedule = (tuple(job.schedule.fields), job.schedule.tz)
                earlier = begins.get(schedule, (begin, None))[0]
                begins[schedule] = (min(begin, earlier), job.schedule)
        known = {schedule: starts(found, begin, until)
                 for schedule, (begin, found) in begins.items()}
        return {_key(job): [] if job.schedule is None else
                known[(tuple(job.schedule.fields), job.schedule.tz)] for job in self.jobs}

    def _alike_key(self, job):
        """alike_key(job), worked out once."""
        key = _key(job)
        found = self._alike_keys.get(key)
        if found is None:
            found = self._alike_keys[key] = alike_key(job, self._needs[key])
        return found

    def facts(self, job):
        """The ScriptFacts of ``job`` (made once)."""
        key = _key(job)
        if key not in self._made_facts:
            self._made_facts[key] = job_facts(job)
        return self._made_facts[key]

    def covers(self, rollout, job):
        """Whether ``rollout`` covers ``job`` (asked once per kind of rollout)."""
        key = (rollout.script, rollout.host, rollout.service, job.name, job.host)
        found = self._covered.get(key)
        if found is None:
            found = self._covered[key] = covers(rollout, job.name, job.host,
                                                self._needs[_key(job)])
        return found

    def estimate(self, job):
        """How long a run of ``job`` takes, as the gate estimates it (seconds)."""
        return self._estimates[_key(job)].seconds

    def default_runtime(self):
        """The names of the scripts planned with the default runtime: too
        little history, and nothing declared (sorted)."""
        return sorted({job.name for job in self.jobs if is_default(self._estimates[_key(job)])})

    def _decide(self, job, moment, window=None):
        """The verdict of ``job``'s start at ``moment`` (with the rollout's
        ``window`` among the others, if given)."""
        facts, estimate, inputs, windows, matching = self._prepared[job.name, job.host]
        inputs = inputs._replace(now=moment, windows=windows + [window] if window else windows)
        return policy.decide(inputs, facts, self.settings, estimate, explain=False,
                             matching=matching)

    def _decide_with(self, job, moment, window=None, covering=None, moment_key=None):
        """The verdict of ``job``'s start at ``moment`` (with the rollout's
        ``window``, if given), asked of the rules once for all the starts
        of the job that the windows do not tell apart (policy.moment_key):
        the starts of a day, of many rollouts, decided a few times each.
        ``covering``: _covering_with(job, window), and ``moment_key``: its
        policy.moment_key at ``moment``, when the caller has them."""
        key = (job.name, job.host)
        if moment_key is None:
            if covering is None:
                covering = self._covering_with(job, window)
            moment_key = policy.moment_key(covering, self._reach[key], moment)
        key += moment_key
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = self._decide(job, moment, window)
        return verdict

    def _covering_with(self, job, window=None):
        """The windows that cover ``job``, the rollout's ``window`` among
        them if it does, in the rules' order."""
        key = (job.name, job.host)
        if window is None:
            return self._covering[key]
        if self._with[:2] != (key, window):      # (asked again and again in a row)
            covering = self._covering[key]
            if self.covers(window, job):
                covering = sorted(covering + [window], key=_window_order) if covering \
                    else [window]
            self._with = (key, window, covering)
        return self._with[2]

    def runs_without(self, job, moment):
        """Whether the start of ``job`` at ``moment`` runs, no rollout planned."""
        return self._decide_with(job, moment).run

    def _stretches(self, job, moments, window):
        """[(first, end, verdict without the rollout, verdict with its
        ``window``)]: ``moments`` (sorted starts of ``job``) cut into the
        stretches ``moments[first:end]`` that the windows do not tell
        apart, with or without the rollout (policy.moment_key: the starts
        with one key follow one another), each asked of the rules once, by
        its ends: a day of a job every minute is a few questions."""
        alone, both = self._covering_with(job), self._covering_with(job, window)
        reach = self._reach[(job.name, job.host)]

        def key(index):
            return (policy.moment_key(alone, reach, moments[index]),
                    policy.moment_key(both, reach, moments[index]))
        # Each stretch carries the keys of its ends when known: a half
        # keeps its parent's first or last key (worked out once, not again
        # at each level of the split).
        found, pending = [], [(0, len(moments), None, None)] if moments else []
        while pending:
            first, end, first_key, last_key = pending.pop()
            if first_key is None:
                first_key = key(first)      # (what _decide_with reads of the moment, too)
            if end - first > 1 and last_key is None:
                last_key = key(end - 1)
            if end - first == 1 or first_key == last_key:
                found.append((first, end,
                              self._decide_with(job, moments[first], None, alone, first_key[0]),
                              self._decide_with(job, moments[first], window, both,
                                                first_key[1])))
            else:
                middle = (first + end) // 2
                pending += [(middle, end, None, last_key), (first, middle, first_key, None)]
        return found

    def _skipped(self, job, moments, window):
        """(first, end, code) of each stretch of the ``moments`` the
        rollout's ``window`` skips and that would run without it."""
        block = policy.window_block(window)
        for first, end, alone, verdict in self._stretches(job, moments, window):
            if alone.run and not verdict.run and verdict.block == block:
                yield first, end, verdict.code

    def _skips(self, job, moments, window):
        """[(moment, code)] of the ``moments`` the rollout's ``window`` skips
        and that would run without it."""
        return [(moment, code) for first, end, code in self._skipped(job, moments, window)
                for moment in moments[first:end]]

    def _skip_count(self, job, moments, window):
        """len(_skips(job, moments, window)), without the list."""
        return sum(end - first for first, end, _ in self._skipped(job, moments, window))

    def starts(self, job, start, end):
        """``job``'s scheduled starts in [start, end)."""
        moments = self._starts[_key(job)]
        return moments[bisect.bisect_left(moments, start):bisect.bisect_left(moments, end)]

    def skipped_starts(self, job, rollout, window=None):
        """[SkippedStart] of ``job``'s starts from now that the rollout skips
        (and that would run without it).  ``window``: the rollout's, when the
        caller has made it."""
        if job.schedule is None or not self.covers(rollout, job):
            return []
        window = window or rollout_window(rollout)
        skips = self._skips(job, self.starts(job, self._earliest(job, rollout), window.ends_at),
                            window)
        if not skips:
            return []
        after = self._next_start(job, window.ends_at - datetime.timedelta(seconds=1))
        return [SkippedStart(job.name, job.host, moment, code, after) for moment, code in skips]

    def _next_start(self, job, moment):
        """``job``'s first start after ``moment``: from the starts worked out
        when they reach past it."""
        moments = self._starts[_key(job)]
        position = bisect.bisect_right(moments, moment)
        if position < len(moments):
            return moments[position]
        return job.schedule.next_after(moment)

    def in_flight(self, rollout):
        """The runs in flight now that the rollout would meet at its start:
        [(Flight, seconds it would wait for it)], longest wait first.  A run
        already past its expected end may end any moment: a minute from now."""
        met = []
        for flight in self.flights:
            if not covers(rollout, flight.name, flight.host, flight.needs):
                continue
            end = max(flight.expected_end, self.now + datetime.timedelta(seconds=OVERRUN))
            if end > rollout.starts_at:
                wait = 0.0 if flight.interruptible else \
                    (end - rollout.starts_at).total_seconds()
                met.append((flight, wait))
        return sorted(met, key=lambda pair: -pair[1])

    def skip_weight(self, job):
        """What skipping one start of ``job`` costs: the time until its next
        chance (its period), at most MAX_SKIP_WEIGHT."""
        weight = self._weights.get(_key(job))
        if weight is None:
            weight = self._weights[_key(job)] = min(self.period(job), MAX_SKIP_WEIGHT)
        return weight

    def period(self, job):
        """Seconds between ``job``'s starts: as the caller knows it, else its
        schedule's now, worked out once for all the jobs that run by it
        (each host's copy of a crontab line is a Schedule of its own)."""
        if job.period is not None or job.schedule is None:
            return job.period or 0.0
        key = (tuple(job.schedule.fields), job.schedule.tz)
        if key not in self._periods:
            self._periods[key] = job.schedule.period(self.now)
        return self._periods[key]

    def cost(self, rollout, exact=True):
        """The Cost of ``rollout`` starting at its ``starts_at``.  ``exact``
        False: only its ``wait`` and ``weight`` (what ranking needs; its
        ``skipped`` list is left empty), counted by ``skip_count``."""
        wait, waits = self._wait(rollout)
        window = rollout_window(rollout)
        skipped, weight, starved = [], 0.0, []
        alike = {}      # alike_key and whether the rollout covers: the skipped starts
        for job in self.jobs:
            if exact:
                key = (self._alike_key(job), self.covers(rollout, job), self.covers(window, job))
                first = alike.get(key)
                if first is None:
                    found = alike[key] = self.skipped_starts(job, rollout, window)
                else:
                    found = [start._replace(host=job.host) for start in first]
                skipped.extend(found)
                count = len(found)
            else:
                count = self.skip_count(job, rollout, window)
            if count:
                weight += self._weight(job, count)
                if job.starving + 1 >= STARVING_AFTER:
                    starved.append((job.name, job.host))
        return Cost(wait, weight,
                    sorted(skipped, key=lambda start: (start.at, start.name, start.host)),
                    waits, sorted(starved))

    def _wait(self, rollout):
        """(seconds, [(Flight, seconds)]): how long the rollout waits for
        the runs in flight that cannot be interrupted, and for which."""
        waits = [pair for pair in self.in_flight(rollout) if pair[1] > 0]
        return max((wait for _, wait in waits), default=0.0), waits

    def _weight(self, job, count):
        """What skipping ``count`` starts of ``job`` weighs: their staleness,
        and a week more when it starves the job."""
        weight = self.skip_weight(job) * count * job.copies
        if job.starving + 1 >= STARVING_AFTER:
            weight += STARVING_WEIGHT * job.copies
        return weight

    def _earliest(self, job, rollout):
        """The earliest start of ``job`` that ``rollout`` can skip: its run
        (its estimate, the margin and a minute) would reach it; none before now."""
        return max(self.now, rollout.starts_at - datetime.timedelta(
            seconds=self.estimate(job) + self.margin + 60))

    def skip_count(self, job, rollout, window=None):
        """How many of ``job``'s starts the rollout skips (skipped_starts,
        counted)."""
        if job.schedule is None or not self.covers(rollout, job):
            return 0
        window = window or rollout_window(rollout)
        return self._skip_count(job, self.starts(job, self._earliest(job, rollout),
                                                 window.ends_at), window)

    def rank_keys(self, template, moments):
        """[(rank_key, moment)] of a rollout like ``template`` starting at
        each of ``moments`` (sorted): what cost() finds of each, worked out
        job by job, for the candidates its starts can meet (from the one a
        start's run would reach to the one it falls in) rather than every
        job asked of every candidate, most of which none of its starts
        meets.  (Weights add up as in cost, job by job: whole seconds.)"""
        windows = [rollout_window(template._replace(starts_at=moment)) for moment in moments]
        ends = [window.ends_at for window in windows]
        weights = [0.0] * len(moments)
        for job in self.jobs:
            if job.schedule is None or not self.covers(template, job):
                continue
            lead = datetime.timedelta(seconds=self.estimate(job) + self.margin + 60)
            starts = self.starts(job, moments[0] - lead, ends[-1])      # (none before now)
            if self.period(job) * 4 < lead.total_seconds() + template.duration:
                counts = self._counts_by_candidate(job, starts, moments, windows, lead)
            else:
                counts = self._counts_by_start(job, starts, moments, windows, lead)
            for index, count in counts.items():
                if count:
                    weights[index] += self._weight(job, count)
        return [(rank_key(Cost(self._wait(template._replace(starts_at=moment))[0], weight,
                               [], [], [])), moment)
                for moment, weight in zip(moments, weights)]

    def _counts_by_candidate(self, job, starts, moments, windows, lead):
        """{candidate: how many of ``starts`` it skips}, candidate by
        candidate: for a job whose starts are many in each (every minute),
        each counted by its stretches."""
        ends = [window.ends_at for window in windows]
        return {index: self._skip_count(job, starts[
            bisect.bisect_left(starts, moments[index] - lead):
            bisect.bisect_left(starts, ends[index])], windows[index])
            for index in _met(starts, moments, ends, lead)}

    def _counts_by_start(self, job, starts, moments, windows, lead):
        """The same, start by start: for a job with few starts in each, each
        start that would run without a rollout asked of the few candidates
        it meets (whose window ends after it, and whose cut-off it reaches)."""
        ends = [window.ends_at for window in windows]
        block, counts = policy.window_block(windows[0]), {}      # (every planned rollout's)
        for start in starts:
            if not self.runs_without(job, start):
                continue        # skipped anyway (disabled, another window)
            for index in range(bisect.bisect_right(ends, start),
                               bisect.bisect_right(moments, start + lead)):
                verdict = self._decide_with(job, start, windows[index])
                if not verdict.run and verdict.block == block:
                    counts[index] = counts.get(index, 0) + 1
        return counts

    def candidate_starts(self, within, step, template, earliest=None):
        """When a rollout could start: on the marks, whole multiples of
        ``step`` as schedules are (:25:00, not :22:13), from now (or from
        ``earliest``, itself among them: a rollout ready then may start
        then) for ``within`` seconds, and the first mark after each run it
        would wait for is expected to end (so the first time nothing blocks
        is always among them, even just past the horizon)."""
        first = max(self.now, earliest or self.now)
        horizon = first + datetime.timedelta(seconds=within)
        moments = {first} if earliest is not None else set()
        moment = _mark(first, step)
        while moment <= horizon:
            moments.add(moment)
            moment += datetime.timedelta(seconds=step)
        for flight in self.flights:
            if covers(template, flight.name, flight.host, flight.needs) \
                    and not flight.interruptible \
                    and first <= flight.expected_end <= horizon:
                moments.add(_mark(flight.expected_end, step))
        return sorted(moments) or [_mark(first, step)]

    def best_slots(self, duration, within=86400.0, step=300.0, host="*", script="*", count=5,
                   service=None, earliest=None, exact=True):
        """[(start, Cost)]: the ``count`` best times to start a rollout of
        ``duration`` seconds within ``within`` seconds (of now, or of
        ``earliest``), best first (ties: the earlier), no two closer than
        the rollout lasts (or ``step``): each a real alternative.  ``exact``
        False: each Cost as ranked (no list of the starts it skips)."""
        template = Rollout(self.now, duration, host, script, service)
        scored = sorted(self.rank_keys(template, self.candidate_starts(
            within, step, template, earliest)))
        chosen, apart = [], max(step, duration)
        for _, moment in scored:
            if all(abs((moment - other).total_seconds()) >= apart for other in chosen):
                chosen.append(moment)
            if len(chosen) == count:
                break
        return [(moment, self.cost(template._replace(starts_at=moment), exact=exact))
                for moment in chosen]

    def runs_near(self, job, rollout, span):
        """[(start, end)] of ``job``'s scheduled runs that would happen (not
        skipped) within ``span`` seconds before or after the rollout: what a
        slot avoids, and what the timeline draws."""
        window = rollout_window(rollout)
        around = datetime.timedelta(seconds=span)
        runtime = datetime.timedelta(seconds=self.estimate(job))
        moments = self.starts(job, max(self.now, window.starts_at - around),
                              window.ends_at + around)
        return [(moment, moment + runtime)
                for first, end, _, verdict in self._stretches(job, moments, window)
                if verdict.run for moment in moments[first:end]]


def _met(starts, moments, ends, lead):
    """The indexes of the candidate ``moments`` (rollouts ending at
    ``ends``) that one of ``starts`` meets: a start meets those whose
    window ends after it and whose cut-off (``lead`` before) it reaches."""
    met, last = [], -1
    for start in starts:
        for index in range(max(last + 1, bisect.bisect_right(ends, start)),
                           bisect.bisect_right(moments, start + lead)):
            met.append(index)
            last = index
    return met


def _mark(moment, step):
    """The first whole multiple of ``step`` seconds (since 2000) at or after ``moment``."""
    epoch = datetime.datetime(2000, 1, 1, tzinfo=moment.tzinfo)
    return epoch + datetime.timedelta(
        seconds=math.ceil((moment - epoch).total_seconds() / step) * step)


def _starts_between(schedule, begin, end):
    return schedule.starts_between(begin, end)


def rank_key(found):
    """Lower is better: waiting first, then weight."""
    return (round(found.wait, 3), round(found.weight, 3))


#: A rollout start's cost: ``wait`` seconds spent waiting for runs that
#: cannot be interrupted; ``weight``: of the starts it skips and the jobs it
#: starves; the ``skipped`` starts, the ``waits`` [(Flight, seconds)] and
#: the ``starved`` jobs (name, host).
Cost = shape("Cost", "wait weight skipped waits starved")


def overdue_by_schedule(schedule, last_success, estimate, grace, now, known_since=None):
    """(overdue, the scheduled start it missed): the newest start whose run
    should have succeeded by now (start + estimate + grace <= now), and
    whether the last success (a start time, or None) is older than it (by
    more than a minute: cron and the database disagree that much).  A start
    before ``known_since`` (when the schedule became known: registered,
    written in a policy, first declared) was nobody's to miss."""
    due = scheduled_due(schedule, estimate, grace, now)
    return missed_since_known(due, last_success, known_since), due


def scheduled_due(schedule, estimate, grace, now):
    """The newest start of ``schedule`` whose run should have succeeded by
    ``now`` (start + estimate + grace <= now), or None: overdue_by_schedule's."""
    moment = now - datetime.timedelta(seconds=estimate + grace)
    return schedule.previous_before(moment + datetime.timedelta(seconds=1))


def missed_since_known(due, last_success, known_since=None):
    """overdue_by_schedule's verdict of the start ``due`` (scheduled_due's)."""
    if due is None or (known_since is not None and due < known_since):
        return False
    return missed(due, last_success)


def missed(due, last_success):
    """Whether the run scheduled at ``due`` has not succeeded: the last
    success (a start time, or None) is older than it by more than a minute
    (cron and the database disagree that much)."""
    return last_success is None or last_success < due - datetime.timedelta(minutes=1)
