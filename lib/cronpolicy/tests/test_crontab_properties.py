"""Issue 13, generated crontabs: for random job lines and random bytes,
unwrap(wrap(x)) == x, wrap is idempotent, and the shell receives exactly
the original command after cron's % processing."""

import os

import pytest

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from cronpolicy.tooling.crontab import unwrap, wrap
from cronpolicy.tooling.crontab.lines import (
    parse_crontab, parse_job, read_crontab, write_crontab)

from .cronsim import cron_command, cron_split, make_stub, run_wrapped

#: The suite runs a fixed set of examples (derandomized, so CI is repeatable);
#: CRONPOLICY_FUZZ_EXAMPLES=N runs N fresh random ones instead.
DEEP = int(os.environ.get("CRONPOLICY_FUZZ_EXAMPLES", "0"))
SETTINGS = dict(deadline=None, derandomize=not DEEP,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# What makes shells and cron think: quotes, escapes, %, expansions,
# operators, and the line breaks str.splitlines knows but cron does not.
SPECIAL = list("'\"\\%$`;&|()<>#*?~!{}[]= \t\r") + [
    "\\%", "%%", "'\\''", "\u2028", "\x0c", "\x0b", "\x85", "\x1c", "\udce9", "\udcff", "é"]
WORDS = ["/srv/bin/job", "echo", "test -x /bin/true &&", "sudo -u www-data", "cd /tmp &&",
         "flock -n /tmp/l", "sh -c", "cronpolicy", "run", "--", "-c", "2>&1", ">/dev/null"]
COMMAND_PIECES = st.one_of(st.sampled_from(SPECIAL), st.sampled_from(WORDS),
                           st.text(alphabet=st.characters(blacklist_characters="\n\x00",
                                                          blacklist_categories=("Cs",)),
                                   max_size=6))
COMMANDS = st.lists(COMMAND_PIECES, min_size=1, max_size=14).map("".join).filter(
    lambda command: command.strip(" \t\r"))
SCHEDULES = st.sampled_from(["* * * * *", "0 */2 * * 1-5", "@hourly", "@reboot",
                             "5,35 1-3 * jan-jun sun", "*/15\t*  * * *"])
ENDINGS = st.sampled_from(["\n", "\r\n", ""])


def job_line(schedule, command, ending):
    return "%s %s%s" % (schedule, command, ending)


@hypothesis_settings(max_examples=DEEP or 300, **SETTINGS)
@given(lines=st.lists(st.tuples(SCHEDULES, COMMANDS, ENDINGS), min_size=1, max_size=6),
       program=st.sampled_from(["cronpolicy", "/opt/my tools/cronpolicy",
                                "/opt/it's/cronpolicy"]))
def test_generated_job_lines_round_trip_and_wrap_once(lines, program):
    text = "".join(job_line(schedule, command, "\n" if index < len(lines) - 1 and not ending
                            else ending)
                   for index, (schedule, command, ending) in enumerate(lines))
    wrapped = wrap(text, program=program)
    assert unwrap(wrapped) == text
    assert wrap(wrapped, program=program) == wrapped
    assert wrapped.count("\n") == text.count("\n")


@hypothesis_settings(max_examples=DEEP or 300, **SETTINGS)
@given(data=st.binary(max_size=400), system=st.booleans())
def test_random_bytes_round_trip_and_wrap_once(data, system):
    text = read_crontab(data)
    wrapped = wrap(text, program="/usr/bin/cronpolicy", system=system)
    assert write_crontab(unwrap(wrapped, system=system)) == data
    assert wrap(wrapped, program="/usr/bin/cronpolicy", system=system) == wrapped


@pytest.mark.integration
@hypothesis_settings(max_examples=DEEP or 150, **SETTINGS)
@given(command=COMMANDS, schedule=SCHEDULES)
def test_the_shell_receives_exactly_the_original_command(tmp_path_factory, command, schedule):
    directory = tmp_path_factory.mktemp("cron")
    program = make_stub(directory)
    line = job_line(schedule, command, "\n")
    if parse_job(line) is None:
        return                          # the generated command made it no job line
    [original] = [entry for entry in parse_crontab(line) if entry.job]
    [entry] = [entry for entry in parse_crontab(wrap(line, program=program)) if entry.job]
    head, stdin = cron_split(cron_command(original.job))
    argv, received_stdin = run_wrapped(cron_command(entry.job), directory)
    assert argv == [b"run", write_crontab(entry.job.wrapped_name), b"--from-crontab", b"--",
                    b"/bin/sh", b"-c", head]
    assert received_stdin == (stdin or b"")
