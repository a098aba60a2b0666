"""`cronpolicy window add|list|cancel`: each a plain ``cmd_x(args, settings) -> int``."""

from cronpolicy import exitcodes
from cronpolicy.arguments import database_id, script_name, service_name
from cronpolicy.timeutil import format_time, parse_duration
from cronpolicy.tooling.output import print_json, quote, show, window_line


def add_arguments(parsers):
    """The parsers of window add, list and cancel (see cli.CommandParsers)."""
    add, group, common, reader = parsers.add, parsers.group, parsers.common, parsers.reader
    window_commands = group("window", "window_command")
    sub = add("add", "cmd_window_add", "schedule a rollout window", (common, reader),
              subparsers=window_commands)
    sub.add_argument("--start", required=True,
                     help="ISO 8601 time (UTC unless an offset is given), now, or +10m")
    ends = sub.add_mutually_exclusive_group(required=True)
    ends.add_argument("--end", help="end time, like --start")
    ends.add_argument("--duration", help="length, like 45m or 2h")
    sub.add_argument("--reason", default="", help="what is being rolled out")
    sub.add_argument("--host", default="*", help="hosts covered (glob; default all)")
    sub.add_argument("--script", default="*", type=script_name,
                     help="scripts covered (glob; default all)")
    sub.add_argument("--service", type=service_name,
                     help="a window of this service: it covers only scripts that need it")
    sub = add("list", "cmd_window_list", "list standing rollout windows", (common, reader),
              subparsers=window_commands)
    sub.add_argument("--all", action="store_true", help="include past and cancelled windows")
    sub = add("cancel", "cmd_window_cancel", "cancel a rollout window", subparsers=window_commands)
    sub.add_argument("id", type=database_id, help="window id, as window list shows it")
    sub.add_argument("--reason", default="", help="why; recorded in the audit")


def cmd_window_add(args, settings):
    from cronpolicy.store.writes import Plain
    from cronpolicy.tooling import windows
    duration = parse_duration(args.duration) if args.duration is not None else None
    window = windows.add_window(Plain(settings), args.start, end=args.end, duration=duration,
                                reason=args.reason, host=args.host, script=args.script,
                                service=args.service)
    if args.json:
        print_json(window)
    else:
        print("added window " + window_line(window))
    return exitcodes.OK


def cmd_window_list(args, settings):
    from cronpolicy.store.reads import reading
    from cronpolicy.tooling.windows import listed
    with reading(settings, "list rollout windows") as reader:
        _, windows = listed(reader, include_all=args.all)
    show(args.json, windows, "windows",
         "no %srollout windows" % ("" if args.all else "standing "), [
             ("ID", lambda w: w["id"]), ("STATE", lambda w: w["state"]),
             ("STARTS", lambda w: format_time(w["starts_at"])),
             ("ENDS", lambda w: format_time(w["ends_at"])),
             ("HOSTS", lambda w: w["host"]), ("SCRIPTS", lambda w: w["script"]),
             ("REASON", lambda w: quote(w["reason"]))])
    return exitcodes.OK


def cmd_window_cancel(args, settings):
    from cronpolicy.store.writes import Plain
    from cronpolicy.tooling.windows import cancel_window
    window, already = cancel_window(Plain(settings), args.id, reason=args.reason)
    if already:
        print("window #%d was already cancelled at %s" % (window["id"],
                                                           format_time(window["cancelled_at"])))
    else:
        print("cancelled window " + window_line(window))
    return exitcodes.OK
