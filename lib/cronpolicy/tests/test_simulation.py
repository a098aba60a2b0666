"""cronpolicy simulate (issue 17): cases worked out by hand through the real
command, the invariants on the reference fleet, determinism, bad input, and
fleets read from the policy database on both backends."""

import datetime
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from cronpolicy.tooling import simulation
from cronpolicy.config import Settings
from cronpolicy.tooling.simulate import command as simulate_command, inputs, play
from cronpolicy.tooling.crontab.files import MAX_BYTES
from cronpolicy.tooling.cli import main

from .conftest import once_per_run, wait_for

# Beside the source tree in a checkout; in the current directory when the
# suite runs from an installed copy (README's test command, from the checkout).
REFERENCE = next((path for path in (
    os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, os.pardir,
                 "benchmarks", "workload", "fleet.json"),
    os.path.join("benchmarks", "workload", "fleet.json")) if os.path.exists(path)),
    "benchmarks/workload/fleet.json (run the tests from the top of a checkout)")
BEGIN = play.DEFAULT_BEGIN
SHORT_FLEET_DAYS = 2


def run_command(capsys, *argv):
    code = main(["simulate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def crontab(tmp_path, text, name="web1"):
    path = tmp_path / name
    path.write_text(text)
    return "%s=%s" % (name, path)


def figures(capsys, *argv):
    code, out, err = run_command(capsys, "--json", "--days", "1", "--margin", "2m", *argv)
    assert code == 0, err
    return json.loads(out)


def at(hour, minute):
    return (BEGIN + datetime.timedelta(hours=hour, minutes=minute)).isoformat()


# Cases worked out by hand ---------------------------------------------------------------

#: An hourly 20-minute publisher that must not be interrupted, and a
#: 10-second job every 5 minutes.  Runtimes do not vary (p95 = median).
PUBLISHER_AND_TICK = "0 * * * * publish-distro\n*/5 * * * * tick\n"
MODELS = ("--model", "publish-distro=20m,20m,false", "--model", "tick=10s,10s,false")


@pytest.mark.integration
def test_by_hand_a_rollout_at_ten_past_nine(tmp_path, capsys):
    """Ready at 09:10, a deploy of 30m, crontabs off 5m before (a):

    a. pending from 09:05: the publisher's 09:00 run is awaited to 09:20
       (stall 10m); the ticks 09:05 to 09:45 are skipped (9);
    b. the switch at 09:10: the same wait; ticks 09:10 to 09:45 skipped (8);
    c. the window known a day ahead cuts the 09:00 publisher off (20m and
       2m of margin reach 09:10): no stall; ticks 09:10 to 09:35 skipped,
       and the publisher: 7;
    d. the best slot within the hour, tried every 10m, is 09:30: the 09:00
       run ends 09:20 (and 09:22 with its margin), and no publisher start
       falls in 09:30 to 10:00; only the ticks 09:30 to 09:55 are skipped
       (6); the move is 20m of stall."""
    result = figures(capsys, "--crontab", crontab(tmp_path, PUBLISHER_AND_TICK), *MODELS,
                     "--at", at(9, 10), "--lead", "5m", "--duration", "30m",
                     "--tolerance", "1h", "--step", "10m")
    strategies = result["strategies"]
    expected = {"all-stop": (600, 9, 0), "on-off": (600, 8, 0), "cronpolicy": (0, 7, 1),
                "cronpolicy-slot": (1200, 6, 0)}
    for name, (stall, skipped, hourly) in expected.items():
        figure = strategies[name]
        assert figure["rollouts"] == 1
        assert figure["stall_seconds"]["max"] == pytest.approx(stall), name
        assert figure["skipped_starts"] == skipped, name
        assert figure["skipped_by_frequency"]["up to hourly"] == hourly, name
        assert figure["killed_while_unsafe"] == 0 and figure["job_minutes_lost"] == 0, name
    assert strategies["cronpolicy-slot"]["moved_seconds"]["max"] == pytest.approx(1200)
    assert result["instances"] == 2 and result["hosts"] == 1


@pytest.mark.integration
@pytest.mark.parametrize("interruptible, c_stall, c_lost, c_interrupted, c_stopped", [
    ("false", 40 * 60, 0.0, 0, 0),  # awaited to its natural end at 09:50
    ("true", 0, 10.0, 0, 1),        # stopped at once, its 10 minutes lost
    ("safe:5m", 5 * 60, 0.0, 1, 0),  # stopped at its next safe point, 09:15
])
def test_by_hand_a_long_run_already_going_when_the_rollout_comes(
        tmp_path, capsys, interruptible, c_stall, c_lost, c_interrupted, c_stopped):
    """A 50-minute hourly job started at 09:00; the rollout ready at 09:10 is
    announced only then (--announce 0), so nothing was cut off.  a and b
    await it for --max-wait (30m) and kill it at 09:40 (unsafe unless it may
    be interrupted; 40 job-minutes lost); c stops it as it allows, or waits."""
    result = figures(capsys, "--crontab", crontab(tmp_path, "0 * * * * long-job\n"),
                     "--model", "long-job=50m,50m,%s" % interruptible, "--at", at(9, 10),
                     "--lead", "5m", "--announce", "0", "--max-wait", "30m",
                     "--strategies", "a,b,c")
    strategies = result["strategies"]
    assert sorted(strategies) == ["all-stop", "cronpolicy", "on-off"]
    for name in ("all-stop", "on-off"):
        figure = strategies[name]
        assert figure["stall_seconds"]["max"] == pytest.approx(1800), name
        assert figure["killed"] == 1, name
        assert figure["killed_while_unsafe"] == (0 if interruptible == "true" else 1), name
        assert figure["job_minutes_lost"] == pytest.approx(40.0), name
    figure = strategies["cronpolicy"]
    assert figure["stall_seconds"]["max"] == pytest.approx(c_stall)
    assert figure["job_minutes_lost"] == pytest.approx(c_lost)
    assert figure["interrupted_at_safe_points"] == c_interrupted
    assert figure["stopped_at_once"] == c_stopped
    assert figure["killed"] == 0 and figure["killed_while_unsafe"] == 0


@pytest.mark.integration
def test_by_hand_the_slot_stays_within_the_tolerance_on_a_sparse_fleet(tmp_path, capsys):
    """A weekly job (Sunday midnight) and two rollouts on Tuesday and
    Wednesday: nothing runs near either, so d starts each at once (it used
    to announce the second from the next undecided start, days later)."""
    result = figures(capsys, "--crontab", crontab(tmp_path, "0 0 * * 0 weekly\n"),
                     "--model", "weekly=1m,2m", "--days", "7", "--at", at(36, 0),
                     "--at", at(60, 0))
    for name, figure in result["strategies"].items():
        assert figure["rollouts"] == 2, name
        assert figure["stall_seconds"]["max"] == 0, name
    assert result["strategies"]["cronpolicy-slot"]["moved_seconds"]["max"] == 0


@pytest.mark.integration
def test_by_hand_no_rollout_no_stall_no_skip(tmp_path, capsys):
    result = figures(capsys, "--crontab", crontab(tmp_path, PUBLISHER_AND_TICK), *MODELS,
                     "--rollouts", "0")
    for name, figure in result["strategies"].items():
        assert figure["rollouts"] == 0 and figure["skipped_starts"] == 0, name
        assert figure["stall_seconds"] == {"p50": None, "p95": None, "max": None}
        assert figure["runs"] == 24 + 24 * 12, name


# Invariants on the reference fleet --------------------------------------------------------

@pytest.fixture(scope="module")
def reference_play():
    """Seeded, so the same in every worker: played once in the run (11 s)."""
    def played():
        instances = inputs.load_fleet(REFERENCE)
        states, readies = play.run(instances, Settings(), days=SHORT_FLEET_DAYS, rollouts=12,
                                   seed=7, workers=1)
        return instances, states, readies
    return once_per_run("reference-play", played)


def test_no_strategy_starts_a_job_inside_a_rollout(reference_play):
    _, states, _ = reference_play
    knobs = simulation.Knobs()
    for name, state in states.items():
        assert state.outcomes, name
        for outcome in state.outcomes:
            blocked_from = outcome.ready - datetime.timedelta(seconds=knobs.lead) \
                if name == "all-stop" else outcome.start
            inside = [run for run in state.runs
                      if blocked_from <= run.start < outcome.deploy_end]
            assert not inside, (name, outcome, inside[:3])


def test_cronpolicy_never_kills_a_run_and_the_switches_do(reference_play):
    _, states, _ = reference_play
    for name in ("cronpolicy", "cronpolicy-slot"):
        figure = simulation.summary(states[name])
        assert figure["killed_while_unsafe"] == 0 and figure["killed"] == 0, name
        assert figure["interrupted_at_safe_points"] > 0, name
    # Not a vacuous zero: the same fleet under the switches kills unsafe runs.
    assert sum(simulation.summary(states[name])["killed_while_unsafe"]
               for name in ("all-stop", "on-off")) > 0


def test_every_scheduled_start_either_ran_or_was_skipped(reference_play):
    _, states, _ = reference_play
    for name, state in states.items():
        scheduled = sum(len(starts) for starts in state.fleet.starts)
        assert len(state.runs) + len(state.skips) == scheduled, name
        assert all(run.start <= run.end <= run.natural_end for run in state.runs), name


def test_a_run_ends_where_its_outcome_says(reference_play):
    _, states, _ = reference_play
    for name, state in states.items():
        for run in state.runs:
            if run.outcome == "succeeded":
                assert run.end == run.natural_end and run.lost == 0
            else:
                assert run.end < run.natural_end, (name, run)


def test_the_slot_chosen_among_the_best_only_is_the_best_of_the_full_ranking(reference_play):
    """The planner drops a candidate once it cannot beat the best so far
    (count=1); ranking every candidate must put the same one first."""
    instances, states, readies = reference_play
    fleet = states["cronpolicy-slot"].fleet
    knobs = simulation.Knobs()
    state = simulation._Strategy(fleet, "cronpolicy-slot", knobs, Settings())
    for ready in readies[:6]:
        state.advance(ready - datetime.timedelta(hours=2))
        planner = state.planner(ready, ready - datetime.timedelta(hours=2))
        [(best, best_cost)] = planner.best_slots(knobs.duration, within=knobs.tolerance,
                                                 step=knobs.step, count=1, earliest=ready)
        ranked = planner.best_slots(knobs.duration, within=knobs.tolerance, step=knobs.step,
                                    count=7, earliest=ready)
        assert ranked[0][0] == best, ready
        assert ranked[0][1] == best_cost


@pytest.mark.integration
def test_the_same_seed_gives_the_same_figures_and_another_seed_others():
    instances = inputs.load_fleet(REFERENCE)

    def played(seed, workers, detail=True):
        states, readies = play.run(instances, Settings(), days=1, rollouts=4, seed=seed,
                                       workers=workers, detail=detail)
        return readies, {name: simulation.summary(state) for name, state in states.items()}, \
            {name: (state.runs, state.skips, state.outcomes) for name, state in states.items()}
    first = played(3, 1)
    assert played(3, 2) == first        # in parallel processes or not
    readies, figures, details = played(3, 2, detail=False)
    assert (readies, figures) == first[:2]
    assert all(runs is None and skips is None for runs, skips, _ in details.values())
    assert played(4, 1)[:2] != first[:2]


@pytest.mark.integration
def test_a_worker_killed_is_one_error_not_a_wait_forever(monkeypatch):
    """kill -9 of the process playing one strategy (as the OOM killer
    would): an error naming it, within a bound (multiprocessing.Pool waited
    forever for the lost result)."""
    import signal
    from cronpolicy.errors import CronPolicyError
    real = simulation.simulate

    def dying(fleet, strategy, *args):
        if strategy == "on-off":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(fleet, strategy, *args)

    def hung(*_):
        raise AssertionError("still waiting for the killed worker after 120 s")
    monkeypatch.setattr(simulation, "simulate", dying)
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        with pytest.raises(CronPolicyError, match="simulation process died"):
            play.run(inputs.load_fleet(REFERENCE), Settings(), days=1, rollouts=2,
                         workers=2)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.integration
@pytest.mark.parametrize("how", ["played", "a worker died"])
def test_the_pool_is_gone_when_the_play_returns(monkeypatch, how):
    """Issue 26.13: 1 run in 10 to 20 of `cronpolicy simulate` printed a
    traceback at exit (OSError: Bad file descriptor in concurrent.futures'
    exit hook), racing the pool's manager thread that shutdown(wait=False)
    left closing its pipe.  Once run() returns (played, or refused because a
    worker died), no manager thread and no worker is left for that hook."""
    import concurrent.futures.process as pool_module
    import multiprocessing
    import threading
    from cronpolicy.errors import CronPolicyError
    before = set(multiprocessing.active_children())
    if how == "a worker died":
        import signal
        real = simulation.simulate

        def dying(fleet, strategy, *args):
            if strategy == "on-off":
                os.kill(os.getpid(), signal.SIGKILL)
            return real(fleet, strategy, *args)
        monkeypatch.setattr(simulation, "simulate", dying)
    try:
        play.run(inputs.load_fleet(REFERENCE), Settings(), days=0.25, rollouts=2,
                     workers=2)
    except CronPolicyError:
        assert how == "a worker died"
    assert [thread for thread in threading.enumerate()
            if isinstance(thread, pool_module._ExecutorManagerThread)] == []
    assert set(multiprocessing.active_children()) == before


@pytest.mark.integration
def test_no_run_of_the_command_prints_a_traceback_at_exit():
    """The same through the installed command, 20 times in a row, with two
    seeds (more plays than workers: the race showed in about 1 run in 10 to
    20; 0 in 30 of these after the fix, issue 28.5)."""
    command = [os.path.join(os.path.dirname(sys.executable), "cronpolicy"), "simulate",
               REFERENCE, "--days", "0.25", "--rollouts", "2", "--workers", "4",
               "--seeds", "2", "--strategies", "a,b,c"]
    for _ in range(20):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.integration
def test_the_picture_is_svg_with_every_strategy(tmp_path, capsys):
    picture = tmp_path / "stalls.svg"
    code, out, err = run_command(capsys, REFERENCE, "--days", "1", "--rollouts", "3",
                                 "--svg", str(picture))
    assert code == 0, err
    root = ElementTree.parse(picture).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = ["".join(element.itertext()) for element in root.iter()
             if element.tag.endswith("text")]
    from cronpolicy.tooling.simulation_picture import SHORT, TITLES
    for name in simulation.STRATEGIES:
        assert sum(text.startswith(TITLES[name] + ": stall ") for text in texts) == 1, name
        assert sum(text == SHORT[name] for text in texts) == 1, name    # the stalls' row
    assert "full rollouts, stall p95:                     a " in out


@pytest.mark.integration
def test_the_text_table_has_a_column_per_strategy_and_the_quote_line(capsys):
    code, out, err = run_command(capsys, REFERENCE, "--days", "1", "--rollouts", "2",
                                 "--strategies", "c,a")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("154 job instances on 21 hosts, 1 day from 2026-01-05")
    assert lines[2].split() == ["c.", "cronpolicy", "a.", "all-stop"]
    assert lines[3].startswith("full rollouts (database patches: everything stops): 2")
    assert any(line.strip().startswith("of them while unsafe") for line in lines)
    assert re.fullmatch(r"full rollouts, stall p95: +c \S+, a \S+", lines[-5]), lines[-5]
    assert lines[-4].startswith("full rollouts, runs killed while unsafe:") \
        and lines[-4].split(":")[1].split(",")[0].split() == ["c", "0"]


# Bad input ---------------------------------------------------------------------------------

def bad_inputs(tmp_path):
    table = tmp_path / "web1"
    table.write_text("0 * * * * publish-distro\n")
    not_json = tmp_path / "fleet.json"
    not_json.write_text("{hosts")
    no_hosts = tmp_path / "empty.json"
    no_hosts.write_text("{}")
    bad_model = tmp_path / "bad-model.json"
    bad_model.write_text(json.dumps({"hosts": {"web1": ["web1"]},
                                     "models": {"publish-distro": {"median": "x", "p95": 1}}}))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.json"
    huge.write_text(" " * (MAX_BYTES + 1))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000)
    odd_fleets = []
    for number, data in enumerate([{"hosts": {"web1": ["web1\u0000"]}},
                                   {"hosts": {"web1": ["web1"]},
                                    "models": {"publish-distro": {"median": "1m", "p95": "2m",
                                                                  "interruptible": 1}}},
                                   {"hosts": {"web1": ["web1"]},
                                    "models": {"publish-distro": {"median": True, "p95": 2}}},
                                   {"hosts": {"web1": ["web1"]}, "models": []},
                                   {"hosts": {"web1": "web1"}}, {"hosts": []}, [1],
                                   {"hosts": {"web1": ["web1"]}, "default_model": 5}]):
        odd_fleets.append(tmp_path / ("odd-%d.json" % number))
        odd_fleets[-1].write_text(json.dumps(data))
    host_twice = tmp_path / "host-twice.json"     # json.dumps cannot say a key twice
    host_twice.write_text('{"hosts": {"web1": ["web1"], "web1": ["twice"]}, '
                          '"default_model": {"median": 60, "p95": 120}}')
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"hosts": {"caf\xe9": []}}')
    twice = tmp_path / "twice"
    twice.write_text("# cronpolicy: name=same\n0 * * * * a\n# cronpolicy: name=same\n"
                     "5 * * * * b\n")
    busy = tmp_path / "busy"      # 20 jobs every minute: 2.6 million starts in 92 days
    busy.write_text("".join("* * * * * job%d\n" % number for number in range(20)))
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    good = ["--crontab", "web1=%s" % table, "--model", "publish-distro=20m,25m"]
    return [
        ["--crontab", "web1=%s" % (tmp_path / "missing"), "--default-model", "1m,2m"],
        ["--crontab", "web1=%s" % tmp_path, "--default-model", "1m,2m"],
        ["--crontab", "web1=-", "--default-model", "1m,2m"],
        ["--crontab", "web1=%s" % table, "--model", "publish-distro=20m,10m"],
        ["--crontab", "web1=%s" % table, "--model", "publish-distro=20m"],
        ["--crontab", "web1=%s" % table, "--model", "publish-distro=-1m,1m"],
        ["--crontab", "web1=%s" % table, "--model", "publish-distro=1m,2m,maybe"],
        ["--crontab", "web1=%s" % table, "--model", "publish-distro=1m,2m,safe:0s"],
        ["--crontab", "web1=%s" % table, "--model", "publish-distro=nan,inf"],
        ["--crontab", "web1=%s" % table],                       # no model for the job
        good + ["--rollouts", "-1"],
        good + ["--rollouts", "many"],
        good + ["--days", "0"],
        good + ["--days", "-3"],
        good + ["--days", "nan"],
        good + ["--days", "1000"],
        good + ["--days", "1", "--rollouts", "100"],            # they do not fit in a day
        good + ["--duration", "0"],
        good + ["--lead", "-5m"],
        good + ["--max-wait", "forever"],
        good + ["--tolerance", "30d"],
        good + ["--step", "1s"],
        good + ["--margin", "2d"],
        good + ["--strategies", "a,z"],
        good + ["--at", "yesterday"],
        good + ["--at", "2031-01-01T00:00Z"],
        good + ["--start", "1 January"],
        good + ["--workers", "0"],
        good + ["--seed", "\udcff"],                          # a byte that was not UTF-8
        good + ["--seed", "a\nb"],
        good + ["--start", "0001-01-01"],
        good + ["--start", "9999-12-31"],
        good + ["--start", "now"],
        good + ["--svg", str(tmp_path)],                        # a directory
        good + ["--model", "publish-distr=1m,2m"],              # a model for no job
        good + ["--days", "92", "--rollouts", "1000", "--tolerance", "14d", "--step", "60"],
        ["--crontab", "web1=%s" % table, "--model", "publish-distro=1e-300,3e9"],
        ["--crontab", "web1=%s" % table, "--model", "publish-distro=1,3e9"],
        ["--crontab", "web1=%s" % table, "--model", "publish-distro=50m,50m,safe:1e-320"],
        ["--crontab", "web1=%s" % twice, "--default-model", "1m,2m"],
        ["--crontab", "web1=%s" % empty, "--default-model", "1m,2m"],
        ["--crontab", "web1=%s" % busy, "--default-model", "1m,2m", "--days", "92"],
        ["--crontab", "web\x01=%s" % table, "--default-model", "1m,2m"],
        good + ["--svg", str(tmp_path / "no-such-dir" / "x.svg")],
        good + ["--svg", ""],                                   # was ignored
        good + ["--svg", str(tmp_path / "no-such-dir") + "/"],  # refused only after the play
        good + ["--duration", "2d"],
        [str(host_twice)],
        ["--crontab", "web1=/dev/zero", "--default-model", "1m,2m"],   # never ends
        ["--crontab", "web1=%s" % fifo, "--default-model", "1m,2m"],    # nobody writes
        [str(huge)],
        [str(deep)],
        [str(latin)],
        [str(tmp_path / "missing.json")],
        [str(not_json)],
        [str(no_hosts)],
        [str(bad_model)],
        [],                                                     # no fleet at all
        [REFERENCE, "--crontab", "web1=%s" % table],            # two fleets
        [REFERENCE, "--model", "x=1m,2m"],                      # models go with --crontab
    ] + [[str(path)] for path in odd_fleets]


def test_bad_input_gets_one_line_and_exit_2(tmp_path, capsys):
    for argv in bad_inputs(tmp_path):
        code, out, err = run_command(capsys, *argv)
        assert code == 2, (argv, code, err)
        assert out == "", argv
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    assert not os.path.exists(tmp_path / "no-such-dir")


@pytest.mark.integration
def test_a_name_comment_that_is_not_utf8_is_not_used_as_wrap_does_not(tmp_path, capsys):
    """Issue 26.7: crontab wrap no longer writes such a name (the gate would
    refuse it); the play names the job as wrap does, after its program."""
    latin_name = tmp_path / "latin-name"
    latin_name.write_bytes(b"# cronpolicy: name=ab\xff\n0 * * * * /bin/x\n")
    code, out, err = run_command(capsys, "--crontab", "web1=%s" % latin_name,
                                 "--model", "x=1m,2m", "--days", "1", "--rollouts", "1")
    assert code == 0, err


@pytest.mark.integration
def test_bad_input_through_the_installed_command(tmp_path):
    """The real process: exit 2 and one line, for a negative count."""
    process = subprocess.run(
        [sys.executable, "-m", "cronpolicy.tooling.cli", "simulate", REFERENCE,
         "--rollouts", "-4"], capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert process.stdout == "" and len(process.stderr.strip().splitlines()) == 1


# From the policy database -------------------------------------------------------------------

def test_a_fleet_from_the_database_uses_its_schedules_and_history(cli, dba):
    minutes = "interval '20 minutes'" if dba.backend == "postgresql" else "1200"
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule, expected_runtime)"
                " VALUES ('publish-distro', '0 * * * *', %s)" % minutes)
    for index, seconds in enumerate((1100, 1150, 1200, 1250, 1300)):
        start = -50000 + index * 3600
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at,"
                    " finished_at, status, exit_code) VALUES ('publish-distro', 'web1', 1, {},"
                    " {}, 'succeeded', 0)".format(dba.now_plus(start),
                                                  dba.now_plus(start + seconds)))
    code, out, err = cli("simulate", "--from-database", "--days", "1", "--rollouts", "2",
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["instances"], result["hosts"]) == (1, 1)
    publisher = result["strategies"]["cronpolicy"]
    assert publisher["rollouts"] == 2 and publisher["killed_while_unsafe"] == 0
    assert publisher["runs"] + publisher["skipped_starts"] == 24


def test_a_fleet_from_the_database_is_decided_with_its_policy_rows(cli, dba):
    """A disabled script is skipped at every start, under every strategy
    (its policy row goes to the rules, as the gate reads it)."""
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule, enabled)"
                " VALUES ('tidy', '*/30 * * * *', false)")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule) VALUES ('report',"
                " '15 * * * *')")
    for name in ("tidy", "report"):
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                    " status, exit_code) VALUES ({}, 'web1', 1, {}, {}, 'succeeded', 0)".format(
                        "'%s'" % name, dba.now_plus(-5000), dba.now_plus(-4900)))
    code, out, err = cli("simulate", "--from-database", "--days", "1", "--rollouts", "1",
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["instances"] == 2
    for name, figure in result["strategies"].items():
        # 48 starts of tidy skipped as disabled; report runs 24 times less the rollout's.
        assert figure["runs"] + figure["skipped_starts"] < 48 + 24, name
        assert figure["runs"] <= 24, name


def test_a_runtime_a_policy_row_declares_cuts_a_start_off(cli, dba):
    """No history: the row's 50 minutes are the model (until history,
    the runtime declared is what the gate believes), and at the first
    start of the play no simulated history says otherwise.  The rules see
    the row: the 00:00 start would reach a rollout at 00:40, so c skips
    it, and 01:00 falls in the deploy (it ran, when only a model of 30
    minutes was looked at)."""
    minutes = "interval '50 minutes'" if dba.backend == "postgresql" else "3000"
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, schedule, expected_runtime)"
                " VALUES ('publish', 'web1', '0 * * * *', %s)" % minutes)
    code, out, err = cli("simulate", "--from-database", "--days", "1", "--at",
                         "2026-01-05T00:40Z", "--strategies", "c", "--json")
    assert code == 0, err
    figure = json.loads(out)["strategies"]["cronpolicy"]
    assert figure["skipped_starts"] == 2
    assert figure["stall_seconds"]["max"] == 0


def test_an_empty_database_is_said_in_one_line(cli):
    code, out, err = cli("simulate", "--from-database")
    assert code == 2 and out == ""
    assert "knows no schedules" in err and len(err.strip().splitlines()) == 1


def test_a_rollout_exempt_script_is_neither_awaited_nor_stopped(cli, dba):
    """A 30-minute hourly job (no history: the default runtime) whose row
    says rollout_exempt: the rollout ready at 00:10, announced only then,
    goes at once under c, as `deploy wait` never waits for it (it awaited
    the run to 00:30); a, which edits crontabs 5 minutes ahead, still
    awaits it."""
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule, rollout_exempt)"
                " VALUES ('backup', '0 * * * *', true)")
    code, out, err = cli("simulate", "--from-database", "--days", "1", "--at",
                         "2026-01-05T00:10Z", "--announce", "0", "--lead", "5m",
                         "--strategies", "a,c",
                         "--json")
    assert code == 0, err
    strategies = json.loads(out)["strategies"]
    assert strategies["cronpolicy"]["stall_seconds"]["max"] == 0
    assert strategies["cronpolicy"]["skipped_starts"] == 0      # it starts in the deploy too
    assert strategies["all-stop"]["stall_seconds"]["max"] == 20 * 60


def test_a_start_a_rollout_skipped_is_caught_up_once_when_its_policy_says_so(cli, dba):
    """A 5-minute job every 6 hours (catch_up = once): the 06:00 start
    falls in the deploy pending from 05:50 to 06:20 and is caught up at
    06:20 under c; a and b (crontabs edited) have no catch-up."""
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule, catch_up)"
                " VALUES ('report', '0 */6 * * *', 'once')")
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                " status, exit_code) VALUES ('report', 'web1', 1, {}, {}, 'succeeded', 0)".format(
                    dba.now_plus(-5000), dba.now_plus(-4700)))
    code, out, err = cli("simulate", "--from-database", "--days", "1", "--at",
                         "2026-01-05T05:50Z", "--announce", "0", "--duration", "30m",
                         "--strategies", "a,c", "--json")
    assert code == 0, err
    strategies = json.loads(out)["strategies"]
    played = strategies["cronpolicy"]
    assert (played["skipped_starts"], played["catch_up_runs"], played["runs"]) == (1, 1, 4)
    assert (strategies["all-stop"]["catch_up_runs"], strategies["all-stop"]["runs"]) == (0, 3)


@pytest.mark.integration
def test_rollouts_queued_past_the_end_of_the_play_are_not_played_and_said(tmp_path, capsys):
    """30 rollouts ready at noon on the first of two days, each deploy a
    day long: the first is played, the second waits for it to noon of the
    second day, and the others would begin past the end of the play: they
    are counted as not played (they were played after it, years on with
    longer deploys, until the dates overflowed into a traceback; and each
    counted as a stall of 0)."""
    tab = crontab(tmp_path, "*/5 * * * * tick\n")
    code, out, err = run_command(capsys, "--crontab", tab, "--model", "tick=10s,20s",
                                 "--start", "8999-12-01T00:00Z", "--days", "2",
                                 "--duration", "1d", "--json",
                                 *["--at", "8999-12-01T12:00Z"] * 30)
    assert code == 0, err
    for name, figure in json.loads(out)["strategies"].items():
        assert (figure["rollouts"], figure["queued"], figure["not_played"]) == (2, 1, 28), \
            name


@pytest.mark.integration
def test_a_play_too_long_to_wait_for_is_refused_at_once(tmp_path):
    """2000 jobs and 2000 rollouts a minute apart fit every other limit
    (days, starts, slots) and would play for hours."""
    path = tmp_path / "many"
    path.write_text("".join("0 0 * * * job-%d\n" % number for number in range(2000)))
    command = [os.path.join(os.path.dirname(sys.executable), "cronpolicy"), "simulate",
               "--crontab", "web1=%s" % path, "--default-model", "10s,20s", "--days", "7",
               "--rollouts", "2000", "--lead", "0", "--duration", "1m", "--strategies", "a,b,c"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert process.returncode == 2, process.stderr
    assert "too long" in process.stderr and len(process.stderr.strip().splitlines()) == 1


def test_more_than_the_most_rollouts_given_by_at_is_one_line_and_exit_2(
        tmp_path, capsys, monkeypatch):
    # The bound lowered: argparse reads N repeated options in O(N^2) time,
    # and 10,001 of them took 15 s of the unit layer to check the same line.
    monkeypatch.setattr(simulate_command, "MAX_ROLLOUTS", 20)  # above --rollouts 10 by default
    tab = crontab(tmp_path, "*/5 * * * * tick\n")
    code, out, err = run_command(capsys, "--crontab", tab, "--model", "tick=10s,20s",
                                 *["--at", at(12, 0)] * (simulate_command.MAX_ROLLOUTS + 1))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--at" in err


@pytest.mark.integration
def test_the_jobs_left_overdue_are_the_same_without_the_bound_that_skips_estimates(monkeypatch):
    """_count_overdue leaves out, before asking their estimate, the
    instances whose last success is within a minute of their last start
    (they cannot be overdue); asking every instance's estimate and
    overdue_by_schedule gives the same counts at every check."""
    from cronpolicy.tooling import simulation_starts
    instances = inputs.load_fleet(REFERENCE)

    def counts():
        states, _ = play.run(instances, Settings(), days=0.5, rollouts=3, seed=5, workers=1,
                             strategies=("all-stop", "cronpolicy"), warm_up=None)
        return {name: (state.overdue_at, state.overdue) for name, state in states.items()}
    bounded = counts()
    original = simulation_starts._Starts.__init__

    def unbounded(self, *args, **kwargs):
        original(self, *args, **kwargs)
        assert any(self.overdue_bounded)
        self.overdue_bounded = [False] * len(self.overdue_bounded)
    monkeypatch.setattr(simulation_starts._Starts, "__init__", unbounded)
    assert counts() == bounded
    assert all(overdue > 0 for _, overdue in bounded.values()), bounded


@pytest.mark.integration
def test_jobs_left_overdue_are_counted_at_one_moment_whatever_each_strategy_stalled(
        tmp_path, capsys):
    """A 50-minute unsafe hourly job and a rollout at 09:10 with a deploy of
    13h15m: a and b kill the run at 09:40, c awaits it to 09:50.  The count
    was taken an hour after each deploy ended (23:55 for a and b, 00:05,
    past the end of the play, for c, which then had none); now at the ready
    time plus a horizon the same for all (tolerance 0 + max-wait 30m + the
    deploy + 1h = 23:55), so each strategy is counted once."""
    result = figures(capsys, "--crontab", crontab(tmp_path, "0 * * * * long-job\n"),
                     "--model", "long-job=50m,50m", "--at", at(9, 10), "--announce", "0",
                     "--lead", "5m", "--max-wait", "30m", "--duration", "13h15m",
                     "--tolerance", "0")
    stalls = set()
    for name, figure in result["strategies"].items():
        assert figure["overdue_checks"] == 1, name
        assert figure["overdue_horizon_seconds"] == 14 * 3600 + 45 * 60
        stalls.add(figure["stall_seconds"]["max"])
    assert len(stalls) > 1          # the strategies did stall differently


# Stopping a play -------------------------------------------------------------------------

def _children(pid):
    """The pids whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


def _alive(pids):
    alive = set()
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


@pytest.mark.integration
@pytest.mark.parametrize("how", ["SIGTERM to the command", "Ctrl-C to its process group",
                                 "kill -9 of the command"])
def test_stopping_a_play_stops_its_workers_and_says_one_line(how):
    """Two workers play a fortnight of the reference fleet; the command is
    stopped as soon as both exist.  SIGTERM left them playing for good;
    Ctrl-C printed each worker's KeyboardInterrupt traceback."""
    import signal
    command = [os.path.join(os.path.dirname(sys.executable), "cronpolicy"), "simulate",
               REFERENCE, "--days", "14", "--rollouts", "200", "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        wait_for(lambda: len(_children(process.pid)) == 2 or process.poll() is not None,
                  120, "the two workers never started")
        workers = _children(process.pid)
        assert len(workers) == 2 and process.poll() is None
        if how.startswith("SIGTERM"):
            process.send_signal(signal.SIGTERM)
        elif how.startswith("Ctrl-C"):
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.kill()
        out, err = process.communicate(timeout=60)
        wait_for(lambda: not _alive(workers), 30, "workers outlived the command")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if how.startswith("kill -9"):
        return
    assert process.returncode == 130, err
    assert out == "" and err.strip() == "cronpolicy: interrupted"


def test_a_database_fleet_says_what_it_leaves_out_and_plays_the_rest(cli, dba):
    """A script with runs but no schedule is said on standard error (it was
    dropped in silence; a schedule that cannot be read, which the schema's
    checks refuse on both backends, goes the same way); a script only a
    fleet-wide row names is played on host "*", said too."""
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule) VALUES"
                " ('fleet-wide', '*/30 * * * *')")
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                " status, exit_code) VALUES ('adhoc', 'web1', 1, {}, {}, 'succeeded', 0)".format(
                    dba.now_plus(-5000), dba.now_plus(-4900)))
    code, out, err = cli("simulate", "--from-database", "--days", "1", "--rollouts", "1",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["instances"] == 1
    assert "not played, no schedule known (or none readable): 1 (adhoc on web1)" in err
    assert 'fleet-wide: no host has run it yet; played on one host, "*"' in err


@pytest.mark.integration
def test_a_line_with_nothing_to_play_is_said_and_the_rest_played(tmp_path, capsys):
    """@reboot and a date that never comes (30 February) refused the whole
    play; they are said on standard error, as `schedule import` says them,
    and a model given for them is no error."""
    tab = crontab(tmp_path, "@reboot start-thing\n0 0 30 2 * never\n*/5 * * * * tick\n")
    code, out, err = run_command(capsys, "--crontab", tab, "--default-model", "10s,20s",
                                 "--model", "never=1m,2m", "--days", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["instances"] == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert "line 1: start-thing not played: @reboot" in lines[0]
    assert "line 2: never not played:" in lines[1]


def test_one_script_whose_history_gives_no_model_is_left_out_not_the_play(cli, dba):
    """Runs imported with the wrong year (1970 to now: legal rows), or a
    half-second job whose p95 is three hours, made simulate --from-database
    exit 2 for the whole fleet ("its history gives no runtime model")."""
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule) VALUES"
                " ('sane', '*/30 * * * *'), ('ancient', '0 * * * *'), ('spread', '0 * * * *')")
    runs = [("sane", dba.now_plus(-5000), dba.now_plus(-4900))] * 3
    runs += [("ancient", "'1970-01-0%d 00:00:00'" % day, dba.now_plus(-day)) for day in (2, 3, 4)]
    runs += [("spread", dba.now_plus(-9000), dba.now_plus(-8999))] * 2
    runs += [("spread", dba.now_plus(-20000), dba.now_plus(-20000 + 3 * 3600))]
    for name, started, finished in runs:
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                    " status, exit_code) VALUES ({}, 'web1', 1, %s, %s, 'succeeded', 0)"
                    % (started, finished), (name,))
    code, out, err = cli("simulate", "--from-database", "--days", "1", "--rollouts", "1",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["instances"] == 1
    assert "ancient on * left out:" in err and "30d" in err
    assert "spread on web1 left out:" in err and "10000 times the median" in err
    assert "Traceback" not in err
