"""The suite's layers (layers.py) and its names on the server (footprint.py)."""

import os
import sqlite3
import subprocess
import sys

import psycopg2
import pytest

from . import footprint


def test_a_unit_test_can_neither_connect_nor_start_a_process(request):
    """Each door out of the process is shut while a unit test runs, and
    what was tried is noted, so the test errors at teardown even when the
    code under test swallows the exception."""
    assert request.node.get_closest_marker("unit") is not None
    doors = {
        "connect to PostgreSQL": lambda: psycopg2.connect("dbname=nothing connect_timeout=1"),
        "open a SQLite database": lambda: sqlite3.connect(":memory:"),
        "start a process": lambda: subprocess.run([sys.executable, "-c", "pass"]),
        "fork": os.fork,
    }
    for what, door in doors.items():
        with pytest.raises(RuntimeError, match="may not %s" % what):
            door()
    assert request.node.layer_touched == list(doors)
    request.node.layer_touched.clear()      # tried on purpose: let this test pass


def test_every_test_is_in_exactly_one_layer_and_a_database_makes_it_integration(request):
    layers = {}
    for item in request.session.items:
        marks = {mark.name for mark in item.iter_markers()} & {"unit", "integration"}
        assert len(marks) == 1, (item.nodeid, marks)
        layers[item.nodeid] = marks.pop()
        if "postgresql" in {mark.name for mark in item.iter_markers()} or {
                "dsn", "sqlite_dsn", "scripts", "cli"} & set(item.fixturenames):
            assert layers[item.nodeid] == "integration", item.nodeid
    assert layers[request.node.nodeid] == "unit"


def test_names_on_the_server_carry_the_prefix_and_the_run(monkeypatch):
    monkeypatch.setenv(footprint.PREFIX_VARIABLE, "ci_job_42")
    monkeypatch.setenv(footprint.RUN_VARIABLE, "0123abcd")
    made = footprint.name("stranger")
    assert made.startswith("ci_job_42_0123abcd_stranger_") and len(made) <= 63
    assert footprint.name("stranger") != made
    monkeypatch.delenv(footprint.PREFIX_VARIABLE)
    assert footprint.name("db").startswith("cronpolicy_test_0123abcd_db_")


@pytest.mark.parametrize("prefix", ["bad-name", "x" * 31, "a b", "drop;"])
def test_a_prefix_that_is_not_a_plain_short_name_is_refused(monkeypatch, prefix):
    monkeypatch.setenv(footprint.PREFIX_VARIABLE, prefix)
    monkeypatch.delenv(footprint.RUN_VARIABLE)
    with pytest.raises(ValueError, match=footprint.PREFIX_VARIABLE):
        footprint.start_run()
    assert footprint.RUN_VARIABLE not in os.environ


def test_workers_without_a_first_process_share_one_run_and_the_last_checks(
        monkeypatch, tmp_path):
    """With --pyargs the xdist controller never configures this conftest:
    its workers must still be one run (one token, one directory), and only
    the last of them to finish may drop what the run made (a worker that
    dropped the group roles while another still used them left them)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(footprint.tempfile, "tempdir", None)
    runs = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.delenv(footprint.RUN_VARIABLE, raising=False)
        monkeypatch.delenv(footprint.RUN_DIR_VARIABLE, raising=False)
        sharing = footprint.start_run({"testrunuid": "feedc0de" * 4, "workercount": 3,
                                       "workerid": worker})
        runs.append((sharing, os.environ[footprint.RUN_VARIABLE],
                     os.environ[footprint.RUN_DIR_VARIABLE]))
    assert {run[1:] for run in runs} == {("feedc0de", runs[0][2])}
    assert [sharing for sharing, _, _ in runs] == [3, 3, 3]
    assert [footprint.last_to_finish(3) for _ in range(3)] == [False, False, True]
    # Under a controller that configured it, the workers inherit and never check.
    assert footprint.start_run({"testrunuid": "0" * 32, "workercount": 3}) == 0
    assert footprint.last_to_finish(0) is False


def test_the_last_run_out_drops_the_group_roles_a_test_run_made(pg_dsn):
    """Two runs at once on one server: the first to finish could not drop
    the group roles while the other's database granted to them, and the
    other had not made them, so neither dropped them.  A run's roles carry
    a mark; whichever run ends when nothing uses them drops them.  A role
    without the mark (a DBA's) is never touched.  (Uniquely named roles
    stand in for roles.sql's.)"""
    from .conftest import admin_connection
    used, unused, theirs = (footprint.name(kind) for kind in ("gused", "gunused", "gtheirs"))
    with admin_connection() as connection, connection.cursor() as cursor:
        for role in (used, unused, theirs):
            cursor.execute('CREATE ROLE "%s"' % role)
        footprint.mark_roles(cursor, [used, unused])
        with psycopg2.connect(pg_dsn) as other_run, other_run.cursor() as other:
            other.execute('GRANT USAGE ON SCHEMA cronpolicy TO "%s"' % used)
        other_run.close()
        try:
            footprint.drop_marked_roles(cursor, [used, unused, theirs])
            cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                           ([used, unused, theirs],))
            assert sorted(row[0] for row in cursor.fetchall()) == sorted([used, theirs])
            with psycopg2.connect(pg_dsn) as other_run, other_run.cursor() as other:
                other.execute('REVOKE USAGE ON SCHEMA cronpolicy FROM "%s"' % used)
            other_run.close()
            footprint.drop_marked_roles(cursor, [used, unused, theirs])     # the last one out
            cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                           ([used, unused, theirs],))
            assert [row[0] for row in cursor.fetchall()] == [theirs]
        finally:
            other_run = psycopg2.connect(pg_dsn)
            other_run.autocommit = True
            try:
                other_run.cursor().execute('REVOKE ALL ON SCHEMA cronpolicy FROM "%s"' % used)
            except psycopg2.Error:
                pass            # dropped by the test, as it should be
            finally:
                other_run.close()
            for role in (used, unused, theirs):
                cursor.execute('DROP ROLE IF EXISTS "%s"' % role)


@pytest.mark.integration
def test_a_process_a_test_starts_hears_ctrl_c():
    """What the tests that stop `deploy run` or a simulation with Ctrl-C
    rely on: a process a test starts has SIGINT's default disposition (in
    Python, KeyboardInterrupt), however the suite itself was started."""
    probe = ("import signal, sys; "
             "sys.exit(0 if signal.getsignal(signal.SIGINT) is signal.default_int_handler else 3)")
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0


@pytest.mark.integration
def test_a_suite_started_with_ctrl_c_ignored_still_starts_processes_that_hear_it(tmp_path):
    """`pytest ... &` in a script (or nohup) starts the suite with SIGINT
    ignored, which every process it starts inherits: nine tests waited out
    their 90 s timeouts and failed.  The suite gives its processes the
    default back (conftest)."""
    import signal
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
               "-q", "--pyargs",
               "cronpolicy.tests.test_layers::test_a_process_a_test_starts_hears_ctrl_c"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
