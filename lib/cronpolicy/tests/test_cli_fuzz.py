"""Every subcommand, driven with generated arguments: a documented exit code
and never a traceback.

The commands and their options are read from the real argument parser, so a
new command or option is fuzzed without touching this file.  The database is
a SQLite file (fast, and nothing outside this test's directory can be
touched).  Left out: `run` (it runs the command it is given), `crontab`
(tested on its own in test_crontab.py), `schema roles` (PostgreSQL roles are
cluster-wide), `serve` (it serves until stopped: test_serve.py), and options
naming files to write (--output, --svg) or another database (--dsn); `deploy
wait` is always given a short --timeout last, and `deploy run` a short
--wait-timeout and the command `true` (no generated word is ever run).
"""

import argparse

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from cronpolicy import exitcodes
from cronpolicy.tooling.cli import build_parser

DOCUMENTED = {exitcodes.OK, exitcodes.USAGE, exitcodes.LOCKED, exitcodes.GATE_ERROR,
              exitcodes.WOULD_SKIP, exitcodes.WAIT_TIMEOUT, exitcodes.OVERDUE,
              exitcodes.NOT_ALL_WRAPPED}
SKIPPED_COMMANDS = {("run",), ("crontab",), ("schema", "roles"), ("serve",)}
SKIPPED_OPTIONS = {"--output", "--svg", "--dsn", "-h", "--help"}


def _commands(parser, path=()):
    """(path, options taking a value, flags, required positionals) for every
    runnable subcommand."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, path + (name,))
    if not any(isinstance(action, argparse._SubParsersAction) for action in parser._actions):
        valued = sorted(option for action in parser._actions for option in action.option_strings
                        if action.nargs != 0 and option not in SKIPPED_OPTIONS)
        flags = sorted(option for action in parser._actions for option in action.option_strings
                       if action.nargs == 0 and option not in SKIPPED_OPTIONS)
        positionals = sum(1 for action in parser._actions
                          if not action.option_strings and action.nargs is None)
        found.append((path, valued, flags, positionals))
    return [entry for entry in found
            if not any(entry[0][:len(skip)] == skip for skip in SKIPPED_COMMANDS)]


COMMANDS = _commands(build_parser())

VALUES = st.one_of(
    st.sampled_from(["", "-", "nan", "inf", "-1", "0", "1e999", "9" * 20, "9" * 40, "now", "+10m",
                     "now-3d", "+99999999999d", "0001-01-01T00:00Z", "9999-12-31T23:59:59Z",
                     "9999-12-31T23:59:59-14:00", "2026-02-30T00:00Z", "1s", "20m", "1h30m",
                     "9999999999999999999d", "*", "web*", "job\x1b[2J", "a\nb", "'; DROP --"]),
    st.integers(min_value=-10 ** 30, max_value=10 ** 30).map(str),
    st.text(max_size=30),
    st.builds(lambda number, unit: "%s%s" % (number, unit),
              st.integers(min_value=0, max_value=10 ** 25), st.sampled_from("smhdw")))


@st.composite
def invocations(draw):
    path, valued, flags, positionals = draw(st.sampled_from(COMMANDS))
    argv = list(path) + [draw(st.sampled_from(["job", "web*", "job\x1b[2J"]))
                         for _ in range(positionals)]
    runs = path == ("deploy", "run")
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        kind = draw(st.sampled_from(["valued", "valued", "valued", "flag"] + (
            [] if runs else ["positional"])))
        if kind == "valued" and valued:
            argv += [draw(st.sampled_from(valued)), draw(VALUES)]
        elif kind == "flag" and flags:
            argv.append(draw(st.sampled_from(flags)))
        else:
            argv.append(draw(VALUES))
    if path == ("deploy", "wait"):
        argv += ["--timeout", "0.2s"]
    if runs:
        argv += ["--wait-timeout", "1s", "--", "true"]
    return argv


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
@hypothesis_settings(max_examples=500, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=invocations())
def test_every_subcommand_with_generated_arguments(cli, argv):
    code, out, err = cli(*argv)
    assert code in DOCUMENTED, (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code in (exitcodes.USAGE, exitcodes.GATE_ERROR) and "error" in err:
        errors = [line for line in err.splitlines() if "error" in line]
        assert len(errors) == 1, (argv, err)


def test_the_fuzzer_knows_every_command():
    names = {entry[0] for entry in COMMANDS}
    assert {("status",), ("deploy", "plan"), ("window", "add"), ("history",),
            ("check",), ("prune",), ("overdue",)} <= names
