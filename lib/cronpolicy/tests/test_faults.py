"""Faults injected for real: a misbehaving TCP proxy in front of PostgreSQL,
a database with a tiny connection limit, SIGSTOP, and rejected input that
must leave nothing half-written."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from cronpolicy import exitcodes
from cronpolicy.rows import RunEnd
from cronpolicy.spool import Spool

from .conftest import (DBA, ScriptRunner, create_database, drop_database_soon, make_env,
                       wait_for_file)


def write_config(tmp_path, text=""):
    config = tmp_path / "faults.conf"
    config.write_text("[cronpolicy]\nconnect_timeout = 2s\ndecision_timeout = 3s\n" + text)
    return str(config)


@pytest.fixture
def proxied(tmp_path, fault_proxy, pg_dsn):
    """(proxy, ScriptRunner whose scripts reach the database only through it, DBA)."""
    proxy, dsn = fault_proxy
    env = make_env(tmp_path, dsn)
    env["CRONPOLICY_CONFIG"] = write_config(tmp_path)
    return proxy, ScriptRunner(tmp_path, env), DBA(pg_dsn)


def spool_of(runner):
    return Spool(os.path.join(runner.env["XDG_STATE_HOME"], "cronpolicy", "spool"))


def test_refused_at_start_without_cache_skips_and_spools_the_skip(proxied):
    proxy, scripts, dba = proxied
    scripts.write("publish-distro")
    proxy.mode = "refuse"
    started = time.monotonic()
    result = scripts.run("publish-distro")
    assert time.monotonic() - started < 3 + 3
    assert result.returncode == exitcodes.OK and scripts.main_calls("publish-distro") == 0
    [line] = result.stderr.strip().splitlines()
    assert "database unreachable" in line and "skip" in line
    assert len(spool_of(scripts)) == 1 and dba.runs() == []
    proxy.mode = "pass"
    assert scripts.run("publish-distro").returncode == exitcodes.OK
    assert len(spool_of(scripts)) == 0
    runs = dba.runs("publish-distro")
    assert sorted(run["status"] for run in runs) == ["skipped", "succeeded"]
    [skip] = [run for run in runs if run["status"] == "skipped"]
    assert "database unreachable" in skip["skip_reason"]


def test_cached_policy_holds_while_the_database_is_down(proxied, tmp_path):
    proxy, scripts, dba = proxied
    scripts.write("publish-distro")
    scripts.env["CRONPOLICY_CONFIG"] = write_config(
        tmp_path, "[script:publish-distro]\non_database_error = run\n")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true, reason = 'r42'")
    assert scripts.run("publish-distro").returncode == exitcodes.OK    # skipped, cache written
    proxy.mode = "refuse"
    result = scripts.run("publish-distro")
    assert result.returncode == exitcodes.OK
    assert "policy cached" in result.stderr and "deploy pending" in result.stderr
    assert scripts.main_calls("publish-distro") == 0                   # not the blind "run"
    # Once the cache is too old, the script's own on_database_error applies.
    scripts.env["CRONPOLICY_CONFIG"] = write_config(
        tmp_path, "cache_max_age = 0.2s\n[script:publish-distro]\non_database_error = run\n")
    time.sleep(0.3)
    result = scripts.run("publish-distro")
    assert "on_database_error = run" in result.stderr
    assert scripts.main_calls("publish-distro") == 1


def test_blackholed_database_decides_within_the_bound(proxied):
    proxy, scripts, dba = proxied
    scripts.write("publish-distro")
    proxy.mode = "stall"
    started = time.monotonic()
    result = scripts.run("publish-distro")
    elapsed = time.monotonic() - started
    assert result.returncode == exitcodes.OK
    assert elapsed < 3 * 1.1 + 2.0, elapsed     # decision_timeout + 10%, plus process start
    assert "database unreachable" in result.stderr


def test_database_lost_mid_run_keeps_the_record_with_real_times(proxied, tmp_path):
    proxy, scripts, dba = proxied
    scripts.write("publish-distro")
    ready = tmp_path / "ready"
    job = scripts.start("publish-distro", "--sleep", "3", "--ready-file", str(ready))
    wait_for_file(ready)
    proxy.mode = "refuse"
    proxy.cut()
    out, err = job.communicate(timeout=60)
    assert job.returncode == exitcodes.OK, err           # main() was not disturbed
    assert "spooling it" in err
    assert len(spool_of(scripts)) == 1
    proxy.mode = "pass"
    flush = [sys.executable, "-m", "cronpolicy", "flush"]
    result = subprocess.run(flush, env=scripts.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "wrote 1 spooled" in result.stdout, result.stderr
    again = subprocess.run(flush, env=scripts.env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing spooled" in again.stdout
    [run] = dba.runs("publish-distro")
    assert (run["status"], run["exit_code"]) == ("succeeded", 0)
    duration = dba.scalar("SELECT extract(epoch FROM finished_at - started_at)"
                          " FROM cronpolicy.script_run")
    assert 2.5 < float(duration) < 10


def test_offline_run_is_written_once_even_if_a_flush_is_repeated(proxied, tmp_path):
    proxy, scripts, dba = proxied
    scripts.write("heartbeat-job", extra='on_database_error = "run"')
    proxy.mode = "refuse"
    result = scripts.run("heartbeat-job", "--sleep", "1")
    assert result.returncode == exitcodes.OK and scripts.main_calls("heartbeat-job") == 1
    [(path, entry)] = spool_of(scripts).entries()
    backup = tmp_path / "entry-copy.json"
    shutil.copy(path, backup)
    proxy.mode = "pass"
    flush = [sys.executable, "-m", "cronpolicy", "flush"]
    assert subprocess.run(flush, env=scripts.env, capture_output=True, timeout=60).returncode == 0
    shutil.copy(backup, path)       # as if the flush had died before removing the file
    assert subprocess.run(flush, env=scripts.env, capture_output=True, timeout=60).returncode == 0
    [run] = dba.runs("heartbeat-job")
    assert run["status"] == "succeeded"
    duration = dba.scalar("SELECT extract(epoch FROM finished_at - started_at)"
                          " FROM cronpolicy.script_run")
    assert 0.9 < float(duration) < 10


@pytest.mark.slow
def test_the_herd_at_the_top_of_the_hour_all_decide(pg_dsn, tmp_path):
    """30 simultaneous starts against a database that allows 3 connections."""
    import psycopg2

    from cronpolicy import schema
    name, dsn = create_database("herd")
    try:
        connection = psycopg2.connect(dsn)
        schema.upgrade_postgres(connection)
        connection.close()
        DBA(pg_dsn).execute('ALTER DATABASE "%s" CONNECTION LIMIT 3' % name)
        env = make_env(tmp_path, dsn)
        config = tmp_path / "herd.conf"
        config.write_text("[cronpolicy]\ndecision_timeout = 20s\n")
        env["CRONPOLICY_CONFIG"] = str(config)
        runners = []
        for index in range(30):
            host_dir = tmp_path / ("host%d" % index)
            host_dir.mkdir()
            runner = ScriptRunner(host_dir, dict(env, CRONPOLICY_HOST="web%d" % index,
                                                 CRONPOLICY_LOCK_DIR=str(host_dir / "locks"),
                                                 XDG_STATE_HOME=str(host_dir / "state")))
            runner.write("hourly-job")
            runners.append(runner)
        processes = [runner.start("hourly-job") for runner in runners]
        codes = [process.wait(timeout=120) for process in processes]
        assert codes == [exitcodes.OK] * 30
        assert sum(runner.main_calls("hourly-job") for runner in runners) == 30
        assert DBA(dsn).scalar("SELECT count(*) FROM cronpolicy.script_run"
                               " WHERE status = 'succeeded'") == 30
    finally:
        drop_database_soon(name)


def stop_between_writes(job, dba):
    """SIGSTOP ``job`` just after a heartbeat of its committed, so it is not
    stopped while holding SQLite's one write lock (which would make every
    other writer wait it out: a different story from the one tested here).
    On a loaded machine the next write may have begun by the time the
    signal lands: then it goes on (SIGCONT) and is stopped after the next."""
    deadline = time.monotonic() + 20
    while True:
        last = dba.scalar("SELECT heartbeat_at FROM cronpolicy.script_run")
        while dba.scalar("SELECT heartbeat_at FROM cronpolicy.script_run") == last:
            assert time.monotonic() < deadline, "no heartbeat within 20s"
            time.sleep(0.01)
        job.send_signal(signal.SIGSTOP)
        if not _holds_the_write_lock(dba):
            return
        job.send_signal(signal.SIGCONT)
        assert time.monotonic() < deadline, "stopped holding the write lock every time"


def _holds_the_write_lock(dba):
    """Whether a writer holds the SQLite file's write lock (PostgreSQL has none)."""
    if dba.backend != "sqlite":
        return False
    import sqlite3
    connection = sqlite3.connect(dba.dsn[len("sqlite:///"):], timeout=0,
                                 isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as error:
        assert "locked" in str(error), error
        return True
    finally:
        connection.close()


def test_sigstop_makes_a_run_abandoned_and_sigcont_brings_it_back(scripts, dba, tmp_path,
                                                                  script_env):
    config = tmp_path / "fast.conf"
    config.write_text("[cronpolicy]\nheartbeat_interval = 0.5s\nlease_ttl = 1.5s\n"
                      "poll_interval = 0.25s\n")
    env = dict(script_env, CRONPOLICY_CONFIG=str(config))
    scripts.write("publish-distro")
    done = tmp_path / "done"
    job = scripts.start("publish-distro", "--sleep", "60", "--until-file", str(done),
                        "--ready-file", str(tmp_path / "ready"),
                        env={"CRONPOLICY_CONFIG": str(config)})
    wait_for_file(tmp_path / "ready")
    stop_between_writes(job, dba)
    try:
        deadline = time.monotonic() + 20      # the lease (1.5s) has to run out first
        while True:
            status = subprocess.run([sys.executable, "-m", "cronpolicy", "status", "--json"],
                                    env=env, capture_output=True, text=True, timeout=60)
            assert status.returncode == 0, status.stderr
            # (status records dead runs, then reads: a lease that runs out
            # in between is not shown, and recorded by the next command.)
            if json.loads(status.stdout)["running"] == [] and \
                    dba.runs("publish-distro")[0]["status"] == "abandoned":
                break
            assert time.monotonic() < deadline, "the stopped run was never given up on"
            time.sleep(0.2)
    finally:
        job.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 20           # its next heartbeat revives it
    while dba.runs("publish-distro")[0]["status"] != "running":
        assert time.monotonic() < deadline, "the run did not come back"
        time.sleep(0.05)
    done.write_text("")
    job.communicate(timeout=60)
    assert job.returncode == exitcodes.OK
    assert dba.runs("publish-distro")[0]["status"] == "succeeded"


def test_prune_deletes_in_batches_but_keeps_estimates_and_running_runs(dba, cli):
    insert = ("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
              " status, exit_code) VALUES ({}, 'h', 1, {}, {}, {}, 0)")
    for index in range(30):            # 30 old succeeded runs of one script...
        start = -200 * 86400 + index * 60
        dba.execute(insert.format("'old-job'", dba.now_plus(start), dba.now_plus(start + 30),
                                  "'succeeded'"))
    for index in range(7):             # ...7 old failures, 3 recent runs
        start = -150 * 86400 + index * 60
        dba.execute(insert.format("'old-job'", dba.now_plus(start), dba.now_plus(start + 30),
                                  "'failed'"))
    for index in range(3):
        dba.execute(insert.format("'old-job'", dba.now_plus(-3600 + index), dba.now_plus(-3500),
                                  "'skipped'"))
    code, out, _ = cli("prune", "--older-than", "90d", "--batch", "4")
    assert code == exitcodes.OK and "deleted 17 runs" in out
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run WHERE status = 'succeeded'") == 20
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run WHERE status = 'skipped'") == 3
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run WHERE status = 'failed'") == 0
    code, out, _ = cli("estimate", "old-job", "--json")
    assert json.loads(out)["estimates"][0]["runs_considered"] == 20


# Bad input never corrupts state ------------------------------------------------

_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                max_size=30)
_times = st.one_of(_text, st.sampled_from(["now", "+10m", "now+1h", "2099-01-01T00:00Z", "+0s",
                                           "now-1h", "1999-01-01"]))
_durations = st.one_of(_text, st.sampled_from(["1h", "0s", "30m", "1.5h", "90d"]))


def _counts(dba):
    return dba.counts("rollout_window", "script_policy", "script_run")


@hypothesis_settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=_times, end=st.one_of(st.none(), _times), duration=_durations, host=_text,
       script=_text, reason=_text)
def test_fuzzed_window_add_writes_one_valid_row_or_nothing(cli, dba, start, end, duration, host,
                                                           script, reason):
    before = _counts(dba)
    argv = ["window", "add", "--start=" + start, "--host=" + host, "--script=" + script,
            "--reason=" + reason]
    argv += ["--end=" + end] if end is not None else ["--duration=" + duration]
    code, out, err = cli(*argv)
    after = _counts(dba)
    assert code in (exitcodes.OK, exitcodes.USAGE), err
    if code == exitcodes.OK:
        assert after == (before[0] + 1,) + before[1:]
        assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout_window"
                          " WHERE NOT (ends_at > starts_at)" if dba.backend == "postgresql" else
                          "SELECT count(*) FROM cronpolicy.rollout_window"
                          " WHERE julianday(ends_at) <= julianday(starts_at)") == 0
    else:
        assert after == before and len(err.strip().splitlines()) == 1


@hypothesis_settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_text, host=_text, reason=_text, enable=st.booleans())
def test_fuzzed_policy_changes_write_one_row_or_nothing(cli, dba, name, host, reason, enable):
    before = dba.scalar("SELECT count(*) FROM cronpolicy.script_policy")
    argv = ["enable" if enable else "disable", "--host=" + host, "--", name]
    if not enable:
        argv[1:1] = ["--reason=" + reason]
    code, out, err = cli(*argv)
    after = dba.scalar("SELECT count(*) FROM cronpolicy.script_policy")
    assert code in (exitcodes.OK, exitcodes.USAGE), err
    # enable writes a row only to outrank another that disables; it takes back its own.
    assert after - before in (((-1, 0, 1) if enable else (0, 1)) if code == exitcodes.OK
                              else (0,))
    if code == exitcodes.OK:
        stored = dba.execute("SELECT enabled FROM cronpolicy.script_policy"
                             " WHERE name = {} AND host = {}", (name.strip(), host.strip()))
        assert [bool(row[0]) for row in stored] in (([], [True]) if enable else ([False],))


@hypothesis_settings(max_examples=80, deadline=None)
@given(st.binary(max_size=300))
def test_fuzzed_config_files_load_or_fail_in_one_line(tmp_path_factory, content):
    from cronpolicy.config import Settings
    from cronpolicy.errors import ConfigError
    path = tmp_path_factory.mktemp("conf") / "cronpolicy.conf"
    path.write_bytes(b"[cronpolicy]\n" + content)
    try:
        Settings.load(environ={"CRONPOLICY_CONFIG": str(path)})
    except ConfigError as error:
        assert "\n" not in str(error) and str(path) in str(error)


def test_malformed_dsn_is_one_line_naming_the_config_file(scripts, tmp_path, script_env):
    config = tmp_path / "bad-dsn.conf"
    config.write_text("[cronpolicy]\ndsn = host=127.0.0.1 port=notanumber dbname=x\n")
    env = dict(script_env, CRONPOLICY_CONFIG=str(config))
    del env["CRONPOLICY_DSN"]
    scripts.write("publish-distro")
    result = scripts.run("publish-distro", env={"CRONPOLICY_CONFIG": str(config),
                                                "CRONPOLICY_DSN": None})
    assert result.returncode == exitcodes.GATE_ERROR
    [line] = result.stderr.strip().splitlines()
    assert "invalid PostgreSQL DSN" in line and str(config) in line
    cli = subprocess.run([sys.executable, "-m", "cronpolicy", "status"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == exitcodes.GATE_ERROR
    [line] = cli.stderr.strip().splitlines()
    assert "invalid PostgreSQL DSN" in line and str(config) in line


@pytest.mark.parametrize("where", ["environment", "option", "config file"])
def test_an_empty_dsn_is_a_configuration_error_not_the_local_file(scripts, tmp_path, where):
    config = tmp_path / "empty.conf"
    config.write_text("[cronpolicy]\n" + ("dsn =\n" if where == "config file" else ""))
    env = {"CRONPOLICY_CONFIG": str(config),
           "CRONPOLICY_DSN": "" if where == "environment" else None}
    scripts.write("publish-distro")
    result = scripts.run("publish-distro", *(["--dsn", ""] if where == "option" else []), env=env)
    assert result.returncode == exitcodes.GATE_ERROR
    [line] = result.stderr.strip().splitlines()
    assert "DSN" in line and "empty" in line
    assert scripts.main_calls("publish-distro") == 0
    assert not (tmp_path / "state" / "cronpolicy" / "cronpolicy.sqlite").exists()


def test_a_dropped_connection_keeps_the_run_alive_and_listening(scripts, dba, tmp_path,
                                                                 script_env, pg_dsn):
    if dba.backend != "postgresql":
        return  # (the SQLite store has no server connection to lose)
    config = tmp_path / "reconnect.conf"
    config.write_text("[cronpolicy]\nheartbeat_interval = 0.3s\nlease_ttl = 10s\n")
    env = dict(script_env, CRONPOLICY_CONFIG=str(config))
    (tmp_path / "safe").write_text("")
    scripts.write("sync-mirror", safe_file=tmp_path / "safe")
    ready = tmp_path / "ready"
    job = scripts.start("sync-mirror", "--sleep", "60", "--ready-file", str(ready),
                        env={"CRONPOLICY_CONFIG": str(config)})
    try:
        wait_for_file(ready)
        assert dba.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                          " WHERE application_name = 'cronpolicy:sync-mirror'"
                          " AND datname = current_database()") == 1   # this test's only
        time.sleep(1.5)                                   # a heartbeat reconnects
        status = subprocess.run([sys.executable, "-m", "cronpolicy", "status", "--json"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert [run["name"] for run in json.loads(status.stdout)["running"]] == ["sync-mirror"]
        dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
        job.communicate(timeout=20)                       # LISTEN was taken back too
        assert job.returncode == exitcodes.INTERRUPTED
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()


def test_a_damaged_or_refused_spool_entry_never_blocks_the_others(dsn, tmp_path):
    from cronpolicy.config import Settings
    from cronpolicy.rows import RunRecord
    from cronpolicy.store import open_store
    spool = Spool(str(tmp_path / "spool"))

    def whole_run(name, status):
        spool.record_finish(spool.record_start(RunRecord(name=name, host="web1", pid=1)),
                            RunEnd(status=status, exit_code=0))
    whole_run("good-one", "succeeded")
    (tmp_path / "spool" / "00000000000000000001-damaged.json").write_text('{"no": "kind"}')
    (tmp_path / "spool" / "00000000000000000002-shape.json").write_text('[1, 2]')
    (tmp_path / "spool" / "00000000000000000003-cut.json").write_text('{"format": 2, "ki')
    whole_run("bad-status", "exploded")                  # the database refuses
    whole_run("good-two", "succeeded")
    store = open_store(Settings(dsn=dsn, dsn_source="--dsn", lock_dir=str(tmp_path / "locks")))
    try:
        assert spool.flush(store) == 2
        assert spool.flush(store) == 0                   # twice: harmless
    finally:
        store.close()
    assert len(os.listdir(tmp_path / "spool" / "rejected")) == 4
    assert sorted(run["name"] for run in DBA(dsn).runs()) == ["good-one", "good-two"]


def test_stopping_a_wrapped_pipeline_stops_all_of_it(script_env, dba, tmp_path):
    program = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    marker = "sleep 37.%d" % os.getpid()
    ready = tmp_path / "ready"
    wrapper = subprocess.Popen(
        [program, "run", "pipeline", "--interruptible", "--", "sh", "-c",
         "touch %s; %s | cat" % (ready, marker)],
        env=script_env)
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    wrapper.wait(timeout=60)
    assert wrapper.returncode == exitcodes.INTERRUPTED
    time.sleep(0.3)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout.strip() == "", "orphans: %s" % left.stdout


def test_configuration_errors_are_not_outages(scripts, pg_dsn):
    from psycopg2.extensions import make_dsn, parse_dsn
    params = parse_dsn(pg_dsn)
    params["dbname"] = "cronpolicy_no_such_database"
    scripts.write("publish-distro")
    result = scripts.run("publish-distro", env={"CRONPOLICY_DSN": make_dsn(**params)})
    assert result.returncode == exitcodes.GATE_ERROR
    [line] = result.stderr.strip().splitlines()
    assert "does not exist" in line
    # (`cronpolicy --dsn DSN run x -- true` runs: test_cli.py's
    # test_run_after_dsn_runs_as_the_usage_says.)
    cli = subprocess.run([sys.executable, "-m", "cronpolicy", "--dsn", pg_dsn, "run"],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == exitcodes.USAGE and len(cli.stderr.strip().splitlines()) == 1
    assert "Traceback" not in cli.stderr


@pytest.mark.integration
def test_a_database_that_only_reads_stops_a_start_and_still_answers_the_reads(tmp_path):
    """A DSN that names a standby (or a database set
    default_transaction_read_only): the start's INSERT met 25006, which was
    taken for an outage, so main() ran unseen by `deploy wait`, decided on
    what a standby may still hold from before a rollout began on the
    primary, and its record was spooled to fail at every flush; and `status`
    failed (exit 4) on recording dead runs.  Now as a missing privilege:
    main() not run, one line saying so and where to point the DSN (exit 4);
    the read commands answer without recording dead runs."""
    from .conftest import admin_connection, schema_template
    name, dsn = create_database(template=schema_template())
    try:
        with admin_connection() as connection, connection.cursor() as cursor:
            cursor.execute('ALTER DATABASE "%s" SET default_transaction_read_only = on' % name)
        scripts = ScriptRunner(tmp_path, make_env(tmp_path, dsn))
        scripts.write("publish-distro")
        result = scripts.run("publish-distro")
        assert result.returncode == exitcodes.GATE_ERROR, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "only reads" in line and "primary" in line, line
        assert scripts.main_calls("publish-distro") == 0
        assert len(spool_of(scripts)) == 0
        status = subprocess.run([sys.executable, "-m", "cronpolicy", "status"], env=scripts.env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == exitcodes.OK, status.stderr
        assert "Traceback" not in status.stderr
    finally:
        drop_database_soon(name)


# Liveness by lease ----------------------------------------------------------------------------

def lease_config(tmp_path, extra=""):
    # A lease long enough to outlast any slowness of the machine: these tests
    # are about what happens while it stands.
    return write_config(tmp_path, "heartbeat_interval = 0.5s\nlease_ttl = 60s\n" + extra)


@pytest.mark.integration
def test_a_database_turned_read_only_mid_run_is_said_once_not_at_every_heartbeat(tmp_path):
    """The database turns read-only while a job runs (a standby now behind
    the DSN): each heartbeat fails, each read between succeeds.  The read
    cleared the "trouble", so every heartbeat warned "cannot renew the
    run's lease (will retry)" again: a line into cron's mail per heartbeat
    for the rest of the run.  Said once; the job runs on and its end is
    spooled."""
    from .conftest import admin_connection, schema_template
    name, dsn = create_database(template=schema_template())
    try:
        scripts = ScriptRunner(tmp_path, make_env(tmp_path, dsn))
        scripts.env["CRONPOLICY_CONFIG"] = lease_config(tmp_path)
        scripts.write("publish-distro")
        ready = tmp_path / "ready"
        job = scripts.start("publish-distro", "--sleep", "2", "--ready-file", str(ready))
        wait_for_file(str(ready), process=job)
        with admin_connection() as connection, connection.cursor() as cursor:
            cursor.execute('ALTER DATABASE "%s" SET default_transaction_read_only = on' % name)
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        out, err = job.communicate(timeout=60)
        assert job.returncode == exitcodes.OK, err
        assert err.count("cannot renew the run's lease") == 1, err
        assert "its record is spooled" in err and "Traceback" not in err, err
    finally:
        drop_database_soon(name)


def test_a_run_cut_off_from_the_database_still_blocks_deploy_wait(proxied, tmp_path, pg_dsn):
    """Its session died, the run did not: while its lease stands, deploy wait
    must not say quiet (it did within 0.1s when liveness was the session)."""
    proxy, scripts, dba = proxied
    scripts.env["CRONPOLICY_CONFIG"] = lease_config(tmp_path)
    scripts.write("publish-distro")                     # no hook: never safe
    done = tmp_path / "done"
    job = scripts.start("publish-distro", "--sleep", "60", "--until-file", str(done),
                        "--ready-file", str(tmp_path / "ready"))
    try:
        wait_for_file(tmp_path / "ready")
        proxy.mode = "refuse"
        proxy.cut()
        direct = dict(make_env(tmp_path, pg_dsn), CRONPOLICY_CONFIG=lease_config(tmp_path))
        assert subprocess.run([sys.executable, "-m", "cronpolicy", "deploy", "begin"],
                              env=direct, capture_output=True, timeout=60).returncode == 0
        waited = subprocess.run([sys.executable, "-m", "cronpolicy", "deploy", "wait",
                                 "--timeout", "2s", "--json"], env=direct,
                                capture_output=True, text=True, timeout=60)
        assert waited.returncode == exitcodes.WAIT_TIMEOUT, waited.stdout + waited.stderr
        [blocker] = json.loads(waited.stdout)["blockers"]
        assert (blocker["name"], blocker["pid"]) == ("publish-distro", job.pid)
    finally:
        done.write_text("")
        job.communicate(timeout=60)
    assert job.returncode == exitcodes.OK                 # never interrupted: never safe


def test_a_half_open_connection_is_replaced_and_the_run_stays_alive(proxied, tmp_path):
    """Packets dropped, no FIN: the run's statements time out, it connects
    again, renews its lease and hears the deploy (it stayed abandoned and
    deaf forever when liveness was a lock the dead session still held)."""
    proxy, scripts, dba = proxied
    scripts.env["CRONPOLICY_CONFIG"] = lease_config(tmp_path)
    (tmp_path / "safe").write_text("")
    scripts.write("sync-mirror", safe_file=tmp_path / "safe")
    job = scripts.start("sync-mirror", "--sleep", "60", "--ready-file", str(tmp_path / "ready"))
    try:
        wait_for_file(tmp_path / "ready")
        proxy.freeze()                                   # new connections still pass
        frozen_at = dba.scalar("SELECT now()")
        deadline = time.monotonic() + 20
        while not dba.scalar("SELECT heartbeat_at > {} FROM cronpolicy.script_run",
                             (frozen_at,)):
            assert time.monotonic() < deadline, "no heartbeat after the connection froze"
            time.sleep(0.1)
        assert dba.runs("sync-mirror")[0]["status"] == "running"
        dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
        job.communicate(timeout=30)                      # LISTEN came back with the new one
        assert job.returncode == exitcodes.INTERRUPTED
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()


def test_a_fleet_single_instance_keeps_its_slot_when_its_connection_drops(proxied, tmp_path,
                                                                          pg_dsn):
    proxy, scripts, dba = proxied
    scripts.env["CRONPOLICY_CONFIG"] = lease_config(tmp_path)
    scripts.write("publish-distro", extra="fleet_single_instance = True")
    done = tmp_path / "done"
    first = scripts.start("publish-distro", "--sleep", "60", "--until-file", str(done),
                          "--ready-file", str(tmp_path / "ready"))
    try:
        wait_for_file(tmp_path / "ready")
        proxy.mode = "refuse"
        proxy.cut()
        other_host = tmp_path / "web2"
        other_host.mkdir()
        second = ScriptRunner(other_host, dict(make_env(other_host, pg_dsn),
                                               CRONPOLICY_HOST="web2",
                                               CRONPOLICY_CONFIG=lease_config(tmp_path)))
        second.write("publish-distro", extra="fleet_single_instance = True")
        result = second.run("publish-distro")
        assert result.returncode == exitcodes.LOCKED, result.stderr
        assert second.main_calls("publish-distro") == 0
    finally:
        done.write_text("")
        first.communicate(timeout=60)
    assert first.returncode == exitcodes.OK


def test_a_start_written_late_and_its_spooled_record_make_one_row(proxied, tmp_path, pg_dsn):
    """The start's INSERT waits on a lock past the deadline: the run goes on
    and is spooled, then the INSERT lands after all.  One run, one row."""
    import psycopg2
    proxy, scripts, dba = proxied
    scripts.env["CRONPOLICY_CONFIG"] = lease_config(tmp_path)
    scripts.write("publish-distro")
    locker = psycopg2.connect(pg_dsn)
    try:
        with locker.cursor() as cursor:                  # like a CREATE INDEX on script_run
            cursor.execute("LOCK TABLE cronpolicy.script_run IN SHARE MODE")
            result = scripts.run("publish-distro", "--sleep", "0.5")
    finally:
        locker.rollback()
        locker.close()
    assert result.returncode == exitcodes.OK and scripts.main_calls("publish-distro") == 1
    assert "cannot record the start" in result.stderr
    deadline = time.monotonic() + 20                      # the late INSERT lands
    while not dba.runs("publish-distro"):
        assert time.monotonic() < deadline, "the start never landed"
        time.sleep(0.05)
    flush = subprocess.run([sys.executable, "-m", "cronpolicy", "flush"], env=scripts.env,
                           capture_output=True, text=True, timeout=60)
    assert flush.returncode == 0, flush.stderr
    [run] = dba.runs("publish-distro")
    assert (run["status"], run["exit_code"]) == ("succeeded", 0)


def test_a_start_written_late_is_seen_and_stopped_like_any_run(pg_scripts, tmp_path, pg_dsn):
    """While the start's INSERT waits on a lock the run goes on unseen; once
    the lock goes, the watcher writes the start, the run holds a lease, and a
    deploy stops it (it ran deaf and invisible to deploy wait before)."""
    import psycopg2
    scripts, dba = pg_scripts, DBA(pg_dsn)
    scripts.env["CRONPOLICY_CONFIG"] = lease_config(tmp_path)
    (tmp_path / "safe").write_text("")
    scripts.write("sync-mirror", safe_file=tmp_path / "safe")
    locker = psycopg2.connect(pg_dsn)
    try:
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLE cronpolicy.script_run IN SHARE MODE")
        job = scripts.start("sync-mirror", "--sleep", "60", "--ready-file",
                            str(tmp_path / "ready"))
        wait_for_file(tmp_path / "ready")               # main() runs, its start unwritten
        assert dba.runs("sync-mirror") == []
    finally:
        locker.rollback()
        locker.close()
    try:
        deadline = time.monotonic() + 20
        while [run["status"] for run in dba.runs("sync-mirror")] != ["running"]:
            assert time.monotonic() < deadline, "the start was never written"
            time.sleep(0.05)
        dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
        _, err = job.communicate(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode == exitcodes.INTERRUPTED, err
    [run] = dba.runs("sync-mirror")
    assert run["status"] == "interrupted"
