"""How long the next run will probably take: history first, then declarations."""

import math

from cronpolicy.rows import MAX_SECONDS, to_seconds     # (clamps absurd stored runtimes)
from cronpolicy.shapes import shape

#: A runtime estimate in seconds, and a note of where it came from.
Estimate = shape("Estimate", "seconds source")

#: Used when a script has too little history and declares no runtime: long
#: enough that an unknown job does not start just before a rollout.
DEFAULT_RUNTIME = 30 * 60.0
DEFAULT_QUANTILE = 0.95
DEFAULT_HISTORY_RUNS = 20
DEFAULT_MIN_HISTORY_RUNS = 3

#: How an estimate's source begins when it is the script's own declaration,
#: or the default (nothing declared, too little history).  Each run records
#: its estimate's source: the planners read what scripts declared from it.
SCRIPT_SOURCE = "script's expected_runtime"
DEFAULT_SOURCE = "default"


def is_default(estimate):
    """Whether ``estimate`` is the default: nothing declared, too little history."""
    return estimate.source.startswith(DEFAULT_SOURCE + " (")


def quantile(values, q):
    """Nearest-rank quantile: always one of the observed values, never below
    the q-th fraction of them.  ``values`` must not be empty; 0 < q <= 1."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def estimate_runtime(recent_runtimes, policy_runtime=None, script_runtime=None,
                     q=DEFAULT_QUANTILE, min_runs=DEFAULT_MIN_HISTORY_RUNS,
                     default=DEFAULT_RUNTIME, policy_id=None):
    """How long the next run will probably take.

    ``recent_runtimes`` are the durations (seconds) of the script's last
    succeeded runs, newest first, as many as the caller wants considered.
    With at least ``min_runs`` of them the estimate is their ``q`` quantile;
    otherwise the policy row's ``expected_runtime``, else the script's own,
    else ``default``.
    """
    runtimes = None
    if type(recent_runtimes) in (list, tuple):
        # The common case first: every runtime a float to_seconds leaves as
        # it is, above 0 (the simulator asks some 50000 estimates a play).
        runtimes = [seconds for seconds in recent_runtimes
                    if type(seconds) is float and 0.0 < seconds <= MAX_SECONDS]
        if len(runtimes) != len(recent_runtimes):
            runtimes = None
    if runtimes is None:
        runtimes = [max(0.0, seconds) for seconds in map(to_seconds, recent_runtimes)
                    if seconds is not None]
    policy_runtime, script_runtime = to_seconds(policy_runtime), to_seconds(script_runtime)
    if runtimes and len(runtimes) >= max(1, min_runs):
        return Estimate(quantile(runtimes, q),
                        "p%g of last %d succeeded runs" % (q * 100, len(runtimes)))
    too_few = "%d succeeded run%s" % (len(runtimes), "" if len(runtimes) == 1 else "s")
    if policy_runtime is not None:
        label = "policy #%s" % policy_id if policy_id is not None else "policy"
        return Estimate(float(policy_runtime),
                        "%s expected_runtime (only %s)" % (label, too_few))
    if script_runtime is not None:
        return Estimate(float(script_runtime), "%s (only %s)" % (SCRIPT_SOURCE, too_few))
    return Estimate(float(default), "%s (only %s)" % (DEFAULT_SOURCE, too_few))
