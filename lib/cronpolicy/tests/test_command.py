"""`cronpolicy run`: shell commands behind the gate, with real processes."""

import os
import signal
import subprocess
import sys
import time

import pytest

from cronpolicy import exitcodes

from .conftest import wait_for_file

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

PROGRAM = os.path.join(os.path.dirname(sys.executable), "cronpolicy")

# A job that says when it starts, notes a SIGTERM, and takes its time.
JOB = """\
trap 'echo term >> "$1.term"; exit 143' TERM
echo started > "$1.ready"
i=0
while [ $i -lt 60 ] && [ ! -e "$1.done" ]; do sleep 0.05; i=$((i + 1)); done
echo finished
"""


def run(env, *argv, **kwargs):
    return subprocess.run([PROGRAM, "run"] + list(argv), env=env, capture_output=True,
                          timeout=120, **kwargs)


def start(env, *argv):
    return subprocess.Popen([PROGRAM, "run"] + list(argv), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_output_passes_through_and_the_exit_code_is_recorded(script_env, dba):
    result = run(script_env, "shell-job", "--", "sh", "-c",
                 "printf 'raw \\001 bytes\\n'; echo oops >&2; sleep 0.3; exit 3")
    assert result.returncode == 3
    assert result.stdout == b"raw \x01 bytes\n"
    assert b"oops\n" in result.stderr
    [record] = dba.runs("shell-job")
    assert (record["status"], record["exit_code"]) == ("failed", 3)
    seconds = dba.scalar(
        "SELECT extract(epoch FROM finished_at - started_at) FROM cronpolicy.script_run"
        if dba.backend == "postgresql" else
        "SELECT (julianday(finished_at) - julianday(started_at)) * 86400 FROM cronpolicy.script_run")
    assert 0.25 < float(seconds) < 10
    ok = run(script_env, "shell-job", "--", "true")
    assert ok.returncode == 0 and dba.runs("shell-job")[-1]["status"] == "succeeded"


def test_skipped_under_deploy_pending_without_running_the_command(script_env, dba, tmp_path):
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true, reason = 'r42'")
    marker = tmp_path / "ran"
    result = run(script_env, "shell-job", "--", "touch", str(marker))
    assert result.returncode == exitcodes.OK and not marker.exists()
    assert dba.runs("shell-job")[0]["status"] == "skipped"
    assert result.stdout == b""          # nothing on stdout: cron mails nobody


def test_wrapper_log_lines_are_marked(script_env):
    result = run(script_env, "shell-job", "-v", "--", "echo", "hello")
    assert result.stdout == b"hello\n"
    assert b"cronpolicy:shell-job" in result.stderr


def _job(tmp_path):
    path = tmp_path / "job.sh"
    path.write_text(JOB)
    return str(path), str(tmp_path / "job")


def test_an_interruptible_command_gets_sigterm_from_a_rollout(script_env, dba, tmp_path):
    job, base = _job(tmp_path)
    wrapper = start(script_env, "shell-job", "--interruptible", "--", "sh", job, base)
    wait_for_file(base + ".ready")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    out, err = wrapper.communicate(timeout=60)
    assert wrapper.returncode == exitcodes.INTERRUPTED, err
    assert os.path.exists(base + ".term")
    assert dba.runs("shell-job")[0]["status"] == "interrupted"


def test_a_command_that_is_not_safe_is_left_alone_until_done(script_env, dba, tmp_path):
    job, base = _job(tmp_path)
    wrapper = start(script_env, "shell-job", "--", "sh", job, base)
    wait_for_file(base + ".ready")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    wrapper.send_signal(signal.SIGTERM)           # deferred: the command is not safe
    time.sleep(1.0)
    assert wrapper.poll() is None and not os.path.exists(base + ".term")
    open(base + ".done", "w").close()
    out, err = wrapper.communicate(timeout=60)
    assert wrapper.returncode == exitcodes.OK and out == b"finished\n"
    assert not os.path.exists(base + ".term")
    assert dba.runs("shell-job")[0]["status"] == "succeeded"


def test_safe_file_decides_when_the_command_may_be_stopped(script_env, dba, tmp_path):
    job, base = _job(tmp_path)
    safe = tmp_path / "safe-now"
    wrapper = start(script_env, "shell-job", "--safe-file", str(safe), "--", "sh", job, base)
    wait_for_file(base + ".ready")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    time.sleep(1.0)
    assert wrapper.poll() is None
    safe.write_text("")
    wrapper.communicate(timeout=60)
    assert wrapper.returncode == exitcodes.INTERRUPTED
    assert os.path.exists(base + ".term")


def test_verbose_says_the_database_in_use_and_the_run_id_at_start(script_env, dba):
    """Issue 27.6: -v printed only the end line: the gate's first records went
    to Python's last-resort handler (WARNING) before logging was set up."""
    result = run(script_env, "shell-job", "-v", "--", "true")
    assert result.returncode == exitcodes.OK, result.stderr
    [run_id] = [row["id"] for row in dba.runs("shell-job")]
    err = result.stderr.decode()
    assert "policy database: %s (from CRONPOLICY_DSN)" % script_env["CRONPOLICY_DSN"] in err
    assert "started run #%d" % run_id in err and "run #%d succeeded" % run_id in err
    assert err.index("policy database") < err.index("started run") < err.index("succeeded")


def test_options_may_come_before_the_name(script_env, dba, tmp_path):
    """Issue 27.6: docs/releases.txt's `cronpolicy run --pin LINK NAME -- ...` was
    refused with a usage line that did not say what was wrong."""
    (tmp_path / "releases" / "7" / "bin").mkdir(parents=True)
    job = tmp_path / "releases" / "7" / "bin" / "job"
    job.write_text("#!/bin/sh\necho \"$0\"\n")
    job.chmod(0o755)
    os.symlink(str(tmp_path / "releases" / "7"), str(tmp_path / "current"))
    result = run(script_env, "--pin", str(tmp_path / "current"), "-v", "pinned", "--overlap",
                 "--", str(tmp_path / "current" / "bin" / "job"))
    assert result.returncode == exitcodes.OK, result.stderr
    assert result.stdout.decode().strip() == str(job)      # run from the resolved release
    [row] = dba.execute("SELECT name, release FROM cronpolicy.script_run")
    assert row == ("pinned", str(tmp_path / "releases" / "7"))


def test_bad_usage_is_one_line_saying_what_is_wrong(script_env):
    for argv, said in ((["--pin"], "no NAME"),
                       (["--pin", "/srv/app/current"], "no NAME"),
                       (["-v", "--", "true"], "no NAME"),
                       (["job"], "give the command after --"),
                       (["job", "--"], "give the command after --"),
                       (["--bogus", "job", "--", "true"], "unrecognized arguments: --bogus"),
                       (["job", "--max-concurrent", "0", "--", "true"], "must be at least 1")):
        result = run(script_env, *argv)
        err = result.stderr.decode()
        assert result.returncode == exitcodes.USAGE and said in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)


def test_bad_usage(script_env):
    assert run(script_env).returncode == exitcodes.USAGE
    assert run(script_env, "name-only").returncode == exitcodes.USAGE
    result = run(script_env, "x", "--expected-runtime", "soon", "--", "true")
    assert result.returncode == exitcodes.USAGE and b"soon" in result.stderr
    missing = run(script_env, "x", "--", "/no/such/program")
    assert missing.returncode == 127


def _alive(pid):
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_wrapper_killed_takes_its_command_with_it(script_env, dba, tmp_path):
    """kill -9 of the wrapper: its command (in a session of its own, so
    that a stop reaches all it started) ran on unseen, and once the run's
    lease ran out `deploy wait` said quiet while it still ran.  Now the
    whole of the command's process group goes with the wrapper: a shell
    and the pipeline it started."""
    pids = tmp_path / "pids"
    wrapper = start(script_env, "shell-job", "--", "sh", "-c",
                    'sleep 60 | cat & echo "$$ $!" > "$0.tmp"; mv "$0.tmp" "$0"; wait',
                    str(pids))
    wait_for_file(str(pids), process=wrapper)
    # Killed once it waits for its command (the guard told the group by
    # then; the instant between the command's start and that is not guarded).
    from .conftest import wait_for
    wait_for(lambda: _wait_channel(wrapper.pid) == "do_wait", timeout=60,
             what="the wrapper waiting for its command")
    group = [int(pid) for pid in pids.read_text().split()]
    members = [int(pid) for pid in os.listdir("/proc") if pid.isdigit()
               and _group_of(int(pid)) == group[0]]
    assert len(members) >= 3            # the shell, sleep and cat
    try:
        wrapper.kill()
        wrapper.wait(timeout=30)
        wait_for(lambda: not any(_alive(pid) for pid in members), timeout=10,
                 what="the command's processes gone with the wrapper")
    finally:
        for pid in members:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_wrapper_that_ends_leaves_what_its_command_left_running(script_env, tmp_path):
    """The other side: a wrapper that ends by itself signals nothing (a
    command may leave a daemon behind, as before)."""
    pid_file = tmp_path / "daemon"
    result = run(script_env, "shell-job", "--", "sh", "-c",
                 'sleep 30 > /dev/null 2>&1 & echo $! > "$0"', str(pid_file))
    assert result.returncode == 0, result.stderr
    daemon = int(pid_file.read_text())
    try:
        time.sleep(0.3)
        assert _alive(daemon)
    finally:
        os.kill(daemon, signal.SIGKILL)


def _wait_channel(pid):
    try:
        with open("/proc/%d/wchan" % pid) as wchan:
            return wchan.read().strip()
    except OSError:
        return None


def _group_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[2])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None
