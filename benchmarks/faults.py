#!/usr/bin/env python3
"""Fault and load benchmarks on PostgreSQL; prints figures, asserts nothing.

1. The herd at :00: N simultaneous starts of a gated no-op script (N = 200
   and 500 by default) against a database limited to 50 connections
   (ALTER DATABASE ... CONNECTION LIMIT 50 on a throwaway database), as an
   ordinary login role limited to 50 connections too (superusers ignore
   connection limits, so the herd must not be one).
   Reports how many were decided, how many errored (exit 4), and the time
   from launch to the decision (main() entered, or the process's end for a
   skip).  For scale, the same number of bare `python -c "import psycopg2"`
   processes launched together: on a small machine the CPU, not the
   database, sets the floor.  Target: all decided, none errored, p99 < 3 s.
   With --seconds, main() lasts that long (issue 32.5: runs that hold their
   connections through main() left later starts to the fallback); the
   records say how many starts the database recorded before main() and
   how many were spooled (ran unseen).
2. A blackholed database (a proxy that accepts and never answers): time to
   a decision against the configured decision_timeout.  Target: within the
   bound plus 10%.

    python benchmarks/faults.py [--herd 200 500] [--limit 50] [--blackhole-runs 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg2

from common import admin, limited_login, percentile, python_floor, throwaway_database

from cronpolicy.tests.faultproxy import FaultProxy


NOOP = """\
import os, sys, time
from cronpolicy import CronScript

class Hourly(CronScript):
    name = "hourly-job"
    single_instance = False
    def main(self):
        open(sys.argv[-1], "w").write(repr(time.time()))
        time.sleep(float(os.environ.get("BENCH_SECONDS", "0")))

if __name__ == "__main__":
    Hourly().run(sys.argv[1:-1])
"""


def herd(dsn, env, workdir, count):
    script = os.path.join(workdir, "hourly.py")
    open(script, "w").write(NOOP)
    launched = {}
    processes = []
    for index in range(count):
        marker = os.path.join(workdir, "entered-%d-%d" % (count, index))
        launched[index] = time.time()
        processes.append((index, marker, subprocess.Popen(
            [sys.executable, script, marker], env=dict(env, CRONPOLICY_HOST="web%d" % index),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    decided, errored, times = 0, 0, []
    stderr_sample = unseen_sample = None
    for index, marker, process in processes:
        _, err = process.communicate(timeout=600)
        ended = time.time()
        if process.returncode == 0:
            decided += 1
            if os.path.exists(marker):
                times.append(float(open(marker).read()) - launched[index])
            else:
                times.append(ended - launched[index])
        else:
            errored += 1
            stderr_sample = stderr_sample or err.decode(errors="replace").strip()[-300:]
        if b"spool" in err and unseen_sample is None:
            unseen_sample = err.decode(errors="replace").strip()[-600:]
    connection = psycopg2.connect(dsn)
    with connection.cursor() as cursor:
        cursor.execute("SELECT CASE WHEN spooled THEN 'spooled ' ELSE '' END || status,"
                       " count(*) FROM cronpolicy.script_run GROUP BY 1")
        recorded = dict(cursor.fetchall())
        cursor.execute("TRUNCATE cronpolicy.script_run")
    connection.commit()
    connection.close()
    print("  %4d starts: decided %d (%.0f%%), errored %d; launch->decision median %.2f s,"
          " p99 %.2f s, max %.2f s; recorded %s" % (
              count, decided, 100.0 * decided / count, errored, statistics.median(times),
              percentile(times, 0.99), max(times), recorded))
    if stderr_sample:
        print("    an error: %s" % stderr_sample)
    if unseen_sample:
        print("    a start that ran unseen: %s" % unseen_sample)


def blackhole(dsn, env, workdir, runs, bound):
    script = os.path.join(workdir, "hourly.py")
    open(script, "w").write(NOOP)
    host, port = "127.0.0.1", int(dsn.rsplit(":", 1)[1].split("/")[0])
    proxy = FaultProxy(host, port)
    proxy.mode = "stall"
    config = os.path.join(workdir, "blackhole.conf")
    open(config, "w").write("[cronpolicy]\ndecision_timeout = %gs\n" % bound)
    proxied = dsn.replace(":%d/" % port, ":%d/" % proxy.port)
    times = []
    try:
        for run in range(runs):
            started = time.time()
            result = subprocess.run(
                [sys.executable, script, os.path.join(workdir, "bh-%d" % run)],
                env=dict(env, CRONPOLICY_DSN=proxied, CRONPOLICY_CONFIG=config),
                capture_output=True)
            times.append(time.time() - started)
            if result.returncode != 0:
                print("    unexpected exit %s: %s" % (result.returncode, result.stderr[-200:]))
    finally:
        proxy.close()
    print("  decision_timeout %gs: whole process median %.2f s, max %.2f s"
          " (bound + 10%% = %.2f s; the process's own start-up is included)"
          % (bound, statistics.median(times), max(times), bound * 1.1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--herd", type=int, nargs="*", default=[200, 500])
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--blackhole-runs", type=int, default=5)
    parser.add_argument("--bound", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=0.0, help="how long main() lasts")
    parser.add_argument("--no-blackhole", action="store_true")
    args = parser.parse_args()
    with throwaway_database() as (name, dsn), tempfile.TemporaryDirectory() as workdir:
        if "127.0.0.1:" not in dsn:
            dsn = dsn.replace("127.0.0.1/", "127.0.0.1:5432/")
        admin('ALTER DATABASE "%s" CONNECTION LIMIT %d' % (name, args.limit))
        config = os.path.join(workdir, "herd.conf")
        open(config, "w").write("[cronpolicy]\n")
        env = dict(os.environ, CRONPOLICY_DSN=dsn, CRONPOLICY_CONFIG=config,
                   XDG_STATE_HOME=os.path.join(workdir, "state"),
                   BENCH_SECONDS=str(args.seconds))
        print("cronpolicy fault benchmarks (python %s, %d cores, PostgreSQL)"
              % (sys.version.split()[0], os.cpu_count()))
        print("The herd: simultaneous starts as an ordinary login, database and role"
              " CONNECTION LIMIT %d, default decision_timeout, main() %gs:"
              % (args.limit, args.seconds))
        with limited_login(dsn, args.limit) as login_dsn:
            for count in args.herd:
                python_floor(count)
                herd(dsn, dict(env, CRONPOLICY_DSN=login_dsn), workdir, count)
        if not args.no_blackhole:
            print("Blackholed database (accepts, never answers), %d runs:" % args.blackhole_runs)
            blackhole(dsn, env, workdir, args.blackhole_runs, args.bound)

if __name__ == "__main__":
    main()
