"""Rollouts as the operator reads them: the open ones and the past, and what each cost.

`cronpolicy rollouts` lists them, newest first; `status`, `overdue` and
`metrics` ask ``describe`` about the open ones.  A read command: no
SQLAlchemy (store.reads).

What is said of a rollout, on the database clock:

* ``owner_lost``: its owner keeps a lease (a `deploy run` renews one while
  it lives) and the lease ran out while the rollout is open: the process
  that would end it is gone (kill -9, a lost host).  The rollout stays
  open, the safe direction, until someone ends it;
* ``overdue``: open longer than it was expected to be (`--expect`; when it
  was begun without, the setting default_rollout_expect, 1h);
* ``stall_seconds``: from its beginning until a `deploy wait` first saw no
  run in its way (quiet_at), what the fleet waited before the deploy;
* ``skipped_starts``, ``interrupted``: the starts it skipped and the runs
  it interrupted (each run records the rollout behind its skip or stop);
* ``awaited``: the runs it waited for, as `deploy wait` saw them, each
  with how long it held the rollout: from the rollout's beginning (or the
  run's start, if later) until it was last seen in its way.
"""

from cronpolicy import exitcodes, policy
from cronpolicy.arguments import positive_int
from cronpolicy.store.reads import reading
from cronpolicy.timeutil import format_duration, format_time
from cronpolicy.tooling.output import quote


def describe(rollout, now, default_expect):
    """A Rollout row as the commands show it (a dict), as of ``now``."""
    found = rollout._asdict()
    found["services"] = list(policy.rollout_services(rollout))
    is_open = rollout.ended_at is None
    found["state"] = "open" if is_open else "ended"
    found["open_seconds"] = max(0.0, ((rollout.ended_at or now) - rollout.began_at)
                                .total_seconds())
    found["expected_seconds"] = found.pop("expected_duration")
    found["owner_lost"] = bool(is_open and rollout.lease_expires_at is not None
                               and rollout.lease_expires_at < now)
    found["overdue"] = bool(is_open and found["open_seconds"] > (
        rollout.expected_duration or default_expect))
    found["stall_seconds"] = (max(0.0, (rollout.quiet_at - rollout.began_at).total_seconds())
                              if rollout.quiet_at is not None else None)
    return found


def problem(found, now):
    """Why an open rollout needs someone ("owner lost: ...", "overdue: ..."), or None."""
    said = []
    if found["owner_lost"]:
        said.append("owner lost: %s%s, its lease ran out at %s" % (
            "the process" if found["owner_pid"] is None else "pid %d" % found["owner_pid"],
            " on %s" % quote(found["owner_host"]) if found["owner_host"] else "",
            format_time(found["lease_expires_at"])))
    if found["overdue"]:
        expected = found["expected_seconds"]
        said.append("overdue: open %s, %s" % (
            format_duration(found["open_seconds"]),
            "expected %s" % format_duration(expected) if expected else
            "begun with no --expect (default_rollout_expect)"))
    return "; ".join(said) or None


def summary(found):
    """"#12 full by alice since T: 'release 4521'", for one line."""
    return "#%d %s by %s since %s: %s" % (
        found["id"], kind_text(found), quote(found["owner"]), format_time(found["began_at"]),
        quote(found["reason"]))


def kind_text(found):
    return "full" if found["kind"] == policy.FULL else "of %s" % ", ".join(found["services"])


def open_problems(reader, settings):
    """(now, [(described open rollout, its problem)]) of the open rollouts
    that need someone: owner lost or overdue."""
    now = reader.now()
    found = [describe(row, now, settings.default_rollout_expect)
             for row in reader.open_rollouts()]
    return now, [(row, problem(row, now)) for row in found if problem(row, now)]


def recorded(settings, limit=20):
    """(now, the newest ``limit`` rollouts, and the oldest ``limit`` open
    ones however old, described, newest first, each with what it cost)."""
    with reading(settings, "read the rollouts") as reader:
        now = reader.now()
        rows = reader.rollouts(limit)
        costs = reader.rollout_costs([row.id for row in rows])
    found = []
    for row in rows:
        skipped, interrupted, awaited = costs[row.id]
        described = describe(row, now, settings.default_rollout_expect)
        described.update(
            skipped_starts=skipped, interrupted=interrupted, problem=problem(described, now),
            awaited=[{"run_id": run["run_id"], "name": run["name"], "host": run["host"],
                      "first_seen_at": run["first_seen_at"],
                      "last_seen_at": run["last_seen_at"],
                      "seconds": _held(row, run)}
                     for run in awaited])
        found.append(described)
    return now, found


def _held(rollout, run):
    """How long ``rollout`` waited for ``run`` (a rollout_awaited row): from
    the rollout's beginning, or the run's start if later (a run started
    under the rollout, --ignore-policy say, held it only from then), until
    it was last seen in its way."""
    since = rollout.began_at
    if run.get("run_started_at") is not None:
        since = max(since, run["run_started_at"])
    return max(0.0, (run["last_seen_at"] - since).total_seconds())


def add_arguments(parsers):
    """The parser of rollouts (see cli.CommandParsers)."""
    add, common, reader = parsers.add, parsers.common, parsers.reader
    sub = add("rollouts", "cmd_rollouts", parents=(common, reader))
    sub.add_argument("--limit", type=positive_int, default=20,
                     help="how many of the newest (default 20); the open ones are listed "
                          "however old (as many again at most)")


def cmd_rollouts(args, settings):
    from cronpolicy.tooling.output import show
    now, found = recorded(settings, args.limit)
    show(args.json, found, "rollouts", "no rollouts recorded", [
        ("ID", lambda r: r["id"]),
        ("KIND", lambda r: r["kind"]),
        ("SERVICES", lambda r: ",".join(r["services"]) or "-"),
        ("STATE", lambda r: r["state"] + "".join(
            ", " + flag for flag, on in (("owner lost", r["owner_lost"]),
                                         ("overdue", r["overdue"])) if on)),
        ("OWNER", lambda r: r["owner"] or "-"),
        ("BEGAN", lambda r: format_time(r["began_at"])),
        ("STALL", lambda r: format_duration(r["stall_seconds"])
         if r["stall_seconds"] is not None else "-"),
        ("OPEN", lambda r: format_duration(r["open_seconds"])),
        ("SKIPPED", lambda r: r["skipped_starts"]),
        ("INTERRUPTED", lambda r: r["interrupted"]),
        ("AWAITED", _awaited_text),
        ("REASON", lambda r: quote(r["reason"]))])
    return exitcodes.OK


def _awaited_text(found, shown=3):
    runs = found["awaited"]
    text = ", ".join("%s@%s (%s)" % (run["name"], run["host"], format_duration(run["seconds"]))
                     for run in runs[:shown])
    return (text + (" and %d more" % (len(runs) - shown) if len(runs) > shown else "")) or "-"
