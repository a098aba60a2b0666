"""The decision, as a pure function: precedence, windows, cut-offs, estimates."""

import datetime
import fnmatch

import pytest
from hypothesis import given, settings, strategies as st

from cronpolicy import policy
from cronpolicy.policy import (
    DEPLOY_PENDING, DISABLED, IN_WINDOW, RUN, WINDOW_CUTOFF, DeployState, Estimate, PolicyRow,
    Window, decide, estimate_runtime, glob_matches, matching_policies, quantile)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CLEAR = DeployState(False)


def minutes(n):
    return datetime.timedelta(minutes=n)


def row(id, name, host="*", enabled=True, **kwargs):
    return PolicyRow(id, name, host, enabled, **kwargs)


def run_decision(policies=(), deploy=CLEAR, windows=(), estimate_seconds=60, name="publish-distro",
                 host="web1", margin=120):
    return decide(name, host, NOW, list(policies), deploy, list(windows),
                  Estimate(estimate_seconds, "test"), margin=margin)


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


# Precedence -----------------------------------------------------------------

def test_no_row_means_enabled():
    decision = run_decision()
    assert decision.run and decision.code == RUN and decision.policy is None


def test_disabled_row_skips_with_its_reason():
    decision = run_decision([row(7, "publish-distro", enabled=False, reason="broken mirror")])
    assert not decision.run
    assert decision.code == DISABLED
    assert "#7" in decision.reason and "broken mirror" in decision.reason


def test_exact_name_beats_pattern_either_way():
    assert run_decision([row(1, "publish-*", enabled=False), row(2, "publish-distro")]).run
    assert not run_decision([row(1, "publish-*"), row(2, "publish-distro", enabled=False)]).run


def test_more_specific_pattern_beats_less_specific():
    rows = [row(1, "*", enabled=False), row(2, "publish-*")]
    assert run_decision(rows).run
    rows = [row(1, "*"), row(2, "publish-*", enabled=False)]
    assert not run_decision(rows).run
    rows = [row(1, "pub*", enabled=False), row(2, "publish-d*")]
    assert run_decision(rows).run


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
    rows = [row(1, "pub*"), row(2, "*ish-distro", enabled=False)]
    # 'pub*' has 3 literal characters, '*ish-distro' 10: not a tie.
    assert not run_decision(rows).run
    rows = [row(5, "ab*"), row(3, "*cd", enabled=False)]
    assert [r.id for r in matching_policies(rows, "abcd", "h")] == [3, 5]


def test_non_matching_rows_are_ignored():
    rows = [row(1, "other", enabled=False), row(2, "publish-distro", "db*", enabled=False)]
    assert run_decision(rows, host="web1").run


# Deploy pending and windows ----------------------------------------------------

def test_deploy_pending_skips_and_names_the_reason():
    decision = run_decision(deploy=DeployState(True, "release 42", "alice", NOW - minutes(3)))
    assert not decision.run and decision.code == DEPLOY_PENDING
    assert "release 42" in decision.reason and "alice" in decision.reason


def test_missing_deploy_row_is_treated_as_pending():
    decision = run_decision(deploy=None)
    assert not decision.run and decision.code == DEPLOY_PENDING


def test_deploy_pending_is_an_overlay_over_policy():
    rows = [row(1, "publish-distro", enabled=False, reason="own reason")]
    assert run_decision(rows, deploy=DeployState(True)).code == DISABLED
    assert run_decision(rows, deploy=CLEAR).code == DISABLED
    assert run_decision([row(1, "publish-distro")], deploy=CLEAR).run


def test_active_window_covering_skips():
    window = Window(3, NOW - minutes(5), NOW + minutes(25), "db upgrade")
    decision = run_decision(windows=[window])
    assert not decision.run and decision.code == IN_WINDOW and decision.window == window
    assert "#3" in decision.reason and "db upgrade" in decision.reason


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
    assert short.run and short.code == RUN
    assert not long.run and long.code == WINDOW_CUTOFF and long.window == window
    assert "20m" in long.reason and "#9" in long.reason


def test_cutoff_boundary_reaching_the_start_exactly_skips():
    window = Window(1, NOW + minutes(10), NOW + minutes(20))
    assert not run_decision(windows=[window], estimate_seconds=8 * 60, margin=120).run
    assert run_decision(windows=[window], estimate_seconds=8 * 60 - 1, margin=120).run


def test_rollout_exempt_row_ignores_deploy_and_windows_but_not_disable():
    exempt = row(1, "publish-distro", rollout_exempt=True)
    window = Window(1, NOW - minutes(1), NOW + minutes(30))
    assert run_decision([exempt], deploy=DeployState(True), windows=[window]).run
    disabled = row(1, "publish-distro", enabled=False, rollout_exempt=True)
    assert not run_decision([disabled]).run


# Exhaustive properties ---------------------------------------------------------

_patterns = st.sampled_from(["*", "publish-*", "publish-distro", "*-distro", "p?blish-distro",
                             "other", "web1", "web?", "db*"])
_rows = st.lists(st.builds(
    PolicyRow, id=st.integers(1, 50), name=_patterns, host=st.sampled_from(["*", "web1", "web*", "db1"]),
    enabled=st.booleans(), reason=st.just(""), expected_runtime=st.none(),
    rollout_exempt=st.booleans(), changed_by=st.just(""), changed_at=st.none()), max_size=6,
    unique_by=lambda r: r.id)
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
    decision = decide(name, host, NOW, rows, DeployState(pending), windows,
                      Estimate(estimate_seconds, "test"), margin=margin)
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
    assert decision.run is (not expected_skip)
    assert decision.reason
    # The winner outranks every other matching row.
    if winner is not None:
        for other in matching[1:]:
            assert policy._precedence(winner) > policy._precedence(other)


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
    assert estimate.seconds == 600.0
    assert "p95" in estimate.source and "20" in estimate.source


def test_estimate_falls_back_policy_then_script_then_default():
    assert estimate_runtime([5.0], policy_runtime=900, script_runtime=60, min_runs=3,
                            policy_id=4).seconds == 900
    assert "policy #4" in estimate_runtime([5.0], policy_runtime=900, min_runs=3, policy_id=4).source
    assert estimate_runtime([5.0], script_runtime=60, min_runs=3).seconds == 60
    default = estimate_runtime([], default=1800)
    assert default.seconds == 1800 and "default" in default.source


def test_policy_runtime_comes_from_the_most_specific_row_that_sets_one():
    rows = [row(1, "*", expected_runtime=100.0), row(2, "publish-*", expected_runtime=200.0),
            row(3, "publish-distro")]
    assert policy.policy_runtime(matching_policies(rows, "publish-distro", "h")) == (200.0, 2)


def test_decide_from_inputs_uses_history_for_the_cutoff():
    from cronpolicy.store import DecisionInputs
    window = Window(1, NOW + minutes(10), NOW + minutes(40))
    slow_history = DecisionInputs(NOW, 1, CLEAR, [], [window], [20 * 60.0] * 20)
    fast_history = DecisionInputs(NOW, 1, CLEAR, [], [window], [30.0] * 20)
    assert not policy.decide_from_inputs(slow_history, "job", "h", script_runtime=10).run
    assert policy.decide_from_inputs(fast_history, "job", "h", script_runtime=3600).run
