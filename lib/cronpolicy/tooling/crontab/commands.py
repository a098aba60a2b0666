"""`cronpolicy crontab wrap|unwrap|names`: each a plain ``cmd_x(args, settings) -> int``."""

import os
import shutil
import sys

from cronpolicy import exitcodes
from cronpolicy.errors import UsageError
from cronpolicy.tooling.crontab import files
from cronpolicy.tooling.crontab.host import (
    STDIN, SYSTEM, USER, Crontab, detect_system, wrap_files)
from cronpolicy.tooling.crontab.lines import (
    MAX_COMMAND_BYTES, program_problem, unwrap, write_crontab)
from cronpolicy.tooling.output import show

_PROGRAM = "cronpolicy crontab"


def crontabs_of(args):
    """[Crontab] of the files the command names (standard input at most once)."""
    paths = args.files or [STDIN]
    if paths.count(STDIN) > 1:
        raise UsageError("standard input (-) can be read only once")
    if STDIN in paths and sys.stdin is None:
        raise UsageError("standard input is closed: name the crontab file")
    crontabs = []
    for path in paths:
        text = files.read(path, sys.stdin.buffer if path == STDIN else None)
        system = {SYSTEM: True, USER: False}.get(args.format)
        if system is None:
            system = detect_system(path, text)
        crontabs.append(Crontab(path, text, system))
    return crontabs


def _default_program():
    if os.path.basename(sys.argv[0]) == "cronpolicy" and os.path.isabs(sys.argv[0]):
        return sys.argv[0]
    return shutil.which("cronpolicy") or "cronpolicy"


def _label(crontab):
    return "standard input" if crontab.path == STDIN else crontab.path


def _write_stdout(text):
    """Byte for byte, past the escaping of control characters: a crontab's
    \\r, form feeds and the rest are its own, not terminal trouble."""
    stream = getattr(sys.stdout, "raw", sys.stdout)
    try:
        stream.flush()
        stream.buffer.write(write_crontab(text))
        stream.buffer.flush()
    except (OSError, AttributeError, ValueError) as error:
        # (In the CLI, what cannot be written never raises: cli._said says
        # it, exit 10 or 141.  This is a stream with no bytes beneath.)
        raise UsageError("cannot write standard output: %s"
                         % (getattr(error, "strerror", None) or error)) from None


def _deliver(args, changes):
    """Write each (path, old text, new text) as the options say: standard
    output for one crontab, else in place or under --output-dir."""
    if args.in_place:
        outputs = [output for output in files.in_place_outputs(changes)
                   if args.backup or not output.backup]
    elif args.output_dir:
        outputs = files.directory_outputs([(path, new) for path, _, new in changes],
                                          args.output_dir)
    elif len(changes) == 1:
        _write_stdout(changes[0][2])
        return
    else:
        raise UsageError("several crontabs: say where the results go, --in-place or "
                         "--output-dir DIR")
    files.write_all(outputs, top=args.output_dir)
    for path, old, new in changes:
        if args.output_dir:
            print("wrote %s" % files.directory_outputs([(path, new)], args.output_dir)[0].path)
        elif old == new:
            print("%s: unchanged" % path)
        else:
            print("wrote %s%s" % (path, " (the previous one is %s)" % files.backup_path(path)
                                  if args.backup else ""))


def _warn(crontab, number, message):
    print("%s: %s, line %d: %s" % (_PROGRAM, _label(crontab), number, message),
          file=sys.stderr)


def add_arguments(parsers):
    """The parsers of crontab wrap, unwrap and names (see cli.CommandParsers)."""
    add, group, reader = parsers.add, parsers.group, parsers.reader
    crontab_commands = group("crontab", "crontab_command")
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


def cmd_crontab_wrap(args, settings):
    program = _default_program() if args.program is None else args.program
    problem = program_problem(program)
    if problem:
        raise UsageError(problem)
    crontabs = crontabs_of(args)
    results = wrap_files(crontabs, program=program)
    for result in results:
        for number in result.foreign:
            _warn(result.crontab, number, "not a crontab line (no schedule cron reads); "
                                          "left as it is")
        for number, message in result.warnings:
            _warn(result.crontab, number, message)
        for number, name, length in result.too_long:
            _warn(result.crontab, number, "%s left unwrapped: wrapped it would be %d bytes, "
                                          "over cron's %d" % (name, length, MAX_COMMAND_BYTES))
    if args.register:
        _register(crontabs, getattr(args, "dsn", None))     # first: nothing half done
    _deliver(args, [(result.crontab.path, result.crontab.text, result.text)
                    for result in results])
    return exitcodes.NOT_ALL_WRAPPED if any(result.too_long for result in results) \
        else exitcodes.OK


def _register(crontabs, dsn=None):
    """--register: what `cronpolicy schedule import` does with the same files,
    in the database `cronpolicy --dsn` (or the configuration) names."""
    from cronpolicy.config import Settings
    from cronpolicy.tooling.schedules import register_crontabs
    settings = Settings.load(dsn=dsn)
    outcome, _ = register_crontabs(settings, crontabs, warn=lambda message: print(
        "cronpolicy schedule: %s" % message, file=sys.stderr))
    print("schedules registered: %d added, %d changed, %d unchanged" % (
        len(outcome["added"]), len(outcome["changed"]), len(outcome["unchanged"])),
        file=sys.stderr)
    if outcome["refused"]:
        from cronpolicy.errors import DatabaseError
        raise DatabaseError("schedules not changed: %s on %s, a host this database login may "
                            "not write as (cronpolicy.host_login); no crontab written" % (
                                ", ".join(outcome["refused"]), settings.host), denied=True)


def cmd_crontab_unwrap(args, settings):
    crontabs = crontabs_of(args)
    _deliver(args, [(crontab.path, crontab.text,
                     unwrap(crontab.text, system=crontab.system, legacy=args.legacy))
                    for crontab in crontabs])
    return exitcodes.OK


def cmd_crontab_names(args, settings):
    crontabs = crontabs_of(args)
    results = wrap_files(crontabs)
    rows = [{"file": _label(result.crontab),
             "format": SYSTEM if result.crontab.system else USER,
             "line": job.number, "name": job.name, "from": job.how, "user": job.user,
             "command": job.command}
            for result in results for job in result.jobs]
    for result in results:
        for number, message in result.warnings:
            _warn(result.crontab, number, message)
    for row, job in zip(rows, (job for result in results for job in result.jobs)):
        row["left_as_it_is"] = job.left
    show(args.json, rows, "jobs", "no jobs", [
        ("NAME", lambda r: r["name"]), ("FROM", lambda r: r["from"]),
        ("WHERE", lambda r: "%s:%d" % (r["file"], r["line"])),
        ("USER", lambda r: r["user"] or "-"),
        ("COMMAND", lambda r: r["command"] + ("   (left as it is: %s)" % r["left_as_it_is"]
                                              if r["left_as_it_is"] else ""))])
    return exitcodes.OK
