"""Rollouts: begin one, wait for the fleet to be quiet for it, end it.

This is the Python API that ``cronpolicy deploy`` wraps; release tooling can
call it directly::

    from cronpolicy.config import Settings
    from cronpolicy.tooling.database import Database
    from cronpolicy.tooling import deploy

    db = Database(Settings.load())
    rollout, others = deploy.begin(db, services=["xmlrpc"], reason="xmlrpc 1.4",
                                   expect=30 * 60)
    result = deploy.wait_until_quiet(db, timeout=30 * 60, rollout_id=rollout["id"])
    if not result.quiet:
        ...                               # result.blockers: the runs still going
    ...                                   # restart the service
    deploy.end(db, rollout["id"])

A rollout is a row of cronpolicy.rollout (schema patch 0016): a full one
stops every script, one of services the scripts that need one of them.
Several may be open at once; each is ended on its own.  Beginning,
renewing and ending one (``begin``, ``renew``, ``end``, ``end_open``,
``open_rollouts`` and the old switch's ``deploy_begin`` and ``deploy_end``)
are rollout_rows.py's, in plain SQL, offered here under the same names.
(`deploy run`, a rollout around one command with its owner's lease, is
deploy_run.py.)

Times are always the database's clock.  Whether a run is in a rollout's way
or is asked to stop is asked of ``cronpolicy.policy``.  Planning a rollout
(`deploy plan`, `deploy slot`) is rollout_plans.py.
"""

import collections
import time

from cronpolicy import config, policy
from cronpolicy.errors import DatabaseError, UsageError
from cronpolicy.matching import parse_needs
from cronpolicy.tooling.rollout_rows import (  # noqa: F401 (the API's names)
    begin, deploy_begin, deploy_end, end, end_open, open_rollouts, renew, why_not_open)


# Waiting for the fleet ---------------------------------------------------------------

#: What wait_until_quiet returns.  ``blockers`` are the runs still going;
#: ``ended_meanwhile``: the rollout waited for was ended (by someone else)
#: before the fleet was quiet for it, which is not quiet: nothing stops its
#: scripts any more; ``rollout_gone``: it was not ended but deleted by hand.
WaitResult = collections.namedtuple(
    "WaitResult", "quiet waited_seconds blockers stop_asked ended_meanwhile rollout_gone",
    defaults=(False, False))

#: One look at the fleet: the database clock, the runs in the way, whether
#: anything asks scripts to stop, and for each open rollout ({id: Rollout})
#: the live runs it covers ({id: [run]}); ``complete``: every host was
#: looked at (no --host), so a rollout covering none is quiet.
Look = collections.namedtuple("Look", "now runs stop_asked rollouts covered complete")


def blocking_runs(reader, host="*", reap=True, service=None, release_not=None,
                  rollout_id=None):
    """One Look, read by ``reader`` (a store.reads.Reader in a transaction;
    a store.writes.Writer to ``reap``), at the runs a rollout on ``host``
    must wait for.

    Rollout-exempt scripts never block.  Which runs are in the way:
    ``rollout_id``: those that rollout stops; ``service``: those that need
    that service (both given: both); else, while something asks scripts to stop (a rollout
    open, a window in progress), those it asks; else every live run.  A
    run's needs are the ones in force now (a policy row's win over what it
    declared at its start).  ``release_not``: not the runs that execute
    that release (a run that recorded none may, so it counts).  Each run
    says why it is asked to stop (``stop_request``), if it is, and which
    open rollouts it is in the way of (``rollouts``).  ``reap``: record
    dead runs as abandoned first (a write: not on every look)."""
    if reap:
        reader.reap_dead_runs()
    inputs = reader.inputs()
    # (Rollout ``rollout_id``, open, asks its scripts to stop, whatever the service.)
    asked = (policy.rollout_under_way(inputs, service)
             or any(row.id == rollout_id for row in inputs.rollouts))
    runs, covered = [], {row.id: [] for row in inputs.rollouts}
    for run in reader.live_runs(inputs.now, host):
        if policy.rollout_exempt(inputs.policies, run["name"], run["host"]):
            continue
        facts = policy.ScriptFacts(run["name"], run["host"], needs=parse_needs(run["needs"]))
        needs = policy.effective_needs(inputs, facts)
        stop = policy.stop_verdict(inputs, run["name"], run["host"], needs=facts.needs)
        run["stop_request"] = stop.reason if stop is not None else None
        run["rollouts"] = [row.id for row in policy.covering_rollouts(
            inputs, run["name"], run["host"], facts.needs)]
        for covering in run["rollouts"]:
            covered[covering].append(run)
        if rollout_id is not None:
            in_the_way = rollout_id in run["rollouts"] and (service is None or service in needs)
        elif service is not None:
            in_the_way = service in needs
        else:
            in_the_way = stop is not None or not asked
        if in_the_way and not (release_not is not None and run.get("release") == release_not):
            runs.append(run)
    return Look(inputs.now, runs, asked, {row.id: row for row in inputs.rollouts}, covered,
                host == "*")


#: How often deploy wait looks without being told of a change: on SQLite
#: (no notifications; the local file is cheap to read), behind a pooler in
#: transaction mode (watch = poll: LISTEN would be lost), and, listening,
#: to refresh what it shows and catch runs that start meanwhile.
SQLITE_LOOK_EVERY = 0.05
POLL_LOOK_EVERY = 0.25
LISTENING_LOOK_EVERY = 1.0
#: Dead runs are recorded as abandoned at most this often while waiting.
REAP_EVERY = 1.0
#: However many notifications arrive, look at most this often on average:
#: at most LOOK_BURST looks in any LOOK_BURST x REREAD_AT_MOST_EVERY.  (A
#: burst, not a gap after every look: the last blocker's end announced just
#: after another announcement, its heartbeat say, was looked at up to 50 ms
#: late; issue 32.2.)
REREAD_AT_MOST_EVERY = 0.05
LOOK_BURST = 3
#: A look on the held connection that has no answer after this many
#: decision_timeouts finds the connection dead (a stalled server or pooler
#: acknowledges what it is sent and never answers: no TCP timeout fires).
LOOK_TIMEOUTS = 3


def wait_until_quiet(db, timeout, host="*", poll_interval=None, on_progress=None,
                     service=None, release_not=None, rollout_id=None, begun_here=False):
    """Wait until no live, non-exempt run in the way remains (see
    blocking_runs for which are: of rollout ``rollout_id``, of ``service``,
    on ``host``, not of release ``release_not``).

    Scripts that are safe to interrupt stop by themselves once a rollout
    (or a window) asks them to; this waits for those and for the unsafe
    ones to finish.  Dead runs never block.  Gives up after ``timeout``
    seconds, or when rollout ``rollout_id`` is found ended (by someone
    else: its scripts start again, so there is no quiet to wait for).
    ``on_progress(now, runs, waited)`` is called after every look.
    ``begun_here``: the caller began rollout ``rollout_id`` (deploy run),
    so no row of that id means it is gone, not an ID given wrongly.
    Returns a WaitResult.

    What it sees is recorded for the open rollouts: each run found in a
    rollout's way (rollout_awaited), and the first moment a look at every
    host found none in its way (rollout.quiet_at).

    One connection is held for the whole wait.  On PostgreSQL (watch =
    listen) it LISTENs for the end of runs (schema patch 0012) and policy
    changes, and looks again as soon as one is announced, when the first
    blocker's lease would run out, or every LISTENING_LOOK_EVERY; otherwise
    it looks every ``poll_interval`` (SQLITE_LOOK_EVERY, POLL_LOOK_EVERY).
    """
    if rollout_id is not None:
        first = _check_open(db, rollout_id, begun_here)
        if first is None:
            # Ended before the fleet was quiet for it, before this wait began:
            # the same event as an end during the wait, a moment later (exit 7).
            return WaitResult(False, 0.0, [], False, True)
        if first is GONE:       # (the caller's own, deleted since it began it)
            return WaitResult(False, 0.0, [], False, True, True)
    started = time.monotonic()
    first_now = None
    blocked = {}     # run id -> [script name, first seen, last seen] (waited seconds)
    looks = _Looks(db)
    witness = _Witness(db, looks)
    ended = False
    try:
        every = poll_interval or looks.every
        while True:
            look = looks.look(host, service, release_not, rollout_id)
            witness.saw(look)
            now, runs = look.now, look.runs
            first_now = first_now or now
            waited = time.monotonic() - started
            if rollout_id is not None and _identity(look.rollouts.get(rollout_id)) \
                    != _identity(first):
                # No run is in the way of a rollout that is no more.  (One
                # of its id begun since is another: SQLite gives a deleted
                # row's id again, and its quiet is not this one's.)
                ended = True
                break
            for run in runs:
                blocked.setdefault(run["id"], [run["name"], waited, waited])[2] = waited
            if on_progress is not None:
                on_progress(now, runs, waited)
            if not runs or waited >= timeout:
                if blocked and not looks.reaped_last:
                    looks.reap()        # a blocker whose lease just ran out: abandoned now
                break
            looks.wait(max(0.0, min(every, timeout - waited, _until_a_lease_ends(runs, now))))
        # A wait with nothing pending and nothing to wait for is no drain
        # (its 0s would overwrite the last real one in metrics).
        quiet = not runs and not ended
        if look.stop_asked or blocked:
            try:
                with looks.guarded():
                    _record_drain(db, first_now, now, host, quiet, blocked, held=looks.held)
            except DatabaseError as error:
                if not error.transient:
                    raise
                looks.close()       # lost just now: on a connection of its own
                _record_drain(db, first_now, now, host, quiet, blocked)
    finally:
        # What is left to record goes on the connection held for the wait:
        # a new one for each cost a deploy script about 15 ms more between
        # the last blocker's end and the wait's (issue 32.2).
        witness.done()
        looks.close()
    gone = ended and why_not_open(db, rollout_id, owner=_owner(first)) == "deleted"
    return WaitResult(quiet, waited, runs, look.stop_asked, ended, gone)


def _owner(row):
    """(host, pid) of the process that began rollout ``row`` (deploy run),
    or None (begun by `deploy begin`, which keeps no lease)."""
    return None if row.owner_host is None else (row.owner_host, row.owner_pid)


def _identity(row):
    """What tells a rollout from another given its id again (None: none)."""
    return None if row is None else (row.began_at, row.owner_host, row.owner_pid)


#: What _check_open returns for a rollout the caller began, found deleted.
GONE = object()


def _check_open(db, rollout_id, begun_here=False):
    """Rollout ``rollout_id`` when it is open, None when it was ended
    before the fleet was seen quiet for it; UsageError when there is no
    such rollout (GONE when the caller began it), or it ended after the
    fleet was quiet for it (nothing to wait for)."""
    with db.reading("read rollout #%d" % rollout_id) as reader:
        found = reader.rollouts_by_id([rollout_id])
    if not found and begun_here:
        return GONE
    if not found:
        raise UsageError("there is no rollout #%d (cronpolicy rollouts lists them)"
                         % rollout_id)
    if found[0].ended_at is not None and found[0].quiet_at is None:
        return None
    if found[0].ended_at is not None:
        from cronpolicy.timeutil import format_time
        raise UsageError("rollout #%d ended at %s, after the fleet was quiet for it: nothing "
                         "waits for it" % (rollout_id, format_time(found[0].ended_at)))
    return found[0]


class _Looks:
    """deploy wait's looks at the fleet, on one held connection: LISTENing
    for the end of runs and policy changes where it can (PostgreSQL, watch
    = listen), made again once if the connection is lost (a restart, a
    failover); reaping dead runs at most every REAP_EVERY, the other looks
    only read (on SQLite: without the write lock)."""

    #: The end of runs (cronpolicy_run) and policy changes (cronpolicy_policy).
    LISTENS = ("listen_runs", "listen")

    def __init__(self, db):
        self.db = db
        self.listening = (db.backend == config.POSTGRESQL
                          and db.settings.watch == config.WATCH_LISTEN)
        self.every = (LISTENING_LOOK_EVERY if self.listening else
                      SQLITE_LOOK_EVERY if db.backend == config.SQLITE else POLL_LOOK_EVERY)
        self.held = self._raw = None
        self._reaped_at = None
        self._recent = collections.deque(maxlen=LOOK_BURST)     # when the last looks were
        self.reaped_last = False
        self._connect()

    def _connect(self):
        self.held = self.db.open_held("wait for the running scripts")
        if self.listening:
            with self.db.reading("listen for the end of runs", held=self.held) as reader:
                for statement in self.LISTENS:
                    reader.rows(statement)
            self._raw = self.db.raw(self.held)

    def close(self):
        if self.held is not None:
            self.db.close_held(self.held)
            self.held = self._raw = None

    def look(self, host, service=None, release_not=None, rollout_id=None):
        """A Look (see blocking_runs)."""
        try:
            return self._look(host, service, release_not, rollout_id)
        except DatabaseError as error:
            if not error.transient:
                raise
            self.reconnect()        # lost: one new connection, one more look
            return self._look(host, service, release_not, rollout_id)

    def reconnect(self):
        """A new held connection for the one found lost (a restart, a
        failover, a network gone silent: see _Watchdog)."""
        self.close()
        self._connect()

    def _look(self, host, service, release_not, rollout_id):
        reap = self._reaped_at is None or time.monotonic() - self._reaped_at >= REAP_EVERY
        transaction = self.db.writing if reap else self.db.reading
        with self.guarded(), \
                transaction("check the running scripts", held=self.held) as reader:
            found = blocking_runs(reader, host, reap=reap, service=service,
                                  release_not=release_not, rollout_id=rollout_id)
        if reap:
            self._reaped_at = time.monotonic()
        self.reaped_last = reap
        self._recent.append(time.monotonic())
        return found

    def reap(self):
        with self.guarded(), self.db.writing("record dead runs", held=self.held) as writer:
            writer.reap_dead_runs()

    def guarded(self):
        """A _Watchdog over the held connection, for one look or write on it."""
        return _Watchdog(self._raw_socket(), LOOK_TIMEOUTS * self.db.settings.decision_timeout)

    def _raw_socket(self):
        """The held connection's socket descriptor (PostgreSQL), or None."""
        if self.db.backend != config.POSTGRESQL or self.held is None:
            return None
        try:
            return self.db.raw(self.held).fileno()
        except Exception:
            return None


    def wait(self, seconds):
        """Sleep up to ``seconds``, less when a change is announced, but
        never make more than LOOK_BURST looks in LOOK_BURST x
        REREAD_AT_MOST_EVERY (anyone may NOTIFY these channels)."""
        if self._raw is None:
            time.sleep(seconds)
            return
        import select as selecting
        if not self._raw.notifies:      # some may have come in with the last reply
            try:
                selecting.select([self._raw.fileno()], [], [], seconds)
                self._raw.poll()
            except Exception:       # a lost connection: the next look says what is wrong
                time.sleep(min(seconds, 0.05))
        del self._raw.notifies[:]
        if len(self._recent) < LOOK_BURST:
            return
        pause = self._recent[0] + LOOK_BURST * REREAD_AT_MOST_EVERY - time.monotonic()
        if pause > 0:
            time.sleep(min(pause, seconds))


class _Watchdog:
    """Shuts down the socket ``descriptor`` if the block it guards runs
    longer than ``seconds``: the statement blocked on it fails at once (a
    lost connection, which the wait replaces) instead of waiting forever."""

    def __init__(self, descriptor, seconds):
        self.descriptor = descriptor
        self.seconds = seconds
        self._timer = None

    def __enter__(self):
        if self.descriptor is not None:
            import threading
            self._timer = threading.Timer(self.seconds, self._shut)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc):
        if self._timer is not None:
            self._timer.cancel()

    def _shut(self):
        import socket
        try:
            duplicate = socket.fromfd(self.descriptor, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            return
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            duplicate.close()


class _Witness:
    """What a wait records of the open rollouts it sees: each run in a
    rollout's way when first seen (rollout_awaited) and when last seen (as
    it leaves the way, and at the end of the wait), and the first look at
    every host that found none in a rollout's way (rollout.quiet_at).  Only
    what changed is written, each in a short transaction of its own, on the
    wait's held connection (``looks``', under its watchdog)."""

    def __init__(self, db, looks):
        self.db = db
        self.looks = looks      # whose held connection it writes on
        self.seen = {}          # (rollout id, run id) -> [name, host, first, last, written last]
        self.quiet = set()      # rollouts recorded quiet by this wait

    def saw(self, look):
        new, gone = [], []
        present = set()
        for rollout_id, runs in look.covered.items():
            for run in runs:
                key = (rollout_id, run["id"])
                present.add(key)
                if key not in self.seen:
                    self.seen[key] = [run["name"], run["host"], look.now, look.now, None]
                    new.append(key)
                else:
                    self.seen[key][3] = look.now
        gone = [key for key, entry in self.seen.items()
                if key not in present and entry[4] != entry[3]]
        quiet = [rollout_id for rollout_id, runs in look.covered.items()
                 if look.complete and not runs and rollout_id not in self.quiet
                 and look.rollouts[rollout_id].quiet_at is None]
        if new or gone or quiet:
            self._write(new, gone, quiet)

    def done(self):
        """The last sight of every run still in a rollout's way."""
        left = [key for key, entry in self.seen.items() if entry[4] != entry[3]]
        if left:
            try:
                self._write([], left, [])
            except DatabaseError:
                pass        # (the first sight of each is recorded already)

    def _write(self, new, seen_last, quiet):
        """Record what changed, on the held connection; once more on a new
        one if that is found lost (writing it all again changes nothing)."""
        try:
            self._write_once(new, seen_last, quiet)
        except DatabaseError as error:
            if not error.transient:
                raise
            self.looks.reconnect()
            self._write_once(new, seen_last, quiet)

    def _write_once(self, new, seen_last, quiet):
        # (Under the watchdog, as a look: a write on the held connection must
        # not wait forever on a connection gone silent either.)
        with self.looks.guarded(), self.db.writing("record what the rollouts waited for",
                                                   held=self.looks.held) as writer:
            for key in new:
                name, host, first, last, _ = self.seen[key]
                # Another wait of the same rollout may write the same row
                # meanwhile (its insert uncommitted, so no read here sees
                # it): the row is written once, and this one's last sight
                # goes into it as an update.
                inserted = writer.count("await_run", {
                    "rollout_id": key[0], "run_id": key[1], "name": name, "host": host,
                    "first_seen_at": writer._time(first),
                    "last_seen_at": writer._time(last)}) == 1
                self.seen[key][4] = last if inserted else None
            for key in seen_last:
                last = self.seen[key][3]
                # (Another wait may have seen it later, or first.)
                writer.count("awaited_last_seen", {"rollout_id": key[0], "run_id": key[1],
                                                   "last_seen_at": writer._time(last)})
                self.seen[key][4] = last
            # The clock of this transaction, after the look: a look's own
            # now() may come before the commit of a run's end it then saw.
            quiet_at = writer._time(writer.now()) if quiet else None
            for rollout_id in quiet:
                writer.count("rollout_quiet", {"id": rollout_id, "quiet_at": quiet_at})
                self.quiet.add(rollout_id)


def _until_a_lease_ends(runs, now):
    """Seconds until the first of ``runs`` would be dead if not heard from
    (a lease runs out announcing nothing), a little after."""
    ends = [run["lease_expires_at"] for run in runs if run.get("lease_expires_at") is not None]
    if not ends:
        return float("inf")
    return max(0.0, (min(ends) - now).total_seconds()) + 0.05


def _record_drain(db, started_at, finished_at, host, quiet, blocked, held=None):
    """Remember this wait for the metrics: how long, and who held it up
    longest (on connection ``held``, if given)."""
    longest = max(blocked.values(), key=lambda entry: entry[2] - entry[1], default=None)
    with db.writing("record the drain", held=held) as writer:
        writer.count("record_drain", {
            "started_at": writer._time(started_at),
            "finished_at": writer._time(max(started_at, finished_at)), "host": host,
            "quiet": quiet, "longest_blocker": longest[0] if longest else None,
            "longest_blocker_seconds": (longest[2] - longest[1]) if longest else None})
