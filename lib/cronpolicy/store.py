"""The gate's view of the policy database: one read, then history writes.

Two providers of ``interfaces.IPolicyStore``:

* PostgresStore: the fleet-wide store.  All decision inputs arrive in a
  single statement (one round trip), timed by the server's ``now()`` so that
  every host agrees on the time.
* SQLiteStore: the embedded default for one machine.  The file is attached
  as ``cronpolicy`` so the SQL names match PostgreSQL's, and the schema is
  created (or upgraded) automatically on first use.

Both talk to their driver directly rather than through SQLAlchemy: this code
runs before every cron job's ``main()``, and importing SQLAlchemy alone would
cost several times the decision itself.  The SQLAlchemy table definitions in
``tables.py`` remain the contract, and the tests hold both to it.
"""

import collections
import datetime
import math
import os
import threading
import time

from zope.interface import implementer

from cronpolicy import config, schema
from cronpolicy.errors import ConfigError, DatabaseError, SchemaError
from cronpolicy.interfaces import IPolicyStore
from cronpolicy.policy import DeployState, PolicyRow, Window
from cronpolicy.timeutil import from_epoch, from_sqlite, to_sqlite

#: What ``load_inputs`` returns.  ``now`` is the database clock (aware UTC);
#: ``deploy`` is None when the deploy_state row is missing;
#: ``recent_runtimes`` are seconds, newest first.
DecisionInputs = collections.namedtuple(
    "DecisionInputs", "now schema_version deploy policies windows recent_runtimes")

#: A statement may not wait longer than this (lock waits included).
STATEMENT_TIMEOUT_SECONDS = 30

#: PostgreSQL's channel for policy, window and deploy-state changes.
NOTIFY_CHANNEL = "cronpolicy_policy"

# Advisory lock keys (two int4 form).  A running script's session holds
# (RUN_LOCK_CLASS, run id mod 2^31-1) for the run's lifetime, so its death is
# visible at once in pg_locks; a fleet-wide single instance holds
# (FLEET_LOCK_CLASS, hashtext(name)).
RUN_LOCK_CLASS = 0x43524F4E    # 'CRON'
FLEET_LOCK_CLASS = 0x43524F46  # 'CROF'
LOCK_KEY_MODULUS = 2147483647


def _lock_key(run_id):
    return run_id % LOCK_KEY_MODULUS


class DeadlineExceeded(DatabaseError):
    """The database did not answer within the time allowed."""

    def __init__(self, message):
        super().__init__(message, transient=True)


def within(deadline, work, doing):
    """Run ``work()`` but give up at ``deadline`` (time.monotonic()).

    libpq's own timeouts are whole seconds and do not cover a server that
    accepts a connection and then says nothing, so the bound is kept here:
    ``work`` runs in a daemon thread that is abandoned if it overruns (its
    connection must not be used again).
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlineExceeded("no time left to %s" % doing)
    outcome = {}

    def target():
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed over to the caller
            outcome["error"] = error
    worker = threading.Thread(target=target, name="cronpolicy-deadline", daemon=True)
    worker.start()
    worker.join(remaining)
    if worker.is_alive():
        raise DeadlineExceeded("the database did not answer within %.1fs while trying to %s"
                               % (remaining, doing))
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# Connection failures that say nothing will change by retrying.
_PERMANENT_CONNECT_ERRORS = ("password authentication failed", "does not exist",
                             "no pg_hba.conf entry", "role", "invalid dsn", "SSL")
# Server states worth waiting out: too many connections, starting or
# shutting down, connection failures.
_TRANSIENT_SQLSTATES = frozenset(["53300", "53400", "57P01", "57P02", "57P03",
                                  "08000", "08001", "08003", "08004", "08006"])


def _dsn_has_options(dsn):
    """Whether the DSN sets libpq's ``options`` itself (then it is left alone)."""
    from psycopg2.extensions import parse_dsn
    try:
        return "options" in parse_dsn(dsn)
    except Exception:
        return False  # connect() reports the unparsable DSN


# libpq's words for a DSN it cannot parse: configuration, not connectivity.
_DSN_SYNTAX_ERRORS = ("invalid integer value", "invalid connection option", 'missing "="',
                      "unterminated quoted string", "invalid sslmode value",
                      "invalid URI", "invalid port number")


def _connect_failure(error, dsn):
    message = first_line(error)
    transient = (getattr(error, "pgcode", None) in _TRANSIENT_SQLSTATES
                 or not any(marker in message for marker in _PERMANENT_CONNECT_ERRORS))
    return DatabaseError("cannot connect to %s: %s" % (
        config.mask_dsn(dsn), config.scrub(message, dsn)), transient=transient)


def first_line(error):
    text = (getattr(error, "pgerror", None) or str(error) or type(error).__name__).strip()
    line = text.splitlines()[0].strip() if text else type(error).__name__
    for prefix in ("ERROR:", "FATAL:"):
        if line.startswith(prefix):
            line = line[len(prefix):].strip()
    return line


def open_store(settings, application_name="cronpolicy"):
    """The IPolicyStore provider for ``settings.dsn``."""
    if settings.backend == config.SQLITE:
        return SQLiteStore(config.sqlite_path(settings.dsn),
                           busy_timeout=settings.connect_timeout,
                           create_directory=settings.dsn_source == "default")
    return PostgresStore(settings.dsn, connect_timeout=settings.connect_timeout,
                         application_name=application_name, source=settings.dsn_source)


# PostgreSQL -----------------------------------------------------------------

def connect_postgres(dsn, connect_timeout=config.DEFAULT_CONNECT_TIMEOUT,
                     application_name="cronpolicy", source=None, statement_timeout=True):
    """A psycopg2 connection with bounded connect and statement times."""
    import psycopg2
    options = {
        "connect_timeout": max(1, int(math.ceil(connect_timeout))),
        "application_name": application_name[:63],
        # A dead server or network is noticed within about a minute.
        "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    if statement_timeout and not _dsn_has_options(dsn):
        options["options"] = "-c statement_timeout=%d" % (STATEMENT_TIMEOUT_SECONDS * 1000)
    try:
        return psycopg2.connect(dsn, **options)
    except psycopg2.Error as error:
        if not (isinstance(error, psycopg2.ProgrammingError)
                or any(marker in first_line(error) for marker in _DSN_SYNTAX_ERRORS)):
            raise _connect_failure(error, dsn) from error
        raise ConfigError("invalid PostgreSQL DSN %s%s: %s" % (
            config.mask_dsn(dsn), " (from %s)" % source if source else "",
            config.scrub(first_line(error), dsn))) from error

# Undefined table, column, schema, function: the schema is missing or old.
_SCHEMA_SQLSTATES = frozenset(["42P01", "42703", "3F000", "42883"])

_LOAD_INPUTS_SQL = """
SELECT extract(epoch FROM now()),
  (SELECT max(version) FROM cronpolicy.schema_version),
  (SELECT json_build_array(deploy_pending, reason, changed_by, extract(epoch FROM changed_at))
     FROM cronpolicy.deploy_state WHERE id = 1),
  (SELECT coalesce(json_agg(json_build_array(
            id, name, host, enabled, reason, extract(epoch FROM expected_runtime),
            rollout_exempt, changed_by, extract(epoch FROM changed_at),
            interruptible, fleet_single_instance)), '[]')
     FROM cronpolicy.script_policy),
  (SELECT coalesce(json_agg(json_build_array(
            id, extract(epoch FROM starts_at), extract(epoch FROM ends_at), reason, host, script)), '[]')
     FROM cronpolicy.rollout_window WHERE cancelled_at IS NULL AND ends_at > now()),
  (SELECT coalesce(json_agg(seconds), '[]') FROM (
     SELECT extract(epoch FROM finished_at - started_at) AS seconds
       FROM cronpolicy.script_run
      WHERE name = %(name)s AND status = 'succeeded'
      ORDER BY finished_at DESC LIMIT %(runs)s) AS recent)
"""

_COLUMNS = ("name, host, pid, estimate_seconds, estimate_source, skip_reason,"
            " decision, policy_id, window_id, expected_interval")


def _policy_row(row, parse_time):
    return PolicyRow(row[0], row[1], row[2], bool(row[3]), row[4],
                     None if row[5] is None else float(row[5]), bool(row[6]), row[7],
                     parse_time(row[8]), bool(row[9]),
                     None if row[10] is None else bool(row[10]))


def _decision_values(decision, expected_interval=None):
    """(code, policy id, window id, expected interval) of a policy.Decision or a bare code."""
    if decision is None:
        return None, None, None, expected_interval
    if isinstance(decision, str):
        return decision, None, None, expected_interval
    return (decision.code, decision.policy.id if decision.policy is not None else None,
            decision.window.id if decision.window is not None else None, expected_interval)


def _with_decision(entry):
    """A spooled run entry with the decision fields older spools lack."""
    return dict({"decision": None, "policy_id": None, "window_id": None,
                 "expected_interval": None}, **entry)


def _estimate_values(estimate):
    if estimate is None:
        return None, None
    return estimate.seconds, estimate.source


@implementer(IPolicyStore)
class PostgresStore:
    """IPolicyStore on PostgreSQL (schema ``cronpolicy``)."""

    backend = config.POSTGRESQL

    def __init__(self, dsn, connect_timeout=config.DEFAULT_CONNECT_TIMEOUT,
                 application_name="cronpolicy", source=None):
        self.dsn = dsn
        self.source = source
        self.connect_timeout = connect_timeout
        self.application_name = application_name
        self._connection = None
        self._listening = False
        self._run_lock = None       # run id whose liveness lock this session holds
        self._fleet_lock = None     # script name whose fleet-wide lock it holds

    @property
    def masked_dsn(self):
        return config.mask_dsn(self.dsn)

    def _connect(self):
        """Open the connection; on a reconnect, take back what the run held."""
        connection = connect_postgres(self.dsn, self.connect_timeout, self.application_name,
                                      self.source)
        connection.autocommit = True
        self._connection = connection
        import psycopg2
        try:
            self._take_back(connection)
        except psycopg2.Error as error:
            self._drop_connection()
            raise _connect_failure(error, self.dsn) from error
        except DatabaseError:
            self._drop_connection()
            raise
        return connection

    def _take_back(self, connection):
        with connection.cursor() as cursor:
            if self._listening:
                cursor.execute("LISTEN " + NOTIFY_CHANNEL)
            if self._run_lock is not None:
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)",
                               (RUN_LOCK_CLASS, _lock_key(self._run_lock)))
                if not cursor.fetchone()[0]:
                    raise DatabaseError("cannot take back the liveness lock of run %s"
                                        % self._run_lock)
            if self._fleet_lock is not None:
                cursor.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                               (FLEET_LOCK_CLASS, self._fleet_lock))
                if not cursor.fetchone()[0]:
                    lost, self._fleet_lock = self._fleet_lock, None
                    raise DatabaseError("lost the fleet-wide lock of %s while reconnecting"
                                        % lost)

    def _execute(self, sql, parameters, doing, idempotent=False):
        import psycopg2
        reused = self._connection is not None and not self._connection.closed
        if not reused:
            self._connect()
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(sql, parameters)
                return cursor.fetchone() if cursor.description else None
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
            # The connection kept open across main() may have died with a
            # server restart; a statement that is safe to repeat gets one
            # more try on a fresh connection.
            if reused and idempotent and self._connection.closed:
                self._drop_connection()
                return self._execute(sql, parameters, doing)
            self._raise(error, doing)
        except psycopg2.Error as error:
            self._raise(error, doing)

    def _raise(self, error, doing):
        import psycopg2
        if getattr(error, "pgcode", None) in _SCHEMA_SQLSTATES:
            raise SchemaError(schema.needs_upgrade_message(
                self._found_version(), self.masked_dsn)) from error
        # Keep what the run holds (liveness lock, fleet lock, LISTEN): the
        # next statement reconnects and takes it back.
        self._drop_connection()
        transient = (isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError))
                     or getattr(error, "pgcode", None) in _TRANSIENT_SQLSTATES)
        raise DatabaseError("cannot %s in %s: %s" % (
            doing, self.masked_dsn, config.scrub(first_line(error), self.dsn)),
            transient=transient) from error

    def _found_version(self):
        try:
            return schema.postgres_version(self._connection)
        except Exception:
            return None

    def load_inputs(self, name, history_runs):
        row = self._execute(_LOAD_INPUTS_SQL, {"name": name, "runs": int(history_runs)},
                            "read the policy")
        epoch, version, deploy, policies, windows, runtimes = row
        if version is None or version < schema.SCHEMA_VERSION:
            raise SchemaError(schema.needs_upgrade_message(version, self.masked_dsn))
        return DecisionInputs(
            now=from_epoch(epoch),
            schema_version=version,
            deploy=None if deploy is None else DeployState(
                bool(deploy[0]), deploy[1], deploy[2], from_epoch(deploy[3])),
            policies=[_policy_row(row, from_epoch) for row in policies],
            windows=[Window(row[0], from_epoch(row[1]), from_epoch(row[2]),
                            row[3], row[4], row[5]) for row in windows],
            recent_runtimes=[float(value) for value in runtimes])

    def record_start(self, name, host, pid, estimate, skip_reason=None,
                     policy_ignored=False, decision=None, expected_interval=None):
        # One statement: the row becomes visible only once the session holds
        # the run's liveness lock, so no reader ever sees it unlocked.
        row = self._execute(
            "WITH run AS (INSERT INTO cronpolicy.script_run (%s, policy_ignored, heartbeat_at)"
            " VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, now()) RETURNING id)"
            " SELECT id, pg_advisory_lock(%d, (id %%%% %d)::integer) FROM run"
            % (_COLUMNS, RUN_LOCK_CLASS, LOCK_KEY_MODULUS),
            (name, host, pid) + _estimate_values(estimate) + (skip_reason,)
            + _decision_values(decision, expected_interval) + (bool(policy_ignored),),
            "record the start of %s" % name)
        self._run_lock = row[0]
        return row[0]

    def record_skip(self, name, host, pid, estimate, skip_reason, decision=None,
                    expected_interval=None):
        row = self._execute(
            "INSERT INTO cronpolicy.script_run (%s, status, finished_at) VALUES"
            " (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, 'skipped', now()) RETURNING id"
            % _COLUMNS,
            (name, host, pid) + _estimate_values(estimate) + (skip_reason,)
            + _decision_values(decision, expected_interval),
            "record the skip of %s" % name)
        return row[0]

    def record_finish(self, run_id, status, exit_code, stop_reason=None):
        self._execute(
            "UPDATE cronpolicy.script_run SET status = %s, exit_code = %s, stop_reason = %s,"
            " finished_at = greatest(now(), started_at) WHERE id = %s",
            (status, exit_code, stop_reason, run_id), "record the end of run %s" % run_id,
            idempotent=True)

    def apply_spooled(self, entry):
        if entry["kind"] == "run":
            self._execute(
                "INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                " status, exit_code, skip_reason, estimate_seconds, estimate_source,"
                " policy_ignored, stop_reason, spool_id, decision, policy_id, window_id,"
                " expected_interval)"
                " VALUES (%(name)s, %(host)s, %(pid)s, %(started_at)s,"
                " greatest(%(started_at)s::timestamptz, %(finished_at)s::timestamptz),"
                " %(status)s, %(exit_code)s, %(skip_reason)s, %(estimate_seconds)s,"
                " %(estimate_source)s, %(policy_ignored)s, %(stop_reason)s, %(spool_id)s,"
                " %(decision)s, %(policy_id)s, %(window_id)s, %(expected_interval)s)"
                " ON CONFLICT (spool_id) DO NOTHING", _with_decision(entry), "write a spooled run")
        else:
            self._execute(
                "UPDATE cronpolicy.script_run SET status = %(status)s, exit_code = %(exit_code)s,"
                " stop_reason = %(stop_reason)s,"
                " finished_at = greatest(started_at, %(finished_at)s::timestamptz)"
                " WHERE id = %(run_id)s AND status IN ('running', 'abandoned')",
                entry, "write the spooled end of run %s" % entry["run_id"])

    def heartbeat(self, run_id, safe_to_interrupt):
        # A run reaped as abandoned while the database was out of reach
        # comes back to life with its first heartbeat.
        self._execute(
            "UPDATE cronpolicy.script_run SET heartbeat_at = now(), safe_to_interrupt = %s,"
            " status = 'running', finished_at = NULL, stop_reason = NULL"
            " WHERE id = %s AND status IN ('running', 'abandoned')",
            (bool(safe_to_interrupt), run_id), "record a heartbeat of run %s" % run_id,
            idempotent=True)

    def try_fleet_lock(self, name):
        row = self._execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                            (FLEET_LOCK_CLASS, name), "take the fleet-wide lock of %s" % name)
        if row[0]:
            self._fleet_lock = name
        return bool(row[0])

    def listen(self):
        self._listening = True
        self._execute("LISTEN " + NOTIFY_CHANNEL, None, "listen for policy changes")

    def fileno(self):
        if self._connection is None or self._connection.closed:
            return None
        return self._connection.fileno()

    def take_notifications(self):
        import psycopg2
        if self._connection is None or self._connection.closed:
            return 0
        try:
            self._connection.poll()
        except psycopg2.Error as error:
            self._raise(error, "read notifications")
        count = len(self._connection.notifies)
        del self._connection.notifies[:]
        return count

    def _drop_connection(self):
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass
            self._connection = None

    def close(self):
        self._drop_connection()
        self._listening = False
        self._run_lock = None
        self._fleet_lock = None


# SQLite ---------------------------------------------------------------------

_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def connect_sqlite(path, busy_timeout=config.DEFAULT_CONNECT_TIMEOUT, create_directory=False):
    """A sqlite3 connection with ``path`` attached as ``cronpolicy``.

    Autocommit mode (isolation_level=None): transactions are explicit.
    """
    import sqlite3
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        if not create_directory:
            raise ConfigError("cannot open SQLite database %s: directory %s does not exist"
                              % (path, directory))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as error:
            raise ConfigError("cannot create %s for the SQLite database: %s"
                              % (directory, error.strerror)) from error
    try:
        # The watcher thread uses the connection while main() runs (never both at once).
        connection = sqlite3.connect(":memory:", timeout=busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        connection.execute("ATTACH DATABASE ? AS cronpolicy", (path,))
        connection.execute("PRAGMA cronpolicy.journal_mode = WAL")
    except sqlite3.Error as error:
        raise DatabaseError("cannot open SQLite database %s: %s" % (path, error)) from error
    return connection


def open_sqlite(path, busy_timeout=config.DEFAULT_CONNECT_TIMEOUT, create_directory=False):
    """connect_sqlite, plus the schema created or upgraded when needed."""
    import sqlite3
    connection = connect_sqlite(path, busy_timeout, create_directory)
    try:
        version = schema.sqlite_version(connection)
        if version is None or version < schema.SCHEMA_VERSION:
            schema.upgrade_sqlite(connection)
    except sqlite3.Error as error:
        connection.close()
        raise DatabaseError("cannot create the cronpolicy schema in %s: %s"
                            % (path, error)) from error
    return connection


@implementer(IPolicyStore)
class SQLiteStore:
    """IPolicyStore on an embedded SQLite file, created on first use."""

    backend = config.SQLITE

    def __init__(self, path, busy_timeout=config.DEFAULT_CONNECT_TIMEOUT,
                 create_directory=False):
        self.path = path
        self.masked_dsn = "sqlite:///" + path
        self.busy_timeout = busy_timeout
        self.create_directory = create_directory
        self._connection = None

    def _connect(self):
        if self._connection is None:
            self._connection = open_sqlite(self.path, self.busy_timeout, self.create_directory)
        return self._connection

    def _run(self, doing, work):
        import sqlite3
        connection = self._connect()
        try:
            return work(connection)
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise DatabaseError("cannot %s in %s: %s" % (doing, self.path, error),
                                transient=isinstance(error, sqlite3.OperationalError)) from error

    def load_inputs(self, name, history_runs):
        def read(connection):
            connection.execute("BEGIN")
            try:
                now = connection.execute("SELECT " + _SQLITE_NOW).fetchone()[0]
                version = connection.execute(
                    "SELECT max(version) FROM cronpolicy.schema_version").fetchone()[0]
                deploy = connection.execute(
                    "SELECT deploy_pending, reason, changed_by, changed_at"
                    " FROM cronpolicy.deploy_state WHERE id = 1").fetchone()
                policies = connection.execute(
                    "SELECT id, name, host, enabled, reason, expected_runtime, rollout_exempt,"
                    " changed_by, changed_at, interruptible, fleet_single_instance"
                    " FROM cronpolicy.script_policy").fetchall()
                windows = connection.execute(
                    "SELECT id, starts_at, ends_at, reason, host, script"
                    " FROM cronpolicy.rollout_window"
                    " WHERE cancelled_at IS NULL AND julianday(ends_at) > julianday(?)",
                    (now,)).fetchall()
                runtimes = connection.execute(
                    "SELECT (julianday(finished_at) - julianday(started_at)) * 86400.0"
                    " FROM cronpolicy.script_run WHERE name = ? AND status = 'succeeded'"
                    " ORDER BY finished_at DESC LIMIT ?", (name, int(history_runs))).fetchall()
            finally:
                connection.execute("COMMIT")
            return now, version, deploy, policies, windows, runtimes

        now, version, deploy, policies, windows, runtimes = self._run("read the policy", read)
        return DecisionInputs(
            now=from_sqlite(now),
            schema_version=version,
            deploy=None if deploy is None else DeployState(
                bool(deploy[0]), deploy[1], deploy[2], from_sqlite(deploy[3])),
            policies=[_policy_row(row, from_sqlite) for row in policies],
            windows=[Window(row[0], from_sqlite(row[1]), from_sqlite(row[2]),
                            row[3], row[4], row[5]) for row in windows],
            recent_runtimes=[float(value) for (value,) in runtimes])

    def record_start(self, name, host, pid, estimate, skip_reason=None,
                     policy_ignored=False, decision=None, expected_interval=None):
        return self._run("record the start of %s" % name, lambda connection: connection.execute(
            "INSERT INTO cronpolicy.script_run (%s, policy_ignored, heartbeat_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, %s)" % (_COLUMNS, _SQLITE_NOW),
            (name, host, pid) + _estimate_values(estimate) + (skip_reason,)
            + _decision_values(decision, expected_interval)
            + (int(bool(policy_ignored)),)).lastrowid)

    def record_skip(self, name, host, pid, estimate, skip_reason, decision=None,
                    expected_interval=None):
        return self._run("record the skip of %s" % name, lambda connection: connection.execute(
            "INSERT INTO cronpolicy.script_run (%s, status, finished_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'skipped', %s)" % (_COLUMNS, _SQLITE_NOW),
            (name, host, pid) + _estimate_values(estimate) + (skip_reason,)
            + _decision_values(decision, expected_interval)).lastrowid)

    def record_finish(self, run_id, status, exit_code, stop_reason=None):
        self._run("record the end of run %s" % run_id, lambda connection: connection.execute(
            "UPDATE cronpolicy.script_run SET status = ?, exit_code = ?, stop_reason = ?,"
            " finished_at = max(%s, started_at) WHERE id = ?" % _SQLITE_NOW,
            (status, exit_code, stop_reason, run_id)))

    def apply_spooled(self, entry):
        values = _with_decision(entry) if entry["kind"] == "run" else dict(entry)
        for key in ("started_at", "finished_at"):
            if key in values:
                values[key] = to_sqlite(datetime.datetime.fromisoformat(values[key]))
        if entry["kind"] == "run":
            values["policy_ignored"] = int(bool(values["policy_ignored"]))
            sql = ("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                   " status, exit_code, skip_reason, estimate_seconds, estimate_source,"
                   " policy_ignored, stop_reason, spool_id, decision, policy_id, window_id,"
                   " expected_interval)"
                   " VALUES (:name, :host, :pid, :started_at, max(:started_at, :finished_at),"
                   " :status, :exit_code, :skip_reason, :estimate_seconds, :estimate_source,"
                   " :policy_ignored, :stop_reason, :spool_id, :decision, :policy_id, :window_id,"
                   " :expected_interval)"
                   " ON CONFLICT (spool_id) DO NOTHING")
        else:
            sql = ("UPDATE cronpolicy.script_run SET status = :status, exit_code = :exit_code,"
                   " stop_reason = :stop_reason, finished_at = max(started_at, :finished_at)"
                   " WHERE id = :run_id AND status IN ('running', 'abandoned')")
        self._run("write a spooled record", lambda connection: connection.execute(sql, values))

    def heartbeat(self, run_id, safe_to_interrupt):
        self._run("record a heartbeat of run %s" % run_id, lambda connection: connection.execute(
            "UPDATE cronpolicy.script_run SET heartbeat_at = %s, safe_to_interrupt = ?,"
            " status = 'running', finished_at = NULL, stop_reason = NULL"
            " WHERE id = ? AND status IN ('running', 'abandoned')" % _SQLITE_NOW,
            (int(bool(safe_to_interrupt)), run_id)))

    def try_fleet_lock(self, name):
        # One machine is the whole fleet: the per-host lock file is the fleet lock.
        return True

    def listen(self):
        """SQLite has no notifications; the watcher polls instead."""

    def fileno(self):
        return None

    def take_notifications(self):
        return 0

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None
