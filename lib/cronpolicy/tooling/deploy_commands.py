"""`cronpolicy deploy begin|end|wait|plan|slot` (and deploy run's arguments:
its function is in deploy_run); each a plain ``cmd_x(args, settings) -> int``."""

import datetime
import os
import sys

from cronpolicy import exitcodes
from cronpolicy.arguments import database_id, positive_int, script_name, service_name
from cronpolicy.errors import UsageError
from cronpolicy.timeutil import format_duration, format_time, parse_duration, positive_duration
from cronpolicy.tooling.output import LiveTable, print_json, print_table, run_table, warn


def add_arguments(parsers):
    """The parsers of the deploy commands (see cli.CommandParsers)."""
    add, group, common, reader = parsers.add, parsers.group, parsers.common, parsers.reader
    deploy_commands = group("deploy", "deploy_command")
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
    sub.add_argument("id", nargs="?", type=database_id, metavar="ID",
                     help="the rollout (default: the only one open)")
    sub.add_argument("--all", action="store_true", help="end every open rollout")
    sub.add_argument("--reason", default="", help="recorded in the audit")
    sub.add_argument("--service", type=service_name,
                     help="end the open rollout of this service")
    sub = add("run", "cronpolicy.tooling.deploy_run:cmd_deploy_run",
              "open a rollout, wait for quiet, run COMMAND, end the rollout whatever happens "
              "(exit: COMMAND's; 7 when the wait timed out, or someone else ended the "
              "rollout before quiet, and it did not run; 130 when stopped by SIGINT, SIGTERM "
              "or SIGHUP)",
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
              "wait until no running script is in the way (exit 0), or time out (exit 7; "
              "also when rollout ID is ended before the fleet is quiet for it)",
              (common, reader), subparsers=deploy_commands)
    sub.add_argument("id", nargs="?", type=database_id, metavar="ID",
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


def cmd_deploy_begin(args, settings):
    from cronpolicy.store.writes import Plain
    from cronpolicy.tooling import rollout_rows
    from cronpolicy.tooling.rollouts import problem, summary
    expect = positive_duration(args.expect, "--expect") if args.expect else None
    services = sorted(set(args.service or ()))
    row, others = rollout_rows.begin(Plain(settings), services=services, reason=args.reason,
                                     expect=expect, owner_host=settings.host)
    found = _described(row, settings)
    # The others as of now, the database's clock in the transaction that
    # began this one (its began_at): not as of their own beginning.
    now = found["began_at"]
    if args.json:
        print_json(dict(found, others=[_described(other, settings, now) for other in others]))
    else:
        print("rollout #%d began: %s%s" % (
            found["id"], "every script stops starting" if not services else
            "the scripts that need %s stop starting" % " or ".join(services),
            ": " + args.reason if args.reason else ""))
        for other in others:
            described = _described(other, settings, now)
            trouble = problem(described, now)
            print("also open: " + summary(described) + (" (%s)" % trouble if trouble else ""))
    _warn_starving(settings, services)
    return exitcodes.OK


def _described(row, settings, now=None):
    """A rollout row (a dict of its columns) as the commands show it, as of
    ``now`` (the database's clock; default: when it ended, else began)."""
    from cronpolicy.rows import Rollout, from_mapping
    from cronpolicy.tooling.rollouts import describe
    rollout = from_mapping(Rollout, row)
    return describe(rollout, now or rollout.ended_at or rollout.began_at,
                    settings.default_rollout_expect)


def cmd_deploy_end(args, settings):
    from cronpolicy.store.writes import Plain
    from cronpolicy.tooling import rollout_rows
    from cronpolicy.tooling.rollouts import summary
    db = Plain(settings)
    if args.id is not None:
        if args.all or args.service:
            raise UsageError("give a rollout id, or --all, or --service, not several")
        row, ended = rollout_rows.end(db, args.id, args.reason)
        found = _described(row, settings)
        if ended:
            print("rollout #%d ended after %s" % (found["id"],
                                                  format_duration(found["open_seconds"])))
        else:
            print("rollout #%d had ended already, at %s by %s" % (
                found["id"], format_time(found["ended_at"]), found["ended_by"] or "-"))
    else:
        rows = rollout_rows.end_open(db, service=args.service, every=args.all,
                                     reason=args.reason)
        if not rows:
            print("no rollout%s is open" % (" of " + args.service if args.service else ""))
        for row in rows:
            found = _described(row, settings)
            print("rollout #%d ended after %s: %s" % (
                found["id"], format_duration(found["open_seconds"]), summary(found)))
    for other in rollout_rows.open_rollouts(db):
        print("still open: " + summary(_described(other, settings)))
    return exitcodes.OK


def _warn_starving(settings, services=()):
    """Say which scripts this rollout (of ``services``; all: full) skips
    once more after the rollouts before it (starvation:
    planning.STARVING_AFTER in a row)."""
    from cronpolicy import policy
    from cronpolicy.tooling import planning
    from cronpolicy.tooling.rollout_plans import gather
    for job in gather(settings, warn=warn).jobs:
        if job.starving + 1 >= planning.STARVING_AFTER and job.schedule is not None and \
                not policy.rollout_exempt(job.inputs.policies, job.name, job.host) and (
                    not services or set(services) & set(
                        policy.effective_needs(job.inputs, job))):
            warn("%s on %s was skipped by the last %d rollouts in a row, and this one skips it "
                  "too" % (job.name, job.host, job.starving))


def cmd_deploy_wait(args, settings):
    from cronpolicy.store.writes import Plain
    from cronpolicy.tooling import deploy
    timeout = parse_duration(args.timeout)
    release_not = args.release_not
    if args.old_releases:
        if not os.path.lexists(args.old_releases):
            raise UsageError("--old-releases: %s does not exist" % args.old_releases)
        release_not = os.path.realpath(args.old_releases)
        from cronpolicy.matching import text_problem
        problem = text_problem(release_not, "--old-releases: the release")
        if problem:             # no run can have recorded it
            raise UsageError(problem)
    db = Plain(settings)
    progress = None if args.json else LiveTable(sys.stdout)
    result = deploy.wait_until_quiet(db, timeout, host=args.host, on_progress=progress,
                                     service=args.service, release_not=release_not,
                                     rollout_id=args.id)
    if result.ended_meanwhile:
        pass                    # said below: advice to begin a rollout would mislead
    elif not result.stop_asked and args.service:
        warn("no rollout of %s (nor a full one) is open and no window is active, so "
             "nothing asks the scripts that need it to stop (run `cronpolicy deploy begin "
             "--service %s` first)" % (args.service, args.service))
    elif not result.stop_asked:
        warn("no rollout is open and no window is active, so nothing asks "
             "scripts to stop (run `cronpolicy deploy begin` first)")
    if args.json:
        print_json({"quiet": result.quiet, "waited_seconds": result.waited_seconds,
                    "rollout": args.id, "host": args.host, "service": args.service,
                    "release_not": release_not, "stop_asked": result.stop_asked,
                    "blockers": result.blockers, "ended_meanwhile": result.ended_meanwhile,
                    "rollout_gone": result.rollout_gone})
    elif result.ended_meanwhile:
        print("rollout #%d %s %s, before the fleet was quiet for it: its "
              "scripts start again (cronpolicy rollouts)" % (
                  args.id, "is gone (its row was deleted)" if result.rollout_gone
                  else "was ended", "after %s" % format_duration(result.waited_seconds)
                  if result.waited_seconds else "before this wait began"), file=sys.stderr)
    elif result.quiet:
        print("quiet after %s: no run on hosts %s%s%s%s is in the way" % (
            format_duration(result.waited_seconds), args.host,
            " that rollout #%d stops" % args.id if args.id is not None else "",
            " that needs %s" % args.service if args.service else "",
            " of a release other than %s" % release_not if release_not else ""))
    else:
        print("timed out after %s; still running:" % format_duration(result.waited_seconds))
        now = max(run["started_at"] + datetime.timedelta(seconds=run["running_seconds"])
                  for run in result.blockers)
        run_table(result.blockers, now)
    return exitcodes.OK if result.quiet else exitcodes.WAIT_TIMEOUT


def cmd_deploy_plan(args, settings):
    from cronpolicy.tooling.rollout_plans import plan
    duration = _rollout_duration(args.duration)
    result = plan(settings, args.at, duration, host=args.host, script=args.script,
                  service=args.service, warn=warn)
    if args.json:
        print_json(result)
        return exitcodes.OK
    now, at = result["now"], result["at"]
    print("a rollout at %s (in %s) for %s, hosts %s, scripts %s:" % (
        format_time(at), format_duration(max(0.0, (at - now).total_seconds())),
        format_duration(duration), result["host"], result["script"]))
    _say_default_runtime(result["default_runtime"], settings)

    def skipped_from(row):
        if row["exempt"]:
            return "never (rollout exempt)"
        return "now" if row["already"] else format_time(row["cutoff_at"])
    if result["skipped"]:
        print("new starts skipped (estimate + %s margin reaching the rollout):"
              % format_duration(result["cutoff_margin"]))
        print_table(result["skipped"], [
            ("  SCRIPT", lambda r: "  " + r["name"]),
            ("ESTIMATE", lambda r: format_duration(r["estimate_seconds"])),
            ("SKIPPED FROM", skipped_from),
            ("NOTE", lambda r: "disabled by policy" if r["disabled"] else r["source"])])
    else:
        print("no scripts known from the last 30 days of history or from policies")
    starts = result["skipped_starts"]
    print("scheduled starts it skips: %s" % (len(starts) or "none"))
    if starts:
        print_table(starts, [("  SCRIPT", lambda r: "  " + r["name"]),
                             ("HOST", lambda r: r["host"]),
                             ("SCHEDULED", lambda r: format_time(r["at"])),
                             ("WHY", lambda r: r["code"]),
                             ("NEXT START AFTER", lambda r: format_time(r["next_start"])
                              if r["next_start"] else "-")])
    still = [run for run in result["running"] if run["running_at"]]
    done = [run for run in result["running"] if not run["running_at"]]
    print("running now and predicted to still run at %s: %s" % (
        format_time(at), len(still) or "none"))
    if still:
        run_table(still, now)
        if result["wait_seconds"]:
            print("the rollout would wait %s for runs that cannot be interrupted"
                  % format_duration(result["wait_seconds"]))
    if done:
        print("running now and predicted to finish before it: %s" % ", ".join(
            "%s on %s" % (run["name"], run["host"]) for run in done))
    for row in result["starving"]:
        warn("%s on %s would be skipped by %d rollouts in a row" % (
            row["name"], row["host"], row["rollouts_in_a_row"]))
    return exitcodes.OK


def cmd_deploy_slot(args, settings):
    from cronpolicy.tooling.rollout_plans import slots
    duration = _rollout_duration(args.duration)
    within = positive_duration(args.within, "--within")
    result = slots(settings, duration, within, host=args.host, script=args.script,
                   service=args.service, count=args.count, warn=warn)
    if args.json:
        print_json(result)
        return exitcodes.OK
    print("the best times to start a rollout of %s within %s (hosts %s, scripts %s):" % (
        format_duration(duration), format_duration(within), result["host"], result["script"]))
    _say_default_runtime(result["default_runtime"], settings)
    for rank, candidate in enumerate(result["candidates"], 1):
        print()
        print("%d. %s to %s: %s" % (
            rank, format_time(candidate["starts_at"]), format_time(candidate["ends_at"]),
            "waits %s" % format_duration(candidate["wait_seconds"])
            if candidate["wait_seconds"] else "waits for nothing"
            + ("; skips %d scheduled starts" % len(candidate["skipped_starts"])
               if candidate["skipped_starts"] else "; skips no scheduled start")))
        for reason in candidate["reasons"]:
            print("   %s" % reason)
        picture = candidate["timeline"]
        label = max(len(name) for name, _ in picture["lines"])
        print("   %s  %s" % (" " * label, picture["axis"]))
        for name, line in picture["lines"]:
            print("   %s  %s" % (name.ljust(label), line))
    return exitcodes.OK


def _say_default_runtime(names, settings, shown=10):
    """Name the scripts whose runtime is a guess (the default): no plan
    around them is better than that guess."""
    if names:
        print("planned with the default runtime, %s (too little history, nothing declared): "
              "%s%s" % (format_duration(settings.default_runtime), ", ".join(names[:shown]),
                        " and %d more" % (len(names) - shown) if len(names) > shown else ""))


def _rollout_duration(text):
    from cronpolicy.tooling.planning import MAX_ROLLOUT_DURATION
    seconds = positive_duration(text, "--duration")
    if seconds > MAX_ROLLOUT_DURATION:
        raise UsageError("--duration: a rollout of at most a day: %s" % text)
    return seconds
