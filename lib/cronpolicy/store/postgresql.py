"""The fleet-wide store: cronpolicy's tables in PostgreSQL, as the gate sees them.

All decision inputs arrive in one statement (one round trip), timed by the
server's ``now()`` so that every host agrees on the time.  Every operation
is bounded: reads by ``timeout`` seconds, retries of transient failures
included; writes by ``timeout`` each.  A running run is alive while its
lease stands (renewed by every heartbeat for ``lease_ttl`` seconds), and so
is its fleet-wide slot: rows, not session state, so a lost connection
never ends a run and a reconnect only has to LISTEN again.  The watcher
thread and the main thread share the store; a lock keeps their statements
apart (each waits at most for the other's deadline).

Connections are scarce once one was refused for want of a free one (the
login's, the database's or the server's limit), or a read of the policy or
a heartbeat finds four fifths of one of those limits in use
(``cronpolicy.connections_scarce()``): from then on the store
no longer LISTENs and ``release()`` closes its connection, so a running
script holds one only for a statement and the watcher polls (issue 32.5:
the first scripts of a herd held every connection through main() while
the rest gave up and ran unrecorded).  Each statement meets a full server
with a bounded, jittered wait (``timeout``) before failing.

With ``hold_connection`` False (``watch = poll``, for a pooler in transaction
mode) the store neither LISTENs nor keeps its connection between uses:
``release()`` closes it, and the next statement opens another.  No statement
relies on session state, so each may land on any server connection.

psycopg2 is used directly: importing SQLAlchemy alone would cost more than
a whole decision.  The statements are in postgresql.sql.
"""

import _thread
import time

from cronpolicy import config
from cronpolicy.errors import DatabaseError, SchemaError
from cronpolicy.rows import (
    DeployState, Inputs, PolicyRow, Rollout, RunHandle, ServiceDeploy, Window, from_mapping,
    to_time)
from cronpolicy.store import pgdriver
from cronpolicy.store import UNSENDABLE, queries, unsendable


class PostgresStore:
    """IPolicyStore on PostgreSQL (schema ``cronpolicy``)."""

    backend = config.POSTGRESQL

    def __init__(self, dsn, connect_timeout=config.DEFAULT_CONNECT_TIMEOUT,
                 timeout=config.DEFAULT_DECISION_TIMEOUT, application_name="cronpolicy",
                 source=None, network=None, lease_ttl=config.DEFAULT_LEASE_TTL,
                 hold_connection=True):
        self.dsn = dsn
        self.hold_connection = hold_connection
        self.network = network
        self.lease_ttl = lease_ttl
        self.source = source
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.application_name = application_name
        self._sql = queries("postgresql")
        self._lock = _thread.RLock()
        self._connection = None
        self._listening = False
        self._listen_due = False    # LISTEN goes with the next statement
        self._missed = False        # a reconnect may have lost notifications
        self._slot = None           # {name, slot, run_key} of the fleet-wide slot it holds
        self.scarce = False         # connections are scarce: hold none between statements
        self.wake = None            # a descriptor that ends every wait (pgdriver.wait)

    @property
    def masked_dsn(self):
        return config.mask_dsn(self.dsn)

    # The connection -------------------------------------------------------------

    def _connect(self, deadline):
        """Connect; LISTEN again with the next statement if listening
        (leases are renewed by the next heartbeat: nothing else lives in
        the session)."""
        try:
            self._connection = pgdriver.connect_async(
                self.dsn, deadline, self.connect_timeout, self.application_name, self.source,
                self.network, self.wake)
        except DatabaseError as error:
            if pgdriver.out_of_connections(error):
                self._become_scarce()
            raise
        if self._listening:
            if not self._listen_due:
                # A reconnect: whatever was announced while no session
                # listened is lost; tell the watcher there may be news.
                self._missed = True
            self._listen_due = True

    def _execute_now(self, query, parameters, doing, deadline):
        """Send one statement on the open connection and wait for its rows
        (dicts by column name).  ``parameters`` may be a function that
        makes them as the statement is sent (after any connecting)."""
        import psycopg2
        if callable(parameters):
            parameters = parameters()
        cursor = self._connection.cursor()
        statement = self._sql[query]
        if self._listen_due:
            # LISTEN in a transaction of its own, committed before the
            # statement's snapshot: nothing that statement misses goes
            # unannounced, and it costs no round trip of its own.
            statement = self._sql["listen_first"] + "\n" + statement
        try:
            try:
                cursor.execute(statement, parameters)
            except UNSENDABLE as error:       # nothing was sent: the connection stays good
                raise unsendable(error, doing, self.masked_dsn) from error
            pgdriver.wait(self._connection, deadline, doing, self.wake)
            self._listen_due = False
            if cursor.description is None:
                return []
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        except pgdriver.DeadlineExceeded:
            self._drop_connection()     # still busy with the statement
            raise
        except psycopg2.Error as error:
            if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                self._drop_connection()
            raise pgdriver.translate(error, doing, self.dsn, self._found_version) from error

    def _execute(self, query, parameters, doing, deadline=None, idempotent=False):
        """One statement within ``deadline`` (default: ``timeout`` from now).

        A connection kept open across main() may have died with a server
        restart; an idempotent statement gets one more try on a fresh one."""
        deadline = deadline or time.monotonic() + self.timeout
        with self._lock:
            reused = self._connection is not None and not self._connection.closed
            if not reused:
                self._connect(deadline)
            try:
                return self._execute_now(query, parameters, doing, deadline)
            except DatabaseError as error:
                if not (reused and idempotent and error.transient and self._connection is None):
                    raise
            self._connect(deadline)
            return self._execute_now(query, parameters, doing, deadline)

    def _found_version(self):
        """The schema version, asked on a connection of its own (for messages)."""
        from cronpolicy import schema
        try:
            connection = pgdriver.connect(self.dsn, self.connect_timeout,
                                          self.application_name, self.source)
        except Exception:
            return None
        try:
            return schema.postgres_version(connection)
        except Exception:
            return None
        finally:
            connection.close()

    def _drop_connection(self):
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass
            self._connection = None

    # IPolicySource ---------------------------------------------------------------

    def load_inputs(self, name, history_runs):
        """Read everything the decision needs; transient failures are retried
        with jittered backoff until ``timeout`` runs out."""
        [row] = self._retrying("load_inputs", {"name": name, "runs": int(history_runs)},
                               "read the policy")
        if row["scarce"] and not self.scarce:
            self._become_scarce()
        return self._inputs(row)

    def _retrying(self, query, parameters, doing, only_when_full=False, idempotent=False):
        """``_execute``, with transient failures retried after a jittered,
        doubling pause until ``timeout`` runs out: for statements that may be
        sent twice.  ``only_when_full``: retry only a server out of
        connections (one will free up) or a race lost to a transaction its
        snapshot did not see (sent again, it sees it); other failures fail at once."""
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        last = None         # the last failure that said what was wrong
        while True:
            try:
                return self._execute(query, parameters, doing, deadline, idempotent)
            except SchemaError:
                raise
            except pgdriver.DeadlineExceeded as error:
                self._drop_connection()
                # Time ran out during a retry: the earlier failure tells more.
                raise (last or error) from None
            except DatabaseError as error:
                if only_when_full and not (error.raced or pgdriver.out_of_connections(error)):
                    raise       # as _execute left it: nothing to wait for
                self._drop_connection()
                last = error
                import random  # only when retrying: keep it off the normal path
                pause = random.uniform(delay / 2, delay)
                if not error.transient or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
                delay = min(delay * 2, 1.0)

    def policy_version(self):
        """The policy's version number (schema patch 0019): one small row."""
        rows = self._execute("policy_version", None, "read the policy's version",
                             idempotent=True)
        return rows[0]["version"] if rows else None    # row deleted: read the policy whole

    def _inputs(self, row):
        from cronpolicy import schema
        version = row["schema_version"]
        if version is None or version < schema.SCHEMA_VERSION:
            raise SchemaError(schema.needs_upgrade_message(version, self.masked_dsn))
        return Inputs(
            now=to_time(row["now"]), schema_version=version,
            deploy=None if row["deploy"] is None else from_mapping(DeployState, row["deploy"]),
            policies=[from_mapping(PolicyRow, policy) for policy in row["policies"]],
            windows=[from_mapping(Window, window) for window in row["windows"]],
            recent_runtimes=[float(value) for value in row["recent_runtimes"]
                             if value is not None],
            services=[from_mapping(ServiceDeploy, service) for service in row["services"]],
            rollouts=[from_mapping(Rollout, rollout) for rollout in row["rollouts"]],
            policy_version=row["policy_version"])

    # IRunRecorder -------------------------------------------------------------------

    def record_skip(self, record):
        [row] = self._execute("record_skip", record._asdict(),
                              "record the skip of %s" % record.name)
        return RunHandle(row["id"], record)

    # Both may be sent twice (the run's key, the run's id): under a full
    # server they wait for a connection rather than leave the run unseen
    # (an unreachable one still fails at once: the spool takes the record).

    def record_start(self, record):
        [row] = self._retrying("record_start", dict(record._asdict(), ttl=self.lease_ttl),
                               "record the start of %s" % record.name, only_when_full=True)
        return RunHandle(row["id"], record)

    def record_finish(self, run, end):
        self._retrying("record_finish", dict(end._asdict(), id=run.id),
                       "record the end of run %s" % run.id, only_when_full=True,
                       idempotent=True)

    # Holding a run --------------------------------------------------------------------

    def heartbeat(self, run, safe_to_interrupt):
        slot = self._slot or {"name": None, "slot": None, "run_key": None}
        [row] = self._execute("heartbeat", dict(slot, id=run.id, safe=bool(safe_to_interrupt),
                                                ttl=self.lease_ttl),
                              "renew the lease of run %s" % run.id, idempotent=True)
        if row["scarce"] and not self.scarce:
            self._become_scarce()
        return bool(row["runs"] and row["standing"]) and (self._slot is None or bool(row["slots"]))

    @property
    def held_slot(self):
        """[name, slot] of the fleet-wide slot this run holds, or None (for a relay)."""
        return None if self._slot is None else [self._slot["name"], self._slot["slot"]]

    def claim_slot(self, record, limit):
        """Take one of the ``limit`` fleet-wide slots of ``record.name`` for
        the run keyed ``record.spool_id``: a free one, or one whose lease ran out."""
        deadline = time.monotonic() + self.timeout
        for slot in range(limit):
            wanted = {"name": record.name, "slot": slot, "run_key": record.spool_id}
            # Held from the moment it is asked for: if the reply is lost, close()
            # still gives it back (it removes only this run's row).
            self._slot = wanted
            while True:
                try:
                    taken = self._execute("take_slot",
                                          dict(wanted, host=record.host, ttl=self.lease_ttl),
                                          "take a fleet-wide slot of %s" % record.name, deadline)
                except DatabaseError as error:
                    # Lost a race to a transaction this one could not see
                    # (another host freeing the same expired slot, under
                    # repeatable read): rolled back, so sent again it sees it.
                    if not error.raced or time.monotonic() >= deadline:
                        raise
                    continue
                break
            if taken:
                return True
            self._slot = None
        return False

    def listen(self):
        """LISTEN from now on (and again on every reconnect): at once on an
        open connection, else with the first statement of the next one."""
        if not self.hold_connection or self.scarce or self._listening:
            return      # a pooler would lose it, or no connection may be held: the watcher polls
        self._listening = True
        with self._lock:
            if self._connection is not None and not self._connection.closed:
                self._execute("listen", None, "listen for policy changes")
            else:
                self._listen_due = True

    def release(self):
        """Between uses: close the connection unless told to hold it and
        connections are plentiful."""
        if not self.hold_connection or self.scarce:
            with self._lock:
                self._drop_connection()

    def _become_scarce(self):
        """Hold no connection between statements from now on: no LISTEN
        (the watcher polls once fileno() is None)."""
        self.scarce = True
        self._listening = self._listen_due = False

    def fileno(self):
        if self._connection is None or self._connection.closed:
            return None
        return self._connection.fileno()

    def take_notifications(self):
        import psycopg2
        with self._lock:
            if self._connection is None or self._connection.closed:
                return 0
            try:
                self._connection.poll()
            except psycopg2.Error as error:
                self._drop_connection()
                raise pgdriver.translate(error, "read notifications", self.dsn) from error
            count = len(self._connection.notifies) + (1 if self._missed else 0)
            del self._connection.notifies[:]
            self._missed = False
            return count

    # The spool and the end --------------------------------------------------------------

    def apply_spooled(self, entry):
        if entry.record is not None:
            self._execute("apply_spooled_run", entry.record._asdict(), "write a spooled run")
        else:
            self._execute("apply_spooled_finish", dict(entry.end._asdict(), id=entry.run_id),
                          "write the spooled end of run %s" % entry.run_id)

    def close(self):
        """Give back the fleet-wide slot (best effort: its lease runs out
        anyway) and close the connection."""
        with self._lock:
            if self._slot is not None:
                try:
                    self._execute("give_back_slot", self._slot, "give back the fleet-wide slot")
                except DatabaseError as error:
                    # Its lease runs out anyway; until then the slot stays taken.
                    import logging
                    logging.getLogger("cronpolicy").info(
                        "could not give back the fleet-wide slot of %s: %s",
                        self._slot["name"], error)
            self._drop_connection()
            self._listening = self._missed = self._listen_due = False
            self._slot = None
