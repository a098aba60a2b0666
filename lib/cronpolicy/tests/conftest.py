"""Fixtures: a throwaway PostgreSQL database per test run, SQLite files per
test, and helpers to run real cron scripts and the real CLI.

PostgreSQL is found through CRONPOLICY_TEST_DSN (any database on a server
where the user may CREATE DATABASE), else the server on 127.0.0.1:5432.  If
it cannot be reached, every PostgreSQL test fails with one line saying how to
point the suite at a server; none is skipped.
"""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap

import psycopg2
import pytest

from cronpolicy import schema
from cronpolicy.store.sqlite import connect_sqlite, open_sqlite
from cronpolicy.config import sqlite_path

from . import footprint, layers
from .layers import _unit_stays_in_process  # noqa: F401 (autouse: unit tests stay in process)

DEFAULT_SERVER_DSN = "postgresql://127.0.0.1:5432/postgres"
BACKENDS = ("postgresql", "sqlite")


#: Fixtures that need the PostgreSQL server (a test using one is marked postgresql).
SERVER_FIXTURES = frozenset((
    "pg_database", "pg_dsn", "pg_roles", "empty_pg_dsn", "fault_proxy", "pgbouncers",
    "pg_scripts"))


#: Where the run's temporary files go when nobody chose (no --basetemp, no
#: TMPDIR): a memory file system, when there is one that may hold programs.
MEMORY_TEMP = "/dev/shm"


def _temporary_files_in_memory(config):
    """Put the run's temporary files (tmp_path: SQLite files, spools, lock
    files, scripts) in memory unless the caller chose a place.  Every SQLite
    commit and spool write syncs to disk; on this 2-core machine's shared disk
    the syncs made a test of 300 fresh SQLite files take 9 s instead of 2,
    and the suite writes thousands.  Nothing here tests surviving a power
    cut, which is all that the disk adds.  Set in the first process, the
    choice reaches the xdist workers and every program a test starts through
    TMPDIR."""
    import tempfile
    if config.option.basetemp or os.environ.get("TMPDIR") or os.environ.get(
            "PYTEST_DEBUG_TEMPROOT"):
        return
    try:
        flags = os.statvfs(MEMORY_TEMP).f_flag
    except OSError:
        return
    if flags & (os.ST_RDONLY | os.ST_NOEXEC) or not os.access(MEMORY_TEMP, os.W_OK | os.X_OK):
        return
    os.environ["TMPDIR"] = MEMORY_TEMP
    tempfile.tempdir = None         # gettempdir() reads TMPDIR again


def _hypothesis_as_installed(config):
    """Leave hypothesis's own modules to Python as installed.  pytest marks
    for assertion rewriting every module of a distribution that provides a
    pytest plugin, hypothesis included, and with PYTHONDONTWRITEBYTECODE set
    (or a read-only install) it rewrites them again in each worker of each
    run: 0.8 s of CPU a worker, for asserts that are hypothesis's, not ours.
    (pytest's hook keeps the names in _must_rewrite; if that changes, this
    does nothing.)"""
    hook = getattr(config.pluginmanager, "rewrite_hook", None)
    marked = getattr(hook, "_must_rewrite", None)
    if isinstance(marked, set) and "hypothesis" in marked and "hypothesis" not in sys.modules:
        marked.discard("hypothesis")
        getattr(hook, "_marked_for_rewrite_cache", {}).clear()


def _interrupts_as_a_terminal_gives_them():
    """A suite started in the background of a shell without job control
    (`cmd &` in a script, nohup) inherits SIGINT ignored, and every process
    a test starts would inherit that too: the tests that stop `deploy run`
    or a simulation with Ctrl-C then waited out their timeouts and failed.
    A handler is reset to the default across exec, an ignored signal is
    not: give this process Python's own handler, so its children start as
    they would from a terminal."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config):
    _interrupts_as_a_terminal_gives_them()
    _hypothesis_as_installed(config)
    _temporary_files_in_memory(config)
    config.addinivalue_line("markers", "slow: spawns many real processes; still run in CI")
    config.addinivalue_line("markers", "postgresql: needs the PostgreSQL server (marked by "
                                       "its fixtures)")
    layers.configure(config)
    try:
        config.cronpolicy_run_sharing = footprint.start_run(
            getattr(config, "workerinput", None))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


@pytest.hookimpl(trylast=True)      # after the session's fixtures are torn down
def pytest_sessionfinish(session):
    """Every process waits for its databases to be dropped; then the first
    process of the run, after every worker: nothing the run made may be
    left on the server (see footprint.py)."""
    wait_for_drops()
    if not footprint.last_to_finish(getattr(session.config, "cronpolicy_run_sharing", 0)):
        return
    try:
        left = footprint.end_run(admin_connection, GROUP_ROLES)
    except (psycopg2.Error, pytest.fail.Exception) as error:
        left = "could not check what the run left on the server: %s" % str(error).strip()
    if left:
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line(left, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_ignore_collect(collection_path, config):
    return layers.ignore_collect(collection_path, config)


def pytest_collection_modifyitems(items):
    """Mark the tests that need the server: by their fixtures, and the
    PostgreSQL (and pgbouncer) half of every test run on each backend."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or any(
                isinstance(value, str) and value.startswith(("postgresql", "pgbouncer-"))
                for value in params):
            item.add_marker(pytest.mark.postgresql)
        layers.mark(item)


def pytest_runtest_setup(item):
    """Outside a checkout (the suite run from an installed wheel, elsewhere)
    a test that reads its module's REFERENCE, itself or through a fixture
    (a file of the checkout, such as benchmarks/workload/fleet.json, which
    the wheel does not ship), is skipped, saying so, instead of failing on
    a missing file.  In a checkout nothing is skipped."""
    reference = getattr(getattr(item, "module", None), "REFERENCE", None)
    if not isinstance(reference, str) or os.path.exists(reference):
        return
    functions = [getattr(item, "function", None)]
    for definitions in getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs",
                               {}).values():
        functions.extend(definition.func for definition in definitions)
    if any(_names_reference(getattr(function, "__code__", None)) for function in functions):
        pytest.skip("needs %s" % reference)


def _names_reference(code):
    """Whether ``code``, or a function defined inside it (a fixture's
    once_per_run body), reads REFERENCE."""
    if code is None:
        return False
    return "REFERENCE" in code.co_names or any(
        _names_reference(constant) for constant in code.co_consts
        if hasattr(constant, "co_names"))


def server_dsn():
    return os.environ.get("CRONPOLICY_TEST_DSN") or DEFAULT_SERVER_DSN


def _dsn_with_database(dsn, database):
    """The server DSN pointed at another database (URI or key=value form)."""
    if "://" in dsn:
        base, _, query = dsn.partition("?")
        prefix, _, _ = base.rpartition("/")
        if prefix.endswith("/"):  # no path: postgresql://host
            prefix = base
        return "%s/%s%s" % (prefix, database, "?" + query if query else "")
    parts = [part for part in dsn.split() if not part.startswith("dbname=")]
    return " ".join(parts + ["dbname=%s" % database])


@contextlib.contextmanager
def admin_connection():
    try:
        connection = psycopg2.connect(server_dsn(), connect_timeout=5)
    except psycopg2.Error as error:
        pytest.fail("PostgreSQL is not reachable at %s (%s); set CRONPOLICY_TEST_DSN="
                    "postgresql://user@host:port/dbname to point the tests at a server"
                    % (server_dsn(), str(error).strip().splitlines()[0]), pytrace=False)
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


def create_database(kind="db", template=None):
    """A new database, named for this run (footprint.name): empty, or a
    copy of database ``template``.  Returns (name, DSN)."""
    name = footprint.name(kind)
    footprint.note("server")
    with admin_connection() as connection, connection.cursor() as cursor:
        cursor.execute('CREATE DATABASE "%s"' % name
                       + (' TEMPLATE "%s"' % template if template else ""))
        # A commit here returns before its WAL reaches the disk (3 ms a
        # commit on this machine's shared disk, thousands of commits a run):
        # what another session sees is the same, only a crash of the server
        # could lose the last commits, and no test crashes the server.  The
        # setting belongs to this database alone (a copy does not inherit it).
        cursor.execute('ALTER DATABASE "%s" SET synchronous_commit = off' % name)
    return name, _dsn_with_database(server_dsn(), name)


def drop_database(name):
    with admin_connection() as connection, connection.cursor() as cursor:
        cursor.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


_dropping = []


def drop_database_soon(name):
    """Drop ``name`` on a thread of its own: DROP DATABASE waits for a
    checkpoint (seconds on a busy server) that no test needs to wait out.
    The process waits for its drops at the end of its session, before the
    run checks that nothing is left (footprint.py)."""
    import threading
    thread = threading.Thread(target=_drop_after, args=(list(_dropping), name),
                              name="drop " + name)
    _dropping[:] = [thread]
    thread.start()


def _drop_after(earlier, name):
    for thread in earlier:          # one at a time: each drop checkpoints
        thread.join()
    try:
        drop_database(name)
    except BaseException:           # noqa: B036 - the run's end check names what is left
        pass


def wait_for_drops():
    for thread in _dropping:
        thread.join(timeout=120)


GROUP_ROLES = ("cronpolicy_admin", "cronpolicy_rollout", "cronpolicy_script", "cronpolicy_reader",
               "cronpolicy_relay",
               "cronpolicy_auditor")


@contextlib.contextmanager
def schema_up_to(version):
    """While it lasts, the schema's patches end at ``version``: a database
    upgraded meanwhile is as an older release left it (a SQLite file
    opened through the store upgrades itself, so keep it for as long as
    the test writes what that release would have taken)."""
    every = schema.patches
    from unittest import mock
    with mock.patch.object(schema, "patches", lambda backend: [
            patch for patch in every(backend) if patch[0] <= version]):
        yield


def upgraded(dsn, up_to=None):
    """``dsn``, after applying the schema patches to its database (PostgreSQL,
    or a sqlite:/// file): every one, or with ``up_to`` those numbered up to
    it (schema_up_to), for tests of an upgrade."""
    if dsn.startswith("sqlite:///"):
        connection, apply = connect_sqlite(dsn[len("sqlite:///"):]), schema.upgrade_sqlite
    else:
        connection, apply = psycopg2.connect(dsn), schema.upgrade_postgres
    try:
        with schema_up_to(up_to) if up_to is not None else contextlib.nullcontext():
            apply(connection)
    finally:
        connection.close()
    return dsn


@pytest.fixture(scope="session")
def pg_database():
    """A database with the cronpolicy schema, created for this test run and dropped after."""
    name, dsn = create_database(template=schema_template())
    try:
        yield dsn
    finally:
        drop_database_soon(name)


def schema_template():
    """The name of a database with every schema patch applied, made once
    per run: each worker's database is a copy of it (a tenth of a second)
    instead of an upgrade of its own (a second and a half, more on a busy
    server).  The run's first process drops it at the end (footprint.py)."""
    def make():
        name, dsn = create_database("template")
        footprint.note("templates", [name])
        upgraded(dsn)
        return name
    return once_per_run("schema-template", make)


def apply_roles(dsn):
    """roles.sql on ``dsn``'s database; the group roles it created marked
    as this run's (footprint.mark_roles: the last run out drops them)."""
    with admin_connection() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(GROUP_ROLES),))
        existing = {row[0] for row in cursor.fetchall()}
    connection = psycopg2.connect(dsn)
    try:
        schema.apply_roles(connection)
    finally:
        connection.close()
    made = [role for role in GROUP_ROLES if role not in existing]
    if made:
        with admin_connection() as connection, connection.cursor() as cursor:
            footprint.mark_roles(cursor, made)


@pytest.fixture
def pg_roles(pg_dsn):
    """The test database with roles.sql applied; yields a factory of login roles:
    ``login("cronpolicy_script")`` -> DSN of a new, uniquely named login role."""
    apply_roles(pg_dsn)
    created = []

    def login(group):
        role = footprint.name(group.split("_")[-1])
        with admin_connection() as connection, connection.cursor() as cursor:
            cursor.execute('CREATE ROLE "%s" LOGIN' % role)
            cursor.execute('GRANT %s TO "%s"' % (group, role))
        created.append(role)
        from psycopg2.extensions import make_dsn, parse_dsn
        params = parse_dsn(pg_dsn)
        params["user"] = role
        return make_dsn(**params)
    try:
        yield login
    finally:
        with admin_connection() as connection, connection.cursor() as cursor:
            for role in created:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                               " WHERE usename = %s", (role,))
                cursor.execute('DROP ROLE IF EXISTS "%s"' % role)


@pytest.fixture
def empty_pg_dsn():
    """A fresh database with no cronpolicy schema at all."""
    name, dsn = create_database("empty")
    try:
        yield dsn
    finally:
        drop_database_soon(name)


#: Tables a test starts with as the patches left them; every other table is
#: emptied before each test (so a new table cannot carry state between tests).
KEPT_BETWEEN_TESTS = {"schema_version", "deploy_state", "policy_audit", "policy_version"}


def _reset_postgres(dsn):
    # DELETE with the triggers off (session_replication_role) and the
    # sequences set back, not TRUNCATE: each TRUNCATE makes new files for the
    # table and its indexes and syncs them at commit, 58 ms a reset against
    # 8 ms, paid by every PostgreSQL test. The triggers are off so the reset
    # writes no audit row, announces nothing and ends no rollout by rule.
    from cronpolicy.tooling.tables import metadata
    emptied = [table.name for table in reversed(metadata.sorted_tables)
               if table.name not in KEPT_BETWEEN_TESTS]
    statements = ["SET LOCAL session_replication_role = replica"]
    statements += ["DELETE FROM cronpolicy.%s" % name for name in emptied]
    statements += ["UPDATE cronpolicy.deploy_state SET deploy_pending = false,"
                   " reason = '', changed_by = session_user, changed_at = now()",
                   "DELETE FROM cronpolicy.policy_audit",
                   "SELECT pg_catalog.setval(s.oid, 1, false) FROM pg_catalog.pg_class s"
                   " WHERE s.relkind = 'S' AND s.relnamespace = 'cronpolicy'::regnamespace"]
    connection = psycopg2.connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute(";\n".join(statements))
        connection.commit()
    finally:
        connection.close()


@pytest.fixture
def pg_dsn(pg_database):
    """The run's PostgreSQL database, emptied of policies, windows and history."""
    _reset_postgres(pg_database)
    return pg_database


def _via(dsn, host, port):
    """``dsn`` with its host and port replaced (URI or key=value form)."""
    from psycopg2.extensions import make_dsn, parse_dsn
    params = parse_dsn(dsn)
    params.update(host=host, port=str(port))
    return make_dsn(**params)


@pytest.fixture
def fault_proxy(pg_dsn):
    """(FaultProxy, DSN of the test database through it)."""
    from psycopg2.extensions import parse_dsn

    from .faultproxy import FaultProxy
    params = parse_dsn(pg_dsn)
    host = params.get("host") or "127.0.0.1"
    if host.startswith("/"):
        host = "127.0.0.1"
    proxy = FaultProxy(host, int(params.get("port") or 5432))
    try:
        yield proxy, _via(pg_dsn, "127.0.0.1", proxy.port)
    finally:
        proxy.close()


@pytest.fixture(scope="session")
def pgbouncers(pg_database):
    """One real pgbouncer per pooling mode in front of the run's database,
    started on first use: {mode: Pgbouncer}."""
    from .pgbouncer import Pgbouncer
    started = {}

    def bouncer(mode):
        if mode not in started:
            started[mode] = Pgbouncer(pg_database, mode).start()
        return started[mode]
    try:
        yield bouncer
    finally:
        for running in started.values():
            running.close()


def pooled_dsn(request, mode):
    """The run's (emptied) database through pgbouncer in ``mode``."""
    from psycopg2.extensions import parse_dsn
    dsn = request.getfixturevalue("pg_dsn")
    return request.getfixturevalue("pgbouncers")(mode).dsn(parse_dsn(dsn)["dbname"])


@pytest.fixture
def sqlite_dsn(tmp_path):
    return "sqlite:///" + str(tmp_path / "cronpolicy.sqlite")


def dsn_for(request, backend):
    """A fresh database of ``backend``: postgresql, sqlite, or pgbouncer-MODE."""
    if backend == "postgresql":
        return request.getfixturevalue("pg_dsn")
    if backend.startswith("pgbouncer-"):
        return pooled_dsn(request, backend[len("pgbouncer-"):])
    return request.getfixturevalue("sqlite_dsn")


@pytest.fixture(params=BACKENDS)
def dsn(request):
    """Each test using it runs once against PostgreSQL and once against SQLite."""
    return dsn_for(request, request.param)


def login_of(dsn):
    """The login a PostgreSQL DSN connects as."""
    return psycopg2.extensions.parse_dsn(dsn)["user"]


def as_login(dsn, sql):
    """Run ``sql`` on PostgreSQL as the login of ``dsn``, on its own
    connection: None, or the psycopg2 error it met."""
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
        return None
    except psycopg2.Error as error:
        return error
    finally:
        connection.close()


class DBA:
    """Plain SQL against either backend, as a DBA would type it."""

    def __init__(self, dsn):
        self.dsn = dsn
        self.backend = "sqlite" if dsn.startswith("sqlite:") else "postgresql"
        self._held = None

    @contextlib.contextmanager
    def batch(self):
        """Statements run inside share one connection (each still commits
        on its own): a test that writes many rows per example pays one
        connection (a PostgreSQL backend, a SQLite open and its closing
        checkpoint) instead of one a statement."""
        with self._cursor() as held:
            self._held = held
            try:
                yield self
            finally:
                self._held = None

    @contextlib.contextmanager
    def _cursor(self):
        if self._held is not None:
            try:
                yield self._held
            except BaseException:
                # What a lone connection's closing would do: a script that
                # failed inside its BEGIN leaves no transaction open.
                cursor, _ = self._held
                if self.backend == "sqlite":
                    if cursor.connection.in_transaction:
                        cursor.connection.rollback()
                elif (cursor.connection.get_transaction_status()
                      != psycopg2.extensions.TRANSACTION_STATUS_IDLE):
                    cursor.execute("ROLLBACK")
                raise
        elif self.backend == "sqlite":
            connection = open_sqlite(sqlite_path(self.dsn))
            try:
                yield connection.cursor(), "?"
            finally:
                connection.close()
        else:
            connection = psycopg2.connect(self.dsn)
            connection.autocommit = True
            try:
                with connection.cursor() as cursor:
                    yield cursor, "%s"
            finally:
                connection.close()

    def execute(self, sql, params=()):
        """Run one statement; ``{}`` in ``sql`` stands for the parameter marker."""
        with self._cursor() as (cursor, marker):
            if params:
                cursor.execute(sql.replace("{}", marker), params)
            else:
                cursor.execute(sql)
            return cursor.fetchall() if cursor.description else None

    def execute_unchecked(self, *statements):
        """Run ``statements`` past the range guards of schema patch 0009, as
        if their rows had been written before it, then put the guards back
        (on PostgreSQL NOT VALID: they hold for new writes only).  On SQLite
        the CHECK constraints of tables made with one (rollout's
        rollout_values_in_range) are ignored meanwhile, as a DBA's
        ``PRAGMA ignore_check_constraints`` would."""
        if self.backend == "sqlite":
            guards = self.execute("SELECT name, sql FROM cronpolicy.sqlite_master"
                                  " WHERE type = 'trigger' AND name LIKE '%values_in_range%'")
            script = "".join("DROP TRIGGER cronpolicy.%s;" % name for name, _ in guards)
            script += "".join(statement + ";" for statement in statements)
            script += "".join(sql.replace("CREATE TRIGGER ", "CREATE TRIGGER cronpolicy.", 1)
                              + ";" for _, sql in guards)
            with self._cursor() as (cursor, _):
                cursor.connection.execute("PRAGMA ignore_check_constraints = ON")
                try:
                    cursor.connection.executescript("BEGIN;" + script + "COMMIT;")
                finally:
                    cursor.connection.execute("PRAGMA ignore_check_constraints = OFF")
            return
        guards = self.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE conname LIKE '%values_in_range'")
        script = "".join("ALTER TABLE %s DROP CONSTRAINT %s;" % (table, name)
                         for table, name, _ in guards)
        script += "".join(statement + ";" for statement in statements)
        script += "".join("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID;" % guard
                          for guard in guards)
        self.execute("BEGIN;" + script + "COMMIT;")

    def counts(self, *tables):
        """(rows of each of ``tables``), counted in one statement: one
        connection, not one a table."""
        return tuple(self.execute("SELECT " + ", ".join(
            "(SELECT count(*) FROM cronpolicy.%s)" % table for table in tables))[0])

    def scalar(self, sql, params=()):
        rows = self.execute(sql, params)
        return rows[0][0] if rows else None

    def now_plus(self, seconds):
        """SQL for 'database now + seconds' in this backend's timestamp format."""
        if self.backend == "sqlite":
            return "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '%+d seconds')" % seconds
        return "now() + interval '%d seconds'" % seconds

    def runs(self, name=None):
        sql = ("SELECT id, name, host, pid, status, exit_code, skip_reason, estimate_seconds,"
               " estimate_source, policy_ignored FROM cronpolicy.script_run")
        params = ()
        if name:
            sql += " WHERE name = {}"
            params = (name,)
        keys = ("id", "name", "host", "pid", "status", "exit_code", "skip_reason",
                "estimate_seconds", "estimate_source", "policy_ignored")
        return [dict(zip(keys, row)) for row in self.execute(sql + " ORDER BY id", params)]


@pytest.fixture
def dba(dsn):
    return DBA(dsn)


@pytest.fixture
def script_env(tmp_path, dsn):
    """Environment for spawned scripts and CLI runs: this test's database,
    lock directory and state directory, no system config file."""
    return make_env(tmp_path, dsn)


def make_env(tmp_path, dsn):
    from .pgbouncer import TRANSACTION_POOLED
    config = tmp_path / "cronpolicy.conf"
    # Poll SQLite faster than the default second, so the suite stays quick.
    config.write_text("[cronpolicy]\npoll_interval = 0.25s\n"
                      + ("watch = poll\n" if dsn in TRANSACTION_POOLED else ""))
    env = dict(os.environ)
    env.pop("CRONPOLICY_WATCH", None)       # the config file above decides
    env.update({
        "CRONPOLICY_DSN": dsn,
        "CRONPOLICY_CONFIG": str(config),
        "CRONPOLICY_LOCK_DIR": str(tmp_path / "locks"),
        "CRONPOLICY_HOST": "testhost",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


SCRIPT_TEMPLATE = '''\
import os, sys, time
from cronpolicy import CronScript

class Job(CronScript):
    {attributes}

    def add_my_options(self):
        self.parser.add_argument("--sleep", type=float, default=0)
        self.parser.add_argument("--fail", action="store_true")
        self.parser.add_argument("--exit", type=int)
        self.parser.add_argument("--ready-file")
        self.parser.add_argument("--until-file", help="stop early once this file exists")
        self.parser.add_argument("--checkpoints", action="store_true")

    def main(self):
        with open(os.environ["JOB_MARKER"], "a") as marker:
            marker.write("main %d\\n" % os.getpid())
        try:
            # Ready only inside the try: a test that signals on "ready" must
            # find the finally block already armed.
            if self.options.ready_file:
                with open(self.options.ready_file, "w") as ready:
                    ready.write("%d\\n" % os.getpid())
            deadline = time.monotonic() + self.options.sleep
            while time.monotonic() < deadline:
                if self.options.until_file and os.path.exists(self.options.until_file):
                    break
                if self.options.checkpoints:
                    self.checkpoint()
                time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
        finally:
            with open(os.environ["JOB_MARKER"], "a") as marker:
                marker.write("finally stop_requested=%s\\n" % self.stop_requested)
        if self.options.fail:
            raise RuntimeError("the job broke")
        if self.options.exit is not None:
            sys.exit(self.options.exit)

if __name__ == "__main__":
    Job().run()
'''


class ScriptRunner:
    """Writes real cron scripts to files and runs them as cron would."""

    def __init__(self, tmp_path, env):
        self.tmp_path = tmp_path
        self.env = env

    def write(self, name, expected_runtime=None, extra="", safe_file=None):
        """``safe_file``: define is_safe_to_interrupt(), true while that file exists."""
        attributes = []
        if expected_runtime is not None:
            attributes.append("expected_runtime = %r" % expected_runtime)
        if safe_file is not None:
            attributes.append("def is_safe_to_interrupt(self):\n"
                              "        return os.path.exists(%r)" % str(safe_file))
        attributes.append(extra or "pass")
        path = self.tmp_path / ("%s.py" % name)
        path.write_text(SCRIPT_TEMPLATE.format(attributes="\n    ".join(attributes)))
        return path

    def marker(self, name):
        return self.tmp_path / ("%s.marker" % name)

    def main_calls(self, name):
        marker = self.marker(name)
        return marker.read_text().count("main ") if marker.exists() else 0

    def finally_lines(self, name):
        marker = self.marker(name)
        return [line for line in marker.read_text().splitlines()
                if line.startswith("finally")] if marker.exists() else []

    def _env(self, name, env):
        """The runner's environment, with ``env`` on top (a None value removes a variable)."""
        merged = dict(self.env)
        merged["JOB_MARKER"] = str(self.marker(name))
        merged.update(env or {})
        return {key: value for key, value in merged.items() if value is not None}

    def run(self, name, *args, env=None, timeout=60):
        path = self.tmp_path / ("%s.py" % name)
        return subprocess.run([sys.executable, str(path)] + list(args), env=self._env(name, env),
                              capture_output=True, text=True, timeout=timeout)

    def start(self, name, *args, env=None):
        path = self.tmp_path / ("%s.py" % name)
        return subprocess.Popen([sys.executable, str(path)] + list(args),
                                env=self._env(name, env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def start_never_safe(self, name):
        """Script ``name``, never safe to interrupt, started and inside its
        main() (for ten minutes): what holds a rollout's wait."""
        self.write(name)
        ready = self.tmp_path / ("%s.ready" % name)
        job = self.start(name, "--sleep", "600", "--ready-file", str(ready))
        wait_for_file(str(ready), process=job)
        return job


@pytest.fixture
def scripts(tmp_path, script_env):
    return ScriptRunner(tmp_path, script_env)


@pytest.fixture
def pg_scripts(tmp_path, pg_dsn):
    """ScriptRunner for behaviour that only PostgreSQL has."""
    return ScriptRunner(tmp_path, make_env(tmp_path, pg_dsn))


@pytest.fixture
def cli(script_env, monkeypatch, capsys):
    """Run ``cronpolicy`` in-process against this test's database:
    returns (exit code, stdout, stderr)."""
    return in_process_cli(script_env, monkeypatch, capsys)


def in_process_cli(env, monkeypatch, capsys):
    """``cronpolicy`` in this process with ``env``'s settings: a function of
    argv returning (exit code, stdout, stderr)."""
    from cronpolicy.tooling.cli import main

    for key, value in env.items():
        if key.startswith(("CRONPOLICY_", "XDG_")):
            monkeypatch.setenv(key, value)

    def run(*argv):
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def read_line(stream, timeout=30.0):
    """The next line a child process writes to ``stream`` (a pipe), waiting
    at most ``timeout`` seconds for it."""
    import select
    import time
    deadline = time.monotonic() + timeout
    line = b""
    descriptor = stream.fileno()
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([descriptor], [], [], remaining)[0]:
            raise AssertionError("no line within %ss (got %r)" % (timeout, line))
        chunk = os.read(descriptor, 1)
        if not chunk:
            raise AssertionError("the stream ended (got %r)" % line)
        line += chunk
    return line.decode()


def wait_for(predicate, timeout=20.0, what="condition", interval=0.02):
    """Wait (bounded) until ``predicate()`` is true, asking every
    ``interval`` seconds (give a predicate that starts programs a longer
    one: asked every 0.02 s, it keeps a core busy for the whole wait)."""
    import time
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError("%s not reached within %ss" % (what, timeout))
        time.sleep(interval)
    return True


def wait_for_file(path, timeout=None, process=None):
    """Wait (bounded) until ``path`` exists and is not empty.

    Without ``process``: at most ``timeout`` seconds (30 by default).  Given
    ``process``, the Popen that is to write ``path``: as long as it is
    alive, up to ``timeout`` seconds in all (120 by default), so a loaded
    machine only makes the wait longer; if it exits without having written
    ``path``, fail at once with its exit code and what it said."""
    import time
    if timeout is None:
        timeout = 30.0 if process is None else 120.0

    def written():
        return os.path.exists(path) and os.path.getsize(path) > 0

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if written():
            return True
        if process is not None and process.poll() is not None:
            if written():           # written just before it exited
                return True
            try:
                out, err = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:   # a child of its own holds the pipes
                out = err = "(its pipes are still open)"
            raise AssertionError("%s was not written: pid %d exited with %s\n"
                                 "stdout: %s\nstderr: %s" % (path, process.pid,
                                                              process.returncode, out, err))
        time.sleep(0.02)
    state = ""
    if process is not None:
        state = " (pid %d %s)" % (process.pid, "still running" if process.poll() is None
                                  else "exited with %s" % process.returncode)
    raise AssertionError("%s did not appear within %ss%s" % (path, timeout, state))


def in_a_thread(call):
    """``call()`` started on a thread of its own: (the thread, a list that
    holds what it returned, or the exception it raised, once it is done)."""
    import threading
    outcome = []

    def run():
        try:
            outcome.append(call())
        except Exception as error:      # noqa: BLE001 (what the test reports)
            outcome.append(error)
    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def once_per_run(key, compute):
    """``compute()``, once in the whole run: the first process to ask
    computes it and leaves it pickled in the run's directory; the others
    (xdist workers) wait for it on a lock and load it, instead of each
    spending the same CPU again.  For deterministic results only.  The
    wait is bounded by the computation: a process that dies holding the
    lock releases it, and the next one computes."""
    import fcntl
    import pickle
    path = os.path.join(os.environ[footprint.RUN_DIR_VARIABLE], "once-%s.pickle" % key)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):
            with open(path, "rb") as done:
                return pickle.load(done)
        value = compute()
        with open(path + ".part", "wb") as part:
            pickle.dump(value, part)
        os.replace(path + ".part", path)
        return value


def dedent(text):
    return textwrap.dedent(text).strip()
