"""Schema patches: find them, see what a database has, apply what is missing.

The SQL lives in the top-level ``schema/`` folder (``schema/sqlite/`` for the
embedded backend), one file per patch named ``NNNN-description.sql``.  Each
patch is applied in its own transaction together with its row in
``cronpolicy.schema_version``, so a failed patch leaves nothing behind.

This module uses the database drivers directly, not SQLAlchemy: the SQLite
store creates its schema on first use from inside the gate, where importing
SQLAlchemy would cost more than the whole decision.
"""

import os

from cronpolicy.errors import DatabaseError, SchemaError

#: The schema version this code needs: the number of its newest patch.
SCHEMA_VERSION = 27

_PATCH_NAME = r"^(\d{4})-[\w.-]+\.sql$"


def patch_dir(backend):
    """The folder holding ``backend``'s patches, installed or in a checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    for base in (os.path.join(here, "schema_sql"),
                 os.path.join(os.path.dirname(os.path.dirname(here)), "schema")):
        folder = os.path.join(base, "sqlite") if backend == "sqlite" else base
        if os.path.isdir(folder):
            return folder
    raise SchemaError("cannot find cronpolicy's schema patches (looked beside %s)" % here)


def patches(backend):
    """[(version, file name, sql)] for ``backend``, in order."""
    import re
    folder = patch_dir(backend)
    found = []
    for filename in sorted(os.listdir(folder)):
        match = re.match(_PATCH_NAME, filename)
        if match:
            with open(os.path.join(folder, filename), encoding="utf-8") as patch_file:
                found.append((int(match.group(1)), filename, patch_file.read()))
    versions = [version for version, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise SchemaError("schema patches in %s are not numbered 0001, 0002, ...: %s"
                          % (folder, versions))
    return found


def _suppressed(*errors):
    import contextlib       # only when upgrading: the gate imports this module too
    return contextlib.suppress(*errors)


def needs_upgrade_message(found_version, masked_dsn):
    if found_version is None:
        what = "has no cronpolicy schema"
    else:
        what = "has cronpolicy schema version %d, this cronpolicy needs %d" % (
            found_version, SCHEMA_VERSION)
    return "database %s %s: run `cronpolicy schema upgrade`" % (masked_dsn, what)


# PostgreSQL -----------------------------------------------------------------

# Serialises concurrent `schema upgrade` runs (any constant would do; this is
# crc32('cronpolicy schema')).
_UPGRADE_LOCK_KEY = 0x2F0C1B5E


def postgres_version(connection):
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('cronpolicy.schema_version') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return None
        cursor.execute("SELECT max(version) FROM cronpolicy.schema_version")
        return cursor.fetchone()[0]


#: How long a patch waits for a lock before it gives up and tries again
#: (upgrade_postgres), and for how long it tries.
LOCK_WAIT_SECONDS = 2
LOCK_RETRY_SECONDS = 300


def upgrade_postgres(connection):
    """Apply missing patches; return the file names applied.  Idempotent.

    Each patch is one transaction that first takes a transaction-level lock
    and reads the version again: concurrent upgrades wait for each other,
    and no lock outlives its transaction, so an upgrade made through a
    pooler in transaction mode cannot leave one behind on a pooled session.

    A patch waits at most LOCK_WAIT_SECONDS for each lock it takes (a
    table's, for ALTER TABLE): while it waits, every statement that needs
    the table queues behind it, the starts of the whole fleet included, so
    behind a long transaction (pg_dump, a report) it would stop them for
    that transaction's length.  It gives up, rolls back and tries again
    after a pause, in which the queue drains, for LOCK_RETRY_SECONDS, then
    fails in one line (nothing applied of that patch)."""
    import psycopg2
    import time
    applied = []
    in_progress = None
    try:
        connection.autocommit = False
        for version, filename, sql in patches("postgresql"):
            give_up = time.monotonic() + LOCK_RETRY_SECONDS
            while True:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_UPGRADE_LOCK_KEY,))
                        if version <= (postgres_version(connection) or 0):
                            connection.rollback()
                            break
                        in_progress = filename
                        cursor.execute("SET LOCAL lock_timeout = %s",
                                       ("%dms" % (LOCK_WAIT_SECONDS * 1000),))
                        cursor.execute(sql)
                        cursor.execute(
                            "INSERT INTO cronpolicy.schema_version (version, name)"
                            " VALUES (%s, %s)", (version, filename))
                    connection.commit()
                except psycopg2.Error as error:
                    if getattr(error, "pgcode", None) != "55P03" or time.monotonic() >= give_up:
                        raise
                    connection.rollback()
                    time.sleep(LOCK_WAIT_SECONDS)
                    continue
                applied.append(filename)
                in_progress = None
                break
    except psycopg2.Error as error:
        with _suppressed(psycopg2.Error):
            connection.rollback()       # a lost connection has nothing to roll back
        from cronpolicy.errors import first_line
        waited = (" (for %d s a lock it needs was held by another transaction, such as a "
                  "long report or pg_dump; nothing of this patch was applied: try again at "
                  "a quieter moment)" % LOCK_RETRY_SECONDS
                  if getattr(error, "pgcode", None) == "55P03" else "")
        raise DatabaseError("schema upgrade failed%s: %s%s" % (
            " in " + in_progress if in_progress else "", first_line(error), waited),
            denied=getattr(error, "pgcode", None) == "42501") from error
    finally:
        with _suppressed(psycopg2.Error):
            connection.autocommit = True
    return applied


# SQLite ---------------------------------------------------------------------

def split_sqlite_script(sql):
    """Split a script into statements (trigger bodies stay whole)."""
    import sqlite3
    statements, pending = [], ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                statements.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
            part.strip().startswith("--") or not part.strip() for part in pending.splitlines()):
        raise SchemaError("incomplete SQL statement at the end of a schema patch")
    return statements


def sqlite_version(connection):
    row = connection.execute(
        "SELECT 1 FROM cronpolicy.sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return None
    return connection.execute("SELECT max(version) FROM cronpolicy.schema_version").fetchone()[0]


def upgrade_sqlite(connection):
    """Apply missing patches to an attached ``cronpolicy`` database; return names applied.

    ``BEGIN IMMEDIATE`` takes the write lock first, so two scripts starting
    together on a fresh file do not both create the tables.
    """
    applied = []
    for version, filename, sql in patches("sqlite"):
        connection.execute("BEGIN IMMEDIATE")
        try:
            current = sqlite_version(connection) or 0
            if version > current:
                for statement in split_sqlite_script(sql):
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO cronpolicy.schema_version (version, name) VALUES (?, ?)",
                    (version, filename))
                applied.append(filename)
            connection.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled it back itself (a full disk: SQLITE_FULL);
            # a ROLLBACK then would raise in place of the error that says why.
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    return applied


def apply_roles(connection):
    """Apply schema/roles.sql (PostgreSQL) in one transaction; idempotent."""
    import psycopg2
    path = os.path.join(patch_dir("postgresql"), "roles.sql")
    with open(path, encoding="utf-8") as roles_file:
        sql = roles_file.read()
    try:
        connection.rollback()
        connection.autocommit = False
        with connection.cursor() as cursor:
            # Two simultaneous runs in this database must not race on the grants.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_UPGRADE_LOCK_KEY,))
            cursor.execute(sql)
        connection.commit()
    except psycopg2.Error as error:
        connection.rollback()
        from cronpolicy.errors import first_line
        raise DatabaseError("applying roles.sql failed: %s" % first_line(error),
                            denied=getattr(error, "pgcode", None) == "42501") from error
