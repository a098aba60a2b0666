"""Where the log goes (issue 30.2): the journal's priority prefixes when
standard error is the journal, the local syslog socket on request, and
standard error as before otherwise.  Real processes, a real socket."""

import os
import re
import socket
import subprocess
import sys

import pytest

from cronpolicy import exitcodes

from .conftest import make_env

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

PROGRAM = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
FAILING = ("from cronpolicy import CronScript\n"
           "class Broken(CronScript):\n"
           "    name = 'broken'\n"
           "    def main(self):\n"
           "        raise ValueError('no such archive')\n"
           "Broken().run()\n")


def _stderr_lines(tmp_path, env, argv, journal):
    """Run ``argv`` with standard error into a file; with ``journal``,
    JOURNAL_STREAM names that very file, as systemd names its stream."""
    err = tmp_path / "stderr"
    with open(err, "wb") as handle:
        if journal:
            info = os.fstat(handle.fileno())
            env = dict(env, JOURNAL_STREAM="%d:%d" % (info.st_dev, info.st_ino))
        result = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=handle,
                                timeout=60)
    return result.returncode, err.read_text().splitlines()


def test_lines_carry_journald_priorities_when_stderr_is_the_journal(tmp_path, sqlite_dsn):
    env = make_env(tmp_path, sqlite_dsn)
    code, lines = _stderr_lines(tmp_path, env, [PROGRAM, "run", "-v", "job", "--", "true"],
                                journal=True)
    assert code == 0 and lines, lines
    assert all(re.match(r"^<[2-7]>[A-Z]+ cronpolicy:job: ", line) for line in lines), lines
    assert any(line.startswith("<6>INFO cronpolicy:job: started run #") for line in lines)
    script = tmp_path / "broken.py"
    script.write_text(FAILING)
    code, lines = _stderr_lines(tmp_path, env, [sys.executable, str(script)], journal=True)
    assert code == exitcodes.FAILED
    assert lines[0].startswith("<3>ERROR broken: main() failed")
    assert all(line.startswith("<3>") for line in lines), lines     # the traceback's too
    assert "<3>ValueError: no such archive" in lines


def test_stderr_stays_as_it_was_without_the_journal(tmp_path, sqlite_dsn):
    env = make_env(tmp_path, sqlite_dsn)
    plain = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO cronpolicy:job\[\d+\]: started run #"
    code, lines = _stderr_lines(tmp_path, env, [PROGRAM, "run", "-v", "job", "--", "true"],
                                journal=False)
    assert code == 0 and any(re.match(plain, line) for line in lines), lines
    # A JOURNAL_STREAM inherited by a process whose stderr went elsewhere.
    code, lines = _stderr_lines(tmp_path, dict(env, JOURNAL_STREAM="8:12345"),
                                [PROGRAM, "run", "-v", "job", "--", "true"], journal=False)
    assert code == 0 and any(re.match(plain, line) for line in lines), lines
    assert not any(line.startswith("<") for line in lines)


def _listening(path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(10)       # every wait has a bound
    return server


def _messages(server, until):
    messages = []
    while not any(until in message for message in messages):
        messages.append(server.recv(65536).decode().rstrip("\0"))
    return messages


def test_syslog_from_the_option_or_the_config_file(tmp_path, sqlite_dsn):
    env = make_env(tmp_path, sqlite_dsn)
    path = tmp_path / "log.sock"
    server = _listening(path)
    config = tmp_path / "cronpolicy.conf"
    try:
        config.write_text(config.read_text() + "syslog = %s\n" % path)
        result = subprocess.run([PROGRAM, "run", "job", "--", "true"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        messages = _messages(server, "succeeded")
        cron_info = "<%d>" % (9 * 8 + 6)         # facility cron, priority info
        assert any(re.match(re.escape(cron_info) + r"cronpolicy\[\d+\]: INFO cronpolicy:job: "
                            r"started run #", message) for message in messages), messages
        script = tmp_path / "broken.py"
        script.write_text(FAILING)
        result = subprocess.run([sys.executable, str(script), "--syslog"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == exitcodes.FAILED and result.stderr == ""
        [failed] = [message for message in _messages(server, "main() failed")
                    if "main() failed" in message]
        assert failed.startswith("<%d>" % (9 * 8 + 3)) and "no such archive" in failed
    finally:
        server.close()
    os.unlink(path)         # nobody listens: said at once, one line, exit 4
    result = subprocess.run([PROGRAM, "run", "job", "--", "true"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == exitcodes.GATE_ERROR
    assert result.stderr.strip() == "job: cannot log to syslog at %s: No such file or " \
                                    "directory" % path


def test_a_log_file_wins_over_syslog(tmp_path, sqlite_dsn):
    env = make_env(tmp_path, sqlite_dsn)
    log = tmp_path / "job.log"
    result = subprocess.run([PROGRAM, "run", "--syslog", "--log-file", str(log), "job", "--",
                             "true"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "started run #" in log.read_text()


def test_the_commands_lines_carry_priorities_in_the_journal_too(tmp_path, sqlite_dsn):
    """A command a systemd timer runs (catch-up, metrics --output...): its
    error and warning lines, and no text can pose as a priority."""
    env = make_env(tmp_path, sqlite_dsn)
    code, lines = _stderr_lines(tmp_path, env, [PROGRAM, "window", "cancel", "999"],
                                journal=True)
    assert code == exitcodes.USAGE and lines == ["<3>cronpolicy: error: no rollout window with id 999"], lines
    code, lines = _stderr_lines(tmp_path, env, [PROGRAM, "disable", "nobody-ever"],
                                journal=True)
    assert code == exitcodes.OK and lines and all(
        line.startswith(("<4>cronpolicy: warning", "<6>")) for line in lines), lines
    # Each command's warnings and errors, however it words them (docs/operators.txt,
    # "Logs": <3> for its errors, <4> for its warnings): they were <6>, all but
    # those starting "cronpolicy: error" or "cronpolicy: warning"; `run`'s own
    # usage errors had no priority at all.
    (tmp_path / "crontab").write_text("0 * * * * %s\n" % ("x" * 995))
    for argv, code, priority, text in (
            (["disable", "nobody-else"], exitcodes.OK, "<4>", "no script named nobody-else"),
            (["deploy", "wait", "--timeout", "1s"], exitcodes.OK, "<4>", "no rollout is open"),
            (["window", "add", "--start", "now"], exitcodes.USAGE, "<3>", "--duration"),
            (["run", "job"], exitcodes.USAGE, "<3>", "give the command"),
            (["crontab", "wrap", str(tmp_path / "crontab")], exitcodes.NOT_ALL_WRAPPED, "<4>",
             "left unwrapped")):
        result, lines = _stderr_lines(tmp_path, env, [PROGRAM, *argv], journal=True)
        said = [line for line in lines if text in line]
        assert result == code and len(said) == 1 and said[0].startswith(priority), (
            argv, result, lines)
    code, lines = _stderr_lines(tmp_path, env, [PROGRAM, "window", "cancel", "999"],
                                journal=False)
    assert lines == ["cronpolicy: error: no rollout window with id 999"], lines
