"""The embedded store: cronpolicy's tables in one SQLite file, for one machine.

The file is attached as ``cronpolicy`` so the SQL names match PostgreSQL's,
and its schema is created (or upgraded) on first use.  SQLite has no
notifications (running scripts poll).  Runs and fleet-wide slots live by
lease, as on PostgreSQL.  Waits for the write lock are bounded by
the busy timeout (``timeout``).  The watcher thread and the main thread
share the store; a lock keeps their transactions apart.  The statements are
in sqlite.sql.
"""

import os
import _thread

from cronpolicy import config, schema
from cronpolicy.errors import ConfigError, DatabaseError
from cronpolicy.rows import (
    DeployState, Inputs, PolicyRow, Rollout, RunHandle, ServiceDeploy, Window, from_mapping,
    to_time)
from cronpolicy.store import UNSENDABLE, queries, unsendable
from cronpolicy.timeutil import to_sqlite


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
    _check_place(path, directory)
    try:
        # The watcher thread uses the connection while main() runs (never both at once).
        connection = sqlite3.connect(":memory:", timeout=busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        # SQLite keeps whatever bytes were cast to text (a DBA's plain SQL):
        # read them as text with U+FFFD for what is not UTF-8, so that one
        # such value is shown, not every command refused (the gate's too).
        connection.text_factory = _text
        connection.execute("ATTACH DATABASE ? AS cronpolicy", (path,))
        _switch_to_wal(connection, busy_timeout)
        # Passing states (a start, a heartbeat, a slot) are not worth an
        # fsync each: in WAL mode a crash of the process loses none of them,
        # a power cut at worst the last ones, and a run that lost its power
        # is abandoned anyway.  Final states are written durably (_durable).
        connection.execute("PRAGMA cronpolicy.synchronous = NORMAL")
    except sqlite3.Error as error:
        raise DatabaseError("cannot open SQLite database %s: %s%s"
                            % (path, error, _full(directory))) from error
    return connection


def _full(directory):
    """"; its file system is full" when it is: SQLite says "disk I/O
    error" when it cannot size its -shm file on a full disk, which would
    send an operator to look at the hardware."""
    try:
        space = os.statvfs(directory)
    except OSError:
        return ""
    return "; its file system is full" if space.f_bavail == 0 else ""


def _check_place(path, directory):
    """The SQLite file is written (and its -wal and -shm made beside it) as
    every file cronpolicy writes: in a directory no other user may write
    into (cronpolicy.safety), and not through a symbolic link another user
    planted at its name.  (SQLite follows links: as root it wrote its schema
    into whatever file such a link named, and made it when missing.)"""
    import stat
    from cronpolicy.safety import checked_directory, create_exclusive, planted
    checked_directory(directory, "SQLite database directory")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        # Made here, a plain file of this user's, so that what SQLite opens
        # is that file: a link another user planted in /tmp between this
        # check and SQLite's open would have been followed (and its target
        # made).  Once made, no other user may rename it away (the
        # directory is this user's, or sticky).
        try:
            os.close(create_exclusive(path, 0o644))     # SQLite's own mode
            return
        except FileExistsError:
            info = os.lstat(path)       # planted meanwhile: judged below
        except OSError:
            return      # SQLite says what is wrong, as before
    except OSError:
        return
    own = os.geteuid()
    if info.st_uid not in (own, 0) and not stat.S_ISLNK(info.st_mode):
        # Its owner could swap it for a link between this check and
        # SQLite's open, in a directory others may write (/tmp: sticky
        # keeps others out of a name, never its owner).
        mode = os.stat(directory).st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError("refusing the SQLite database %s: it is owned by uid %d in a "
                              "directory other users may write into; other users could make "
                              "cronpolicy overwrite files" % (path, info.st_uid))
    problem = planted(info)     # (SQLite itself warns of a database with several names)
    if problem:
        raise ConfigError("refusing the SQLite database %s: %s; other users could make "
                          "cronpolicy overwrite files" % (path, problem))


#: SQLite's primary result code for a write to a database it opened read-only.
_SQLITE_READONLY = 8


def _read_only(error):
    """Whether sqlite3's ``error`` says the file may not be written by this
    process (its mode, or its directory's: SQLITE_READONLY and kin)."""
    code = getattr(error, "sqlite_errorcode", None)        # Python 3.11+
    if code is not None:
        return code & 0xff == _SQLITE_READONLY
    return "readonly database" in str(error)


def _text(value):
    """A text value as SQLite holds it (bytes), as str; never refused."""
    return str(value, "utf-8", "replace")


def _switch_to_wal(connection, busy_timeout):
    """PRAGMA journal_mode = WAL, waiting as the busy timeout would: when
    the first scripts of a host open a new file at the same moment, SQLite
    may answer one's switch with "database is locked" at once, without
    asking its busy handler (a script exited 4).  A file already in WAL
    mode (every open but the first) is not switched again."""
    import sqlite3
    import time
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            if connection.execute("PRAGMA cronpolicy.journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA cronpolicy.journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


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


def _values(shape_value):
    """Named parameters for SQLite: times as its text, booleans as 0/1."""
    values = {}
    for field, value in shape_value._asdict().items():
        if shape_value.kinds.get(field) == "time" and value is not None:
            value = to_sqlite(value)
        elif isinstance(value, bool):
            value = int(value)
        values[field] = value
    return values


class SQLiteStore:
    """IPolicyStore on an embedded SQLite file, created on first use."""

    backend = config.SQLITE

    def __init__(self, path, timeout=config.DEFAULT_CONNECT_TIMEOUT, create_directory=False,
                 lease_ttl=config.DEFAULT_LEASE_TTL):
        self.path = path
        self.masked_dsn = "sqlite:///" + path
        self.timeout = timeout
        self.create_directory = create_directory
        self.lease_ttl = lease_ttl
        self._sql = queries("sqlite")
        self._lock = _thread.RLock()
        self._connection = None
        self._slot = None

    def _run(self, doing, work):
        """``work(connection)``, with sqlite3's errors made cronpolicy's."""
        import sqlite3
        with self._lock:
            if self._connection is None:
                self._connection = open_sqlite(self.path, self.timeout, self.create_directory)
            connection = self._connection
            try:
                return work(connection)
            except sqlite3.Error as error:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                denied = _read_only(error)
                raise DatabaseError(
                    "cannot %s in %s: %s" % (doing, self.path, error),
                    transient=isinstance(error, sqlite3.OperationalError) and not denied,
                    # A file this user may read but not write: as a missing
                    # privilege on PostgreSQL, no outage to run through
                    # (the run would go on unseen by `deploy wait`).
                    denied=denied,
                    # A CHECK, NOT NULL or UNIQUE, a guard trigger's
                    # RAISE(ABORT) (IntegrityError); a value too big (DataError).
                    refused=isinstance(error, (sqlite3.IntegrityError, sqlite3.DataError))
                ) from error
            except UNSENDABLE as error:     # a value sqlite3 would not bind
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise unsendable(error, doing, self.path) from error

    def _write(self, query, values, doing, durable=False):
        """One statement, its own transaction; its rows (RETURNING).
        ``durable``: synced to disk before it returns (a run's outcome).
        It commits explicitly (with RETURNING an implicit transaction would
        commit only once its rows were fetched), then is made durable by
        _sync."""
        def write(connection):
            if not durable:
                return connection.execute(self._sql[query], values).fetchall()
            connection.execute("BEGIN IMMEDIATE")
            try:
                rows = connection.execute(self._sql[query], values).fetchall()
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            self._sync(connection)
            return rows
        return self._run(doing, write)

    def _sync(self, connection):
        """Make what was committed durable: a checkpoint of the WAL, which
        syncs the WAL (the commit is safe from there) and then the database
        file.  A commit under synchronous = FULL would sync the WAL too, but
        the last close checkpoints anyway (two more syncs: the floor's
        rollback journal needs four for a write, a start and its end needed
        five); after this one the close finds nothing left to copy, and a
        run costs the floor's four (issue 32.1).  When the checkpoint could
        not copy everything (another connection reads an older snapshot, or
        checkpoints itself) the WAL file is synced here instead: SQLite
        locks the -shm and the database file, never the -wal, so our own
        descriptor on it disturbs no lock."""
        import sqlite3
        try:
            busy, frames, copied = connection.execute(
                "PRAGMA cronpolicy.wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.OperationalError:
            # The database file could not grow (a full disk): the commit is
            # made all the same, and safe once the WAL is synced, below.
            # Raising would have the caller spool, or say lost, a record
            # that is in the database.
            busy, frames, copied = 1, -1, -1
        if busy == 0 and frames >= 0 and copied == frames:
            return          # all of the WAL is in the database file, synced
        # The file as SQLite named it (its links resolved): the WAL is beside it.
        wal = [file for _, name, file in connection.execute("PRAGMA database_list")
               if name == "cronpolicy"][0] + "-wal"
        try:
            descriptor = os.open(wal, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fdatasync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as error:
            raise DatabaseError("cannot sync %s: %s" % (wal, error.strerror)) from error

    # IPolicySource ---------------------------------------------------------------

    def load_inputs(self, name, history_runs):
        sql = self._sql

        def read(connection):
            import sqlite3
            rows = connection.cursor()
            rows.row_factory = sqlite3.Row     # rows by column name, for rows.from_mapping
            connection.execute("BEGIN")
            try:
                now = connection.execute(sql["now"]).fetchone()[0]
                return (now, connection.execute(sql["schema_version"]).fetchone()[0],
                        rows.execute(sql["deploy_state"]).fetchone(),
                        rows.execute(sql["policies"]).fetchall(),
                        rows.execute(sql["standing_windows"], {"now": now}).fetchall(),
                        connection.execute(sql["recent_runtimes"], {
                            "name": name, "runs": int(history_runs)}).fetchall(),
                        rows.execute(sql["services"]).fetchall(),
                        rows.execute(sql["open_rollouts"]).fetchall(),
                        connection.execute(sql["policy_version"]).fetchone())
            finally:
                connection.execute("COMMIT")

        now, version, deploy, policies, windows, runtimes, services, rollouts, moved = self._run(
            "read the policy", read)
        return Inputs(
            now=to_time(now), schema_version=version,
            deploy=None if deploy is None else from_mapping(DeployState, deploy),
            policies=[from_mapping(PolicyRow, row) for row in policies],
            windows=[from_mapping(Window, row) for row in windows],
            # NULL where SQLite cannot compute one (a year beyond 9999).
            recent_runtimes=[float(value) for (value,) in runtimes if value is not None],
            services=[from_mapping(ServiceDeploy, row) for row in services],
            rollouts=[from_mapping(Rollout, row) for row in rollouts],
            policy_version=None if moved is None else moved[0])

    def policy_version(self):
        """The policy's version number (schema patch 0019): one small row."""
        row = self._run("read the policy's version", lambda connection: connection.execute(
            self._sql["policy_version"]).fetchone())
        return None if row is None else row[0]     # row deleted: read the policy whole

    # IRunRecorder -------------------------------------------------------------------

    def record_skip(self, record):
        return RunHandle(self._write("record_skip", _values(record),
                                     "record the skip of %s" % record.name,
                                     durable=True)[0][0], record)

    def record_start(self, record):
        return RunHandle(self._write("record_start", dict(_values(record), ttl=self.lease_ttl),
                                     "record the start of %s" % record.name)[0][0], record)

    def record_finish(self, run, end):
        self._write("record_finish", dict(_values(end), id=run.id),
                    "record the end of run %s" % run.id, durable=True)

    # Holding a run --------------------------------------------------------------------

    def heartbeat(self, run, safe_to_interrupt):
        def renew(connection):
            connection.execute("BEGIN IMMEDIATE")
            try:
                standing = connection.execute(self._sql["lease_standing"], {"id": run.id}
                                              ).fetchone()
                runs = connection.execute(self._sql["heartbeat"], {
                    "id": run.id, "safe": int(bool(safe_to_interrupt)),
                    "ttl": self.lease_ttl}).rowcount
                slots = connection.execute(self._sql["renew_slot"], dict(
                    self._slot, ttl=self.lease_ttl)).rowcount if self._slot else 1
            finally:
                connection.execute("COMMIT")
            return bool(standing and standing[0]) and bool(runs) and bool(slots)
        return self._run("renew the lease of run %s" % run.id, renew)

    def claim_slot(self, record, limit):
        """Take one of the ``limit`` fleet-wide slots of ``record.name``: a
        free one, or one whose lease ran out."""
        for slot in range(limit):
            wanted = {"name": record.name, "slot": slot, "run_key": record.spool_id}

            def take(connection):
                connection.execute("BEGIN IMMEDIATE")
                try:
                    connection.execute(self._sql["free_expired_slot"], wanted)
                    return connection.execute(self._sql["take_slot"], dict(
                        wanted, host=record.host, ttl=self.lease_ttl)).fetchall()
                finally:
                    connection.execute("COMMIT")
            if self._run("take a fleet-wide slot of %s" % record.name, take):
                self._slot = wanted
                return True
        return False

    def listen(self):
        """SQLite has no notifications; the watcher polls instead."""

    def fileno(self):
        return None

    def release(self):
        """The file stays open: opening it again costs more than it saves."""

    def take_notifications(self):
        return 0

    # The spool and the end --------------------------------------------------------------

    def apply_spooled(self, entry):
        if entry.record is not None:
            self._write("apply_spooled_run", _values(entry.record), "write a spooled run",
                        durable=True)
        else:
            self._write("apply_spooled_finish", dict(_values(entry.end), id=entry.run_id),
                        "write the spooled end of run %s" % entry.run_id, durable=True)

    def close(self):
        """Give back the fleet-wide slot (best effort: its lease runs out
        anyway) and close the file."""
        with self._lock:
            if self._slot is not None:
                try:
                    self._write("give_back_slot", self._slot, "give back the fleet-wide slot")
                except DatabaseError:
                    pass
                self._slot = None
            if self._connection is not None:
                self._connection.close()
                self._connection = None
