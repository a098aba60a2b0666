"""What a test run leaves on the PostgreSQL server: nothing.

Every database and login role the suite makes is named by ``name(kind)``:
``<prefix>_<run>_<kind>_<random>``.  The prefix is $CRONPOLICY_TEST_PREFIX
(default ``cronpolicy_test``), so runs sharing a server can keep to a
naming rule; the run is a token the first process of the run (the xdist
controller, or the only process) picks and its workers inherit through the
environment, so two runs under one prefix still tell their objects apart.
With --pyargs (README's test command) the xdist controller never loads
this conftest: its workers then take the token from xdist's testrunuid,
and the last of them to finish does the first process's work at the end.

The schema template the workers copy their databases from is dropped by
the first process at the end.  The group roles of roles.sql
(cronpolicy_admin, ...) have the product's own names: a run that creates
them marks them (a setting of the role, ROLE_MARK), and at its end drops
every group role so marked that no database uses any more.  Two runs at
once on one server: the first to finish cannot drop roles the other's
database still grants to, and the other did not create them; the mark
lets the last one out drop them (they were left on the server before).
A role without the mark (a DBA's, for a real fleet) is never touched.
Then ``end_run`` lists what is left with the run's names, drops it, and
fails the run naming it: a test that leaks a database or a role is a
defect the run reports.
"""

import os
import shutil
import tempfile
import uuid

import psycopg2

PREFIX_VARIABLE = "CRONPOLICY_TEST_PREFIX"
DEFAULT_PREFIX = "cronpolicy_test"
#: Set by the first process of a run for the processes it starts.
RUN_VARIABLE = "CRONPOLICY_TEST_RUN"
RUN_DIR_VARIABLE = "CRONPOLICY_TEST_RUN_DIR"
#: PostgreSQL cuts identifiers at 63 bytes; a longer prefix would collide.
LONGEST_PREFIX = 30
#: The mark on a group role a test run created, a setting of the role's own
#: (roles.sql writes the roles' comments): the last run out drops it.  A
#: setting of a role that never logs in changes nothing.
ROLE_MARK = "cronpolicy.made_by_tests=true"


def prefix():
    return os.environ.get(PREFIX_VARIABLE) or DEFAULT_PREFIX


def run_prefix():
    """``<prefix>_<run>_``: the start of every name this run makes."""
    return "%s_%s_" % (prefix(), os.environ[RUN_VARIABLE])


def name(kind):
    """A new database or role name of this run: ``<prefix>_<run>_<kind>_<random>``."""
    return "%s%s_%s" % (run_prefix(), kind, uuid.uuid4().hex[:8])


def start_run(workerinput=None):
    """Pick the run's token and directory, unless a process before this
    one did (its workers inherit both).  Returns how many processes share
    the check of the server at the run's end: 1 for the run's first
    process, 0 for its workers.  An xdist worker whose controller never
    configured this conftest (with --pyargs the controller collects
    nothing, so it never loads it) finds no token: ``workerinput`` (xdist's)
    then gives every worker of the run the same token and directory from
    its testrunuid, and the last of the ``workercount`` workers to finish
    checks (last_to_finish).  Each worker used to take a run of its own:
    one that finished first dropped the group roles while the others still
    used them, which failed quietly and left them on the server.
    ValueError: the prefix given is not a plain name."""
    if RUN_VARIABLE in os.environ:
        return 0
    given = prefix()
    if len(given) > LONGEST_PREFIX or not given.replace("_", "").isalnum():
        raise ValueError("%s=%r: give at most %d letters, digits and underscores"
                         % (PREFIX_VARIABLE, given, LONGEST_PREFIX))
    if workerinput is None:
        os.environ[RUN_VARIABLE] = uuid.uuid4().hex[:8]
        os.environ[RUN_DIR_VARIABLE] = tempfile.mkdtemp(prefix="cronpolicy-test-run-")
        return 1
    uid = workerinput["testrunuid"]
    directory = os.path.join(tempfile.gettempdir(), "cronpolicy-test-run-%s" % uid)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.environ[RUN_VARIABLE] = uid[:8]
    os.environ[RUN_DIR_VARIABLE] = directory
    return workerinput["workercount"]


def last_to_finish(sharing):
    """Whether this process, one of ``sharing`` that share the end's check,
    is the last of them to finish (count kept in the run's directory)."""
    import fcntl
    if sharing <= 1:
        return sharing == 1
    with open(_noted("finished"), "a+") as finished:
        fcntl.flock(finished, fcntl.LOCK_EX)
        finished.write("x")
        finished.flush()
        finished.seek(0)
        return len(finished.read()) == sharing


def _noted(what):
    return os.path.join(os.environ[RUN_DIR_VARIABLE], what)


def note(what, lines=()):
    """Record ``lines`` under ``what`` for the first process (any process of the run)."""
    with open(_noted(what), "a", encoding="utf-8") as noted:
        noted.write("".join(line + "\n" for line in lines))


def noted(what):
    try:
        with open(_noted(what), encoding="utf-8") as lines:
            return set(lines.read().split())
    except FileNotFoundError:
        return None


def end_run(connect, group_roles=()):
    """In the first process, after its workers: drop the ``group_roles``
    a test run created (this one or another: marked) that nothing uses
    now; then drop what is left with the run's names and return a line
    naming it ('' when nothing was left).  ``connect()`` gives an
    autocommit connection as the server's admin."""
    try:
        if noted("server") is None:     # no test reached the server
            return ""
        with connect() as connection, connection.cursor() as cursor:
            for template in sorted(noted("templates") or ()):
                cursor.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % template)
            drop_marked_roles(cursor, group_roles)
            return _drop_leftovers(cursor)
    finally:
        shutil.rmtree(os.environ[RUN_DIR_VARIABLE], ignore_errors=True)


def mark_roles(cursor, roles):
    """Mark ``roles`` (just created by this run) as a test run's."""
    setting, value = ROLE_MARK.split("=")
    for role in roles:
        cursor.execute('ALTER ROLE "%s" SET %s = %%s' % (role, setting), (value,))


def drop_marked_roles(cursor, roles):
    """Drop those of ``roles`` a test run marked, unless a database still
    grants to them (another run's, still going: it drops them at its end)."""
    cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)"
                   " AND %s = ANY(rolconfig)", (list(roles), ROLE_MARK))
    for (role,) in sorted(cursor.fetchall()):
        try:
            cursor.execute('DROP ROLE IF EXISTS "%s"' % role)
        except psycopg2.Error:
            pass


def _drop_leftovers(cursor):
    start = run_prefix()
    cursor.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (start,))
    databases = sorted(row[0] for row in cursor.fetchall())
    cursor.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (start,))
    roles = sorted(row[0] for row in cursor.fetchall())
    for database in databases:
        cursor.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % database)
    for role in roles:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                       " WHERE usename = %s", (role,))
        cursor.execute('DROP ROLE IF EXISTS "%s"' % role)
    if not databases and not roles:
        return ""
    return ("the run left %s on the server (dropped now): a test does not drop what it made"
            % ", ".join(["database " + database for database in databases]
                        + ["role " + role for role in roles]))
