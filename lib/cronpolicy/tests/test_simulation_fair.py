"""cronpolicy simulate, issue 28: fair plays (the queue in the stall, a
warm-up, the declared runtime, seeds, the strategies that never kill),
rollout kinds (code-only rollouts, needs, exempt), one record per rollout,
--system.  Cases worked out by hand through the real command."""

import datetime
import json
import statistics

import pytest

from cronpolicy import policy
from cronpolicy.tooling import simulation
from cronpolicy.config import Settings
from cronpolicy.schedule import Schedule
from cronpolicy.tooling.simulate.play import DEFAULT_BEGIN
from cronpolicy.tooling.cli import main

# At module level: outside a checkout conftest skips the tests that read it.
from .test_simulation import REFERENCE

BEGIN = DEFAULT_BEGIN


def at(hour, minute):
    return (BEGIN + datetime.timedelta(hours=hour, minutes=minute)).isoformat()


def play(capsys, *argv):
    code = main(["simulate", "--json", "--days", "1", "--margin", "2m", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def crontab(tmp_path, text, name="web1"):
    path = tmp_path / name
    path.write_text(text)
    return "%s=%s" % (name, path)


def fleet_file(tmp_path, lines, models):
    """A fleet file of one host, web1, with these crontab lines and models."""
    (tmp_path / "web1").write_text("".join(lines))
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps({"hosts": {"web1": ["web1"]}, "models": models}))
    return str(path)


def rollouts(result, seed=0):
    return result["plays"][seed]["rollouts"]


# The queue counts ---------------------------------------------------------------------------

@pytest.mark.integration
def test_a_queued_rollout_counts_its_queue_in_its_stall(tmp_path, capsys):
    """Two rollouts ready at 09:10 and 09:15, each a 30-minute deploy, and a
    10-second job every 5 minutes (nothing to await).  Under c the first
    deploys 09:10 to 09:40; the second waits for it: its stall is the 25
    minutes from 09:15 to 09:40, all of it queue (it was 0, its ready time
    moved to 09:40)."""
    result = play(capsys, "--crontab", crontab(tmp_path, "*/5 * * * * tick\n"),
                  "--model", "tick=10s,10s,false", "--at", at(9, 10), "--at", at(9, 15),
                  "--duration", "30m", "--strategies", "c,b")
    first, second = rollouts(result)
    assert second["ready"].startswith(at(9, 15)[:16])
    for name in ("cronpolicy", "on-off"):
        assert first["strategies"][name]["stall_seconds"] == 0
        assert second["strategies"][name]["queued_seconds"] == 1500
        assert second["strategies"][name]["stall_seconds"] == 1500
    figures = result["strategies"]["cronpolicy"]
    assert figures["stall_seconds"]["max"] == 1500 and figures["queued"] == 1
    assert figures["wait_seconds"]["max"] == 0


# The warm-up --------------------------------------------------------------------------------

DAILY = simulation.Instance("nightly", "web1", Schedule("0 3 * * *"),
                            simulation.Model(3600.0, 7200.0))
WEEKLY = simulation.Instance("weekly", "web1", Schedule("0 4 * * 0"),
                             simulation.Model(60.0, 120.0))


def test_the_default_warm_up_gives_every_job_its_estimates_minimum_runs():
    """A weekly job (Sundays 04:00, the play beginning on a Monday) needs
    two weeks and a day of warm-up for 3 runs (a daily one, 3 days); after
    it no job is cold, and each starts the play with its history; with
    none both are cold."""
    assert simulation.default_warm_up([DAILY], BEGIN, 3) == 3 * 86400
    warm_up = simulation.default_warm_up([DAILY, WEEKLY], BEGIN, 3)
    assert 14 * 86400 <= warm_up <= 15 * 86400
    end = BEGIN + datetime.timedelta(days=1)
    warm = simulation.Fleet([DAILY, WEEKLY], BEGIN, end, "1", warm_up=warm_up)
    assert warm.cold(3) == []
    assert len(warm.history["nightly"]) >= 3 and len(warm.history["weekly"]) == 3
    assert all(moment < BEGIN for moment in warm.warm_last_success)
    cold = simulation.Fleet([DAILY, WEEKLY], BEGIN, end, "1")
    assert cold.cold(3) == ["nightly", "weekly"]
    # The play's own runtimes do not depend on the warm-up.
    assert cold.durations == warm.durations


@pytest.mark.integration
def test_the_warm_up_is_said_and_its_length_is_in_the_json(tmp_path, capsys):
    result = play(capsys, "--crontab", crontab(tmp_path, "0 3 * * * nightly\n"),
                  "--model", "nightly=1h,2h,false", "--rollouts", "1")
    assert result["warm_up_seconds"] == 3 * 86400 and result["cold_jobs"] == []
    result = play(capsys, "--crontab", crontab(tmp_path, "0 3 * * * nightly\n"),
                  "--model", "nightly=1h,2h,false", "--rollouts", "1", "--warm-up", "0")
    assert result["warm_up_seconds"] == 0 and result["cold_jobs"] == ["nightly"]
    code = main(["simulate", "--crontab", crontab(tmp_path, "0 3 * * * nightly\n"),
                 "--model", "nightly=1h,2h,false", "--rollouts", "1", "--warm-up", "0",
                 "--days", "1"])
    assert code == 0
    assert "1 job had fewer than 3 runs after the warm-up of 0s" in capsys.readouterr()[1]


def test_a_job_declares_its_models_p95():
    """A job every 20 minutes, median 5m, p95 20m, no warm-up: a window at
    01:00 cuts off the 00:40 start (with two runs behind it, under the
    estimate's 3, it is estimated at what it declares: 20m and 2m of margin
    reach 01:00); declared as its median (the old way) it would have run."""
    settings = Settings()
    settings.cutoff_margin = 120
    job = simulation.Instance("job", "web1", Schedule("*/20 * * * *"),
                              simulation.Model(300.0, 1200.0, True))
    fleet = simulation.Fleet([job], BEGIN, BEGIN + datetime.timedelta(hours=3), "1")
    state = simulation.simulate(fleet, "cronpolicy", [BEGIN + datetime.timedelta(hours=1)],
                                simulation.Knobs(), settings)
    cut = [moment.strftime("%H:%M") for _, moment, code, _ in state.skips
           if code == policy.WINDOW_CUTOFF]
    assert cut == ["00:40"]
    assert state.facts[0].expected_runtime == 1200.0


# Seeds --------------------------------------------------------------------------------------

@pytest.mark.integration
def test_seeds_give_each_figure_its_median_and_range(tmp_path, capsys):
    result = play(capsys, "--crontab", crontab(tmp_path, "*/5 * * * * tick\n0 * * * * pub\n"),
                  "--model", "tick=10s,1m,true", "--model", "pub=10m,40m,false",
                  "--rollouts", "6", "--seeds", "3", "--strategies", "b,c")
    assert result["seeds"] == ["1", "2", "3"]
    for name in ("on-off", "cronpolicy"):
        per_seed = [found["strategies"][name]["skipped_starts"] for found in result["plays"]]
        assert result["strategies"][name]["skipped_starts"] == statistics.median(per_seed)
        assert result["ranges"]["min"][name]["skipped_starts"] == min(per_seed)
        assert result["ranges"]["max"][name]["skipped_starts"] == max(per_seed)
    # Each seed its own rollout times.
    assert len({found["rollouts"][0]["ready"] for found in result["plays"]}) == 3
    code = main(["simulate", "--crontab", crontab(tmp_path, "*/5 * * * * tick\n"),
                 "--model", "tick=10s,1m,true", "--rollouts", "2", "--seeds", "2",
                 "--days", "1", "--strategies", "c"])
    out = capsys.readouterr()[0]
    assert code == 0 and "seeds 1 to 2" in out.splitlines()[0]
    assert "median of the 2 seeds" in out


# Never killing ------------------------------------------------------------------------------

@pytest.mark.integration
def test_on_off_with_no_kills_awaits_what_may_not_be_stopped(tmp_path, capsys):
    """Ready at 09:10, --max-wait 5m: the 20-minute publisher (09:00, not
    interruptible) and a 30-minute crunch (09:00, interruptible).  b kills
    both at 09:15 (the publisher while unsafe); b0 stops the crunch at once
    (10 minutes lost) and awaits the publisher to 09:20: stall 10m, no kill;
    a0 (crontabs off 5 minutes ahead) the same."""
    result = play(capsys, "--crontab", crontab(tmp_path, "0 * * * * publish\n0 * * * * crunch\n"),
                  "--model", "publish=20m,20m,false", "--model", "crunch=30m,30m,true",
                  "--at", at(9, 10), "--max-wait", "5m", "--strategies", "b,b0,a0",
                  "--warm-up", "0", "--lead", "5m")
    [rollout] = rollouts(result)
    b, b0 = rollout["strategies"]["on-off"], rollout["strategies"]["on-off-no-kills"]
    assert (b["stall_seconds"], b["killed"], b["killed_while_unsafe"]) == (300, 2, 1)
    assert (b0["stall_seconds"], b0["killed"], b0["stopped_at_once"]) == (600, 0, 1)
    assert b0["job_minutes_lost"] == 10.0
    a0 = rollout["strategies"]["all-stop-no-kills"]
    assert a0["killed"] == 0 and a0["stall_seconds"] == 600


# Rollout kinds ------------------------------------------------------------------------------

KINDS_LINES = ["*/5 * * * * api-sync\n", "*/5 * * * * tidy\n", "0 * * * * gc\n",
               "0 * * * * images\n"]
KINDS_MODELS = {"api-sync": {"median": "1m", "p95": "1m", "needs": ["xmlrpc"]},
                "tidy": {"median": "1m", "p95": "1m"},
                "gc": {"median": "40m", "p95": "40m", "needs": ["librarian"]},
                "images": {"median": "40m", "p95": "40m", "exempt": True}}


@pytest.mark.integration
def test_a_code_only_rollout_stops_only_the_jobs_needing_a_restarted_service(tmp_path,
                                                                              capsys):
    """Code-only, restarting xmlrpc, ready at 09:10, a 30-minute deploy: under
    c api-sync is skipped 09:10 to 09:35 (6), tidy is not, gc (librarian)
    and images (exempt) run on: stall 0.  all-stop knows no kinds: it skips
    every start from 09:05 (a lead of 5m) to the deploy's end (10:10), and
    awaits gc and images to 09:40, its --max-wait."""
    fleet = fleet_file(tmp_path, KINDS_LINES, KINDS_MODELS)
    result = play(capsys, fleet, "--at", at(9, 10), "--code-share", "1", "--restart", "xmlrpc",
                  "--strategies", "a,c", "--warm-up", "0", "--lead", "5m")
    assert result["restart"] == ["xmlrpc"]
    [rollout] = rollouts(result)
    assert rollout["kind"] == "code-only"
    c, a = rollout["strategies"]["cronpolicy"], rollout["strategies"]["all-stop"]
    assert (c["stall_seconds"], c["skipped_starts"]) == (0, 6)
    assert a["stall_seconds"] == 1800 and a["skipped_starts"] == 28
    figures = result["strategies"]["cronpolicy"]["kinds"]
    assert figures["code-only"]["rollouts"] == 1 and figures["full"]["rollouts"] == 0
    # Restarting the librarian too, announced at 09:10 (a hotfix): gc is
    # awaited (09:00 + 40m), images still not.
    result = play(capsys, fleet, "--at", at(9, 10), "--code-share", "1", "--strategies", "c",
                  "--warm-up", "0", "--announce", "0")
    assert result["restart"] == ["librarian", "xmlrpc"]
    [rollout] = rollouts(result)
    assert rollout["strategies"]["cronpolicy"]["stall_seconds"] == 1800


def test_a_full_rollout_under_c_leaves_an_exempt_job_alone(tmp_path, capsys):
    """The same fleet, a full rollout announced at 09:10: c awaits gc (40m
    from 09:00: stall 30m) but not images (exempt)."""
    fleet = fleet_file(tmp_path, KINDS_LINES, KINDS_MODELS)
    result = play(capsys, fleet, "--at", at(9, 10), "--strategies", "c", "--warm-up", "0",
                  "--announce", "0")
    [rollout] = rollouts(result)
    assert rollout["kind"] == "full"
    assert rollout["strategies"]["cronpolicy"]["stall_seconds"] == 1800
    assert rollout["strategies"]["cronpolicy"]["stopped_at_once"] == 0


@pytest.mark.integration
def test_one_record_per_rollout_adds_up_to_the_figures(capsys):
    result = play(capsys, REFERENCE, "--rollouts", "4", "--code-share", "0.5",
                  "--strategies", "a,b0,c")
    records = rollouts(result)
    assert len(records) == 4 and [r["kind"] for r in records].count("code-only") == 2
    for name in ("all-stop", "on-off-no-kills", "cronpolicy"):
        figures = result["strategies"][name]
        assert sum(r["strategies"][name].get("skipped_starts", 0) for r in records) \
            == figures["skipped_starts"]
        assert max(r["strategies"][name].get("stall_seconds", 0) for r in records) \
            == figures["stall_seconds"]["max"]
        assert sum(1 for r in records if r["strategies"][name].get("not_played")) \
            == figures["not_played"]
        assert figures["skipped_share"] == round(
            figures["skipped_starts"] / figures["scheduled_starts"], 6)
    assert result["strategies"]["on-off-no-kills"]["killed"] == 0


def test_needs_and_exempt_are_checked(tmp_path, capsys):
    for model, said in (({"median": "1m", "p95": "1m", "needs": "xmlrpc"}, "\"needs\""),
                        ({"median": "1m", "p95": "1m", "needs": ["a b"]}, "\"needs\""),
                        ({"median": "1m", "p95": "1m", "exempt": "yes"}, "\"exempt\"")):
        fleet = fleet_file(tmp_path, ["* * * * * job\n"], {"job": model})
        code = main(["simulate", fleet, "--days", "1"])
        err = capsys.readouterr()[1]
        assert code == 2 and said in err and err.count("\n") == 1, err
    fleet = fleet_file(tmp_path, ["* * * * * job\n"], {"job": {"median": "1m", "p95": "1m"}})
    code = main(["simulate", fleet, "--days", "1", "--code-share", "2"])
    assert code == 2 and "--code-share" in capsys.readouterr()[1]
    code = main(["simulate", fleet, "--days", "1", "--restart", "a b"])
    assert code == 2 and "--restart" in capsys.readouterr()[1]
    code = main(["simulate", fleet, "--days", "1", "--seeds", "0"])
    assert code == 2 and "--seeds" in capsys.readouterr()[1]
    code = main(["simulate", fleet, "--days", "1", "--code-share", "0.5"])
    assert code == 2 and "no job needs a service" in capsys.readouterr()[1]


def test_a_restart_no_job_needs_is_refused_not_played_as_free(tmp_path, capsys):
    """A code-only rollout restarting a service no job needs stops nothing
    under c and d and everything under a and b: a typo in --restart (or a
    --restart on a fleet without needs) made cronpolicy's stall and skips 0."""
    fleet = fleet_file(tmp_path, KINDS_LINES, KINDS_MODELS)
    for argv in (["--restart", "xmlrcp"], ["--restart", "xmlrpc,xmlrcp"]):
        code = main(["simulate", fleet, "--days", "1", "--code-share", "0.5", "--workers", "1",
                     *argv])
        err = capsys.readouterr()[1]
        assert code == 2 and err.count("\n") == 1, err
        assert "--restart: no job needs xmlrcp" in err and "librarian, xmlrpc" in err, err
    bare = fleet_file(tmp_path, ["* * * * * job\n"], {"job": {"median": "1m", "p95": "1m"}})
    code = main(["simulate", bare, "--days", "1", "--code-share", "0.5", "--restart", "xmlrpc",
                 "--workers", "1"])
    assert code == 2 and "no job needs a service" in capsys.readouterr()[1]
    # Without code-only rollouts --restart plays no part: not refused.
    code = main(["simulate", fleet, "--days", "1", "--rollouts", "1", "--restart", "xmlrcp",
                 "--strategies", "c", "--workers", "1"])
    assert code == 0, capsys.readouterr()[1]


# --system ------------------------------------------------------------------------------------

@pytest.mark.integration
def test_system_reads_a_user_field_whatever_the_path(tmp_path, capsys):
    table = crontab(tmp_path, "0 * * * * root /usr/local/bin/publish\n", "host1")
    code = main(["simulate", "--crontab", table, "--model", "publish=1m,2m,false",
                 "--days", "1", "--rollouts", "1"])
    assert code == 2 and "no runtime model for root" in capsys.readouterr()[1]
    result = play(capsys, "--crontab", table, "--system", "--model", "publish=1m,2m,false",
                  "--rollouts", "1")
    assert result["instances"] == 1
    code = main(["simulate", "--system", str(tmp_path / "fleet.json"), "--days", "1"])
    assert code == 2 and "--system goes with --crontab" in capsys.readouterr()[1]
