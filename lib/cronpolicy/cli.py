"""The ``cronpolicy`` command: schema, status, policies, windows, deploys, history.

Each command is a plain function ``cmd_x(args, settings) -> int``; ``main``
parses the arguments, resolves the settings and turns every CronPolicyError
into one line on standard error and an exit code (2 for bad input, 4 when
the database or configuration cannot be used; see ``exitcodes``).  Read
commands take ``--json`` for tooling.
"""

import argparse
import datetime
import json
import sys

from cronpolicy import exitcodes
from cronpolicy.config import SQLITE, Settings
from cronpolicy.errors import CronPolicyError, UsageError
from cronpolicy.timeutil import format_duration, format_time, parse_duration


# Output ---------------------------------------------------------------------

def _jsonable(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    raise TypeError("cannot serialise %r" % (value,))


def print_json(data):
    print(json.dumps(data, default=_jsonable, indent=2, sort_keys=True))


def print_table(rows, columns):
    """rows: list of dicts; columns: [(heading, function(row) -> str)]."""
    cells = [[heading for heading, _ in columns]]
    cells += [[str(render(row)) for _, render in columns] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _quote(text):
    return text if text else "-"


# Commands -------------------------------------------------------------------

def _database(settings):
    from cronpolicy.database import Database
    return Database(settings)


def cmd_schema_upgrade(args, settings):
    from cronpolicy import schema, store
    if settings.backend == SQLITE:
        from cronpolicy.config import sqlite_path
        import sqlite3
        connection = store.connect_sqlite(sqlite_path(settings.dsn), settings.connect_timeout,
                                          create_directory=settings.dsn_source == "default")
        try:
            applied = schema.upgrade_sqlite(connection)
            version = schema.sqlite_version(connection)
        except sqlite3.Error as error:
            from cronpolicy.errors import DatabaseError
            raise DatabaseError("schema upgrade of %s failed: %s" % (settings.masked_dsn,
                                                                     error)) from error
        finally:
            connection.close()
    else:
        # No statement timeout: an index on a long history may take a while.
        connection = store.connect_postgres(settings.dsn, settings.connect_timeout,
                                            "cronpolicy-schema", settings.dsn_source,
                                            statement_timeout=False)
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
    from cronpolicy import schema, store
    if settings.backend == SQLITE:
        raise CronPolicyError("roles are a PostgreSQL feature; the SQLite database has one user")
    connection = store.connect_postgres(settings.dsn, settings.connect_timeout,
                                        "cronpolicy-schema", settings.dsn_source,
                                        statement_timeout=False)
    try:
        version = schema.postgres_version(connection)
        if version is None or version < schema.SCHEMA_VERSION:
            from cronpolicy.errors import SchemaError
            raise SchemaError(schema.needs_upgrade_message(version, settings.masked_dsn))
        schema.apply_roles(connection)
    finally:
        connection.close()
    print("roles cronpolicy_script, cronpolicy_rollout and cronpolicy_admin are in place "
          "with their rights in %s" % settings.masked_dsn)
    return exitcodes.OK


def _change_summary(entry):
    if entry["operation"] == "TRUNCATE":
        return "all rows removed"
    if entry["operation"] == "INSERT":
        row = entry["new_row"] or {}
        keys = [key for key in ("name", "host", "enabled", "deploy_pending", "starts_at",
                                "ends_at", "script") if key in row]
        return "new: " + ", ".join("%s=%s" % (key, row[key]) for key in keys)
    if entry["operation"] == "DELETE":
        row = entry["old_row"] or {}
        return "deleted: " + ", ".join("%s=%s" % (key, row[key]) for key in ("name", "host")
                                       if key in row)
    return ", ".join("%s %s -> %s" % (key, old, new)
                     for key, (old, new) in entry["changes"].items()) or "no change"


def cmd_audit(args, settings):
    from cronpolicy import audit
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
        ("CHANGE", _change_summary), ("REASON", lambda e: _quote(e["reason"]))])
    return exitcodes.OK


def cmd_why(args, settings):
    from cronpolicy import audit
    runs = audit.explain(_database(settings), args.name, limit=args.limit)
    if args.json:
        for run in runs:
            if run["cause"] is not None:
                run["cause"]["summary"] = _change_summary(run["cause"])
        print_json(runs)
        return exitcodes.OK
    if not runs:
        print("no runs of %s recorded" % args.name)
        return exitcodes.OK
    for run in runs:
        outcome = run["status"]
        reason = run["skip_reason"] if run["status"] == "skipped" else run["stop_reason"]
        print("%s on %s: %s%s" % (format_time(run["started_at"]), run["host"], outcome,
                                  ": " + reason if reason else ""))
        cause = run["cause"]
        if cause is not None:
            print("    caused by %s of %s #%s by %s at %s%s: %s" % (
                cause["operation"], cause["table_name"], cause["row_id"],
                cause["db_user"] or "-", format_time(cause["changed_at"]),
                " (%s)" % cause["reason"] if cause["reason"] else "", _change_summary(cause)))
    return exitcodes.OK


def _window_line(window):
    scope = "script %s on host %s" % (window["script"], window["host"])
    return "#%d %s to %s (%s), %s: %s" % (
        window["id"], format_time(window["starts_at"]), format_time(window["ends_at"]),
        window["state"], scope, _quote(window["reason"]))


def cmd_status(args, settings):
    from cronpolicy import rollout
    state = rollout.status(_database(settings))
    if args.json:
        print_json(state)
        return exitcodes.OK
    deploy = state["deploy"]
    print("database: %s (clock %s)" % (settings.masked_dsn, format_time(state["now"])))
    if deploy is None:
        print("deploy: deploy_state row missing (scripts treat this as deploy pending)")
    elif deploy["deploy_pending"]:
        print("deploy: PENDING since %s by %s: %s" % (
            format_time(deploy["changed_at"]), deploy["changed_by"] or "-", _quote(deploy["reason"])))
    else:
        print("deploy: not pending")
    for title, key in (("active windows", "active_windows"),
                       ("upcoming windows", "upcoming_windows")):
        print("%s: %s" % (title, len(state[key]) or "none"))
        for window in state[key]:
            print("  " + _window_line(window))
    print("disabled policies: %s" % (len(state["disabled_policies"]) or "none"))
    for row in state["disabled_policies"]:
        print("  #%d name %s host %s, by %s at %s: %s" % (
            row["id"], row["name"], row["host"], row["changed_by"] or "-",
            format_time(row["changed_at"]), _quote(row["reason"])))
    if state["exempt_policies"]:
        print("exempt from rollouts: %s" % ", ".join(
            "#%d %s@%s" % (row["id"], row["name"], row["host"]) for row in state["exempt_policies"]))
    print("running: %s" % (len(state["running"]) or "none"))
    if state["running"]:
        _run_table(state["running"], state["now"])
    return exitcodes.OK


def _policy_change(args, settings, enabled):
    from cronpolicy import policies
    row, created, still_disabling = policies.set_enabled(
        _database(settings), args.name, enabled, host=args.host, reason=args.reason)
    print("%s %s on host %s (policy #%d, %s)" % (
        "enabled" if enabled else "disabled", row["name"], row["host"], row["id"],
        "new row" if created else "updated row"))
    for other in still_disabling:
        print("warning: policy #%d (name %s, host %s) still disables it there%s" % (
            other.id, other.name, other.host, ": " + other.reason if other.reason else ""),
            file=sys.stderr)
    return exitcodes.OK


def cmd_disable(args, settings):
    return _policy_change(args, settings, False)


def cmd_enable(args, settings):
    return _policy_change(args, settings, True)


def cmd_window_add(args, settings):
    from cronpolicy import rollout
    duration = parse_duration(args.duration) if args.duration is not None else None
    window = rollout.add_window(_database(settings), args.start, end=args.end, duration=duration,
                                reason=args.reason, host=args.host, script=args.script)
    if args.json:
        print_json(window)
    else:
        print("added window " + _window_line(window))
    return exitcodes.OK


def cmd_window_list(args, settings):
    from cronpolicy import rollout
    now, windows = rollout.list_windows(_database(settings), include_all=args.all)
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
        ("REASON", lambda w: _quote(w["reason"]))])
    return exitcodes.OK


def cmd_window_cancel(args, settings):
    from cronpolicy import rollout
    window, already = rollout.cancel_window(_database(settings), args.id, reason=args.reason)
    if already:
        print("window #%d was already cancelled at %s" % (window["id"],
                                                           format_time(window["cancelled_at"])))
    else:
        print("cancelled window " + _window_line(window))
    return exitcodes.OK


def _deploy_change(settings, begin, reason=""):
    from cronpolicy import rollout
    db = _database(settings)
    before, after = rollout.deploy_begin(db, reason) if begin else rollout.deploy_end(db, reason)
    was = before is not None and before["deploy_pending"]
    if begin:
        print("deploy pending%s%s" % (": " + reason if reason else "",
                                      " (it already was)" if was else ""))
    else:
        print("deploy no longer pending%s" % ("" if was else " (it was not)"))
    return exitcodes.OK


def _run_table(runs, now):
    def finish(run):
        predicted = run["predicted_finish"]
        if predicted is None:
            return "-"
        left = (predicted - now).total_seconds()
        return "%s (%s)" % (format_time(predicted),
                            "in " + format_duration(left) if left >= 0
                            else format_duration(-left) + " overdue")
    print_table(runs, [
        ("SCRIPT", lambda r: r["name"]), ("HOST", lambda r: r["host"]),
        ("PID", lambda r: r["pid"] if r["pid"] is not None else "-"),
        ("RUNNING FOR", lambda r: format_duration(r["running_seconds"])),
        ("PREDICTED FINISH", finish),
        ("SAFE", lambda r: "yes" if r["safe_to_interrupt"] else "no")])


class _LiveTable:
    """deploy wait's progress: redrawn in place on a terminal, else a line per change."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.drawn_lines = 0
        self.last_key = None
        self.last_draw = 0.0

    def __call__(self, now, runs, waited):
        import io
        import time as _time
        key = tuple(sorted((run["id"], run["safe_to_interrupt"]) for run in runs))
        if self.tty:
            if key == self.last_key and _time.monotonic() - self.last_draw < 1.0:
                return
            buffer = io.StringIO()
            real_stdout, sys.stdout = sys.stdout, buffer
            try:
                print("waiting %s for %d run%s (database clock %s)" % (
                    format_duration(waited), len(runs), "" if len(runs) == 1 else "s",
                    format_time(now)))
                if runs:
                    _run_table(runs, now)
            finally:
                sys.stdout = real_stdout
            text = buffer.getvalue()
            if self.drawn_lines:
                self.stream.write("\x1b[%dF\x1b[J" % self.drawn_lines)
            self.stream.write(text)
            self.stream.flush()
            self.drawn_lines = text.count("\n")
            self.last_draw = _time.monotonic()
        elif key != self.last_key and runs:
            self.stream.write("waiting for %s\n" % ", ".join(
                "%s on %s (pid %s, %s)" % (run["name"], run["host"], run["pid"],
                                           "safe" if run["safe_to_interrupt"] else "not safe")
                for run in runs))
            self.stream.flush()
        self.last_key = key


def cmd_deploy_wait(args, settings):
    from cronpolicy import rollout
    timeout = parse_duration(args.timeout)
    db = _database(settings)
    progress = None if args.json else _LiveTable(sys.stdout)
    result = rollout.wait_until_quiet(db, timeout, host=args.host, on_progress=progress)
    if not result.stop_asked:
        print("warning: no deploy is pending and no window is active, so nothing asks "
              "scripts to stop (run `cronpolicy deploy begin` first)", file=sys.stderr)
    if args.json:
        print_json({"quiet": result.quiet, "waited_seconds": result.waited_seconds,
                    "host": args.host, "stop_asked": result.stop_asked,
                    "blockers": result.blockers})
    elif result.quiet:
        print("quiet after %s: no run on hosts %s is in the way" % (
            format_duration(result.waited_seconds), args.host))
    else:
        print("timed out after %s; still running:" % format_duration(result.waited_seconds))
        now = max(run["started_at"] + datetime.timedelta(seconds=run["running_seconds"])
                  for run in result.blockers)
        _run_table(result.blockers, now)
    return exitcodes.OK if result.quiet else exitcodes.WAIT_TIMEOUT


def cmd_deploy_plan(args, settings):
    from cronpolicy import rollout
    result = rollout.plan(_database(settings), settings, args.at, host=args.host,
                          script=args.script)
    if args.json:
        print_json(result)
        return exitcodes.OK
    now, at = result["now"], result["at"]
    print("a rollout at %s (in %s), hosts %s, scripts %s:" % (
        format_time(at), format_duration(max(0.0, (at - now).total_seconds())),
        result["host"], result["script"]))

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
    still = [run for run in result["running"] if run["running_at"]]
    done = [run for run in result["running"] if not run["running_at"]]
    print("running now and predicted to still run at %s: %s" % (
        format_time(at), len(still) or "none"))
    if still:
        _run_table(still, now)
    if done:
        print("running now and predicted to finish before it: %s" % ", ".join(
            "%s on %s" % (run["name"], run["host"]) for run in done))
    return exitcodes.OK


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
    finally:
        store.close()
    print("wrote %d spooled run record%s to %s" % (written, "" if written == 1 else "s",
                                                 settings.masked_dsn))
    return exitcodes.OK


def cmd_prune(args, settings):
    from cronpolicy import retention
    older_than = parse_duration(args.older_than)
    keep = settings.estimate_runs
    total, cutoff = retention.prune(_database(settings), older_than, keep, batch=args.batch)
    print("deleted %d run%s that started before %s (kept every running one and the last %d "
          "succeeded runs of each script)" % (total, "" if total == 1 else "s",
                                              format_time(cutoff), keep))
    return exitcodes.OK


def _read_input(path):
    if path in (None, "-"):
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except OSError as error:
        raise UsageError("cannot read %s: %s" % (path, error.strerror)) from None
    except UnicodeDecodeError:
        raise UsageError("%s is not UTF-8 text" % path) from None


def _default_program():
    import os
    import shutil
    if os.path.basename(sys.argv[0]) == "cronpolicy" and os.path.isabs(sys.argv[0]):
        return sys.argv[0]
    return shutil.which("cronpolicy") or "cronpolicy"


def cmd_crontab_wrap(args, settings):
    from cronpolicy import crontab
    sys.stdout.write(crontab.wrap(_read_input(args.file), program=args.program or
                                  _default_program(), system=args.system))
    return exitcodes.OK


def cmd_crontab_unwrap(args, settings):
    from cronpolicy import crontab
    sys.stdout.write(crontab.unwrap(_read_input(args.file), system=args.system))
    return exitcodes.OK


def cmd_overdue(args, settings):
    from cronpolicy import overdue
    now, reports = overdue.overdue_scripts(_database(settings), tolerance=args.tolerance,
                                           include_all=args.all)
    late = [report for report in reports if report["overdue"]]
    if args.json:
        print_json(reports)
    elif not reports:
        print("nothing overdue" if not args.all else "no script declares an expected interval")
    else:
        print_table(reports, [
            ("SCRIPT", lambda r: r["name"]),
            ("EVERY", lambda r: format_duration(r["expected_interval"])),
            ("LAST SUCCESS", lambda r: format_time(r["last_success"]) if r["last_success"]
             else "never"),
            ("OVERDUE", lambda r: "yes" if r["overdue"] else "no"),
            ("WHY", lambda r: "%s: %s" % (r["state"], r["detail"]))])
    return exitcodes.OVERDUE if late else exitcodes.OK


def cmd_metrics(args, settings):
    import os
    from cronpolicy import metrics
    text = metrics.render(_database(settings))
    if not args.output:
        sys.stdout.write(text)
        return exitcodes.OK
    temporary = "%s.%d.tmp" % (args.output, os.getpid())
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, args.output)
    except OSError as error:
        raise UsageError("cannot write %s: %s" % (args.output, error.strerror)) from None
    return exitcodes.OK


def cmd_deploy_begin(args, settings):
    return _deploy_change(settings, True, args.reason)


def cmd_deploy_end(args, settings):
    return _deploy_change(settings, False, args.reason)


def cmd_history(args, settings):
    from cronpolicy import history
    runs = history.recent_runs(_database(settings), args.name, args.limit)
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
        ("STATUS", lambda r: r["status"] + (" (forced)" if r["policy_ignored"] else "")),
        ("EXIT", lambda r: r["exit_code"] if r["exit_code"] is not None else "-"),
        ("REASON", lambda r: _quote(r["skip_reason"]))])
    return exitcodes.OK


def cmd_estimate(args, settings):
    from cronpolicy import history
    names = [args.name] if args.name else history.known_names(_database(settings))
    script_runtime = parse_duration(args.expected_runtime) if args.expected_runtime else None
    results = history.estimates(settings, names, args.host or settings.host, script_runtime)
    if args.json:
        print_json(results)
        return exitcodes.OK
    if not results:
        print("no scripts in the history yet")
        return exitcodes.OK
    print_table(results, [("SCRIPT", lambda r: r["name"]),
                          ("ESTIMATE", lambda r: format_duration(r["estimate_seconds"])),
                          ("FROM", lambda r: r["source"])])
    return exitcodes.OK


def cmd_check(args, settings):
    from cronpolicy.policy import decide_from_inputs
    from cronpolicy.store import open_store
    host = args.host or settings.host
    script_runtime = parse_duration(args.expected_runtime) if args.expected_runtime else None
    store = open_store(settings, application_name="cronpolicy-check")
    try:
        inputs = store.load_inputs(args.name, settings.estimate_runs)
    finally:
        store.close()
    decision = decide_from_inputs(
        inputs, args.name, host, script_runtime=script_runtime, q=settings.estimate_quantile,
        min_runs=settings.estimate_min_runs, default_runtime=settings.default_runtime,
        margin=settings.cutoff_margin)
    if args.json:
        print_json({"name": args.name, "host": host, "run": decision.run, "code": decision.code,
                    "reason": decision.reason, "now": inputs.now,
                    "estimate_seconds": decision.estimate.seconds,
                    "estimate_source": decision.estimate.source,
                    "policy_id": decision.policy.id if decision.policy else None,
                    "window_id": decision.window.id if decision.window else None})
    else:
        print("%s on %s: %s: %s" % (args.name, host, "run" if decision.run else "skip",
                                     decision.reason))
        print("estimated runtime: %s (%s)" % (format_duration(decision.estimate.seconds),
                                              decision.estimate.source))
    return exitcodes.OK if decision.run else exitcodes.WOULD_SKIP


# Parsing --------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line and exit code 2."""

    def error(self, message):
        self.exit(exitcodes.USAGE, "%s: error: %s (see --help)\n" % (self.prog, message))


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a whole number: %r" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1: %r" % text)
    return value


def build_parser():
    common = _Parser(add_help=False)
    common.add_argument("--dsn", default=argparse.SUPPRESS,
                        help="policy database (overrides CRONPOLICY_DSN and the config file)")
    reader = _Parser(add_help=False)
    reader.add_argument("--json", action="store_true", help="machine-readable output")

    parser = _Parser(prog="cronpolicy", parents=[common],
                     description="Policy gate for cron scripts: see README.txt.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def add(name, function, help_text, parents=(common,), subparsers=commands, prog=None):
        sub = subparsers.add_parser(name, parents=list(parents), help=help_text,
                                    description=help_text)
        sub.set_defaults(func=function)
        return sub

    schema = commands.add_parser("schema", help="manage the database schema")
    schema_commands = schema.add_subparsers(dest="schema_command", metavar="SUBCOMMAND",
                                            parser_class=_Parser)
    schema_commands.required = True
    add("upgrade", cmd_schema_upgrade, "apply the schema patches the database lacks",
        subparsers=schema_commands)
    add("roles", cmd_schema_roles, "create the cronpolicy_* group roles and grant their rights "
                                   "(PostgreSQL, as a superuser; idempotent)",
        subparsers=schema_commands)

    add("status", cmd_status,
        "deploy state, windows, disabled policies and running scripts", (common, reader))

    for name, function, help_text in (
            ("disable", cmd_disable, "skip a script (or a name pattern) from now on"),
            ("enable", cmd_enable, "let a script run again")):
        sub = add(name, function, help_text)
        sub.add_argument("name", help="script name or glob pattern (* and ?)")
        sub.add_argument("--host", default="*", help="host name or pattern (default: all hosts)")
        sub.add_argument("--reason", default="", help="why; shown in skip reasons and the audit")

    window = commands.add_parser("window", help="schedule and cancel rollout windows")
    window_commands = window.add_subparsers(dest="window_command", metavar="SUBCOMMAND",
                                            parser_class=_Parser)
    window_commands.required = True
    sub = add("add", cmd_window_add, "schedule a rollout window", (common, reader),
              subparsers=window_commands)
    sub.add_argument("--start", required=True,
                     help="ISO 8601 time (UTC unless an offset is given), now, or +10m")
    ends = sub.add_mutually_exclusive_group(required=True)
    ends.add_argument("--end", help="end time, like --start")
    ends.add_argument("--duration", help="length, like 45m or 2h")
    sub.add_argument("--reason", default="", help="what is being rolled out")
    sub.add_argument("--host", default="*", help="hosts covered (glob; default all)")
    sub.add_argument("--script", default="*", help="scripts covered (glob; default all)")
    sub = add("list", cmd_window_list, "list standing rollout windows", (common, reader),
              subparsers=window_commands)
    sub.add_argument("--all", action="store_true", help="include past and cancelled windows")
    sub = add("cancel", cmd_window_cancel, "cancel a rollout window", subparsers=window_commands)
    sub.add_argument("id", type=_positive_int, help="window id, as window list shows it")
    sub.add_argument("--reason", default="", help="why; recorded in the audit")

    deploy = commands.add_parser("deploy", help="the fleet-wide deploy switch")
    deploy_commands = deploy.add_subparsers(dest="deploy_command", metavar="SUBCOMMAND",
                                            parser_class=_Parser)
    deploy_commands.required = True
    sub = add("begin", cmd_deploy_begin, "set deploy pending: no script starts",
              subparsers=deploy_commands)
    sub.add_argument("--reason", default="", help="shown in every skip reason")
    sub = add("end", cmd_deploy_end, "clear deploy pending: policies apply again",
              subparsers=deploy_commands)
    sub.add_argument("--reason", default="", help="recorded in the audit")
    sub = add("wait", cmd_deploy_wait,
              "wait until no running script is in the way (exit 0), or time out (exit 7)",
              (common, reader), subparsers=deploy_commands)
    sub.add_argument("--timeout", default="30m", help="give up after this long (default 30m)")
    sub.add_argument("--host", default="*", help="only runs on these hosts (glob; default all)")
    sub = add("plan", cmd_deploy_plan,
              "what a rollout at --at would skip and find running, changing nothing",
              (common, reader), subparsers=deploy_commands)
    sub.add_argument("--at", required=True, help="when the rollout would start (ISO 8601 or +D)")
    sub.add_argument("--host", default="*", help="hosts it covers (glob; default all)")
    sub.add_argument("--script", default="*", help="scripts it covers (glob; default all)")

    sub = add("audit", cmd_audit, "who changed policies, windows and the deploy switch",
              (common, reader))
    sub.add_argument("--since", help="only changes since this time (ISO 8601, or now-1d)")
    sub.add_argument("--limit", type=_positive_int, default=100, help="at most this many (100)")
    sub.add_argument("--table", choices=("script_policy", "rollout_window", "deploy_state"))
    sub = add("why", cmd_why, "a script's last decisions, and the changes behind its skips",
              (common, reader))
    sub.add_argument("name", help="script name")
    sub.add_argument("--limit", type=_positive_int, default=10, help="how many runs (10)")

    crontab = commands.add_parser("crontab", help="move crontab lines behind cronpolicy, once")
    crontab_commands = crontab.add_subparsers(dest="crontab_command", metavar="SUBCOMMAND",
                                              parser_class=_Parser)
    crontab_commands.required = True
    for name, function, help_text in (
            ("wrap", cmd_crontab_wrap, "print the crontab with every job run through "
                                       "`cronpolicy run` (idempotent)"),
            ("unwrap", cmd_crontab_unwrap, "print the crontab as it was before wrap")):
        sub = add(name, function, help_text, subparsers=crontab_commands)
        sub.add_argument("file", nargs="?", default="-", help="crontab file (default: stdin)")
        sub.add_argument("--system", action="store_true",
                         help="system crontab format (/etc/crontab, /etc/cron.d): a user field")
        if name == "wrap":
            sub.add_argument("--program", help="path of cronpolicy to write into the lines "
                                               "(default: this one)")

    commands.add_parser(
        "run", add_help=False,
        help="run any command behind the gate: cronpolicy run NAME [options] -- COMMAND")

    sub = add("overdue", cmd_overdue, "scripts that have not succeeded within their expected "
                                      "interval (exit 8 when any)", (common, reader))
    sub.add_argument("--tolerance", type=float, default=1.5,
                     help="overdue after this many intervals without success (1.5)")
    sub.add_argument("--all", action="store_true", help="list every script with an interval")
    sub = add("metrics", cmd_metrics, "fleet metrics in the Prometheus text format")
    sub.add_argument("--output", metavar="FILE",
                     help="write them here atomically (for the textfile collector) "
                          "instead of standard output")

    add("flush", cmd_flush, "write the run records this host spooled while the database "
                            "was out of reach")
    sub = add("prune", cmd_prune, "delete old run history in batches (estimates keep theirs)")
    sub.add_argument("--older-than", required=True, metavar="D",
                     help="delete runs that started longer ago than this, like 90d")
    sub.add_argument("--batch", type=_positive_int, default=5000,
                     help="rows per transaction (default 5000)")

    sub = add("history", cmd_history, "recent runs, newest first", (common, reader))
    sub.add_argument("name", nargs="?", help="only this script")
    sub.add_argument("--limit", type=_positive_int, default=20, help="how many (default 20)")

    for name, function, help_text in (
            ("estimate", cmd_estimate, "runtime estimates, as the gate computes them"),
            ("check", cmd_check, "the decision for a script now, without running it "
                                 "(exit 0: would run, 5: would skip)")):
        sub = add(name, function, help_text, (common, reader))
        sub.add_argument("name", nargs="?" if name == "estimate" else None,
                         help="script name" + (" (default: every script in the history)"
                                               if name == "estimate" else ""))
        sub.add_argument("--host", help="decide as on this host (default: this host)")
        sub.add_argument("--expected-runtime", metavar="D",
                         help="the script's own expected_runtime, used with too little history")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "run":
        # Everything after `run NAME` belongs to the wrapped command's gate.
        from cronpolicy.command import run_command
        return run_command(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as error:
        return error.code if isinstance(error.code, int) else exitcodes.USAGE
    if not hasattr(args, "func"):   # `cronpolicy --dsn X run ...`
        print("cronpolicy: error: `run` must come first: cronpolicy run NAME [options] -- "
              "COMMAND (see --help)", file=sys.stderr)
        return exitcodes.USAGE
    try:
        settings = Settings.load(dsn=getattr(args, "dsn", None))
        return args.func(args, settings)
    except CronPolicyError as error:
        print("cronpolicy: error: %s" % str(error).replace("\n", " "), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("cronpolicy: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
