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

Modules: simulation_fleet (the words, the jobs and their runtimes, the
Fleet), simulation_starts (each start made or skipped, the runs, the
overdue counts), simulation_strategy (each rollout under a strategy),
simulation_figures (summary, records).  This one plays them (simulate) and
keeps their names the simulator's callers use.
"""

import datetime
import random

# (Re-exported: the names the simulate command, the picture and the tests
# read as simulation.X.)
from cronpolicy.tooling.simulation_fleet import (  # noqa: F401
    CODE, FREQUENCIES, FULL, HISTORY_RUNS, KINDS, LONGEST_RUN, MAX_SPREAD, MAX_STARTS,
    MAX_WARM_UP, NO_KILLS, STRATEGIES, STRATEGY_LETTERS, WARM_STARTS, Z95, Fleet, Instance,
    Knobs, Model, Run, TooLarge, default_warm_up, draw, draws, model_problem, overdue_horizon)
from cronpolicy.tooling.simulation_strategy import RolloutOutcome, _Strategy  # noqa: F401
from cronpolicy.tooling.simulation_figures import (  # noqa: F401
    _figures, percentile, records, short_duration, summary)


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
