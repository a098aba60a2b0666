"""The ``cronpolicy`` command: its parser and ``main(argv) -> int``.

Each command is a plain function ``cmd_x(args, settings) -> int`` in
``commands.py``; ``main`` parses the arguments, resolves the settings and
turns every CronPolicyError into one line on standard error and an exit
code (2 for bad input, 4 when the database or configuration cannot be used;
see ``exitcodes``).  Read commands take ``--json`` for tooling.
"""

import argparse
import io
import os
import sys

from cronpolicy import exitcodes
from cronpolicy.arguments import attach_dashed_values, positive_int
from cronpolicy.config import Settings
from cronpolicy.errors import CronPolicyError

#: Where the command functions live; a command imports only its own module
#: (the read commands answer in less time than importing them all takes).
COMMANDS = "cronpolicy.tooling.commands"
#: Functions elsewhere, by the start of their name.
COMMAND_MODULES = (("cmd_crontab_", "cronpolicy.tooling.crontab.commands"),
                   ("cmd_deploy_run", "cronpolicy.tooling.deploy_run"),
                   ("cmd_rollouts", "cronpolicy.tooling.rollouts"),
                   ("cmd_schedule_", "cronpolicy.tooling.schedule_commands"),
                   ("cmd_catch_up", "cronpolicy.tooling.catch_up"),
                   ("cmd_simulate", "cronpolicy.tooling.simulate.command"),
                   ("cmd_serve", "cronpolicy.tooling.web.serve"),
                   ("cmd_completion", "cronpolicy.tooling.manual"),
                   ("cmd_man", "cronpolicy.tooling.manual"))


def command_function(func):
    """The function a parsed command names ("module:function": each command
    is a plain function ``cmd_x(args, settings) -> int``)."""
    import importlib
    module, _, name = func.partition(":")
    return getattr(importlib.import_module(module), name)


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line and exit code 2."""

    #: The words being parsed (for advice an error can give).
    words = ()
    #: Whether the command parsed is one of ENDS_AT_ONCE.
    ends_at_once = False

    def error(self, message):
        words = list(_Parser.words)
        if message.startswith("unrecognized arguments") and "--" not in words and any(
                words[index:index + 2] == ["deploy", "run"] for index in range(len(words))):
            # `cronpolicy deploy run ls -l`: the command's options look like its own.
            message += ("; give the command after --, as in cronpolicy deploy run [options] "
                        "-- COMMAND [ARGS...]")
        self.exit(exitcodes.USAGE, "%s: error: %s (see --help)\n" % (
            self.prog, message.replace("\n", "\\n")))   # (a word may hold one)


def positive_number(text):
    """A finite number above zero (a ratio such as overdue's --tolerance)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text) from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number above 0: %r" % text)
    return value


def script_name(text):
    """A script name or name pattern, by the one rule (matching.name_problem)."""
    from cronpolicy.matching import name_problem
    problem = name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


class _NotBuilt:
    """Stands for the parser of a command this run does not need: every
    call is accepted and does nothing (see build_parser)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: self


def _command_words(argv):
    """The first two words of ``argv`` that are not options (nor --dsn's
    value): the command asked for, as far as it can be told unparsed."""
    words, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--dsn":
            skip = True
        elif not word.startswith("-"):
            words.append(word)
    return tuple(words[:2])


def service_name(text):
    """A service name (matching.service_name_problem), for argparse."""
    from cronpolicy.matching import service_name_problem
    problem = service_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def version_line():
    """What --version prints: the release (cronpolicy.__version__, its one
    home), the schema version this code needs (CHANGELOG.txt pairs them) and
    the version of the --json formats (output.JSON_FORMAT)."""
    from cronpolicy import __version__
    from cronpolicy.schema import SCHEMA_VERSION
    from cronpolicy.tooling.output import JSON_FORMAT
    return "cronpolicy %s (schema %d, json format %d)" % (__version__, SCHEMA_VERSION,
                                                          JSON_FORMAT)


def build_parser(argv=None):
    """The parser; given ``argv``, only the parts that can parse it.

    argparse asks gettext for every help string it is given, and building
    every command's parser costs a read command a tenth of its time.  So
    the commands ``argv`` does not name are left out (their help is in the
    whole parser, built when the words name no command, for -h or an error).
    """
    path = _command_words(argv) if argv is not None else ()
    matched = []

    def wanted(*names):
        return not path or tuple(path[:len(names)]) == names[:len(path)]

    common = _Parser(add_help=False)
    common.add_argument("--dsn", default=argparse.SUPPRESS,
                        help="policy database (overrides CRONPOLICY_DSN and the config file)")
    reader = _Parser(add_help=False)
    reader.add_argument("--json", action="store_true", help="machine-readable output")

    parser = _Parser(prog="cronpolicy", parents=[common],
                     description="Policy gate for cron scripts: see README.txt.")
    parser.add_argument("--version", action="version", version=version_line(),
                        help="the release and the schema version it needs, then exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def add(name, function, help_text, parents=(common,), subparsers=commands):
        if isinstance(subparsers, _NotBuilt) or not wanted(*getattr(subparsers, "path", ()),
                                                            name):
            return _NotBuilt()
        matched.append(name)
        sub = subparsers.add_parser(name, parents=list(parents), help=help_text,
                                    description=help_text)
        module = next((module for prefix, module in COMMAND_MODULES
                       if function.startswith(prefix)), COMMANDS)
        sub.set_defaults(func="%s:%s" % (module, function))
        return sub

    def group(name, help_text, dest):
        """The subcommands of command group ``name`` (schema, window...)."""
        if not wanted(name):
            return _NotBuilt()
        subparsers = commands.add_parser(name, help=help_text).add_subparsers(
            dest=dest, metavar="SUBCOMMAND", parser_class=_Parser)
        subparsers.required = True
        subparsers.path = (name,)
        return subparsers

    schema_commands = group("schema", "manage the database schema", "schema_command")
    add("upgrade", "cmd_schema_upgrade", "apply the schema patches the database lacks",
        subparsers=schema_commands)
    add("roles", "cmd_schema_roles", "create the cronpolicy_* group roles and grant their rights "
                                   "(PostgreSQL, as a superuser; idempotent)",
        subparsers=schema_commands)

    add("status", "cmd_status",
        "deploy state, windows, disabled policies and running scripts", (common, reader))

    for name, function, help_text in (
            ("disable", "cmd_disable", "skip a script (or a name pattern) from now on"),
            ("enable", "cmd_enable", "let a script run again")):
        sub = add(name, function, help_text)
        sub.add_argument("name", type=script_name, help="script name or glob pattern (* and ?)")
        sub.add_argument("--host", default="*", help="host name or pattern (default: all hosts)")
        sub.add_argument("--reason", default="", help="why; shown in skip reasons and the audit")

    window_commands = group("window", "schedule and cancel rollout windows", "window_command")
    sub = add("add", "cmd_window_add", "schedule a rollout window", (common, reader),
              subparsers=window_commands)
    sub.add_argument("--start", required=True,
                     help="ISO 8601 time (UTC unless an offset is given), now, or +10m")
    ends = sub.add_mutually_exclusive_group(required=True)
    ends.add_argument("--end", help="end time, like --start")
    ends.add_argument("--duration", help="length, like 45m or 2h")
    sub.add_argument("--reason", default="", help="what is being rolled out")
    sub.add_argument("--host", default="*", help="hosts covered (glob; default all)")
    sub.add_argument("--script", default="*", type=script_name,
                     help="scripts covered (glob; default all)")
    sub.add_argument("--service", type=service_name,
                     help="a window of this service: it covers only scripts that need it")
    sub = add("list", "cmd_window_list", "list standing rollout windows", (common, reader),
              subparsers=window_commands)
    sub.add_argument("--all", action="store_true", help="include past and cancelled windows")
    sub = add("cancel", "cmd_window_cancel", "cancel a rollout window", subparsers=window_commands)
    sub.add_argument("id", type=positive_int, help="window id, as window list shows it")
    sub.add_argument("--reason", default="", help="why; recorded in the audit")

    deploy_commands = group("deploy", "rollouts: begin, wait, end, or all three around a "
                                      "command; plan one, find its slot", "deploy_command")
    sub = add("begin", "cmd_deploy_begin", "open a rollout and print its id: no script starts "
                                           "(with --service: no script that needs it)",
              (common, reader), subparsers=deploy_commands)
    sub.add_argument("--reason", default="", help="shown in every skip reason")
    sub.add_argument("--service", type=service_name, action="append", metavar="S",
                     help="a rollout of this service only (repeat for several); several "
                          "rollouts may be open at once")
    sub.add_argument("--expect", metavar="D",
                     help="how long it should stay open: past it, status, rollouts, metrics "
                          "and overdue say it is overdue (default: default_rollout_expect, 1h)")
    sub = add("end", "cmd_deploy_end", "end a rollout: its scripts start again",
              subparsers=deploy_commands)
    sub.add_argument("id", nargs="?", type=positive_int, metavar="ID",
                     help="the rollout (default: the only one open)")
    sub.add_argument("--all", action="store_true", help="end every open rollout")
    sub.add_argument("--reason", default="", help="recorded in the audit")
    sub.add_argument("--service", type=service_name,
                     help="end the open rollout of this service")
    sub = add("run", "cmd_deploy_run",
              "open a rollout, wait for quiet, run COMMAND, end the rollout whatever happens "
              "(exit: COMMAND's, 7 when the wait timed out and it did not run)",
              subparsers=deploy_commands)
    sub.add_argument("--reason", default="", help="shown in every skip reason")
    sub.add_argument("--service", type=service_name, action="append", metavar="S",
                     help="a rollout of this service only (repeat for several)")
    sub.add_argument("--expect", metavar="D",
                     help="how long it should stay open (default: default_rollout_expect, 1h)")
    sub.add_argument("--wait-timeout", default="30m", metavar="D",
                     help="give up waiting for quiet after this long, end the rollout and exit "
                          "7 without running COMMAND (default 30m)")
    sub.add_argument("command", nargs="*", metavar="-- COMMAND [ARGS...]",
                     help="what to run once the fleet is quiet, after --")
    sub = add("wait", "cmd_deploy_wait",
              "wait until no running script is in the way (exit 0), or time out (exit 7)",
              (common, reader), subparsers=deploy_commands)
    sub.add_argument("id", nargs="?", type=positive_int, metavar="ID",
                     help="only runs in the way of this rollout (and record what it waited "
                          "for)")
    sub.add_argument("--timeout", default="30m", help="give up after this long (default 30m)")
    sub.add_argument("--host", default="*", help="only runs on these hosts (glob; default all)")
    sub.add_argument("--service", type=service_name,
                     help="only runs of scripts that need this service")
    releases = sub.add_mutually_exclusive_group()
    releases.add_argument("--release-not", metavar="R",
                          help="only runs that do not execute release R (a release directory "
                               "as runs record it)")
    releases.add_argument("--old-releases", metavar="LINK",
                          help="only runs of an older release than LINK (the `current` "
                               "symbolic link, resolved here and now)")
    sub = add("plan", "cmd_deploy_plan",
              "what a rollout at --at would skip and find running, changing nothing",
              (common, reader), subparsers=deploy_commands)
    sub.add_argument("--at", required=True, help="when the rollout would start (ISO 8601 or +D)")
    sub.add_argument("--duration", default="30m",
                     help="how long it lasts (default 30m): the scheduled starts it skips")
    sub.add_argument("--host", default="*", help="hosts it covers (glob; default all)")
    sub.add_argument("--script", default="*", type=script_name,
                     help="scripts it covers (glob; default all)")
    sub.add_argument("--service", type=service_name,
                     help="a rollout of this service: it covers only scripts that need it")
    sub = add("slot", "cmd_deploy_slot",
              "the best times to start a rollout: the least waiting for runs that cannot be "
              "interrupted, then the fewest and cheapest scheduled starts skipped",
              (common, reader), subparsers=deploy_commands)
    sub.add_argument("--duration", required=True, help="how long the rollout lasts, like 30m")
    sub.add_argument("--within", default="24h", help="look this far ahead (default 24h)")
    sub.add_argument("--host", default="*", help="hosts it covers (glob; default all)")
    sub.add_argument("--script", default="*", type=script_name,
                     help="scripts it covers (glob; default all)")
    sub.add_argument("--service", type=service_name,
                     help="a rollout of this service: it covers only scripts that need it")
    sub.add_argument("--count", type=positive_int, default=3,
                     help="how many slots to propose (default 3)")

    sub = add("rollouts", "cmd_rollouts", "the rollouts, newest first: open or ended, owner "
                                          "lost, overdue, and what each cost", (common, reader))
    sub.add_argument("--limit", type=positive_int, default=20, help="how many (default 20)")

    sub = add("audit", "cmd_audit", "who changed policies, windows, rollouts and the deploy "
                                    "switch", (common, reader))
    sub.add_argument("--since", help="only changes since this time (ISO 8601, or now-1d)")
    sub.add_argument("--limit", type=positive_int, default=100, help="at most this many (100)")
    sub.add_argument("--table", choices=("script_policy", "rollout_window", "deploy_state",
                                         "script_owner", "host_login", "service_deploy",
                                         "rollout"))
    sub = add("why", "cmd_why", "a script's last decisions, and the changes behind its skips",
              (common, reader))
    sub.add_argument("name", type=script_name, help="script name")
    sub.add_argument("--limit", type=positive_int, default=10, help="how many runs (10)")

    crontab_commands = group("crontab", "move crontab lines behind cronpolicy, once",
                             "crontab_command")
    for name, function, help_text in (
            ("wrap", "cmd_crontab_wrap", "the crontabs with every job run through "
                                       "`cronpolicy run` (idempotent)"),
            ("unwrap", "cmd_crontab_unwrap", "the crontabs as they were before wrap"),
            ("names", "cmd_crontab_names", "the name wrap gives each job, beside its line")):
        # No --dsn, no settings: wrapping a crontab is text in, text out.
        sub = add(name, function, help_text, parents=(reader,) if name == "names" else (),
                  subparsers=crontab_commands)
        sub.set_defaults(needs_settings=False)
        sub.add_argument("files", nargs="*", metavar="FILE",
                         help="crontab files, all of one host (default: standard input)")
        formats = sub.add_mutually_exclusive_group()
        formats.add_argument("--system", dest="format", action="store_const", const="system",
                             help="every file is a system crontab (/etc/crontab, /etc/cron.d): "
                                  "a user field (default: told per file)")
        formats.add_argument("--user", dest="format", action="store_const", const="user",
                             help="every file is a user crontab (no user field)")
        if name == "names":
            continue
        if name == "wrap":
            sub.add_argument("--program", help="path of cronpolicy to write into the lines "
                                               "(default: this one)")
            sub.add_argument("--register", action="store_true",
                             help="also register the jobs' schedules for this host, as "
                                  "`cronpolicy schedule import` does (needs the database)")
        else:
            sub.add_argument("--legacy", action="store_true",
                             help="also restore lines wrapped before wrap marked its lines "
                                  "(--from-crontab); a hand-written line in that form too")
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--in-place", action="store_true",
                           help="replace each file (its previous content kept as "
                                ".NAME.cronpolicy-orig beside it)")
        where.add_argument("--output-dir", metavar="DIR",
                           help="write each result to DIR/<its absolute path>")
        sub.add_argument("--no-backup", dest="backup", action="store_false",
                         help="with --in-place: keep no copy of the previous content")

    schedule_commands = group("schedule", "when each script runs: register a host's crontab, "
                                          "list the schedules", "schedule_command")
    sub = add("import", "cmd_schedule_import",
              "register the schedules of this host's crontab jobs (names as crontab wrap "
              "gives them)", (common, reader), subparsers=schedule_commands)
    sub.add_argument("files", nargs="*", metavar="FILE",
                     help="crontab files, all of this host (default: standard input)")
    formats = sub.add_mutually_exclusive_group()
    formats.add_argument("--system", dest="format", action="store_const", const="system",
                         help="every file is a system crontab (with a user field)")
    formats.add_argument("--user", dest="format", action="store_const", const="user",
                         help="every file is a user crontab")
    sub.add_argument("--tz", metavar="ZONE",
                     help="the time zone of the lines with no CRON_TZ above them (default: "
                          "this host's, from /etc/timezone or /etc/localtime)")
    sub.add_argument("--replace", action="store_true",
                     help="also remove this host's registrations that no job names any more")
    sub = add("list", "cmd_schedule_list", "each script's schedule on each host, with its "
                                           "next start", (common, reader),
              subparsers=schedule_commands)
    sub.add_argument("--host", default="*", help="only these hosts (glob)")
    sub.add_argument("--script", default="*", type=script_name, help="only these scripts (glob)")
    sub.add_argument("--all", action="store_true", help="also scripts with no schedule known")

    sub = add("catch-up", "cmd_catch_up",
              "start once, now the rollout is over, what a rollout skipped on this host "
              "(policies with catch_up = once; run it from cron every minute)", (common, reader))
    sub.add_argument("--dry-run", action="store_true", help="say what it would start, start "
                                                            "nothing, keep every ticket")
    sub.add_argument("-v", "--verbose", action="store_true",
                     help="also say which tickets wait, and why")

    if wanted("run"):
        matched.append("run")
        commands.add_parser(
            "run", add_help=False,
            help="run any command behind the gate: cronpolicy run NAME [options] -- COMMAND")

    sub = add("overdue", "cmd_overdue", "scripts that have not succeeded within their expected "
                                      "interval or since their last scheduled start, and "
                                      "scripts rollouts starve (exit 8 when any)",
              (common, reader))
    sub.add_argument("--tolerance", type=positive_number, default=1.5,
                     help="overdue after this many intervals without success (1.5)")
    sub.add_argument("--grace", default="10m",
                     help="what a scheduled run is allowed beyond its estimate (default 10m)")
    sub.add_argument("--starving", type=positive_int, default=3, metavar="N",
                     help="report a script the last N rollouts in a row skipped (default 3)")
    sub.add_argument("--all", action="store_true",
                     help="list every script with an interval or a schedule")
    sub = add("simulate", "cmd_simulate",
              "play days of a fleet's cron jobs through rollouts under each strategy (a: "
              "crontabs off ahead, b: a switch at rollout time, c: cronpolicy, d: cronpolicy "
              "at the best slot) and compare the stalls, skips and kills", (common, reader))
    sub.add_argument("fleet", nargs="?", metavar="FLEET",
                     help="a fleet file: hosts, their crontabs, a runtime model per job "
                          "(benchmarks/workload/fleet.json is the reference)")
    sub.add_argument("--crontab", action="append", default=[], metavar="[HOST=]FILE",
                     help="a crontab file of a host (repeat; host: the file's name)")
    sub.add_argument("--model", action="append", default=[],
                     metavar="NAME=MEDIAN,P95[,true|false|safe:EVERY]",
                     help="a job's runtimes (lognormal) and whether it may be interrupted")
    sub.add_argument("--default-model", metavar="MEDIAN,P95[,...]",
                     help="the model of the jobs --model does not name")
    sub.add_argument("--from-database", action="store_true",
                     help="the schedules the policy database knows, models from their history")
    sub.add_argument("--days", type=float, default=7.0, help="how long to play (default 7)")
    sub.add_argument("--rollouts", type=int, default=10,
                     help="how many rollouts, at random times (default 10)")
    sub.add_argument("--at", action="append", metavar="TIME",
                     help="a rollout ready at this time instead (ISO 8601, or +D from --start; "
                          "repeat)")
    sub.add_argument("--start", metavar="TIME", help="when the play begins, ISO 8601 (default "
                                                     "2026-01-05T00:00Z, a Monday)")
    sub.add_argument("--seed", default="1", help="runtimes and rollout times follow from it")
    sub.add_argument("--seeds", type=int, default=1, metavar="N",
                     help="play N seeds from --seed on; each figure is their median and range")
    sub.add_argument("--warm-up", metavar="D",
                     help="play this long before --start with no rollout, to fill the jobs' "
                          "histories (default: long enough for every job's estimate)")
    sub.add_argument("--code-share", type=float, default=0.0, metavar="F",
                     help="this fraction of the rollouts are code-only (default 0)")
    sub.add_argument("--restart", metavar="S[,S...]",
                     help="the services a code-only rollout restarts (default: every service "
                          "a job needs)")
    sub.add_argument("--system", action="store_true",
                     help="--crontab files have a user field (system crontabs), whatever "
                          "their path")
    sub.add_argument("--picture-at", metavar="TIME",
                     help="--svg draws the rollout ready nearest this time (default: the one "
                          "with cronpolicy's median stall)")
    for option, default, text in (
            ("--duration", "30m", "how long a deploy takes once the fleet is quiet"),
            ("--lead", "1h", "a: how long before the rollout the crontabs are disabled"),
            ("--announce", "1d", "c, d: how long ahead the rollout window is announced"),
            ("--max-wait", "30m", "a, b: how long runs are awaited before they are killed"),
            ("--tolerance", "1h", "d: how far past ready the rollout may move"),
            ("--step", "10m", "d: the slots tried, this far apart"),
            ("--grace", "10m", "what a run is allowed beyond its estimate before it is "
                               "overdue")):
        sub.add_argument(option, default=default,
                         help="%s (default %s)" % (text, default))
    sub.add_argument("--margin", metavar="D", help="the cut-off margin (default: the "
                                                   "configured cutoff_margin)")
    sub.add_argument("--strategies", default="a,a0,b,b0,c,d",
                     help="which to play (default a,a0,b,b0,c,d; a0 and b0: a and b "
                          "awaiting what may not be stopped, never killing)")
    sub.add_argument("--workers", type=positive_int, help="processes (default: one per CPU)")
    sub.add_argument("--svg", metavar="FILE",
                     help="also draw one rollout under each strategy and every stall here")

    sub = add("serve", "cmd_serve", "a read-only web dashboard of the fleet: runs, schedules, "
                                    "windows, open rollouts (pip install 'cronpolicy[web]')")
    sub.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                     help="where to answer (default 127.0.0.1:8080; past loopback a --token "
                          "is needed)")
    sub.add_argument("--token", metavar="T", help="every request must carry it (Authorization: "
                                                  "Bearer T); default $CRONPOLICY_SERVE_TOKEN")
    sub.add_argument("--allow-writer", action="store_true",
                     help="serve even through a login that can write (refused otherwise)")
    sub.add_argument("--refresh", type=positive_number, default=5.0, metavar="SECONDS",
                     help="how often the page looks again (default 5)")

    sub = add("metrics", "cmd_metrics", "fleet metrics in the Prometheus text format")
    scopes = sub.add_mutually_exclusive_group()
    scopes.add_argument("--host", metavar="H",
                        help="only host H's series (each labelled host=H), none of the "
                             "fleet-wide ones: for every host's own textfile")
    scopes.add_argument("--fleet", action="store_true",
                        help="only the fleet-wide series: for one host of the fleet")
    sub.add_argument("--output", metavar="FILE",
                     help="write them here atomically (for the textfile collector) "
                          "instead of standard output")

    add("flush", "cmd_flush", "write the run records this host spooled while the database "
                            "was out of reach")
    sub = add("prune", "cmd_prune", "delete old run history in batches (estimates keep theirs)")
    sub.add_argument("--older-than", required=True, metavar="D",
                     help="delete runs that started longer ago than this, like 90d")
    sub.add_argument("--batch", type=positive_int, default=5000,
                     help="rows per transaction (default 5000)")

    sub = add("history", "cmd_history", "recent runs, newest first", (common, reader))
    sub.add_argument("name", nargs="?", type=script_name, help="only this script")
    sub.add_argument("--limit", type=positive_int, default=20, help="how many (default 20)")

    for name, function, help_text in (
            ("estimate", "cmd_estimate", "runtime estimates, as the gate computes them"),
            ("check", "cmd_check", "the decision for a script now, without running it "
                                 "(exit 0: would run, 5: would skip)")):
        sub = add(name, function, help_text, (common, reader))
        sub.add_argument("name", nargs="?" if name == "estimate" else None, type=script_name,
                         help="script name" + (" (default: every script in the history)"
                                               if name == "estimate" else ""))
        sub.add_argument("--host", help="decide as on this host (default: this host)")
        sub.add_argument("--expected-runtime", metavar="D",
                         help="the script's own expected_runtime, used with too little history")
    sub = add("completion", "cmd_completion", "print the shell completion script: "
                                              "source <(cronpolicy completion bash)", ())
    sub.add_argument("shell", choices=("bash", "zsh"), help="bash or zsh")
    sub.set_defaults(needs_settings=False)
    sub = add("man", "cmd_man", "print the manual page (roff): cronpolicy man | man -l -", ())
    sub.set_defaults(needs_settings=False)
    if path and not matched:
        return build_parser()       # no such command: the whole parser says so
    return parser


def main(argv=None):
    """The cronpolicy command: its exit status.  ``argv`` None: this
    process's own arguments, and the process ends when this returns."""
    program = argv is None
    argv = sys.argv[1:] if program else list(argv)
    if argv and argv[0] == "run":
        # Everything after `run NAME` belongs to the wrapped command's gate.
        from cronpolicy.tooling.run_command import run_command
        return run_command(argv[1:])
    from cronpolicy.log import stderr_is_the_journal
    from cronpolicy.tooling.output import EscapingStream, JournalPriorities
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = EscapingStream(sys.stdout), EscapingStream(sys.stderr)
    if stderr_is_the_journal():         # a command run by a systemd timer
        sys.stderr = JournalPriorities(sys.stderr)
    try:
        code = _main(argv, streams)
    finally:
        sys.stdout, sys.stderr = streams
        if program:
            # What the command made lives until the exit now: spare the
            # interpreter's last collection the walk over every object the
            # tooling imported (a deploy wait exited about 100 ms after it
            # knew the fleet quiet, 10 ms with this; issue 32.2).  Its files
            # and connections are closed by then.
            import gc
            gc.freeze()
    if program and _Parser.ends_at_once and isinstance(code, int):
        _end_now(code)
    return code


#: The commands a caller waits on to the moment their process is gone: a
#: deploy script's next step waits on `deploy wait`'s exit.  Each has closed
#: its connections when it returns (the tooling's pool keeps none).
ENDS_AT_ONCE = ("cmd_deploy_wait",)


def _end_now(code):
    """End the process with ``code`` once what it wrote is out, without the
    interpreter's teardown: freeing every module the tooling imported took
    10 ms on a quiet machine and 40 to 90 ms under load, after the answer
    was known (issue 32.2).  What atexit would do for these commands is
    flushing: done here.  When that fails (a reader gone) the interpreter
    ends as it always did, with its own exit status for it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            return
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    os._exit(code)


def _main(argv, streams):
    parser = build_parser(argv)
    _Parser.words = tuple(argv)
    try:
        args = parser.parse_args(attach_dashed_values(argv, parser))
    except SystemExit as error:
        return error.code if isinstance(error.code, int) else exitcodes.USAGE
    if not hasattr(args, "func"):   # `cronpolicy --dsn X run ...`
        print("cronpolicy: error: `run` must come first: cronpolicy run NAME [options] -- "
              "COMMAND (see --help)", file=sys.stderr)
        return exitcodes.USAGE
    problem = not_text_problem(args)
    if problem:
        print("cronpolicy: error: %s" % problem, file=sys.stderr)
        return exitcodes.USAGE
    try:
        settings = (Settings.load(dsn=getattr(args, "dsn", None))
                    if getattr(args, "needs_settings", True) else None)
        if _says_its_database(args) and database_note(settings):
            print(database_note(settings))
        _Parser.ends_at_once = args.func.rpartition(":")[2] in ENDS_AT_ONCE
        return command_function(args.func)(args, settings)
    except CronPolicyError as error:
        print("cronpolicy: error: %s" % str(error).replace("\n", " "), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("cronpolicy: interrupted", file=sys.stderr)
        return exitcodes.STOPPED
    except BrokenPipeError:
        _stop_writing(streams[0])       # the reader left (| head): that is all
        return exitcodes.OK


#: Arguments that name files (whatever bytes a file system holds), not text
#: for the database: the only ones that need not be UTF-8.
FILE_ARGUMENTS = frozenset(("files", "fleet", "crontab", "output", "output_dir", "svg",
                            "program", "old_releases"))


def not_text_problem(args):
    """The one check that every argument but a file's name is UTF-8 text
    (a NAME, --reason, --host...): bytes that are not reach Python as lone
    surrogates, which no database takes (it was a UnicodeEncodeError
    traceback from the driver).  Why one is not, or None."""
    from cronpolicy.matching import text_problem
    for key, value in sorted(vars(args).items()):
        if key in FILE_ARGUMENTS:
            continue
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and text_problem(text, ""):
                if key == "dsn":        # not shown: it may hold a password
                    return "--dsn is not UTF-8 text"
                return text_problem(text, "--" + key.replace("_", "-")
                                    if key not in ("name", "id") else key.upper())
    return None


#: Commands that say the database themselves, when they print anything
#: (catch-up, run from cron every minute, must not mail every minute).
_SAY_THEIR_OWN_DATABASE = ("cmd_catch_up", "cmd_metrics")


def database_note(settings):
    """With no DSN configured anywhere, the line saying that the local SQLite
    file answers (so that a forgotten CRONPOLICY_DSN is seen); else None."""
    if settings is None or settings.dsn_source != "default":
        return None
    from cronpolicy.config import sqlite_path
    return ("database: the local SQLite file %s (no DSN configured: --dsn, CRONPOLICY_DSN "
            "or the config file's dsn)" % sqlite_path(settings.dsn))


def _says_its_database(args):
    """Whether ``args``' command prints database_note first: every command
    that reads the database, but in --json (pure JSON) and the commands
    that say it themselves."""
    if getattr(args, "json", False) or args.func.endswith(_SAY_THEIR_OWN_DATABASE):
        return False
    return not args.func.endswith("cmd_simulate") or args.from_database


def _stop_writing(stream):
    """Point ``stream``'s descriptor at /dev/null, so that flushing what is
    left at exit cannot raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


if __name__ == "__main__":
    sys.exit(main())
