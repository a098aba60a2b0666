"""`cronpolicy audit` and `cronpolicy why`: who changed what, and the changes
behind a script's skips; each a plain ``cmd_x(args, settings) -> int``."""

from cronpolicy import exitcodes
from cronpolicy.arguments import positive_int, script_name
from cronpolicy.timeutil import format_time
from cronpolicy.tooling.output import change_summary, quote, schedule_text, show, warn


def add_arguments(parsers):
    """The parsers of audit and why (see cli.CommandParsers)."""
    add, common, reader = parsers.add, parsers.common, parsers.reader
    sub = add("audit", "cmd_audit", parents=(common, reader))
    sub.add_argument("--since", help="only changes since this time (ISO 8601, or now-1d)")
    sub.add_argument("--limit", type=positive_int, default=100, help="at most this many (100)")
    sub.add_argument("--table", choices=("script_policy", "rollout_window", "deploy_state",
                                         "script_owner", "host_login", "service_deploy",
                                         "rollout"))
    sub = add("why", "cmd_why", parents=(common, reader))
    sub.add_argument("name", type=script_name, help="script name")
    sub.add_argument("--limit", type=positive_int, default=10, help="how many runs (10)")


def cmd_audit(args, settings):
    from cronpolicy.store.reads import reading
    from cronpolicy.tooling import audit
    audit.check(args.since, args.limit)
    with reading(settings, "read the audit") as reader:
        entries = audit.entries(reader, since=args.since, limit=args.limit, table=args.table)
    show(args.json, entries, "changes",
         "no changes recorded%s" % (" since " + args.since if args.since else ""), [
             ("WHEN", lambda e: format_time(e["changed_at"])),
             ("USER", lambda e: e["db_user"] or "-"),
             ("TABLE", lambda e: e["table_name"]), ("OP", lambda e: e["operation"]),
             ("ROW", lambda e: e["row_id"] if e["row_id"] is not None else "-"),
             ("CHANGE", change_summary), ("REASON", lambda e: quote(e["reason"]))])
    return exitcodes.OK


def cmd_why(args, settings):
    from cronpolicy.tooling.explain import explain
    runs = explain(settings, args.name, limit=args.limit, warn=warn)
    if args.json:
        for run in runs:
            if run["cause"] is not None:
                run["cause"]["summary"] = change_summary(run["cause"])
    show(args.json, runs, "runs", "no runs of %s recorded" % args.name, _say_why)
    return exitcodes.OK


def _say_why(runs):
    for host in sorted({run["host"] for run in runs}):
        run = next(run for run in runs if run["host"] == host)
        print("schedule on %s: %s" % (host, "%s, from %s; next start %s" % (
            schedule_text(run), run["schedule_origin"], format_time(run["next_start"])
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
