"""Rollouts begun, renewed and ended: the rows of cronpolicy.rollout.

Written in plain SQL (store.writes), so that `deploy begin` and `deploy
end` import no SQLAlchemy.  ``db`` is anything with ``writing(doing,
reason)`` and ``reading(doing)`` blocks giving a store.writes.Writer and a
store.reads.Reader: the commands' ``store.writes.Plain(settings)``, or the
tooling's ``Database`` (the Python API, ``deploy run``).  ``tooling.deploy``
offers these under the same names, with the wait for the fleet.

Rows are dicts of their columns (times aware UTC, durations seconds).
"""

import datetime

from cronpolicy import policy
from cronpolicy.errors import UsageError
from cronpolicy.matching import parse_needs, services_problem
from cronpolicy.store.writes import who


def begin(db, services=(), reason="", expect=None, owner_host=None, owner_pid=None,
          lease=None):
    """Open a rollout: of ``services`` (only the scripts that need one of
    them stop), else full (every script stops).  ``expect``: seconds it
    should take; ``lease``: seconds its owner's lease lasts from now (the
    owner renews it, see ``renew``).  Returns (the rollout, the other open
    ones), as dicts of their columns."""
    services = sorted(set(services))
    problem = services_problem(services)
    if problem:
        raise UsageError(problem)
    with db.writing("begin a rollout", reason=reason) as writer:
        until = None
        if lease is not None:
            until = writer._time(writer.now() + datetime.timedelta(seconds=lease))
        [row] = writer.rows("begin_rollout", {
            "kind": policy.SERVICES if services else policy.FULL,
            "services": ",".join(services), "reason": reason or "",
            "expected_duration": writer.seconds(expect), "owner_host": owner_host,
            "owner_pid": owner_pid, "lease_expires_at": until, "who": who()})
        rows = _open(writer)
    mine = next(found for found in rows if found["id"] == row["id"])
    return mine, [found for found in rows if found["id"] != row["id"]]


def end(db, rollout_id, reason="", owner=None):
    """End rollout ``rollout_id``.  Returns (its row, whether this ended it:
    False when it had ended already); UsageError when there is no such
    rollout.  ``owner``: (host, pid) of the process that began it (`deploy
    run`): a rollout of that id owned by another is not the one it began
    (its row deleted, the id given again), so there is no such rollout."""
    with db.writing("end rollout #%d" % rollout_id, reason=reason) as writer:
        found = _by_id(writer, [rollout_id])
        if found and owner is not None and (
                found[0]["owner_host"], found[0]["owner_pid"]) != tuple(owner):
            found = []
        if not found:
            raise UsageError("there is no rollout #%d (cronpolicy rollouts lists them)"
                             % rollout_id)
        # (Ended by another meanwhile: it ended none.)
        ended = found[0]["ended_at"] is None and _end(writer, [rollout_id]) == [rollout_id]
        return _by_id(writer, [rollout_id])[0], ended


def why_not_open(db, rollout_id, owner=None):
    """Why rollout ``rollout_id``, found no longer open, is not: "ended"
    (someone ended it), or "deleted" (its row deleted by hand: there is no
    row of that id, or, with ``owner`` as for ``end``, the row of that id
    is another's, the id given again).  Said apart, since a wait told a
    deleted rollout "was ended", which nobody did."""
    with db.reading("read rollout #%d" % rollout_id) as reader:
        found = _by_id(reader, [rollout_id])
    if not found or found[0]["ended_at"] is None or owner is not None and (
            found[0]["owner_host"], found[0]["owner_pid"]) != tuple(owner):
        return "deleted"        # (an open row of that id: another's, begun since)
    return "ended"


def end_open(db, service=None, every=False, reason=""):
    """End the open rollout (of ``service``, when given): the only one, or
    with ``every`` all of them.  Returns the rows ended ([] when none was
    open); UsageError naming them when several are open and not ``every``."""
    with db.writing("end the open rollouts", reason=reason) as writer:
        found = [row for row in _open(writer)
                 if service is None or service in parse_needs(row["services"])]
        if len(found) > 1 and not every:
            raise UsageError("%d rollouts%s are open: %s; end one with `cronpolicy deploy end "
                             "ID`, or every one with --all" % (
                                 len(found), " of " + service if service else "",
                                 "; ".join(named(row) for row in found)))
        if not found:
            return []
        # Only those this ended: another `deploy end` may have ended some
        # while this waited for them (read open above, by this snapshot).
        ended = _end(writer, [row["id"] for row in found])
        return _by_id(writer, ended) if ended else []


def renew(db, rollout_id, lease, owner=None):
    """Renew the owner's lease of rollout ``rollout_id`` for ``lease``
    seconds from now; False when the rollout has ended (someone ended it).
    ``owner``: (host, pid), as for ``end``: False for a rollout of that id
    another owns.  On PostgreSQL only the login that began the rollout may
    renew it (schema 26): another login's renewal is a DatabaseError naming
    the rollout and its owner."""
    host, pid = owner if owner is not None else (None, None)
    with db.writing("renew the lease of rollout #%d" % rollout_id) as writer:
        until = writer.now() + datetime.timedelta(seconds=lease)
        return writer.count("renew_rollout", {"id": rollout_id, "until": writer._time(until),
                                              "owner_host": host, "owner_pid": pid}) == 1


def open_rollouts(db):
    """The open rollouts, oldest first (dicts)."""
    with db.reading("read the open rollouts") as reader:
        return [rollout._asdict() for rollout in reader.open_rollouts()]


def named(row):
    """"#12 full by alice" or "#13 of xmlrpc, librarian by bob"."""
    services = parse_needs(row["services"])
    return "#%d %s by %s" % (row["id"], "of " + ", ".join(services) if services else "full",
                             row["owner"] or "-")


# The switch, as earlier versions had it ----------------------------------------------------

def deploy_begin(db, reason=""):
    """Open a full rollout (the old API of the switch).  Returns the rollout."""
    return begin(db, reason=reason)[0]


def deploy_end(db, reason=""):
    """End every open full rollout, as clearing deploy_pending always
    released the fleet (the old API of the switch).  Returns those ended."""
    with db.writing("end the deploy", reason=reason) as writer:
        ids = [row["id"] for row in writer.rows("open_full_rollouts", {"kind": policy.FULL})]
        # (those this ended: another end may have ended some meanwhile)
        return _end(writer, ids) if ids else []


def _open(writer):
    return [rollout._asdict() for rollout in writer.open_rollouts()]


def _by_id(writer, ids):
    return [rollout._asdict() for rollout in writer.rollouts_by_id(ids)]


def _end(writer, ids):
    """End the open rollouts of ``ids``; the ids of those it ended, in order."""
    return sorted(row["id"] for row in writer.rows("end_rollouts", {
        "ids": writer._list(ids), "now": writer._time(writer.now()), "who": who()}))
