"""What the operator commands read, in plain SQL on a DB-API connection.

The read commands (status, check, history, estimate, why) must answer in a
fraction of a second, and importing SQLAlchemy alone costs more than that.
So what they read is here: named statements in postgresql-reads.sql and
sqlite-reads.sql (and the gate's own in postgresql.sql and sqlite.sql,
where they are the same), run on a psycopg2 or sqlite3 connection, rows turned into
objects by the shapes of ``cronpolicy.rows``.  The commands that read a
fleet's thousands of schedules (schedule list, overdue, metrics, deploy
plan) read here too, on a connection of their own (``reading``, or
``session`` for several transactions on one connection).  The SQLAlchemy
tooling (deploy wait, the dashboard, policy edits) reads through the same
``Reader``, handing over the DB-API connection beneath its own transaction
(``Reader.of``), so each statement still has one home.

``reading(settings, doing)`` is a read command's whole session: connect
(SQLite: the schema created or upgraded on first use, as for the gate),
record dead runs as abandoned if the database is free to (``reap=True``),
then one transaction that only reads (on SQLite: no write lock, so a DBA's
open write transaction does not stall it).
"""

import contextlib
import datetime
import os

from cronpolicy import config
from cronpolicy.errors import DatabaseError, SchemaError
from cronpolicy.rows import (
    AuditEntry, DeployState, Inputs, PolicyRow, Rollout, RunRow, ServiceDeploy, Window,
    from_mapping, to_time)
from cronpolicy.store import queries

#: How long a read command's best-effort write (recording dead runs) waits
#: for SQLite's write lock before doing without: live runs are told from
#: dead ones by their leases anyway.
BRIEF_WAIT = 0.25

#: A run written without a lease (hosts older than schema 8) counts as
#: leased for this long after its last sign of life.
UNLEASED_GRACE = datetime.timedelta(seconds=30)

DEPLOY_KINDS = dict(DeployState.kinds, id="int")


def window_state(window, now):
    """cancelled, over, active or upcoming."""
    if window["cancelled_at"] is not None:
        return "cancelled"
    if window["ends_at"] <= now:
        return "over"
    if window["starts_at"] <= now:
        return "active"
    return "upcoming"


def window_dict(window, now):
    """A rollout_window row (a Window or a mapping) as the commands show it."""
    found = dict(window._asdict() if hasattr(window, "_asdict") else window)
    found["state"] = window_state(found, now)
    return found


def lease_ran_out(run, now):
    """As reaping sees it: the lease, or UNLEASED_GRACE after the last sign
    of life for a run written without one."""
    expires = run["lease_expires_at"] or (
        (run["heartbeat_at"] or run["started_at"]) + UNLEASED_GRACE)
    return expires < now


def _blocks_by_host(rows):
    """{host: how many rollouts in a row} of rollouts_in_a_row's rows."""
    return {row["host"]: int(row["blocks"] or 0) for row in rows}


def with_duration(run):
    run["duration_seconds"] = (
        (run["finished_at"] - run["started_at"]).total_seconds()
        if run["finished_at"] is not None and run["started_at"] is not None else None)
    return run


def registered_row(schedule, schedule_tz, origin, registered_at):
    """A registered crontab line as schedule.resolve reads it (a dict),
    from registered_since's tuple."""
    return {"schedule": schedule, "schedule_tz": schedule_tz, "origin": origin,
            "registered_at": registered_at}


class Reader:
    """Reads on one DB-API ``connection`` of ``backend``, in whatever
    transaction its owner holds; driver errors become DatabaseError."""

    def __init__(self, connection, backend, masked_dsn, dsn=None, host=None):
        self.connection = connection
        self.backend = backend
        self.masked_dsn = masked_dsn
        self.dsn = dsn or masked_dsn
        self.host = host
        self.doing = "read the policy database"
        self._sql = dict(queries(backend), **queries(backend + "-reads"))
        #: The policy rows read in the transaction under way (_transaction's),
        #: or None outside one.
        self._policies = None
        self._in_transaction = False

    @classmethod
    def on(cls, connection, settings, doing=None):
        """The Reader of a connection made for ``settings`` (config.Settings)."""
        made = cls(connection, settings.backend, settings.masked_dsn, settings.dsn,
                   settings.host)
        if doing is not None:
            made.doing = doing
        return made

    @classmethod
    def of(cls, connection, db):
        """The Reader beneath a SQLAlchemy ``connection`` of tooling Database ``db``."""
        return cls(connection.connection.dbapi_connection, db.backend, db.masked_dsn,
                   db.settings.dsn, db.settings.host)

    # Statements ------------------------------------------------------------------

    def rows(self, query, parameters=None, kinds=None):
        """The rows of statement ``query``: dicts by column name, each value
        turned by ``kinds`` (a shape's kinds) where it names the column."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._sql[query], parameters or {})
            if cursor.description is None:
                return []
            names = [column[0] for column in cursor.description]
            found = [dict(zip(names, row)) for row in cursor.fetchall()]
        except Exception as error:
            raise self._translated(error) from error
        finally:
            cursor.close()
        if kinds:
            from cronpolicy.rows import KINDS
            for row in found:
                for column, kind in kinds.items():
                    if column in row:
                        row[column] = KINDS[kind](row[column])
        return found

    def tuples(self, query, parameters=None):
        """The rows of statement ``query`` as the driver gives them (tuples,
        in the statement's column order, nothing turned): for the reads of a
        fleet's thousands of rows, where a dict a row cost more than the rest."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._sql[query], parameters or {})
            return cursor.fetchall()
        except Exception as error:
            raise self._translated(error) from error
        finally:
            cursor.close()

    def _translated(self, error):
        from cronpolicy.store import pgdriver
        return pgdriver.translated(error, self.doing, self.dsn) or error

    def _time(self, moment):
        """A parameter for a time column."""
        if self.backend == config.SQLITE:
            from cronpolicy.timeutil import to_sqlite
            return to_sqlite(moment)
        return moment

    def _skips(self):
        """The decisions of a rollout's skips (policy.rollout_skips()), a
        parameter: the rules' registry says them, not a copy in each statement."""
        from cronpolicy.policy import rollout_skips
        return self._list(rollout_skips())

    def _list(self, values):
        """A parameter holding a list: an array on PostgreSQL, JSON text on SQLite."""
        if self.backend == config.SQLITE:
            import json
            return json.dumps(list(values))
        return list(values)

    # What the commands read ----------------------------------------------------------

    def now(self):
        """The database clock (aware UTC): the only clock hosts agree on."""
        [row] = self.rows("now")
        return to_time(next(iter(row.values())))

    def deploy_state(self):
        """The deploy_state row as a dict (with its id), or None when missing."""
        found = self.rows("deploy_state", kinds=DEPLOY_KINDS)
        return found[0] if found else None

    def policies(self):
        """Every policy row, indexed by name (matching.IndexedRows): the
        tooling asks which rows match thousands of scripts."""
        from cronpolicy.matching import IndexedRows
        if self._policies is not None:
            return self._policies
        found = IndexedRows(from_mapping(PolicyRow, row) for row in self.rows("policies"))
        if self._in_transaction:
            # Read once a transaction (metrics asks them for its schedules
            # and again for its interval reports): one set of rows for both.
            self._policies = found
        return found

    def policy_sets_schedule(self):
        """Whether any policy row sets a schedule."""
        [row] = self.rows("policy_sets_schedule")
        return bool(row["sets"])

    def standing_windows(self, now):
        """Windows neither cancelled nor over, as Window rows, soonest first."""
        return [from_mapping(Window, row)
                for row in self.rows("standing_windows", {"now": self._time(now)})]

    def windows(self):
        """Every window, cancelled and over too, as Window rows, by start."""
        return [from_mapping(Window, row) for row in self.rows("all_windows")]

    def inputs(self):
        """The decision inputs (rows.Inputs) as the tooling reads them: every
        policy row, the deploy state and the standing windows, no history."""
        now = self.now()
        deploy = self.rows("deploy_state")
        return Inputs(now=now, schema_version=None,
                      deploy=from_mapping(DeployState, deploy[0]) if deploy else None,
                      policies=self.policies(), windows=self.standing_windows(now),
                      recent_runtimes=[], services=self.services(),
                      rollouts=self.open_rollouts())

    def open_rollouts(self):
        """The Rollout rows not ended, oldest first."""
        return [from_mapping(Rollout, row) for row in self.rows("open_rollouts")]

    def rollouts_by_id(self, ids):
        """The Rollout rows of ``ids`` (those that exist), oldest first."""
        return [from_mapping(Rollout, row)
                for row in self.rows("rollouts_by_id", {"ids": self._list(ids)})]

    def rollouts(self, limit):
        """The newest ``limit`` rollouts, open or ended, and the oldest
        ``limit`` open ones however old, newest first (Rollout rows)."""
        return [from_mapping(Rollout, row) for row in self.rows("rollouts", {"limit": limit})]

    def rollout_costs(self, ids):
        """{rollout id: (starts it skipped, runs it interrupted, [runs it waited for])}:
        the awaited runs are rows of rollout_awaited, first seen first, each
        with its run's run_started_at (None once the run is pruned)."""
        blocks = self._list("rollout:%d" % rollout_id for rollout_id in ids)
        skipped = {row["block"]: int(row["starts"])
                   for row in self.rows("rollout_skipped_starts", {"blocks": blocks})}
        interrupted = {row["block"]: int(row["runs"])
                       for row in self.rows("rollout_interrupted_runs", {"blocks": blocks})}
        awaited = {}
        for row in self.rows("rollout_awaited_runs", {"ids": self._list(ids)},
                             {"first_seen_at": "time", "last_seen_at": "time",
                              "run_started_at": "time"}):
            awaited.setdefault(row["rollout_id"], []).append(row)
        return {rollout_id: (skipped.get("rollout:%d" % rollout_id, 0),
                             interrupted.get("rollout:%d" % rollout_id, 0),
                             awaited.get(rollout_id, [])) for rollout_id in ids}

    def services(self):
        """The ServiceDeploy rows: the services with a deploy pending."""
        return [from_mapping(ServiceDeploy, row) for row in self.rows("services")]

    def owners_without_roles(self):
        """script_owner and host_login rows naming a role that does not
        exist: [{table_name, id, owned, db_role}].  None on SQLite, which
        has no roles."""
        if self.backend == config.SQLITE:
            return []
        return self.rows("owners_without_roles")

    def live_runs(self, now, host="*"):
        """Running runs on hosts matching ``host`` whose lease stands, oldest
        first, with how long they have run, when they were last heard from
        and when their estimate says they will finish."""
        from cronpolicy.matching import glob_matches
        runs = []
        for row in self.rows("running_runs", kinds=RunRow.kinds):
            if not glob_matches(host, row["host"]) or lease_ran_out(row, now):
                continue        # (dead, even if not yet recorded as abandoned)
            row["running_seconds"] = max(0.0, (now - row["started_at"]).total_seconds())
            row["heard_seconds"] = max(0.0, (now - (row["heartbeat_at"] or row["started_at"]))
                                       .total_seconds())
            row["predicted_finish"] = (
                row["started_at"] + datetime.timedelta(seconds=row["estimate_seconds"])
                if row["estimate_seconds"] is not None else None)
            runs.append(row)
        return runs

    def recent_runs(self, name=None, limit=20):
        """The newest ``limit`` runs (of ``name``, if given), newest first,
        each with its duration."""
        if name:
            found = self.rows("recent_runs_of", {"name": name, "limit": limit}, RunRow.kinds)
        else:
            found = self.rows("recent_runs", {"limit": limit}, RunRow.kinds)
        return [with_duration(run) for run in found]

    def fleet_runs_since(self, since, limit):
        """The newest ``limit`` runs that started after ``since``, newest
        first, each with its duration: what a timeline draws of them."""
        kinds = {column: RunRow.kinds[column] for column in (
            "started_at", "finished_at", "estimate_seconds", "safe_to_interrupt")}
        return [with_duration(run) for run in self.rows(
            "fleet_runs_since", {"since": self._time(since), "limit": int(limit)}, kinds)]

    def writable_tables(self):
        """The tables this login may change (PostgreSQL; on SQLite, whoever
        may write the file may write them all: None)."""
        if self.backend == config.SQLITE:
            return None
        return [row["table_name"] for row in self.rows("writable_tables")]

    def known_names(self):
        """Every script name the history holds, sorted."""
        return [row["name"] for row in self.rows("known_names")]

    def audit_before(self, table, row_id, moment):
        """The newest audit entries (at most 50) of ``table`` (of its row
        ``row_id``, unless None) made up to ``moment``, newest first."""
        return self.rows("audit_before", {"table_name": table, "row_id": row_id,
                                          "moment": self._time(moment)}, AuditEntry.kinds)

    def audit_entries(self, since=None, table=None, limit=100):
        """The newest ``limit`` audit entries (made at ``since`` or later, of
        ``table``, when given), newest first: dicts, documents as written."""
        return self.rows("audit_entries", {
            "since": None if since is None else self._time(since), "table_name": table,
            "limit": limit}, AuditEntry.kinds)

    def schedule_sources(self, since):
        """What the host crontabs registered ({(name, host): row}, rows as
        registered_row makes them) and what scripts declared at their
        latest start since ``since`` (the same)."""
        registered = {pair: registered_row(*line) for pair, line in self.registered_since().items()}
        return registered, self.declared_schedules(since)

    def declared_schedules(self, since, host=None):
        """What scripts declared at their latest start since ``since``
        ({(name, host): row}), on ``host`` only if given."""
        return {(row["name"], row["host"]): row
                for row in self.rows("declared_schedules",
                                     {"since": self._time(since), "host": host},
                                     kinds={"started_at": "time"})}

    def schedule_lines(self):
        """[(name, host, schedule, schedule_tz, origin)]: what the host
        crontabs registered, as tuples (status counts a fleet's thousands)."""
        return self.tuples("registered_schedule_lines")

    def registered_since(self, host=None):
        """{(name, host): (schedule, schedule_tz, origin, registered_at)}:
        what the host crontabs registered (``host``'s only if given), and
        since when (tuples: a fleet's planners and reports read thousands)."""
        return {(name, on): (schedule, tz, origin, to_time(registered_at))
                for name, on, schedule, tz, origin, registered_at
                in self.tuples("registered_schedules_since", {"host": host})}

    def recent_runtimes(self, name, runs):
        """The seconds of ``name``'s last ``runs`` succeeded runs, newest
        first, as its gate's estimate reads them."""
        return [next(iter(row.values())) for row in self.rows(
            "recent_runtimes", {"name": name, "runs": int(runs)})]

    def declared_runtimes(self, since):
        """{(name, host): (seconds, started_at)}: the runtime each script
        declared at its latest start since ``since`` that decided with it."""
        from cronpolicy.estimate import SCRIPT_SOURCE
        return {(row["name"], row["host"]): (row["estimate_seconds"], row["started_at"])
                for row in self.rows("declared_runtimes", {
                    "declared": SCRIPT_SOURCE + "%", "since": self._time(since)},
                    {"estimate_seconds": "seconds", "started_at": "time"})}

    def hosts_of(self, name, since):
        """[(host, last seen)] of ``name`` since ``since``."""
        return [(row["host"], row["last_seen"]) for row in self.rows(
            "hosts_of", {"name": name, "since": self._time(since)}, {"last_seen": "time"})]

    def recent_pairs(self, since, host=None):
        """Every (name, host) that started or was skipped since ``since``
        (on ``host`` only if given)."""
        return sorted((row["name"], row["host"]) for row in self.rows(
            "recent_pairs", {"since": self._time(since), "host": host}))

    def last_success_on(self, name, host):
        """When the latest succeeded run of ``name`` on ``host`` started, or None."""
        found = self.rows("last_success_on", {"name": name, "host": host},
                          {"started_at": "time"})
        return found[0]["started_at"] if found else None

    def pair_starts(self, since):
        """{(name, host): (whether it started or was skipped since ``since``,
        when its newest success started or None)} of every pair the
        database has seen (run_tally, schema patch 0022, and the running
        runs: a pruned run still counts), in one statement."""
        return {(name, host): (bool(recent), to_time(last_success))
                for name, host, recent, last_success
                in self.tuples("pair_starts", {"since": self._time(since)})}

    def rollouts_in_a_row(self, name):
        """{host: how many rollouts in a row skipped ``name`` there} (hosts
        where none did are left out)."""
        return _blocks_by_host(self.rows("rollouts_in_a_row", {
            "name": name, "rollout_skips": self._skips()}))

    # Many scripts at once: one round trip on PostgreSQL, where a fleet of
    # thousands of jobs paid one per script (issue 32.3); SQLite, in the
    # process, asks the one-script statements.

    def _rows_of_each(self, query, names, parameters, kinds=None):
        """{name: its rows of ``query``} for every one of ``names`` (sorted,
        once each), asked of PostgreSQL in one statement over the array."""
        found = {name: [] for name in names}
        for row in self.rows(query, dict(parameters, names=names), kinds):
            found[row["name"]].append(row)
        return found

    def recent_starts_of_each(self, names, limit):
        """{name: its newest ``limit`` runs, newest first} for every one of
        ``names``, each a dict with at least host, status, started_at, needs."""
        names = sorted(set(names))
        if self.backend == config.SQLITE:
            return {name: self.recent_runs(name, limit) for name in names}
        return self._rows_of_each("recent_starts_of_each", names, {"limit": limit},
                                  {"started_at": "time"})

    def recent_runtimes_of_each(self, names, runs):
        """{name: recent_runtimes(name, runs)} for every one of ``names``."""
        names = sorted(set(names))
        if self.backend == config.SQLITE:
            return {name: self.recent_runtimes(name, runs) for name in names}
        found = {name: [] for name in names}
        for name, seconds in self.tuples("recent_runtimes_of_each",
                                         {"names": names, "runs": int(runs)}):
            found[name].append(seconds)
        return found

    def rollouts_in_a_row_of_each(self, names):
        """{name: rollouts_in_a_row(name)} for every one of ``names``."""
        names = sorted(set(names))
        if self.backend == config.SQLITE:
            return {name: self.rollouts_in_a_row(name) for name in names}
        return {name: _blocks_by_host(rows) for name, rows in self._rows_of_each(
            "rollouts_in_a_row_of_each", names, {"rollout_skips": self._skips()}).items()}

    def last_success_of_each(self, pairs):
        """{(name, host): last_success_on(name, host)} for every pair that
        ever succeeded (the others are left out)."""
        pairs = sorted(set(pairs))
        if self.backend == config.SQLITE:
            found = {pair: self.last_success_on(*pair) for pair in pairs}
            return {pair: moment for pair, moment in found.items() if moment is not None}
        return {(row["name"], row["host"]): row["started_at"] for row in self.rows(
            "last_success_of_each", {"names": [name for name, _ in pairs],
                                     "hosts": [host for _, host in pairs]},
            {"started_at": "time"})}

    def declared_intervals(self):
        """{name: the expected interval (seconds) its latest start declared}."""
        return {row["name"]: float(row["expected_interval"])
                for row in self.rows("declared_intervals")}

    def success_and_first_run(self, names):
        """{name: (when it last finished a success, when it first started)},
        each None when there is none: what an expected interval is measured from."""
        return {row["name"]: (row["last_success"], row["first_started"]) for row in self.rows(
            "last_finished_success_of_each", {"names": self._list(sorted(set(names)))},
            {"last_success": "time", "first_started": "time"})}

    def runs_since(self, name, since):
        """``name``'s runs since ``since``, newest first, at most 1000:
        dicts of status, started_at, skip_reason, exit_code, decision."""
        return self.rows("runs_since", {"name": name, "since": self._time(since)},
                         {"started_at": "time"})

    def ran_since(self, name, host, since):
        """Whether ``name`` started for real (not skipped) on ``host`` after ``since``."""
        [row] = self.rows("ran_since", {"name": name, "host": host, "since": self._time(since)})
        return bool(row["runs"])

    # The one write of a read ---------------------------------------------------------

    def reap_dead_runs(self):
        """Record runs whose lease ran out as ``abandoned`` (and, on SQLite,
        this host's runs whose process is gone); return their ids.  A write:
        the caller's transaction must allow it.  A running run renews its
        lease with every heartbeat (lease_ttl, 30 s by default), so a killed
        process or a lost host is given up on within one lease; a lost
        connection alone never ends a run."""
        if self.backend == config.POSTGRESQL:
            return [row["id"] for row in self.rows("reap_dead_runs")]
        reaped = [row[next(iter(row))] for row in self.rows("reap_stale")]
        for row in self.rows("running_here", {"host": self.host}):
            if row["pid"] and not _pid_alive(row["pid"]):
                self.rows("reap_gone", {"id": row["id"]})
                reaped.append(row["id"])
        return reaped


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True     # (someone else's, or not a pid this system has)
    return True


# A read command's session -----------------------------------------------------------------

def connect(settings, application_name="cronpolicy-cli"):
    """A DB-API connection to ``settings.dsn`` on a current schema."""
    if settings.backend == config.SQLITE:
        from cronpolicy.store.sqlite import open_sqlite
        connection = open_sqlite(config.sqlite_path(settings.dsn), settings.connect_timeout,
                                 settings.dsn_source == "default")
        connection.row_factory = row_as_text
        return connection
    from cronpolicy import schema
    from cronpolicy.store import pgdriver
    connection = pgdriver.connect(settings.dsn, settings.connect_timeout, application_name,
                                  settings.dsn_source, network=settings.network)
    try:
        version = schema.postgres_version(connection)
        connection.rollback()
    except Exception as error:
        connection.close()
        found = pgdriver.translated(error, "read the schema version", settings.dsn)
        if found is None:
            raise
        raise found from error
    if version is None or version < schema.SCHEMA_VERSION:
        connection.close()
        raise SchemaError(schema.needs_upgrade_message(version, settings.masked_dsn))
    return connection


@contextlib.contextmanager
def _transaction(reader, write=False):
    """One transaction on ``reader``'s connection: committed when the block
    ends, rolled back when it raises.  On SQLite a reading one takes no
    lock until it reads, and a writing one the write lock at once."""
    connection = reader.connection
    if reader.backend == config.SQLITE:
        try:
            # A writer's BEGIN waits out the busy timeout behind another
            # writer (a DBA's open transaction), then fails: one line.
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except Exception as error:
            raise reader._translated(error) from error
    reader._in_transaction, reader._policies = not write, None
    try:
        yield reader
    except BaseException:
        try:
            connection.rollback() if reader.backend == config.POSTGRESQL \
                else connection.execute("ROLLBACK")
        except Exception:
            pass        # a lost connection rolls back by itself
        raise
    finally:
        reader._in_transaction, reader._policies = False, None
    try:
        connection.commit() if reader.backend == config.POSTGRESQL \
            else connection.execute("COMMIT")
    except Exception as error:
        raise reader._translated(error) from error


def reap_if_free(reader, busy_timeout=config.DEFAULT_CONNECT_TIMEOUT):
    """Record dead runs as abandoned, in a transaction of their own, unless
    the database is busy with a writer (SQLite: a DBA's open transaction)
    for longer than BRIEF_WAIT, or the login may only read (PostgreSQL:
    cronpolicy_reader; or the database only reads, a standby): then the
    read goes on without, and a later one (or another login's, on the
    primary) does it."""
    if reader.backend == config.POSTGRESQL:
        try:
            with _transaction(reader, write=True):
                reader.reap_dead_runs()
        except DatabaseError as error:
            if not error.denied:
                raise
            import logging      # a login that may only read (cronpolicy_reader), or a standby
            logging.getLogger("cronpolicy").info("dead runs not recorded: %s", error)
        return
    import sqlite3
    connection = reader.connection
    connection.execute("PRAGMA busy_timeout = %d" % (BRIEF_WAIT * 1000))
    try:
        with _transaction(reader, write=True):
            reader.reap_dead_runs()
    except (sqlite3.OperationalError, DatabaseError) as error:
        cause = error if isinstance(error, sqlite3.OperationalError) else error.__cause__
        if not isinstance(cause, sqlite3.OperationalError) or "locked" not in str(cause):
            raise
        import logging
        logging.getLogger("cronpolicy").info("dead runs not recorded now: %s", cause)
    finally:
        connection.execute("PRAGMA busy_timeout = %d" % (busy_timeout * 1000))


def row_as_text(cursor, row):
    """A SQLite row as the reads take it: SQLite keeps whatever a DBA's
    plain SQL wrote, a BLOB in a text column too (PostgreSQL's types refuse
    one), and the commands sorted such a name or host against text in a
    traceback.  Read as text, U+FFFD for what is not UTF-8, as the
    connection's text_factory reads text (no column of the schema holds
    bytes).  A row without bytes is given back as it is."""
    if bytes in map(type, row):
        from cronpolicy.store.sqlite import _text
        return tuple([_text(value) if type(value) is bytes else value for value in row])
    return row


@contextlib.contextmanager
def reading(settings, doing="read the policy database", reap=False,
            application_name="cronpolicy-cli"):
    """A Reader on a connection of its own, in a transaction that only
    reads; ``reap``: record dead runs first, if the database is free to."""
    with session(settings, application_name) as reader:
        if reap:
            reader.doing = "record dead runs"
            reap_if_free(reader, settings.connect_timeout)
        with transaction(reader, doing):
            yield reader


@contextlib.contextmanager
def session(settings, application_name="cronpolicy-cli"):
    """A Reader on a connection of its own, closed when the block ends: for
    a command that reads in more than one transaction (``transaction``,
    ``reap_if_free``) without a connection for each (issue 32.3: overdue
    made three)."""
    connection = connect(settings, application_name)
    try:
        yield Reader.on(connection, settings)
    finally:
        connection.close()


def transaction(reader, doing):
    """One transaction that only reads on ``reader``'s connection, doing ``doing``."""
    reader.doing = doing
    return _transaction(reader)
