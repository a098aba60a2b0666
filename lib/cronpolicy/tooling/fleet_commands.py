"""`cronpolicy status`, `disable` and `enable`: the fleet's state and its
policies; each a plain ``cmd_x(args, settings) -> int``."""

from cronpolicy import exitcodes
from cronpolicy.arguments import script_name
from cronpolicy.timeutil import format_duration, format_time
from cronpolicy.tooling.output import print_json, quote, run_table, warn, window_line


def add_arguments(parsers):
    """The parsers of status, disable and enable (see cli.CommandParsers)."""
    add, common, reader = parsers.add, parsers.common, parsers.reader
    add("status", "cmd_status", parents=(common, reader))

    for name, function in (("disable", "cmd_disable"), ("enable", "cmd_enable")):
        sub = add(name, function)
        sub.add_argument("name", type=script_name, help="script name or glob pattern (* and ?)")
        sub.add_argument("--host", default="*", help="host name or pattern (default: all hosts)")
        sub.add_argument("--reason", default="", help="why; shown in skip reasons and the audit")


def cmd_status(args, settings):
    from cronpolicy.tooling import fleet
    # (the text shows how many schedules there are and the first three:
    # status_of's brief form, not a row for each of a fleet's thousands)
    state = fleet.status(settings, warn=warn, brief=not args.json)
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
    count = state["scheduled_count"]
    print("scheduled: %s" % ("%d scripts; next: %s" % (count, ", ".join(
        "%s on %s at %s" % (row["name"], row["host"], format_time(row["next_start"]))
        for row in state["scheduled_next"] if row["next_start"])) if count else
        "none known (cronpolicy schedule import)"))
    return exitcodes.OK


def _policy_change(args, settings, enabled):
    from cronpolicy.store.writes import Plain
    from cronpolicy.tooling import policy_edits
    change = policy_edits.set_enabled(
        Plain(settings), args.name, enabled, host=args.host, reason=args.reason)
    if change.row is not None and change.action != "unchanged":
        print("%s %s on host %s (policy #%d, %s row)" % (
            "enabled" if enabled else "disabled", change.row["name"], change.row["host"],
            change.row["id"], "new" if change.action == "created" else "updated"))
    for note in change.notes:
        print(note)
    for warning in change.warnings:
        warn(warning)
    return exitcodes.OK


def cmd_disable(args, settings):
    return _policy_change(args, settings, False)


def cmd_enable(args, settings):
    return _policy_change(args, settings, True)
