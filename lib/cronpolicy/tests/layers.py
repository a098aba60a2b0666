"""The suite's two layers, marked on every test at collection.

``integration``: the test uses a database (PostgreSQL, pgbouncer or a
SQLite file) through its fixtures or backend parameters, or its module (or
the test itself) is marked ``integration`` because it starts real
processes.  ``unit``: every other test: the pure core, the in-memory store,
the parsers.  ``-m unit`` runs the unit layer alone, with no server.

A unit test may not reach outside the process: while one runs, connecting
to PostgreSQL or SQLite and starting a process (fork, spawn, exec through
subprocess) raise, and the test errors at teardown even if the code under
test swallowed the exception (the gate falls back on a store error, say),
naming what it touched, so a test that belongs to the other layer cannot
sit unnoticed in the quick one.

A module whose every test is integration says so (``pytestmark`` naming
``pytest.mark.integration``); under ``-m unit`` alone such a module is not
even imported, which saves each worker the imports and assertion rewriting
of a third of the suite.
"""

import os
import re
import sqlite3
import subprocess
import threading

import psycopg2
import pytest

#: Fixtures that reach a database; a test whose fixture closure holds one
#: (directly or through another fixture, such as ``scripts`` or ``cli``
#: through ``dsn``) is an integration test.
DATABASE_FIXTURES = frozenset((
    "pg_database", "pg_dsn", "pg_roles", "empty_pg_dsn", "fault_proxy", "pgbouncers",
    "pg_scripts", "sqlite_dsn", "dsn"))

#: Backend parameters (of ``dsn`` and of tests taking a ``backend``).
BACKEND_VALUES = ("postgresql", "sqlite", "pgbouncer-")


def configure(config):
    config.addinivalue_line("markers", "unit: no database, no process: the pure core, the "
                                       "in-memory store, the parsers (marked at collection)")
    config.addinivalue_line("markers", "integration: real PostgreSQL, pgbouncer, SQLite files "
                                       "or processes (marked by fixtures, or by hand for "
                                       "processes)")


#: A module-level mark that makes every test of the module integration.
_INTEGRATION_MODULE = re.compile(r"^pytestmark = .*\bpytest\.mark\.integration\b", re.M)


def ignore_collect(collection_path, config):
    """True for a test module left out of a ``-m unit`` run: it marks
    every one of its tests integration, so none of them would be selected."""
    if (config.option.markexpr.strip() != "unit" or collection_path.suffix != ".py"
            or not collection_path.name.startswith("test_")):
        return None
    try:
        text = collection_path.read_text(encoding="utf-8")
    except OSError:
        return None
    return True if _INTEGRATION_MODULE.search(text) else None


def _uses_a_backend(item):
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return any(isinstance(value, str) and value.startswith(BACKEND_VALUES) for value in params)


def mark(item):
    """Mark ``item`` unit or integration (an explicit integration mark stays)."""
    if (item.get_closest_marker("integration") is not None
            or DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
            or _uses_a_backend(item)):
        item.add_marker(pytest.mark.integration)
    else:
        item.add_marker(pytest.mark.unit)


def _refusing(touched, what, original, elders=()):
    """``original``, refused to the test; ``elders``: threads started before
    the test (an earlier test's database dropped in the background,
    conftest.drop_database_soon), whose doors are not the test's to close."""
    def refuse(*args, **kwargs):
        if threading.current_thread() in elders:
            return original(*args, **kwargs)
        touched.append(what)
        raise RuntimeError("a unit test may not %s: mark the test (or its module) "
                           "integration" % what)
    refuse.original = original
    return refuse


#: (module, attribute, what it does) for each door out of the process.
DOORS = (
    (psycopg2, "_connect", "connect to PostgreSQL"),
    (sqlite3, "connect", "open a SQLite database"),
    (sqlite3.dbapi2, "connect", "open a SQLite database"),
    (os, "fork", "fork"),
    (os, "posix_spawn", "spawn a process"),
    (os, "posix_spawnp", "spawn a process"),
    (os, "execv", "exec a program"),
    (os, "execve", "exec a program"),
    (subprocess, "_fork_exec", "start a process"),    # bound at import from _posixsubprocess
)


@pytest.fixture(autouse=True)
def _unit_stays_in_process(request, monkeypatch):
    """For a unit test, close the doors above for its whole run."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    touched = request.node.layer_touched = []
    elders = set(threading.enumerate()) - {threading.current_thread()}
    for module, name, what in DOORS:
        if hasattr(module, name):
            monkeypatch.setattr(module, name,
                                _refusing(touched, what, getattr(module, name), elders))
    yield
    if touched:
        pytest.fail("%s is marked unit but tried to %s" % (
            request.node.nodeid, " and ".join(sorted(set(touched)))), pytrace=False)

