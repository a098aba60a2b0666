"""What the cronpolicy command does when its output cannot be written: a
disk full (/dev/full), a descriptor closed (>&-), a pipe whose reader has
left (| head).  Never a traceback; a command runs to its end, so what it
changes is changed whole; its exit status is never success for an answer
not given: exitcodes.OUTPUT_FAILED (10) with one line on standard error
saying what could not be written, READER_GONE (141) quietly for a reader
gone, or the command's own code when it had one (5, 7).  Real processes,
real /dev/full, real pipes (docs/operators.txt, "The cronpolicy command")."""

import os
import subprocess
import sys

import pytest

from cronpolicy import exitcodes

from .conftest import DBA, make_env
from .test_deploy_wait import running_row

pytestmark = pytest.mark.integration

PROGRAM = os.path.join(os.path.dirname(sys.executable), "cronpolicy")


def _env(tmp_path, dsn, buffered=True):
    """The test's environment; ``buffered``: standard output as cron and a
    shell give it to Python (block-buffered, failures met at the flush on
    the way out), not PYTHONUNBUFFERED's (met at each write)."""
    env = make_env(tmp_path, dsn)
    if buffered:
        env.pop("PYTHONUNBUFFERED", None)
    return env


def start(env, argv, redirect="", stdout=subprocess.PIPE, program=(PROGRAM,), first=""):
    """`cronpolicy ARGV REDIRECT` started through sh (REDIRECT: >/dev/full,
    >&-, 2>&-...; ``first``: what sh does before, ulimit...); its standard
    error piped unless REDIRECT names it."""
    return subprocess.Popen(
        ["sh", "-c", '%sexec "$@" %s' % (first, redirect), "sh"] + list(program) + list(argv),
        env=env, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def finish(process):
    out, err = process.communicate(timeout=60)
    return process.returncode, out or "", err or ""


def run(env, argv, redirect="", **extra):
    return finish(start(env, argv, redirect, **extra))


def reader_gone(env, argv, **extra):
    """`cronpolicy ARGV` writing to a pipe whose reader closed it first."""
    read, write = os.pipe()
    os.close(read)
    try:
        process = start(env, argv, stdout=write, **extra)
    finally:
        os.close(write)
    return finish(process)


def assert_one_line(result, what, *fragments):
    """Exit 10 (or ``what``'s own code), and one line naming the failure."""
    code, _, err = result
    assert "Traceback" not in err and "Exception ignored" not in err, (what, err)
    # (Before it, the command's own warnings.)
    assert [line for line in err.splitlines() if "cannot write" in line] == [
        err.splitlines()[-1]] and err.splitlines()[-1].startswith(
        "cronpolicy: error: cannot write standard output ("), (what, err)
    for fragment in fragments:
        assert fragment in err, (what, fragment, err)


#: Commands that read, each with the fault it meets (buffered or not, in turn).
READS = ((["status"], ">/dev/full"), (["history", "--json"], ">&-"),
         (["check", "job"], ">/dev/full"), (["schema", "upgrade"], ">&-"),
         (["metrics"], ">/dev/full"))


def test_a_read_whose_output_cannot_be_written_exits_10_with_one_line(tmp_path, dsn):
    """Was: a traceback (OSError ENOSPC, AttributeError on a closed stdout)
    and exit 1, or Python's "Exception ignored" and exit 120."""
    started = [(argv, redirect, start(_env(tmp_path, dsn, buffered=index % 2 == 0), argv,
                                      redirect))
               for index, (argv, redirect) in enumerate(READS)]
    for argv, redirect, process in started:
        result = finish(process)
        assert result[0] == exitcodes.OUTPUT_FAILED, (argv, redirect, result)
        assert_one_line(result, (argv, redirect), "the command ran to its end")


def test_help_version_and_the_commands_without_a_database_say_a_lost_output_too(tmp_path):
    """--help to /dev/full exited 0, silently (argparse hides the error)."""
    env = _env(tmp_path, "sqlite:///" + str(tmp_path / "unused.sqlite"))
    crontab = tmp_path / "crontab"
    crontab.write_text("*/5 * * * * /srv/bin/backup --all\n")
    commands = ((["--help"], ">/dev/full"), (["--version"], ">&-"),
                (["completion", "bash"], ">/dev/full"), (["man"], ">&-"),
                (["crontab", "names", str(crontab)], ">&-"),
                (["crontab", "wrap", str(crontab)], ">/dev/full"))
    started = [(argv, redirect, start(env, argv, redirect)) for argv, redirect in commands]
    # Standard error failing changes nothing: its lines are lost, the code stands.
    started += [(["status", "--bogus"], "2>/dev/full", start(env, ["status", "--bogus"],
                                                             "2>/dev/full")),
                (["--version"], "2>&-", start(env, ["--version"], "2>&-"))]
    for argv, redirect, process in started:
        result = finish(process)
        if redirect.startswith("2"):
            assert result[0] == (exitcodes.USAGE if "--bogus" in argv else exitcodes.OK), \
                (argv, result)
            assert argv != ["--version"] or result[1].startswith("cronpolicy "), result
            continue
        # (crontab wrap said exit 2, bad usage, and "'NoneType' object has no
        # attribute 'flush'" for a closed standard output.)
        assert result[0] == exitcodes.OUTPUT_FAILED, (argv, redirect, result)
        assert_one_line(result, (argv, redirect))


def test_a_file_cut_short_by_its_size_limit_exits_10_saying_it_is_not_whole(tmp_path):
    """A disk filling up mid-output, as a file size limit makes it: was a
    traceback, and unbuffered (PYTHONUNBUFFERED, as many services set it)
    exit 0 with the file cut at 512 bytes (the text layer drops the rest of
    a short write, unsaid)."""
    page = tmp_path / "cronpolicy.1"
    for buffered in (True, False):
        env = _env(tmp_path, "sqlite:///" + str(tmp_path / "unused.sqlite"), buffered)
        result = run(env, ["man"], '> "%s"' % page, first="ulimit -f 1; ")
        assert result[0] == exitcodes.OUTPUT_FAILED, (buffered, result)
        assert_one_line(result, buffered, "(File too large)", "or not whole")
        assert page.stat().st_size == 512


def test_a_change_whose_confirmation_is_lost_is_made_whole_and_the_line_says_what_was_done(
        tmp_path, dsn, dba):
    """Was: the change committed, then a traceback and exit 1 (or Python's
    "Exception ignored" and exit 120)."""
    env = _env(tmp_path, dsn)
    result = run(env, ["disable", "job", "--reason", "lost"], ">/dev/full")
    assert result[0] == exitcodes.OUTPUT_FAILED, result
    assert_one_line(result, "disable", '"disabled job on host *')
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_policy WHERE name = 'job'"
                      " AND NOT enabled") == 1
    result = run(env, ["deploy", "begin", "--reason", "lost"], ">&-")
    assert result[0] == exitcodes.OUTPUT_FAILED, result
    rollout = dba.scalar("SELECT id FROM cronpolicy.rollout WHERE ended_at IS NULL")
    assert_one_line(result, "deploy begin", '"rollout #%d began' % rollout)
    result = run(env, ["deploy", "end", "--all"], ">/dev/full")
    assert result[0] == exitcodes.OUTPUT_FAILED, result
    assert_one_line(result, "deploy end", '"rollout #%d ended' % rollout)
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE ended_at IS NULL") == 0


def test_a_reader_gone_never_turns_an_answer_into_success(tmp_path, sqlite_dsn):
    """Was: exit 0 whatever the answer: `check` of a disabled script said 0
    (would run), `deploy wait` with a run in the way stopped waiting at its
    first line and said 0 (quiet), `status` 0 for a table nobody read."""
    env = _env(tmp_path, sqlite_dsn)
    dba = DBA(sqlite_dsn)
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, enabled) VALUES"
                " ('job', '*', 0)")
    running_row(dba)
    assert run(env, ["deploy", "begin"])[0] == exitcodes.OK
    checked = reader_gone(env, ["check", "job"])
    assert checked == (exitcodes.WOULD_SKIP, "", ""), checked
    assert reader_gone(env, ["status"]) == (exitcodes.READER_GONE, "", "")
    code, _, err = reader_gone(env, ["deploy", "wait", "--timeout", "0.2s"])
    assert code == exitcodes.WAIT_TIMEOUT and err == "", (code, err)


def test_deploy_run_gives_its_command_the_output_it_was_given(tmp_path, sqlite_dsn):
    """Was: the first line deploy run could not write put /dev/null on its
    descriptor, so COMMAND wrote into /dev/null, believed it had succeeded,
    and deploy run exited 0."""
    env = _env(tmp_path, sqlite_dsn)
    seen = tmp_path / "seen"
    command = ["deploy", "run", "--reason", "r", "--", "sh", "-c",
               'echo "$(readlink /proc/$$/fd/1)" > "$0"; echo written', str(seen)]
    result = run(env, command, ">/dev/full")
    assert seen.read_text() == "/dev/full\n"
    # The command's own code, 1 (its echo met ENOSPC); deploy run's lines
    # lost are said.
    assert result[0] == 1, result
    assert "rollout #1 began" in result[2] and "rollout #1 ended" in result[2], result
    assert "Traceback" not in result[2]
    code, _, err = reader_gone(env, command)
    assert seen.read_text().startswith("pipe:"), seen.read_text()
    assert code == exitcodes.READER_GONE and err == "", (code, err)   # (its SIGPIPE)


def test_a_script_and_cronpolicy_run_say_a_lost_dry_run_or_help(tmp_path, sqlite_dsn):
    """Was: --dry-run to /dev/full or a reader gone a traceback and exit 1
    (or 120), to a closed stdout exit 0, the answer lost; --help anywhere
    exit 0.  A CronScript's own --help and --dry-run are cronpolicy's."""
    env = _env(tmp_path, sqlite_dsn)
    script = tmp_path / "job.py"
    script.write_text("from cronpolicy import CronScript\n\nclass Job(CronScript):\n"
                      "    def main(self):\n        pass\n\nJob().run()\n")
    python = (sys.executable, str(script))
    started = [("run --dry-run", start(env, ["run", "--dry-run", "job", "--", "true"],
                                       ">/dev/full")),
               ("run --help", start(env, ["run", "--help"], ">&-")),
               ("script --help", start(env, ["--help"], ">/dev/full", program=python)),
               ("script --dry-run", start(env, ["--dry-run"], ">&-", program=python))]
    for what, process in started:
        code, _, err = finish(process)
        assert code == exitcodes.OUTPUT_FAILED, (what, code, err)
        assert len(err.splitlines()) == 1 and "cannot write standard output (" in err, \
            (what, err)
    assert reader_gone(env, ["run", "--dry-run", "job", "--", "true"]) == (
        exitcodes.READER_GONE, "", "")


def test_serve_whose_address_cannot_be_said_does_not_serve(tmp_path, sqlite_dsn):
    """Was: a traceback, or (its reader gone) serving with the port it chose
    said nowhere."""
    pytest.importorskip("waitress")
    env = _env(tmp_path, sqlite_dsn)
    result = run(env, ["serve", "--allow-writer", "--listen", "127.0.0.1:0"], ">/dev/full")
    assert result[0] == exitcodes.OUTPUT_FAILED, result
    lines = result[2].splitlines()
    assert "Traceback" not in result[2] and lines[-1].startswith(
        "cronpolicy serve: error: cannot write standard output (") and lines[-1].endswith(
        ": not serving"), lines


def test_a_script_started_with_its_standard_streams_closed_writes_nothing_into_its_files(
        tmp_path, sqlite_dsn):
    """Was: the lock file took descriptor 0 (on PostgreSQL the connection
    took 1), and what main() wrote there with os.write (as a C library's
    printf does) went into the lock file (or the protocol stream).  Now
    /dev/null holds 0, 1 and 2; sys.stdout stays None (print is silent)."""
    env = _env(tmp_path, sqlite_dsn)
    seen = tmp_path / "seen"
    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys\nfrom cronpolicy import CronScript\n\nclass Job(CronScript):\n"
        "    def main(self):\n"
        "        held = [os.readlink('/proc/self/fd/%d' % fd) for fd in (0, 1, 2)]\n"
        "        os.write(1, b'progress 50%\\n')\n"
        "        with open(SEEN, 'w') as seen:\n"
        "            seen.write(repr((held, sys.stdout)))\n\nJob().run()\n".replace(
            "SEEN", repr(str(seen))))
    code, _, _ = run(env, [], ">&- 2>&- <&-", program=(sys.executable, str(script)))
    assert code == exitcodes.OK
    assert seen.read_text() == repr((["/dev/null"] * 3, None))
    lock = tmp_path / "locks" / "cronpolicy-job.lock"
    assert b"progress" not in lock.read_bytes(), lock.read_bytes()


def test_a_log_that_cannot_be_written_leaves_the_exit_code_the_runs(tmp_path, sqlite_dsn):
    """Was: --log-file on a full disk printed Python's "--- Logging error ---"
    and a traceback for every record; standard error on a full disk (or a
    reader gone) exited 120, Python's failed flush on the way out, in place
    of main()'s 0 (and `cronpolicy run`'s command's)."""
    env = _env(tmp_path, sqlite_dsn)
    scripts = []
    for name in ("logged", "full"):         # (one lock each: they run at once)
        scripts.append((sys.executable, str(tmp_path / (name + ".py"))))
        (tmp_path / (name + ".py")).write_text(
            "from cronpolicy import CronScript\n\nclass Job(CronScript):\n"
            "    def main(self):\n        self.logger.warning('half done')\n\nJob().run()\n")
    started = [start(env, ["-v", "--log-file", "/dev/full"], program=scripts[0]),
               start(env, ["-v"], "2>/dev/full", program=scripts[1]),
               start(env, ["run", "-v", "wrapped", "--", "true"], "2>/dev/full")]
    logged, full, wrapped = [finish(process) for process in started]
    assert logged == (exitcodes.OK, "", "cronpolicy: cannot write log file /dev/full: No "
                      "space left on device\n"), logged
    assert full[0] == exitcodes.OK and wrapped[0] == exitcodes.OK, (full, wrapped)


def test_what_main_printed_and_could_not_write_is_mains_failure_buffered_too(
        tmp_path, sqlite_dsn):
    """Was, block-buffered as cron gives it: the run recorded as succeeded,
    then Python's "Exception ignored" and exit 120 on the way out (the same
    print unbuffered raised in main(): failed, exit 1)."""
    env = _env(tmp_path, sqlite_dsn)
    script = tmp_path / "printer.py"
    script.write_text("from cronpolicy import CronScript\n\nclass Job(CronScript):\n"
                      "    def main(self):\n        print('report')\n\nJob().run()\n")
    code, _, err = run(env, [], ">/dev/full", program=(sys.executable, str(script)))
    assert code == exitcodes.FAILED and "Exception ignored" not in err, (code, err)
    assert "main() failed: its standard output could not be written: No space left" in err
    assert DBA(sqlite_dsn).runs("printer")[0]["status"] == "failed"
