"""`cronpolicy schedule import|list`: each a plain ``cmd_x(args, settings) -> int``."""

import sys

from cronpolicy import exitcodes
from cronpolicy.tooling.output import print_json, print_table
from cronpolicy.timeutil import format_time


def _warn(message):
    print("cronpolicy schedule: %s" % message, file=sys.stderr)


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
    from cronpolicy.store.reads import reading
    from cronpolicy.tooling.schedules import describe, fleet_schedules
    with reading(settings, "read the schedules") as reader:
        inputs = reader.inputs()
        found = fleet_schedules(reader, inputs, _warn, host=args.host, script=args.script)
    rows = [dict({"name": name, "host": host}, **describe(schedule, inputs.now))
            for (name, host), schedule in found.items()
            if schedule is not None or args.all]
    if args.json:
        print_json(rows)
        return exitcodes.OK
    if not rows:
        print("no schedules known (cronpolicy schedule import registers a host's crontab)")
        return exitcodes.OK
    print_table(rows, [("SCRIPT", lambda r: r["name"]), ("HOST", lambda r: r["host"]),
                       ("SCHEDULE", lambda r: r["schedule"] or "-"),
                       ("ZONE", lambda r: r["schedule_tz"] or ("UTC" if r["schedule"] else "-")),
                       ("NEXT START", lambda r: format_time(r["next_start"])
                        if r["next_start"] else "-"),
                       ("FROM", lambda r: r["schedule_origin"] or "-")])
    return exitcodes.OK
