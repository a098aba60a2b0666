"""`cronpolicy overdue` and `metrics`: what monitoring asks of the fleet; each
a plain ``cmd_x(args, settings) -> int``."""

import os
import sys

from cronpolicy import exitcodes
from cronpolicy.arguments import positive_int, positive_number
from cronpolicy.errors import UsageError
from cronpolicy.timeutil import format_duration, format_time, positive_duration
from cronpolicy.tooling.output import print_json, print_table, schedule_text, warn


def add_arguments(parsers):
    """The parsers of overdue and metrics (see cli.CommandParsers)."""
    add, common, reader = parsers.add, parsers.common, parsers.reader
    sub = add("overdue", "cmd_overdue", parents=(common, reader))
    sub.add_argument("--tolerance", type=positive_number, default=1.5,
                     help="overdue after this many intervals without success (1.5)")
    sub.add_argument("--grace", default="10m",
                     help="what a scheduled run is allowed beyond its estimate (default 10m)")
    sub.add_argument("--starving", type=positive_int, default=3, metavar="N",
                     help="report a script the last N rollouts in a row skipped (default 3)")
    sub.add_argument("--all", action="store_true",
                     help="list every script with an interval or a schedule")

    sub = add("metrics", "cmd_metrics")
    scopes = sub.add_mutually_exclusive_group()
    scopes.add_argument("--host", metavar="H",
                        help="only host H's series (each labelled host=H), none of the "
                             "fleet-wide ones: for every host's own textfile")
    scopes.add_argument("--fleet", action="store_true",
                        help="only the fleet-wide series: for one host of the fleet")
    sub.add_argument("--output", metavar="FILE",
                     help="write them here atomically (for the textfile collector) "
                          "instead of standard output")


def cmd_overdue(args, settings):
    from cronpolicy.store.reads import reap_if_free, session, transaction
    from cronpolicy.tooling import overdue
    from cronpolicy.tooling.rollouts import open_problems, summary
    from cronpolicy.schedule import with_kept_starts

    def read():
        # One connection, the transactions (and their order) of
        # overdue_scripts, scheduled_reports and the open rollouts' read,
        # which made one each.
        with session(settings) as reader:
            with transaction(reader, "look for overdue scripts"):
                now, reports = overdue.overdue_of(reader, args.tolerance, args.all)
            grace = positive_duration(args.grace, "--grace")
            reader.doing = "record dead runs"
            reap_if_free(reader, settings.connect_timeout)
            with transaction(reader, "look for overdue scripts"):
                _, scheduled = overdue.scheduled_reports_of(
                    reader, settings, grace=grace, starving_after=args.starving,
                    include_all=args.all, warn=warn)
            with transaction(reader, "read the open rollouts"):
                _, stuck = open_problems(reader, settings)
        return now, reports, scheduled, stuck
    now, reports, scheduled, stuck = with_kept_starts(settings.state_dir, read)
    late = [report for report in reports + scheduled
            if report["overdue"] or report.get("starving")] + stuck
    if args.json:
        print_json(reports + scheduled + [
            {"name": "rollout #%d" % found["id"], "rollout": found["id"], "overdue": True,
             "owner_lost": found["owner_lost"], "state": "rollout", "detail": problem,
             "began_at": found["began_at"], "owner": found["owner"]}
            for found, problem in stuck], "reports")
        return exitcodes.OVERDUE if late else exitcodes.OK
    if stuck:
        print("rollouts that need someone (end one with `cronpolicy deploy end ID`):")
        for found, problem in stuck:
            print("  rollout %s" % summary(found))
            print("    ! %s" % problem)
        if reports or scheduled:
            print()
    if not reports and not scheduled and not stuck:
        print("nothing overdue" if not args.all else
              "no script declares an expected interval or has a schedule")
    if reports:
        print_table(reports, [
            ("SCRIPT", lambda r: r["name"]),
            ("EVERY", lambda r: format_duration(r["expected_interval"])),
            ("LAST SUCCESS", lambda r: format_time(r["last_success"]) if r["last_success"]
             else "never"),
            ("OVERDUE", lambda r: "yes" if r["overdue"] else "no"),
            ("WHY", lambda r: "%s: %s" % (r["state"], r["detail"]))])
    if scheduled:
        if reports:
            print()
        print_table(scheduled, [
            ("SCRIPT", lambda r: r["name"]), ("HOST", lambda r: r["host"]),
            ("SCHEDULE", schedule_text),
            ("LAST SUCCESS", lambda r: format_time(r["last_success"]) if r["last_success"]
             else "never"),
            ("OVERDUE", lambda r: "yes" if r["overdue"] else "no"),
            ("WHY", lambda r: "%s: %s" % (r["state"], r["detail"]))])
    return exitcodes.OVERDUE if late else exitcodes.OK


def cmd_metrics(args, settings):
    from cronpolicy.tooling import metrics
    from cronpolicy.tooling.cli import database_note
    note = database_note(settings)
    # (As a comment, which every reader of the format skips.)
    heading = "# %s\n" % note if note else ""
    scope = metrics.HOST if args.host else metrics.FLEET if args.fleet else metrics.ALL

    def render():
        from cronpolicy.schedule import with_kept_starts
        return with_kept_starts(settings.state_dir, lambda: metrics.render(
            settings, warn=warn, host=args.host, scope=scope))

    if not args.output:
        sys.stdout.write(heading + render())
        return exitcodes.OK
    from cronpolicy.safety import check_replaceable, checked_directory, write_atomically
    checked_directory(os.path.dirname(os.path.abspath(args.output)), "--output directory")
    check_replaceable(args.output)      # before the database is asked anything
    text = heading + render()
    try:
        write_atomically(args.output, lambda handle: handle.write(text), 0o644)
    except OSError as error:
        raise UsageError("cannot write %s: %s" % (args.output, error.strerror)) from None
    return exitcodes.OK
