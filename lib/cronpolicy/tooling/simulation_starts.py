"""The simulator's starts: each scheduled start of a play made or skipped
as the gate would (its lock, the rules asked with the deploy pending and
the windows announced), the runs ended into each job's history, the
catch-ups after a deploy, and the jobs left overdue counted.

Apart from the rollouts (simulation_strategy) because it is the hot loop
of a play (some 200000 starts a strategy and seed) and reads a rollout
only as the state _Strategy leaves for it: the deploy pending, the windows.
"""

import bisect
import datetime
import random

from cronpolicy import policy
from cronpolicy.estimate import DEFAULT_RUNTIME
from cronpolicy.tooling import planning
from cronpolicy.matching import matching_policies
from cronpolicy.rows import FROM_DATABASE, DeployState, Inputs
from cronpolicy.tooling.simulation_fleet import CODE, HISTORY_RUNS, NO_KILLS, Run, _new_tuple, draw


class _Starts:
    """The state of one simulation under one strategy, and its starts
    (_Strategy, in simulation_strategy, adds the rollouts)."""

    def __init__(self, fleet, strategy, knobs, settings, restart=()):
        self.fleet = fleet
        self.strategy = strategy
        self.knobs = knobs
        self.settings = settings
        self.cronpolicy = strategy in ("cronpolicy", "cronpolicy-slot")
        self.no_kills = strategy in NO_KILLS
        count = len(fleet.instances)
        self.next = [0] * count                 # index of each instance's next start
        # (and its moment, or None past the last: what _advance and _cursor
        # compare, rather than a bisect of each instance at each advance)
        self.next_moment = [starts[0] if starts else None for starts in fleet.starts]
        self.names = [instance.name for instance in fleet.instances]
        self.running = list(fleet.warm_running)     # its run in flight (a Run), if any
        self.history = {name: list(runtimes)    # name -> durations, newest last
                        for name, runtimes in fleet.history.items()}
        # name -> the longest of its history (kept with it, for _reach and
        # _count_overdue: a max of 20 at each of their calls otherwise)
        self.longest = {name: max(runtimes) for name, runtimes in self.history.items()
                        if runtimes}
        self.estimates = {}                     # name -> its Estimate now (dropped on change)
        self.own_estimates = {}                 # name -> {index: its Estimate}, as well
        self.pending_verdicts = {}              # index -> its verdict in the deploy pending
        self.pending_verdicts_of = None         # (the pending deploy they are of)
        self.reaches = {}                       # name -> how far ahead a window skips it
        self.last_success = list(fleet.warm_last_success)   # start of its last success
        self.margin = getattr(settings, "cutoff_margin", policy.DEFAULT_MARGIN)
        # (the margin and a second as timedeltas, made once, not at each _starts)
        self.margin_delta = datetime.timedelta(seconds=self.margin)
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
        # Instances whose estimate is at least 0 and at most the longer of
        # their longest run and what they declare, whatever their history
        # (no row matches them: the quantile of their runtimes, above 0, or
        # what they declare), with a grace at least 0: the bounds
        # _count_overdue reads before their estimate hold for them.
        default = getattr(settings, "default_runtime", DEFAULT_RUNTIME)
        self.overdue_bounded = [
            not ruled and self.knobs.grace >= 0 and default >= 0
            and facts.expected_runtime is not None and facts.expected_runtime >= 0
            for ruled, facts in zip(self.ruled, self.facts)]

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
        next_moment, instances, find = self.next_moment, fleet.instances, bisect.bisect_left
        for index, moment in enumerate(next_moment):
            if moment is not None and moment < until:       # (most have nothing to make)
                starts = fleet.starts[index]
                position = self.next[index]
                stop = find(starts, until, position)
                self._starts(index, instances[index], position, stop)
                self.next[index] = stop
                next_moment[index] = starts[stop] if stop < len(starts) else None

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
            # (far_until lowered by each run that ends: first window - its
            # length - margin - a second, the run's length taken last)
            far_base = self.windows[0].starts_at - self.margin_delta - _SECOND
            far_until = self.windows[0].starts_at - self._reach(instance) - _SECOND
        switched_off = not self.cronpolicy and plain is not None    # a, b: no rules asked
        # (c, d) The skip every start of it gets in the deploy pending, once
        # its verdict there is kept (_pending_verdict): (code, cause, the
        # block of its catch-up ticket or None), as _allowed records it.
        pending_skip = None
        estimates, name = self.estimates, instance.name
        own_estimates, reaches, last_success = self.own_estimates, self.reaches, \
            self.last_success
        runs_append, history, longest_of = self.runs.append, None, self.longest
        # (A run that ends drops the name's kept estimates: once, when next
        # read or when the starts are made, not at each of them; its reach,
        # when it changes the longest run of the history.)
        stale = False
        locked, deploy_pending, skip = policy.LOCKED, policy.DEPLOY_PENDING, skips.append
        current = self.current          # (the rollout under way: set between advances)
        run = running[index]
        for position in range(position, stop):
            moment = starts[position]
            if run is not None:
                if run[3] > moment:         # (run.end) still running: the lock skips it
                    skip((index, moment, locked, None))
                    continue
                # (_close, inline: a strategy's play ends some 130000 runs here)
                running[index] = None
                runs_append(run)
                if run[4] == "succeeded":                       # run.outcome
                    if history is None:
                        history = self.history.get(name)
                        if history is None:
                            history = self.history[name] = []
                    # (_add_runtime, inline)
                    runtime = (run[3] - run[1]).total_seconds()  # run.end - run.start
                    history.append(runtime)
                    top = longest_of.get(name)
                    if len(history) > HISTORY_RUNS:
                        if len(history) == HISTORY_RUNS + 1:     # (one in, one out)
                            dropped = history.pop(0)
                        else:
                            dropped = max(history[:-HISTORY_RUNS])
                            del history[:-HISTORY_RUNS]
                        if dropped >= top:
                            longest_of[name] = max(history)
                            reaches.pop(name, None)
                        elif runtime > top:
                            longest_of[name] = runtime
                            reaches.pop(name, None)
                    elif top is None or runtime > top:
                        longest_of[name] = runtime
                        reaches.pop(name, None)
                    stale = True
                    last_success[index] = run[1]
                if near:
                    far = far_base - (run[3] - run[1])
                    if far < far_until:
                        far_until = far
                run = near_from = None
            if plain is None:
                if stale:
                    estimates.pop(name, None)
                    own_estimates.pop(name, None)
                    stale = False
                self._start(index, instance, position, moment)
                run = running[index]
                continue
            if pending is not None and pending[0] <= moment < pending[1]:
                if switched_off:    # crontabs disabled, or the switch off: no start
                    skip((index, moment, deploy_pending, current))
                    continue
                if plain != "always":
                    if stale:
                        estimates.pop(name, None)
                        own_estimates.pop(name, None)
                        stale = False
                    # (_allowed asks the estimate again, by name, once a run
                    # ended since; then the kept verdict is the skip)
                    if pending_skip is not None and name in estimates:
                        code, cause, ticket = pending_skip
                        skips.append((index, moment, code, cause))
                        if ticket is not None:
                            self.tickets[index] = (moment, ticket)
                        continue
                    self._start(index, instance, position, moment)
                    run = running[index]
                    if pending_skip is None and run is None:
                        verdict = self.pending_verdicts.get(index)
                        if verdict is not None:
                            pending_skip = (verdict.code, self._cause(verdict),
                                            verdict.block if policy.catches_up(verdict)
                                            else None)
                    continue
            if near and moment >= far_until:
                if stale:
                    estimates.pop(name, None)
                    own_estimates.pop(name, None)
                    stale = False
                if near_from is None:
                    near_from = self.windows[0].starts_at - self._reach(instance)
                if near_from <= moment:
                    self._start(index, instance, position, moment)
                    run = running[index]
                    continue
            end = ends[position]
            run = running[index] = _new_tuple(Run, (index, moment, end, end, "succeeded", 0.0))
            last_start[index] = moment
        if stale:
            estimates.pop(name, None)
            own_estimates.pop(name, None)

    def _reach(self, instance):
        """How far ahead a window can skip a start of ``instance``: no
        estimate of it is longer than its history's longest run or, with too
        little history, the runtime it declares; then the margin."""
        reach = self.reaches.get(instance.name)
        if reach is None:
            longest = instance.model.p95
            top = self.longest.get(instance.name)
            if top is not None:
                longest = max(longest, top)
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
            self.skips.append((index, moment, verdict.code, self._cause(verdict)))
            if policy.catches_up(verdict):      # a later skip rewrites the ticket
                self.tickets[index] = (moment, verdict.block)
        return verdict.run

    def _cause(self, verdict):
        """The position of the rollout a skip's ``verdict`` is for: its
        window's, or the one under way."""
        kind, _, number = (verdict.block or "").partition(":")
        return self.window_rollout.get(int(number)) if kind == "window" \
            and number.isdigit() else self.current

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
        # (A run's fields by position: run.end, run.start...; _starts does
        # the same, inline, at the end of most of some 130000 runs a
        # strategy and seed: a change here goes there too.)
        self.running[index] = None
        self.runs.append(run)
        if run[4] == "succeeded":                       # run.outcome
            name = self.names[index]
            self._add_runtime(name, (run[3] - run[1]).total_seconds())  # run.end - run.start
            self.estimates.pop(name, None)
            self.own_estimates.pop(name, None)
            self.last_success[index] = run[1]

    def _add_runtime(self, name, runtime):
        """A succeeded run of ``runtime`` seconds into ``name``'s history (its
        last HISTORY_RUNS), its longest kept, its reach dropped when that
        changes."""
        history = self.history.get(name)
        if history is None:
            history = self.history[name] = []
        history.append(runtime)
        top = self.longest.get(name)
        if len(history) > HISTORY_RUNS:
            dropped = max(history[:-HISTORY_RUNS])
            del history[:-HISTORY_RUNS]
            if dropped >= top:
                self.longest[name] = max(history)
                self.reaches.pop(name, None)
            elif runtime > top:
                self.longest[name] = runtime
                self.reaches.pop(name, None)
        elif top is None or runtime > top:
            self.longest[name] = runtime
            self.reaches.pop(name, None)

    # The estimates, and the jobs left overdue ----------------------------------------------

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
        """Instances overdue by schedule at ``moment`` (planning.overdue_by_schedule).

        An instance whose last success is no more than a minute before the
        last start of its schedule before ``moment`` and a second is not
        overdue whatever its estimate: the start overdue_by_schedule weighs
        (``moment`` less the estimate and the grace, both at least 0, and a
        second) is that one or an earlier one, and a success so recent is
        not older than it by more than a minute (missed).  Most are such,
        and their estimate (worked out again after each run that ends) is
        not asked for them.  Likewise one whose last success is more than a
        minute before the start weighed with its longest possible estimate
        (its longest run in the history, or what it declares: the estimate
        is one or the other) is overdue whatever its estimate: the start
        weighed with its real one is that one or a later one."""
        count, grace, known = 0, self.knobs.grace, self.fleet.known
        running, last_success, names = self.running, self.last_success, self.names
        ruled, own_estimates = self.ruled, self.own_estimates
        bounded, latest_of, earliest_of, longest_of = self.overdue_bounded, {}, {}, self.longest
        after, minute, timedelta = moment + _SECOND, _MINUTE, datetime.timedelta
        for index in range(len(known)):
            run = running[index]
            if run is not None and run[3] <= moment:     # (_settle: run.end)
                self._close(index, run)
            succeeded = last_success[index]
            if succeeded is None:
                continue            # never succeeded yet in the simulation: not counted
            if bounded[index]:
                # (each bound a minute before its start, once per schedule and
                # longest estimate a check: the copies of a job on several
                # hosts share both)
                schedule = known[index]
                key = id(schedule.starts)   # (one list per schedule: the Fleet's, shared)
                recent = latest_of.get(key, latest_of)
                if recent is latest_of:
                    latest = schedule.previous_before(after)
                    recent = latest_of[key] = None if latest is None else latest - minute
                if recent is None or succeeded >= recent:
                    continue        # not overdue, whatever its estimate
                longest = self.facts[index].expected_runtime
                top = longest_of.get(names[index])
                if top is not None:
                    longest = max(longest, top)
                early = earliest_of.get((key, longest), earliest_of)
                if early is earliest_of:
                    earliest = schedule.previous_before(after - timedelta(0, longest + grace))
                    early = earliest_of[key, longest] = None if earliest is None \
                        else earliest - minute
                if early is not None and succeeded < early:
                    count += 1      # overdue, whatever its estimate
                    continue
            # (_own_estimate's, when it keeps one: looked up here first)
            kept = None if ruled[index] else own_estimates.get(names[index])
            estimate = kept.get(index) if kept else None
            if estimate is None:
                estimate = self._own_estimate(index, moment)
            late, _ = planning.overdue_by_schedule(known[index], succeeded,
                                                   estimate.seconds, grace, moment)
            count += late
        self.overdue += count
        self.overdue_checks += 1
        return count


def _cursor(state):
    """The earliest time the simulation has not yet decided a start at."""
    moments = [moment for moment in state.next_moment if moment is not None]
    return min(moments) if moments else state.fleet.end


_SECOND = datetime.timedelta(seconds=1)
_MINUTE = datetime.timedelta(minutes=1)
