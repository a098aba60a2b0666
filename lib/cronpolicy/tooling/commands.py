"""The cronpolicy commands: each a plain function ``cmd_x(args, settings) -> int``.

They move data between the command line and the API modules of this package
(and ``cronpolicy.policy`` for decisions); ``cli.main`` turns any
CronPolicyError they raise into one line and an exit code.
"""

import datetime
import os
import sys

from cronpolicy import exitcodes
from cronpolicy.config import SQLITE
from cronpolicy.errors import CronPolicyError, DatabaseError, SchemaError, UsageError
from cronpolicy.timeutil import format_duration, format_time, parse_duration, positive_duration
from cronpolicy.tooling.output import (
    LiveTable, change_summary, print_json, print_table, quote, release_name, run_table,
    window_line)


def _database(settings):
    from cronpolicy.tooling.database import Database
    return Database(settings)


def _schema_connection(settings):
    """A plain psycopg2 connection without a statement timeout: an index on a
    long history may take a while."""
    from cronpolicy.store import pgdriver
    return pgdriver.connect(settings.dsn, settings.connect_timeout, "cronpolicy-schema",
                            settings.dsn_source, statement_timeout=False,
                            network=settings.network)


def cmd_schema_upgrade(args, settings):
    from cronpolicy import schema
    from cronpolicy.store.pgdriver import translating
    with translating("upgrade the schema", settings.dsn):
        if settings.backend == SQLITE:
            from cronpolicy.config import sqlite_path
            from cronpolicy.store.sqlite import connect_sqlite
            connection = connect_sqlite(sqlite_path(settings.dsn), settings.connect_timeout,
                                        create_directory=settings.dsn_source == "default")
            try:
                applied = schema.upgrade_sqlite(connection)
                version = schema.sqlite_version(connection)
            finally:
                connection.close()
        else:
            connection = _schema_connection(settings)
            try:
                applied = schema.upgrade_postgres(connection)
                version = schema.postgres_version(connection)
            finally:
                connection.close()
    for filename in applied:
        print("applied %s" % filename)
    print("schema of %s is at version %d%s" % (
        settings.masked_dsn, version, "" if applied else " (already up to date)"))
    return exitcodes.OK


def cmd_schema_roles(args, settings):
    from cronpolicy import schema
    if settings.backend == SQLITE:
        raise CronPolicyError("roles are a PostgreSQL feature; the SQLite database has one user")
    from cronpolicy.store.pgdriver import translating
    connection = _schema_connection(settings)
    try:
        with translating("read the schema version", settings.dsn):
            version = schema.postgres_version(connection)
        if version is None or version < schema.SCHEMA_VERSION:
            raise SchemaError(schema.needs_upgrade_message(version, settings.masked_dsn))
        schema.apply_roles(connection)
    finally:
        connection.close()
    print("roles cronpolicy_script, cronpolicy_rollout and cronpolicy_admin are in place "
          "with their rights in %s" % settings.masked_dsn)
    return exitcodes.OK


def cmd_audit(args, settings):
    from cronpolicy.tooling import audit
    entries = audit.changes(_database(settings), since=args.since, limit=args.limit,
                            table=args.table)
    if args.json:
        print_json(entries)
        return exitcodes.OK
    if not entries:
        print("no changes recorded%s" % (" since " + args.since if args.since else ""))
        return exitcodes.OK
    print_table(entries, [
        ("WHEN", lambda e: format_time(e["changed_at"])), ("USER", lambda e: e["db_user"] or "-"),
        ("TABLE", lambda e: e["table_name"]), ("OP", lambda e: e["operation"]),
        ("ROW", lambda e: e["row_id"] if e["row_id"] is not None else "-"),
        ("CHANGE", change_summary), ("REASON", lambda e: quote(e["reason"]))])
    return exitcodes.OK


def cmd_why(args, settings):
    from cronpolicy.tooling.explain import explain
    runs = explain(settings, args.name, limit=args.limit, warn=_warn)
    if args.json:
        for run in runs:
            if run["cause"] is not None:
                run["cause"]["summary"] = change_summary(run["cause"])
        print_json(runs)
        return exitcodes.OK
    if not runs:
        print("no runs of %s recorded" % args.name)
        return exitcodes.OK
    for host in sorted({run["host"] for run in runs}):
        run = next(run for run in runs if run["host"] == host)
        print("schedule on %s: %s" % (host, "%s, from %s; next start %s" % (
            _schedule_text(run), run["schedule_origin"], format_time(run["next_start"])
            if run["next_start"] else "none") if run["schedule"] else "none known"))
    for run in runs:
        outcome = run["status"]
        reason = run["skip_reason"] if run["status"] == "skipped" else run["stop_reason"]
        if run.get("policy_ignored") and run["status"] != "skipped":
            outcome += " (forced with --ignore-policy%s)" % (
                "; the policy said: " + run["skip_reason"] if run["skip_reason"] else "")
        print("%s on %s: %s%s" % (format_time(run["started_at"]), run["host"], outcome,
                                  ": " + reason if reason else ""))
        cause = run["cause"]
        if cause is not None:
            print("    caused by %s of %s #%s by %s at %s%s: %s" % (
                cause["operation"], cause["table_name"], cause["row_id"],
                cause["db_user"] or "-", format_time(cause["changed_at"]),
                " (%s)" % cause["reason"] if cause["reason"] else "", change_summary(cause)))
    return exitcodes.OK


def cmd_status(args, settings):
    from cronpolicy.tooling import fleet
    state = fleet.status(settings, warn=_warn)
    if args.json:
        print_json(state)
        return exitcodes.OK
    from cronpolicy.tooling.rollouts import summary
    deploy = state["deploy"]
    print("database: %s (clock %s)" % (settings.masked_dsn, format_time(state["now"])))
    print("rollouts open: %s" % (len(state["rollouts"]) or "none"))
    for row in state["rollouts"]:
        print("  %s, open %s" % (summary(row), format_duration(row["open_seconds"])))
        if row["problem"]:
            print("    ! %s" % row["problem"])
    covered = {service for row in state["rollouts"] for service in row["services"]}
    if deploy is None:
        print("deploy: deploy_state row missing (scripts treat this as deploy pending)")
    elif deploy["deploy_pending"] and not any(row["kind"] == "full" for row in state["rollouts"]):
        print("deploy: PENDING since %s by %s: %s (the switch, with no rollout open)" % (
            format_time(deploy["changed_at"]), deploy["changed_by"] or "-",
            quote(deploy["reason"])))
    for row in state["services"]:
        if row["service"] not in covered:
            print("deploy of %s: PENDING since %s by %s: %s (the switch, with no rollout open)"
                  % (row["service"], format_time(row["changed_at"]), row["changed_by"] or "-",
                     quote(row["reason"])))
    for title, key in (("active windows", "active_windows"),
                       ("upcoming windows", "upcoming_windows")):
        print("%s: %s" % (title, len(state[key]) or "none"))
        for window in state[key]:
            print("  " + window_line(window))
    print("disabled policies: %s" % (len(state["disabled_policies"]) or "none"))
    for row in state["disabled_policies"]:
        print("  #%d name %s host %s, by %s at %s: %s" % (
            row["id"], row["name"], row["host"], row["changed_by"] or "-",
            format_time(row["changed_at"]), quote(row["reason"])))
    if state["exempt_policies"]:
        print("exempt from rollouts: %s" % ", ".join(
            "#%d %s@%s" % (row["id"], row["name"], row["host"]) for row in state["exempt_policies"]))
    print("running: %s" % (len(state["running"]) or "none"))
    if state["running"]:
        run_table(state["running"], state["now"])
    scheduled = state["scheduled"]
    print("scheduled: %s" % ("%d scripts; next: %s" % (len(scheduled), ", ".join(
        "%s on %s at %s" % (row["name"], row["host"], format_time(row["next_start"]))
        for row in scheduled[:3] if row["next_start"])) if scheduled else
        "none known (cronpolicy schedule import)"))
    return exitcodes.OK


def _warn(message):
    print("cronpolicy: warning: %s" % message, file=sys.stderr)


def _policy_change(args, settings, enabled):
    from cronpolicy.tooling import policy_edits
    change = policy_edits.set_enabled(
        _database(settings), args.name, enabled, host=args.host, reason=args.reason)
    if change.row is not None and change.action != "unchanged":
        print("%s %s on host %s (policy #%d, %s row)" % (
            "enabled" if enabled else "disabled", change.row["name"], change.row["host"],
            change.row["id"], "new" if change.action == "created" else "updated"))
    for note in change.notes:
        print(note)
    for warning in change.warnings:
        print("warning: " + warning, file=sys.stderr)
    return exitcodes.OK


def cmd_disable(args, settings):
    return _policy_change(args, settings, False)


def cmd_enable(args, settings):
    return _policy_change(args, settings, True)


def cmd_window_add(args, settings):
    from cronpolicy.tooling import windows
    duration = parse_duration(args.duration) if args.duration is not None else None
    window = windows.add_window(_database(settings), args.start, end=args.end, duration=duration,
                                reason=args.reason, host=args.host, script=args.script,
                                service=args.service)
    if args.json:
        print_json(window)
    else:
        print("added window " + window_line(window))
    return exitcodes.OK


def cmd_window_list(args, settings):
    from cronpolicy.tooling.windows import list_windows
    now, windows = list_windows(_database(settings), include_all=args.all)
    if args.json:
        print_json(windows)
        return exitcodes.OK
    if not windows:
        print("no %srollout windows" % ("" if args.all else "standing "))
        return exitcodes.OK
    print_table(windows, [
        ("ID", lambda w: w["id"]), ("STATE", lambda w: w["state"]),
        ("STARTS", lambda w: format_time(w["starts_at"])),
        ("ENDS", lambda w: format_time(w["ends_at"])),
        ("HOSTS", lambda w: w["host"]), ("SCRIPTS", lambda w: w["script"]),
        ("REASON", lambda w: quote(w["reason"]))])
    return exitcodes.OK


def cmd_window_cancel(args, settings):
    from cronpolicy.tooling.windows import cancel_window
    window, already = cancel_window(_database(settings), args.id, reason=args.reason)
    if already:
        print("window #%d was already cancelled at %s" % (window["id"],
                                                           format_time(window["cancelled_at"])))
    else:
        print("cancelled window " + window_line(window))
    return exitcodes.OK


def cmd_deploy_begin(args, settings):
    from cronpolicy.tooling import deploy
    from cronpolicy.tooling.rollouts import summary
    expect = positive_duration(args.expect, "--expect") if args.expect else None
    services = sorted(set(args.service or ()))
    row, others = deploy.begin(_database(settings), services=services, reason=args.reason,
                               expect=expect, owner_host=settings.host)
    found = _described(row, settings)
    if args.json:
        print_json(dict(found, others=[_described(other, settings) for other in others]))
    else:
        print("rollout #%d began: %s%s" % (
            found["id"], "every script stops starting" if not services else
            "the scripts that need %s stop starting" % " or ".join(services),
            ": " + args.reason if args.reason else ""))
        for other in others:
            print("also open: " + summary(_described(other, settings)))
    _warn_starving(settings, services)
    return exitcodes.OK


def _described(row, settings):
    """A rollout row (a dict of its columns) as the commands show it."""
    from cronpolicy.rows import Rollout, from_mapping
    from cronpolicy.tooling.rollouts import describe
    rollout = from_mapping(Rollout, row)
    return describe(rollout, rollout.ended_at or rollout.began_at,
                    settings.default_rollout_expect)


def cmd_deploy_end(args, settings):
    from cronpolicy.tooling import deploy
    from cronpolicy.tooling.rollouts import summary
    db = _database(settings)
    if args.id is not None:
        if args.all or args.service:
            raise UsageError("give a rollout id, or --all, or --service, not several")
        row, ended = deploy.end(db, args.id, args.reason)
        found = _described(row, settings)
        if ended:
            print("rollout #%d ended after %s" % (found["id"],
                                                  format_duration(found["open_seconds"])))
        else:
            print("rollout #%d had ended already, at %s by %s" % (
                found["id"], format_time(found["ended_at"]), found["ended_by"] or "-"))
    else:
        rows = deploy.end_open(db, service=args.service, every=args.all, reason=args.reason)
        if not rows:
            print("no rollout%s is open" % (" of " + args.service if args.service else ""))
        for row in rows:
            found = _described(row, settings)
            print("rollout #%d ended after %s: %s" % (
                found["id"], format_duration(found["open_seconds"]), summary(found)))
    for other in deploy.open_rollouts(db):
        print("still open: " + summary(_described(other, settings)))
    return exitcodes.OK


def _warn_starving(settings, services=()):
    """Say which scripts this rollout (of ``services``; all: full) skips
    once more after the rollouts before it (starvation:
    planning.STARVING_AFTER in a row)."""
    from cronpolicy import policy
    from cronpolicy.tooling import planning
    from cronpolicy.tooling.rollout_plans import gather
    for job in gather(settings, warn=_warn).jobs:
        if job.starving + 1 >= planning.STARVING_AFTER and job.schedule is not None and \
                not policy.rollout_exempt(job.inputs.policies, job.name, job.host) and (
                    not services or set(services) & set(
                        policy.effective_needs(job.inputs, job))):
            _warn("%s on %s was skipped by the last %d rollouts in a row, and this one skips it "
                  "too" % (job.name, job.host, job.starving))


def cmd_deploy_wait(args, settings):
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
    db = _database(settings)
    progress = None if args.json else LiveTable(sys.stdout)
    result = deploy.wait_until_quiet(db, timeout, host=args.host, on_progress=progress,
                                     service=args.service, release_not=release_not,
                                     rollout_id=args.id)
    if not result.stop_asked:
        print("warning: no rollout is open and no window is active, so nothing asks "
              "scripts to stop (run `cronpolicy deploy begin` first)", file=sys.stderr)
    if args.json:
        print_json({"quiet": result.quiet, "waited_seconds": result.waited_seconds,
                    "rollout": args.id, "host": args.host, "service": args.service,
                    "release_not": release_not, "stop_asked": result.stop_asked,
                    "blockers": result.blockers, "ended_meanwhile": result.ended_meanwhile})
    elif result.ended_meanwhile:
        print("rollout #%d was ended after %s, before the fleet was quiet for it: its "
              "scripts start again (cronpolicy rollouts)" % (
                  args.id, format_duration(result.waited_seconds)), file=sys.stderr)
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
                  service=args.service, warn=_warn)
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
        _warn("%s on %s would be skipped by %d rollouts in a row" % (
            row["name"], row["host"], row["rollouts_in_a_row"]))
    return exitcodes.OK


def cmd_deploy_slot(args, settings):
    from cronpolicy.tooling.rollout_plans import slots
    duration = _rollout_duration(args.duration)
    within = positive_duration(args.within, "--within")
    result = slots(settings, duration, within, host=args.host, script=args.script,
                   service=args.service, count=args.count, warn=_warn)
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


def cmd_flush(args, settings):
    from cronpolicy.spool import Spool
    from cronpolicy.store import open_store
    spool = Spool(settings.spool_dir)
    pending = len(spool)
    if not pending:
        print("nothing spooled in %s" % settings.spool_dir)
        return exitcodes.OK
    store = open_store(settings, application_name="cronpolicy-flush")
    try:
        written = spool.flush(store)
    except DatabaseError as error:
        if not error.denied:
            raise
        written = error.written     # the others went through; the error is the exit
        _say_written(written, settings)
        raise
    finally:
        store.close()
    _say_written(written, settings)
    return exitcodes.OK


def _say_written(written, settings):
    print("wrote %d spooled run record%s to %s" % (written, "" if written == 1 else "s",
                                                 settings.masked_dsn))


def cmd_prune(args, settings):
    from cronpolicy.tooling import retention
    older_than = parse_duration(args.older_than)
    keep = settings.estimate_runs
    total, cutoff = retention.prune(_database(settings), older_than, keep, batch=args.batch)
    print("deleted %d run%s that started before %s (kept every running one and the last %d "
          "succeeded runs of each script)" % (total, "" if total == 1 else "s",
                                              format_time(cutoff), keep))
    return exitcodes.OK


def cmd_overdue(args, settings):
    from cronpolicy.store.reads import reading
    from cronpolicy.tooling import overdue
    from cronpolicy.tooling.rollouts import open_problems, summary
    now, reports = overdue.overdue_scripts(settings, tolerance=args.tolerance,
                                           include_all=args.all)
    _, scheduled = overdue.scheduled_reports(
        settings, grace=positive_duration(args.grace, "--grace"), starving_after=args.starving,
        include_all=args.all, warn=_warn)
    with reading(settings, "read the open rollouts") as reader:
        _, stuck = open_problems(reader, settings)
    late = [report for report in reports + scheduled
            if report["overdue"] or report.get("starving")] + stuck
    if args.json:
        print_json(reports + scheduled + [
            {"name": "rollout #%d" % found["id"], "rollout": found["id"], "overdue": True,
             "owner_lost": found["owner_lost"], "state": "rollout", "detail": problem,
             "began_at": found["began_at"], "owner": found["owner"]}
            for found, problem in stuck])
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
            ("SCHEDULE", _schedule_text),
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
        return metrics.render(_database(settings), warn=_warn, host=args.host, scope=scope)

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


def cmd_history(args, settings):
    from cronpolicy.tooling import history
    runs = history.recent_runs(settings, args.name, args.limit)
    if args.json:
        print_json(runs)
        return exitcodes.OK
    if not runs:
        print("no runs recorded%s" % (" for " + args.name if args.name else ""))
        return exitcodes.OK
    print_table(runs, [
        ("RUN", lambda r: r["id"]), ("SCRIPT", lambda r: r["name"]), ("HOST", lambda r: r["host"]),
        ("PID", lambda r: r["pid"] if r["pid"] is not None else "-"),
        ("STARTED", lambda r: format_time(r["started_at"])),
        ("DURATION", lambda r: format_duration(r["duration_seconds"])),
        # spooled: written late with the host's times (clamped to the database clock).
        ("STATUS", lambda r: r["status"] + (" (forced)" if r["policy_ignored"] else "")
         + (" (spooled)" if r.get("spooled") else "")),
        ("EXIT", lambda r: r["exit_code"] if r["exit_code"] is not None else "-"),
        ("RELEASE", lambda r: release_name(r.get("release"))),
        # A skip's reason, or why a run was interrupted or abandoned.
        ("REASON", lambda r: quote(r["skip_reason"] if r["status"] == "skipped"
                                   or r["policy_ignored"] else r.get("stop_reason")))])
    return exitcodes.OK


def cmd_estimate(args, settings):
    from cronpolicy.tooling import history
    names = [args.name] if args.name else history.known_names(settings)
    script_runtime = parse_duration(args.expected_runtime) if args.expected_runtime else None
    results = history.estimates(settings, names, args.host or settings.host, script_runtime,
                                warn=_warn)
    if args.json:
        print_json(results)
        return exitcodes.OK
    if not results:
        print("no scripts in the history yet")
        return exitcodes.OK
    print_table(results, [("SCRIPT", lambda r: r["name"]),
                          ("ESTIMATE", lambda r: format_duration(r["estimate_seconds"])),
                          ("FROM", lambda r: r["source"]),
                          ("SCHEDULE", _schedule_text),
                          ("NEXT START", lambda r: format_time(r["next_start"])
                           if r["next_start"] else "-")])
    return exitcodes.OK


def _schedule_text(row):
    if not row["schedule"]:
        return "-"
    return "%s (%s)" % (row["schedule"], row["schedule_tz"] or "UTC")


def cmd_check(args, settings):
    from cronpolicy import policy
    from cronpolicy.store import open_store
    host = args.host or settings.host
    script_runtime = parse_duration(args.expected_runtime) if args.expected_runtime else None
    store = open_store(settings, application_name="cronpolicy-check")
    try:
        inputs = store.load_inputs(args.name, settings.estimate_runs)
    finally:
        store.close()
    verdict = policy.decide(inputs, policy.ScriptFacts(args.name, host, script_runtime), settings)
    if args.json:
        print_json({"name": args.name, "host": host, "run": verdict.run, "code": verdict.code,
                    "reason": verdict.reason, "now": inputs.now,
                    "estimate_seconds": verdict.estimate.seconds,
                    "estimate_source": verdict.estimate.source,
                    "policy_id": verdict.policy_id, "window_id": verdict.window_id,
                    "interruptible": verdict.interruptible,
                    "max_concurrent": verdict.max_concurrent})
    else:
        print("%s on %s: %s: %s" % (args.name, host, "run" if verdict.run else "skip",
                                     verdict.reason))
        print("estimated runtime: %s (%s)" % (format_duration(verdict.estimate.seconds),
                                              verdict.estimate.source))
    return exitcodes.OK if verdict.run else exitcodes.WOULD_SKIP
