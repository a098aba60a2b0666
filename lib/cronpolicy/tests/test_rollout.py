"""Rollouts in motion, with real processes: stop requests reach running
scripts, interruption only at safe points, SIGTERM deferral, dead runs,
deploy wait and plan, fleet-wide single instance."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cronpolicy import exitcodes

from .conftest import (BACKENDS, DBA, ScriptRunner, dsn_for, make_env, read_line, wait_for,
                       wait_for_file)
from .pgbouncer import MODES

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS + tuple("pgbouncer-" + mode for mode in MODES))
def dsn(request):
    """Rollouts are also run through a real pgbouncer, in each pooling mode
    (transaction pooling with ``watch = poll``)."""
    return dsn_for(request, request.param)

FLIP_DEPLOY = "UPDATE cronpolicy.deploy_state SET deploy_pending = true, reason = 'release 42'"


def start_ready(scripts, tmp_path, name, *args, env=None):
    ready = tmp_path / ("%s.ready" % name)
    if ready.exists():
        ready.unlink()
    process = scripts.start(name, "--ready-file", str(ready), *args, env=env)
    wait_for_file(ready)
    return process


def cronpolicy(env, *argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "cronpolicy"] + list(argv), env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_plain_sql_deploy_flag_stops_a_safe_script_and_waits_for_an_unsafe_one(
        scripts, dba, tmp_path):
    safe_flag = tmp_path / "publisher-safe"
    scripts.write("sync-mirror", safe_file=tmp_path / "always-safe")
    (tmp_path / "always-safe").write_text("yes")
    scripts.write("publish-distro", safe_file=safe_flag)
    mirror = start_ready(scripts, tmp_path, "sync-mirror", "--sleep", "60")
    publisher = start_ready(scripts, tmp_path, "publish-distro", "--sleep", "60")
    try:
        dba.execute(FLIP_DEPLOY)
        flipped = time.monotonic()
        mirror.communicate(timeout=30)
        stopped_after = time.monotonic() - flipped
        assert mirror.returncode == exitcodes.INTERRUPTED
        assert stopped_after < 5, stopped_after   # the 1s target is measured by the benchmark
        time.sleep(1.0)
        assert publisher.poll() is None             # not safe: still publishing
        safe_flag.write_text("now")
        publisher.communicate(timeout=30)
        assert publisher.returncode == exitcodes.INTERRUPTED
    finally:
        for process in (mirror, publisher):
            if process.poll() is None:
                process.kill()
                process.communicate()
    for name in ("sync-mirror", "publish-distro"):
        [run] = dba.runs(name)
        assert run["status"] == "interrupted" and run["exit_code"] == exitcodes.INTERRUPTED
        assert dba.scalar("SELECT stop_reason FROM cronpolicy.script_run WHERE name = {}",
                          (name,)).startswith("deploy pending")
        assert scripts.finally_lines(name) == ["finally stop_requested=True"]


def test_a_script_without_hook_runs_to_completion_unless_its_policy_says_interruptible(
        scripts, dba, tmp_path):
    scripts.write("plain-job")
    job = start_ready(scripts, tmp_path, "plain-job", "--sleep", "2")
    dba.execute(FLIP_DEPLOY)
    job.communicate(timeout=30)
    assert job.returncode == exitcodes.OK
    assert dba.runs("plain-job")[0]["status"] == "succeeded"
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, interruptible) VALUES"
                " ('plain-job', true)")
    job = start_ready(scripts, tmp_path, "plain-job", "--sleep", "60")
    dba.execute(FLIP_DEPLOY)
    job.communicate(timeout=30)
    assert job.returncode == exitcodes.INTERRUPTED


def test_checkpoints_stop_a_script_without_a_hook(scripts, dba, tmp_path):
    scripts.write("batch-job")
    job = start_ready(scripts, tmp_path, "batch-job", "--sleep", "60", "--checkpoints")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled, reason)"
                " VALUES ('batch-*', false, 'switched off mid-run')")
    job.communicate(timeout=30)
    assert job.returncode == exitcodes.INTERRUPTED
    [run] = dba.runs("batch-job")
    assert run["status"] == "interrupted"
    assert "switched off mid-run" in dba.scalar("SELECT stop_reason FROM cronpolicy.script_run")


def test_a_window_that_begins_mid_run_stops_a_safe_script(scripts, dba, tmp_path):
    (tmp_path / "safe").write_text("yes")
    scripts.write("sync-mirror", safe_file=tmp_path / "safe", expected_runtime=1)
    job = start_ready(scripts, tmp_path, "sync-mirror", "--sleep", "60")
    dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason)"
                " VALUES ({}, {}, 'nightly')".format(dba.now_plus(2), dba.now_plus(600)))
    started = time.monotonic()
    job.communicate(timeout=30)
    assert job.returncode == exitcodes.INTERRUPTED
    assert 1.0 <= time.monotonic() - started < 10
    assert "inside rollout window" in dba.scalar("SELECT stop_reason FROM cronpolicy.script_run")


def test_sigterm_in_a_critical_section_is_deferred_until_safe(scripts, dba, tmp_path):
    safe_flag = tmp_path / "safe"
    scripts.write("publish-distro", safe_file=safe_flag)
    job = start_ready(scripts, tmp_path, "publish-distro", "--sleep", "60")
    job.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert job.poll() is None
    safe_flag.write_text("ok")
    out, err = job.communicate(timeout=30)
    assert job.returncode == exitcodes.INTERRUPTED
    assert "SIGTERM received" in err
    assert dba.runs("publish-distro")[0]["status"] == "interrupted"
    assert dba.scalar("SELECT stop_reason FROM cronpolicy.script_run") == "SIGTERM"
    assert scripts.finally_lines("publish-distro") == ["finally stop_requested=True"]


def test_a_second_sigterm_forces_it_and_says_so(scripts, dba, tmp_path):
    scripts.write("publish-distro", safe_file=tmp_path / "never")
    job = start_ready(scripts, tmp_path, "publish-distro", "--sleep", "60")
    job.send_signal(signal.SIGTERM)
    # Only once the first has been handled: two pending signals are one.
    assert "SIGTERM received" in read_line(job.stderr)
    assert job.poll() is None
    job.send_signal(signal.SIGTERM)
    out, err = job.communicate(timeout=30)
    assert job.returncode == exitcodes.INTERRUPTED
    assert "forcing the interruption" in err
    assert "forced by a second SIGTERM" in dba.scalar("SELECT stop_reason FROM cronpolicy.script_run")
    assert scripts.finally_lines("publish-distro")   # cleanup still ran


def test_running_scripts_heartbeat_and_report_their_safety(scripts, dba, tmp_path):
    config = tmp_path / "fast.conf"
    config.write_text("[cronpolicy]\nheartbeat_interval = 0.5s\nlease_ttl = 5s\n"
                      "poll_interval = 0.25s\n")
    safe_flag = tmp_path / "safe"
    scripts.write("publish-distro", safe_file=safe_flag)
    job = start_ready(scripts, tmp_path, "publish-distro", "--sleep", "60",
                      env={"CRONPOLICY_CONFIG": str(config)})
    try:
        first = dba.scalar("SELECT heartbeat_at FROM cronpolicy.script_run")
        wait_for(lambda: dba.scalar("SELECT heartbeat_at FROM cronpolicy.script_run") != first,
                 what="a newer heartbeat")
        assert dba.scalar("SELECT safe_to_interrupt FROM cronpolicy.script_run") in (False, 0)
        safe_flag.write_text("ok")
        wait_for(lambda: dba.scalar("SELECT safe_to_interrupt FROM cronpolicy.script_run")
                 in (True, 1), what="safe_to_interrupt reported")
    finally:
        job.kill()
        job.communicate()


def test_deploy_wait_returns_when_the_unsafe_one_finishes_and_times_out_otherwise(
        scripts, dba, tmp_path, script_env):
    done = tmp_path / "done"
    scripts.write("publish-distro", safe_file=tmp_path / "never", expected_runtime=1200)
    job = start_ready(scripts, tmp_path, "publish-distro", "--sleep", "60",
                      "--until-file", str(done))
    try:
        assert cronpolicy(script_env, "deploy", "begin").returncode == 0
        # A wait looks once before it may time out: 0.1s finds what 1s did.
        timed_out = cronpolicy(script_env, "deploy", "wait", "--timeout", "0.1s", "--json")
        assert timed_out.returncode == exitcodes.WAIT_TIMEOUT
        result = json.loads(timed_out.stdout)
        assert result["quiet"] is False and result["stop_asked"] is True
        [blocker] = result["blockers"]
        assert (blocker["name"], blocker["pid"], blocker["safe_to_interrupt"]) == (
            "publish-distro", job.pid, False)
        assert blocker["predicted_finish"]
        text = cronpolicy(script_env, "deploy", "wait", "--timeout", "0.1s")
        assert text.returncode == exitcodes.WAIT_TIMEOUT
        assert "still running" in text.stdout and "publish-distro" in text.stdout
        waiter = subprocess.Popen([sys.executable, "-m", "cronpolicy", "deploy", "wait",
                                   "--timeout", "60s"], env=script_env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        assert "waiting for publish-distro" in read_line(waiter.stdout)   # it has seen it...
        assert waiter.poll() is None                                       # ...and waits
        done.write_text("finish now")
        job.communicate(timeout=30)
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == exitcodes.OK, err
        assert b"quiet after" in out
        assert job.returncode == exitcodes.OK     # it was never interrupted
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()


def test_kill_9_does_not_block_deploy_wait(scripts, dba, tmp_path, script_env):
    """A killed run is given up on when its lease runs out (at once on
    SQLite, which sees the process is gone)."""
    config = tmp_path / "lease.conf"
    config.write_text("[cronpolicy]\nheartbeat_interval = 0.5s\nlease_ttl = 2s\n")
    scripts.write("publish-distro")
    job = start_ready(scripts, tmp_path, "publish-distro", "--sleep", "60",
                      env={"CRONPOLICY_CONFIG": str(config)})
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=30)
    started = time.monotonic()
    waited = cronpolicy(script_env, "deploy", "wait", "--timeout", "20s", "--json")
    assert waited.returncode == exitcodes.OK, waited.stdout + waited.stderr
    assert time.monotonic() - started < 10
    assert json.loads(waited.stdout)["quiet"] is True
    [run] = dba.runs("publish-distro")
    assert run["status"] == "abandoned"
    assert "abandoned" in dba.scalar("SELECT stop_reason FROM cronpolicy.script_run")


def test_deploy_wait_ignores_rollout_exempt_scripts_and_other_hosts(scripts, dba, tmp_path,
                                                                    script_env):
    scripts.write("heartbeat-job")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, rollout_exempt)"
                " VALUES ('heartbeat-job', true)")
    job = start_ready(scripts, tmp_path, "heartbeat-job", "--sleep", "60")
    scripts.write("publish-distro")
    other = start_ready(scripts, tmp_path, "publish-distro", "--sleep", "60",
                        env={"CRONPOLICY_HOST": "ppa1"})
    try:
        dba.execute(FLIP_DEPLOY)
        waited = cronpolicy(script_env, "deploy", "wait", "--timeout", "10s", "--host", "test*",
                            "--json")
        assert waited.returncode == exitcodes.OK, waited.stdout
        everywhere = cronpolicy(script_env, "deploy", "wait", "--timeout", "0.1s", "--json")
        assert everywhere.returncode == exitcodes.WAIT_TIMEOUT
        assert [b["host"] for b in json.loads(everywhere.stdout)["blockers"]] == ["ppa1"]
        assert job.poll() is None                  # exempt: deploy pending leaves it alone
    finally:
        for process in (job, other):
            process.kill()
            process.communicate()


def test_deploy_plan_changes_nothing_and_predicts(scripts, dba, tmp_path, script_env):
    for index in range(5):
        start = -50000 + index * 5000
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                    " status, exit_code) VALUES ('publish-distro', 'h', 1, {}, {}, 'succeeded', 0)"
                    .format(dba.now_plus(start), dba.now_plus(start + 1200)))
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                    " status, exit_code) VALUES ('quick-sync', 'h', 1, {}, {}, 'succeeded', 0)"
                    .format(dba.now_plus(start), dba.now_plus(start + 30)))
    scripts.write("long-running", expected_runtime=3600)
    job = start_ready(scripts, tmp_path, "long-running", "--sleep", "60")
    try:
        before = dba.execute("SELECT count(*), max(id) FROM cronpolicy.script_run")
        result = cronpolicy(script_env, "deploy", "plan", "--at", "+15m", "--json")
        assert result.returncode == exitcodes.OK, result.stderr
        plan = json.loads(result.stdout)
        skipped = {row["name"]: row for row in plan["skipped"]}
        # 20m + 2m margin reaches a rollout 15 minutes out: skipped from now.
        assert skipped["publish-distro"]["already"] is True
        # 30s + 2m does not: skipped only from about 12.5 minutes from now.
        assert skipped["quick-sync"]["already"] is False
        [running] = plan["running"]
        assert running["name"] == "long-running" and running["running_at"] is True
        text = cronpolicy(script_env, "deploy", "plan", "--at", "+15m")
        assert "publish-distro" in text.stdout and "long-running" in text.stdout
        assert dba.execute("SELECT count(*), max(id) FROM cronpolicy.script_run") == before
        assert dba.scalar("SELECT deploy_pending FROM cronpolicy.deploy_state") in (False, 0)
    finally:
        job.kill()
        job.communicate()


def test_bad_input_for_wait_and_plan(script_env):
    for argv in (("deploy", "wait", "--timeout", "soon"), ("deploy", "plan", "--at", "later")):
        result = cronpolicy(script_env, *argv)
        assert result.returncode == exitcodes.USAGE
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql", "pgbouncer-transaction"])
def test_fleet_wide_single_instance_holds_with_many_concurrent_starts(backend, request, tmp_path):
    pg_dsn = dsn_for(request, backend)
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_policy (name, fleet_single_instance)"
                " VALUES ('publish-distro', true)")
    runners = []
    for index in range(10):   # ten hosts: separate lock directories and host names
        host_dir = tmp_path / ("host%d" % index)
        host_dir.mkdir()
        runner = ScriptRunner(host_dir, make_env(host_dir, pg_dsn))
        runner.env["CRONPOLICY_HOST"] = "web%d" % index
        runner.write("publish-distro")
        runners.append(runner)
    # The one that gets the slot holds it until the nine others have given up,
    # however slowly the machine starts them.
    release = tmp_path / "release"
    processes = [runner.start("publish-distro", "--sleep", "120", "--until-file", str(release))
                 for runner in runners]
    deadline = time.monotonic() + 90
    while sum(process.poll() is not None for process in processes) < 9:
        assert time.monotonic() < deadline, "nine starts did not give up within 90s"
        time.sleep(0.05)
    release.write_text("")
    codes = []
    for process in processes:
        process.communicate(timeout=120)
        codes.append(process.returncode)
    assert codes.count(exitcodes.OK) == 1 and codes.count(exitcodes.LOCKED) == 9, codes
    assert sum(runner.main_calls("publish-distro") for runner in runners) == 1
    statuses = [run["status"] for run in dba.runs("publish-distro")]
    assert statuses.count("succeeded") == 1 and statuses.count("skipped") == 9


def test_run_outside_the_main_thread_stops_only_at_checkpoints(script_env, monkeypatch, dba):
    import threading

    from cronpolicy import CronScript

    for key, value in script_env.items():
        if key.startswith(("CRONPOLICY_", "XDG_")):
            monkeypatch.setenv(key, value)

    class Threaded(CronScript):
        name = "threaded-job"

        def is_safe_to_interrupt(self):
            return True

        def main(self):
            dba.execute(FLIP_DEPLOY)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                time.sleep(0.02)
                self.checkpoint()

    codes = []
    worker = threading.Thread(target=lambda: codes.append(Threaded().run([], exit=False)))
    worker.start()
    worker.join(60)
    assert codes == [exitcodes.INTERRUPTED]   # and the process is still alive to say so
    assert dba.runs("threaded-job")[0]["status"] == "interrupted"


def test_deploy_wait_draws_a_live_table_on_a_terminal(scripts, dba, tmp_path, script_env):
    import pty
    import select as select_module

    done = tmp_path / "done"
    scripts.write("publish-distro", expected_runtime=1200)
    job = start_ready(scripts, tmp_path, "publish-distro", "--sleep", "60",
                      "--until-file", str(done))
    controller, terminal = pty.openpty()
    waiter = subprocess.Popen([sys.executable, "-m", "cronpolicy", "deploy", "wait",
                               "--timeout", "60s"], env=script_env, stdin=terminal,
                              stdout=terminal, stderr=terminal)
    os.close(terminal)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"PREDICTED FINISH" not in seen and time.monotonic() < deadline:
            if select_module.select([controller], [], [], 0.5)[0]:
                seen += os.read(controller, 65536)
        done.write_text("finish")
        job.communicate(timeout=30)
        waiter.wait(timeout=30)
        while select_module.select([controller], [], [], 0.5)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)
        for process in (job, waiter):
            if process.poll() is None:
                process.kill()
                process.wait()
    text = seen.decode(errors="replace")
    assert waiter.returncode == exitcodes.OK
    for heading in ("SCRIPT", "HOST", "PID", "RUNNING FOR", "PREDICTED FINISH", "SAFE"):
        assert heading in text
    assert "publish-distro" in text and ("in 20m" in text or "in 19m" in text)
    assert "\x1b[" in text            # redrawn in place
    assert "quiet after" in text


def test_an_abandoned_run_lasts_about_as_long_as_it_really_ran(dsn, tmp_path):
    """Issue 26.13: a run killed 4 s in was recorded as abandoned after 0s,
    its end being its last heartbeat and the first one due 5 s in
    (heartbeat_interval).  The first heartbeats now come 1 s, 2 s and 4 s
    apart, capped at heartbeat_interval.  Here the interval is 3 s and the
    lease 6.5 s (the least above twice the interval), so the lease of a run
    killed 2 s in runs out 7.5 s after it began instead of 14; the first
    heartbeat under the old rule, 3 s in, would still come too late."""
    env = make_env(tmp_path, dsn)
    with open(env["CRONPOLICY_CONFIG"], "a") as config:
        config.write("heartbeat_interval = 3s\nlease_ttl = 6.5s\n")
    scripts = ScriptRunner(tmp_path, env)
    scripts.write("killed")
    ready = str(tmp_path / "killed.ready")
    job = scripts.start("killed", "--sleep", "60", "--ready-file", ready)
    try:
        wait_for_file(ready, process=job)
        began = time.monotonic()
        # The run's real length, the scenario itself (not a synchronisation).
        time.sleep(max(0.0, began + 2.0 - time.monotonic()))
    finally:
        job.kill()
        job.communicate(timeout=60)
    lived = time.monotonic() - began

    def abandoned():
        assert cronpolicy(env, "status").returncode == 0
        return [run for run in json.loads(cronpolicy(env, "history", "--json").stdout)["runs"]
                if run["status"] == "abandoned"]
    wait_for(abandoned, 60, "the run to be recorded as abandoned", interval=0.5)
    [run] = abandoned()
    assert 0.9 <= run["duration_seconds"] <= lived + 1, (run["duration_seconds"], lived)
