"""`cronpolicy history`, `estimate` and `check`: the runs recorded, the
estimates and the decision they make; each a plain ``cmd_x(args, settings) -> int``."""

from cronpolicy import exitcodes
from cronpolicy.arguments import positive_int, script_name
from cronpolicy.timeutil import format_duration, format_time, parse_duration
from cronpolicy.tooling.output import print_json, quote, release_name, schedule_text, show, warn


def add_arguments(parsers):
    """The parsers of history, estimate and check (see cli.CommandParsers)."""
    add, common, reader = parsers.add, parsers.common, parsers.reader
    sub = add("history", "cmd_history", parents=(common, reader))
    sub.add_argument("name", nargs="?", type=script_name, help="only this script")
    sub.add_argument("--limit", type=positive_int, default=20, help="how many (default 20)")

    for name, function in (("estimate", "cmd_estimate"), ("check", "cmd_check")):
        sub = add(name, function, parents=(common, reader))
        sub.add_argument("name", nargs="?" if name == "estimate" else None, type=script_name,
                         help="script name" + (" (default: every script in the history)"
                                               if name == "estimate" else ""))
        sub.add_argument("--host", help="decide as on this host (default: this host)")
        sub.add_argument("--expected-runtime", metavar="D",
                         help="the script's own expected_runtime, used with too little history")


def cmd_history(args, settings):
    from cronpolicy.tooling import history
    runs = history.recent_runs(settings, args.name, args.limit)
    show(args.json, runs, "runs",
         "no runs recorded%s" % (" for " + args.name if args.name else ""), _RUN_COLUMNS)
    return exitcodes.OK


#: history's table.
_RUN_COLUMNS = [
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
                               or r["policy_ignored"] else r.get("stop_reason")))]


def cmd_estimate(args, settings):
    from cronpolicy.tooling import history
    names = [args.name] if args.name else history.known_names(settings)
    script_runtime = parse_duration(args.expected_runtime) if args.expected_runtime else None
    results = history.estimates(settings, names, args.host or settings.host, script_runtime,
                                warn=warn)
    show(args.json, results, "estimates", "no scripts in the history yet", [
        ("SCRIPT", lambda r: r["name"]),
        ("ESTIMATE", lambda r: format_duration(r["estimate_seconds"])),
        ("FROM", lambda r: r["source"]), ("SCHEDULE", schedule_text),
        ("NEXT START", lambda r: format_time(r["next_start"]) if r["next_start"] else "-")])
    return exitcodes.OK


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
