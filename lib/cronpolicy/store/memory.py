"""A policy database in memory: a real IPolicyStore provider, for tests and
for library users who want to drive scripts without a server.

``MemoryDatabase`` holds what the tables would (policy rows, windows, the
deploy switch, runs, fleet-wide slots) behind one lock, with a clock you may
replace; ``MemoryStore`` is one session on it, as a PostgresStore is one
connection: runs and slots live by lease as they do there (``reap()``
records the runs whose lease ran out), and it hears changes through a pipe
it can select() on.  Set ``database.outage = True`` to make every session
fail as an unreachable database would::

    from cronpolicy.store.memory import MemoryDatabase
    database = MemoryDatabase()
    database.set_deploy(True, "release 42")
    MyScript(store=database.session()).run([], exit=False)   # skipped
    database.runs[-1]["decision"]                             # 'deploy-pending'
"""

import datetime
import os
import threading

from cronpolicy import config
from cronpolicy.errors import DatabaseError
from cronpolicy.rows import (
    DeployState, Inputs, PolicyRow, Rollout, RunEnd, RunHandle, ServiceDeploy, Window)

UTC = datetime.timezone.utc


class MemoryDatabase:
    """The shared state of a policy database, in memory."""

    def __init__(self, clock=None):
        self.clock = clock or (lambda: datetime.datetime.now(UTC))
        self.lock = threading.RLock()
        self.policies = []
        self.windows = []
        self.deploy = DeployState()
        self.services = []      # ServiceDeploy rows: the services with a deploy pending
        self.rollouts = []      # Rollout rows, open and ended
        self.runs = []          # dicts with the columns of cronpolicy.script_run
        self.slots = {}         # (name, slot) -> {"run_key", "host", "lease_expires_at"}
        self.outage = False
        self._sessions = []

    def session(self, timeout=config.DEFAULT_DECISION_TIMEOUT, lease_ttl=config.DEFAULT_LEASE_TTL):
        """A new MemoryStore on this database."""
        return MemoryStore(self, timeout, lease_ttl)

    def reap(self):
        """Record running runs whose lease ran out as abandoned; their ids."""
        with self.lock:
            now = self.clock()
            reaped = [run for run in self.runs
                      if run["status"] == "running" and run["lease_expires_at"] < now]
            for run in reaped:
                run.update(status="abandoned", lease_expires_at=None,
                           finished_at=max(run["started_at"], run["heartbeat_at"]),
                           stop_reason="abandoned: its lease ran out")
            return [run["id"] for run in reaped]

    # What a DBA would do with plain SQL -------------------------------------------

    def add_policy(self, name, host="*", **columns):
        """Insert a script_policy row; returns it."""
        with self.lock:
            row = PolicyRow(id=1 + max([0] + [policy.id for policy in self.policies]),
                            name=name, host=host, changed_at=self.clock(), **columns)
            self.policies.append(row)
        self.changed()
        return row

    def set_deploy(self, pending, reason=""):
        """Flip the switch as a DBA's UPDATE of deploy_state does: on, it
        opens a full rollout (unless one is open); off, it ends every one."""
        with self.lock:
            full = [row for row in self._open() if row.kind == "full"]
            if pending and not full:
                self._open_rollout("full", "", reason)
            elif not pending:
                self._end(full)
            self._follow()
        self.changed()

    def set_service_deploy(self, service, pending, reason=""):
        """Begin (pending True) or end a deploy of ``service``, as a DBA's
        INSERT or DELETE on service_deploy does."""
        with self.lock:
            covering = [row for row in self._open() if service in row.services.split(",")]
            if pending and not covering:
                self._open_rollout("services", service, reason)
            elif not pending:
                self._end(covering)
            self._follow()
        self.changed()

    def begin_rollout(self, services=(), reason="", expected_duration=None):
        """Open a rollout (of ``services``, else full), as `deploy begin` does; returns it."""
        with self.lock:
            row = self._open_rollout("services" if services else "full",
                                     ",".join(sorted(set(services))), reason, expected_duration)
            self._follow()
        self.changed()
        return row

    def end_rollout(self, rollout_id):
        with self.lock:
            self._end([row for row in self._open() if row.id == rollout_id])
            self._follow()
        self.changed()

    def _open(self):
        return [row for row in self.rollouts if row.ended_at is None]

    def _open_rollout(self, kind, services, reason, expected_duration=None):
        row = Rollout(id=len(self.rollouts) + 1, kind=kind, services=services, reason=reason,
                      owner="memory", began_at=self.clock(),
                      expected_duration=expected_duration)
        self.rollouts.append(row)
        return row

    def _end(self, rows):
        ended = {row.id for row in rows}
        self.rollouts = [row._replace(ended_at=self.clock(), ended_by="memory")
                         if row.id in ended else row for row in self.rollouts]

    def _follow(self):
        """The switches follow the open rollouts (schema patch 0016's triggers)."""
        full = [row for row in self._open() if row.kind == "full"]
        if bool(full) != bool(self.deploy.deploy_pending) or (
                full and full[0].reason != self.deploy.reason):
            self.deploy = DeployState(bool(full), full[0].reason if full else "", "memory",
                                      self.clock())
        covered = {}
        for row in self._open():
            for service in row.services.split(",") if row.kind == "services" else ():
                covered.setdefault(service, row)
        self.services = [row for row in self.services if row.service in covered] + [
            ServiceDeploy(id=len(self.services) + index + 1, service=service,
                          reason=row.reason, changed_by="memory", changed_at=self.clock())
            for index, (service, row) in enumerate(sorted(covered.items()))
            if service not in {kept.service for kept in self.services}]

    def add_window(self, starts_at, ends_at, reason="", host="*", script="*", service=None):
        with self.lock:
            window = Window(id=1 + max([0] + [window.id for window in self.windows]),
                            starts_at=starts_at, ends_at=ends_at, reason=reason, host=host,
                            script=script, created_at=self.clock(), service=service)
            self.windows.append(window)
        self.changed()
        return window

    def runs_of(self, name):
        with self.lock:
            return [dict(run) for run in self.runs if run["name"] == name]

    def changed(self):
        """Tell every listening session, as the NOTIFY triggers do."""
        with self.lock:
            for session in self._sessions:
                session.notify()

    # For the sessions ------------------------------------------------------------------

    def _insert(self, record, **extra):
        with self.lock:
            run = dict(dict(record._asdict(), id=len(self.runs) + 1, heartbeat_at=None,
                            safe_to_interrupt=False, lease_expires_at=None, spooled=False),
                       **extra)
            self.runs.append(run)
            return run["id"]

    def _update(self, run_id, **values):
        with self.lock:
            self.runs[run_id - 1].update(values)


class MemoryStore:
    """IPolicyStore on a MemoryDatabase: one session."""

    backend = "memory"
    masked_dsn = "memory"

    def __init__(self, database, timeout=config.DEFAULT_DECISION_TIMEOUT,
                 lease_ttl=config.DEFAULT_LEASE_TTL):
        self.database = database
        self.timeout = timeout
        self.lease_ttl = lease_ttl
        self._slot = None          # (name, slot) it holds...
        self._slot_run_key = None  # ...for this run
        self._wake_read = self._wake_write = None

    def _check(self, doing):
        if self.database.outage:
            raise DatabaseError("cannot %s in memory: the database is out of reach" % doing,
                                transient=True)

    # IPolicySource ---------------------------------------------------------------

    def load_inputs(self, name, history_runs):
        from cronpolicy.schema import SCHEMA_VERSION
        self._check("read the policy")
        database = self.database
        with database.lock:
            now = database.clock()
            succeeded = [run for run in database.runs
                         if run["name"] == name and run["status"] == "succeeded"
                         and not run.get("spooled")]
            succeeded.sort(key=lambda run: run["finished_at"], reverse=True)
            return Inputs(
                now=now, schema_version=SCHEMA_VERSION, deploy=database.deploy,
                policies=list(database.policies),
                windows=[window for window in database.windows
                         if window.cancelled_at is None and window.ends_at > now],
                recent_runtimes=[(run["finished_at"] - run["started_at"]).total_seconds()
                                 for run in succeeded[:int(history_runs)]],
                services=list(database.services),
                rollouts=[row for row in database.rollouts if row.ended_at is None])

    # IRunRecorder -------------------------------------------------------------------

    def record_skip(self, record):
        self._check("record the skip of %s" % record.name)
        now = self.database.clock()
        return RunHandle(self.database._insert(record._replace(
            status="skipped", started_at=now, finished_at=now)), record)

    def _lease(self):
        return self.database.clock() + datetime.timedelta(seconds=self.lease_ttl)

    def record_start(self, record):
        self._check("record the start of %s" % record.name)
        now = self.database.clock()
        # A start written late keeps the host's time (no later than now): spooled.
        run_id = self.database._insert(record._replace(
            status="running", started_at=min(record.started_at or now, now)),
            heartbeat_at=now, lease_expires_at=self._lease(),
            spooled=record.started_at is not None)
        return RunHandle(run_id, record)

    def record_finish(self, run, end):
        self._check("record the end of run %s" % run.id)
        if end.status not in ("succeeded", "failed", "interrupted", "abandoned"):
            raise DatabaseError("cannot record the end of run %s in memory: unknown status %r"
                                % (run.id, end.status), refused=True)
        values = end._asdict()
        values["finished_at"] = max(self.database.clock(),
                                    self.database.runs[run.id - 1]["started_at"])
        self.database._update(run.id, lease_expires_at=None, **values)

    # Holding a run ------------------------------------------------------------------------

    def heartbeat(self, run, safe_to_interrupt):
        self._check("renew the lease of run %s" % run.id)
        database = self.database
        with database.lock:
            row = database.runs[run.id - 1]
            if row["status"] not in ("running", "abandoned"):
                return False
            standing = row["status"] == "running" and row["lease_expires_at"] >= database.clock()
            row.update(heartbeat_at=database.clock(), safe_to_interrupt=bool(safe_to_interrupt),
                       lease_expires_at=self._lease(), status="running", finished_at=None,
                       stop_reason=None)
            if self._slot is None:
                return standing
            holder = database.slots.get(self._slot)
            if holder is None or holder["run_key"] != self._slot_run_key:
                return False
            holder["lease_expires_at"] = self._lease()
            return standing

    def claim_slot(self, record, limit):
        self._check("take a fleet-wide slot of %s" % record.name)
        database = self.database
        with database.lock:
            now = database.clock()
            for slot in range(limit):
                holder = database.slots.get((record.name, slot))
                if holder is None or holder["lease_expires_at"] < now \
                        or holder["run_key"] == record.spool_id:
                    database.slots[(record.name, slot)] = {
                        "run_key": record.spool_id, "host": record.host,
                        "lease_expires_at": self._lease()}
                    self._slot, self._slot_run_key = (record.name, slot), record.spool_id
                    return True
        return False

    def listen(self):
        self._check("listen for policy changes")
        if self._wake_read is None:
            self._wake_read, self._wake_write = os.pipe()
            os.set_blocking(self._wake_read, False)
            os.set_blocking(self._wake_write, False)
            with self.database.lock:
                self.database._sessions.append(self)

    def notify(self):
        try:
            os.write(self._wake_write, b"!")
        except (BlockingIOError, OSError, TypeError):
            pass  # a full pipe already says "changed"

    def policy_version(self):
        """None: no version is kept; a poller reads the whole policy (in
        memory, as cheap).  Sessions that listen are told of changes anyway."""
        return None

    def fileno(self):
        return self._wake_read

    def release(self):
        """Nothing to let go of."""

    def take_notifications(self):
        if self._wake_read is None:
            return 0
        count = 0
        try:
            while True:
                chunk = os.read(self._wake_read, 64)
                if not chunk:
                    break
                count += len(chunk)
        except BlockingIOError:
            pass
        return count

    # The spool and the end --------------------------------------------------------------

    def apply_spooled(self, entry):
        self._check("write a spooled record")
        database = self.database
        with database.lock:
            now = database.clock()      # a host's times, clamped to [start, now]
            if entry.record is not None:
                started = min(entry.record.started_at, now)
                finished = min(max(started, entry.record.finished_at), now)
                record = entry.record._replace(started_at=started, finished_at=finished)
                same = [run for run in database.runs if run["spool_id"] == record.spool_id]
                if not same:
                    database._insert(record)
                    database.runs[-1]["spooled"] = True
                elif same[0]["status"] in ("running", "abandoned"):
                    same[0].update(RunEnd(*[getattr(record, field) for field in RunEnd._fields])
                                   ._asdict(), lease_expires_at=None, spooled=True)
            else:
                run = database.runs[entry.run_id - 1]
                if run["status"] in ("running", "abandoned"):
                    run.update(entry.end._asdict(), spooled=True,
                               finished_at=min(max(run["started_at"], entry.end.finished_at), now))

    def close(self):
        """Give back the slot; an unfinished run lives on until its lease runs out."""
        database = self.database
        with database.lock:
            holder = database.slots.get(self._slot)
            if holder is not None and holder["run_key"] == self._slot_run_key:
                del database.slots[self._slot]
            self._slot = None
            if self in database._sessions:
                database._sessions.remove(self)
        if self._wake_read is not None:
            os.close(self._wake_read)
            os.close(self._wake_write)
            self._wake_read = self._wake_write = None
