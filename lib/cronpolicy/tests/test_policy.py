"""The decision, as a pure function: the rule registry, precedence, windows,
cut-offs, estimates, --ignore-policy, the offline rules and stop verdicts."""

import datetime
import fnmatch

import pytest
from hypothesis import given, settings, strategies as st

from cronpolicy import policy
from cronpolicy.causes import Cause, Recorded
from cronpolicy.config import Settings
from cronpolicy.estimate import Estimate, estimate_runtime, quantile
from cronpolicy.matching import glob_matches, matching_policies, precedence
from cronpolicy.policy import (
    DATABASE_UNREACHABLE, DEPLOY_PENDING, DISABLED, IN_WINDOW, LOCKED, RUN, WINDOW_CUTOFF,
    ScriptFacts, decide, stop_verdict)
from cronpolicy.rows import (
    FROM_CACHE, DeployState, Inputs, PolicyRow, ServiceDeploy, Window, unavailable_inputs)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CLEAR = DeployState(False)
KNOBS = Settings(dsn="sqlite:////nonexistent/x.sqlite", cutoff_margin=120)


def minutes(n):
    return datetime.timedelta(minutes=n)


def row(id, name, host="*", enabled=True, **kwargs):
    return PolicyRow(id=id, name=name, host=host, enabled=enabled, **kwargs)


def inputs(policies=(), deploy=CLEAR, windows=(), runtimes=(), source="database"):
    return Inputs(NOW, 6, deploy, list(policies), list(windows), list(runtimes), source=source,
                  age=30.0 if source == FROM_CACHE else None)


def run_decision(policies=(), deploy=CLEAR, windows=(), estimate_seconds=60,
                 name="publish-distro", host="web1", margin=120, **facts):
    knobs = Settings(dsn=KNOBS.dsn, cutoff_margin=margin)
    return decide(inputs(policies, deploy, windows),
                  ScriptFacts(name, host, expected_runtime=estimate_seconds, **facts), knobs)


# Globs ----------------------------------------------------------------------

@pytest.mark.parametrize("pattern, value, expected", [
    ("*", "anything", True),
    ("*", "", True),
    ("publish-*", "publish-distro", True),
    ("publish-*", "publish-", True),
    ("publish-*", "republish-distro", False),
    ("*-distro", "publish-distro", True),
    ("p?blish", "publish", True),
    ("p?blish", "pblish", False),
    ("web[12]", "web1", False),        # brackets are literal
    ("web[12]", "web[12]", True),
    ("a.b", "axb", False),             # dots are literal
    ("Publish", "publish", False),     # case-sensitive
    ("exact", "exact", True),
])
def test_glob_matches(pattern, value, expected):
    assert glob_matches(pattern, value) is expected


_name_chars = st.sampled_from("ab-.*?")


@given(st.text(_name_chars, max_size=8), st.text(st.sampled_from("ab-."), max_size=8))
def test_glob_agrees_with_fnmatch_on_star_and_question(pattern, value):
    # fnmatch gives [..] a meaning; without brackets the two must agree.
    assert glob_matches(pattern, value) == fnmatch.fnmatchcase(value, pattern)


# The registry ------------------------------------------------------------------

def test_every_rule_gives_a_code_from_the_closed_set():
    codes = set()
    situations = [
        (unavailable_inputs(NOW, None), {}),
        (inputs([row(1, "publish-distro", enabled=False)]), {}),
        (inputs(deploy=DeployState(True)), {}),
        (inputs(windows=[Window(1, NOW - minutes(1), NOW + minutes(5))]), {}),
        (inputs(windows=[Window(1, NOW + minutes(1), NOW + minutes(5))]), {}),
        (inputs(source=FROM_CACHE), {"max_concurrent": 1}),
        (inputs()._replace(services=[ServiceDeploy(1, "xmlrpc", changed_at=NOW)]),
         {"needs": ("xmlrpc",)}),
    ]
    for situation_inputs, extra in situations:
        verdict = decide(situation_inputs, ScriptFacts("publish-distro", "web1", **extra), KNOBS)
        assert not verdict.run
        codes.add(verdict.code)
    assert codes == {DATABASE_UNREACHABLE, DISABLED, DEPLOY_PENDING, IN_WINDOW, WINDOW_CUTOFF,
                     LOCKED, policy.SERVICE_PENDING}
    assert codes | {RUN, policy.SIGNAL, policy.LEASE_LOST, policy.CATCH_UP} == set(policy.codes())
    assert len(policy.RULES) == len(codes)


def held(s):
    """A rule of a test: a policy row whose reason begins "hold" holds the
    script back, as a rollout would (block "held:<policy id>")."""
    if s.winner is not None and (s.winner.reason or "").startswith("hold"):
        return policy.Skip("held", "held by policy #%d" % s.winner.id,
                           block="held:%d" % s.winner.id)
    return None


def _held_said(block):
    kind, _, what = (block or "").partition(":")
    return "the hold of policy #%s" % what if kind == "held" else None


def _held_cause(recorded):
    return Cause("script_policy", recorded.policy_id, recorded.decided_at)


#: Its one entry (tests add it to the registry with monkeypatch).
HELD = policy.Rule(held, ("held",), stops_running=True, overridable=True, rollout_skip=True,
                   describe=_held_said, cause=_held_cause)


def test_a_new_rule_is_one_function_and_one_entry(monkeypatch):
    monkeypatch.setattr(policy, "RULES", policy.RULES + (HELD,))
    holding = [row(3, "job", reason="hold for the mirror", catch_up="once")]
    verdict = decide(inputs(holding), ScriptFacts("job", "web1"), KNOBS)
    assert (verdict.run, verdict.code, verdict.block) == (False, "held", "held:3")
    assert stop_verdict(inputs(holding), "job", "web1").code == "held"
    assert decide(inputs(holding), ScriptFacts("job", "web1", ignore_policy=True), KNOBS).forced
    assert decide(inputs(), ScriptFacts("job", "web1"), KNOBS).run
    # What the registry says of every rule knows it too.
    assert policy.describe_block("held:3") == "the hold of policy #3"
    assert policy.catches_up(verdict) and "held" in policy.rollout_skips()
    assert "held" in policy.codes() and policy.rule_of("held") is HELD
    recorded = Recorded("held", "held:3", 3, None, False, NOW, NOW)
    assert policy.rule_of("held").cause(recorded).table == "script_policy"


def test_every_entry_has_each_facet():
    """A rule is one home: each entry says every facet, right kinds, and no
    two rules share a code (why finds the rule by the code a run recorded)."""
    from cronpolicy.tooling.explain import DOCUMENT_KINDS
    assert policy.Rule._field_defaults == {}        # none can be left out
    every_code = [code for rule in policy.RULES for code in rule.codes]
    assert len(every_code) == len(set(every_code))
    assert not set(every_code) & {RUN, policy.SIGNAL, policy.LEASE_LOST, policy.CATCH_UP}
    for rule in policy.RULES + (HELD,):
        assert callable(rule.check) and callable(rule.describe) and callable(rule.cause), rule
        assert isinstance(rule.codes, tuple) and rule.codes, rule
        assert all(isinstance(code, str) and code for code in rule.codes), rule
        for flag in (rule.stops_running, rule.overridable, rule.rollout_skip):
            assert isinstance(flag, bool), rule
        for code in rule.codes:
            for block in (None, "rollout:1", "window:1", "deploy:2026-12-06T04:00:00Z",
                          "service:xmlrpc:2026-12-06T04:00:00Z", "held:1", "other:1"):
                for stopped in (False, True):
                    cause = rule.cause(Recorded(code, block, 1, 1, stopped, NOW, NOW))
                    assert cause is None or (isinstance(cause, Cause)
                                             and cause.table in DOCUMENT_KINDS
                                             and cause.moment == NOW), (rule, block)
                said = rule.describe(block)
                assert said is None or isinstance(said, str), (rule, block)
    # Two rules whose skips name one kind of block (a rollout) say it alike:
    # describe_block takes the first that speaks.
    for block in ("rollout:1", "window:1", "deploy:2026-12-06T04:00:00Z",
                  "service:xmlrpc:2026-12-06T04:00:00Z"):
        said = {rule.describe(block) for rule in policy.RULES} - {None}
        assert said == {policy.describe_block(block)}, (block, said)


def test_each_rule_skips_with_its_own_codes_and_describes_its_blocks():
    """Each rule's skips carry one of its codes, and a rollout skip's block is
    one its own describer names (what the log and catch-up tell people)."""
    from cronpolicy.rows import Rollout
    full = Rollout(id=4, kind="full", services="")
    service = Rollout(id=5, kind="services", services="xmlrpc")
    situations = [
        (unavailable_inputs(NOW, None), {}),
        (inputs([row(1, "job", enabled=False)]), {}),
        (inputs(deploy=DeployState(True, changed_at=NOW)), {}),
        (inputs()._replace(rollouts=[full]), {}),
        (inputs()._replace(rollouts=[service]), {"needs": ("xmlrpc",)}),
        (inputs()._replace(services=[ServiceDeploy(1, "xmlrpc", changed_at=NOW)]),
         {"needs": ("xmlrpc",)}),
        (inputs(windows=[Window(1, NOW - minutes(1), NOW + minutes(5))]), {}),
        (inputs(windows=[Window(1, NOW + minutes(1), NOW + minutes(5))]), {}),
        (inputs(source=FROM_CACHE), {"max_concurrent": 1}),
    ]
    fired = set()
    for situation_inputs, extra in situations:
        s = policy.Situation(situation_inputs, ScriptFacts("job", "web1", **extra),
                             Estimate(60.0, "test"), cache_max_age=60)
        for rule in policy.RULES:
            skip = rule.check(s)
            if skip is None:
                continue
            fired.add(rule)
            assert skip.code in rule.codes, (rule, skip)
            assert (skip.block is not None) == rule.rollout_skip, (rule, skip)
            if skip.block is not None:
                assert rule.describe(skip.block) not in (None, "a rollout"), skip.block
                assert policy.describe_block(skip.block) == rule.describe(skip.block)
    assert fired == set(policy.RULES)


# Precedence -----------------------------------------------------------------

def test_no_row_means_enabled():
    verdict = run_decision()
    assert verdict.run and verdict.code == RUN and verdict.policy_id is None
    assert not verdict.forced and not verdict.interruptible and verdict.max_concurrent is None


def test_disabled_row_skips_with_its_reason():
    verdict = run_decision([row(7, "publish-distro", enabled=False, reason="broken mirror")])
    assert not verdict.run
    assert (verdict.code, verdict.policy_id) == (DISABLED, 7)
    assert "#7" in verdict.reason and "broken mirror" in verdict.reason


def test_exact_name_beats_pattern_either_way():
    assert run_decision([row(1, "publish-*", enabled=False), row(2, "publish-distro")]).run
    assert not run_decision([row(1, "publish-*"), row(2, "publish-distro", enabled=False)]).run


def test_more_specific_pattern_beats_less_specific():
    assert run_decision([row(1, "*", enabled=False), row(2, "publish-*")]).run
    assert not run_decision([row(1, "*"), row(2, "publish-*", enabled=False)]).run
    assert run_decision([row(1, "pub*", enabled=False), row(2, "publish-d*")]).run


def test_host_specific_row_beats_star_for_the_same_name():
    rows = [row(1, "publish-distro", "*"), row(2, "publish-distro", "web1", enabled=False)]
    assert not run_decision(rows, host="web1").run
    assert run_decision(rows, host="web2").run
    rows = [row(1, "publish-distro", "*", enabled=False), row(2, "publish-distro", "web?")]
    assert run_decision(rows, host="web1").run
    assert not run_decision(rows, host="db1").run


def test_name_specificity_outranks_host_specificity():
    rows = [row(1, "*", "web1", enabled=False), row(2, "publish-distro", "*")]
    assert run_decision(rows, host="web1").run


def test_tie_goes_to_the_disabling_row_then_lower_id():
    assert not run_decision([row(1, "pub*"), row(2, "*ish-distro", enabled=False)]).run
    rows = [row(5, "ab*"), row(3, "*cd", enabled=False)]
    assert [r.id for r in matching_policies(rows, "abcd", "h")] == [3, 5]


def test_non_matching_rows_are_ignored():
    rows = [row(1, "other", enabled=False), row(2, "publish-distro", "db*", enabled=False)]
    assert run_decision(rows, host="web1").run


# Deploy pending and windows ----------------------------------------------------

def test_deploy_pending_skips_and_names_the_reason():
    verdict = run_decision(deploy=DeployState(True, "release 42", "alice", NOW - minutes(3)))
    assert not verdict.run and verdict.code == DEPLOY_PENDING
    assert "release 42" in verdict.reason and "alice" in verdict.reason


def test_missing_deploy_row_is_treated_as_pending():
    verdict = run_decision(deploy=None)
    assert not verdict.run and verdict.code == DEPLOY_PENDING


def test_deploy_pending_is_an_overlay_over_policy():
    rows = [row(1, "publish-distro", enabled=False, reason="own reason")]
    assert run_decision(rows, deploy=DeployState(True)).code == DISABLED
    assert run_decision(rows, deploy=CLEAR).code == DISABLED
    assert run_decision([row(1, "publish-distro")], deploy=CLEAR).run


def test_active_window_covering_skips():
    window = Window(3, NOW - minutes(5), NOW + minutes(25), "db upgrade")
    verdict = run_decision(windows=[window])
    assert not verdict.run and verdict.code == IN_WINDOW and verdict.window_id == 3
    assert "#3" in verdict.reason and "db upgrade" in verdict.reason


def test_window_scope_by_host_and_script():
    window = Window(3, NOW - minutes(5), NOW + minutes(25), "", host="db*", script="publish-*")
    assert not run_decision(windows=[window], host="db1").run
    assert run_decision(windows=[window], host="web1").run
    assert run_decision(windows=[window], host="db1", name="other-job").run


def test_past_window_is_ignored_and_end_is_exclusive():
    assert run_decision(windows=[Window(1, NOW - minutes(60), NOW - minutes(1))]).run
    assert run_decision(windows=[Window(1, NOW - minutes(60), NOW)]).run
    assert not run_decision(windows=[Window(1, NOW, NOW + minutes(1))]).run


def test_cutoff_long_job_skips_short_job_runs():
    window = Window(9, NOW + minutes(5), NOW + minutes(35), "release")
    short = run_decision(windows=[window], estimate_seconds=60, margin=120)
    long = run_decision(windows=[window], estimate_seconds=20 * 60, margin=120)
    assert short.run and short.code == RUN and "ends before it" in short.reason
    assert not long.run and long.code == WINDOW_CUTOFF and long.window_id == 9
    assert "20m" in long.reason and "#9" in long.reason


def test_cutoff_boundary_reaching_the_start_exactly_skips():
    window = Window(1, NOW + minutes(10), NOW + minutes(20))
    assert not run_decision(windows=[window], estimate_seconds=8 * 60, margin=120).run
    assert run_decision(windows=[window], estimate_seconds=8 * 60 - 1, margin=120).run
    assert policy.cutoff_at(window.starts_at, 8 * 60, 120) == NOW


def test_rollout_exempt_row_ignores_deploy_and_windows_but_not_disable():
    exempt = row(1, "publish-distro", rollout_exempt=True)
    window = Window(1, NOW - minutes(1), NOW + minutes(30))
    verdict = run_decision([exempt], deploy=DeployState(True), windows=[window])
    assert verdict.run and "exempts it from rollouts" in verdict.reason
    assert policy.rollout_exempt([exempt], "publish-distro", "web1")
    assert not run_decision([row(1, "publish-distro", enabled=False, rollout_exempt=True)]).run


# What the run needs -----------------------------------------------------------------

def test_interruptible_comes_from_the_most_specific_row():
    rows = [row(1, "publish-*", interruptible=True), row(2, "publish-distro")]
    assert not run_decision(rows).interruptible
    assert run_decision([row(1, "publish-*", interruptible=True)]).interruptible


def test_fleet_limit_from_the_script_and_from_policy_rows():
    assert run_decision(max_concurrent=1).max_concurrent == 1
    assert run_decision(max_concurrent=3).max_concurrent == 3
    assert run_decision([row(1, "publish-*", fleet_single_instance=True)]).max_concurrent == 1
    assert run_decision([row(1, "publish-*", max_concurrent=4)], max_concurrent=1
                        ).max_concurrent == 4
    # A row's fleet_single_instance = false means "per host only", whatever
    # the script says; its own max_concurrent wins over its fleet_single_instance.
    assert run_decision([row(1, "publish-distro", fleet_single_instance=False)],
                        max_concurrent=1).max_concurrent is None
    assert run_decision([row(1, "publish-distro", fleet_single_instance=True,
                             max_concurrent=2)]).max_concurrent == 2
    # The most specific row with an opinion wins.
    rows = [row(1, "publish-*", max_concurrent=5), row(2, "publish-distro"),
            row(3, "publish-distro", host="web1", fleet_single_instance=True)]
    assert run_decision(rows, host="web1").max_concurrent == 1
    assert run_decision(rows, host="web2").max_concurrent == 5


# --ignore-policy --------------------------------------------------------------------

def test_ignore_policy_forces_a_run_and_keeps_what_it_overrode():
    verdict = run_decision(deploy=DeployState(True, "r42"), ignore_policy=True)
    assert verdict.run and verdict.forced
    assert verdict.code == DEPLOY_PENDING and "r42" in verdict.reason
    assert run_decision(ignore_policy=True).forced is False


def test_ignore_policy_does_not_override_an_unverifiable_fleet_limit():
    cached = inputs(deploy=DeployState(True), source=FROM_CACHE)
    facts = ScriptFacts("job", "web1", max_concurrent=1, ignore_policy=True)
    verdict = decide(cached, facts, KNOBS)
    assert (verdict.run, verdict.code) == (False, LOCKED)
    # Without --ignore-policy the policy's own skip is the one recorded.
    assert decide(cached, facts._replace(ignore_policy=False), KNOBS).code == DEPLOY_PENDING


# Offline -------------------------------------------------------------------------------

def test_nothing_known_follows_on_database_error():
    nothing = unavailable_inputs(NOW, None)
    skip = decide(nothing, ScriptFacts("job", "web1"), KNOBS)
    assert (skip.run, skip.code) == (False, DATABASE_UNREACHABLE)
    assert "on_database_error = skip" in skip.reason
    run = decide(nothing, ScriptFacts("job", "web1", on_database_error="run",
                                      expected_runtime=90), KNOBS)
    assert (run.run, run.code) == (True, RUN) and "on_database_error = run" in run.reason
    assert run.estimate.seconds == 90 and "unreachable" in run.estimate.source
    forced = decide(nothing, ScriptFacts("job", "web1", ignore_policy=True), KNOBS)
    assert forced.run and forced.forced and forced.code == DATABASE_UNREACHABLE


def test_a_cached_policy_decides_like_a_fresh_one():
    cached = inputs([row(4, "job", enabled=False)], source=FROM_CACHE)
    assert decide(cached, ScriptFacts("job", "web1"), KNOBS).code == DISABLED
    assert decide(inputs(source=FROM_CACHE), ScriptFacts("job", "web1"), KNOBS).run


# Stopping a run in progress ---------------------------------------------------------------

def test_stop_verdict_uses_the_rules_that_stop_running_runs():
    assert stop_verdict(inputs(), "job", "web1") is None
    assert stop_verdict(inputs(deploy=DeployState(True, "r1")), "job", "web1").code == \
        DEPLOY_PENDING
    window = Window(8, NOW - minutes(1), NOW + minutes(9))
    stop = stop_verdict(inputs(windows=[window]), "job", "web1")
    assert (stop.code, stop.window_id) == (IN_WINDOW, 8)
    stop = stop_verdict(inputs([row(3, "j*", enabled=False)]), "job", "web1")
    assert (stop.code, stop.policy_id) == (DISABLED, 3)
    # The cut-off concerns starts only; exempt rows exempt running runs too.
    upcoming = Window(8, NOW + minutes(1), NOW + minutes(9))
    assert stop_verdict(inputs(windows=[upcoming]), "job", "web1") is None
    assert stop_verdict(inputs([row(1, "job", rollout_exempt=True)], deploy=DeployState(True)),
                        "job", "web1") is None


def test_a_forced_run_is_stopped_by_none_of_the_rules_it_ignored():
    pending = inputs([row(3, "job", enabled=False)], deploy=DeployState(True))
    assert stop_verdict(pending, "job", "web1").code == DISABLED
    assert stop_verdict(pending, "job", "web1", ignore_policy=True) is None


def test_rollout_under_way_and_next_window():
    assert not policy.rollout_under_way(inputs())
    assert policy.rollout_under_way(inputs(deploy=None))
    assert policy.rollout_under_way(inputs(deploy=DeployState(True)))
    active = Window(1, NOW - minutes(1), NOW + minutes(1), script="other")
    assert policy.rollout_under_way(inputs(windows=[active]))
    upcoming = Window(2, NOW + minutes(3), NOW + minutes(9), host="web*")
    assert policy.next_window_start(inputs(windows=[upcoming]), "job", "web1") == NOW + minutes(3)
    assert policy.next_window_start(inputs(windows=[upcoming]), "job", "db1") is None


def test_expected_interval_takes_the_most_specific_fleet_wide_row():
    rows = [row(1, "*", expected_interval=86400.0), row(2, "publish-*", expected_interval=3600.0),
            row(3, "publish-distro", host="web1", expected_interval=60.0), row(4, "publish-distro")]
    assert policy.expected_interval(rows, "publish-distro") == (3600.0, 2)
    assert policy.expected_interval(rows, "other") == (86400.0, 1)
    assert policy.expected_interval([], "other") == (None, None)


# Exhaustive properties ---------------------------------------------------------

_patterns = st.sampled_from(["*", "publish-*", "publish-distro", "*-distro", "p?blish-distro",
                             "other", "web1", "web?", "db*"])
_rows = st.lists(st.builds(
    PolicyRow, id=st.integers(1, 50), name=_patterns,
    host=st.sampled_from(["*", "web1", "web*", "db1"]), enabled=st.booleans(),
    rollout_exempt=st.booleans()), max_size=6, unique_by=lambda r: r.id)
_offsets = st.integers(-120, 120).map(minutes)
_windows = st.lists(st.builds(
    lambda start, length, host, script, id: Window(id, NOW + start, NOW + start + minutes(length),
                                                   "", host, script),
    _offsets, st.integers(1, 90), st.sampled_from(["*", "web1", "db*"]),
    st.sampled_from(["*", "publish-*", "other"]), st.integers(1, 50)), max_size=4)


@settings(max_examples=400, deadline=None)
@given(_rows, st.booleans(), _windows, st.integers(1, 7200), st.integers(0, 600),
       st.sampled_from(["web1", "db1"]))
def test_decision_properties(rows, pending, windows, estimate_seconds, margin, host):
    name = "publish-distro"
    verdict = run_decision(rows, DeployState(pending), windows, estimate_seconds, name, host,
                           margin)
    matching = matching_policies(rows, name, host)
    winner = matching[0] if matching else None
    exempt = winner is not None and winner.enabled and winner.rollout_exempt
    covering = [w for w in windows if w.ends_at > NOW
                and glob_matches(w.script, name) and glob_matches(w.host, host)]
    reach = NOW + datetime.timedelta(seconds=estimate_seconds + margin)
    expected_skip = (
        (winner is not None and not winner.enabled)
        or (not exempt and pending)
        or (not exempt and any(w.starts_at <= NOW for w in covering))
        or (not exempt and any(w.starts_at <= reach for w in covering)))
    assert verdict.run is (not expected_skip)
    assert verdict.reason and verdict.code in policy.codes()
    assert verdict.policy_id == (winner.id if winner is not None else None)
    if winner is not None:
        for other in matching[1:]:
            assert precedence(winner) > precedence(other)
    # A run that may start now is never asked to stop now.
    if verdict.run:
        assert stop_verdict(inputs(rows, DeployState(pending), windows), name, host) is None


@settings(max_examples=200, deadline=None)
@given(_rows)
def test_precedence_does_not_depend_on_row_order(rows):
    forward = matching_policies(rows, "publish-distro", "web1")
    backward = matching_policies(list(reversed(rows)), "publish-distro", "web1")
    assert forward == backward


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 7200), st.integers(1, 7200))
def test_longer_estimate_never_runs_where_a_shorter_one_skips(shorter, extra):
    window = Window(1, NOW + minutes(30), NOW + minutes(60))
    short = run_decision(windows=[window], estimate_seconds=shorter)
    long = run_decision(windows=[window], estimate_seconds=shorter + extra)
    assert not (long.run and not short.run)


# Estimates --------------------------------------------------------------------

def test_quantile_is_nearest_rank():
    values = list(range(1, 21))            # 1..20
    assert quantile(values, 0.95) == 19    # ceil(0.95 * 20) = 19th smallest
    assert quantile(values, 1.0) == 20
    assert quantile(values, 0.5) == 10
    assert quantile([42], 0.95) == 42


@given(st.lists(st.floats(0.01, 1e6), min_size=1, max_size=50), st.floats(0.01, 1.0))
def test_quantile_is_an_observed_value_with_enough_below(values, q):
    result = quantile(values, q)
    assert result in values
    assert sum(1 for value in values if value <= result) >= q * len(values) - 1e-9


def test_estimate_uses_history_when_there_is_enough():
    estimate = estimate_runtime([600.0] * 19 + [1800.0], script_runtime=60, q=0.95, min_runs=3)
    assert estimate == Estimate(600.0, "p95 of last 20 succeeded runs")


def test_estimate_falls_back_policy_then_script_then_default():
    assert estimate_runtime([5.0], policy_runtime=900, script_runtime=60, min_runs=3,
                            policy_id=4).seconds == 900
    assert "policy #4" in estimate_runtime([5.0], policy_runtime=900, min_runs=3,
                                           policy_id=4).source
    assert estimate_runtime([5.0], script_runtime=60, min_runs=3).seconds == 60
    default = estimate_runtime([], default=1800)
    assert default.seconds == 1800 and "default" in default.source


@settings(max_examples=300, deadline=None, derandomize=True)
@given(runtimes=st.lists(st.one_of(st.none(), st.floats(-1e12, 1e12, allow_nan=False),
                                   st.integers(-10, 10 ** 6)), max_size=8),
       min_runs=st.integers(1, 5), q=st.floats(0.01, 1.0),
       policy_runtime=st.one_of(st.none(), st.floats(0, 1e6)),
       script_runtime=st.one_of(st.none(), st.floats(0, 1e6)),
       host=st.sampled_from(["web1", "db2"]),
       source=st.sampled_from(["database", FROM_CACHE, "unavailable"]))
def test_an_estimate_the_history_alone_gives_is_every_hosts(
        runtimes, min_runs, q, policy_runtime, script_runtime, host, source):
    """Issue 32.3: policy.history_estimate says the estimate of a script
    with enough history without its rows (planners ask it of hundreds of
    hosts); whenever it says one, runtime_estimate gives that one whatever
    the host, the policy rows and the declaration."""
    knobs = Settings(dsn=KNOBS.dsn, estimate_min_runs=min_runs, estimate_quantile=q)
    rows = [row(1, "publish-*", expected_runtime=policy_runtime), row(2, "publish-distro",
                                                                      host="db2")]
    given_inputs = inputs(rows, runtimes=runtimes, source=source)
    if source == "unavailable":
        given_inputs = unavailable_inputs(NOW, "down")._replace(recent_runtimes=runtimes)
    found = policy.history_estimate(given_inputs, knobs)
    full = policy.runtime_estimate(given_inputs, ScriptFacts(
        "publish-distro", host, expected_runtime=script_runtime), knobs)
    if found is not None:
        assert found == full
    else:
        assert source == "unavailable" or " succeeded runs" not in full.source.split(" (")[0]


def test_policy_runtime_comes_from_the_most_specific_row_that_sets_one():
    rows = [row(1, "*", expected_runtime=100.0), row(2, "publish-*", expected_runtime=200.0),
            row(3, "publish-distro")]
    verdict = decide(inputs(rows), ScriptFacts("publish-distro", "h", 60), KNOBS)
    assert verdict.estimate == Estimate(200.0, "policy #2 expected_runtime (only 0 succeeded runs)")


def test_the_cutoff_uses_history_over_declarations():
    window = Window(1, NOW + minutes(10), NOW + minutes(40))
    slow = decide(inputs(windows=[window], runtimes=[20 * 60.0] * 20),
                  ScriptFacts("job", "h", expected_runtime=10), KNOBS)
    fast = decide(inputs(windows=[window], runtimes=[30.0] * 20),
                  ScriptFacts("job", "h", expected_runtime=3600), KNOBS)
    assert (slow.run, slow.code) == (False, WINDOW_CUTOFF)
    assert fast.run


# Blocks and catching up (issue 15) -------------------------------------------------------

def test_a_rollout_skip_names_its_block_and_other_skips_none():
    set_at = NOW - minutes(30)
    deploy = DeployState(True, "r42", "alice", set_at)
    assert run_decision(deploy=deploy).block == "deploy:2026-11-27T11:30:00Z"
    window = Window(7, NOW - minutes(1), NOW + minutes(5))
    assert run_decision(windows=[window]).block == "window:7"
    ahead = Window(8, NOW + minutes(1), NOW + minutes(5))
    verdict = run_decision(windows=[ahead])
    assert (verdict.code, verdict.block) == (WINDOW_CUTOFF, "window:8")
    assert run_decision([row(1, "publish-distro", enabled=False)]).block is None
    assert run_decision().block is None


@pytest.mark.parametrize("setting, caught", [("once", True), ("none", False), (None, False)])
def test_a_rollout_skip_is_caught_up_only_when_the_policy_says_once(setting, caught):
    rows = [row(1, "publish-*", catch_up=setting)]
    verdict = run_decision(rows, deploy=DeployState(True, changed_at=NOW))
    assert verdict.catch_up == setting and policy.catches_up(verdict) is caught
    # A disabled script is never caught up, whatever the setting.
    disabled = run_decision([row(1, "publish-*", catch_up="once"),
                             row(2, "publish-distro", enabled=False)])
    assert disabled.code == DISABLED and not policy.catches_up(disabled)


def test_the_most_specific_row_with_an_opinion_says_whether_to_catch_up():
    rows = [row(1, "*", catch_up="once"), row(2, "publish-distro", host="web1")]
    assert run_decision(rows).catch_up == "once"
    rows.append(row(3, "publish-*", catch_up="none"))
    assert run_decision(rows).catch_up == "none"


def test_a_catch_up_start_runs_with_its_own_code_and_block():
    verdict = run_decision(catch_up_of="window:7")
    assert verdict.run and verdict.code == policy.CATCH_UP and verdict.block == "window:7"
    assert "catching up the start rollout window #7 skipped" in verdict.reason
    # Still a start like any other: a block in force skips it again.
    again = run_decision(deploy=DeployState(True, changed_at=NOW), catch_up_of="window:7")
    assert not again.run and again.code == DEPLOY_PENDING


# Services (issue 16) ------------------------------------------------------------------

def service_inputs(*services, windows=(), policies=()):
    return inputs(policies, windows=windows)._replace(services=[
        ServiceDeploy(index, service, "r4522", "alice", NOW - minutes(5))
        for index, service in enumerate(services, 1)])


def test_a_service_deploy_stops_only_the_scripts_that_need_it():
    found = decide(service_inputs("xmlrpc"), ScriptFacts("sync", "web1", needs=("xmlrpc",)),
                   KNOBS)
    assert (found.run, found.code) == (False, policy.SERVICE_PENDING)
    assert "deploy of service xmlrpc pending since" in found.reason and "r4522" in found.reason
    assert found.block == "service:xmlrpc:2026-11-27T11:55:00Z"
    assert decide(service_inputs("xmlrpc"), ScriptFacts("sync", "web1", needs=("librarian",)),
                  KNOBS).run
    assert decide(service_inputs("xmlrpc"), ScriptFacts("sync", "web1"), KNOBS).run   # no needs
    assert stop_verdict(service_inputs("xmlrpc"), "sync", "web1", needs=("xmlrpc",)).code == \
        policy.SERVICE_PENDING
    assert stop_verdict(service_inputs("xmlrpc"), "sync", "web1") is None


def test_two_services_at_once_and_the_policy_saying_what_a_script_needs():
    both = service_inputs("xmlrpc", "librarian")
    assert not decide(both, ScriptFacts("a", "h", needs=("librarian",)), KNOBS).run
    assert not decide(both, ScriptFacts("b", "h", needs=("xmlrpc",)), KNOBS).run
    # A DBA's needs win over the script's own: here it needs nothing deployed.
    told = service_inputs("xmlrpc", policies=[row(1, "b", needs="mail")])
    verdict = decide(told, ScriptFacts("b", "h", needs=("xmlrpc",)), KNOBS)
    assert verdict.run and verdict.needs == ("mail",)
    nothing = service_inputs("xmlrpc", policies=[row(1, "b", needs="")])
    assert decide(nothing, ScriptFacts("b", "h", needs=("xmlrpc",)), KNOBS).needs == ()


def test_a_window_of_one_service_covers_only_its_scripts():
    window = Window(9, NOW - minutes(1), NOW + minutes(30), service="xmlrpc")
    covered = decide(inputs(windows=[window]), ScriptFacts("a", "h", needs=("xmlrpc",)), KNOBS)
    assert covered.code == IN_WINDOW and "rollout window #9 of service xmlrpc" in covered.reason
    assert decide(inputs(windows=[window]), ScriptFacts("a", "h"), KNOBS).run
    ahead = Window(9, NOW + minutes(1), NOW + minutes(30), service="xmlrpc")
    assert decide(inputs(windows=[ahead]), ScriptFacts("a", "h", needs=("xmlrpc",)),
                  KNOBS).code == WINDOW_CUTOFF
    assert decide(inputs(windows=[ahead]), ScriptFacts("a", "h", needs=("mail",)), KNOBS).run


def test_the_global_switch_still_stops_every_script():
    needing = ScriptFacts("a", "h", needs=("xmlrpc",))
    assert decide(inputs(deploy=DeployState(True)), needing, KNOBS).code == DEPLOY_PENDING
    assert decide(inputs(deploy=DeployState(True)), ScriptFacts("b", "h"), KNOBS).code == \
        DEPLOY_PENDING


def test_a_reason_said_lazily_is_text_in_every_verdict_that_explains():
    """The cut-off says its reason only when asked (planners do not ask):
    a verdict, a stop verdict and a forced run all carry it as text."""
    ahead = inputs(windows=[Window(1, NOW + minutes(1), NOW + minutes(5))])
    verdict = decide(ahead, ScriptFacts("publish-distro", "web1"), KNOBS)
    assert verdict.code == WINDOW_CUTOFF and isinstance(verdict.reason, str)
    assert "rollout window #1 starts at" in verdict.reason
    forced = decide(ahead, ScriptFacts("publish-distro", "web1", ignore_policy=True), KNOBS)
    assert forced.forced and "rollout window #1 starts at" in forced.reason
    quiet = decide(ahead, ScriptFacts("publish-distro", "web1"), KNOBS, explain=False)
    assert (quiet.run, quiet.code, quiet.block, quiet.reason) == (False, WINDOW_CUTOFF,
                                                                  "window:1", "")


# What a planner may take for granted (policy.moment_key) ------------------------------------

WINDOW_SPECS = st.lists(st.tuples(st.integers(-120, 600), st.integers(1, 300),
                                  st.sampled_from(["*", "web1", "web?", "db*"]),
                                  st.sampled_from(["*", "publish-distro", "publish-*", "sync"]),
                                  st.sampled_from([None, None, "xmlrpc", "mail"])),
                        max_size=4)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(specs=WINDOW_SPECS, estimate_minutes=st.integers(0, 240), margin=st.integers(0, 600),
       needs=st.sampled_from([(), ("xmlrpc",)]), exempt=st.booleans(),
       pending=st.booleans(), planned_at=st.one_of(st.none(), st.integers(-60, 600)))
def test_starts_with_the_same_moment_key_are_decided_alike(specs, estimate_minutes, margin,
                                                           needs, exempt, pending, planned_at):
    """Planners ask the rules once for all the starts of a script that
    moment_key does not tell apart: at every minute of ten hours, with
    windows of any kind (and a planned one, id 0), the verdicts agree; and
    the minutes of one key follow one another (a key once left never comes
    back), so a run of starts is known by its ends."""
    from cronpolicy.matching import window_covers
    windows = [Window(id=index + 1, starts_at=NOW + minutes(start),
                      ends_at=NOW + minutes(start + length), host=host, script=script,
                      service=service)
               for index, (start, length, host, script, service) in enumerate(specs)]
    if planned_at is not None:
        windows.append(Window(id=0, starts_at=NOW + minutes(planned_at),
                              ends_at=NOW + minutes(planned_at + 45)))
    facts = ScriptFacts("publish-distro", "web1", needs=needs)
    knobs = Settings(dsn="sqlite:////nonexistent/x.sqlite", cutoff_margin=margin)
    estimate = Estimate(estimate_minutes * 60.0, "declared")
    base = inputs(policies=[row(1, "publish-*", rollout_exempt=exempt)],
                  deploy=DeployState(pending), windows=windows)
    covering = sorted((window for window in windows
                       if window_covers(window, facts.name, facts.host, needs)),
                      key=lambda window: (window.starts_at, window.id))
    reach = datetime.timedelta(seconds=estimate.seconds + margin)
    # Asked as a planner asks (the rows matching the script found once):
    # 150,000 starts of one script on one host.
    matching = matching_policies(base.policies, facts.name, facts.host)
    seen, previous = {}, None
    for minute in range(-150, 600):
        moment = NOW + minutes(minute)
        verdict = decide(base._replace(now=moment), facts, knobs, estimate, explain=False,
                         matching=matching)
        key = policy.moment_key(covering, reach, moment)
        assert key == previous or key not in seen, (minute, key)       # never back
        assert seen.setdefault(key, verdict) == verdict, (minute, key)
        previous = key


def test_every_block_the_rules_make_is_described_by_what_made_it():
    """A service deploy's skip was described as "a rollout" (describe_block
    knew no service blocks), so its catch-up said it ran because "a rollout"
    was over; explain read the service out of the block on its own."""
    from cronpolicy.rows import DeployState, Rollout, ServiceDeploy, Window
    moment = datetime.datetime(2026, 12, 6, 4, tzinfo=datetime.timezone.utc)
    blocks = {
        policy.deploy_block(DeployState(deploy_pending=True, changed_at=moment)):
            "the deploy pending since 2026-12-06 04:00:00Z",
        policy.service_block(ServiceDeploy(service="xmlrpc", changed_at=moment)):
            "the deploy of service xmlrpc pending since 2026-12-06 04:00:00Z",
        policy.window_block(Window(id=7, starts_at=moment, ends_at=moment)): "rollout window #7",
        policy.rollout_block(Rollout(id=12)): "rollout #12",
    }
    for block, said in blocks.items():
        assert policy.describe_block(block) == said, block
    assert [policy.block_service(block) for block in blocks] == [None, "xmlrpc", None, None]


@pytest.mark.parametrize("block,said", [
    ("deploy:2026-12-07T05:00:00Z", "the deploy pending since 2026-12-07 05:00:00Z"),
    ("deploy:unknown", "the deploy pending"), ("deploy", "the deploy pending"),
    ("deploy:", "the deploy pending"),
    ("service:xmlrpc:2026-12-07T05:00:00Z",
     "the deploy of service xmlrpc pending since 2026-12-07 05:00:00Z"),
    ("service:xmlrpc:unknown", "the deploy of service xmlrpc pending"),
    ("service:xmlrpc", "the deploy of service xmlrpc pending")])
def test_a_block_without_a_time_is_described_without_a_dangling_since(block, said):
    """A deploy_state row without changed_at gives the block "deploy:unknown"
    (and a DBA's or an older version's row may say "deploy" alone): they
    were told as "the deploy pending since unknown" and "... since ", which
    catch-up then printed as "skipped by the deploy pending since  since T"."""
    assert policy.describe_block(block) == said
