"""Starts under a connection limit (issue 32.5): while the database is
reachable, no start runs unseen.

A herd of real processes, as an ordinary login role with a CONNECTION
LIMIT, each running longer than the decision may wait: the first to connect
used to hold their connections for all of main() (LISTEN), so the rest gave
up at decision_timeout and ran from the cache (here: none, so unrecorded,
their records spooled).  Now a running script lets its connection go while
connections are scarce, and polls instead."""

import time

import pytest
from psycopg2.extensions import parse_dsn

from .conftest import DBA, ScriptRunner, admin_connection, make_env, wait_for

pytestmark = [pytest.mark.postgresql, pytest.mark.integration]

LIMIT = 5
HERD = 15


def role_backends(role):
    with admin_connection() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE usename = %s", (role,))
        return [pid for (pid,) in cursor.fetchall()]


def test_a_herd_over_the_connection_limit_is_decided_and_recorded_by_the_database(
        pg_roles, pg_dsn, tmp_path):
    login = pg_roles("cronpolicy_script")
    role = parse_dsn(login)["user"]
    with admin_connection() as connection, connection.cursor() as cursor:
        cursor.execute('ALTER ROLE "%s" CONNECTION LIMIT %d' % (role, LIMIT))
    _herd(login, role, pg_dsn, tmp_path)


def test_a_herd_over_a_poolers_client_limit_is_decided_and_recorded_by_the_database(
        pg_roles, pg_dsn, tmp_path):
    """The same herd through pgbouncer in transaction pooling (watch = poll:
    a running script holds no connection between polls) whose
    max_client_conn is the limit: it refuses with words of its own ("no
    more connections allowed"), which were not known as a limit, so a start
    record that met it was spooled at once instead of waiting for a free
    connection, and the run went unrecorded.  (In session pooling a running
    script that never met the limit still holds its connection: pgbouncer's
    client limit is not visible from the database.)"""
    from .pgbouncer import Pgbouncer
    login = pg_roles("cronpolicy_script")
    role = parse_dsn(login)["user"]
    bouncer = Pgbouncer(pg_dsn, "transaction", users=[role], max_client_conn=LIMIT).start()
    try:
        # (The server connections are pgbouncer's, kept between transactions
        # whoever the clients are: the records are what is checked here.)
        _herd(bouncer.dsn(parse_dsn(pg_dsn)["dbname"], user=role), role, pg_dsn, tmp_path,
              "watch = poll\n", backends_are_the_scripts=False)
    finally:
        bouncer.close()


def _herd(login, role, pg_dsn, tmp_path, settings="", backends_are_the_scripts=True):
    env = make_env(tmp_path, login)
    # Each run outlasts what a decision may wait: connections held through
    # main() would leave the last starts nothing but the fallback.
    with open(env["CRONPOLICY_CONFIG"], "w") as config:
        config.write("[cronpolicy]\ndecision_timeout = 4s\n" + settings)
    runner = ScriptRunner(tmp_path, env)
    runner.write("herd", extra="single_instance = False")
    release = tmp_path / "release"
    processes = [runner.start("herd", "-v", "--sleep", "60", "--until-file", str(release),
                              "--ready-file", str(tmp_path / ("ready-%d" % index)))
                 for index in range(HERD)]
    try:
        wait_for(lambda: all((tmp_path / ("ready-%d" % index)).exists()
                             or processes[index].poll() is not None
                             for index in range(HERD)), timeout=60, what="every start")
        time.sleep(2.0)     # past everyone's first heartbeat
        seen = []
        for _ in range(10):
            seen.extend(role_backends(role))
            time.sleep(0.25)
    finally:
        release.write_text("")
        errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * HERD, errors[0][-2000:]
    runs = DBA(pg_dsn).execute("SELECT status, spooled FROM cronpolicy.script_run")
    assert len(runs) == HERD, errors[0][-2000:]
    late = [run for run in runs if run[1]]
    assert not late, "%d of %d starts ran unrecorded: %s" % (
        len(late), HERD, next(err for err in errors if "spool" in err)[-2000:])
    assert all(status == "succeeded" for status, _ in runs), runs
    # Running scripts that met the limit, or whose heartbeat found four
    # fifths of it in use, hold no connection between heartbeats and polls:
    # a backend lives for a statement (a slow one, on a loaded machine, may
    # be seen twice or three times), not through 2.5 s of main().  Those
    # whose heartbeats found room may keep theirs, leaving room for starts.
    if not backends_are_the_scripts:
        return
    held = {pid for pid in seen if seen.count(pid) > 3}
    assert len(held) < LIMIT * 4 // 5, "%d connections held through main(): %s" % (
        len(held), seen)
