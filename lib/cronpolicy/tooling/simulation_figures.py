"""The simulator's figures: a strategy's play summed up (summary, a dict
of plain values), its rollouts one record each, and the durations as
people read them.

Apart from the play because it only reads what a play left, after it
(in the worker that played it, or in the parent), and the report and the
picture read it too.
"""

import collections
import math

from cronpolicy import policy
from cronpolicy.tooling.simulation_fleet import FREQUENCIES, KINDS, overdue_horizon


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
    rollout_skips, played = frozenset(policy.rollout_skips()), len(by_rollout)
    # The skips counted by (rollout, instance) first (some 100000 a
    # strategy, of a few thousand pairs), then added up.
    # (A list first: Counter counts a list in C, a generator one item at a time.)
    counted = collections.Counter([
        (cause, index) for index, _, code, cause in state.skips
        if cause is not None and code in rollout_skips and cause < played])
    labels = {}         # index -> how often it runs (FREQUENCIES), once asked
    for (cause, index), count in counted.items():
        by_rollout[cause] += count
        label = labels.get(index)
        if label is None:
            period = fleet.periods[index]
            label = labels[index] = next(label for label, limit in FREQUENCIES
                                         if period <= limit)
        by_frequency[state.outcomes[cause].kind][label] += count
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
