"""What schema 22's tally (cronpolicy.run_tally) costs a run, against the same run without it.

The tally is kept by triggers on script_run that a start and a heartbeat do
not fire; a run's end fires one.  This measures what a script pays, in the
same run, interleaved, with the tally and without:

- PostgreSQL: a run's end (the UPDATE record_finish makes) as the first
  write of a new connection, as every script's end is; without the tally
  is the same database with the trigger script_run_tally_update disabled
  between measurements.
- SQLite: a whole run on a new connection (open, which reads the schema,
  the start's INSERT, the end's UPDATE, close); without the tally is a file
  of schema 21 (the patches before 0022 applied).

    python benchmarks/tally_cost.py [--runs 150]

Prints the medians and p90s and their ratio.  Needs the tests' PostgreSQL
server (CRONPOLICY_TEST_DSN or 127.0.0.1:5432).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import psycopg2

from common import abba, throwaway_database

from cronpolicy import schema
from cronpolicy.store.sqlite import connect_sqlite, open_sqlite

END = ("UPDATE cronpolicy.script_run SET status = 'succeeded', exit_code = 0,"
       " finished_at = greatest(now(), started_at), lease_expires_at = NULL WHERE id = %s")


def pg_end(dsn):
    """Seconds the end's UPDATE took as a new connection's first write."""
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    try:
        cursor = connection.cursor()
        cursor.execute("INSERT INTO cronpolicy.script_run (name, host, pid, estimate_seconds)"
                       " VALUES ('job', 'h1', 1, 60) RETURNING id")
        run_id = cursor.fetchone()[0]
        began = time.perf_counter()
        cursor.execute(END, (run_id,))
        return time.perf_counter() - began
    finally:
        connection.close()


def sqlite_run(path):
    """Seconds a whole run on a new connection took (open, start, end, close)."""
    began = time.perf_counter()
    connection = connect_sqlite(path)
    try:
        cursor = connection.execute(
            "INSERT INTO cronpolicy.script_run (name, host, pid, estimate_seconds)"
            " VALUES ('job', 'h1', 1, 60)")
        connection.commit()
        connection.execute(
            "UPDATE cronpolicy.script_run SET status = 'succeeded', exit_code = 0,"
            " finished_at = max(strftime('%Y-%m-%d %H:%M:%f', 'now'), started_at)"
            " WHERE id = ?", (cursor.lastrowid,))
        connection.commit()
    finally:
        connection.close()
    return time.perf_counter() - began


def schema_21(path):
    """A SQLite file with the patches before 0022."""
    connection = connect_sqlite(path)
    for version, filename, sql in schema.patches("sqlite"):
        if version >= 22:
            break
        for statement in schema.split_sqlite_script(sql):
            connection.execute(statement)
        connection.execute("INSERT INTO cronpolicy.schema_version (version, name) VALUES (?, ?)",
                           (version, filename))
        connection.commit()
    connection.close()


def summary(label, with_tally, without):
    def p90(values):
        return sorted(values)[int(len(values) * 0.9)]
    print("  %-40s %7.3f ms %7.3f ms   %5.2fx   (p90 %.3f / %.3f ms)" % (
        label, statistics.median(with_tally) * 1e3, statistics.median(without) * 1e3,
        statistics.median(with_tally) / statistics.median(without),
        p90(with_tally) * 1e3, p90(without) * 1e3))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=150)
    options = parser.parse_args()
    print("%d runs each, interleaved, load average %.1f" % (options.runs, os.getloadavg()[0]))
    print("  %-40s %10s %10s   %6s" % ("", "tally", "without", "ratio"))
    with throwaway_database() as (_, dsn):
        admin = psycopg2.connect(dsn)
        admin.autocommit = True
        for _ in range(20):
            pg_end(dsn)                                 # (warm the server's caches)
        times = {"ENABLE": [], "DISABLE": []}
        for state in abba("ENABLE", "DISABLE", options.runs):
            admin.cursor().execute("ALTER TABLE cronpolicy.script_run %s TRIGGER"
                                   " script_run_tally_update" % state)
            times[state].append(pg_end(dsn))
        admin.close()
        summary("PostgreSQL: a run's end, new connection", times["ENABLE"], times["DISABLE"])
    with tempfile.TemporaryDirectory() as folder:
        tallied, untallied = os.path.join(folder, "22.db"), os.path.join(folder, "21.db")
        open_sqlite(tallied).close()
        schema_21(untallied)
        times = {tallied: [], untallied: []}
        for path in abba(tallied, untallied, options.runs):
            times[path].append(sqlite_run(path))
        summary("SQLite: open, start, end, close", times[tallied], times[untallied])
    return 0


if __name__ == "__main__":
    sys.exit(main())
