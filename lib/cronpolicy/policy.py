"""The decision: may this script start now, and should a running one stop?

Everything here is a pure function of its arguments: the ``rows.Inputs``
(policy rows, deploy state, standing windows, recent runtimes, the database
clock), the script's ``ScriptFacts`` and the settings' knobs.  No I/O, no
clock reads.  The gate, the watcher, the offline path, ``cronpolicy check``,
``deploy plan``, ``deploy wait``, ``overdue`` and ``why`` all ask this module;
none of them re-derives a rule.

The rules are functions in one ordered registry, ``RULES``.  A rule looks at
a ``Situation`` (the inputs narrowed to one script on one host) and returns
None, or a ``Skip`` with one of its codes and a reason.  The first skip
wins.  With ``--ignore-policy`` a skip by an *overridable* rule is noted and
the run goes ahead (recorded as forced) unless a rule that cannot be
overridden skips it.  Rules marked ``stops_running`` also stop a run already
in progress (the watcher asks them); the others concern starts only.

A rule is one home: its ``Rule`` entry carries all that is said of it
anywhere, and nothing keeps a list of rules or codes beside ``RULES``:

- ``check``: the function of a Situation;
- ``codes``: the decision codes its skips carry (a code is one rule's:
  ``why`` finds the rule by the code a run recorded; codes());
- ``stops_running``, ``overridable``: as above;
- ``rollout_skip``: a rollout caused its skips, so with catch_up = once
  the start is caught up, rollouts in a row count it and the simulator
  charges it to its rollout (rollout_skips(); the statements that count
  such skips get the codes as a parameter, never a literal list);
- ``describe``: the words for a block its skips name ("rollout #12"), or
  None for a block not its own: describe_block asks each rule in turn
  (what the log says the start waits for, catch-up's lines);
- ``cause``: where ``why`` finds the change behind a decision of it: a
  causes.Recorded (what the run recorded) to a causes.Cause (an audit
  lookup), or None.

A new rule that reads only what the rules read already is one function and
one entry; the gate, the watcher, describe_block, ``why``, catch-up and the
counts of rollout skips pick it up.  A rule that brings a column (or a
table) also carries its data to the rules, in this order:

1. a schema patch, schema/NNNN-*.sql and schema/sqlite/NNNN-*.sql, and
   schema.SCHEMA_VERSION (a new table: its grants in schema/roles.sql, its
   audit trigger, tooling/tables.py, explain.DOCUMENT_KINDS so ``why`` and
   ``audit`` read its row documents, and output.change_summary's keys for
   what they say of a new row of it);
2. rows.py: the row's shape and kinds (a table: a field of ``Inputs``);
3. each store's one round trip: store/postgresql.sql and postgresql.py,
   store/sqlite.sql and sqlite.py, and store/memory.py's;
4. cache.py: what a host keeps for when the database is away, and its
   fingerprint (an older cache without it must still read);
5. only if the run records something new of the decision (as ``block``
   did): script_run's column in the patch, the stores' record statements
   and gate.py's record.

tests/test_schema_parity.py holds the two backends' schemas to each other
and tests/test_policy.py holds every entry to having each facet.

In order:

1. ``database-unreachable``: no database and no fresh cached policy, and
   on_database_error says skip.
2. ``disabled``: the most specific matching script_policy row has
   enabled = false (no matching row means enabled).
3. Unless that row is rollout_exempt:
   a. ``deploy-pending``: a full rollout is open (cronpolicy.rollout; or,
      from a store that knows no rollouts, deploy_state.deploy_pending, or
      its row missing);
   a'. ``service-pending``: a rollout of a service the script needs is open
      (or a service_deploy row says so); a script that needs none follows
      only full rollouts and windows of no service;
   b. ``in-window``: a covering rollout window is in progress (a window of
      one service covers only the scripts that need it);
   c. ``window-cutoff``: now + estimate + margin reaches the start of a
      covering window, so a 20-minute job does not start 10 minutes before a
      rollout while a 1-minute job still does (starts only).
4. ``locked``: the script has a fleet-wide concurrency limit and the
   database, which alone can enforce it, is out of reach (not overridable).

A start that passes them runs with the code ``run``, or ``catch-up`` when it
is the one run that catches up a start a rollout skipped (``cronpolicy
catch-up`` starts it: ``ScriptFacts.catch_up_of`` names the block).  A
skip by a rollout or a window names its ``block`` ("rollout:<id>",
"window:<id>"; from the switches alone, "deploy:<when it was set>" or
"service:<name>:<since>"): one rollout, however many starts it skipped.

Besides run or skip, the ``Verdict`` carries what the run needs: whether it
may be interrupted at any moment and its fleet-wide concurrency limit.
"""

import datetime

from cronpolicy.estimate import (
    DEFAULT_MIN_HISTORY_RUNS, DEFAULT_QUANTILE, DEFAULT_RUNTIME, Estimate, estimate_runtime,
    is_default)
from cronpolicy.matching import (
    covering_windows, first_setting, matching_policies, parse_needs)
from cronpolicy.rows import FROM_DATABASE, UNAVAILABLE
from cronpolicy.shapes import shape
from cronpolicy.timeutil import format_duration, format_time

# The decision codes (stored in script_run.decision and script_run.stop_decision;
# metrics label skips with them).  The closed set is codes(): those of the
# rules and those below that no rule gives.
RUN = "run"
DATABASE_UNREACHABLE = "database-unreachable"
DISABLED = "disabled"
DEPLOY_PENDING = "deploy-pending"
IN_WINDOW = "in-window"
WINDOW_CUTOFF = "window-cutoff"
LOCKED = "locked"            # another instance holds the host lock or the fleet-wide slots
SIGNAL = "signal"            # a run stopped by SIGTERM/SIGINT (stops only)
LEASE_LOST = "lease-lost"    # a run that could not renew its lease in time (stops only)
CATCH_UP = "catch-up"        # a run that catches up a start a rollout skipped
SERVICE_PENDING = "service-pending"
#: cronpolicy.rollout.kind values.
FULL = "full"
SERVICES = "services"
#: script_policy.catch_up values.
CATCH_UP_ONCE = "once"
CATCH_UP_NONE = "none"

DEFAULT_MARGIN = 2 * 60.0

#: What the script declares about itself.  ``max_concurrent``: its own
#: fleet-wide limit (None: none); ``on_database_error``: "run" or "skip";
#: ``schedule``, ``schedule_tz``: when it says it runs (recorded with the
#: run); ``catch_up_of``: the block this start catches up, if it is a
#: catch-up (``cronpolicy catch-up`` started it); ``needs``: the services
#: it declares it depends on (a tuple; a policy row's needs win);
#: ``release``: the release directory it executes, if pinned.
ScriptFacts = shape(
    "ScriptFacts", "name host expected_runtime max_concurrent ignore_policy on_database_error "
                   "schedule schedule_tz catch_up_of needs release",
    defaults=(None, None, False, "skip", None, None, None, (), None))

#: A rule's finding: why the script should not start (or should stop), and
#: for a rollout, which one (its block).  ``reason``: the line for people,
#: or a function of no arguments that says it, when saying it costs more
#: than finding it (planners ask hundreds of thousands of starts and read
#: only the code; see said()).
Skip = shape("Skip", "code reason window_id block", defaults=(None, None))


def said(skip, explain=True):
    """The reason of ``skip`` as text ("" when not ``explain``ing)."""
    if not explain:
        return ""
    return skip.reason() if callable(skip.reason) else skip.reason

#: One entry of the registry: every facet of a rule (the module's docstring
#: says each); none has a default, so an entry cannot leave one out.
Rule = shape("Rule", "check codes stops_running overridable rollout_skip describe cause")

#: The outcome.  ``run``: start it; ``code``: from codes(); ``reason``: one
#: line for people; ``estimate``: the Estimate used; ``policy_id``: the most
#: specific matching script_policy row (or None); ``window_id``: the window
#: involved (or None); ``interruptible``: a policy row says it may be stopped
#: at any moment; ``max_concurrent``: its fleet-wide limit (None: none);
#: ``forced``: it runs only because of --ignore-policy (``code`` and
#: ``reason`` then say what it overrode); ``block``: the rollout behind a
#: skip (or the one a catch-up catches up); ``catch_up``: what the policy
#: says of catching up (CATCH_UP_ONCE, CATCH_UP_NONE or None); ``needs``:
#: the services the script needs (the policy's say, else its own).
Verdict = shape(
    "Verdict", "run code reason estimate policy_id window_id interruptible max_concurrent forced "
               "block catch_up needs", defaults=(None, None, ()))


class Situation:
    """The inputs narrowed to one script on one host: what the rules read."""

    __slots__ = ("inputs", "facts", "name", "host", "now", "deploy", "matching", "winner",
                 "exempt", "needs", "windows", "estimate", "margin", "cache_max_age", "limit",
                 "catch_up")

    def __init__(self, inputs, facts, estimate=None, margin=DEFAULT_MARGIN,
                 cache_max_age=None, matching=None):
        self.inputs = inputs
        self.facts = facts
        self.name = facts.name
        self.host = facts.host
        self.now = inputs.now
        self.deploy = inputs.deploy
        if matching is None:
            matching = matching_policies(inputs.policies, facts.name, facts.host)
        self.matching = matching
        if matching:
            self.winner = matching[0]
            self.exempt = bool(self.winner.enabled and self.winner.rollout_exempt)
            self.needs = _needs(matching, facts)
            self.limit = concurrency_limit(matching, facts.max_concurrent)
            self.catch_up = first_setting(matching, "catch_up")[0]
        else:       # no policy row: what the script says (planners ask this often)
            self.winner, self.exempt, self.catch_up = None, False, None
            self.needs = tuple(getattr(facts, "needs", ()) or ())
            self.limit = facts.max_concurrent
        self.windows = covering_windows(inputs.windows, facts.name, facts.host, inputs.now,
                                        self.needs)
        self.estimate = estimate
        self.margin = margin
        self.cache_max_age = cache_max_age

    def verdict(self, run, code, reason, window_id=None, forced=False, block=None):
        return Verdict(run, code, reason, self.estimate,
                       self.winner.id if self.winner is not None else None, window_id,
                       bool(self.winner is not None and self.winner.interruptible),
                       self.limit, forced, block, self.catch_up, self.needs)


def _quoted(reason):
    return (": %r" % reason) if reason else ""


def nothing(_):
    """The facet of a rule that has nothing to say: no block to describe, no
    change in the audit to find."""
    return None


def _look(table, row_id, moment, where=None):
    """A causes.Cause: look for the newest entry of ``table`` (of row
    ``row_id``) up to ``moment`` that ``where`` accepts.  (Imported here:
    only why asks, and a start need not make the class.)"""
    from cronpolicy.causes import Cause
    return Cause(table, row_id, moment, where)


def _named(block, kind):
    """What ``block`` names after "``kind``:", or None for a block of another kind."""
    found, _, what = (block or "").partition(":")
    return what if found == kind else None


# The rules ------------------------------------------------------------------

def database_unreachable(s):
    if s.inputs.source != UNAVAILABLE or s.facts.on_database_error == "run":
        return None
    return Skip(DATABASE_UNREACHABLE, "database unreachable and no policy cached within %s "
                "(on_database_error = skip)" % format_duration(s.cache_max_age))


def disabled_by_policy(s):
    row = s.winner
    if row is None or row.enabled:
        return None
    return Skip(DISABLED, "disabled by policy #%d (name=%r, host=%r)%s"
                % (row.id, row.name, row.host, _quoted(row.reason)))


def _policy_cause(recorded):
    """The entry that last changed the disabling policy row."""
    if recorded.policy_id is None:
        return None
    return _look("script_policy", recorded.policy_id, recorded.decided_at)


def is_deploy_pending(deploy):
    """Whether the switch says deploy pending; a missing row counts as pending."""
    return deploy is None or bool(deploy.deploy_pending)


def deploy_block(deploy):
    """The block of a deploy pending: "deploy:" and when it was set (to the
    second, as every host reads it), so every skip of one deploy names it."""
    if deploy is None or deploy.changed_at is None:
        return "deploy:unknown"
    return "deploy:" + deploy.changed_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _remembered(function):
    """``function`` of one argument, each answer kept (the simulator asks
    the same few blocks of hundreds of thousands of starts)."""
    answers = {}

    def remembered(argument):
        if argument not in answers:
            if len(answers) > 1000:
                answers.clear()
            answers[argument] = function(argument)
        return answers[argument]
    remembered.__doc__ = function.__doc__
    return remembered


deploy_block = _remembered(deploy_block)


def window_block(window):
    return "window:%d" % window.id


def _window_said(block):
    what = _named(block, "window")
    return None if what is None else "rollout window #%s" % what


def _window_cause(recorded):
    """The entry that created or last moved the window."""
    if recorded.window_id is None:
        return None
    return _look("rollout_window", recorded.window_id, recorded.decided_at)


def rollout_block(rollout):
    """The block of a skip a rollout caused: "rollout:" and its id."""
    return "rollout:%d" % rollout.id


def block_rollout(block):
    """The rollout id a block (rollout_block) names, or None.  (A block is
    any text a run row holds: "rollout:\u00b2" is digits to isdigit but not
    to int, and an id must fit the bigint it is looked up as.)"""
    what = _named(block, "rollout")
    if what is None or not (what.isascii() and what.isdigit()) or len(what) > 18:
        return None
    return int(what)


def _rollout_said(block):
    what = _named(block, "rollout")
    return None if what is None else "rollout #%s" % what


def _inserted(entry):
    return entry["operation"] == "INSERT"


def _rollout_cause(recorded):
    """The rollout's beginning (who, when, why), for a decision naming one."""
    rollout_id = block_rollout(recorded.block)
    if rollout_id is None:
        return None
    return _look("rollout", rollout_id, recorded.ended_at, _inserted)


def rollout_services(rollout):
    """The services a rollout covers (a tuple; none for a full rollout)."""
    return parse_needs(rollout.services) if rollout.kind == SERVICES else ()


def rollout_covers(rollout, needs):
    """Whether ``rollout`` stops a script that needs ``needs`` (not exempt)."""
    return rollout.kind == FULL or any(service in needs for service in
                                       rollout_services(rollout))


def _said_rollout(rollout):
    """" (rollout #12) since T by alice: 'release 4521'", for skip reasons."""
    return " (rollout #%d)%s%s%s" % (
        rollout.id, " since %s" % format_time(rollout.began_at) if rollout.began_at else "",
        " by %s" % rollout.owner if rollout.owner else "", _quoted(rollout.reason))


def deploy_pending(s):
    if s.exempt:
        return None
    for rollout in s.inputs.rollouts:           # the oldest open one first
        if rollout.kind == FULL:
            return Skip(DEPLOY_PENDING, lambda: "deploy pending" + _said_rollout(rollout),
                        block=rollout_block(rollout))
    if not is_deploy_pending(s.deploy):
        return None
    if s.deploy is None:
        return Skip(DEPLOY_PENDING, "deploy_state row is missing; treating it as deploy pending",
                    block=deploy_block(None))
    since = " since %s" % format_time(s.deploy.changed_at) if s.deploy.changed_at else ""
    by = " by %s" % s.deploy.changed_by if s.deploy.changed_by else ""
    return Skip(DEPLOY_PENDING, "deploy pending%s%s%s" % (since, by, _quoted(s.deploy.reason)),
                block=deploy_block(s.deploy))


def _deploy_said(block):
    """"the deploy pending since T" (deploy_block), or a rollout's words."""
    what = _named(block, "deploy")
    if what is None:
        return _rollout_said(block)
    return "the deploy pending" + _since(what)


def _deploy_set(entry):
    return (entry.get("new_row") or {}).get("deploy_pending") in (True, 1)


def _deploy_cause(recorded):
    """The rollout's beginning; from the switch alone, the entry that set it."""
    return _rollout_cause(recorded) or _look("deploy_state", None, recorded.decided_at,
                                             _deploy_set)


def service_block(row):
    """The block of a service deploy: "service:NAME:" and since when."""
    since = row.changed_at.strftime("%Y-%m-%dT%H:%M:%SZ") if row.changed_at else "unknown"
    return "service:%s:%s" % (row.service, since)


def service_pending(s):
    if s.exempt or not s.needs:
        return None
    for rollout in s.inputs.rollouts:           # the oldest open one first
        needed = [service for service in rollout_services(rollout) if service in s.needs]
        if needed:
            return Skip(SERVICE_PENDING, lambda: "deploy of service %s pending%s" % (
                needed[0], _said_rollout(rollout)), block=rollout_block(rollout))
    # From the switch alone (a store that knows no rollouts, an older cache).
    pending = sorted((row for row in s.inputs.services if row.service in s.needs),
                     key=lambda row: (row.changed_at is None, row.changed_at, row.service))
    if not pending:
        return None
    row = pending[0]
    since = " since %s" % format_time(row.changed_at) if row.changed_at else ""
    by = " by %s" % row.changed_by if row.changed_by else ""
    return Skip(SERVICE_PENDING, "deploy of service %s pending%s%s%s" % (
        row.service, since, by, _quoted(row.reason)), block=service_block(row))


def block_service(block):
    """The service a service deploy's block (service_block) names, or None."""
    what = _named(block, "service")
    return what.partition(":")[0] or None if what is not None else None


def _service_said(block):
    """"the deploy of service S pending since T" (service_block), or a rollout's words."""
    what = _named(block, "service")
    if what is None:
        return _rollout_said(block)
    return "the deploy of service %s pending%s" % (
        block_service(block), _since(what.partition(":")[2]))


def _since(when):
    """" since T" of a block's time; nothing when the block holds none (a
    deploy_state row without changed_at: "unknown"; a block a DBA or an
    older version wrote without one), rather than a dangling "since"."""
    if not when or when == "unknown":
        return ""
    return " since %s" % when.replace("T", " ")


def _service_cause(recorded):
    """The rollout's beginning; for a skip by the switch alone, the entry
    that began the service's deploy."""
    service = block_service(recorded.block)
    if block_rollout(recorded.block) is not None or not service or recorded.stopped:
        return _rollout_cause(recorded)
    return _look("service_deploy", None, recorded.decided_at,
                 lambda entry: (entry.get("new_row") or {}).get("service") == service)


def _window_name(window):
    service = getattr(window, "service", None)
    return "rollout window #%d%s" % (window.id, " of service %s" % service if service else "")


def inside_window(s):
    if s.exempt:
        return None
    for window in s.windows:
        if window.starts_at <= s.now:
            return Skip(IN_WINDOW, lambda: "inside %s (%s to %s)%s" % (
                _window_name(window), format_time(window.starts_at),
                format_time(window.ends_at), _quoted(window.reason)), window.id,
                window_block(window))
    return None


def cutoff_at(window_start, estimate_seconds, margin):
    """The last moment a run estimated at ``estimate_seconds`` may start
    before a window beginning at ``window_start``; a start at it is skipped."""
    return window_start - datetime.timedelta(seconds=estimate_seconds + margin)


def window_cutoff(s):
    if s.exempt or s.estimate is None or not s.windows:
        return None
    window = s.windows[0]
    if s.now < cutoff_at(window.starts_at, s.estimate.seconds, s.margin):
        return None
    return Skip(WINDOW_CUTOFF, lambda: "%s starts at %s, in %s; estimated runtime %s "
                "(%s) + margin %s would reach it%s" % (
                    _window_name(window), format_time(window.starts_at),
                    format_duration((window.starts_at - s.now).total_seconds()),
                    format_duration(s.estimate.seconds), s.estimate.source,
                    format_duration(s.margin), _quoted(window.reason)), window.id,
                window_block(window))


def limit_unverifiable(s):
    if s.limit is None or s.inputs.source == FROM_DATABASE:
        return None
    return Skip(LOCKED, "at most %d fleet-wide; that cannot be checked while the database "
                "is unreachable" % s.limit)


#: The registry, in order (the module's docstring says each facet).
RULES = (
    Rule(database_unreachable, (DATABASE_UNREACHABLE,), stops_running=False, overridable=True,
         rollout_skip=False, describe=nothing, cause=nothing),
    Rule(disabled_by_policy, (DISABLED,), stops_running=True, overridable=True,
         rollout_skip=False, describe=nothing, cause=_policy_cause),
    Rule(deploy_pending, (DEPLOY_PENDING,), stops_running=True, overridable=True,
         rollout_skip=True, describe=_deploy_said, cause=_deploy_cause),
    Rule(service_pending, (SERVICE_PENDING,), stops_running=True, overridable=True,
         rollout_skip=True, describe=_service_said, cause=_service_cause),
    Rule(inside_window, (IN_WINDOW,), stops_running=True, overridable=True,
         rollout_skip=True, describe=_window_said, cause=_window_cause),
    Rule(window_cutoff, (WINDOW_CUTOFF,), stops_running=False, overridable=True,
         rollout_skip=True, describe=_window_said, cause=_window_cause),
    Rule(limit_unverifiable, (LOCKED,), stops_running=False, overridable=False,
         rollout_skip=False, describe=nothing, cause=nothing),
)


# What the registry says of all the rules ---------------------------------------------
# (Each reads RULES when asked, so a rule added to it is known everywhere.)

def codes():
    """The closed set of decision codes: RUN, the rules' in their order, and
    those no rule gives (a stop by a signal or a lost lease, a catch-up)."""
    return (RUN,) + tuple(code for rule in RULES for code in rule.codes) + (
        SIGNAL, LEASE_LOST, CATCH_UP)


def rollout_skips():
    """The codes of skips a rollout caused (what catch_up = once catches up)."""
    return tuple(code for rule in RULES if rule.rollout_skip for code in rule.codes)


def rule_of(code):
    """The rule whose skips carry ``code``, or None (run, signal, ...)."""
    for rule in RULES:
        if code in rule.codes:
            return rule
    return None


def describe_block(block):
    """What people are told of a block: the words of the rule that names it
    ("rollout #N", "rollout window #N", "the deploy pending since T", "the
    deploy of service S pending since T"), else "a rollout"."""
    for rule in RULES:
        said = rule.describe(block)
        if said is not None:
            return said
    return "a rollout"


def _run_reason(s):
    if s.inputs.source == UNAVAILABLE:
        return ("database unreachable and no policy cached within %s (on_database_error = run)"
                % format_duration(s.cache_max_age))
    if s.exempt:
        return ("policy #%d (name=%r, host=%r) enables it and exempts it from rollouts"
                % (s.winner.id, s.winner.name, s.winner.host))
    if s.windows:
        window = s.windows[0]
        # (The estimate itself is the verdict's: the start's log line gives it.)
        return ("next rollout window #%d starts at %s; the estimated run plus margin %s "
                "ends before it" % (window.id, format_time(window.starts_at),
                                    format_duration(s.margin)))
    return "enabled, no deploy pending, no rollout window ahead"


# Asking the rules ---------------------------------------------------------------

def runtime_estimate(inputs, facts, settings):
    """The Estimate a start of ``facts.name`` on ``facts.host`` decides with."""
    if inputs.source == UNAVAILABLE:
        return Estimate(float(facts.expected_runtime or settings.default_runtime),
                        "no history (database unreachable)")
    runtime, policy_id = first_setting(
        matching_policies(inputs.policies, facts.name, facts.host), "expected_runtime")
    return estimate_runtime(inputs.recent_runtimes, policy_runtime=runtime,
                            script_runtime=facts.expected_runtime,
                            q=getattr(settings, "estimate_quantile", DEFAULT_QUANTILE),
                            min_runs=getattr(settings, "estimate_min_runs",
                                             DEFAULT_MIN_HISTORY_RUNS),
                            default=getattr(settings, "default_runtime", DEFAULT_RUNTIME),
                            policy_id=policy_id)


def history_estimate(inputs, settings):
    """The Estimate every start of ``inputs``' script decides with, on any
    host, whatever its policy rows and its declaration say, when its history
    alone decides it (enough succeeded runs: runtime_estimate then reads
    neither), else None.  A planner asks the estimate of a script on each of
    hundreds of hosts: only those with too little history need their rows."""
    if inputs.source == UNAVAILABLE:
        return None
    found = estimate_runtime(inputs.recent_runtimes,
                             q=getattr(settings, "estimate_quantile", DEFAULT_QUANTILE),
                             min_runs=getattr(settings, "estimate_min_runs",
                                              DEFAULT_MIN_HISTORY_RUNS),
                             default=getattr(settings, "default_runtime", DEFAULT_RUNTIME))
    return None if is_default(found) else found


def decide(inputs, facts, settings, estimate=None, explain=True, matching=None):
    """The Verdict for a start of ``facts.name`` on ``facts.host`` at ``inputs.now``.

    ``settings`` gives the knobs (cutoff_margin, estimate_quantile,
    estimate_min_runs, default_runtime, cache_max_age); a config.Settings.
    ``estimate``: runtime_estimate(inputs, facts, settings), when the caller
    has it already (the simulator asks thousands of starts of one history);
    ``explain`` False: the verdict gets no reason (planners ask many starts
    only whether they run and why by code, and saying why costs more than
    deciding); ``matching``: the policy rows matching the script, most
    specific first (matching_policies), when the caller has them (a
    planner asks thousands of starts of one script on one host).
    """
    s = Situation(inputs, facts, estimate or runtime_estimate(inputs, facts, settings),
                  margin=settings.cutoff_margin,
                  cache_max_age=getattr(settings, "cache_max_age", None), matching=matching)
    forced = None
    for rule in RULES:
        skip = rule.check(s)
        if skip is None:
            continue
        if facts.ignore_policy and rule.overridable:
            forced = forced or skip
            continue
        return s.verdict(False, skip.code, said(skip, explain), skip.window_id,
                         block=skip.block)
    if forced is not None:
        return s.verdict(True, forced.code, said(forced), forced.window_id, forced=True)
    if facts.catch_up_of:
        return s.verdict(True, CATCH_UP, "catching up the start %s skipped; %s" % (
            describe_block(facts.catch_up_of), _run_reason(s)), block=facts.catch_up_of)
    return s.verdict(True, RUN, _run_reason(s) if explain else "")


def catches_up(verdict):
    """Whether a start skipped with ``verdict`` is to be caught up once its
    block ends: a rollout skipped it, and the policy says catch_up = once."""
    return (not verdict.run and verdict.block is not None and verdict.catch_up == CATCH_UP_ONCE
            and verdict.code in rollout_skips())


def stop_verdict(inputs, name, host, ignore_policy=False, needs=()):
    """Why a run of ``name`` in progress on ``host`` (declaring ``needs``)
    should stop now (a skip Verdict), or None: the rules marked
    stops_running.  A run forced with --ignore-policy is not stopped by the
    rules it was told to ignore."""
    s = Situation(inputs, ScriptFacts(name, host, needs=tuple(needs or ())))
    for rule in RULES:
        if rule.stops_running and not (ignore_policy and rule.overridable):
            skip = rule.check(s)
            if skip is not None:
                return s.verdict(False, skip.code, said(skip), skip.window_id, block=skip.block)
    return None


def stopped(reason, code=None):
    """A stop verdict that no policy rule gave: SIGTERM/SIGINT (code SIGNAL),
    or main() raising Interrupted itself (no code)."""
    return Verdict(False, code, reason, None, None, None, False, None, False)


def stopped_by_signal(reason):
    """The stop verdict of SIGTERM/SIGINT (``reason`` names the signal)."""
    return stopped(reason, SIGNAL)


def lease_lost(reason):
    """The stop verdict of a run whose lease ran out, or whose fleet-wide
    slot another run took: to the fleet it is no longer running, so it
    stops at its next safe point."""
    return stopped(reason, LEASE_LOST)


def locked(reason, estimate=None, limit=None):
    """The Verdict of a start another instance holds the place of (the host
    lock, or every fleet-wide slot)."""
    return Verdict(False, LOCKED, reason, estimate, None, None, False, limit, False)


# Facts the tooling asks about --------------------------------------------------------

def _needs(matching, facts):
    said = first_setting(matching, "needs")[0]
    return parse_needs(said) if said is not None else tuple(getattr(facts, "needs", ()) or ())


def effective_needs(inputs, facts):
    """The services ``facts.name`` on ``facts.host`` needs: the most
    specific policy row that says, else what the script declares."""
    return _needs(matching_policies(inputs.policies, facts.name, facts.host), facts)


def concurrency_limit(matching, declared=None):
    """The fleet-wide limit on simultaneous runs (None: no limit).  The most
    specific row with an opinion wins: its max_concurrent, else its
    fleet_single_instance (true: 1, false: no limit); else the script's own
    declaration."""
    for row in matching:
        if row.max_concurrent is not None:
            return row.max_concurrent
        if row.fleet_single_instance is not None:
            return 1 if row.fleet_single_instance else None
    return declared


def rollout_exempt(policies, name, host):
    """Whether rollouts (deploy pending, windows) leave ``name`` on ``host`` alone."""
    return Situation(_bare_inputs(policies), ScriptFacts(name, host)).exempt


def disabling_row(policies, name, host):
    """The policy row that disables ``name`` on ``host`` (the disabled rule's
    finding), or None."""
    s = Situation(_bare_inputs(policies), ScriptFacts(name, host))
    return s.winner if disabled_by_policy(s) is not None else None


def expected_interval(policies, name):
    """(seconds, policy id) of the fleet-wide expected_interval for ``name``:
    the most specific host-wide row that sets one, else (None, None)."""
    # (A fleet's rows indexed by name, matching.IndexedRows, are asked only
    # for those that could match: overdue asks about every script.)
    candidates = policies.candidates(name, "*") if hasattr(policies, "candidates") else policies
    fleet_wide = [row for row in candidates if row.host == "*"]
    return first_setting(matching_policies(fleet_wide, name, "*"), "expected_interval")


def covering_rollouts(inputs, name, host, needs=()):
    """The open rollouts that stop ``name`` on ``host``, oldest first: none
    for a rollout-exempt script.  ``needs``: what the script declared (a
    policy row's needs win, as everywhere)."""
    s = Situation(inputs, ScriptFacts(name, host, needs=tuple(needs or ())))
    if s.exempt:
        return []
    return [rollout for rollout in inputs.rollouts if rollout_covers(rollout, s.needs)]


def moment_key(covering, reach, moment):
    """All that the verdict of a start at ``moment`` reads of the moment
    and the windows, given ``covering``, the windows that cover the script
    (matching.window_covers, whether over or not), in the rules' order
    (start, id), and ``reach``, its estimate and the margin (a timedelta):
    the windows not over, each with whether it has begun and whether the
    start is past its cut-off.  Two starts of one script with the same key
    are decided alike, all else equal (but the words of the reason), so a
    planner asks the rules once for all of them; and each part of the key
    changes at most once as the moment grows, so the starts between two of
    the same key have it too (a planner asks a run of starts by its ends).
    (A rule that reads the moment otherwise must add it here;
    tests/test_policy.py holds the two to each other.)"""
    if not covering:            # (the common cases, first: a planner asks it millions of times)
        return ()
    if len(covering) == 1:
        window = covering[0]
        return ((window.id, moment >= window.starts_at, moment + reach >= window.starts_at),) \
            if window.ends_at > moment else ()
    reached = moment + reach        # (once, not once a window)
    return tuple([(window.id, moment >= window.starts_at, reached >= window.starts_at)
                  for window in covering if window.ends_at > moment])


def next_window_start(inputs, name, host, needs=()):
    """When the next window covering ``name`` on ``host`` begins (after now), or None."""
    starts = [window.starts_at for window in
              Situation(inputs, ScriptFacts(name, host, needs=tuple(needs or ()))).windows
              if window.starts_at > inputs.now]
    return min(starts) if starts else None


def rollout_under_way(inputs, service=None):
    """Whether something asks the fleet (or, given ``service``, the scripts
    that need it) to stop: a rollout open, deploy pending (or its row
    missing), a service deploy pending, or a window in progress anywhere."""
    if is_deploy_pending(inputs.deploy):
        return True
    if any(service is None or rollout_covers(rollout, (service,))
           for rollout in inputs.rollouts):
        return True
    if any(service is None or row.service == service for row in inputs.services):
        return True
    return any(window.starts_at <= inputs.now < window.ends_at for window in inputs.windows)


def _bare_inputs(policies):
    from cronpolicy.rows import Inputs
    return Inputs(now=None, schema_version=None, deploy=None, policies=policies, windows=[],
                  recent_runtimes=[])
