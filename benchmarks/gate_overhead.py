#!/usr/bin/env python3
"""Benchmarks for the policy gate: prints figures, and exits 1 when a
target is missed (issue 14).

1. Process starts, interleaved pairs (the order rotates each round), each
   a whole process timed from fork to exit, with its peak RSS:
   - PostgreSQL: the floor is a probe (python, import psycopg2, connect,
     one query); a gated no-op CronScript must stay within 1.5x of it in
     wall time (median) and 1.3x in peak RSS (median).
   - SQLite: the floor is python, sqlite3 connect, one INSERT and one
     UPDATE committed; a gated no-op CronScript within 1.5x.
2. Decision latency (one read of the inputs, the decision) with 1e3, 1e6
   and 1e7 rows of history: the largest within 1.2x of the smallest
   (medians).  The estimate's read walks the partial index
   script_run_estimate_idx (name, finished_at DESC) WHERE status =
   'succeeded' from the newest end backwards and stops after N runs that
   were not spooled: N steps whatever the table's size (README.txt here).

PostgreSQL comes from CRONPOLICY_TEST_DSN (a database on a server where the
user may CREATE DATABASE) or 127.0.0.1:5432; a throwaway database is
created and dropped.  Usage:

    python benchmarks/gate_overhead.py [--pairs 30] [--decisions 300]
        [--history 1e3,1e6,1e7] [--no-sqlite] [--starts-only]
        [--login superuser|ordinary] [--through direct|pgbouncer]

--through pgbouncer puts a real pgbouncer (transaction pooling, as
docs/dbas.txt describes it for fleets) between the PostgreSQL starts and
the server, the probe's connection included (equal footing), and runs the
scripts with watch = poll as that mode needs; the issue 32.1 line then
compares the start with the probe through the same pooler.
"""

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg2

from common import limited_login, percentile, throwaway_database

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

PG_PROBE = ("import psycopg2, sys; c = psycopg2.connect(sys.argv[1]); cur = c.cursor();"
            " cur.execute('SELECT 1'); cur.fetchone(); c.close()")
SQLITE_FLOOR = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
                " c.execute('INSERT INTO t (v) VALUES (1)');"
                " c.execute('UPDATE t SET v = 2 WHERE rowid = last_insert_rowid()');"
                " c.commit(); c.close()")

TIME_TARGET = 1.5
RSS_TARGET = 1.3
DECISION_TARGET = 1.2


#: Loaded by every measured process (on PYTHONPATH): at exit it writes the
#: process's own peak RSS (VmHWM) to $CRONPOLICY_BENCH_RSS.  Its own rusage
#: would not do: Linux carries the high-water mark of the parent's memory,
#: which the child shared until exec, into the child's ru_maxrss.
RSS_REPORTER = """\
import atexit, os

def _report():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                with open(os.environ["CRONPOLICY_BENCH_RSS"], "w") as out:
                    out.write(line.split()[1])

if os.environ.get("CRONPOLICY_BENCH_RSS"):
    atexit.register(_report)
"""


def run_once(command, env):
    """(wall seconds, peak RSS in KiB, CPU seconds: user + system) of one process."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        pid = os.posix_spawn(command[0], command, env, file_actions=[
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, errors.fileno(), 2)])
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - started
        errors.seek(0)
        error = errors.read()
    if os.waitstatus_to_exitcode(status) != 0 or error:
        raise SystemExit("benchmark command failed: %s\n%s" % (command, error.decode()))
    with open(env["CRONPOLICY_BENCH_RSS"]) as reported:
        return elapsed, int(reported.read()), usage.ru_utime + usage.ru_stime


def bench_starts(pg_dsn, pairs, include_sqlite, workdir, pooled=False):
    script = os.path.join(workdir, "bench-noop.py")
    with open(script, "w") as handle:
        handle.write(NOOP_SCRIPT)
    config = os.path.join(workdir, "empty.conf")
    with open(config, "w") as handle:
        handle.write("[cronpolicy]\n")
    floor_file = os.path.join(workdir, "floor.sqlite")
    import sqlite3
    connection = sqlite3.connect(floor_file)
    connection.execute("CREATE TABLE t (v)")
    connection.commit()
    connection.close()
    reporter = os.path.join(workdir, "rss")
    os.mkdir(reporter)
    with open(os.path.join(reporter, "sitecustomize.py"), "w") as handle:
        handle.write(RSS_REPORTER)
    env = dict(os.environ, CRONPOLICY_CONFIG=config, PYTHONPATH=reporter,
               CRONPOLICY_BENCH_RSS=os.path.join(workdir, "rss.out"),
               CRONPOLICY_LOCK_DIR=os.path.join(workdir, "locks"),
               CRONPOLICY_STATE_DIR=os.path.join(workdir, "state"))
    commands = {
        "python -c pass": ([sys.executable, "-c", "pass"], env),
        "PostgreSQL probe": ([sys.executable, "-c", PG_PROBE, pg_dsn], env),
        "gated no-op, PostgreSQL": ([sys.executable, script], dict(
            env, CRONPOLICY_DSN=pg_dsn, **({"CRONPOLICY_WATCH": "poll"} if pooled else {}))),
    }
    if include_sqlite:
        commands["SQLite floor"] = ([sys.executable, "-c", SQLITE_FLOOR, floor_file], env)
        commands["gated no-op, SQLite"] = ([sys.executable, script], dict(
            env, CRONPOLICY_DSN="sqlite:///" + os.path.join(workdir, "bench.sqlite")))
    labels = list(commands)
    for label in labels:            # warm the page cache, the databases and the caches
        run_once(*commands[label])
        run_once(*commands[label])
    wall = {label: [] for label in labels}
    rss = {label: [] for label in labels}
    cpu = {label: [] for label in labels}
    for round_number in range(pairs):
        shift = round_number % len(labels)
        for label in labels[shift:] + labels[:shift]:
            elapsed, peak, used = run_once(*commands[label])
            wall[label].append(elapsed)
            rss[label].append(peak)
            cpu[label].append(used)
    print("Process starts, %d interleaved rounds (fork to exit):" % pairs)
    for label in labels:
        values = wall[label]
        print("  %-26s median %7.1f ms  p90 %7.1f ms  min %7.1f ms   peak RSS median %6.0f KiB"
              "   CPU median %5.1f ms"
              % (label, statistics.median(values) * 1e3, percentile(values, 0.9) * 1e3,
                 min(values) * 1e3, statistics.median(rss[label]),
                 statistics.median(cpu[label]) * 1e3))
    missed = []
    for gated, floor, targets in (("gated no-op, PostgreSQL", "PostgreSQL probe",
                                   (("wall time", wall, TIME_TARGET), ("peak RSS", rss,
                                                                       RSS_TARGET))),
                                  ("gated no-op, SQLite", "SQLite floor",
                                   (("wall time", wall, TIME_TARGET),))):
        if gated not in wall:
            continue
        for what, figures, target in targets:
            ratio = statistics.median(figures[gated]) / statistics.median(figures[floor])
            met = ratio <= target
            print("  %s / %s, %s (medians): %.2fx   (target: within %.1fx)%s"
                  % (gated, floor, what, ratio, target, "" if met else "   MISSED"))
            if not met:
                missed.append("%s %s %.2fx > %.1fx" % (gated, what, ratio, target))
    for gated, floor, target in (("gated no-op, PostgreSQL", "PostgreSQL probe", 1.2),
                                 ("gated no-op, SQLite", "SQLite floor", 1.3)):
        if gated in wall:       # issue 32.1's tighter targets: said, not enforced
            ratio = statistics.median(wall[gated]) / statistics.median(wall[floor])
            rounds = statistics.median(a / b for a, b in zip(wall[gated], wall[floor]))
            used = statistics.median(cpu[gated]) / statistics.median(cpu[floor])
            print("  issue 32.1: %s / %s %.2fx (the rounds' own ratios: median %.2fx;"
                  " CPU %.2fx), target %.1fx%s" % (gated, floor, ratio, rounds, used, target,
                                                  "" if ratio <= target else "   missed"))
    modules = subprocess.run(
        [sys.executable, "-c", "import sys, cronpolicy.script;"
         " print(len(sys.modules), 'sqlalchemy' in sys.modules, 'argparse' in sys.modules,"
         " 'logging' in sys.modules)"], capture_output=True, text=True).stdout.split()
    print("  modules after importing the gate: %s; SQLAlchemy %s, argparse %s, logging %s"
          % tuple(modules))
    return missed


@contextlib.contextmanager
def through_pgbouncer(dsn):
    """The DSN of ``dsn``'s database and login through a new pgbouncer in
    transaction pooling; the pooler stops after.  Its server connections
    are made once and kept warm, as a fleet's pooler keeps them."""
    from psycopg2.extensions import parse_dsn
    from cronpolicy.tests.pgbouncer import Pgbouncer
    params = parse_dsn(dsn)
    bouncer = Pgbouncer(dsn, "transaction", users=[params["user"]] if params.get("user") else [])
    bouncer.start()
    try:
        yield bouncer.dsn(params["dbname"], params.get("user"))
    finally:
        bouncer.close()


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


def bench_decisions(label, dsn, fill, decisions, sizes):
    settings = Settings(dsn=dsn, dsn_source="--dsn")
    results = {}
    for rows in sizes:
        started = time.monotonic()
        fill(rows)
        filled = time.monotonic() - started
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
            # full window of recent runs: every size does the same work per decision.
            assert decision.run and len(inputs.recent_runtimes) == settings.estimate_runs
        finally:
            store.close()
        results[rows] = timings
        print("  %-10s %9d history rows: median %7.1f us  p90 %7.1f us  p99 %7.1f us"
              "   (filled in %.0f s)" % (
                  label, rows, statistics.median(timings) * 1e6, percentile(timings, 0.9) * 1e6,
                  percentile(timings, 0.99) * 1e6, filled))
    ratio = statistics.median(results[max(sizes)]) / statistics.median(results[min(sizes)])
    met = ratio <= DECISION_TARGET
    print("  %-10s %.0e / %.0e (medians): %.2fx   (target: within %.1fx)%s" % (
        label, max(sizes), min(sizes), ratio, DECISION_TARGET, "" if met else "   MISSED"))
    return [] if met else ["%s decision latency %.2fx > %.1fx" % (label, ratio,
                                                                  DECISION_TARGET)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--history", default="1e3,1e6,1e7",
                        help="history sizes, comma-separated (default 1e3,1e6,1e7)")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--starts-only", action="store_true")
    parser.add_argument("--login", choices=("superuser", "ordinary"), default="superuser",
                        help="whom the starts and the probe connect as: the server's "
                             "superuser (default), or a new ordinary login with a script's "
                             "rights, as a fleet's scripts connect")
    parser.add_argument("--through", choices=("direct", "pgbouncer"), default="direct",
                        help="how the starts and the probe reach PostgreSQL: directly "
                             "(default), or through a pgbouncer in transaction pooling "
                             "started for the run")
    args = parser.parse_args()
    sizes = sorted(int(float(size)) for size in args.history.split(","))

    missed = []
    with throwaway_database() as (_, pg_dsn), tempfile.TemporaryDirectory() as workdir, \
            contextlib.ExitStack() as logins:
        print("cronpolicy gate benchmarks (python %s, %d cores)"
              % (sys.version.split()[0], os.cpu_count()))
        starts_dsn = pg_dsn
        if args.login == "ordinary":
            starts_dsn = logins.enter_context(limited_login(pg_dsn, 100))
            print("PostgreSQL starts and probe as an ordinary login")
        if args.through == "pgbouncer":
            starts_dsn = logins.enter_context(through_pgbouncer(starts_dsn))
            print("PostgreSQL starts and probe through pgbouncer (transaction pooling,"
                  " watch = poll)")
        missed += bench_starts(starts_dsn, args.pairs, not args.no_sqlite, workdir,
                               pooled=args.through == "pgbouncer")
        if not args.starts_only:
            print("Decision latency (one read of the inputs + the decision), %d each:"
                  % args.decisions)
            missed += bench_decisions("PostgreSQL", pg_dsn,
                                      lambda rows: fill_postgres_history(pg_dsn, rows),
                                      args.decisions, sizes)
            if not args.no_sqlite:
                path = os.path.join(workdir, "decisions.sqlite")
                missed += bench_decisions("SQLite", "sqlite:///" + path,
                                          lambda rows: fill_sqlite_history(path, rows),
                                          args.decisions, sizes)
    if missed:
        print("targets missed: " + "; ".join(missed))
        sys.exit(1)
    print("every target met")


if __name__ == "__main__":
    main()
