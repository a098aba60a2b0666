"""Under a systemd service (issue 30.1), with real processes and without
systemd as PID 1: the environment a unit sets, and a stop that signals
every process of the unit at once.  What systemd itself does (timers,
KillMode, TimeoutStopSec, SuccessExitStatus) is not run here: see
examples/systemd/ and docs/operators.txt's "Under systemd"."""

import configparser
import os
import signal
import subprocess
import sys
import time

import pytest

from cronpolicy import exitcodes

from .conftest import DBA, make_env, wait_for_file

PROGRAM = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
EXAMPLES = next((path for path in (
    os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, os.pardir,
                 "examples", "systemd"),
    os.path.join("examples", "systemd")) if os.path.isdir(path)), None)

# Notes a SIGTERM, as a shell job does by default: it ends by the signal.
JOB = """\
trap 'echo term >> "$1.term"; trap - TERM; kill -TERM $$' TERM
echo started > "$1.ready"
i=0
while [ $i -lt 400 ] && [ ! -e "$1.done" ]; do sleep 0.05; i=$((i + 1)); done
echo finished
"""


def unit_environment(tmp_path):
    """What a service with User=, StateDirectory=cronpolicy and
    RuntimeDirectory=cronpolicy gets: no usable home, no CRONPOLICY_*."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CRONPOLICY_", "XDG_"))}
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "run").mkdir(mode=0o755)
    (tmp_path / "cronpolicy.conf").write_text("[cronpolicy]\n")
    (tmp_path / "no-home").write_text("")     # no directory can be made under it, even by root
    env.update(HOME=str(tmp_path / "no-home"), STATE_DIRECTORY=str(tmp_path / "state"),
               RUNTIME_DIRECTORY=str(tmp_path / "run"), INVOCATION_ID="0" * 32,
               CRONPOLICY_CONFIG=str(tmp_path / "cronpolicy.conf"))
    return env


@pytest.mark.integration
def test_a_unit_without_a_home_keeps_its_state_and_locks_where_systemd_says(tmp_path):
    env = unit_environment(tmp_path)
    holder = subprocess.Popen([PROGRAM, "run", "job", "--", "sh", "-c", "echo x > %s; sleep 30"
                               % (tmp_path / "started")], env=env, stderr=subprocess.PIPE)
    try:
        wait_for_file(str(tmp_path / "started"), process=holder)
        assert os.path.exists(tmp_path / "state" / "cronpolicy.sqlite")
        assert os.path.exists(tmp_path / "run" / "cronpolicy-job.lock")
        second = subprocess.run([PROGRAM, "run", "job", "--", "true"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == exitcodes.LOCKED, second.stderr    # the same lock
    finally:
        if holder.poll() is None:
            os.killpg(_command_group(holder), signal.SIGKILL)
            holder.kill()
        holder.communicate(timeout=60)
    # A CronScript too, under the same variables.
    script = tmp_path / "report.py"
    script.write_text("from cronpolicy import CronScript\n"
                      "class Report(CronScript):\n"
                      "    def main(self):\n"
                      "        print(self.settings.state_dir, self.settings.lock_dir)\n"
                      "Report().run()\n")
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "state"), str(tmp_path / "run")]


def test_the_config_file_and_cronpolicy_variables_outrank_systemds(tmp_path):
    """A unit and a cron job on one host must share the lock the config
    file names: systemd's directories stand in for the defaults only."""
    from cronpolicy.config import Settings
    environ = {"STATE_DIRECTORY": "/var/lib/cronpolicy:/var/lib/other",
               "RUNTIME_DIRECTORY": "/run/cronpolicy"}
    settings = Settings.load(environ=environ)
    assert (settings.state_dir, settings.lock_dir) == ("/var/lib/cronpolicy", "/run/cronpolicy")
    config = tmp_path / "cronpolicy.conf"
    config.write_text("[cronpolicy]\nlock_dir = /run/lock/cronpolicy\n")
    settings = Settings.load(environ=dict(environ, CRONPOLICY_CONFIG=str(config)))
    assert (settings.state_dir, settings.lock_dir) == ("/var/lib/cronpolicy",
                                                       "/run/lock/cronpolicy")
    settings = Settings.load(environ=dict(environ, CRONPOLICY_STATE_DIR="/srv/state"))
    assert settings.state_dir == "/srv/state"


def _start(tmp_path, env, *options):
    job = tmp_path / "job.sh"
    job.write_text(JOB)
    base = str(tmp_path / "job")
    wrapper = subprocess.Popen([PROGRAM, "run", "shell-job", *options, "--", "sh", str(job),
                                base], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    wait_for_file(base + ".ready")
    return wrapper, base


def _command_group(wrapper):
    """The process group of the wrapper's command (its own session; the
    wrapper's other child is the guard that kills it should the wrapper be
    killed, in a session of its own too)."""
    children = open("/proc/%d/task/%d/children" % (wrapper.pid, wrapper.pid)).read().split()
    [child] = [pid for pid in children
               if b"read group" not in open("/proc/%s/cmdline" % pid, "rb").read()]
    return os.getpgid(int(child))


def _stop_like_systemd(wrapper, command_first):
    """SIGTERM to every process of the "unit": the wrapper's group and its
    command's, in either order (systemd's control-group stop)."""
    groups = [os.getpgid(wrapper.pid), _command_group(wrapper)]
    for group in (groups[::-1] if command_first else groups):
        os.killpg(group, signal.SIGTERM)
        time.sleep(0.05)


def test_a_stop_of_the_whole_unit_is_recorded_as_interrupted_not_failed(tmp_path, sqlite_dsn):
    env = make_env(tmp_path, sqlite_dsn)
    dba = DBA(sqlite_dsn)
    for command_first in (True, False):
        wrapper, base = _start(tmp_path, env)
        _stop_like_systemd(wrapper, command_first)
        out, err = wrapper.communicate(timeout=60)
        assert wrapper.returncode == exitcodes.INTERRUPTED, err
        assert os.path.exists(base + ".term") and b"finished" not in out
        run = dba.runs("shell-job")[-1]
        assert run["status"] == "interrupted", (command_first, run)
        assert dba.execute("SELECT stop_decision FROM cronpolicy.script_run WHERE id = {}",
                           (run["id"],)) == [("signal",)]
        for name in ("ready", "term"):
            os.unlink(base + "." + name)


def test_a_command_stopped_alone_is_still_a_failure(tmp_path, sqlite_dsn):
    env = make_env(tmp_path, sqlite_dsn)
    wrapper, base = _start(tmp_path, env)
    os.killpg(_command_group(wrapper), signal.SIGTERM)
    out, err = wrapper.communicate(timeout=60)
    assert wrapper.returncode == 128 + signal.SIGTERM, err
    assert DBA(sqlite_dsn).runs("shell-job")[-1]["status"] == "failed"


@pytest.mark.integration
def test_run_help_says_what_sigterm_does():
    from cronpolicy.tooling.run_command import SIGNALS
    result = subprocess.run([PROGRAM, "run", "NAME", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert " ".join(SIGNALS.split()) in " ".join(result.stdout.split())
    assert "SIGTERM is forwarded" not in result.stdout      # it is not, until safe


def test_the_example_units_exit_codes_are_cronpolicys():
    """examples/systemd/: the service counts a lock and an interruption as
    success, stops safely, and the timer starts it."""
    if EXAMPLES is None:
        import pytest
        pytest.skip("examples/systemd is in a checkout, not the wheel")
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.optionxform = str
    service.read(os.path.join(EXAMPLES, "publish-distro.service"))
    section = service["Service"]
    assert set(section["SuccessExitStatus"].split()) == {
        str(exitcodes.LOCKED), str(exitcodes.INTERRUPTED)}
    assert section["KillMode"] == "mixed" and section["Type"] == "oneshot"
    assert "cronpolicy run" in section["ExecStart"]
    assert section["StateDirectory"] == "cronpolicy"
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(os.path.join(EXAMPLES, "publish-distro.timer"))
    assert timer["Timer"]["OnCalendar"]


def test_a_second_sigterm_passes_it_on_at_once(tmp_path, sqlite_dsn):
    """run --help: the request is held while the command is not safe; a
    second SIGTERM passes SIGTERM on at once."""
    env = make_env(tmp_path, sqlite_dsn)
    wrapper, base = _start(tmp_path, env)
    wrapper.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert wrapper.poll() is None and not os.path.exists(base + ".term")     # held
    wrapper.send_signal(signal.SIGTERM)
    out, err = wrapper.communicate(timeout=60)
    assert wrapper.returncode == exitcodes.INTERRUPTED, err
    assert os.path.exists(base + ".term") and b"finished" not in out
    assert b"second SIGTERM: forcing" in err
    assert DBA(sqlite_dsn).runs("shell-job")[-1]["status"] == "interrupted"


def test_a_command_deaf_to_sigterm_gets_sigkill_after_the_stop_timeout(tmp_path, sqlite_dsn):
    env = make_env(tmp_path, sqlite_dsn)
    deaf = tmp_path / "deaf.sh"
    deaf.write_text("trap '' TERM\necho started > \"$1.ready\"\n"
                    "i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done\n")
    base = str(tmp_path / "deaf")
    wrapper = subprocess.Popen([PROGRAM, "run", "deaf-job", "--interruptible", "--stop-timeout",
                                "1s", "--", "sh", str(deaf), base], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_file(base + ".ready", process=wrapper)
    asked = time.monotonic()
    wrapper.send_signal(signal.SIGTERM)
    out, err = wrapper.communicate(timeout=60)
    assert wrapper.returncode == exitcodes.INTERRUPTED, err
    assert 1.0 <= time.monotonic() - asked < 20
    assert b"did not exit within 1s of SIGTERM: killing it" in err
    assert DBA(sqlite_dsn).runs("deaf-job")[-1]["status"] == "interrupted"


@pytest.mark.integration
def test_a_stop_that_lands_as_the_command_starts_stops_the_command(monkeypatch):
    """A SIGTERM that landed between the command's start and the wrapper's
    wait for it (the gate's handler raises Interrupted there) left the
    command running on, unwatched: under load the deaf command above ran its
    30 s.  The stop is made to land there every time: on the first handler
    the wrapper installs after starting the command."""
    from cronpolicy.tooling import run_command as wrapped_command
    from cronpolicy.errors import Interrupted
    script = wrapped_command.CommandScript("starting-job", ["sleep", "30"])
    script.stop_timeout = 5
    real = signal.signal

    def landing(signum, handler):
        monkeypatch.setattr(wrapped_command.signal, "signal", real)
        raise Interrupted("SIGTERM")
    monkeypatch.setattr(wrapped_command.signal, "signal", landing)
    try:
        script.main()
    except Interrupted:
        pass
    assert script.child is not None
    try:
        assert script.child.poll() is not None, "the command runs on"
    finally:
        if script.child.poll() is None:
            script.child.kill()
            script.child.wait()


def test_a_stop_that_lands_while_the_command_is_being_started_stops_it(monkeypatch, tmp_path,
                                                                         sqlite_dsn):
    """CI once saw the deaf command above run its whole 30 s: the SIGTERM
    landed inside subprocess.Popen (the command had started, and written its
    ready file, before Popen returned), the gate's handler raised there, and
    the wrapper never learnt the child it had to stop.  The stop is made to
    land there every time, through the real gate and its real handler."""
    from cronpolicy.tooling import run_command as wrapped_command
    started = []

    class LandingPopen(subprocess.Popen):
        def _execute_child(self, *args, **kwargs):
            super()._execute_child(*args, **kwargs)
            started.append(self)
            os.kill(os.getpid(), signal.SIGTERM)        # lands here, before Popen returns
    monkeypatch.setattr(wrapped_command.subprocess, "Popen", LandingPopen)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    script = wrapped_command.CommandScript("starting-job", ["sleep", "30"])
    try:
        code = script.run(["--dsn", sqlite_dsn, "--interruptible", "--stop-timeout", "5s"],
                          exit=False)
    finally:
        for child in started:
            running = child.poll() is None
            if running:
                child.kill()
                child.wait()
    assert started and not running, "the command runs on"
    assert code == exitcodes.INTERRUPTED
    assert DBA(sqlite_dsn).runs("starting-job")[-1]["status"] == "interrupted"


def test_stops_held_over_a_start_are_raised_at_its_end_forced_ones_included():
    import logging
    from cronpolicy.errors import Interrupted
    from cronpolicy.interruption import Interruption
    for safe, signals, forced in ((True, 1, False), (False, 2, True), (False, 1, None)):
        interruption = Interruption(lambda: safe, logging.getLogger("held"))
        interruption.in_main = True
        interruption.install()
        try:
            interruption.hold()
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGTERM)      # neither raises while held
            raised = None
            try:
                interruption.release()
            except Interrupted as error:
                raised = error
        finally:
            interruption.restore()
        assert (raised.forced if raised else None) == forced, (safe, signals)
