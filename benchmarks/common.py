"""What the benchmarks share: the server, a throwaway database, percentiles."""

import contextlib
import os
import uuid

import psycopg2

from cronpolicy import schema

SERVER_DSN = os.environ.get("CRONPOLICY_TEST_DSN") or "postgresql://127.0.0.1:5432/postgres"


def admin(sql):
    """Run one statement on the server's admin database (autocommit)."""
    connection = psycopg2.connect(SERVER_DSN)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


@contextlib.contextmanager
def throwaway_database():
    """Yield (name, DSN) of a new database with the cronpolicy schema; drop it after."""
    name = "cronpolicy_bench_%s" % uuid.uuid4().hex[:8]
    admin('CREATE DATABASE "%s"' % name)
    try:
        dsn = SERVER_DSN.rpartition("/")[0] + "/" + name
        connection = psycopg2.connect(dsn)
        try:
            schema.upgrade_postgres(connection)
        finally:
            connection.close()
        yield name, dsn
    finally:
        admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def percentile(values, q):
    """Nearest-rank-style percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
