"""Planning a rollout around schedules (issue 15.2, 15.3), as pure
functions: cases worked out by hand, and properties of the slot finder."""

import datetime
import os

from hypothesis import given, settings as hypothesis_settings, strategies as st

from cronpolicy.tooling import planning
from cronpolicy.config import Settings
from cronpolicy.tooling.planning import Flight, Job, Planner, Rollout
from cronpolicy.rows import DeployState, Inputs, PolicyRow
from cronpolicy.schedule import Schedule

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 3, 1, 50, tzinfo=UTC)
KNOBS = Settings(dsn="sqlite:////nonexistent/x.sqlite", cutoff_margin=120)
DEEP = int(os.environ.get("CRONPOLICY_FUZZ_EXAMPLES", "0"))


def at(hour, minute=0):
    return NOW.replace(hour=hour, minute=minute)


def job(name, expression, minutes, host="web1", policies=(), starving=0):
    inputs = Inputs(NOW, 13, DeployState(False), list(policies), [], [])
    return Job(name, host, Schedule(expression) if expression else None, minutes * 60.0,
               inputs, starving)


PUBLISHER = job("publish-distro", "0 * * * *", 20)


def test_a_start_whose_run_would_reach_the_rollout_is_skipped_and_the_next_one_runs():
    planner = Planner([PUBLISHER], [], KNOBS, NOW, at(4))
    [skipped] = planner.skipped_starts(PUBLISHER, Rollout(at(2, 10), 1800))
    assert (skipped.at, skipped.code, skipped.next_start) == (at(2), "window-cutoff", at(3))
    # 02:00 + 20m + 2m margin ends before 02:25: nothing skipped.
    assert planner.skipped_starts(PUBLISHER, Rollout(at(2, 25), 1800)) == []
    # The rollout itself skips the 03:00 start (in the window).
    [inside] = planner.skipped_starts(PUBLISHER, Rollout(at(2, 50), 1800))
    assert (inside.at, inside.code) == (at(3), "in-window")


def test_the_best_slot_avoids_the_publisher_and_says_so():
    planner = Planner([PUBLISHER], [], KNOBS, NOW, at(6))
    [(best, cost)] = planner.best_slots(1800, within=2 * 3600, step=300, count=1)
    assert (best, cost.wait, cost.weight) == (at(2, 25), 0.0, 0.0)
    from cronpolicy.tooling.rollout_plans import reasons
    assert "avoids publish-distro 02:00-02:20" in reasons(planner, Rollout(best, 1800), cost)


def test_a_skipped_daily_start_weighs_more_than_a_skipped_five_minute_one():
    daily, often = job("nightly", "0 2 * * *", 10), job("sync", "*/5 * * * *", 1)
    planner = Planner([daily, often], [], KNOBS, NOW, at(8))
    rollout = Rollout(at(1, 55), 600)
    cost = planner.cost(rollout)
    assert {start.name for start in cost.skipped} == {"nightly", "sync"}
    assert planner.skip_weight(daily) == 86400 and planner.skip_weight(often) == 300
    assert cost.weight == 86400 + 300 * sum(1 for s in cost.skipped if s.name == "sync")


def test_waiting_for_a_run_that_cannot_be_interrupted_ranks_below_skipping_runs():
    flight = Flight("publish-distro", "web2", at(1, 30), at(2, 40), interruptible=False)
    planner = Planner([PUBLISHER], [flight], KNOBS, NOW, at(8))
    (best, cost), = planner.best_slots(1800, within=3 * 3600, step=300, count=1)
    assert cost.wait == 0 and best >= at(2, 40)
    assert planner.cost(Rollout(at(2, 25), 1800)).wait == 15 * 60
    interruptible = flight._replace(interruptible=True)
    planner = Planner([PUBLISHER], [interruptible], KNOBS, NOW, at(8))
    assert planner.cost(Rollout(at(2, 25), 1800)).wait == 0


def test_a_rollout_covers_only_its_hosts_and_scripts():
    planner = Planner([PUBLISHER], [], KNOBS, NOW, at(4))
    assert planner.skipped_starts(PUBLISHER, Rollout(at(2, 10), 1800, host="db*")) == []
    assert planner.skipped_starts(PUBLISHER, Rollout(at(2, 10), 1800, script="sync")) == []


def test_exempt_and_disabled_scripts_are_never_skipped_by_the_rollout():
    exempt = job("publish-distro", "0 * * * *", 20,
                 policies=[PolicyRow(id=1, name="publish-*", rollout_exempt=True)])
    disabled = job("publish-distro", "0 * * * *", 20,
                   policies=[PolicyRow(id=2, name="publish-*", enabled=False)])
    for found in (exempt, disabled):
        planner = Planner([found], [], KNOBS, NOW, at(4))
        assert planner.skipped_starts(found, Rollout(at(2, 10), 1800)) == []


def test_starving_a_job_once_more_outweighs_any_skip():
    starved = job("mirror", "30 * * * *", 5, starving=planning.STARVING_AFTER - 1)
    planner = Planner([starved, PUBLISHER], [], KNOBS, NOW, at(8))
    cost = planner.cost(Rollout(at(2, 20), 1800))
    assert cost.starved == [("mirror", "web1")] and cost.weight > planning.STARVING_WEIGHT
    best, = planner.best_slots(1800, within=4 * 3600, step=300, count=1)
    assert best[1].starved == []


def test_overdue_by_schedule_waits_for_the_run_to_have_had_its_time():
    hourly = Schedule("0 * * * *")
    # 02:30: the 02:00 run had 20m + 5m; it should have succeeded.
    late, due = planning.overdue_by_schedule(hourly, at(1, 0), 1200, 300, at(2, 30))
    assert (late, due) == (True, at(2))
    # 02:10: the 02:00 run may still be going; the 01:00 one counts.
    late, due = planning.overdue_by_schedule(hourly, at(1, 0), 1200, 300, at(2, 10))
    assert (late, due) == (False, at(1))
    assert planning.overdue_by_schedule(hourly, None, 60, 60, at(2, 30))[0] is True
    # Known only since 02:10 (registered then): the 02:00 start was nobody's to miss.
    assert planning.overdue_by_schedule(hourly, None, 60, 60, at(2, 30),
                                        known_since=at(2, 10))[0] is False


# The slot finder's promise ---------------------------------------------------------------

SCHEDULES = st.sampled_from(["0 * * * *", "*/15 * * * *", "30 2 * * *", "*/5 * * * *",
                             "10,40 * * * *", "0 */3 * * *", None])
JOBS = st.lists(st.tuples(SCHEDULES, st.integers(1, 90), st.sampled_from(["web1", "web2"])),
                max_size=5)
FLIGHTS = st.lists(st.tuples(st.integers(0, 10 * 60), st.booleans(),
                             st.sampled_from(["web1", "web2"])), max_size=4)


@hypothesis_settings(max_examples=DEEP or 60, deadline=None, derandomize=not DEEP)
@given(jobs=JOBS, flights=FLIGHTS, duration=st.integers(5, 120), within=st.integers(1, 8))
def test_no_slot_that_waits_is_proposed_when_one_that_does_not_exists(jobs, flights, duration,
                                                                     within):
    made = [job("job-%d" % index, expression, minutes, host)
            for index, (expression, minutes, host) in enumerate(jobs)]
    flown = [Flight("long-%d" % index, host, NOW, NOW + datetime.timedelta(minutes=minutes),
                    interruptible) for index, (minutes, interruptible, host) in enumerate(flights)]
    horizon = within * 3600
    planner = Planner(made, flown, KNOBS, NOW, NOW + datetime.timedelta(
        seconds=horizon + duration * 60 + 7200))
    [(best, cost)] = planner.best_slots(duration * 60, within=horizon, step=300, count=1)
    # Brute force, minute by minute: is there a start within the horizon
    # that waits for nothing?
    free = any(planner.cost(Rollout(NOW + datetime.timedelta(minutes=minute), duration * 60))
               .wait == 0 for minute in range(0, horizon // 60 + 1, 1))
    if free:
        assert cost.wait == 0, (best, cost.waits)
    # And nothing on the grid it looked at beats it.
    for minute in range(0, horizon // 60 + 1, 5):
        other = planner.cost(Rollout(NOW + datetime.timedelta(minutes=minute), duration * 60))
        assert planning.rank_key(other) >= planning.rank_key(cost)


# Slots on the marks, each avoided job named once (issue 26.13) ------------------------------

def test_slots_fall_on_the_five_minute_marks():
    """docs/operators.txt promises starts on the 5-minute marks; the search also
    weighed now itself (01:52:13.5) and each run's expected end."""
    now = NOW.replace(minute=52, second=13, microsecond=500000)
    flight = Flight("migrate", "web2", now, now.replace(hour=2, minute=7, second=30),
                    interruptible=False)
    for flights, first in (([], now.replace(minute=55, second=0, microsecond=0)),
                           ([flight], at(2, 10))):
        planner = Planner([], flights, KNOBS, now, now + datetime.timedelta(hours=8))
        found = planner.best_slots(1800, within=3 * 3600, step=300, count=3)
        assert [start.second + start.microsecond for start, _ in found] == [0, 0, 0]
        assert all(start.minute % 5 == 0 for start, _ in found)
        assert found[0][0] == first and found[0][1].wait == 0


def test_each_avoided_job_is_named_once():
    """The same job on two hosts (or two runs of one job) near a slot was
    named twice: "avoids publish-distro 02:00-02:20" on two lines."""
    from cronpolicy.tooling.rollout_plans import reasons
    jobs = [PUBLISHER, job("publish-distro", "0 * * * *", 20, host="web2"),
            job("mirror", "*/30 * * * *", 4)]
    planner = Planner(jobs, [], KNOBS, NOW, at(6))
    rollout = Rollout(at(2, 25), 1800)
    said = [line.split()[1] for line in reasons(planner, rollout, planner.cost(rollout))
            if line.startswith("avoids ")]
    assert sorted(said) == ["mirror", "publish-distro"]


def test_jobs_weighed_once_for_many_hosts_are_alike_under_standing_windows_too():
    """deploy slot ranks one job for the hosts that run a script alike; a
    standing window over some of them (db*) made their starts count as
    skipped by the rollout, though that window skips them anyway."""
    from cronpolicy.rows import Window
    from cronpolicy.tooling.rollout_plans import _alike
    maintenance = Window(id=9, starts_at=at(3), ends_at=at(5), host="db*")
    jobs = [job("sync", "*/5 * * * *", 1, host=host)._replace(
        inputs=Inputs(NOW, 13, DeployState(False), [], [maintenance], []))
        for host in ("web1", "db1", "db2")]
    until = at(12)
    ranking = Planner(_alike(jobs), [], KNOBS, NOW, until)
    exact = Planner(jobs, [], KNOBS, NOW, until)
    template = Rollout(NOW, 1800)
    moments = ranking.candidate_starts(6 * 3600, 300, template)
    assert ranking.rank_keys(template, moments) == [
        (planning.rank_key(exact.cost(template._replace(starts_at=moment))), moment)
        for moment in moments]
