"""Rollouts: the deploy switch, and waiting for the fleet to be quiet.

This is the Python API that ``cronpolicy deploy`` wraps; release tooling can
call it directly::

    from cronpolicy.config import Settings
    from cronpolicy.tooling.database import Database
    from cronpolicy.tooling import deploy

    db = Database(Settings.load())
    deploy.deploy_begin(db, reason="release 4521")
    result = deploy.wait_until_quiet(db, timeout=30 * 60)
    if not result.quiet:
        ...                               # result.blockers: the runs still going
    ...                                   # upgrade
    deploy.deploy_end(db)

Times are always the database's clock.  Whether a run blocks a rollout or
is asked to stop is asked of ``cronpolicy.policy``.  Planning a rollout
(`deploy plan`, `deploy slot`) is rollout_plans.py.
"""

import collections
import time

from sqlalchemy import text

from cronpolicy import config, policy
from cronpolicy.errors import DatabaseError
from cronpolicy.matching import parse_needs
from cronpolicy.tooling.fleet import live_runs, read_deploy_state, reap_dead_runs
from cronpolicy.tooling.tables import deploy_state, drain

def _set_deploy(db, pending, reason, doing, audit_reason=None):
    """Flip the switch; a flip to where it already stands, with the same
    reason, writes nothing (and so no audit entry saying "no change")."""
    values = dict({"deploy_pending": pending, "reason": reason}, **db.who_columns("changed_by"))
    with db.begin(doing, reason=audit_reason or reason) as connection:
        before = read_deploy_state(db, connection)
        if before is None:
            connection.execute(deploy_state.insert().values(id=1, **values))
        elif bool(before["deploy_pending"]) != pending or before["reason"] != reason:
            connection.execute(deploy_state.update().where(deploy_state.c.id == 1).values(**values))
        return before, read_deploy_state(db, connection)


def deploy_begin(db, reason=""):
    """Set deploy pending: no script starts until deploy_end().  Returns (before, after)."""
    return _set_deploy(db, True, reason or "", "begin the deploy")


def service_begin(db, service, reason=""):
    """A deploy of ``service`` is pending: the scripts that need it stop
    starting.  Returns the service_deploy row before (None when it was not
    pending) and after."""
    from sqlalchemy import select
    from cronpolicy.tooling.tables import service_deploy
    with db.begin("begin the deploy of %s" % service, reason=reason) as connection:
        where = service_deploy.c.service == service
        before = connection.execute(select(service_deploy).where(where)).mappings().first()
        if before is None:
            connection.execute(service_deploy.insert().values(
                service=service, reason=reason or "", **db.who_columns("changed_by")))
        elif before["reason"] != (reason or ""):
            connection.execute(service_deploy.update().where(where).values(reason=reason or ""))
        after = connection.execute(select(service_deploy).where(where)).mappings().first()
        return (dict(before) if before else None), dict(after)


def service_end(db, service, reason=""):
    """The deploy of ``service`` is over.  Returns its row, or None when it
    was not pending."""
    from sqlalchemy import select
    from cronpolicy.tooling.tables import service_deploy
    with db.begin("end the deploy of %s" % service, reason=reason) as connection:
        where = service_deploy.c.service == service
        before = connection.execute(select(service_deploy).where(where)).mappings().first()
        if before is not None:
            connection.execute(service_deploy.delete().where(where))
        return dict(before) if before else None


def deploy_end(db, reason=""):
    """Clear deploy pending: every script's own policy applies again.  Returns (before, after).
    ``reason`` goes to the audit only (the switch's own reason is cleared)."""
    return _set_deploy(db, False, "", "end the deploy", audit_reason=reason)


# Waiting for the fleet ---------------------------------------------------------------

#: What wait_until_quiet returns.  ``blockers`` are the runs still going.
WaitResult = collections.namedtuple("WaitResult", "quiet waited_seconds blockers stop_asked")


def blocking_runs(db, connection, host="*", reap=True, service=None, release_not=None):
    """(now, runs a rollout on ``host`` must wait for, whether anything asks
    scripts to stop).  Rollout-exempt scripts never block; each blocker says
    why it is asked to stop (``stop_request``), if it is.  ``service``: only
    runs that needed that service; ``release_not``: only runs that do not
    execute that release (a run that recorded none may, so it counts).
    ``reap``: record dead runs as abandoned first (a write: not on every look)."""
    if reap:
        reap_dead_runs(db, connection)
    inputs = db.inputs(connection)
    runs = []
    for run in live_runs(db, connection, inputs.now, host):
        needs = parse_needs(run.get("needs"))
        if policy.rollout_exempt(inputs.policies, run["name"], run["host"]) or (
                service is not None and service not in needs) or (
                release_not is not None and run.get("release") == release_not):
            continue
        stop = policy.stop_verdict(inputs, run["name"], run["host"], needs=needs)
        run["stop_request"] = stop.reason if stop is not None else None
        runs.append(run)
    return inputs.now, runs, policy.rollout_under_way(inputs, service)


#: How often deploy wait looks without being told of a change: on SQLite
#: (no notifications; the local file is cheap to read), behind a pooler in
#: transaction mode (watch = poll: LISTEN would be lost), and, listening,
#: to refresh what it shows and catch runs that start meanwhile.
SQLITE_LOOK_EVERY = 0.05
POLL_LOOK_EVERY = 0.25
LISTENING_LOOK_EVERY = 1.0
#: Dead runs are recorded as abandoned at most this often while waiting.
REAP_EVERY = 1.0
#: However many notifications arrive, look at most this often.
REREAD_AT_MOST_EVERY = 0.05


def wait_until_quiet(db, timeout, host="*", poll_interval=None, on_progress=None,
                     service=None, release_not=None):
    """Wait until no live, non-exempt run on ``host`` (a glob) remains.

    Scripts that are safe to interrupt stop by themselves once deploy
    pending (or a window) asks them to; this waits for those and for the
    unsafe ones to finish.  Dead runs never block.  Gives up after
    ``timeout`` seconds.  ``on_progress(now, runs, waited)`` is called after
    every look.  Returns a WaitResult.

    One connection is held for the whole wait.  On PostgreSQL (watch =
    listen) it LISTENs for the end of runs (schema patch 0012) and policy
    changes, and looks again as soon as one is announced, when the first
    blocker's lease would run out, or every LISTENING_LOOK_EVERY; otherwise
    it looks every ``poll_interval`` (SQLITE_LOOK_EVERY, POLL_LOOK_EVERY).
    """
    started = time.monotonic()
    first_now = None
    blocked = {}     # run id -> [script name, first seen, last seen] (waited seconds)
    looks = _Looks(db)
    try:
        every = poll_interval or looks.every
        while True:
            now, runs, stop_asked = looks.look(host, service, release_not)
            first_now = first_now or now
            waited = time.monotonic() - started
            for run in runs:
                blocked.setdefault(run["id"], [run["name"], waited, waited])[2] = waited
            if on_progress is not None:
                on_progress(now, runs, waited)
            if not runs or waited >= timeout:
                if blocked and not looks.reaped_last:
                    looks.reap()        # a blocker whose lease just ran out: abandoned now
                break
            looks.wait(max(0.0, min(every, timeout - waited, _until_a_lease_ends(runs, now))))
    finally:
        looks.close()
    # A wait with nothing pending and nothing to wait for is no drain (its
    # 0s would overwrite the last real one in metrics).
    if stop_asked or blocked:
        _record_drain(db, first_now, now, host, not runs, blocked)
    return WaitResult(not runs, waited, runs, stop_asked)


class _Looks:
    """deploy wait's looks at the fleet, on one held connection: LISTENing
    for the end of runs and policy changes where it can (PostgreSQL, watch
    = listen), made again once if the connection is lost (a restart, a
    failover); reaping dead runs at most every REAP_EVERY, the other looks
    only read (on SQLite: without the write lock)."""

    CHANNELS = ("cronpolicy_run", "cronpolicy_policy")

    def __init__(self, db):
        self.db = db
        self.listening = (db.backend == config.POSTGRESQL
                          and db.settings.watch == config.WATCH_LISTEN)
        self.every = (LISTENING_LOOK_EVERY if self.listening else
                      SQLITE_LOOK_EVERY if db.backend == config.SQLITE else POLL_LOOK_EVERY)
        self.held = self._raw = None
        self._reaped_at = None
        self._looked_at = 0.0
        self.reaped_last = False
        self._connect()

    def _connect(self):
        self.held = self.db.open_held("wait for the running scripts")
        if self.listening:
            with self.db.begin("listen for the end of runs", held=self.held) as connection:
                for channel in self.CHANNELS:
                    connection.execute(text("LISTEN %s" % channel))
            self._raw = self.held.connection.dbapi_connection

    def close(self):
        if self.held is not None:
            self.db.close_held(self.held)
            self.held = self._raw = None

    def look(self, host, service=None, release_not=None):
        """(now, blocking runs, whether anything asks scripts to stop)."""
        try:
            return self._look(host, service, release_not)
        except DatabaseError as error:
            if not error.transient:
                raise
            self.close()            # lost: one new connection, one more look
            self._connect()
            return self._look(host, service, release_not)

    def _look(self, host, service, release_not):
        reap = self._reaped_at is None or time.monotonic() - self._reaped_at >= REAP_EVERY
        transaction = self.db.begin if reap else self.db.read
        with transaction("check the running scripts", held=self.held) as connection:
            found = blocking_runs(self.db, connection, host, reap=reap, service=service,
                                  release_not=release_not)
        if reap:
            self._reaped_at = time.monotonic()
        self.reaped_last = reap
        self._looked_at = time.monotonic()
        return found

    def reap(self):
        with self.db.begin("record dead runs", held=self.held) as connection:
            reap_dead_runs(self.db, connection)

    def wait(self, seconds):
        """Sleep up to ``seconds``, less when a change is announced, but
        never look again sooner than REREAD_AT_MOST_EVERY after the last
        look (anyone may NOTIFY these channels)."""
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
        pause = self._looked_at + REREAD_AT_MOST_EVERY - time.monotonic()
        if pause > 0:
            time.sleep(min(pause, seconds))


def _until_a_lease_ends(runs, now):
    """Seconds until the first of ``runs`` would be dead if not heard from
    (a lease runs out announcing nothing), a little after."""
    ends = [run["lease_expires_at"] for run in runs if run.get("lease_expires_at") is not None]
    if not ends:
        return float("inf")
    return max(0.0, (min(ends) - now).total_seconds()) + 0.05


def _record_drain(db, started_at, finished_at, host, quiet, blocked):
    """Remember this wait for the metrics: how long, and who held it up longest."""
    longest = max(blocked.values(), key=lambda entry: entry[2] - entry[1], default=None)
    with db.begin("record the drain") as connection:
        connection.execute(drain.insert().values(
            started_at=started_at, finished_at=max(started_at, finished_at), host=host,
            quiet=quiet, longest_blocker=longest[0] if longest else None,
            longest_blocker_seconds=(longest[2] - longest[1]) if longest else None))
