#!/usr/bin/env python3
"""Benchmarks for the policy gate; prints figures, asserts nothing.

1. Wall time of one process start, side by side in one run (interleaved):
   a bare ``python -c pass``; the floor, a probe that imports psycopg2,
   connects and runs one query; and a gated no-op CronScript (lock file,
   one read, a start and a finish record).  Target: gated within 2x probe.
2. Decision latency (load the inputs in one round trip, decide) with 1e3 and
   1e6 rows of history.  Target: 1e6 within 1.2x of 1e3.

PostgreSQL comes from CRONPOLICY_TEST_DSN (a database on a server where the
user may CREATE DATABASE) or 127.0.0.1:5432; a throwaway database is
created and dropped.  Usage:

    python benchmarks/gate_overhead.py [--starts 30] [--decisions 300] [--no-sqlite]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg2

from common import percentile, throwaway_database

from cronpolicy.config import Settings
from cronpolicy.policy import ScriptFacts, decide
from cronpolicy.store import open_store
from cronpolicy.store.sqlite import open_sqlite


NOOP_SCRIPT = """\
from cronpolicy import CronScript

class Noop(CronScript):
    name = "bench-noop"
    expected_runtime = 1

    def main(self):
        pass

if __name__ == "__main__":
    Noop().run()
"""

PROBE = ("import psycopg2, sys; c = psycopg2.connect(sys.argv[1]); cur = c.cursor();"
         " cur.execute('SELECT 1'); cur.fetchone(); c.close()")








def fmt_ms(values):
    return "median %7.1f ms  p90 %7.1f ms  min %7.1f ms" % (
        statistics.median(values) * 1e3, percentile(values, 0.9) * 1e3, min(values) * 1e3)


def time_command(command, env):
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit("benchmark command failed: %s\n%s" % (command, completed.stderr.decode()))
    return elapsed


def bench_starts(pg_dsn, starts, include_sqlite, workdir):
    script = os.path.join(workdir, "bench-noop.py")
    with open(script, "w") as handle:
        handle.write(NOOP_SCRIPT)
    config = os.path.join(workdir, "empty.conf")
    with open(config, "w") as handle:
        handle.write("[cronpolicy]\n")
    env = dict(os.environ, CRONPOLICY_CONFIG=config, CRONPOLICY_LOCK_DIR=os.path.join(workdir, "locks"),
               XDG_STATE_HOME=os.path.join(workdir, "state"))
    pg_env = dict(env, CRONPOLICY_DSN=pg_dsn)
    sqlite_env = dict(env, CRONPOLICY_DSN="sqlite:///" + os.path.join(workdir, "bench.sqlite"))
    commands = {
        "python -c pass": ([sys.executable, "-c", "pass"], env),
        "probe (psycopg2 + connect + 1 query)": ([sys.executable, "-c", PROBE, pg_dsn], env),
        "gated no-op CronScript, PostgreSQL": ([sys.executable, script], pg_env),
    }
    if include_sqlite:
        commands["gated no-op CronScript, SQLite"] = ([sys.executable, script], sqlite_env)
    for command, command_env in commands.values():  # warm the page cache and the databases
        time_command(command, command_env)
    timings = {label: [] for label in commands}
    for _ in range(starts):
        for label, (command, command_env) in commands.items():
            timings[label].append(time_command(command, command_env))
    print("Process start, %d interleaved runs each:" % starts)
    for label, values in timings.items():
        print("  %-40s %s" % (label, fmt_ms(values)))
    probe = statistics.median(timings["probe (psycopg2 + connect + 1 query)"])
    gated = statistics.median(timings["gated no-op CronScript, PostgreSQL"])
    print("  gated / probe (medians): %.2fx   (target: within 2x)" % (gated / probe))
    modules = subprocess.run(
        [sys.executable, "-c", "import sys, cronpolicy.script;"
         " print(len(sys.modules), 'sqlalchemy' in sys.modules)"],
        capture_output=True, text=True).stdout.split()
    print("  modules loaded by importing the gate: %s; SQLAlchemy among them: %s" % tuple(modules))


def fill_postgres_history(dsn, rows, scripts=40):
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE cronpolicy.script_run")
        cursor.execute(
            "INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at, status,"
            " exit_code)"
            " SELECT 'job-' || (i %% %d), 'web' || (i %% 7), i,"
            "        now() - i * interval '1 second' - interval '10 minutes',"
            "        now() - i * interval '1 second' - interval '10 minutes'"
            "          + (60 + i %% 600) * interval '1 second',"
            "        CASE WHEN i %% 13 = 0 THEN 'failed' ELSE 'succeeded' END,"
            "        CASE WHEN i %% 13 = 0 THEN 1 ELSE 0 END"
            "   FROM generate_series(1, %d) AS i" % (scripts, rows))
        cursor.execute("VACUUM ANALYZE cronpolicy.script_run")
    connection.close()


def fill_sqlite_history(path, rows, scripts=40):
    connection = open_sqlite(path)
    connection.execute("BEGIN")
    connection.execute("DELETE FROM cronpolicy.script_run")
    connection.execute(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)"
        " INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at, status,"
        " exit_code)"
        " SELECT 'job-' || (i % ?), 'web' || (i % 7), i,"
        "  strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i + 600) || ' seconds'),"
        "  strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i + 600 - 60 - i % 600) || ' seconds'),"
        "  CASE WHEN i % 13 = 0 THEN 'failed' ELSE 'succeeded' END,"
        "  CASE WHEN i % 13 = 0 THEN 1 ELSE 0 END FROM seq", (rows, scripts))
    connection.execute("COMMIT")
    connection.execute("ANALYZE cronpolicy.script_run")
    connection.close()


def bench_decisions(label, dsn, fill, decisions):
    settings = Settings(dsn=dsn, dsn_source="--dsn")
    results = {}
    for rows in (1000, 1000000):
        fill(rows)
        store = open_store(settings)
        try:
            store.load_inputs("job-7", settings.estimate_runs)  # connect outside the timing
            timings = []
            for _ in range(decisions):
                started = time.perf_counter()
                inputs = store.load_inputs("job-7", settings.estimate_runs)
                decision = decide(inputs, ScriptFacts("job-7", "web1"), settings)
                timings.append(time.perf_counter() - started)
            # 40 scripts share the rows, so even at 1e3 the measured one has a
            # full window of recent runs: both sizes do the same work per decision.
            assert decision.run and len(inputs.recent_runtimes) == settings.estimate_runs
        finally:
            store.close()
        results[rows] = timings
        print("  %-10s %9d history rows: median %7.1f us  p90 %7.1f us  p99 %7.1f us" % (
            label, rows, statistics.median(timings) * 1e6, percentile(timings, 0.9) * 1e6,
            percentile(timings, 0.99) * 1e6))
    ratio = statistics.median(results[1000000]) / statistics.median(results[1000])
    print("  %-10s 1e6 / 1e3 (medians): %.2fx   (target: within 1.2x)" % (label, ratio))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=30)
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()

    with throwaway_database() as (_, pg_dsn), tempfile.TemporaryDirectory() as workdir:
        print("cronpolicy gate benchmarks (python %s, %d cores)"
              % (sys.version.split()[0], os.cpu_count()))
        bench_starts(pg_dsn, args.starts, not args.no_sqlite, workdir)
        print("Decision latency (one read of the inputs + the decision), %d each:"
              % args.decisions)
        bench_decisions("PostgreSQL", pg_dsn,
                        lambda rows: fill_postgres_history(pg_dsn, rows), args.decisions)
        if not args.no_sqlite:
            path = os.path.join(workdir, "decisions.sqlite")
            bench_decisions("SQLite", "sqlite:///" + path,
                            lambda rows: fill_sqlite_history(path, rows), args.decisions)

if __name__ == "__main__":
    main()
