"""What schema 27's script_run_keys_fit costs a run's start, against the same start without it.

The constraint checks three lengths (name, host, decision) on each INSERT
and UPDATE of script_run; on SQLite two triggers do (the update's only
when one of the three is set).  Measured in the same run, interleaved:

- PostgreSQL: the start's INSERT as the first write of a new connection (as
  every script's start is), and the same INSERT on a held connection (the
  check alone, nothing to hide it); without is the same database with the
  constraint dropped between measurements.
- SQLite: a whole run on a new connection (open, start, end, close);
  without is a file with the two triggers dropped.

    python benchmarks/keys_fit_cost.py [--runs 300]

Prints the medians and p90s and their ratio.  Needs the tests' PostgreSQL
server (CRONPOLICY_TEST_DSN or 127.0.0.1:5432).
"""

import argparse
import os
import sys
import tempfile
import time

import psycopg2

from common import abba, throwaway_database
from tally_cost import sqlite_run, summary

from cronpolicy.store.sqlite import connect_sqlite, open_sqlite

START = ("INSERT INTO cronpolicy.script_run (name, host, pid, decision, estimate_seconds,"
         " lease_expires_at) VALUES ('publish-distro-mirror', 'web17.example.org', 4242, 'run',"
         " 60, now() + interval '30 seconds') RETURNING id")
CONSTRAINT = ("ALTER TABLE cronpolicy.script_run ADD CONSTRAINT script_run_keys_fit"
              " CHECK (char_length(name) <= 255 AND char_length(host) <= 255"
              " AND char_length(decision) <= 64) NOT VALID")


def pg_start(dsn):
    """Seconds the start's INSERT took as a new connection's first write."""
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    try:
        cursor = connection.cursor()
        began = time.perf_counter()
        cursor.execute(START)
        return time.perf_counter() - began
    finally:
        connection.close()


def pg_held(cursor, count=50):
    """Seconds each of ``count`` INSERTs took on a held connection (after one not counted)."""
    cursor.execute(START)
    times = []
    for _ in range(count):
        began = time.perf_counter()
        cursor.execute(START)
        times.append(time.perf_counter() - began)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    options = parser.parse_args()
    print("%d runs each, interleaved, load average %.1f" % (options.runs, os.getloadavg()[0]))
    print("  %-40s %10s %10s   %6s" % ("", "check", "without", "ratio"))
    with throwaway_database() as (_, dsn):
        admin = psycopg2.connect(dsn)
        admin.autocommit = True
        held = psycopg2.connect(dsn)
        held.autocommit = True
        for _ in range(20):
            pg_start(dsn)                               # (warm the server's caches)
        fresh = {True: [], False: []}
        inserts = {True: [], False: []}
        present = True
        for number, wanted in enumerate(abba(True, False, options.runs)):
            if wanted != present:
                admin.cursor().execute(
                    CONSTRAINT if wanted
                    else "ALTER TABLE cronpolicy.script_run DROP CONSTRAINT script_run_keys_fit")
                present = wanted
            fresh[wanted].append(pg_start(dsn))
            if number % 10 < 2:
                inserts[wanted].extend(pg_held(held.cursor()))
        held.close()
        admin.close()
        summary("PostgreSQL: a start, new connection", fresh[True], fresh[False])
        summary("PostgreSQL: a start, held connection", inserts[True], inserts[False])
    with tempfile.TemporaryDirectory() as folder:
        checked, unchecked = os.path.join(folder, "27.db"), os.path.join(folder, "none.db")
        for path in (checked, unchecked):
            open_sqlite(path).close()
        connection = connect_sqlite(unchecked)
        connection.execute("DROP TRIGGER cronpolicy.script_run_keys_fit_insert")
        connection.execute("DROP TRIGGER cronpolicy.script_run_keys_fit_update")
        connection.commit()
        connection.close()
        times = {checked: [], unchecked: []}
        for path in abba(checked, unchecked, options.runs):
            times[path].append(sqlite_run(path))
        summary("SQLite: open, start, end, close", times[checked], times[unchecked])
    return 0


if __name__ == "__main__":
    sys.exit(main())
