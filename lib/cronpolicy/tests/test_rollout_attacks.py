"""An attack on rollouts as owned objects (issue 27): races between the
commands that change them, `deploy run` stopped by signals and killed at
each phase, absurd rows written by plain SQL, generated arguments, logins
without rights.  Real PostgreSQL, real SQLite files, real processes."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import psycopg2
import pytest

from cronpolicy import exitcodes

from .conftest import DBA, make_env, read_line, wait_for, wait_for_file
from .test_rollout_objects import cronpolicy, start_cronpolicy

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration


def switch(dba):
    """(deploy_pending, services with a service_deploy row, open rollouts by kind)."""
    pending = dba.scalar("SELECT deploy_pending FROM cronpolicy.deploy_state")
    return (bool(pending),
            [row[0] for row in dba.execute(
                "SELECT service FROM cronpolicy.service_deploy ORDER BY service")],
            [row[0] for row in dba.execute(
                "SELECT kind FROM cronpolicy.rollout WHERE ended_at IS NULL ORDER BY id")])


def consistent(dba):
    """The switches say what the open rollouts say."""
    pending, services, _ = switch(dba)
    full_open = bool(dba.scalar("SELECT count(*) FROM cronpolicy.rollout"
                                " WHERE ended_at IS NULL AND kind = 'full'"))
    open_services = sorted({service for (listed,) in dba.execute(
        "SELECT services FROM cronpolicy.rollout WHERE ended_at IS NULL AND kind = 'services'")
        for service in listed.split(",")})
    return pending == full_open and services == open_services


class Held:
    """A PostgreSQL transaction left open on purpose, as another session's."""

    def __init__(self, dsn):
        self.connection = psycopg2.connect(dsn)
        self.cursor = self.connection.cursor()
        self.cursor.execute("SELECT pg_backend_pid()")
        self.pid = self.cursor.fetchone()[0]

    def execute(self, sql):
        self.cursor.execute(sql)

    def commit(self):
        self.connection.commit()
        self.connection.close()


def blocked_sessions(dba, than_pid):
    """Sessions of this database waiting for a lock ``than_pid`` holds."""
    return dba.scalar("SELECT count(*) FROM pg_stat_activity"
                      " WHERE %d = ANY (pg_blocking_pids(pid))" % than_pid)


def while_held(dba, held, command_env, *argv):
    """Run ``cronpolicy argv`` while ``held`` is open: once it finished or
    waits on ``held``, commit ``held``; the command's CompletedProcess-ish
    (returncode, stdout, stderr)."""
    process = start_cronpolicy(command_env, *argv)
    wait_for(lambda: process.poll() is not None or blocked_sessions(dba, held.pid),
             timeout=60, what="the command to finish or wait")
    held.commit()
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


# Races between rollout changes keep the switches in step (PostgreSQL) --------------------

@pytest.fixture
def pg_env(tmp_path, pg_dsn):
    return make_env(tmp_path, pg_dsn)


def test_two_concurrent_ends_leave_the_switch_released(pg_env, pg_dsn):
    """Two full rollouts ended at once, each by its own session: each saw
    the other still open, so deploy_pending stayed set with none open."""
    dba = DBA(pg_dsn)
    for reason in ("one", "two"):
        assert cronpolicy(pg_env, "deploy", "begin", "--reason", reason).returncode == 0
    held = Held(pg_dsn)
    held.execute("UPDATE cronpolicy.rollout SET ended_at = now() WHERE id = 1")
    code, out, err = while_held(dba, held, pg_env, "deploy", "end", "2")
    assert code == 0, err
    assert switch(dba) == (False, [], []) and consistent(dba)


def test_deploy_end_racing_deploy_begin_leaves_the_switch_set(pg_env, pg_dsn):
    """A rollout begun while the only other one ends: the end saw none open
    and cleared the switch under the new one."""
    dba = DBA(pg_dsn)
    assert cronpolicy(pg_env, "deploy", "begin", "--reason", "old").returncode == 0
    held = Held(pg_dsn)
    held.execute("INSERT INTO cronpolicy.rollout (kind, reason) VALUES ('full', 'new')")
    code, out, err = while_held(dba, held, pg_env, "deploy", "end", "1")
    assert code == 0, err
    assert switch(dba) == (True, [], ["full"]) and consistent(dba)


def test_service_rollouts_ending_together_clear_their_service(pg_env, pg_dsn):
    dba = DBA(pg_dsn)
    for _ in range(2):
        assert cronpolicy(pg_env, "deploy", "begin", "--service", "xmlrpc").returncode == 0
    held = Held(pg_dsn)
    held.execute("UPDATE cronpolicy.rollout SET ended_at = now() WHERE id = 1")
    code, out, err = while_held(dba, held, pg_env, "deploy", "end", "2")
    assert code == 0, err
    assert switch(dba) == (False, [], []) and consistent(dba)


def test_the_plain_sql_switch_racing_deploy_begin(pg_env, pg_dsn):
    """A DBA clears the switch while `deploy begin` opens a rollout: either
    order is fine, but the switch must say what the rollouts say."""
    dba = DBA(pg_dsn)
    assert cronpolicy(pg_env, "deploy", "begin", "--reason", "old").returncode == 0
    held = Held(pg_dsn)
    held.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    code, out, err = while_held(dba, held, pg_env, "deploy", "begin", "--reason", "new")
    assert code == 0, err
    assert consistent(dba), switch(dba)
    assert switch(dba) == (True, [], ["full"])      # the new one, begun after the clear


def test_the_plain_sql_service_switch_racing_deploy_begin_of_that_service(pg_env, pg_dsn):
    dba = DBA(pg_dsn)
    assert cronpolicy(pg_env, "deploy", "begin", "--service", "xmlrpc").returncode == 0
    held = Held(pg_dsn)
    held.execute("DELETE FROM cronpolicy.service_deploy WHERE service = 'xmlrpc'")
    code, out, err = while_held(dba, held, pg_env, "deploy", "begin", "--service", "xmlrpc")
    assert code == 0, err
    assert consistent(dba) and switch(dba) == (False, ["xmlrpc"], ["services"])


def test_a_wait_marking_two_rollouts_quiet_while_they_end_does_not_deadlock(pg_env, pg_dsn):
    """A `deploy wait` marks every rollout it finds quiet in one transaction,
    one row after the other; `deploy end --all` ends them in one statement,
    in its own order: each held a row the other wanted (deadlock detected,
    one of them exit 4).  Here the wait's transaction is held by hand."""
    import psycopg2.errors
    dba = DBA(pg_dsn)
    for _ in range(2):
        assert cronpolicy(pg_env, "deploy", "begin").returncode == 0
    held = Held(pg_dsn)
    held.execute("UPDATE cronpolicy.rollout SET quiet_at = now() WHERE id = 2")
    ender = start_cronpolicy(pg_env, "deploy", "end", "--all")
    wait_for(lambda: ender.poll() is not None or blocked_sessions(dba, held.pid), timeout=60,
             what="deploy end to wait")
    time.sleep(0.5)                 # (it has locked what it locks before it waits)
    try:
        held.execute("UPDATE cronpolicy.rollout SET quiet_at = now() WHERE id = 1")
    except psycopg2.errors.DeadlockDetected:
        pytest.fail("deadlock")
    held.commit()
    out, err = ender.communicate(timeout=60)
    assert ender.returncode == 0, err
    assert switch(dba) == (False, [], []) and dba.scalar(
        "SELECT count(*) FROM cronpolicy.rollout WHERE quiet_at IS NOT NULL") == 2


def test_two_waits_seeing_the_same_run_record_it_once(pg_scripts, pg_env, pg_dsn, tmp_path):
    """Two `deploy wait`s of one rollout both saw the run first: the second
    insert of its rollout_awaited row was a unique violation (a traceback,
    the wait lost).  Here the other wait's insert is held uncommitted while
    this one writes the same row."""
    dba = DBA(pg_dsn)
    pg_scripts.write("publisher")
    ready, go = tmp_path / "ready", tmp_path / "go"
    job = pg_scripts.start("publisher", "--sleep", "600", "--ready-file", str(ready),
                           "--until-file", str(go))
    try:
        wait_for_file(str(ready), process=job)
        assert cronpolicy(pg_env, "deploy", "begin", "--reason", "r").returncode == 0
        run_id = dba.scalar("SELECT id FROM cronpolicy.script_run WHERE status = 'running'")
        held = Held(pg_dsn)
        held.execute("INSERT INTO cronpolicy.rollout_awaited (rollout_id, run_id, name, host)"
                     " VALUES (1, %d, 'publisher', 'testhost')" % run_id)
        waiter = start_cronpolicy(pg_env, "deploy", "wait", "1", "--timeout", "60s")
        wait_for(lambda: waiter.poll() is not None or blocked_sessions(dba, held.pid),
                 timeout=60, what="the wait to record the run")
        held.commit()
        time.sleep(0.5)
        go.write_text("go")
        out, err = waiter.communicate(timeout=90)
        assert waiter.returncode == 0 and "Traceback" not in err, out + err
        assert dba.execute("SELECT name, last_seen_at > first_seen_at"
                           " FROM cronpolicy.rollout_awaited") == [("publisher", True)]
    finally:
        go.write_text("go")
        job.communicate(timeout=60)


# deploy run and signals, with real processes ---------------------------------------------

def open_rollouts(dba):
    return dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE ended_at IS NULL")


@contextlib.contextmanager
def deploy_run_at(when, scripts, script_env, dba, tmp_path, traps):
    """A `deploy run` whose command traps ``traps`` (writing the signal's
    name to tmp_path/got and exiting 9), held in its wait by a publisher
    that is never safe (``when`` = "waiting") or running its command
    ("running"); yields (the process, got, started)."""
    job = None
    if when == "waiting":
        job = scripts.start_never_safe("publisher")
    got, started = tmp_path / "got", tmp_path / "started"
    # (A command that took its time at each signal would never exit under a
    # barrage of them, and be killed after STOP_TIMEOUT.)
    command = ("trap 'echo got >> %s; exit 9' %s; echo up > %s; while :; do sleep 0.05; done"
               % (got, traps, started))
    runner = start_cronpolicy(script_env, "deploy", "run", "--", "sh", "-c", command)
    try:
        assert read_line(runner.stdout).startswith("rollout #1 began")
        if when == "waiting":
            wait_for(lambda: dba.scalar("SELECT count(*) FROM cronpolicy.rollout_awaited"),
                     what="the wait to see the publisher")
        else:
            wait_for_file(str(started), process=runner)
        yield runner, got, started
    finally:
        if runner.poll() is None:
            runner.kill()
        if job is not None:
            job.kill()
            job.communicate(timeout=30)


@pytest.mark.parametrize("when", ["waiting", "running"])
@pytest.mark.parametrize("signums", [(signal.SIGINT, signal.SIGINT),
                                     (signal.SIGTERM, signal.SIGINT)])
def test_two_signals_in_a_row_stop_deploy_run_once(scripts, script_env, dba, tmp_path, when,
                                                    signums):
    """Ctrl-C twice or more (or a TERM then INTs): the command gets them, the
    rollout ends, the exit is 130, one line, nothing left open."""
    with deploy_run_at(when, scripts, script_env, dba, tmp_path, "INT TERM") as (
            runner, got, started):
        # The first, then the second again and again until it exits: one
        # lands after the rollout ended, on the way out (it died of it, -2).
        runner.send_signal(signums[0])
        deadline = time.monotonic() + 60
        while runner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
            runner.send_signal(signums[1])
        out, err = runner.communicate(timeout=90)
    assert runner.returncode == exitcodes.STOPPED, out + err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
    assert open_rollouts(dba) == 0
    if when == "running":
        assert got.exists() and "rollout #1 ended" in out
    else:
        assert not started.exists()


# Absurd rows written by plain SQL ----------------------------------------------------------

def sqlite_file(dsn):
    return dsn[len("sqlite:///"):]


def test_a_rollout_with_bytes_that_are_not_utf8_blinds_nothing(sqlite_dsn, tmp_path):
    """SQLite keeps whatever bytes a DBA casts to text: one rollout whose
    reason (owner, host) is not UTF-8 made every command exit 4 ("Could not
    decode to UTF-8"), the gate included, and `deploy end` could not end it."""
    import sqlite3
    env = make_env(tmp_path, sqlite_dsn)
    assert cronpolicy(env, "deploy", "begin", "--reason", "fine").returncode == 0
    connection = sqlite3.connect(sqlite_file(sqlite_dsn), isolation_level=None)
    try:
        connection.execute("INSERT INTO rollout (kind, reason, owner, owner_host)"
                           " VALUES ('full', CAST(x'ff41' AS TEXT), CAST(x'c3' AS TEXT),"
                           " CAST(x'80' AS TEXT))")
        connection.execute("INSERT INTO rollout_awaited (rollout_id, run_id, name, host)"
                           " VALUES (2, 7, CAST(x'fe' AS TEXT), CAST(x'ff' AS TEXT))")
    finally:
        connection.close()
    for argv, codes in ((("rollouts",), {0}), (("rollouts", "--json"), {0}), (("status",), {0}),
                        (("overdue",), {0, 8}), (("metrics",), {0}), (("check", "job"), {5}),
                        (("audit",), {0}), (("deploy", "wait", "2", "--timeout", "1s"), {0}),
                        (("deploy", "end", "--all"), {0})):
        result = cronpolicy(env, *argv)
        assert result.returncode in codes, (argv, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    assert "\ufffdA" in cronpolicy(env, "rollouts").stdout
    assert DBA(sqlite_dsn).scalar("SELECT count(*) FROM cronpolicy.rollout"
                                  " WHERE ended_at IS NULL") == 0


def test_a_rollout_said_to_begin_in_the_future_can_be_waited_for_and_ended(cli, dba):
    """An administrator (on SQLite anyone) may say when a rollout began: one
    said to begin tomorrow could not be ended (ended_at before began_at, a
    check violation, exit 4; the plain-SQL switch refused as well) and its
    wait could not record quiet: the fleet stayed stopped."""
    dba.execute("INSERT INTO cronpolicy.rollout (kind, reason, began_at) VALUES ('full',"
                " 'tomorrow', %s)" % dba.now_plus(86400))
    code, out, err = cli("rollouts", "--json")
    [row] = json.loads(out)["rollouts"]
    assert code == 0 and row["state"] == "open" and row["open_seconds"] >= 0
    code, out, err = cli("deploy", "wait", "1", "--timeout", "2s")
    assert code == 0, err
    code, out, err = cli("deploy", "end", "1")
    assert code == 0 and "rollout #1 ended" in out, err
    assert switch(dba) == (False, [], [])
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE began_at <= ended_at") == 1
    # The plain-SQL switch too.
    dba.execute("INSERT INTO cronpolicy.rollout (kind, reason, began_at) VALUES ('full',"
                " 'tomorrow', %s)" % dba.now_plus(86400))
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = %s"
                % ("false" if dba.backend == "postgresql" else "0"))
    assert switch(dba) == (False, [], [])


# Generated arguments: one line, exit 2 -----------------------------------------------------

DURATIONS = ["0", "-1s", "0s", "1e400s", "nan", "inf", "99999999999999999999y", "1s1", "",
             " ", "\udcff", "1" * 5000 + "s", "101y", "3155760001s", "1e-9s", "0.0000001s",
             "0.0000004s", "٣s"]
IDS = ["0", "-1", "99999999999999999999", "2147483648", "9223372036854775808", "1.5", "0x10",
       "٣", "\udcff", "", " 1", "1e3"]
SERVICES = ["", ",", "a,b", "a b", "x" * 2000, "\udcff", "é", "..", "a/b", "a\nb"]


def _arguments():
    for value in DURATIONS:
        yield ("deploy", "begin", "--expect", value)
        yield ("deploy", "run", "--expect", value, "--", "true")
        yield ("deploy", "run", "--wait-timeout", value, "--", "true")
    for value in IDS:
        yield ("deploy", "end", value)
        yield ("deploy", "wait", value, "--timeout", "1s")
        yield ("rollouts", "--limit", value)
    for value in SERVICES:
        yield ("deploy", "begin", "--service", value)
        yield ("deploy", "end", "--service", value)
        yield ("deploy", "run", "--service", value, "--", "true")
    for value in ("\udcff", "a\nb", "\x1b[2J"):
        yield ("deploy", "begin", "--reason", value)
        yield ("deploy", "run", "--reason", value, "--", "true")


def test_generated_arguments_are_one_line_and_exit_2(cli, dba):
    """Every value either works or is refused in one line with exit 2 (never
    4, as `--expect 0.0000001s` was on PostgreSQL: an interval of 0 µs, a
    check violation blamed on the database)."""
    for argv in _arguments():
        code, out, err = cli(*argv)
        # (`deploy wait ID` for a rollout an earlier `deploy end --all` ended
        # before the fleet was quiet for it: 7, as when it ends during the wait.)
        waited = argv[:2] == ("deploy", "wait") and code == exitcodes.WAIT_TIMEOUT
        assert code in (exitcodes.OK, exitcodes.USAGE) or waited, (argv, code, err)
        if code == exitcodes.USAGE or waited:
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
        cli("deploy", "end", "--all")
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE ended_at IS NULL") == 0


# Logins without the rights -----------------------------------------------------------------

@pytest.mark.parametrize("group", ["cronpolicy_script", "pg_monitor"])
def test_a_login_without_rollout_rights_gets_one_line_and_exit_4(pg_roles, pg_dsn, tmp_path,
                                                                   group):
    dba = DBA(pg_dsn)
    env = make_env(tmp_path, pg_dsn)
    assert cronpolicy(env, "deploy", "begin", "--reason", "theirs").returncode == 0
    weak = make_env(tmp_path, pg_roles(group))
    ran = tmp_path / "ran"
    writes = [("deploy", "begin"), ("deploy", "end", "1"), ("deploy", "end", "--all"),
              ("deploy", "end"), ("deploy", "run", "--", "touch", str(ran)),
              ("deploy", "wait", "1", "--timeout", "1s")]
    reads = [("rollouts",), ("rollouts", "--json"), ("status",), ("overdue",)]
    writes.append(("metrics",))         # (the drains are not a script's to read)
    for argv in writes + reads:
        result = cronpolicy(weak, *argv)
        err = result.stderr
        if group == "cronpolicy_script" and argv in reads:
            assert result.returncode in (0, 8), (argv, err)
            continue
        if argv[:2] == ("deploy", "wait") and group == "cronpolicy_script":
            # Reading is allowed; recording what it waited for is not its to do.
            assert result.returncode in (0, exitcodes.GATE_ERROR), (argv, err)
        else:
            assert result.returncode == exitcodes.GATE_ERROR, (argv, result.stdout, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    assert not ran.exists()
    assert dba.execute("SELECT id, ended_at IS NULL FROM cronpolicy.rollout") == [(1, True)]


# kill -9 of deploy run, at each phase ------------------------------------------------------

@pytest.mark.parametrize("phase", ["began", "running"])
def test_deploy_run_killed_leaves_its_rollout_open_and_its_owner_lost(scripts, script_env, dba,
                                                                      tmp_path, phase):
    config = tmp_path / "cronpolicy.conf"
    config.write_text(config.read_text() + "heartbeat_interval = 0.5s\nlease_ttl = 2s\n")
    job = None
    if phase == "began":                # held in its wait by a run that is never safe
        job = scripts.start_never_safe("publisher")
    started = tmp_path / "started"
    runner = start_cronpolicy(script_env, "deploy", "run", "--reason", "doomed", "--", "sh",
                              "-c", "echo $$ > %s; exec sleep 600" % started)
    command_pid = None
    try:
        assert read_line(runner.stdout).startswith("rollout #1 began")
        if phase == "running":
            wait_for_file(str(started), process=runner)
            command_pid = int(started.read_text())
        runner.kill()
        runner.wait(timeout=30)     # (the command, left running, holds its pipes open)
        began = time.monotonic()
        wait_for(lambda: cronpolicy(script_env, "overdue").returncode == exitcodes.OVERDUE,
                 timeout=30, what="owner lost")
        assert time.monotonic() - began < 10            # within the lease, give or take
        [row] = json.loads(cronpolicy(script_env, "rollouts", "--json").stdout)["rollouts"]
        assert row["state"] == "open" and row["owner_lost"] and row["owner_pid"] == runner.pid
        assert switch(dba)[0]                          # still stopped: the safe direction
        assert cronpolicy(script_env, "deploy", "end", "1").returncode == 0
    finally:
        if command_pid:
            os.kill(command_pid, signal.SIGKILL)
        runner.stdout.close()
        runner.stderr.close()
        if job is not None:
            job.kill()
            job.communicate(timeout=30)


# deploy run whose rollout someone else ends ------------------------------------------------

def test_deploy_run_whose_rollout_is_ended_meanwhile_does_not_run_its_command(
        scripts, script_env, dba, tmp_path):
    """`deploy end --all` (or the plain-SQL switch) while `deploy run` waits:
    the fleet is no longer stopped, so COMMAND (a database patch) must not
    run as if it were: the wait saw nothing in the way of a rollout that no
    longer exists and called that quiet."""
    scripts.write("publisher")
    ready = tmp_path / "ready"
    job = scripts.start("publisher", "--sleep", "600", "--ready-file", str(ready))
    ran = tmp_path / "ran"
    try:
        wait_for_file(str(ready), process=job)
        runner = start_cronpolicy(script_env, "deploy", "run", "--", "touch", str(ran))
        assert read_line(runner.stdout).startswith("rollout #1 began")
        wait_for(lambda: dba.scalar("SELECT count(*) FROM cronpolicy.rollout_awaited"),
                 what="the wait to see the publisher")
        assert cronpolicy(script_env, "deploy", "end", "1").returncode == 0
        out, err = runner.communicate(timeout=60)
    finally:
        job.kill()
        job.communicate(timeout=30)
    assert not ran.exists(), out + err
    assert runner.returncode == exitcodes.WAIT_TIMEOUT, out + err
    assert "rollout #1 was ended by someone else before the fleet was quiet" in err
    assert "Traceback" not in err and "rollout #1 had been ended by" in out


def test_deploy_wait_for_a_rollout_ended_meanwhile_says_so(scripts, script_env, dba,
                                                          tmp_path):
    """It said "quiet" (exit 0) with the publisher still running.  And a
    rollout whose row was deleted by hand, it said "was ended", which
    nobody did (--json: ended_meanwhile alone): now "is gone", and
    rollout_gone."""
    scripts.write("publisher")
    ready = tmp_path / "ready"
    job = scripts.start("publisher", "--sleep", "600", "--ready-file", str(ready))
    try:
        wait_for_file(str(ready), process=job)
        for how, as_json in (("end", False), ("switch", True), ("delete", False),
                             ("delete", True)):
            began = cronpolicy(script_env, "deploy", "begin", "--json")
            rollout = json.loads(began.stdout)["id"]
            waiter = start_cronpolicy(script_env, "deploy", "wait", str(rollout),
                                      *(["--json"] if as_json else []))
            wait_for(lambda: dba.scalar("SELECT count(*) FROM cronpolicy.rollout_awaited"),
                     what="the wait to see the publisher")
            if how == "end":
                assert cronpolicy(script_env, "deploy", "end", str(rollout)).returncode == 0
            elif how == "switch":
                dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = %s"
                            % ("false" if dba.backend == "postgresql" else "0"))
            else:
                dba.execute("DELETE FROM cronpolicy.rollout WHERE id = %d" % rollout)
            out, err = waiter.communicate(timeout=60)
            assert waiter.returncode == exitcodes.WAIT_TIMEOUT, out + err
            assert "Traceback" not in err
            if as_json:
                said = json.loads(out)
                assert said["ended_meanwhile"] is True, said
                assert said["rollout_gone"] is (how == "delete"), said
            else:
                assert "quiet after" not in out
                assert ("rollout #%d %s after" % (rollout, "is gone (its row was deleted)"
                                                  if how == "delete" else "was ended")) in err, err
            dba.execute("DELETE FROM cronpolicy.rollout_awaited")
    finally:
        job.kill()
        job.communicate(timeout=30)


def test_deploy_wait_for_a_rollout_ended_before_it_began_is_the_same_exit_7(script_env, dba):
    """A rollout someone ends between `deploy begin` and `deploy wait ID`
    (docs/releases.txt's step-by-step recipe) is the same event as one
    ended a moment later, during the wait: exit 7, saying so, and no advice
    to begin a rollout.  It was refused as bad input (exit 2), so the exit
    code hung on which came first by milliseconds.  One ended after the
    fleet was quiet for it leaves nothing to wait for: still refused."""
    assert cronpolicy(script_env, "deploy", "begin").returncode == 0
    assert cronpolicy(script_env, "deploy", "end", "1").returncode == 0
    for argv in (("deploy", "wait", "1"), ("deploy", "wait", "1", "--json")):
        result = cronpolicy(script_env, *argv)
        assert result.returncode == exitcodes.WAIT_TIMEOUT, result.stdout + result.stderr
        if "--json" in argv:
            assert json.loads(result.stdout)["ended_meanwhile"] is True
        else:
            [line] = result.stderr.splitlines()
            assert line.startswith("rollout #1 was ended ") and \
                "before the fleet was quiet for it" in line, line
    assert cronpolicy(script_env, "deploy", "begin").returncode == 0
    assert cronpolicy(script_env, "deploy", "wait", "2").returncode == exitcodes.OK
    assert cronpolicy(script_env, "deploy", "end", "2").returncode == 0
    result = cronpolicy(script_env, "deploy", "wait", "2")
    assert result.returncode == exitcodes.USAGE and "nothing waits for it" in result.stderr


def test_a_line_break_in_a_rollout_cannot_forge_lines(cli, dba):
    """A rollout login (or a DBA) writes a reason, an owner host or an
    awaited run's name with a line break: printed as is, it forged lines in
    `status`, `overdue`, `rollouts` and `deploy end` ("rollouts open: 0")."""
    dba.execute("INSERT INTO cronpolicy.rollout (kind, reason, owner_host, owner_pid,"
                " lease_expires_at) VALUES ('full', {}, {}, 7, '2000-01-01')",
                ("r\nrollouts open: 0\tx", "h\n  nothing to see"))
    dba.execute("INSERT INTO cronpolicy.rollout_awaited (rollout_id, run_id, name, host)"
                " VALUES (1, 1, {}, {})", ("n\nforged", "h\tx"))
    for argv in (("status",), ("overdue",), ("rollouts",), ("deploy", "end", "1")):
        code, out, err = cli(*argv)
        assert code in (0, 8), (argv, err)
        for line in out.splitlines():
            assert not line.lstrip().startswith(("rollouts open: 0", "nothing to see",
                                                 "forged")), (argv, out)
            assert "\t" not in line, (argv, out)


def test_deploy_run_started_with_sigint_ignored_keeps_ignoring_it(script_env, dba, tmp_path):
    """`cronpolicy deploy run -- CMD &` in a shell script: the shell has it
    ignore SIGINT (so a Ctrl-C meant for the foreground leaves it alone), as
    Python itself does; deploy run took SIGINT back, stopped its command and
    exited 130."""
    done, pid_file = tmp_path / "done", tmp_path / "pid"
    command = ("trap '' INT; %s -m cronpolicy.tooling.cli deploy run -- sh -c"
               " 'sleep 1; echo done > %s' & echo $! > %s; wait $!"
               % (sys.executable, done, pid_file))
    shell = subprocess.Popen(["sh", "-c", command], env=script_env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_for_file(str(pid_file), process=shell)
    wait_for(lambda: dba.scalar("SELECT count(*) FROM cronpolicy.rollout"), what="began")
    os.kill(int(pid_file.read_text()), signal.SIGINT)
    out, err = shell.communicate(timeout=60)
    assert shell.returncode == 0 and done.read_text() == "done\n", out + err
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE ended_at IS NULL") == 0


def test_a_rollout_deleted_by_hand_takes_its_awaited_runs_along(cli, dba):
    """On PostgreSQL rollout_awaited cascades; on SQLite (no foreign keys
    enforced) the rows stayed, and the next rollout, given the same id (the
    greatest rowid plus one), showed runs it never waited for."""
    cli("deploy", "begin", "--reason", "first")
    dba.execute("INSERT INTO cronpolicy.rollout_awaited (rollout_id, run_id, name, host)"
                " VALUES (1, 1, 'publisher', 'web1')")
    dba.execute("DELETE FROM cronpolicy.rollout WHERE id = 1")
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout_awaited") == 0
    cli("deploy", "begin", "--reason", "second")
    code, out, _ = cli("rollouts", "--json")
    assert all(row["awaited"] == [] for row in json.loads(out)["rollouts"])


@pytest.mark.parametrize("when", ["waiting", "running"])
def test_a_lost_terminal_stops_deploy_run_as_sigterm_does(scripts, script_env, dba, tmp_path,
                                                         when):
    """The operator's ssh session drops (SIGHUP): deploy run died of it at
    once, leaving its rollout open (owner lost) and its command running on,
    unwatched, in the session of its own where the hang-up never reached it."""
    with deploy_run_at(when, scripts, script_env, dba, tmp_path, "HUP") as (
            runner, got, started):
        runner.send_signal(signal.SIGHUP)
        out, err = runner.communicate(timeout=90)
    assert runner.returncode == exitcodes.STOPPED, out + err
    assert open_rollouts(dba) == 0 and "Traceback" not in err
    assert got.exists() == (when == "running") and started.exists() == (when == "running")


# What `deploy begin` says of the others, and ids as the databases hand them out ------------

def test_deploy_begin_says_of_the_other_open_rollouts_what_rollouts_says(cli, dba):
    """`deploy begin --json` described each other open rollout as of the
    moment it began: a rollout open for three hours, overdue and whose owner
    was lost two hours ago came out as open 0s, not overdue, owner not lost."""
    expected = "interval '600 seconds'" if dba.backend == "postgresql" else "600"
    dba.execute("INSERT INTO cronpolicy.rollout (kind, reason, began_at, expected_duration,"
                " owner_host, owner_pid, lease_expires_at) VALUES ('full', 'forgotten', %s, %s,"
                " 'web1', 4242, %s)" % (dba.now_plus(-3 * 3600), expected,
                                        dba.now_plus(-2 * 3600)))
    code, out, err = cli("deploy", "begin", "--reason", "mine", "--json")
    assert code == 0, err
    [other] = json.loads(out)["others"]
    _, listed, _ = cli("rollouts", "--json")
    [_, then] = json.loads(listed)["rollouts"]
    assert other["id"] == then["id"] == 1
    assert other["owner_lost"] and other["overdue"] and then["owner_lost"] and then["overdue"]
    assert 3 * 3600 - 60 < other["open_seconds"] <= then["open_seconds"]


def test_a_rollout_id_the_database_handed_out_can_be_named(script_env, dba, tmp_path):
    """Once a rollout holds SQLite's greatest rowid (written by hand), SQLite
    gives the next ones random ids up to 2^63 - 1; `deploy begin` printed
    such an id and `deploy end ID` and `deploy wait ID` refused it (exit 2,
    "must be at most 1000000000"), as they would a PostgreSQL id past 10^9."""
    big = 2 ** 63 - 1 if dba.backend == "sqlite" else 2 ** 31 - 1
    dba.execute("INSERT INTO cronpolicy.rollout (id, kind, reason) %s VALUES (%d, 'full', 'big')"
                % ("OVERRIDING SYSTEM VALUE" if dba.backend == "postgresql" else "", big))
    for argv in (("deploy", "wait", str(big), "--timeout", "1s"), ("deploy", "end", str(big))):
        result = cronpolicy(script_env, *argv)
        assert result.returncode == 0, (argv, result.stderr)
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE ended_at IS NULL") == 0
    if dba.backend == "sqlite":
        began = cronpolicy(script_env, "deploy", "begin", "--json")
        rollout_id = json.loads(began.stdout)["id"]
        assert rollout_id > 10 ** 9, began.stdout
        result = cronpolicy(script_env, "deploy", "end", str(rollout_id))
        assert result.returncode == 0 and "rollout #%d ended" % rollout_id in result.stdout, (
            result.stderr)
    for argv in (("deploy", "end", str(2 ** 63)), ("deploy", "wait", str(2 ** 63))):
        result = cronpolicy(script_env, *argv)
        assert result.returncode == exitcodes.USAGE, (argv, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_run_started_after_its_rollout_began_is_not_said_to_have_held_it_longer(
        cli, dba, script_env):
    """`rollouts` said how long the rollout waited for each run as from the
    rollout's beginning: a run started an hour into it (--ignore-policy, a
    host on an older cronpolicy) and seen at once was said to have held it
    an hour."""
    dba.execute("INSERT INTO cronpolicy.rollout (kind, reason, began_at) VALUES"
                " ('full', 'an hour ago', %s)" % dba.now_plus(-3600))
    ran = cronpolicy(script_env, "run", "job", "--ignore-policy", "--", "true")
    assert ran.returncode == 0, ran.stderr
    [(run_id,)] = dba.execute("SELECT id FROM cronpolicy.script_run")
    dba.execute("INSERT INTO cronpolicy.rollout_awaited (rollout_id, run_id, name, host,"
                " first_seen_at, last_seen_at) VALUES (1, {}, 'job', 'testhost', %s, %s)"
                % (dba.now_plus(0), dba.now_plus(0)), (run_id,))
    code, out, err = cli("rollouts", "--json")
    [row] = json.loads(out)["rollouts"]
    [awaited] = row["awaited"]
    assert awaited["run_id"] == run_id and awaited["seconds"] < 60, awaited
    # A run pruned since (no row to say when it started): from the rollout's beginning.
    dba.execute("DELETE FROM cronpolicy.script_run")
    code, out, err = cli("rollouts", "--json")
    assert json.loads(out)["rollouts"][0]["awaited"][0]["seconds"] >= 3600 - 60


def test_a_rollout_ended_just_after_a_wait_saw_it_quiet_is_not_quiet_after_its_end(
        cli, dba, monkeypatch):
    """`deploy wait` records the first quiet it sees in a write of its own,
    after the look: a rollout ended between the two got a quiet_at after its
    ended_at, its stall longer than it was open."""
    from cronpolicy.tooling import deploy
    cli("deploy", "begin", "--reason", "ended under the wait's feet")
    saw = deploy._Witness.saw

    def end_then_record(witness, look):
        # (Between the look and the write of what it saw.)
        if dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE ended_at IS NULL"):
            dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = %s"
                        % ("false" if dba.backend == "postgresql" else "0"))
            time.sleep(0.05)
        return saw(witness, look)
    monkeypatch.setattr(deploy._Witness, "saw", end_then_record)
    code, out, err = cli("deploy", "wait", "--timeout", "2s")
    assert code == 0, err
    [(quiet, ended)] = dba.execute("SELECT quiet_at, ended_at FROM cronpolicy.rollout")
    [row] = json.loads(cli("rollouts", "--json")[1])["rollouts"]
    assert ended is not None and row["state"] == "ended"
    assert row["stall_seconds"] is None or row["stall_seconds"] <= row["open_seconds"], row


@pytest.mark.parametrize("when", ["waiting", "running"])
def test_deploy_run_whose_rollout_is_deleted_by_hand_keeps_its_exit(scripts, script_env, dba,
                                                                     tmp_path, when):
    """A DBA deletes the rollout row of a `deploy run` (cleaning up by
    hand): ending it at the end found no such rollout, and deploy run
    exited 2 ("there is no rollout #1"), as for bad usage, the command's own
    exit status (or 7, not run) lost."""
    config = tmp_path / "cronpolicy.conf"
    config.write_text(config.read_text() + "heartbeat_interval = 0.2s\nlease_ttl = 1s\n")
    job = None
    if when == "waiting":
        job = scripts.start_never_safe("publisher")
    started = tmp_path / "started"
    runner = start_cronpolicy(script_env, "deploy", "run", "--reason", "deleted", "--", "sh",
                              "-c", "echo $$ > %s; sleep 2; exit 5" % started)
    try:
        assert read_line(runner.stdout).startswith("rollout #1 began")
        if when == "running":
            wait_for_file(str(started), process=runner)
        else:
            wait_for(lambda: dba.scalar("SELECT count(*) FROM cronpolicy.rollout_awaited"),
                     what="the wait to see the publisher")
        dba.execute("DELETE FROM cronpolicy.rollout")
        out, err = runner.communicate(timeout=60)
    finally:
        if job is not None:
            job.kill()
            job.communicate(timeout=30)
    expected = 5 if when == "running" else exitcodes.WAIT_TIMEOUT
    assert runner.returncode == expected, out + err
    assert "Traceback" not in err and "error" not in err, err
    assert "rollout #1 is gone" in err and "was ended" not in err, err
    assert started.exists() == (when == "running")


def test_a_forgotten_open_rollout_is_listed_however_many_came_after(cli, dba):
    """`rollouts` (and the dashboard's /rollouts) listed the newest --limit
    (20) by their beginning: a rollout forgotten open (owner lost, overdue,
    its scripts stopped) fell off the list once 20 more had come and gone,
    and the listing said every rollout had ended."""
    dba.execute("INSERT INTO cronpolicy.rollout (kind, services, reason, began_at) VALUES"
                " ('services', 'xmlrpc', 'forgotten', %s)" % dba.now_plus(-3 * 86400))
    for number in range(3):
        cli("deploy", "begin", "--reason", "later %d" % number)
        assert cli("deploy", "end", str(number + 2))[0] == 0
    code, out, err = cli("rollouts", "--limit", "2", "--json")
    listed = json.loads(out)["rollouts"]
    assert [row["id"] for row in listed] == [4, 3, 1], listed
    assert listed[-1]["state"] == "open" and listed[-1]["overdue"]
    code, out, err = cli("rollouts", "--limit", "2")
    assert "forgotten" in out and "open, overdue" in out, out


def test_a_rollout_of_too_many_services_is_bad_input(cli, dba, script_env, tmp_path):
    """Each --service passed, but together past the 1000 characters a
    rollout's services may hold: a check violation blamed on the database
    (exit 4, "cannot begin a rollout"), not bad input (exit 2)."""
    many = [argument for number in range(300) for argument in ("--service", "s%03d" % number)]
    ran = tmp_path / "ran"
    for argv in (("deploy", "begin", *many), ("deploy", "run", *many, "--", "touch", str(ran))):
        code, out, err = cli(*argv)
        assert code == exitcodes.USAGE, (argv[:2], code, err)
        assert len(err.strip().splitlines()) == 1 and "1000" in err, err
    assert not ran.exists()
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout") == 0
    # As many as fit: one rollout of them all.
    fits = [argument for number in range(200) for argument in ("--service", "s%03d" % number)]
    assert cli("deploy", "begin", *fits)[0] == 0


def test_deploy_wait_for_a_rollout_and_a_service_waits_for_both_and_says_what_is_open(
        script_env, dba, tmp_path):
    """`deploy wait ID --service S` left --service out (it waited for every
    run of rollout ID, and timed out, exit 7, on one that does not need S),
    and warned "no rollout is open" with rollout ID open; `deploy wait
    --service S` with a rollout of another service open warned the same."""
    pid_file = tmp_path / "pid"
    job = start_cronpolicy(script_env, "run", "publisher", "--needs", "xmlrpc", "--", "sh", "-c",
                           "echo $$ > %s; exec sleep 600" % pid_file)
    try:
        wait_for_file(str(pid_file), process=job)
        assert cronpolicy(script_env, "deploy", "begin", "--service", "xmlrpc").returncode == 0
        waited = cronpolicy(script_env, "deploy", "wait", "1", "--service", "librarian",
                            "--timeout", "2s")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert "that rollout #1 stops that needs librarian" in waited.stdout
        assert "warning" not in waited.stderr, waited.stderr
        waited = cronpolicy(script_env, "deploy", "wait", "1", "--service", "xmlrpc",
                            "--timeout", "1s")
        assert waited.returncode == exitcodes.WAIT_TIMEOUT, waited.stdout + waited.stderr
        waited = cronpolicy(script_env, "deploy", "wait", "--service", "librarian",
                            "--timeout", "1s")
        assert waited.returncode == 0, waited.stderr
        assert "no rollout is open" not in waited.stderr, waited.stderr
        assert "librarian" in waited.stderr, waited.stderr
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        job.communicate(timeout=30)


def test_deploy_run_never_renews_nor_ends_a_rollout_that_took_its_id(script_env, dba,
                                                                     tmp_path):
    """SQLite gives a new row the greatest rowid plus one: a `deploy run`
    whose rollout row was deleted by hand, and a rollout begun after by
    someone else with the same id, renewed that one's lease as its own and
    ended it at its end ("rollout #1 ended after 2.52s"), releasing
    another's fleet in the middle of another's deploy."""
    config = tmp_path / "cronpolicy.conf"
    config.write_text(config.read_text() + "heartbeat_interval = 0.2s\nlease_ttl = 1s\n")
    started = tmp_path / "started"
    runner = start_cronpolicy(script_env, "deploy", "run", "--reason", "mine", "--", "sh", "-c",
                              "echo $$ > %s; sleep 2; exit 5" % started)
    assert read_line(runner.stdout).startswith("rollout #1 began")
    wait_for_file(str(started), process=runner)
    dba.execute("DELETE FROM cronpolicy.rollout")
    began = cronpolicy(script_env, "deploy", "begin", "--reason", "theirs", "--json")
    theirs = json.loads(began.stdout)["id"]
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 5, out + err
    assert "rollout #1 is gone" in err and "Traceback" not in err, err
    assert "was ended" not in err, err
    [(reason, still_open, lease)] = dba.execute(
        "SELECT reason, ended_at IS NULL, lease_expires_at FROM cronpolicy.rollout"
        " WHERE id = {}", (theirs,))
    assert (reason, bool(still_open), lease) == ("theirs", True, None)


def test_deploy_wait_whose_rollout_is_deleted_as_it_records_a_run_goes_on(pg_scripts, pg_dsn,
                                                                         tmp_path):
    """A DBA deletes the rollout row between deploy wait's look (which saw
    it open, a run in its way) and its note of that run (rollout_awaited,
    whose rows reference the rollout): the note met a foreign-key violation,
    which the wait took for a refusal and ended on (exit 4).  The delete is
    held uncommitted until the note waits on it, then committed: the note
    is dropped, and the wait goes on to say the rollout is gone."""
    dba = DBA(pg_dsn)
    job = pg_scripts.start_never_safe("publisher")
    dba.execute("INSERT INTO cronpolicy.rollout (reason) VALUES ('held')")
    deleting = Held(pg_dsn)
    try:
        deleting.execute("DELETE FROM cronpolicy.rollout WHERE id = 1")
        code, out, err = while_held(dba, deleting, make_env(tmp_path, pg_dsn),
                                    "deploy", "wait", "1", "--timeout", "30s")
    finally:
        deleting.connection.close()
        job.kill()
        job.communicate(timeout=30)
    assert "Traceback" not in err and "foreign key" not in err, err
    assert code == exitcodes.WAIT_TIMEOUT, out + err
    assert "rollout #1 is gone (its row was deleted) after" in err, err
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout_awaited") == 0


def test_deploy_wait_never_takes_a_new_rollout_of_a_deleted_ones_id_for_it(tmp_path,
                                                                          sqlite_dsn):
    """SQLite gives a new row the id of a deleted one (no AUTOINCREMENT):
    a rollout deleted by hand and another begun at once, between two looks
    of `deploy wait ID`, was waited for as the same rollout, and its quiet
    said "quiet" (exit 0) for a rollout that no longer stopped anything."""
    import sqlite3
    from .conftest import ScriptRunner
    env = make_env(tmp_path, sqlite_dsn)
    scripts = ScriptRunner(tmp_path, env)
    scripts.write("publisher")
    ready = tmp_path / "ready"
    job = scripts.start("publisher", "--sleep", "600", "--ready-file", str(ready))
    try:
        wait_for_file(str(ready), process=job)
        rollout = json.loads(cronpolicy(env, "deploy", "begin", "--json").stdout)["id"]
        waiter = start_cronpolicy(env, "deploy", "wait", str(rollout), "--timeout", "60s")
        dba = DBA(sqlite_dsn)
        wait_for(lambda: dba.scalar("SELECT count(*) FROM cronpolicy.rollout_awaited"),
                 what="the wait to see the publisher")
        # Deleted, and another begun with its id, in one transaction (as
        # fast as `deploy begin` after a DBA's DELETE, without the race).
        connection = sqlite3.connect(sqlite_dsn[len("sqlite:///"):], isolation_level=None)
        connection.executescript(
            "BEGIN IMMEDIATE;"
            "CREATE TEMP TABLE later AS SELECT * FROM rollout WHERE id = %d;"
            "DELETE FROM rollout WHERE id = %d;"
            "UPDATE later SET began_at = strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '+1 second'),"
            " reason = 'another';"
            "INSERT INTO rollout SELECT * FROM later;"
            "COMMIT;" % (rollout, rollout))
        connection.close()
    finally:
        job.kill()
        job.communicate(timeout=30)
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == exitcodes.WAIT_TIMEOUT, out + err
    assert "rollout #%d is gone (its row was deleted)" % rollout in err, err
    assert "quiet after" not in out and "Traceback" not in err, out + err


def test_deploy_run_whose_rollout_is_deleted_before_its_wait_says_it_is_gone(
        cli, dba, monkeypatch, tmp_path):
    """A DBA's DELETE between deploy run's begin and its wait: it exited 2
    (bad input, which nobody gave) saying "there is no rollout #N", where
    the same DELETE a moment later is "is gone", exit 7."""
    from cronpolicy.tooling import deploy
    original = deploy._check_open

    def deleted_first(db, rollout_id, *rest):
        dba.execute("DELETE FROM cronpolicy.rollout WHERE id = %d" % rollout_id)
        return original(db, rollout_id, *rest)
    monkeypatch.setattr(deploy, "_check_open", deleted_first)
    marker = tmp_path / "ran"
    code, out, err = cli("deploy", "run", "--", "touch", str(marker))
    assert code == exitcodes.WAIT_TIMEOUT, out + err
    assert "is gone (its row was deleted)" in err and "there is no rollout" not in err, err
    assert not marker.exists()
