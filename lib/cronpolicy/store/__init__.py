"""The policy database as the gate sees it: one provider per backend.

* ``postgresql.PostgresStore``: the fleet-wide store;
* ``sqlite.SQLiteStore``: the embedded default for one machine;
* ``memory.MemoryStore``: a database in memory, for tests and library users.

Each provides ``cronpolicy.interfaces.IPolicyStore``; ``open_store`` picks
the one the settings name.  The statements live in postgresql.sql and
sqlite.sql beside this file: one home for each statement, one file per
backend, each statement introduced by a ``-- name: NAME`` line, read once
per process on first use (``queries``).

Modules:

    postgresql    PostgresStore, the fleet's store (postgresql.sql)
    sqlite        SQLiteStore, the embedded default (sqlite.sql)
    memory        MemoryStore, a real provider in memory (tests, library users)
    pgdriver      psycopg2 connections: options, timeouts, errors translated in one place
    reads         what the read commands read, in plain SQL (*-reads.sql)
    writes        what the rollout commands, schedule import and prune write, in plain SQL (*-writes.sql)
"""

import os

from cronpolicy import config
from cronpolicy.errors import DatabaseError

#: What a driver raises, before it sends anything, for a value no database
#: takes: text holding NUL (psycopg2's ValueError) or that is not UTF-8
#: (lone surrogates: UnicodeEncodeError, a ValueError), a whole number past
#: 64 bits (sqlite3's OverflowError).
UNSENDABLE = (ValueError, OverflowError)


def unsendable(error, doing, where):
    """The cronpolicy error for ``error`` (one of UNSENDABLE) raised while
    ``doing`` something in ``where``: refused for its data, as the
    database's own refusals of a value are (pgdriver.translate).  One of
    the two places driver errors become cronpolicy's; pgdriver.translate
    and SQLiteStore._run call it."""
    text = str(error).strip().splitlines()
    return DatabaseError("cannot %s in %s: a value no database takes (%s)" % (
        doing, where, text[0] if text else type(error).__name__), refused=True)


def open_store(settings, application_name="cronpolicy"):
    """The IPolicyStore provider for ``settings.dsn`` (not yet connected)."""
    if settings.backend == config.SQLITE:
        from cronpolicy.store.sqlite import SQLiteStore
        return SQLiteStore(config.sqlite_path(settings.dsn),
                           timeout=min(settings.connect_timeout, settings.decision_timeout),
                           create_directory=settings.dsn_source == "default",
                           lease_ttl=settings.lease_ttl)
    from cronpolicy.store.postgresql import PostgresStore
    return PostgresStore(settings.dsn, connect_timeout=settings.connect_timeout,
                         timeout=settings.decision_timeout, application_name=application_name,
                         source=settings.dsn_source, network=settings.network,
                         lease_ttl=settings.lease_ttl,
                         hold_connection=settings.watch != config.WATCH_POLL)


_loaded = {}


def parse(text):
    """{name: statement} from a file of ``-- name: NAME`` sections.  Comment
    lines are for readers and are not sent (drivers would parse parameter
    markers inside them)."""
    statements, name, lines = {}, None, []

    def close():
        body = "\n".join(lines).strip()
        if name is not None:
            if not body or name in statements:
                raise ValueError("query %r is empty or defined twice" % name)
            statements[name] = body
    for line in text.splitlines():
        if line.startswith("-- name:"):
            close()
            name, lines = line[len("-- name:"):].strip(), []
        elif name is not None and not line.lstrip().startswith("--"):
            lines.append(line)
    close()
    return statements


def queries(backend):
    """The statements of ``backend`` ("postgresql" or "sqlite"; the read
    commands': "postgresql-reads" or "sqlite-reads")."""
    found = _loaded.get(backend)
    if found is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), backend + ".sql")
        with open(path, encoding="utf-8") as sql_file:
            found = _loaded[backend] = parse(sql_file.read())
    return found
