"""deploy slot's answers stay what they were through its speed-ups
(issue 26.6): the fleet of slot_fleet.py, planned in this process, gives
exactly the JSON the planner gave before them (data/slots-reference.json,
written by that code), and each shortcut agrees with what it shortcuts
on generated input."""

import bisect
import datetime
import json
import os

from hypothesis import given, settings as hypothesis_settings, strategies as st

from cronpolicy import policy
from cronpolicy.tooling import planning
from cronpolicy.config import Settings
from cronpolicy.matching import IndexedRows, matching_policies
from cronpolicy.rows import PolicyRow
from cronpolicy.tooling.output import _jsonable
from cronpolicy.tooling.rollout_plans import propose

from . import slot_fleet

KNOBS = Settings(dsn="sqlite:////nonexistent/x.sqlite")
REFERENCE = os.path.join(os.path.dirname(__file__), "data", "slots-reference.json")
DEEP = int(os.environ.get("CRONPOLICY_FUZZ_EXAMPLES", "0"))


def answers(policies=None):
    found = []
    for duration, within, host, script, service, count in slot_fleet.QUESTIONS:
        jobs, flights = slot_fleet.fleet(policies)
        found.append(propose(KNOBS, jobs, flights, slot_fleet.NOW, duration, within, host,
                             script, service, count))
    return json.loads(json.dumps(found, default=_jsonable))


def test_the_slots_are_the_slow_planners_to_the_last_character():
    with open(REFERENCE) as handle:
        reference = json.load(handle)
    assert answers() == reference
    # The rows as the commands read them (indexed by name) change nothing.
    assert answers(IndexedRows(slot_fleet.POLICIES)) == reference


NAMES = st.sampled_from(["sync", "publish-distro", "publish-*", "*", "p?blish-distro", "*-distro",
                         "sync*", "s?nc", "report"])
HOSTS = st.sampled_from(["*", "web1", "web?", "db*", "web2"])
ROWS = st.lists(st.builds(lambda name, host, enabled: (name, host, enabled), NAMES, HOSTS,
                          st.booleans()), max_size=12)


@hypothesis_settings(max_examples=DEEP or 200, deadline=None, derandomize=not DEEP)
@given(rows=ROWS, name=st.sampled_from(["sync", "publish-distro", "report", "x"]),
       host=st.sampled_from(["web1", "web2", "db1"]))
def test_indexed_rows_match_as_every_row_looked_at(rows, name, host):
    made = [PolicyRow(id=index + 1, name=row[0], host=row[1], enabled=row[2])
            for index, row in enumerate(rows)]
    indexed = IndexedRows(made)
    first = matching_policies(indexed, name, host)
    assert first == matching_policies(made, name, host)
    first.append("changed by its caller")      # (each answer is the caller's own list)
    assert matching_policies(indexed, name, host) == matching_policies(made, name, host)


@hypothesis_settings(max_examples=DEEP or 30, deadline=None, derandomize=not DEEP)
@given(minutes=st.integers(0, 36 * 60), duration=st.integers(1, 240),
       host=st.sampled_from(["*", "web*", "db1"]), service=st.sampled_from([None, "xmlrpc"]))
def test_the_skipped_starts_are_those_the_rules_skip_start_by_start(minutes, duration, host,
                                                                     service):
    """The planner works with each job's matching rows only, from its own
    look-back: the same starts as asking the rules at every start of
    every job with every row, with and without the rollout."""
    jobs, flights = slot_fleet.fleet()
    now = slot_fleet.NOW
    start = now + datetime.timedelta(minutes=minutes)
    rollout = planning.Rollout(start, duration * 60.0, host, "*", service)
    until = planning.ends_at(rollout) + datetime.timedelta(hours=1)
    planner = planning.Planner(jobs, flights, KNOBS, now, until)
    window = planning.rollout_window(rollout)
    expected = []
    for job in jobs:
        facts = planning.job_facts(job)
        if job.schedule is None or not planning.covers(
                rollout, job.name, job.host, policy.effective_needs(job.inputs, facts)):
            continue
        # The estimate reads neither the moment nor the windows: the one
        # decide() would work out at each start, worked out once.
        estimate = policy.runtime_estimate(job.inputs, facts, KNOBS)
        for moment in _starts(job, window.ends_at):
            if not _runs_alone(job, facts, estimate, moment):
                continue
            with_it = job.inputs._replace(now=moment, windows=list(job.inputs.windows) + [window])
            verdict = policy.decide(with_it, facts, KNOBS, estimate)
            if not verdict.run and verdict.block == policy.window_block(window):
                expected.append((moment, job.name, job.host, verdict.code))
    found = [(skipped.at, skipped.name, skipped.host, skipped.code)
             for skipped in planner.cost(rollout).skipped]
    assert found == sorted(expected)


# The fleet is the same in every example: what a start does without the
# rollout, and the starts themselves, are worked out once for all of them.
_STARTS = {}
_ALONE = {}


def _starts(job, end):
    """job.schedule.starts_between(slot_fleet.NOW, end), from the starts of
    the next two days (or up to ``end``) asked once."""
    key = (job.name, job.host)
    horizon, starts = _STARTS.get(key, (None, None))
    if horizon is None or horizon < end:
        horizon = max(end, slot_fleet.NOW + datetime.timedelta(days=2))
        starts = job.schedule.starts_between(slot_fleet.NOW, horizon)
        _STARTS[key] = horizon, starts
    return starts[:bisect.bisect_left(starts, end)]


def _runs_alone(job, facts, estimate, moment):
    key = (job.name, job.host, moment)
    if key not in _ALONE:
        _ALONE[key] = policy.decide(job.inputs._replace(now=moment), facts, KNOBS, estimate).run
    return _ALONE[key]


def test_the_ranking_weighs_each_candidate_as_its_exact_cost_does():
    """The ranking (jobs alike on several hosts weighed once, every start
    asked only of the candidates it can meet) against cost() of every
    candidate, every job asked."""
    from cronpolicy.tooling.rollout_plans import _alike
    jobs, flights = slot_fleet.fleet()
    now = slot_fleet.NOW
    until = now + datetime.timedelta(hours=12)
    ranking = planning.Planner(_alike(jobs), flights, KNOBS, now, until)
    exact = planning.Planner(jobs, flights, KNOBS, now, until)
    assert len(ranking.jobs) < len(jobs)
    for duration, service in ((1800.0, None), (600.0, "xmlrpc"), (5400.0, None)):
        template = planning.Rollout(now, duration, service=service)
        moments = ranking.candidate_starts(8 * 3600, 300, template)
        assert ranking.rank_keys(template, moments) == [
            (planning.rank_key(exact.cost(template._replace(starts_at=moment))), moment)
            for moment in moments]
