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
