"""`cronpolicy schedule import|list`: each a plain ``cmd_x(args, settings) -> int``."""

import sys

from cronpolicy import exitcodes
from cronpolicy.arguments import script_name
from cronpolicy.tooling.output import print_json, show
from cronpolicy.timeutil import format_time


def _warn(message):
    print("cronpolicy schedule: %s" % message, file=sys.stderr)


def add_arguments(parsers):
    """The parsers of schedule import and list (see cli.CommandParsers)."""
    add, group, common, reader = parsers.add, parsers.group, parsers.common, parsers.reader
    schedule_commands = group("schedule", "schedule_command")
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


def cmd_schedule_import(args, settings):
    from cronpolicy.schedule import schedule_problem
    from cronpolicy.errors import UsageError
    from cronpolicy.tooling.crontab.commands import crontabs_of
    from cronpolicy.tooling.schedules import register_crontabs
    if args.tz and schedule_problem("@daily", args.tz):
        raise UsageError("--tz: %s" % schedule_problem("@daily", args.tz))
    outcome, jobs = register_crontabs(settings, crontabs_of(args), args.tz, args.replace,
                                      warn=_warn)
    if args.json:
        print_json({"host": settings.host, "jobs": [job._asdict() for job in jobs], **outcome})
        return _said_refused(outcome, settings.host)
    for job in jobs:
        print("%s on %s: %s (%s)  from %s line %d" % (
            job.name, settings.host, job.schedule, job.tz or "UTC", job.path, job.number))
    print("%d added, %d changed, %d unchanged%s" % (
        len(outcome["added"]), len(outcome["changed"]), len(outcome["unchanged"]),
        ", %d removed (%s)" % (len(outcome["removed"]), ", ".join(outcome["removed"]))
        if outcome["removed"] else ""))
    return _said_refused(outcome, settings.host)


def _said_refused(outcome, host):
    """The exit code: 4 when rows were left as they were because this login
    may not write as ``host`` (host_login), said in one line; else 0."""
    if not outcome["refused"]:
        return exitcodes.OK
    print("cronpolicy schedule: error: not changed: %s on %s, a host this database login may "
          "not write as (only its logins in cronpolicy.host_login, or an administrator, may)"
          % (", ".join(outcome["refused"]), host), file=sys.stderr)
    return exitcodes.GATE_ERROR


def cmd_schedule_list(args, settings):
    from cronpolicy.schedule import with_kept_starts
    from cronpolicy.store.reads import reading
    from cronpolicy.tooling.schedules import describe, fleet_schedules, listed_schedules

    def described():
        with reading(settings, "read the schedules") as reader:
            listed = None if args.all else listed_schedules(
                reader, reader.now(), _warn, host=args.host, script=args.script)
            if listed is not None:
                return listed
            inputs = reader.inputs()
            # (without --all only the scheduled are shown: the scripts seen in
            # 30 days of history are then read only if a policy row sets schedules)
            found = fleet_schedules(reader, inputs, _warn, host=args.host, script=args.script,
                                    scheduled_only=not args.all, first_after=inputs.now)
        return [dict({"name": name, "host": host}, **describe(schedule, inputs.now))
                for (name, host), schedule in found.items()
                if schedule is not None or args.all]
    rows = with_kept_starts(settings.state_dir, described)
    show(args.json, rows, "schedules",
         "no schedules known (cronpolicy schedule import registers a host's crontab)", [
             ("SCRIPT", lambda r: r["name"]), ("HOST", lambda r: r["host"]),
             ("SCHEDULE", lambda r: r["schedule"] or "-"),
             ("ZONE", lambda r: r["schedule_tz"] or ("UTC" if r["schedule"] else "-")),
             ("NEXT START", lambda r: format_time(r["next_start"]) if r["next_start"] else "-"),
             ("FROM", lambda r: r["schedule_origin"] or "-")])
    return exitcodes.OK
