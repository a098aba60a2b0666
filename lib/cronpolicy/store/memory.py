"""A policy database in memory: a real IPolicyStore provider, for tests and
for library users who want to drive scripts without a server.

``MemoryDatabase`` holds what the tables would (policy rows, windows, the
deploy switch, runs, fleet-wide slots) behind one lock, with a clock you may
replace; ``MemoryStore`` is one session on it, as a PostgresStore is one
connection: it holds its run and slot until ``close()``, hears changes
through a pipe it can select() on, and, like a lost connection, leaves an
unfinished run abandoned when it closes.  Set ``database.outage = True`` to
make every session fail as an unreachable database would::

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
from cronpolicy.rows import DeployState, Inputs, PolicyRow, RunHandle, Window

UTC = datetime.timezone.utc


class MemoryDatabase:
    """The shared state of a policy database, in memory."""

    def __init__(self, clock=None):
        self.clock = clock or (lambda: datetime.datetime.now(UTC))
        self.lock = threading.RLock()
        self.policies = []
        self.windows = []
        self.deploy = DeployState()
        self.runs = []          # dicts with the columns of cronpolicy.script_run
        self.slots = {}         # (name, slot) -> the MemoryStore holding it
        self.outage = False
        self._sessions = []

    def session(self, timeout=config.DEFAULT_DECISION_TIMEOUT):
        """A new MemoryStore on this database."""
        return MemoryStore(self, timeout)

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
        with self.lock:
            self.deploy = DeployState(bool(pending), reason, "memory", self.clock())
        self.changed()

    def add_window(self, starts_at, ends_at, reason="", host="*", script="*"):
        with self.lock:
            window = Window(id=1 + max([0] + [window.id for window in self.windows]),
                            starts_at=starts_at, ends_at=ends_at, reason=reason, host=host,
                            script=script, created_at=self.clock())
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
            run = dict(record._asdict(), id=len(self.runs) + 1, heartbeat_at=None,
                       safe_to_interrupt=False, **extra)
            self.runs.append(run)
            return run["id"]

    def _update(self, run_id, **values):
        with self.lock:
            self.runs[run_id - 1].update(values)


class MemoryStore:
    """IPolicyStore on a MemoryDatabase: one session."""

    backend = "memory"
    masked_dsn = "memory"

    def __init__(self, database, timeout=config.DEFAULT_DECISION_TIMEOUT):
        self.database = database
        self.timeout = timeout
        self._run = None
        self._slots = []
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
                         if run["name"] == name and run["status"] == "succeeded"]
            succeeded.sort(key=lambda run: run["finished_at"], reverse=True)
            return Inputs(
                now=now, schema_version=SCHEMA_VERSION, deploy=database.deploy,
                policies=list(database.policies),
                windows=[window for window in database.windows
                         if window.cancelled_at is None and window.ends_at > now],
                recent_runtimes=[(run["finished_at"] - run["started_at"]).total_seconds()
                                 for run in succeeded[:int(history_runs)]])

    # IRunRecorder -------------------------------------------------------------------

    def record_skip(self, record):
        self._check("record the skip of %s" % record.name)
        now = self.database.clock()
        return RunHandle(self.database._insert(record._replace(
            status="skipped", started_at=now, finished_at=now)), record)

    def record_start(self, record):
        self._check("record the start of %s" % record.name)
        now = self.database.clock()
        run_id = self.database._insert(record._replace(status="running", started_at=now))
        self.database._update(run_id, heartbeat_at=now)
        self._run = run_id
        return RunHandle(run_id, record)

    def record_finish(self, run, end):
        self._check("record the end of run %s" % run.id)
        if end.status not in ("succeeded", "failed", "interrupted", "abandoned"):
            raise DatabaseError("cannot record the end of run %s in memory: unknown status %r"
                                % (run.id, end.status), refused=True)
        values = end._asdict()
        values["finished_at"] = max(self.database.clock(),
                                    self.database.runs[run.id - 1]["started_at"])
        self.database._update(run.id, **values)
        if self._run == run.id:
            self._run = None

    # Holding a run ------------------------------------------------------------------------

    def heartbeat(self, run, safe_to_interrupt):
        self._check("record a heartbeat of run %s" % run.id)
        self.database._update(run.id, heartbeat_at=self.database.clock(),
                              safe_to_interrupt=bool(safe_to_interrupt))

    def claim_slot(self, name, limit):
        self._check("take a fleet-wide slot of %s" % name)
        with self.database.lock:
            for slot in range(limit):
                if (name, slot) not in self.database.slots:
                    self.database.slots[(name, slot)] = self
                    self._slots.append((name, slot))
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

    def fileno(self):
        return self._wake_read

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
            if entry.record is not None:
                if any(run["spool_id"] == entry.record.spool_id for run in database.runs):
                    return
                record = entry.record._replace(
                    finished_at=max(entry.record.started_at, entry.record.finished_at))
                database._insert(record)
            else:
                run = database.runs[entry.run_id - 1]
                if run["status"] in ("running", "abandoned"):
                    run.update(entry.end._asdict(),
                               finished_at=max(run["started_at"], entry.end.finished_at))

    def close(self):
        database = self.database
        with database.lock:
            for key in self._slots:
                database.slots.pop(key, None)
            self._slots = []
            if self._run is not None:
                database._update(self._run, status="abandoned", finished_at=database.clock(),
                                 stop_reason="abandoned: its session ended")
                self._run = None
            if self in database._sessions:
                database._sessions.remove(self)
        if self._wake_read is not None:
            os.close(self._wake_read)
            os.close(self._wake_write)
            self._wake_read = self._wake_write = None
