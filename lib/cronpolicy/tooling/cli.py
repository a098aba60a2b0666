"""The ``cronpolicy`` command: its parser and ``main(argv) -> int``.

Each command is a plain function ``cmd_x(args, settings) -> int`` in the
module of its command group, which adds its arguments too (COMMANDS: word
to module, each imported only when asked for); ``main`` parses the
arguments, resolves the settings and turns every CronPolicyError into one
line on standard error and an exit code (2 for bad input, 4 when the
database or configuration cannot be used; see ``exitcodes``).  Output
that cannot be written never raises (output.GuardedStream): the command
runs to its end and ``_said`` gives the exit code (10, or 141 for a reader
gone).  Read commands take ``--json`` for tooling (output.print_json).
"""

import argparse
import os
import sys

from cronpolicy import exitcodes
from cronpolicy.arguments import attach_dashed_values
from cronpolicy.config import Settings
from cronpolicy.errors import CronPolicyError
from cronpolicy.log import hold_standard_descriptors, put_devnull_under, stderr_is_the_journal

#: Each command word in the order --help lists them, the module that adds
#: its arguments (its ``add_arguments(parsers)``, given a CommandParsers) and
#: holds its functions, and the line --help gives it.  A command imports
#: only its own module (the read commands answer in less time than importing
#: them all takes), and --help, --version or a word that is no command none.
#: (No module: `run`, whose words main gives to run_command unparsed.)
COMMANDS = (
    ("schema", "cronpolicy.tooling.schema_commands", "manage the database schema"),
    ("status", "cronpolicy.tooling.fleet_commands",
     "deploy state, windows, disabled policies and running scripts"),
    ("disable", "cronpolicy.tooling.fleet_commands",
     "skip a script (or a name pattern) from now on"),
    ("enable", "cronpolicy.tooling.fleet_commands", "let a script run again"),
    ("window", "cronpolicy.tooling.window_commands", "schedule and cancel rollout windows"),
    ("deploy", "cronpolicy.tooling.deploy_commands",
     "rollouts: begin, wait, end, or all three around a command; plan one, find its slot"),
    ("rollouts", "cronpolicy.tooling.rollouts",
     "the rollouts, newest first: open or ended, owner lost, overdue, and what each cost"),
    ("audit", "cronpolicy.tooling.audit_commands",
     "who changed policies, windows, rollouts and the deploy switch"),
    ("why", "cronpolicy.tooling.audit_commands",
     "a script's last decisions, and the changes behind its skips"),
    ("crontab", "cronpolicy.tooling.crontab.commands",
     "move crontab lines behind cronpolicy, once"),
    ("schedule", "cronpolicy.tooling.schedule_commands",
     "when each script runs: register a host's crontab, list the schedules"),
    ("catch-up", "cronpolicy.tooling.catch_up",
     "start once, now the rollout is over, what a rollout skipped on this host "
     "(policies with catch_up = once; run it from cron every minute)"),
    ("run", None,
     "run any command behind the gate: cronpolicy run NAME [options] -- COMMAND"),
    ("overdue", "cronpolicy.tooling.watch_commands",
     "scripts that have not succeeded within their expected interval or since their last "
     "scheduled start, and scripts rollouts starve (exit 8 when any)"),
    ("simulate", "cronpolicy.tooling.simulate.command",
     "play days of a fleet's cron jobs through rollouts under each strategy (a: crontabs off "
     "ahead, b: a switch at rollout time, c: cronpolicy, d: cronpolicy at the best slot) and "
     "compare the stalls, skips and kills"),
    ("serve", "cronpolicy.tooling.web.serve",
     "a read-only web dashboard of the fleet: runs, schedules, windows, open rollouts "
     "(pip install 'cronpolicy[web]')"),
    ("relay", "cronpolicy.tooling.relay",
     "serve running scripts on one database connection: their stop verdicts and their "
     "leases, renewed in one statement per poll (scripts set relay = HOST:PORT)"),
    ("metrics", "cronpolicy.tooling.watch_commands",
     "fleet metrics in the Prometheus text format"),
    ("flush", "cronpolicy.tooling.maintenance_commands",
     "write the run records this host spooled while the database was out of reach"),
    ("prune", "cronpolicy.tooling.maintenance_commands",
     "delete old run history in batches (estimates keep theirs)"),
    ("history", "cronpolicy.tooling.history_commands", "recent runs, newest first"),
    ("estimate", "cronpolicy.tooling.history_commands",
     "runtime estimates, as the gate computes them"),
    ("check", "cronpolicy.tooling.history_commands",
     "the decision for a script now, without running it (exit 0: would run, 5: would skip)"),
    ("completion", "cronpolicy.tooling.manual",
     "print the shell completion script: source <(cronpolicy completion bash)"),
    ("man", "cronpolicy.tooling.manual",
     "print the manual page (roff): cronpolicy man | man -l -"),
)


def command_function(func):
    """The function a parsed command names ("module:function": each command
    is a plain function ``cmd_x(args, settings) -> int``)."""
    import importlib
    module, _, name = func.partition(":")
    return getattr(importlib.import_module(module), name)


RUN_COMES_FIRST = "`run` must come first: cronpolicy run NAME [options] -- COMMAND"


def _terminal_columns():
    """shutil.get_terminal_size().columns, without importing shutil (and
    bz2, lzma, zlib and fnmatch with it, 3 ms of every command's start):
    argparse's help formatter, which every add_argument makes, asks it."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or 80


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line and exit code 2."""

    def _get_formatter(self):
        return self.formatter_class(prog=self.prog, width=_terminal_columns() - 2)

    #: The words being parsed (for advice an error can give).
    words = ()
    #: Whether the command parsed is one of ENDS_AT_ONCE.
    ends_at_once = False

    def error(self, message):
        words = list(_Parser.words)
        if _command_words(words)[:1] == ("run",):
            # `cronpolicy --dsn X run NAME -- CMD`: main hands `run` its own
            # words only when it is the first one.
            message = RUN_COMES_FIRST
        elif message.startswith("unrecognized arguments") and "--" not in words and any(
                words[index:index + 2] == ["deploy", "run"] for index in range(len(words))):
            # `cronpolicy deploy run ls -l`: the command's options look like its own.
            message += ("; give the command after --, as in cronpolicy deploy run [options] "
                        "-- COMMAND [ARGS...]")
        self.exit(exitcodes.USAGE, "%s: error: %s (see --help)\n" % (
            self.prog, message.replace("\n", "\\n")))   # (a word may hold one)


class _NotBuilt:
    """Stands for the parser of a command this run does not need: every
    call is accepted and does nothing (see build_parser)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: self


class CommandParsers:
    """What a command module's ``add_arguments(parsers)`` is given, for one
    command word: ``add`` and ``group`` make the parsers of its commands,
    but only of those the words being parsed name (``path``); the others
    are a _NotBuilt."""

    def __init__(self, commands, path, module, help_text, common, reader):
        self.commands = commands        # the subparsers of the command words
        self.path = path
        self.module = module
        self.help_text = help_text      # the word's line in COMMANDS
        #: The parents a command's parser takes: --dsn; --json.
        self.common, self.reader = common, reader
        self.matched = []

    def wanted(self, *names):
        return tuple(self.path[:len(names)]) == names[:len(self.path)]

    def add(self, name, function, help_text=None, parents=None, subparsers=None):
        """The parser of command ``name`` (of a group's ``subparsers``, else a
        command word, whose help is its line in COMMANDS), which runs
        ``function``: a function of the module adding it, or
        "module:function".  ``parents`` default: --dsn."""
        subparsers = self.commands if subparsers is None else subparsers
        if isinstance(subparsers, _NotBuilt) or not self.wanted(
                *getattr(subparsers, "path", ()), name):
            return _NotBuilt()
        self.matched.append(name)
        help_text = self.help_text if subparsers is self.commands else help_text
        parents = (self.common,) if parents is None else parents
        sub = subparsers.add_parser(name, parents=list(parents), help=help_text,
                                    description=help_text)
        sub.set_defaults(func=function if ":" in function else "%s:%s" % (self.module,
                                                                           function))
        return sub

    def group(self, name, dest):
        """The subcommands of command group ``name`` (schema, window...)."""
        if not self.wanted(name):
            return _NotBuilt()
        subparsers = self.commands.add_parser(name, help=self.help_text).add_subparsers(
            dest=dest, metavar="SUBCOMMAND", parser_class=_Parser)
        subparsers.required = True
        subparsers.path = (name,)
        return subparsers


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
    every command's parser costs a read command a tenth of its time (and
    importing every command module more).  So the commands ``argv`` does
    not name are left out, their modules not imported; with no command
    word (-h, --version, none given, no such command) the command words
    are all there is, each with its line of help.
    """
    import importlib
    path = _command_words(argv) if argv is not None else ()
    parser, commands, common, reader = _top_parser()
    if argv is not None and path[:1] not in [(word,) for word, _, _ in COMMANDS]:
        for word, _, help_text in COMMANDS:
            commands.add_parser(word, help=help_text)
        return parser
    matched = False
    for word, module, help_text in COMMANDS:
        if path and word != path[0]:
            continue
        parsers = CommandParsers(commands, path or (word,), module, help_text, common, reader)
        if module is None:
            _add_run(parsers)
        else:
            importlib.import_module(module).add_arguments(parsers)
        matched = matched or bool(parsers.matched)
    if len(path) > 1 and not matched:
        return build_parser(path[:1])   # no such subcommand: the group's parser says so
    return parser


def _top_parser():
    """(the parser, the subparsers of its command words, the parents of a
    command: --dsn, --json)."""
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
    return parser, commands, common, reader


def _add_run(parsers):
    """`cronpolicy run` as the parser knows it: a line of help (main gives
    its words to run_command, which has its own parser)."""
    if parsers.wanted("run"):
        parsers.matched.append("run")
        parsers.commands.add_parser("run", add_help=False, help=parsers.help_text)


def main(argv=None):
    """The cronpolicy command: its exit status.  ``argv`` None: this
    process's own arguments, and the process ends when this returns."""
    program = argv is None
    argv = sys.argv[1:] if program else list(argv)
    if program:
        hold_standard_descriptors()     # (before a file or socket can take 0, 1 or 2)
    argv = _dsn_after_run(argv)
    if argv and argv[0] == "run":
        # Everything after `run NAME` belongs to the wrapped command's gate.
        from cronpolicy.tooling.run_command import run_command
        return run_command(argv[1:])
    from cronpolicy.tooling.output import EscapingStream, GuardedStream, JournalPriorities
    streams = sys.stdout, sys.stderr
    # What cannot be written never raises (see GuardedStream): the command
    # runs to its end, and its exit status says what was lost (_said).
    guarded = (GuardedStream(sys.stdout, "standard output"),
               GuardedStream(sys.stderr, "standard error"))
    sys.stdout, sys.stderr = EscapingStream(guarded[0]), EscapingStream(guarded[1])
    if stderr_is_the_journal():         # a command run by a systemd timer
        sys.stderr = JournalPriorities(sys.stderr)
    try:
        code = _said(_main(argv), guarded[0])
    finally:
        sys.stdout, sys.stderr = streams
        if program:
            for stream, guard in zip(streams, guarded):
                if guard.error is not None:
                    put_devnull_under(stream)   # (what it kept, flushed at exit, raises again)
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


def _dsn_after_run(argv):
    """``argv`` with a leading --dsn DSN (or --dsn=DSN) moved past a `run`
    that follows it: `cronpolicy [--dsn DSN] COMMAND` (the usage --help
    shows) holds for `run` too, whose own options may come before NAME."""
    width = 2 if argv[:1] == ["--dsn"] else 1 if argv[:1] and argv[0].startswith("--dsn=") \
        else 0
    if width and argv[width:width + 1] == ["run"]:
        return ["run"] + argv[:width] + argv[width + 1:]
    return argv


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
            if stream is not None:      # (closed when the process started)
                stream.flush()
        except (OSError, ValueError):
            return
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    os._exit(code)


def _said(code, stdout):
    """The exit status of a command that returned ``code``, once its standard
    output (``stdout``, a GuardedStream) is flushed: ``code`` when all was
    written.  When not, a command that had nothing else to say (0) exits
    READER_GONE, quietly, for a pipe whose reader left (| head), else
    OUTPUT_FAILED with one line on standard error saying what it could not
    write; a command with a code of its own (5: would skip, 7, 8...) keeps
    it, and says the line too.  Never success for an answer not given."""
    stdout.flush()
    if stdout.error is None:
        return code
    if stdout.reader_gone:
        return code or exitcodes.READER_GONE
    if not stdout.reported:
        print("cronpolicy: error: %s" % stdout.fault(), file=sys.stderr)
    return code or exitcodes.OUTPUT_FAILED


def _main(argv):
    parser = build_parser(argv)
    _Parser.words = tuple(argv)
    try:
        args = parser.parse_args(attach_dashed_values(argv, parser))
    except SystemExit as error:
        return error.code if isinstance(error.code, int) else exitcodes.USAGE
    if not hasattr(args, "func"):   # `cronpolicy --dsn X run ...`
        print("cronpolicy: error: %s (see --help)" % RUN_COMES_FIRST, file=sys.stderr)
        return exitcodes.USAGE
    problem = not_text_problem(args)
    if problem:
        print("cronpolicy: error: %s" % problem, file=sys.stderr)
        return exitcodes.USAGE
    try:
        settings = (Settings.load(dsn=getattr(args, "dsn", None))
                    if getattr(args, "needs_settings", True) else None)
        if _says_its_database(args) and database_note(settings):
            if getattr(args, "json", False):        # JSON stays pure
                print("cronpolicy: " + database_note(settings), file=sys.stderr)
            else:
                print(database_note(settings))
        _Parser.ends_at_once = args.func.rpartition(":")[2] in ENDS_AT_ONCE
        return command_function(args.func)(args, settings)
    except CronPolicyError as error:
        print("cronpolicy: error: %s" % str(error).replace("\n", " "), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("cronpolicy: interrupted", file=sys.stderr)
        return exitcodes.STOPPED


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
    """Whether ``args``' command prints database_note first (on standard
    error with --json, which stays pure JSON): every command that reads the
    database, but the commands that say it themselves."""
    if args.func.endswith(_SAY_THEIR_OWN_DATABASE):
        return False
    return not args.func.endswith("cmd_simulate") or args.from_database


if __name__ == "__main__":
    sys.exit(main())
