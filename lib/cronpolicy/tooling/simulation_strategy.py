"""The simulator's rollouts under a strategy: announcing them (windows,
and d's slot from the planner), the deploy pending, the runs in flight
stopped, awaited or killed, and what each rollout cost (RolloutOutcome).

Apart from the starts (simulation_starts) because it acts once a
rollout, not once a start: it sets what the starts read (the deploy
pending, the windows) and then deals with the runs they left in flight.
"""

import datetime
import math

from cronpolicy import policy
from cronpolicy.tooling import planning
from cronpolicy.rows import DeployState, Inputs, Window
from cronpolicy.rows import Rollout as RolloutRow
from cronpolicy.shapes import shape
from cronpolicy.tooling.simulation_fleet import CODE, FULL, HISTORY_RUNS
from cronpolicy.tooling.simulation_starts import _Starts

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



class _Strategy(_Starts):
    """The state of one simulation under one strategy."""

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

    def finish(self):
        self.advance(self.fleet.end)
        for index, run in enumerate(self.running):
            if run is not None:
                self._close(index, run)
