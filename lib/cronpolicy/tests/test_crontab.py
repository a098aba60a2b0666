"""crontab wrap/unwrap: byte-for-byte round trips, and wrapped lines that
behave like the originals when a (simulated) cron runs them for real."""

import os
import subprocess
import sys

import pytest

from cronpolicy.tooling.crontab import job_name, parse_job, unwrap, wrap

USER_CRONTAB = """\
# Edit this file to introduce tasks to be run by cron.
# m h  dom mon dow   command
SHELL=/bin/bash
MAILTO="ops@example.com"
PATH = /usr/local/bin:/usr/bin:/bin

15 * * * *  /srv/bin/publish-distro --all >/dev/null 2>&1
*/5  *  * * 1-5 cd /srv/app && ./scripts/sync_mirror.py -v
@daily  python3 /srv/cron/report.py --date "$(date +\\%F)" | mail -s 'it''s "done"' ops%line one%line two
@reboot /srv/bin/publish-distro
0 2 * * * env LANG=C nice -n 10 /usr/bin/backup.sh; echo done
   # an indented comment
\t30 4 1 * *\t/usr/bin/monthly   \t
@hourly echo 50\\% done
0 0 * * 0 /srv/bin/weird-name!.sh 'quoted %s arg'
"""

SYSTEM_CRONTAB = """\
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
# m h dom mon dow user  command
17 *    * * *   root    cd / && run-parts --report /etc/cron.hourly
25 6    * * *   root    test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )
@weekly www-data /srv/app/bin/cleanup --older 7d
"""


@pytest.mark.parametrize("text, system", [
    (USER_CRONTAB, False), (USER_CRONTAB.replace("\n", "\r\n"), False), (SYSTEM_CRONTAB, True),
    ("", False), ("no newline at the end", False), ("* * * * * lonely", False)])
def test_wrap_then_unwrap_is_byte_for_byte_and_wrap_is_idempotent(text, system):
    wrapped = wrap(text, program="/usr/local/bin/cronpolicy", system=system)
    assert unwrap(wrapped, system=system) == text
    assert wrap(wrapped, program="/usr/local/bin/cronpolicy", system=system) == wrapped


def test_only_job_lines_change_and_schedules_stay():
    wrapped = wrap(USER_CRONTAB, program="cronpolicy").splitlines()
    original = USER_CRONTAB.splitlines()
    for before, after in zip(original, wrapped):
        job = parse_job(before)
        if job is None:
            assert after == before
        else:
            assert after.startswith(job[0] + "cronpolicy run ")
    system = wrap(SYSTEM_CRONTAB, program="cronpolicy", system=True)
    assert "root    cronpolicy run run-parts-cron.hourly --" in system


def test_job_names_come_from_the_commands_and_are_unique():
    assert job_name("/srv/bin/publish-distro --all >/dev/null") == "publish-distro"
    assert job_name("python3 /srv/cron/report.py --date x") == "report"
    assert job_name("cd /srv/app && ./scripts/sync_mirror.py -v") == "sync_mirror"
    assert job_name("env LANG=C nice -n 10 /usr/bin/backup.sh") == "backup"
    names = [line.split(" run ", 1)[1].split()[0]
             for line in wrap(USER_CRONTAB, program="cronpolicy").splitlines() if " run " in line]
    # The same program twice: told apart by what differs, not by line order.
    assert len(names) == len(set(names))
    assert "publish-distro" in names and "publish-distro-all" in names


def simulate_cron(command):
    """What cron hands the shell: the text before the first unescaped % (with
    \\% turned into %), and the rest, % turned into newlines, as stdin."""
    head, stdin, index = [], None, 0
    while index < len(command):
        char = command[index]
        if char == "\\" and command[index + 1:index + 2] == "%":
            head.append("%")
            index += 2
            continue
        if char == "%":
            stdin = command[index + 1:].replace("%", "\n") + "\n"
            break
        head.append(char)
        index += 1
    return "".join(head), stdin


def run_like_cron(command, env):
    shell_command, stdin = simulate_cron(command)
    return subprocess.run(["/bin/sh", "-c", shell_command], input=stdin or "", env=env,
                          capture_output=True, text=True, timeout=60)


JOBS = [
    "echo 'a b' | tr a-z A-Z && echo second",
    "printf '%s-%s\\n' x y",
    "date +\\%Y >/dev/null; echo 50\\% done",
    "cat%first line%second line",
    "echo \"it's $((6 * 7))\"; exit 3",
]


@pytest.mark.parametrize("job", JOBS)
def test_a_wrapped_line_runs_like_the_original(job, script_env, dba):
    program = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    env = dict(script_env, SHELL="/bin/sh")
    line = "* * * * * " + job + "\n"
    wrapped = wrap(line, program=program)
    assert wrapped != line
    original = run_like_cron(parse_job(line)[1].rstrip("\n"), env)
    gated = run_like_cron(parse_job(wrapped)[1].rstrip("\n"), env)
    assert gated.stdout == original.stdout
    assert gated.returncode == original.returncode
    [run] = dba.runs()
    assert run["status"] == ("succeeded" if original.returncode == 0 else "failed")


# Issue 13, items 1 and 2 ---------------------------------------------------------------

ODD_BYTES = [
    # str.splitlines also splits on these; cron does not.
    "0 * * * * echo a\u2028echo b\n", "0 * * * * echo a\x0cecho b\n",
    "0 * * * * echo a\x1c\x1d\x1e\x85b\n", "0 * * * * echo a\x0bb\n",
    # A form feed or a vertical tab in the schedule is not a field separator for cron.
    "0\x0c* * * * echo x\n",
]


@pytest.mark.parametrize("text", ODD_BYTES)
def test_lines_are_split_on_newlines_only(text):
    wrapped = wrap(text, program="/usr/bin/cronpolicy")
    assert unwrap(wrapped) == text
    assert wrap(wrapped, program="/usr/bin/cronpolicy") == wrapped
    # The whole command stays one job, inside the gate.
    assert wrapped.count("\n") == text.count("\n")
    if parse_job(text):
        assert "cronpolicy run" in wrapped


@pytest.mark.integration
@pytest.mark.parametrize("program", ["/opt/my tools/cronpolicy", "/opt/it's/cronpolicy",
                                     "/usr/local/bin/cronpolicy", "cronpolicy"])
def test_the_program_path_is_quoted_for_the_shell(program, tmp_path):
    text = "15 * * * * /srv/bin/publish-distro --all\n"
    wrapped = wrap(text, program=program)
    assert unwrap(wrapped) == text
    assert wrap(wrapped, program=program) == wrapped
    command = parse_job(wrapped)[1].strip()
    # The shell sees the program path as one word.
    words = subprocess.run(["/bin/sh", "-c", "printf '%s\\n' " + command.split(" run ")[0]],
                           capture_output=True, text=True, timeout=30).stdout.splitlines()
    assert words == [program]


@pytest.mark.integration
def test_the_command_wraps_any_bytes_and_gives_them_back(tmp_path):
    """Through the real command: CRLF, a form feed, Latin-1 (not UTF-8),
    control characters; once, the output escaped \\r as text."""
    original = ("# caf\xe9 cr\xe8me\r\n0 * * * * /usr/bin/job --x \xe9t\xe9\r\n"
                "# page\x0cbreak\n").encode("latin-1")
    source = tmp_path / "crontab"
    source.write_bytes(original)
    env = dict(os.environ, CRONPOLICY_CONFIG=str(tmp_path / "none.conf"))
    (tmp_path / "none.conf").write_text("[cronpolicy]\n")
    wrapped = subprocess.run([sys.executable, "-m", "cronpolicy", "crontab", "wrap", str(source),
                              "--program", "/usr/bin/cronpolicy"], env=env,
                             capture_output=True, timeout=60)
    assert wrapped.returncode == 0, wrapped.stderr
    assert b"cronpolicy run job" in wrapped.stdout and b"\r\n" in wrapped.stdout
    back = subprocess.run([sys.executable, "-m", "cronpolicy", "crontab", "unwrap"], env=env,
                          input=wrapped.stdout, capture_output=True, timeout=60)
    assert back.returncode == 0 and back.stdout == original


@pytest.mark.integration
def test_a_job_too_long_for_cron_once_wrapped_is_left_and_named(tmp_path):
    """Issue 13.3: a 950-byte command became 1040 bytes, and Debian's cron
    then refused the whole crontab ("command too long")."""
    from cronpolicy import exitcodes
    from cronpolicy.tooling.crontab import MAX_COMMAND_BYTES, wrap_report
    long_job = "0 * * * * /srv/bin/big-job " + "x" * 950 + "\n"
    text = "0 * * * * /srv/bin/small-job\n" + long_job
    wrapped, too_long, _ = wrap_report(text, program="/usr/bin/cronpolicy")
    assert too_long and too_long[0][0] == 2 and too_long[0][2] > MAX_COMMAND_BYTES
    assert wrapped.endswith(long_job) and "cronpolicy run small-job" in wrapped
    assert unwrap(wrapped) == text
    assert all(len(parse_job(line)[1].rstrip("\n").encode()) <= MAX_COMMAND_BYTES
               for line in wrapped.splitlines(keepends=True) if "cronpolicy run" in line)
    source = tmp_path / "crontab"
    source.write_text(text)
    env = dict(os.environ, CRONPOLICY_CONFIG=str(tmp_path / "none.conf"))
    (tmp_path / "none.conf").write_text("[cronpolicy]\n")
    result = subprocess.run([sys.executable, "-m", "cronpolicy", "crontab", "wrap", str(source)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == exitcodes.NOT_ALL_WRAPPED
    assert "line 2: big-job left unwrapped" in result.stderr
    assert result.stdout.endswith(long_job)


@pytest.mark.parametrize("line", ["this is not a cron line at all\n", "every day at noon run x\n",
                                  "1 2 3 4\n", "@sometimes /usr/bin/job\n", "0 25x * * * job\n"])
def test_a_line_that_is_no_cron_line_is_left_with_a_warning(line, tmp_path):
    """Issue 13.6 (first half): it was wrapped as a job."""
    from cronpolicy.tooling.crontab import wrap_report
    text = "0 * * * * /srv/bin/real-job\n" + line
    wrapped, _, foreign = wrap_report(text, program="/usr/bin/cronpolicy")
    assert wrapped.endswith(line) and foreign == [2]
    assert "cronpolicy run real-job" in wrapped


@pytest.mark.parametrize("schedule", ["*/15 * * * *", "0 2 * * 1-5", "0,30 8-18/2 1,15 jan-jun mon",
                                      "5 4 * * sun", "0 0 1 */3 *", "@hourly", "@reboot"])
def test_real_schedules_still_wrap(schedule):
    text = "%s /srv/bin/job\n" % schedule
    assert "cronpolicy run job" in wrap(text, program="cronpolicy")


def test_unwrap_takes_apart_only_what_wrap_wrote():
    """Issue 13.6 (second half): a hand-written line in wrap's form was
    taken apart by unwrap."""
    by_hand = ("0 * * * * cronpolicy run nightly -- \"${SHELL:-/bin/sh}\" -c "
               "'/srv/bin/nightly --all'\n")
    wrapped = wrap("5 * * * * /srv/bin/publish-distro\n" + by_hand, program="cronpolicy")
    assert wrapped.endswith(by_hand)                     # wrap leaves it too
    assert "--from-crontab" in wrapped.splitlines()[0]
    restored = unwrap(wrapped)
    assert restored == "5 * * * * /srv/bin/publish-distro\n" + by_hand
    # Lines wrapped before the mark existed: only when asked.
    assert unwrap(by_hand, legacy=True) == "0 * * * * /srv/bin/nightly --all\n"
