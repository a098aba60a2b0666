"""The decision: should this script start now?

Everything here is a pure function of its arguments: the policy rows, the
deploy state, the standing rollout windows, the runtime estimate and the
current (database) time.  No I/O, no clock reads; the store fetches the
inputs and the script base class acts on the result.  That keeps the rules
testable exhaustively (see tests/test_policy.py).

The rules, checked in this order (the first that applies gives the reason):

1. The most specific matching ``script_policy`` row has ``enabled = false``:
   skip ("disabled").  No matching row means enabled.
2. Unless that row is ``rollout_exempt``:
   a. ``deploy_state.deploy_pending`` is true: skip ("deploy-pending");
   b. a standing window covering this host and script is in progress:
      skip ("in-window");
   c. ``now + estimate + margin`` reaches the start of a standing window that
      covers it: skip ("window-cutoff"), so a 20-minute job does not start
      10 minutes before a rollout while a 1-minute job still does.
3. Otherwise run.

A run already in progress is asked to stop (``stop_reason``) by rules 1,
2a and 2b; the cut-off (2c) only concerns starts.

Patterns (policy ``name``/``host``, window ``script``/``host``) are globs:
``*`` matches any run of characters, ``?`` exactly one, everything else is
literal and case-sensitive.  Precedence among matching policy rows:

* an exact name (no wildcard) beats any name pattern;
* a name pattern with more literal characters beats one with fewer;
* then the same two rules for the host (so a host-specific row beats ``*``);
* on a full tie, a disabling row beats an enabling one, then the lower id.
"""

import collections
import datetime
import math
import re

from cronpolicy.timeutil import format_duration, format_time

#: One ``cronpolicy.script_policy`` row.  ``expected_runtime`` is in seconds.
PolicyRow = collections.namedtuple(
    "PolicyRow",
    "id name host enabled reason expected_runtime rollout_exempt changed_by changed_at"
    " interruptible fleet_single_instance")
PolicyRow.__new__.__defaults__ = (True, "", None, False, "", None, False, None)

#: One standing ``cronpolicy.rollout_window`` row (aware UTC datetimes).
Window = collections.namedtuple("Window", "id starts_at ends_at reason host script")
Window.__new__.__defaults__ = ("", "*", "*")

#: The ``cronpolicy.deploy_state`` row.
DeployState = collections.namedtuple("DeployState", "pending reason changed_by changed_at")
DeployState.__new__.__defaults__ = ("", "", None)

#: A runtime estimate in seconds, and a human-readable note of where it came from.
Estimate = collections.namedtuple("Estimate", "seconds source")

#: The outcome.  ``run`` is a bool; ``code`` one of RUN, DISABLED, DEPLOY_PENDING,
#: IN_WINDOW, WINDOW_CUTOFF; ``policy`` the deciding row (or None); ``window``
#: the window involved (or None).
Decision = collections.namedtuple("Decision", "run code reason estimate policy window")

RUN = "run"
DISABLED = "disabled"
DEPLOY_PENDING = "deploy-pending"
IN_WINDOW = "in-window"
WINDOW_CUTOFF = "window-cutoff"

#: Used when a script has too little history and declares no runtime: long
#: enough that an unknown job does not start just before a rollout.
DEFAULT_RUNTIME = 30 * 60.0
DEFAULT_MARGIN = 2 * 60.0
DEFAULT_QUANTILE = 0.95
DEFAULT_HISTORY_RUNS = 20
DEFAULT_MIN_HISTORY_RUNS = 3

_WILDCARDS = frozenset("*?")
_compiled_globs = {}


def is_pattern(text):
    """True when ``text`` contains a wildcard."""
    return any(char in _WILDCARDS for char in text)


def glob_matches(pattern, value):
    """Whether ``value`` matches the glob ``pattern`` (``*`` and ``?`` only)."""
    if not is_pattern(pattern):
        return pattern == value
    compiled = _compiled_globs.get(pattern)
    if compiled is None:
        regex = "".join(
            ".*" if char == "*" else "." if char == "?" else re.escape(char)
            for char in pattern)
        compiled = _compiled_globs[pattern] = re.compile(regex + r"\Z", re.DOTALL)
    return compiled.match(value) is not None


def pattern_specificity(pattern):
    """Sort key: higher is more specific.  Exact beats any pattern."""
    return (not is_pattern(pattern), sum(1 for char in pattern if char not in _WILDCARDS))


def _precedence(row):
    return (pattern_specificity(row.name), pattern_specificity(row.host),
            not row.enabled, -row.id)


def matching_policies(rows, name, host):
    """The rows that apply to ``name`` on ``host``, most specific first."""
    matching = [row for row in rows
                if glob_matches(row.name, name) and glob_matches(row.host, host)]
    matching.sort(key=_precedence, reverse=True)
    return matching


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
    runtimes = [float(value) for value in recent_runtimes if value is not None]
    if runtimes and len(runtimes) >= max(1, min_runs):
        return Estimate(quantile(runtimes, q),
                        "p%g of last %d succeeded runs" % (q * 100, len(runtimes)))
    too_few = "%d succeeded run%s" % (len(runtimes), "" if len(runtimes) == 1 else "s")
    if policy_runtime is not None:
        label = "policy #%s" % policy_id if policy_id is not None else "policy"
        return Estimate(float(policy_runtime),
                        "%s expected_runtime (only %s)" % (label, too_few))
    if script_runtime is not None:
        return Estimate(float(script_runtime),
                        "script's expected_runtime (only %s)" % too_few)
    return Estimate(float(default), "default (only %s)" % too_few)


def policy_runtime(matching):
    """expected_runtime and row id of the most specific matching row that sets one."""
    for row in matching:
        if row.expected_runtime is not None:
            return row.expected_runtime, row.id
    return None, None


def _quoted(reason):
    return (": %r" % reason) if reason else ""


def window_covers(window, name, host):
    return glob_matches(window.script, name) and glob_matches(window.host, host)


def _standing_rule(matching, deploy, covering, now):
    """Rules 1, 2a and 2b (everything but the cut-off): (code, reason, window) or None.

    These are the rules that also stop a run already in progress.
    """
    winner = matching[0] if matching else None
    if winner is not None and not winner.enabled:
        return (DISABLED, "disabled by policy #%d (name=%r, host=%r)%s"
                % (winner.id, winner.name, winner.host, _quoted(winner.reason)), None)
    if winner is not None and winner.rollout_exempt:
        return None
    if deploy is None:
        return (DEPLOY_PENDING, "deploy_state row is missing; treating it as deploy pending", None)
    if deploy.pending:
        since = " since %s" % format_time(deploy.changed_at) if deploy.changed_at else ""
        by = " by %s" % deploy.changed_by if deploy.changed_by else ""
        return (DEPLOY_PENDING, "deploy pending%s%s%s" % (since, by, _quoted(deploy.reason)), None)
    for window in covering:
        if window.starts_at <= now:
            return (IN_WINDOW, "inside rollout window #%d (%s to %s)%s"
                    % (window.id, format_time(window.starts_at), format_time(window.ends_at),
                       _quoted(window.reason)), window)
    return None


def _covering_windows(windows, name, host, now):
    return sorted((window for window in windows
                   if window.ends_at > now and window_covers(window, name, host)),
                  key=lambda window: (window.starts_at, window.id))


def decide(name, host, now, policies, deploy, windows, estimate,
           margin=DEFAULT_MARGIN):
    """Decide whether ``name`` may start on ``host`` at ``now``.

    ``policies``: every PolicyRow (non-matching ones are ignored);
    ``deploy``: the DeployState, or None when its row is missing (treated as
    pending, the safe reading); ``windows``: Window rows that are not
    cancelled (past ones are ignored); ``estimate``: an Estimate;
    ``margin``: seconds of slack added to the estimate before a window.
    """
    matching = matching_policies(policies, name, host)
    winner = matching[0] if matching else None
    covering = _covering_windows(windows, name, host, now)
    standing = _standing_rule(matching, deploy, covering, now)
    if standing is not None:
        code, reason, window = standing
        return Decision(False, code, reason, estimate, winner, window)
    if winner is not None and winner.rollout_exempt:
        return Decision(
            True, RUN,
            "policy #%d (name=%r, host=%r) enables it and exempts it from rollouts"
            % (winner.id, winner.name, winner.host),
            estimate, winner, None)
    if covering:
        window = covering[0]
        reach = now + datetime.timedelta(seconds=estimate.seconds + margin)
        if reach >= window.starts_at:
            return Decision(
                False, WINDOW_CUTOFF,
                "rollout window #%d starts at %s, in %s; estimated runtime %s (%s) "
                "+ margin %s would reach it%s"
                % (window.id, format_time(window.starts_at),
                   format_duration((window.starts_at - now).total_seconds()),
                   format_duration(estimate.seconds), estimate.source,
                   format_duration(margin), _quoted(window.reason)),
                estimate, winner, window)
        return Decision(
            True, RUN,
            "next rollout window #%d starts at %s; estimated runtime %s (%s) + margin %s "
            "ends before it" % (window.id, format_time(window.starts_at),
                                format_duration(estimate.seconds), estimate.source,
                                format_duration(margin)),
            estimate, winner, None)
    return Decision(True, RUN,
                    "enabled, no deploy pending, no rollout window ahead",
                    estimate, winner, None)


def stop_reason(name, host, now, policies, deploy, windows):
    """Why a run of ``name`` already in progress on ``host`` should stop now, or None.

    The rules of ``decide`` without the cut-off (a running job is past it):
    its policy disabled it, a deploy is pending, or a covering window has
    begun; a rollout-exempt row exempts it from the last two.
    """
    standing = _standing_rule(matching_policies(policies, name, host), deploy,
                              _covering_windows(windows, name, host, now), now)
    return standing[1] if standing is not None else None


def next_window_start(name, host, now, windows):
    """When the next window covering ``name`` on ``host`` begins (after ``now``), or None."""
    starts = [window.starts_at for window in _covering_windows(windows, name, host, now)
              if window.starts_at > now]
    return min(starts) if starts else None


def run_options(policies, name, host, fleet_single_instance=False):
    """(interruptible, fleet_single_instance) for a run, from its policy rows.

    ``interruptible`` is the most specific matching row's; a row's
    ``fleet_single_instance`` overrides the script's own (the argument) when
    it is not NULL, the most specific such row winning.
    """
    matching = matching_policies(policies, name, host)
    interruptible = bool(matching and matching[0].interruptible)
    for row in matching:
        if row.fleet_single_instance is not None:
            return interruptible, bool(row.fleet_single_instance)
    return interruptible, bool(fleet_single_instance)


def estimate_from_inputs(inputs, name, host, script_runtime=None,
                         q=DEFAULT_QUANTILE, min_runs=DEFAULT_MIN_HISTORY_RUNS,
                         default_runtime=DEFAULT_RUNTIME):
    """The runtime estimate for ``name`` on ``host`` from a store.DecisionInputs."""
    runtime, policy_id = policy_runtime(matching_policies(inputs.policies, name, host))
    return estimate_runtime(inputs.recent_runtimes, policy_runtime=runtime,
                            script_runtime=script_runtime, q=q, min_runs=min_runs,
                            default=default_runtime, policy_id=policy_id)


def decide_from_inputs(inputs, name, host, script_runtime=None,
                       q=DEFAULT_QUANTILE, min_runs=DEFAULT_MIN_HISTORY_RUNS,
                       default_runtime=DEFAULT_RUNTIME, margin=DEFAULT_MARGIN):
    """Estimate the runtime from ``inputs`` (a store.DecisionInputs) and decide.

    The one place that combines the estimate and the decision, shared by the
    script base class and ``cronpolicy check``.
    """
    estimate = estimate_from_inputs(inputs, name, host, script_runtime, q, min_runs,
                                    default_runtime)
    return decide(name, host, inputs.now, inputs.policies, inputs.deploy, inputs.windows,
                  estimate, margin=margin)
