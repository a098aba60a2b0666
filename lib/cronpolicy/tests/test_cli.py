"""The cronpolicy command, in-process and as the installed console script."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from cronpolicy import exitcodes

from .conftest import wait_for_file


def _window_count(dba):
    return dba.scalar("SELECT count(*) FROM cronpolicy.rollout_window")


def test_status_on_an_empty_database(cli):
    code, out, err = cli("status")
    assert code == exitcodes.OK and err == ""
    assert "rollouts open: none" in out and "running: none" in out
    code, out, _ = cli("status", "--json")
    state = json.loads(out)
    assert state["deploy"]["deploy_pending"] is False
    assert state["running"] == [] and state["active_windows"] == []


def test_deploy_begin_and_end(cli, dba):
    assert cli("deploy", "begin", "--reason", "release 42")[0] == exitcodes.OK
    assert dba.scalar("SELECT reason FROM cronpolicy.deploy_state") == "release 42"
    code, out, _ = cli("status")
    assert "rollouts open: 1" in out and "#1 full by" in out and "release 42" in out
    code, out, _ = cli("check", "any-script")
    assert code == exitcodes.WOULD_SKIP and "deploy pending" in out
    assert cli("deploy", "end")[0] == exitcodes.OK
    assert dba.scalar("SELECT deploy_pending FROM cronpolicy.deploy_state") in (False, 0)
    assert cli("check", "any-script")[0] == exitcodes.OK


def test_disable_enable_and_check(cli, dba):
    code, out, _ = cli("disable", "publish-*", "--reason", "mirror down")
    assert code == exitcodes.OK and "disabled publish-*" in out
    code, out, _ = cli("check", "publish-distro", "--json")
    decision = json.loads(out)
    assert code == exitcodes.WOULD_SKIP
    assert (decision["run"], decision["code"]) == (False, "disabled")
    assert "mirror down" in decision["reason"]
    code, out, err = cli("enable", "publish-distro", "--host", "web1")
    # (publish-distro never ran here: a typo would disable nothing, so it asks.)
    assert code == exitcodes.OK and err.startswith("cronpolicy: warning: no script named publish-distro")
    assert cli("check", "publish-distro", "--host", "web1")[0] == exitcodes.OK
    assert cli("check", "publish-distro", "--host", "web2")[0] == exitcodes.WOULD_SKIP
    code, out, _ = cli("status", "--json")
    assert [row["name"] for row in json.loads(out)["disabled_policies"]] == ["publish-*"]


def test_enable_warns_about_rows_that_still_disable(cli, dba):
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, enabled, reason)"
                " VALUES ('publish-distro', 'web1', false, 'disk full')")
    code, out, err = cli("enable", "publish-distro")
    assert code == exitcodes.OK
    assert "still disables it on web1" in err and "disk full" in err


def test_window_add_list_cancel(cli, dba):
    code, out, _ = cli("window", "add", "--start", "+10m", "--duration", "30m",
                       "--reason", "release 42", "--script", "publish-*", "--json")
    assert code == exitcodes.OK
    window = json.loads(out)
    assert (window["state"], window["script"], window["host"]) == ("upcoming", "publish-*", "*")
    code, out, _ = cli("window", "add", "--start", "2099-01-01T00:00Z", "--end", "2099-01-01T02:00Z")
    assert code == exitcodes.OK and "2099-01-01 00:00:00Z" in out
    code, out, _ = cli("window", "list", "--json")
    assert [w["id"] for w in json.loads(out)["windows"]] == [window["id"], window["id"] + 1]
    code, out, _ = cli("window", "list")
    assert "release 42" in out and "ID" in out
    # A 20-minute estimate meets the window in 10 minutes; a 1-minute one does not.
    assert cli("check", "publish-distro", "--expected-runtime", "20m")[0] == exitcodes.WOULD_SKIP
    assert cli("check", "publish-distro", "--expected-runtime", "1m")[0] == exitcodes.OK
    assert cli("window", "cancel", str(window["id"]))[0] == exitcodes.OK
    code, out, _ = cli("window", "cancel", str(window["id"]))
    assert code == exitcodes.OK and "already cancelled" in out
    assert cli("check", "publish-distro", "--expected-runtime", "20m")[0] == exitcodes.OK
    code, out, _ = cli("window", "list", "--all", "--json")
    assert [w["state"] for w in json.loads(out)["windows"]] == ["cancelled", "upcoming"]


BAD_INPUT = [
    (("window", "add", "--start", "tomorrow", "--duration", "1h"), "cannot parse time"),
    (("window", "add", "--start", "+1h", "--end", "+30m"), "must end after it starts"),
    (("window", "add", "--start", "now-2h", "--end", "now-1h"), "already be over"),
    (("window", "add", "--start", "+1h", "--duration", "soon"), "cannot parse duration"),
    (("window", "add", "--start", "+1h", "--duration", "1h", "--host", ""), "must not be empty"),
    (("window", "add", "--start", "+1h"), "one of the arguments --end --duration is required"),
    (("window", "add", "--start", "+1h", "--end", "+2h", "--duration", "1h"), "not allowed with"),
    (("window", "cancel", "999"), "no rollout window with id 999"),
    (("window", "cancel", "abc"), "not a whole number"),
    (("history", "--limit", "0"), "must be at least 1"),
    (("disable", ""), "must not be empty"),
    (("frobnicate",), "invalid choice"),
    (("check",), "required"),
]


@pytest.mark.parametrize("argv, fragment", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, dba, argv, fragment):
    before = (_window_count(dba), dba.scalar("SELECT count(*) FROM cronpolicy.script_policy"))
    code, out, err = cli(*argv)
    assert code == exitcodes.USAGE
    assert len(err.strip().splitlines()) == 1 and fragment in err, err
    assert (_window_count(dba), dba.scalar("SELECT count(*) FROM cronpolicy.script_policy")) == before


def test_history_and_estimate(cli, dba):
    insert = ("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
              " status, exit_code) VALUES ({}, 'web1', 1, {}, {}, {}, {})")
    for index in range(10):
        start = -50000 + index * 1000
        dba.execute(insert.format("'publish-distro'", dba.now_plus(start),
                                  dba.now_plus(start + 60 * (index + 1)), "'succeeded'", 0))
    dba.execute(insert.format("'other'", dba.now_plus(-100), dba.now_plus(-50), "'failed'", 1))
    code, out, _ = cli("history", "--limit", "3", "--json")
    runs = json.loads(out)["runs"]
    assert code == exitcodes.OK and [run["name"] for run in runs][0] == "other"
    assert len(runs) == 3
    code, out, _ = cli("history", "publish-distro", "--limit", "2", "--json")
    assert [run["duration_seconds"] for run in json.loads(out)["runs"]] == pytest.approx(
        [600, 540], abs=0.01)
    code, out, _ = cli("history", "publish-distro")
    assert "succeeded" in out and "10m" in out
    code, out, _ = cli("estimate", "--json")
    estimates = {row["name"]: row for row in json.loads(out)["estimates"]}
    # p95 (nearest rank) of 1..10 minutes is the 10th value: 10 minutes.
    assert estimates["publish-distro"]["estimate_seconds"] == pytest.approx(600, abs=0.01)
    assert estimates["other"]["source"].startswith("default")
    code, out, _ = cli("estimate", "publish-distro")
    assert "10m" in out and "p95 of last 10" in out


def test_status_lists_running_scripts_and_reaps_dead_rows(cli, dba, scripts, tmp_path):
    # A row that claims to be running but has no live process behind it...
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, estimate_seconds)"
                " VALUES ('ghost', 'web1', 321, {}, 1200)".format(dba.now_plus(-300)))
    scripts.write("publish-distro", expected_runtime=1200)
    ready = tmp_path / "ready"
    job = scripts.start("publish-distro", "--sleep", "30", "--ready-file", str(ready))
    try:
        wait_for_file(ready)
        code, out, _ = cli("status", "--json")
        [running] = json.loads(out)["running"]
        assert (running["name"], running["host"], running["pid"]) == (
            "publish-distro", "testhost", job.pid)
        assert 0 <= running["running_seconds"] <= 30 and running["safe_to_interrupt"] is False
        code, out, _ = cli("status")
        # Ends 20m after its start, less however long the machine took to get here.
        assert "publish-distro" in out and "testhost" in out
        assert re.search(r"in (20m|19m)", out), out
    finally:
        job.kill()
        job.communicate(timeout=30)
    # ...is recorded as abandoned, never shown as running.
    assert [run["status"] for run in dba.runs("ghost")] == ["abandoned"]


def test_database_errors_are_one_line_exit_4_without_password(cli):
    code, out, err = cli("status", "--dsn", "postgresql://cron:pw-s3cret@127.0.0.1:1/x")
    assert code == exitcodes.GATE_ERROR
    assert len(err.strip().splitlines()) == 1 and "pw-s3cret" not in err and "***" in err


def test_missing_schema_from_the_cli(cli, empty_pg_dsn):
    code, out, err = cli("window", "list", "--dsn", empty_pg_dsn)
    assert code == exitcodes.GATE_ERROR
    assert "cronpolicy schema upgrade" in err and len(err.strip().splitlines()) == 1


def test_injection_attempts_are_stored_literally(cli, dba):
    hostile = "'; DROP TABLE cronpolicy.script_policy; --"
    assert cli("disable", hostile, "--reason", hostile)[0] == exitcodes.OK
    assert cli("window", "add", "--start", "+1h", "--duration", "1h", "--reason", hostile,
               "--host", hostile)[0] == exitcodes.OK
    assert dba.execute("SELECT name, reason FROM cronpolicy.script_policy") == [(hostile, hostile)]
    assert dba.scalar("SELECT host FROM cronpolicy.rollout_window") == hostile


def _console_script():
    found = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    return found if os.path.exists(found) else shutil.which("cronpolicy")


def test_installed_console_script(script_env):
    command = _console_script()
    assert command, "the cronpolicy console script is not installed beside %s" % sys.executable
    result = subprocess.run([command, "status"], env=script_env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == exitcodes.OK, result.stderr
    assert "rollouts open: none" in result.stdout
    helped = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "window" in helped.stdout and "deploy" in helped.stdout


def test_plan_for_a_host_pattern_decides_as_on_a_host_it_covers(cli, dba):
    insert = ("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
              " status, exit_code) VALUES ('publisher', 'ppa1', 1, {}, {}, 'succeeded', 0)")
    for index in range(5):
        dba.execute(insert.format(dba.now_plus(-50000 + index * 5000),
                                  dba.now_plus(-50000 + index * 5000 + 1200)))
    code, out, _ = cli("deploy", "plan", "--at", "+15m", "--host", "ppa*", "--json")
    [planned] = json.loads(out)["skipped"]
    assert (planned["decision"], planned["already"]) == ("window-cutoff", True)


def test_control_characters_a_script_role_wrote_are_shown_escaped(cli, dba):
    # A login that may record runs can put anything in a name, host or reason.
    evil_name, evil_host = "job\x1b[2J\x1b]0;pwned\x07", "web\r1\x9b"
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, skip_reason,"
                " finished_at) VALUES ({}, {}, 1, 'skipped', {}, %s)" % dba.now_plus(0),
                (evil_name, evil_host, "because\x1b[31m red"))
    for argv in (["history"], ["history", evil_name], ["why", evil_name], ["estimate"]):
        code, out, err = cli(*argv)
        printed = out + err
        assert not any(char in printed for char in "\x1b\x07\r\x9b"), (argv, printed)
    code, out, _ = cli("history")
    assert code == exitcodes.OK and "\\x1b[2J" in out and "web\\x0d1\\x9b" in out


def test_a_reader_that_stops_reading_ends_the_command_quietly(script_env, dba):
    if dba.backend == "postgresql":
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, started_at,"
                    " finished_at, exit_code) SELECT 'job', 'web1', i, 'succeeded',"
                    " now() - i * interval '1 minute', now() - i * interval '1 minute'"
                    " + interval '10 seconds', 0 FROM generate_series(1, 3000) AS i")
    else:
        dba.execute("WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i"
                    " WHERE n < 3000) INSERT INTO cronpolicy.script_run (name, host, pid,"
                    " status, started_at, finished_at, exit_code) SELECT 'job', 'web1', n,"
                    " 'succeeded', strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || n || ' minutes'),"
                    " strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || n || ' minutes',"
                    " '+10 seconds'), 0 FROM i")
    for argv in (["history", "--limit", "3000"], ["history", "--limit", "3000", "--json"]):
        reader = subprocess.Popen([sys.executable, "-m", "cronpolicy"] + argv, env=script_env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        reader.stdout.readline()                 # `| head -1`
        reader.stdout.close()
        _, err = reader.communicate(timeout=60)
        # Quiet, and not success (a reader gone may have wanted more): the
        # shell's 128 + SIGPIPE, as for a command SIGPIPE killed.
        assert reader.returncode == exitcodes.READER_GONE and err == b"", \
            err.decode(errors="replace")


@pytest.mark.parametrize("argv, fragment", [
    (["deploy", "plan", "--at", "+99999999999d"], "longer than 100 years"),
    (["deploy", "plan", "--at", "0001-01-01T00:00+01:00"], "out of range"),
    (["deploy", "plan", "--at", "0001-01-01T00:00Z"], "in the past"),
    (["history", "--limit", "99999999999999999999"], "at most 1000000000"),
    (["prune", "--older-than", "99999999999999d"], "longer than 100 years"),
    (["window", "add", "--start", "now", "--duration", "9999999999999999999999d",
      "--reason", "x"], "longer than 100 years"),
    (["overdue", "--tolerance", "nan"], "finite number above 0"),
    (["check", "job", "--expected-runtime", "9999999999999999d"], "longer than 100 years"),
])
def test_absurd_values_are_one_line_and_exit_2(cli, argv, fragment):
    code, out, err = cli(*argv)
    assert code == exitcodes.USAGE, (code, out, err)
    assert fragment in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_plan_for_the_last_minutes_of_year_9999_is_made(cli, scripts):
    scripts.write("publish-distro")
    assert scripts.run("publish-distro").returncode == exitcodes.OK
    code, out, err = cli("deploy", "plan", "--at", "9999-12-31T23:00Z")
    assert code == exitcodes.OK, err
    assert "publish-distro" in out


def test_flush_with_the_state_directory_under_a_regular_file_is_one_line(cli, tmp_path,
                                                                         monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("CRONPOLICY_STATE_DIR", str(tmp_path / "afile" / "state"))
    code, _, err = cli("flush")
    assert code == exitcodes.GATE_ERROR and "Not a directory" in err
    assert len(err.strip().splitlines()) == 1


def test_history_and_why_say_why_a_run_stopped_and_that_it_was_forced(cli, dba):
    """history showed '-' as the reason of an interrupted run; why showed a
    run forced with --ignore-policy as plain "succeeded"."""
    true = "true" if dba.backend == "postgresql" else "1"
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, status, started_at, finished_at,"
                " stop_reason, stop_decision) VALUES ('job', 'web1', 'interrupted', {}, {},"
                " 'deploy pending: release 42', 'deploy-pending')".format(
                    dba.now_plus(-120), dba.now_plus(-60)))
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, status, started_at, finished_at,"
                " exit_code, skip_reason, policy_ignored) VALUES ('job', 'web1', 'succeeded',"
                " {}, {}, 0, 'policy #3 disables it', {})".format(
                    dba.now_plus(-50), dba.now_plus(-40), true))
    code, out, _ = cli("history", "job")
    assert code == exitcodes.OK
    interrupted = next(line for line in out.splitlines() if "interrupted" in line)
    assert "deploy pending: release 42" in interrupted
    code, out, _ = cli("why", "job")
    forced = next(line for line in out.splitlines() if "succeeded" in line)
    assert "forced with --ignore-policy" in forced and "policy #3 disables it" in forced


def test_a_value_starting_with_a_dash_gets_its_own_error(cli):
    """argparse said only "expected one argument" for --duration -3s."""
    code, _, err = cli("window", "add", "--start", "now", "--duration", "-3s")
    assert code == exitcodes.USAGE and "cannot parse duration '-3s'" in err
    code, _, err = cli("history", "--limit", "-5")
    assert code == exitcodes.USAGE and "must be at least 1" in err


def test_crontab_commands_take_no_dsn_and_run_help_describes_run(cli, capsys):
    code, _, err = cli("crontab", "wrap", "--dsn", "x")
    assert code == exitcodes.USAGE and "--dsn" in err
    result = subprocess.run([sys.executable, "-m", "cronpolicy", "run", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "see `cronpolicy run --help`" not in result.stdout
    assert "starts only when the policy" in result.stdout.replace("\n", " ")


@pytest.mark.parametrize("argv", [
    ["run", "", "--", "true"], ["check", ""], ["history", ""], ["why", ""], ["disable", ""],
    ["enable", ""], ["estimate", ""], ["window", "add", "--start", "now", "--duration", "1h",
                                       "--script", ""],
    ["run", "x" * 256, "--", "true"], ["disable", "x" * 256], ["check", "a\x1bb"],
    ["deploy", "plan", "--at", "+1h", "--script", ""]])
def test_every_command_applies_one_name_rule(cli, argv):
    """'' ran (as the file's name) under run, listed everything under
    history, said "run" under check; disable alone refused it.  A 300-character
    name was accepted by disable and failed run with "File name too long"."""
    code, _, err = cli(*argv)
    assert code == exitcodes.USAGE, (argv, code, err)
    assert "script name" in err and "Traceback" not in err


def test_lock_files_are_one_per_name(tmp_path):
    from cronpolicy.locking import lock_path
    names = ["a/b", "a_b", "café", "cafe\u0301", "caf\u00e8", "x" * 255, "x" * 254 + "y",
             "publish-distro"]
    paths = [lock_path(str(tmp_path), name) for name in names]
    assert len(set(paths)) == len(names)
    assert paths[-1].endswith("/cronpolicy-publish-distro.lock")      # plain names unchanged
    assert all(len(os.path.basename(path).encode()) < 255 for path in paths)


def test_a_255_character_name_runs(script_env, tmp_path):
    result = subprocess.run([sys.executable, "-m", "cronpolicy", "run", "n" * 255, "--", "true"],
                            env=script_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == exitcodes.OK, result.stderr


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
def test_read_commands_answer_while_a_writer_holds_sqlite(cli, dba, dsn):
    """`history` and `status` waited 5s behind a DBA's open write transaction
    (BEGIN IMMEDIATE in the sqlite3 shell) and exited 4, "database is locked"."""
    import sqlite3
    import time
    from cronpolicy.config import sqlite_path
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, status, started_at, finished_at,"
                " exit_code) VALUES ('job', 'web1', 'succeeded', {}, {}, 0)".format(
                    dba.now_plus(-60), dba.now_plus(-30)))
    holder = sqlite3.connect(sqlite_path(dsn), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE script_policy SET reason = reason")
        for argv in (["history"], ["status"], ["why", "job"], ["audit"], ["window", "list"],
                     ["overdue", "--all"], ["metrics"], ["deploy", "plan", "--at", "+1h"],
                     ["estimate", "job"], ["check", "job"]):
            started = time.monotonic()
            code, out, err = cli(*argv)
            assert code in (exitcodes.OK, exitcodes.WOULD_SKIP), (argv, err)
            assert time.monotonic() - started < 3, argv
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
def test_write_commands_behind_a_writer_holding_sqlite_say_so_in_one_line(
        cli, dba, dsn, tmp_path, monkeypatch):
    """A DBA's open write transaction outlasts the busy timeout: each write
    command waits it out, then says so in one line and exits 4.  The
    commands written in plain SQL (store.writes) let sqlite3's "database is
    locked" out of their BEGIN as a traceback."""
    import sqlite3
    from cronpolicy.config import sqlite_path
    config = tmp_path / "short.conf"
    config.write_text("[cronpolicy]\nconnect_timeout = 0.2s\n")
    monkeypatch.setenv("CRONPOLICY_CONFIG", str(config))
    assert cli("deploy", "begin")[0] == exitcodes.OK
    assert cli("window", "add", "--start", "+1h", "--duration", "1h")[0] == exitcodes.OK
    holder = sqlite3.connect(sqlite_path(dsn), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE script_policy SET reason = reason")
        for argv in (["deploy", "begin"], ["deploy", "end", "1"], ["deploy", "end", "--all"],
                     ["window", "add", "--start", "+1h", "--duration", "1h"],
                     ["window", "cancel", "1"], ["disable", "job"], ["enable", "job"]):
            code, out, err = cli(*argv)
            assert code == exitcodes.GATE_ERROR, (argv, code, out, err)
            assert err.count("\n") == 1 and "database is locked" in err, (argv, err)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cli("deploy", "end", "1")[0] == exitcodes.OK      # nothing was half-written


def test_the_latest_action_takes_effect_or_a_warning_says_why_not(cli, dba):
    """Issue 12.2: `enable publish-distro` left an enabled exact row, so a
    later `disable 'publish-*'` silently missed publish-distro; `enable` warned
    of a row "still disabling" while check said run; `enable no-such-script`
    created a row without a word."""
    dba.execute("INSERT INTO cronpolicy.script_run (name, host) VALUES ('publish-distro', 'web1')")
    # disable then enable the script: no row is left behind.
    assert cli("disable", "publish-distro")[0] == exitcodes.OK
    code, out, err = cli("enable", "publish-distro")
    assert code == exitcodes.OK and "removed policy" in out and err == ""
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_policy") == 0
    # ... so a later pattern takes effect.
    code, out, err = cli("disable", "publish-*", "--reason", "archive maintenance")
    assert code == exitcodes.OK and err == ""
    assert cli("check", "publish-distro")[0] == exitcodes.WOULD_SKIP
    # Enabling the script now must outrank the pattern: one row, and it says so.
    code, out, err = cli("enable", "publish-distro")
    assert code == exitcodes.OK and err == ""
    assert "disables it; policy #" in out and "wins, being more specific" in out
    assert cli("check", "publish-distro")[0] == exitcodes.OK
    # Disabling the pattern again cannot overrule that row: it says exactly why.
    code, out, err = cli("disable", "publish-*")
    assert code == exitcodes.OK
    assert "publish-distro stays enabled" in err and "cronpolicy disable publish-distro" in err
    assert cli("check", "publish-distro")[0] == exitcodes.OK
    # A row kept for a setting (expected_runtime) is switched, not deleted.
    runtime = "interval '20 minutes'" if dba.backend == "postgresql" else "1200"
    dba.execute("UPDATE cronpolicy.script_policy SET expected_runtime = %s"
                " WHERE name = 'publish-distro'" % runtime)
    assert cli("disable", "publish-distro")[0] == exitcodes.OK
    assert cli("enable", "publish-distro")[0] == exitcodes.OK
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_policy"
                      " WHERE name = 'publish-distro'") == 1
    # A name nothing knows: enabling it writes nothing, and both say so.
    code, out, err = cli("enable", "no-such-script")
    assert code == exitcodes.OK and "was not disabled" in out and "a typo?" in err
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_policy"
                      " WHERE name = 'no-such-script'") == 0
    code, out, err = cli("disable", "no-such-script")
    assert code == exitcodes.OK and "a typo?" in err


def test_an_instance_started_by_an_older_version_still_blocks_across_the_upgrade(tmp_path):
    """Names that are not plain got a new lock file name: an older version's
    run (holding the old name) no longer kept a second instance out."""
    import fcntl
    from cronpolicy.locking import LockHeld, ScriptLock
    old = open(tmp_path / "cronpolicy-backup_daily.lock", "w")
    fcntl.flock(old, fcntl.LOCK_EX | fcntl.LOCK_NB)         # the older version's run
    try:
        with pytest.raises(LockHeld):
            ScriptLock(str(tmp_path), "backup daily").acquire()
    finally:
        old.close()
    # Names that only shared the old file by accident do not block each other,
    # but for the plain name whose file it is (a_b, while older versions may run).
    first = ScriptLock(str(tmp_path), "a/b").acquire()
    second = ScriptLock(str(tmp_path), "a b").acquire()
    with pytest.raises(LockHeld):
        ScriptLock(str(tmp_path), "a_b").acquire()
    for lock in (first, second):
        lock.release()
    # A plain name cannot take a hashed name's file.
    from cronpolicy.locking import lock_path
    hashed = os.path.basename(lock_path(str(tmp_path), "a b"))
    assert lock_path(str(tmp_path), hashed[len("cronpolicy-"):-len(".lock")]) != \
        lock_path(str(tmp_path), "a b")


def test_enable_and_disable_messages_hold_for_hosts_patterns_and_ties(cli, dba):
    """Found in review: messages that were false or missing once hosts,
    patterns or a tie were involved; a setting deleted by enable."""
    false = "false" if dba.backend == "postgresql" else "0"
    dba.execute("INSERT INTO cronpolicy.script_run (name, host) VALUES ('publish-distro', 'web1')")
    # A host-specific enabling row keeps the script on: disable says so.
    assert cli("disable", "publish-*")[0] == exitcodes.OK
    assert cli("enable", "publish-distro", "--host", "web1")[0] == exitcodes.OK
    code, out, err = cli("disable", "publish-*")
    assert "publish-distro stays enabled on web1" in err, err
    assert cli("check", "publish-distro", "--host", "web1")[0] == exitcodes.OK
    dba.execute("DELETE FROM cronpolicy.script_policy")
    # Enabling a pattern that another row still disables elsewhere: said.
    assert cli("disable", "publish-*", "--host", "web1")[0] == exitcodes.OK
    code, out, err = cli("enable", "publish-*")
    assert "still disables" in err and "on web1" in err, (out, err)
    assert cli("check", "publish-distro", "--host", "web1")[0] == exitcodes.WOULD_SKIP
    dba.execute("DELETE FROM cronpolicy.script_policy")
    # Enabling on a host pattern while a host-specific row disables: said.
    assert cli("disable", "publish-distro", "--host", "web1")[0] == exitcodes.OK
    code, out, err = cli("enable", "publish-distro", "--host", "web*")
    assert "was not disabled" not in out and "still disables it on web1" in err, (out, err)
    dba.execute("DELETE FROM cronpolicy.script_policy")
    # A tie: the enabling row does not win, and enable does not claim it does.
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, enabled)"
                " VALUES ('publish-distro', 'web?', %s)" % false)
    code, out, err = cli("enable", "publish-distro", "--host", "web*")
    assert "wins" not in out and "on a tie the disabling row wins" in err, (out, err)
    dba.execute("DELETE FROM cronpolicy.script_policy")
    # fleet_single_instance = false is a setting (no limit): the row stays.
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled, fleet_single_instance)"
                " VALUES ('publish-distro', %s, %s)" % (false, false))
    assert cli("enable", "publish-distro")[0] == exitcodes.OK
    assert dba.execute("SELECT enabled, fleet_single_instance FROM cronpolicy.script_policy") in (
        [(True, False)], [(1, 0)])


def test_cronpolicy_run_options_take_dashed_values_too(script_env):
    result = subprocess.run([sys.executable, "-m", "cronpolicy", "run", "foo",
                             "--expected-runtime", "-3s", "--", "true"],
                            env=script_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == exitcodes.USAGE
    assert "cannot parse duration '-3s'" in result.stderr, result.stderr


# `disable --host` gives advice that does what was asked (issue 26.9) -----------------

def _advice(err):
    """The commands a warning tells the operator to run, as printed."""
    return re.findall(r"run `(cronpolicy [^`]*)`", err)


def _follow(advice, env):
    """Run ``advice`` literally, through the shell, as an operator pastes it."""
    bin_dir = os.path.join(env["XDG_STATE_HOME"], "bin")
    os.makedirs(bin_dir, exist_ok=True)
    program = os.path.join(bin_dir, "cronpolicy")
    with open(program, "w") as handle:
        handle.write('#!/bin/sh\nexec "%s" -m cronpolicy "$@"\n' % sys.executable)
    os.chmod(program, 0o755)
    result = subprocess.run(["bash", "-ec", advice], capture_output=True, text=True, timeout=60,
                            env=dict(env, PATH=bin_dir + os.pathsep + os.environ["PATH"]))
    assert result.returncode == 0, (advice, result.stderr)
    return result


def test_following_the_advice_of_disable_host_disables_only_that_host(cli, dba, script_env):
    """The report: a `host *` row for exactly publish-distro (kept for its
    expected_runtime) outranks `disable 'publish-*' --host ppa3`; the
    warning said it was "more specific" and advised `cronpolicy disable
    publish-distro`, which disables it everywhere."""
    runtime = "interval '20 minutes'" if dba.backend == "postgresql" else "1200"
    dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_runtime)"
                " VALUES ('publish-distro', %s)" % runtime)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host) VALUES"
                " ('publish-distro', 'ppa1'), ('publish-distro', 'ppa3'), ('publish-x', 'ppa3')")
    code, out, err = cli("disable", "publish-*", "--host", "ppa3")
    assert code == exitcodes.OK and _advice(err), err
    for advice in _advice(err):
        _follow(advice, script_env)
    assert cli("check", "publish-distro", "--host", "ppa3")[0] == exitcodes.WOULD_SKIP
    assert cli("check", "publish-x", "--host", "ppa3")[0] == exitcodes.WOULD_SKIP
    assert cli("check", "publish-distro", "--host", "ppa1")[0] == exitcodes.OK
    assert cli("check", "publish-distro")[0] == exitcodes.OK
    assert len(_advice(err)) == 1, err
    assert "publish-distro stays enabled on ppa3" in err and "its name is exact" in err, err
    # A row of a broader host pattern outranks it too: the advice stays on ppa3.
    dba.execute("DELETE FROM cronpolicy.script_policy")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host) VALUES ('publish-distro', 'ppa*')")
    code, out, err = cli("disable", "publish-*", "--host", "ppa3")
    [advice] = _advice(err)
    assert advice == "cronpolicy disable publish-distro --host ppa3", err
    # A name that needs quoting is quoted: the advice is one command, as printed.
    dba.execute("INSERT INTO cronpolicy.script_run (name, host) VALUES ('publish it''s', 'ppa3')")
    dba.execute("INSERT INTO cronpolicy.script_policy (name) VALUES ('publish it''s')")
    code, out, err = cli("disable", "publish*", "--host", "ppa3")
    for advice in _advice(err):
        _follow(advice, script_env)
    assert cli("check", "publish it's", "--host", "ppa3")[0] == exitcodes.WOULD_SKIP
    assert cli("check", "publish it's", "--host", "ppa1")[0] == exitcodes.OK


_NAMES = ("publish-distro", "publish-*", "publish-?*", "*", "sync")
_HOSTS = ("*", "ppa3", "ppa*", "web1", "*3")
_SCRIPTS = ("publish-distro", "publish-x", "sync")
_MACHINES = ("ppa1", "ppa3", "web1")


def _decisions(script_env):
    """{(script, host): what `check SCRIPT --host HOST` exits with}: the
    decision check makes (cmd_check), the store opened once for all nine
    questions, where check opens it for each (about 900 opens a run)."""
    from cronpolicy import policy
    from cronpolicy.config import Settings
    from cronpolicy.store import open_store
    settings = Settings.load(environ=script_env)
    store = open_store(settings)
    try:
        found = {}
        for script in _SCRIPTS:
            inputs = store.load_inputs(script, settings.estimate_runs)
            for host in _MACHINES:
                verdict = policy.decide(inputs, policy.ScriptFacts(script, host), settings)
                found[script, host] = exitcodes.OK if verdict.run else exitcodes.WOULD_SKIP
        return found
    finally:
        store.close()


def _rows_strategy():
    from hypothesis import strategies as st
    return st.dictionaries(st.tuples(st.sampled_from(_NAMES), st.sampled_from(_HOSTS)),
                           st.booleans(), max_size=6)


def _property_test(function):
    from hypothesis import HealthCheck, given, settings as hypothesis_settings
    from hypothesis import strategies as st
    return pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)(
        hypothesis_settings(max_examples=40, deadline=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture])(
            given(rows=_rows_strategy(), name=st.sampled_from(_NAMES),
                  host=st.sampled_from(_HOSTS))(function)))


@_property_test
def test_disable_and_its_advice_disable_exactly_what_was_asked(cli, dba, script_env, rows, name,
                                                               host):
    """Whatever rows stand: `disable NAME --host H`, then every command its
    warnings advise (and theirs), run as printed, leave every script NAME
    matches disabled on every host H matches, and every other decision as
    it was."""
    import shlex
    with dba.batch():
        dba.execute("DELETE FROM cronpolicy.script_policy")
        dba.execute("DELETE FROM cronpolicy.script_run")
        for script in _SCRIPTS:
            for machine in _MACHINES:
                dba.execute("INSERT INTO cronpolicy.script_run (name, host) VALUES ({}, {})",
                            (script, machine))
        for (row_name, row_host), enabled in rows.items():
            dba.execute("INSERT INTO cronpolicy.script_policy (name, host, enabled)"
                        " VALUES ({}, {}, {})", (row_name, row_host, enabled))
    before = _decisions(script_env)
    pending = [["disable", name, "--host", host]]
    for _ in range(4):              # advice, then the advice of the advice
        followed, pending = pending, []
        for argv in followed:
            code, _, err = cli(*argv)
            assert code == exitcodes.OK, (argv, err)
            pending += [shlex.split(advice)[1:] for advice in _advice(err)]
        if not pending:
            break
    assert not pending, pending
    from cronpolicy.matching import glob_matches
    after = _decisions(script_env)
    for (script, machine), decision in after.items():
        asked = glob_matches(name, script) and glob_matches(host, machine)
        assert decision == (exitcodes.WOULD_SKIP if asked else before[script, machine]), (
            script, machine, rows, name, host)
    # And `check` itself says so, of a pair the disable asked for when there is one.
    script, machine = next((pair for pair in after if glob_matches(name, pair[0])
                            and glob_matches(host, pair[1])), (_SCRIPTS[0], _MACHINES[0]))
    assert cli("check", script, "--host", machine)[0] == after[script, machine]


@pytest.mark.integration
def test_a_command_with_no_dsn_configured_says_it_reads_the_local_file(tmp_path):
    """Issue 26.13: with no --dsn, CRONPOLICY_DSN or dsn in the config file,
    the local SQLite file answers, and the output says so (a forgotten
    CRONPOLICY_DSN looked like an empty fleet).  --json stays pure JSON;
    metrics says it as a comment, which its readers skip."""
    config = tmp_path / "none.conf"
    config.write_text("[cronpolicy]\n")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CRONPOLICY_", "XDG_"))}
    # HOME too: a file left at ~/.local/state/cronpolicy by anything else on
    # the machine is, by design, still the database (see default_dsn).
    env.update(CRONPOLICY_CONFIG=str(config), CRONPOLICY_STATE_DIR=str(tmp_path / "state"),
               CRONPOLICY_LOCK_DIR=str(tmp_path / "locks"), HOME=str(tmp_path / "home"))
    program = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    local = str(tmp_path / "state" / "cronpolicy.sqlite")

    def cronpolicy(*argv, **extra):
        return subprocess.run([program] + list(argv), env=dict(env, **extra),
                              capture_output=True, text=True, timeout=60)

    for argv in (["status"], ["history"], ["check", "job"], ["overdue"], ["window", "list"],
                 ["deploy", "wait", "--timeout", "1s"], ["metrics"]):
        result = cronpolicy(*argv)
        assert result.returncode in (exitcodes.OK, exitcodes.WOULD_SKIP), result.stderr
        first = result.stdout.splitlines()[0]
        assert "local SQLite file %s" % local in first, (argv, result.stdout)
        assert "no DSN configured" in first
    assert cronpolicy("metrics").stdout.startswith("# database: the local SQLite file")
    for argv in (["status", "--json"], ["overdue", "--json"], ["history", "--json"]):
        # A monitor reading --json was as blind to a forgotten DSN: stderr says it.
        result = cronpolicy(*argv)
        json.loads(result.stdout)
        assert result.stderr == "cronpolicy: database: the local SQLite file %s (no DSN " \
            "configured: --dsn, CRONPOLICY_DSN or the config file's dsn)\n" % local, argv
    configured = cronpolicy("status", CRONPOLICY_DSN="sqlite:///" + local)
    assert "SQLite file" not in configured.stdout, configured.stdout


def test_run_after_a_global_option_says_run_comes_first(cli):
    """`cronpolicy -v run NAME -- CMD` said "unrecognized arguments:
    NAME -- CMD": main gives `run` its words only when it comes first (or
    after --dsn DSN, see the next test)."""
    for argv in (("-v", "run", "job", "--", "true"), ("--json", "run", "job", "--", "true")):
        code, out, err = cli(*argv)
        assert code == exitcodes.USAGE and out == "", argv
        assert err == "cronpolicy: error: `run` must come first: cronpolicy run NAME " \
            "[options] -- COMMAND (see --help)\n", (argv, err)


@pytest.mark.integration
def test_run_after_dsn_runs_as_the_usage_says(tmp_path):
    """`cronpolicy --help` shows `cronpolicy [--dsn DSN] COMMAND ...`, and run
    is one of its commands: `cronpolicy --dsn DSN run NAME -- CMD` was
    refused (exit 2, "`run` must come first"); it runs, recorded in DSN."""
    from .conftest import DBA, make_env
    other = "sqlite:///" + str(tmp_path / "other.sqlite")
    env = make_env(tmp_path, "sqlite:////nonexistent/x.sqlite")     # what --dsn overrides
    for argv in (("--dsn", other, "run", "job", "--", "true"),
                 ("--dsn=" + other, "run", "-v", "job", "--", "true")):
        result = subprocess.run([sys.executable, "-m", "cronpolicy", *argv], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == exitcodes.OK, result.stderr
    assert [run["status"] for run in DBA(other).runs("job")] == ["succeeded"] * 2
    result = subprocess.run([sys.executable, "-m", "cronpolicy", "--dsn", other, "run"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == exitcodes.USAGE and "no NAME" in result.stderr, result.stderr


def test_deploy_run_without_the_double_dash_says_to_give_it(cli):
    """`cronpolicy deploy run ls -l` said only "unrecognized arguments: -l":
    the command's options look like deploy run's own until a -- comes."""
    code, out, err = cli("deploy", "run", "ls", "-l")
    assert code == exitcodes.USAGE and out == ""
    assert err.count("\n") == 1 and "give the command after --" in err, err
    code, _, err = cli("deploy", "run", "--bogus", "--", "ls", "-l")
    assert code == exitcodes.USAGE and "--bogus" in err and "after --" not in err, err


# --json's format version ---------------------------------------------------------------

#: What the test below gives an argument a --json command requires, by its
#: dest: a command that requires another fails the test until it is here.
JSON_ARGUMENTS = {"name": "publish-distro", "start": "+1h", "duration": "30m", "at": "+15m"}
#: What a command needs beyond its required arguments to answer at all
#: (files: the crontab the test writes; simulate: a fleet to play).
JSON_EXTRAS = {("simulate",): ["--default-model", "1m,2m", "--days", "1", "--rollouts", "1",
                               "--workers", "1"],
               ("deploy", "wait"): ["--timeout", "2s"]}


def _json_commands(parser, path=()):
    """[(path, parser)] of every command whose parser takes --json."""
    import argparse
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _json_commands(sub, path + (name,))
        elif "--json" in action.option_strings:
            found.append((path, parser))
    return found


def _required_words(parser, crontab):
    """The words ``parser`` requires, from JSON_ARGUMENTS."""
    values = dict(JSON_ARGUMENTS, files=str(crontab), crontab=str(crontab))
    chosen = [next(action for action in group._group_actions if action.dest in values)
              for group in parser._mutually_exclusive_groups if group.required]
    words = []
    for action in parser._actions:
        positional = not action.option_strings and action.nargs in (None, "*")
        if action.required or positional or action in chosen:
            assert action.dest in values, "no value for %s's %s" % (parser.prog, action.dest)
            words += ([] if positional else [action.option_strings[0]]) + [values[action.dest]]
    return words


def test_every_json_output_carries_the_format_version(cli, tmp_path):
    """Every command that takes --json, read from the parser (a new one is
    covered without touching this test): one JSON object on standard output
    whose "format" is output.JSON_FORMAT."""
    from cronpolicy.tooling.cli import build_parser
    from cronpolicy.tooling.output import JSON_FORMAT
    crontab = tmp_path / "web1"
    crontab.write_text("0 * * * * publish-distro\n")
    commands = _json_commands(build_parser())
    assert len(commands) >= 19, [path for path, _ in commands]
    for path, parser in commands:
        argv = list(path) + _required_words(parser, crontab) + JSON_EXTRAS.get(path, [])
        if path == ("simulate",):
            argv += ["--crontab", str(crontab)]
        code, out, err = cli(*argv, "--json")
        assert code in (exitcodes.OK, exitcodes.WOULD_SKIP, exitcodes.OVERDUE), (argv, err)
        document = json.loads(out)
        assert isinstance(document, dict) and document["format"] == JSON_FORMAT, argv


@pytest.mark.integration
@pytest.mark.parametrize("argv, wanted", [
    (["status", "--help"], {"cronpolicy.tooling.fleet_commands"}),
    (["deploy", "wait", "--json"], {"cronpolicy.tooling.deploy_commands"}),
    (["--version"], set()), (["--help"], set()), (["no-such-command"], set())])
def test_a_command_imports_its_own_module_only(argv, wanted):
    """The parser of one command imports that command's module alone (the
    read commands answer in less time than importing them all takes), and
    the command words alone need none."""
    probe = ("import sys\n"
             "from cronpolicy.tooling.cli import COMMANDS, build_parser\n"
             "build_parser(sys.argv[1:])\n"
             "print(' '.join(sorted({module for _, module, _ in COMMANDS if module}"
             " & set(sys.modules))))\n")
    result = subprocess.run([sys.executable, "-c", probe] + argv, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == wanted


def _table_cell_by_cell(rows, columns):
    """print_table as it was written before issue 32.3: cell by cell."""
    from cronpolicy.tooling.output import one_line
    cells = [[heading for heading, _ in columns]]
    cells += [[one_line(str(render(row))) for _, render in columns] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    print("\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                    for line in cells))


def test_tables_printed_column_by_column_are_those_printed_cell_by_cell():
    """Issue 32.3: print_table works column by column, each line by one
    format (deploy plan's and schedule list's tables have thousands of
    lines); what it prints is what cell by cell printed, line breaks, tabs,
    percent signs, blanks and all."""
    import contextlib
    import io
    from hypothesis import given, settings as hypothesis_settings, strategies as st
    from cronpolicy.tooling.output import print_table
    cell = st.one_of(st.text(alphabet=st.sampled_from(list("ab \n\t\u00fc%s-\\")), max_size=8),
                     st.none(), st.integers(), st.floats(allow_nan=False))

    @hypothesis_settings(max_examples=500, deadline=None, derandomize=True)
    @given(width=st.integers(1, 5), rows=st.lists(st.lists(cell, min_size=5, max_size=5),
                                                  max_size=6),
           headings=st.lists(st.sampled_from(["A", "HOST", "NEXT START", "% x"]),
                             min_size=5, max_size=5))
    def same(width, rows, headings):
        columns = [(headings[index], (lambda index: lambda row: row[index])(index))
                   for index in range(width)]
        printed, before = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(printed):
            print_table(rows, columns)
        with contextlib.redirect_stdout(before):
            _table_cell_by_cell(rows, columns)
        assert printed.getvalue() == before.getvalue()
    same()



TERMINAL_COLUMNS = """
import os, shutil, sys
from cronpolicy.tooling.cli import _terminal_columns
for columns in (None, "", "abc", "-3", "0", "132"):
    for lines in (None, "40"):
        for name, value in (("COLUMNS", columns), ("LINES", lines)):
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
        print(repr(columns), repr(lines), _terminal_columns(), shutil.get_terminal_size().columns)
"""


@pytest.mark.integration
@pytest.mark.parametrize("terminal", [False, True])
def test_help_is_as_wide_as_shutil_would_make_it(terminal):
    """The help formatter's width comes from _terminal_columns, not shutil
    (whose import cost every command 3 ms): the same columns whatever
    COLUMNS and LINES say, on a terminal (100 columns) or a pipe."""
    import fcntl
    import struct
    import termios
    master = slave = None
    try:
        if terminal:
            master, slave = os.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        result = subprocess.run([sys.executable, "-c", TERMINAL_COLUMNS],
                                stdout=slave if terminal else subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=60)
        said = os.read(master, 10000).decode() if terminal else result.stdout.decode()
    finally:
        for descriptor in (master, slave):
            if descriptor is not None:
                os.close(descriptor)
    assert result.returncode == 0, result.stderr
    lines = said.splitlines()
    assert len(lines) == 12, said
    for line in lines:
        columns, _, mine, theirs = line.split()
        assert mine == theirs, line
        assert int(mine) == (132 if columns == "'132'" else 100 if terminal else 80), line
