"""deploy plan --duration and deploy slot (issue 15.2, 15.3) through the
real command, on both backends: schedules from a policy row, estimates
from history, the database's clock."""

import datetime
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

DEEP = int(os.environ.get("CRONPOLICY_FUZZ_EXAMPLES", "0"))

HOURLY_PUBLISHER = ("INSERT INTO cronpolicy.script_policy (name, schedule, expected_runtime)"
                    " VALUES ('publish-distro', '0 * * * *', %s)")


def publisher_history(dba):
    """Five 20-minute runs on web1: the estimate, and the host it runs on."""
    minutes = "interval '20 minutes'" if dba.backend == "postgresql" else "1200"
    dba.execute(HOURLY_PUBLISHER % minutes)
    for index in range(5):
        start = -50000 + index * 3600
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                    " status, exit_code) VALUES ('publish-distro', 'web1', 1, {}, {},"
                    " 'succeeded', 0)".format(dba.now_plus(start), dba.now_plus(start + 1200)))


def next_hour():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(hours=1)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text):
    return datetime.datetime.fromisoformat(text)


def test_plan_lists_the_scheduled_starts_it_skips_with_their_next_start(cli, dba):
    publisher_history(dba)
    hour = next_hour()
    code, out, err = cli("deploy", "plan", "--at", iso(hour + datetime.timedelta(minutes=10)),
                         "--duration", "30m", "--json")
    assert code == 0, err
    plan = json.loads(out)
    [skipped] = plan["skipped_starts"]
    assert (skipped["name"], skipped["host"], skipped["code"]) == ("publish-distro", "web1",
                                                                   "window-cutoff")
    assert parse(skipped["at"]) == hour
    assert parse(skipped["next_start"]) == hour + datetime.timedelta(hours=1)
    assert plan["duration_seconds"] == 1800 and plan["wait_seconds"] == 0
    code, out, _ = cli("deploy", "plan", "--at", iso(hour + datetime.timedelta(minutes=25)),
                       "--duration", "30m")
    assert "scheduled starts it skips: none" in out


def test_slot_proposes_the_gap_between_two_publisher_runs_and_draws_it(cli, dba):
    publisher_history(dba)
    code, out, err = cli("deploy", "slot", "--duration", "30m", "--within", "3h", "--json")
    assert code == 0, err
    result = json.loads(out)
    best = result["candidates"][0]
    start = parse(best["starts_at"])
    assert best["wait_seconds"] == 0 and best["skipped_starts"] == []
    # Not a full hour in it, nor within the publisher's 20m + 2m before it
    # (unless that start is already past).
    for hour in (start.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(hours=h)
                 for h in (0, 1)):
        assert not start <= hour < start + datetime.timedelta(minutes=30)
    since_hour = start - start.replace(minute=0, second=0, microsecond=0)
    assert since_hour >= datetime.timedelta(minutes=22) or \
        start.replace(minute=0, second=0, microsecond=0) < parse(result["now"])
    # deploy plan agrees: that start skips nothing.
    code, out, _ = cli("deploy", "plan", "--at", best["starts_at"], "--duration", "30m", "--json")
    assert json.loads(out)["skipped_starts"] == []
    assert any(reason.startswith("avoids publish-distro") for reason in best["reasons"])
    assert [name for name, _ in best["timeline"]["lines"]] == ["rollout", "publish-distro@web1"]
    code, out, _ = cli("deploy", "slot", "--duration", "30m", "--within", "3h")
    assert "1. " in out and "waits for nothing; skips no scheduled start" in out
    assert "publish-distro@web1" in out and "=" in out


def test_slot_waits_for_nothing_a_run_in_flight_cannot_be_stopped_from(cli, dba, scripts,
                                                                       tmp_path):
    """A run in flight that is not interruptible: the best slot starts when
    it is expected to end, not before."""
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision, spool_id,"
                " estimate_seconds, heartbeat_at, lease_expires_at)"
                " VALUES ('migrate', 'web2', 1, 'running', 'run', 'k1', 5400, {}, {})"
                .format(dba.now_plus(0), dba.now_plus(3600)))
    code, out, err = cli("deploy", "slot", "--duration", "10m", "--within", "4h", "--json")
    assert code == 0, err
    best = json.loads(out)["candidates"][0]
    assert best["wait_seconds"] == 0
    code, out, _ = cli("deploy", "plan", "--at", "+30m", "--json")
    plan = json.loads(out)
    [running] = plan["running"]
    assert running["name"] == "migrate" and running["running_at"] is True
    assert 3500 <= plan["wait_seconds"] <= 3600        # 90m estimate, 30m from now


def test_bad_durations_are_one_line(cli):
    for argv in (["deploy", "slot", "--duration", "0s"], ["deploy", "slot", "--duration", "x"],
                 ["deploy", "slot", "--duration", "1h", "--within", "-3h"],
                 ["deploy", "plan", "--at", "+1h", "--duration", "soon"],
                 # A rollout longer than a day: with one job every minute a
                 # plan of 365d took 20 s and a slot search of it minutes;
                 # with a fleet, hours.
                 ["deploy", "slot", "--duration", "25h"],
                 ["deploy", "plan", "--at", "+1h", "--duration", "365d"]):
        code, out, err = cli(*argv)
        assert code == 2 and err.count("\n") == 1, (argv, err)


# Overdue by schedule, and starvation (issue 15.5) ------------------------------------------

def run_row(dba, status, started, decision="run", block=None, host="web1"):
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                " status, decision, block) VALUES ('hourly', {}, 1, %s, %s, {}, {}, {})"
                % (dba.now_plus(started), dba.now_plus(started + 60)),
                (host, status, decision, block))


def test_overdue_by_schedule_and_starving(cli, dba):
    minutes = "interval '5 minutes'" if dba.backend == "postgresql" else "300"
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule, expected_runtime)"
                " VALUES ('hourly', '0 * * * *', %s)" % minutes)
    # A schedule known for a day (a start before it became known is nobody's to miss).
    dba.execute(("SET session_replication_role = replica; " if dba.backend == "postgresql"
                 else "") + "UPDATE cronpolicy.script_policy SET changed_at = %s"
                % dba.now_plus(-86400))
    run_row(dba, "succeeded", -3 * 3600)
    code, out, err = cli("overdue", "--json")
    assert code == 8, err
    [late] = [report for report in json.loads(out)["reports"] if report["kind"] == "schedule"]
    assert (late["name"], late["host"], late["overdue"], late["starving"]) == (
        "hourly", "web1", True, 0)
    run_row(dba, "succeeded", -60)
    code, out, _ = cli("overdue", "--json")
    assert code == 0 and json.loads(out)["reports"] == []
    for index, block in enumerate(("deploy:2026-12-01T10:00:00Z", "window:7", "window:8")):
        run_row(dba, "skipped", -50 + index * 10, decision="in-window", block=block)
    code, out, _ = cli("overdue", "--json")
    [starving] = json.loads(out)["reports"]
    assert code == 8 and starving["starving"] == 3 and starving["state"] == "starving"
    code, out, _ = cli("overdue", "--starving", "4")
    assert code == 0 and "nothing overdue" in out
    code, out, _ = cli("overdue")
    assert "hourly" in out and "skipped by the last 3 rollouts in a row" in out
    # deploy plan warns that this rollout starves it once more.
    code, out, err = cli("deploy", "plan", "--at", "+1m", "--duration", "2h")
    assert "hourly on web1 would be skipped by 4 rollouts in a row" in err


def test_a_schedule_registered_now_is_not_overdue_for_starts_before(cli, dba):
    """overdue paged every host the moment its crontab was registered."""
    dba.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule)"
                " VALUES ('nightly', 'web1', '0 2 * * *')")
    code, out, _ = cli("overdue", "--json")
    assert code == 0 and json.loads(out)["reports"] == []


def test_starving_counts_rollouts_not_runs(cli, dba):
    """A per-minute job skipped 60 times by each of three rollouts was
    counted as skipped by two (the newest 100 runs were read)."""
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule) VALUES ('hourly', "
                "'* * * * *')")
    with dba.batch():
        run_row(dba, "succeeded", -4 * 3600)
        for rollout in range(3):
            for minute in range(60):
                run_row(dba, "skipped", -3 * 3600 + rollout * 3600 + minute * 60,
                        decision="deploy-pending",
                        block="deploy:2026-12-0%dT10:00:00Z" % (rollout + 1))
    code, out, _ = cli("overdue", "--json")
    [report] = json.loads(out)["reports"]
    assert report["starving"] == 3 and report["state"] == "starving"


def test_deploy_begin_warns_about_a_script_it_starves(cli, dba):
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule) VALUES ('hourly', '@hourly')")
    for index, block in enumerate(("window:7", "window:8")):
        run_row(dba, "skipped", -50 + index * 10, decision="in-window", block=block)
    code, out, err = cli("deploy", "begin", "--reason", "r43")
    assert code == 0 and "rollout #1 began: every script stops starting: r43" in out
    assert "hourly on web1 was skipped by the last 2 rollouts in a row, and this one skips it " \
           "too" in err


def test_metrics_say_next_starts_missed_starts_and_catch_ups(cli, dba):
    from prometheus_client.parser import text_string_to_metric_families
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule) VALUES ('hourly', '@hourly')")
    run_row(dba, "skipped", -100, decision="deploy-pending", block="deploy:2026-12-01T10:00:00Z")
    run_row(dba, "skipped", -90, decision="in-window", block="window:7")
    run_row(dba, "skipped", -80, decision="disabled")
    run_row(dba, "succeeded", -70, decision="catch-up", block="window:7")
    code, out, err = cli("metrics")
    assert code == 0, err
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(out) for sample in family.samples}
    on_web1 = (("host", "web1"), ("script", "hourly"))      # per-host series (issue 30.3)
    assert samples[("cronpolicy_missed_starts_total", on_web1)] == 2
    assert samples[("cronpolicy_catch_up_runs_total", on_web1)] == 1
    key = ("cronpolicy_next_start_timestamp_seconds", (("host", "web1"), ("script", "hourly")))
    next_start = datetime.datetime.fromtimestamp(samples[key], datetime.timezone.utc)
    assert next_start.minute == 0 and next_start.second == 0
    assert samples[("cronpolicy_starved_rollouts", (("host", "web1"), ("script", "hourly")))] \
        == 0        # the catch-up ran since


def test_a_rollout_of_one_service_plans_only_the_scripts_that_need_it(cli, dba):
    publisher_history(dba)
    at = iso(next_hour() + datetime.timedelta(minutes=10))
    code, out, _ = cli("deploy", "plan", "--at", at, "--service", "xmlrpc", "--json")
    plan = json.loads(out)
    assert plan["service"] == "xmlrpc" and plan["skipped_starts"] == [] and plan["skipped"] == []
    dba.execute("UPDATE cronpolicy.script_policy SET needs = 'xmlrpc'"
                " WHERE name = 'publish-distro'")
    code, out, _ = cli("deploy", "plan", "--at", at, "--service", "xmlrpc", "--json")
    [skipped] = json.loads(out)["skipped_starts"]
    assert skipped["name"] == "publish-distro"
    code, out, _ = cli("deploy", "slot", "--duration", "30m", "--within", "2h",
                       "--service", "mail", "--json")
    best = json.loads(out)["candidates"][0]
    assert best["skipped_starts"] == [] and best["reasons"] == ["nothing scheduled near it"]


def test_a_plan_far_ahead_and_a_slot_search_too_wide_are_answered_or_refused(cli, dba):
    """A plan 400 days ahead listed no skipped start of a */5 job (its
    starts were cut at 100000); --within 80d took minutes."""
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, schedule)"
                " VALUES ('often', 'web1', '*/5 * * * *')")
    code, out, _ = cli("deploy", "plan", "--at", "+400d", "--duration", "1h", "--json")
    assert code == 0 and len(json.loads(out)["skipped_starts"]) >= 12
    code, _, err = cli("deploy", "slot", "--duration", "30m", "--within", "80d")
    assert code == 2 and "at most 14d" in err


# One row cannot blind the fleet (issue 26.2) ---------------------------------------------

def seconds_sql(dba, seconds):
    """A stored duration of ``seconds`` as this backend writes one."""
    return "interval '%d seconds'" % seconds if dba.backend == "postgresql" else str(seconds)


def registered(dba, name, schedule, host="web1"):
    dba.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule)"
                " VALUES ({}, {}, {})", (name, host, schedule))


CENTURY = 3155760000        # interval '100 years', the longest the database stores


def fleet_with_one_absurd_row(dba, absurd):
    """web1 runs a sane every-5-minutes job and an every-minute one whose
    runtime ``absurd`` makes a hundred years (or 56): a policy row, a
    script's own declaration, or history imported with the wrong year."""
    dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_runtime)"
                " VALUES ('sane', %s)" % seconds_sql(dba, 120))
    registered(dba, "sane", "*/5 * * * *")
    registered(dba, "absurd", "* * * * *")
    if absurd == "policy row":
        dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_runtime)"
                    " VALUES ('absurd', %s)" % seconds_sql(dba, CENTURY))
    elif absurd == "declared":
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at,"
                    " finished_at, status, decision, estimate_seconds, estimate_source)"
                    " VALUES ('absurd', 'web1', 1, {}, {}, 'failed', 'run', {},"
                    " 'script''s expected_runtime (only 0 succeeded runs)')"
                    .format(dba.now_plus(-600), dba.now_plus(-590), CENTURY))
    else:       # three runs from 1970 to now: legal rows, a 56-year p95
        for index in range(3):
            dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at,"
                        " finished_at, status, decision) VALUES ('absurd', 'web1', 1,"
                        " '1970-01-0%d 00:00:00', %s, 'succeeded', 'run')"
                        % (index + 2, dba.now_plus(-index)))


@pytest.mark.parametrize("absurd", ["policy row", "declared", "history"])
def test_one_absurd_runtime_is_named_and_left_out_never_the_whole_answer_lost(cli, dba,
                                                                             absurd):
    """A runtime of 100 years made deploy plan, deploy slot, overdue and
    metrics exit 2 for every script ("starts more than 1000000 times ...")."""
    fleet_with_one_absurd_row(dba, absurd)
    commands = [("deploy", "plan", "--at", "+1h", "--duration", "30m", "--json"),
                ("deploy", "slot", "--duration", "30m", "--within", "3h", "--json"),
                ("overdue", "--all", "--json"), ("metrics",)]
    answers = {}
    for argv in commands:
        code, out, err = cli(*argv)
        assert code == 0, (argv, err)
        assert "absurd on web1" in err and "left out" in err and "30d" in err, (argv, err)
        assert "Traceback" not in err and err.count("\n") == 1, (argv, err)
        answers[argv[:2]] = out
    plan = json.loads(answers[("deploy", "plan")])
    assert {start["name"] for start in plan["skipped_starts"]} == {"sane"}
    slot = json.loads(answers[("deploy", "slot")])
    assert slot["candidates"] and all(start["name"] == "sane" for candidate in slot["candidates"]
                                      for start in candidate["skipped_starts"])
    [report] = [report for report in json.loads(answers[("overdue", "--all")])["reports"]
                if report["kind"] == "schedule"]
    assert report["name"] == "sane"
    assert 'cronpolicy_next_start_timestamp_seconds{script="sane",host="web1"}' in \
        answers[("metrics",)]


def test_a_job_of_days_is_still_planned_truthfully(cli, dba):
    """Long is not absurd: a weekly job of three days is planned as the
    gate decides it, every start whose run would reach the rollout skipped."""
    dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_runtime)"
                " VALUES ('reindex', %s)" % seconds_sql(dba, 3 * 86400))
    registered(dba, "reindex", "0 * * * *")
    code, out, err = cli("deploy", "plan", "--at", "+2d", "--duration", "1h", "--json")
    assert code == 0 and err == "", err
    plan = json.loads(out)
    starts = [parse(start["at"]) for start in plan["skipped_starts"]]
    now, at = parse(plan["now"]), parse(plan["at"])
    # Every hourly start from now to the end of the rollout: each run of
    # three days would reach it.
    assert starts[0] - now <= datetime.timedelta(hours=1)
    assert len(starts) == len(set(starts)) and 48 <= len(starts) <= 50
    assert all(now <= start < at + datetime.timedelta(hours=1) for start in starts)


def test_a_run_in_flight_with_an_absurd_estimate_does_not_make_every_slot_wait(cli, dba):
    registered(dba, "sane", "*/5 * * * *")
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision, spool_id,"
                " estimate_seconds, heartbeat_at, lease_expires_at)"
                " VALUES ('stuck', 'web2', 1, 'running', 'run', 'k1', {}, {}, {})"
                .format(CENTURY, dba.now_plus(0), dba.now_plus(3600)))
    code, out, err = cli("deploy", "slot", "--duration", "10m", "--within", "2h", "--json")
    assert code == 0, err
    assert "stuck on web2" in err and "left out" in err
    assert json.loads(out)["candidates"][0]["wait_seconds"] == 0


# Generated rows: exit 2 is for the caller's bad input only ---------------------------------

FLEET_COMMANDS = (("deploy", "plan", "--at", "+1h", "--json"),
                  ("deploy", "slot", "--duration", "30m", "--within", "6h", "--json"),
                  ("overdue", "--all", "--json"), ("metrics",), ("schedule", "list", "--json"),
                  ("simulate", "--from-database", "--days", "1", "--rollouts", "1", "--json"))

SECONDS = st.sampled_from([0, 1, 59.5, 300, 3 * 86400, 30 * 86400, 30 * 86400 + 1, 400 * 86400,
                           CENTURY, -1])
MOMENTS = st.sampled_from([-CENTURY // 2, -40 * 365 * 86400, -86400, -600, 0, 600, 86400,
                           400 * 86400])
FLEET_ROWS = st.one_of(
    st.tuples(st.just("policy"), st.sampled_from(["sane", "odd", "*", "o?d"]),
              st.sampled_from(["*", "web1", "web?"]),
              st.sampled_from([None, "* * * * *", "@yearly", "0 0 29 2 *", "59 23 31 12 *"]),
              st.sampled_from([None, "Europe/London", "Pacific/Kiritimati", "America/St_Johns"]),
              st.one_of(st.none(), SECONDS), st.booleans(), st.booleans()),
    st.tuples(st.just("run"), st.sampled_from(["sane", "odd"]),
              st.sampled_from(["web1", "web2"]),
              st.sampled_from(["succeeded", "running", "skipped", "failed"]), MOMENTS, SECONDS,
              st.one_of(st.none(), SECONDS),
              st.sampled_from([None, "script's expected_runtime (only 0 succeeded runs)",
                               "policy #1 expected_runtime", "default"])),
    st.tuples(st.just("registered"), st.sampled_from(["odd", "sane"]),
              st.sampled_from(["web2", "web3"]),
              st.sampled_from(["* * * * *", "0 0 1 1 *", "*/7 * * * *"]),
              st.sampled_from([None, "Asia/Kathmandu", "Australia/Lord_Howe"])))


def _fleet_row(dba, row):
    kind = row[0]
    if kind == "policy":
        _, name, host, schedule, tz, runtime, enabled, exempt = row
        dba.execute("INSERT INTO cronpolicy.script_policy (name, host, schedule, schedule_tz,"
                    " expected_runtime, enabled, rollout_exempt) VALUES ({}, {}, {}, {}, %s, %s,"
                    " %s)" % ("NULL" if runtime is None else seconds_sql(dba, runtime),
                              _boolean(dba, enabled), _boolean(dba, exempt)),
                    (name, host, schedule, schedule if schedule is None else tz))
    elif kind == "run":
        _, name, host, status, started, seconds, estimate, source = row
        finished = "NULL" if status == "running" else dba.now_plus(started + seconds)
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                    " status, decision, estimate_seconds, estimate_source, heartbeat_at,"
                    " lease_expires_at) VALUES ({}, {}, 1, %s, %s, {}, 'run', {}, {}, %s, %s)"
                    % (dba.now_plus(started), finished, dba.now_plus(0), dba.now_plus(3600)),
                    (name, host, status, estimate, source))
    else:
        _, name, host, schedule, tz = row
        dba.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule, schedule_tz)"
                    " VALUES ({}, {}, {}, {})", (name, host, schedule, tz))


def _boolean(dba, value):
    return ("true" if value else "false") if dba.backend == "postgresql" else str(int(value))


@hypothesis_settings(max_examples=DEEP or 12, deadline=None, derandomize=not DEEP,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(rows=st.lists(FLEET_ROWS, min_size=1, max_size=5),
       commands=st.lists(st.sampled_from(FLEET_COMMANDS), min_size=2, max_size=3, unique=True))
def test_rows_never_make_a_fleet_wide_command_exit_as_if_its_caller_erred(dba, cli, rows,
                                                                         commands):
    with dba.batch():
        for table in ("script_policy", "script_run", "script_schedule"):
            dba.execute("DELETE FROM cronpolicy.%s" % table)
        registered(dba, "sane", "*/5 * * * *")
        # One job no generated row can make absurd (its history decides its
        # runtime), so there is always something to plan and play.
        registered(dba, "steady", "*/10 * * * *")
        for back in (1, 2, 3):
            dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at,"
                        " finished_at, status) VALUES ('steady', 'web1', 1, %s, %s, 'succeeded')"
                        % (dba.now_plus(-back * 600), dba.now_plus(-back * 600 + 30)))
        for row in rows:
            try:
                _fleet_row(dba, row)
            except Exception:
                pass        # refused by the database (a pair given twice, a range check)
    for argv in commands:
        code, out, err = cli(*argv)
        assert code in (0, 8), (rows, argv, code, err)
        assert "Traceback" not in err, (rows, argv, err)


def test_overdue_all_says_succeeded_since_only_when_it_did(cli, dba):
    """A job whose last success is older than its last scheduled start
    (which came before its schedule was known, so it is not late) was
    said to have "succeeded since its last scheduled start"."""
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule) VALUES"
                " ('hourly', '0 * * * *')")
    run_row(dba, "succeeded", -3 * 3600)
    code, out, err = cli("overdue", "--all", "--json")
    assert code == 0, err
    [report] = json.loads(out)["reports"]
    assert report["overdue"] is False and report["state"] == "ok"
    assert "succeeded since" not in report["detail"]
    assert "known only since" in report["detail"] and "last success: " in report["detail"]
    run_row(dba, "succeeded", -60)
    code, out, _ = cli("overdue", "--all", "--json")
    [report] = json.loads(out)["reports"]
    # Its last start came before the schedule was known; it succeeded since anyway.
    assert report["detail"].startswith("succeeded since its last scheduled start")


# Planning believes what scripts declare (issue 27.5) ---------------------------------------

def wrapped_run(script_env, *argv):
    """`cronpolicy run ... -- true` as cron starts it: a real process."""
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "cronpolicy.tooling.cli", "run"] + list(argv)
                            + ["--", "true"], env=script_env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def declaring_fleet(dba, scripts, script_env):
    """On testhost: a CronScript declaring 5 minutes (whose latest start
    decided with a DBA's 10-minute row, deleted since), `cronpolicy run
    --expected-runtime 7m` and a command that declares nothing; the first
    is also registered on web2, which has not run it yet.  All every 10
    minutes, none with enough history for an estimate."""
    scripts.write("declared", expected_runtime=300, extra='schedule = "*/10 * * * *"')
    assert scripts.run("declared").returncode == 0
    dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_runtime) VALUES"
                " ('declared', %s)" % seconds_sql(dba, 600))
    assert scripts.run("declared").returncode == 0
    dba.execute("DELETE FROM cronpolicy.script_policy")
    wrapped_run(script_env, "wrapped", "--expected-runtime", "7m", "--schedule", "*/10 * * * *")
    wrapped_run(script_env, "unknown", "--schedule", "*/10 * * * *")
    registered(dba, "declared", "*/10 * * * *", host="web2")


def test_plan_and_slot_use_the_runtime_scripts_declare(cli, dba, scripts, script_env):
    """They used the 30-minute default for a script whose latest start
    decided with a policy row, for a host that had not run it yet, and in
    deploy plan's table for every script."""
    declaring_fleet(dba, scripts, script_env)
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0) + \
        datetime.timedelta(minutes=20)
    # A rollout 8 minutes after a start: 5m + the 2m margin end before it, 7m + 2m do not.
    code, out, err = cli("deploy", "plan", "--at", iso(start + datetime.timedelta(minutes=8)),
                         "--duration", "10m", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert {row["name"]: row["estimate_seconds"] for row in plan["skipped"]} == {
        "declared": 300, "wrapped": 420, "unknown": 1800}
    cut = {(row["name"], row["host"]) for row in plan["skipped_starts"]
           if parse(row["at"]) == start}
    assert cut == {("wrapped", "testhost"), ("unknown", "testhost")}
    assert plan["default_runtime"] == ["unknown"]
    code, out, _ = cli("deploy", "plan", "--at", iso(start + datetime.timedelta(minutes=8)))
    assert "planned with the default runtime, 30m (too little history, nothing declared): " \
           "unknown" in out
    code, out, err = cli("deploy", "slot", "--duration", "10m", "--within", "2h", "--json")
    assert code == 0, err
    assert json.loads(out)["default_runtime"] == ["unknown"]
    code, out, _ = cli("deploy", "slot", "--duration", "10m", "--within", "2h")
    assert "planned with the default runtime, 30m (too little history, nothing declared): " \
           "unknown" in out


def test_simulate_from_the_database_plays_the_runtime_scripts_declare(cli, dba, scripts,
                                                                       script_env):
    """It played a script without three runs as its one or two runs took
    (here a second or less) or the default 30 minutes.  A 5-minute job
    every 10 minutes, ready to deploy at 00:35 for 30 minutes: the 00:30
    start is cut off (5m and the 2m margin reach 00:35; it ran when played
    as a second), then 00:40, 00:50 and 01:00 fall in the deploy."""
    declaring_fleet(dba, scripts, script_env)
    dba.execute("DELETE FROM cronpolicy.script_schedule")
    dba.execute("DELETE FROM cronpolicy.script_run WHERE name <> 'declared'")
    code, out, err = cli("simulate", "--from-database", "--days", "1", "--at",
                         "2026-01-05T00:35Z", "--strategies", "c", "--json")
    assert code == 0, err
    assert json.loads(out)["strategies"]["cronpolicy"]["skipped_starts"] == 4
    wrapped_run(script_env, "unknown", "--schedule", "*/10 * * * *")
    code, out, err = cli("simulate", "--from-database", "--days", "1", "--rollouts", "1")
    assert code == 0, err
    assert "too little history and nothing declared, played from the runs they have (with " \
           "none, the default runtime, 30m): unknown on testhost" in err
    assert "declared on" not in err
