"""`cronpolicy flush` and `prune`: the spool and old history; each a plain
``cmd_x(args, settings) -> int``."""

from cronpolicy import exitcodes
from cronpolicy.arguments import positive_int
from cronpolicy.errors import DatabaseError
from cronpolicy.timeutil import format_time, parse_duration


def add_arguments(parsers):
    """The parsers of flush and prune (see cli.CommandParsers)."""
    add = parsers.add
    add("flush", "cmd_flush")
    sub = add("prune", "cmd_prune")
    sub.add_argument("--older-than", required=True, metavar="D",
                     help="delete runs that started longer ago than this, like 90d")
    sub.add_argument("--batch", type=positive_int, default=5000,
                     help="rows per transaction (default 5000)")


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
        _say_rejected(spool)
    _say_written(written, settings)
    return exitcodes.OK


def _say_rejected(spool):
    """A line on standard error for each entry the database refused for its
    data (or that is no entry): moved to rejected/, not sent again."""
    from cronpolicy.fallback import rejected_lines
    from cronpolicy.tooling.output import warn
    for line in rejected_lines(spool):
        warn(line)


def _say_written(written, settings):
    print("wrote %d spooled run record%s to %s" % (written, "" if written == 1 else "s",
                                                 settings.masked_dsn))


def cmd_prune(args, settings):
    from cronpolicy.store.writes import Plain
    from cronpolicy.tooling import retention
    older_than = parse_duration(args.older_than)
    keep = settings.estimate_runs
    total, cutoff = retention.prune(Plain(settings), older_than, keep, batch=args.batch)
    print("deleted %d run%s that started before %s (kept every running one and the last %d "
          "succeeded runs of each script)" % (total, "" if total == 1 else "s",
                                              format_time(cutoff), keep))
    return exitcodes.OK
