#!/usr/bin/env python3
"""Many running scripts through pgbouncer in transaction pooling; prints figures.

A real pgbouncer (pool_mode = transaction, default_pool_size and
max_db_connections 20) stands in front of a throwaway database; the scripts
connect through it as an ordinary login role that PostgreSQL itself also
limits to 20 connections, with ``watch = poll`` and the default intervals
(poll_interval 1s, heartbeat_interval 5s).  Server connections of that role
are counted in pg_stat_activity every 50 ms throughout.

1. Starts: N processes (500 by default) of an interruptible script whose
   main() lasts 5 s, launched together.  Reports how many were decided and
   recorded, launch -> main() times (p50/p99), and how many were in main()
   at once at the peak (on two cores Python's own start-up spreads them out).
2. Stop requests: N processes whose main() lasts until stopped, launched
   together; once every one is inside main() (all N running at once), a
   DBA's UPDATE sets deploy_pending.  Reports how many stopped, the time
   from the UPDATE's commit to each script's interruption (p50/p99/max),
   and how many runs were recorded as interrupted.
Target: all decided and recorded, every stop request heard, server
connections never above 20.

    python benchmarks/pooler.py [--runs 500] [--pool 20]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

from common import job_script, limited_login, percentile, python_floor, throwaway_database

from cronpolicy.tests.pgbouncer import Pgbouncer

SCRIPT = job_script('pooled-job')


class ServerConnections:
    """Samples the role's server connections (pg_stat_activity) in a thread."""

    def __init__(self, dsn, role):
        self.dsn, self.role = dsn, role
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _sample(self):
        connection = psycopg2.connect(self.dsn)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                while not self._stop.is_set():
                    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                                   (self.role,))
                    self.peak = max(self.peak, cursor.fetchone()[0])
                    self.samples += 1
                    self._stop.wait(0.05)
        finally:
            connection.close()


def launch(script, env, workdir, phase, count, seconds):
    processes = []
    for index in range(count):
        marker = os.path.join(workdir, "%s-%d" % (phase, index))
        processes.append((marker, time.time(), subprocess.Popen(
            [sys.executable, script, marker],
            env=dict(env, CRONPOLICY_HOST="web%d" % index, BENCH_SECONDS=str(seconds)),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    return processes


def read_time(path):
    try:
        with open(path) as handle:
            return float(handle.read())
    except (OSError, ValueError):
        return None


def finish(processes, timeout=900):
    codes, errors = {}, []
    for marker, _, process in processes:
        _, err = process.communicate(timeout=timeout)
        codes[process.returncode] = codes.get(process.returncode, 0) + 1
        if process.returncode not in (0, 6) and len(errors) < 3:
            errors.append(err.decode(errors="replace").strip()[-300:])
    return codes, errors


def statuses(dsn):
    connection = psycopg2.connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT status, count(*) FROM cronpolicy.script_run GROUP BY status")
            return dict(cursor.fetchall())
    finally:
        connection.close()


def peak_concurrency(intervals):
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def starts(dsn, script, env, workdir, count):
    processes = launch(script, env, workdir, "start", count, 5)
    codes, errors = finish(processes)
    decided = [read_time(marker + ".entered") - launched for marker, launched, _ in processes
               if read_time(marker + ".entered") is not None]
    intervals = [(read_time(marker + ".entered"), read_time(marker + ".done"))
                 for marker, _, _ in processes
                 if read_time(marker + ".entered") and read_time(marker + ".done")]
    print("  %d starts of a 5 s run: exit codes %s; entered main() %d; launch -> main()"
          " p50 %.2f s, p99 %.2f s; at most %d in main() at once; recorded %s" % (
              count, codes, len(decided), statistics.median(decided),
              percentile(decided, 0.99), peak_concurrency(intervals), statuses(dsn)))
    for error in errors:
        print("    an error: %s" % error)


def stops(dsn, script, env, workdir, count):
    processes = launch(script, env, workdir, "stop", count, 600)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        entered = sum(os.path.exists(marker + ".entered") for marker, _, _ in processes)
        ended = sum(process.poll() is not None for _, _, process in processes)
        if entered + ended >= count and all(
                os.path.exists(marker + ".entered") or process.poll() is not None
                for marker, _, process in processes):
            break
        time.sleep(0.2)
    running = sum(process.poll() is None for _, _, process in processes)
    connection = psycopg2.connect(dsn)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true,"
                       " reason = 'pooler benchmark'")
    connection.commit()
    flipped = time.time()
    codes, errors = finish(processes)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false, reason = ''")
    connection.commit()
    connection.close()
    latencies = [read_time(marker + ".stopped") - flipped for marker, _, _ in processes
                 if read_time(marker + ".stopped") is not None]
    print("  %d runs in main() at once when deploy_pending was set: exit codes %s;"
          " stopped %d; UPDATE -> interrupted p50 %.2f s, p99 %.2f s, max %.2f s;"
          " recorded %s" % (running, codes, len(latencies), statistics.median(latencies),
                            percentile(latencies, 0.99), max(latencies), statuses(dsn)))
    for error in errors:
        print("    an error: %s" % error)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--pool", type=int, default=20)
    args = parser.parse_args()
    with throwaway_database() as (name, dsn), tempfile.TemporaryDirectory() as workdir, \
            limited_login(dsn, args.pool) as login_dsn:
        role = psycopg2.extensions.parse_dsn(login_dsn)["user"]
        bouncer = Pgbouncer(dsn, "transaction", users=[role], pool_size=args.pool,
                            max_client_conn=args.runs * 2 + 100).start()
        try:
            script = os.path.join(workdir, "pooled_job.py")
            with open(script, "w") as handle:
                handle.write(SCRIPT)
            config = os.path.join(workdir, "pooled.conf")
            with open(config, "w") as handle:
                handle.write("[cronpolicy]\nwatch = poll\n")
            env = dict(os.environ, CRONPOLICY_DSN=bouncer.dsn(name, user=role),
                       CRONPOLICY_CONFIG=config, XDG_STATE_HOME=os.path.join(workdir, "state"))
            env.pop("CRONPOLICY_WATCH", None)
            print("cronpolicy through pgbouncer %s pooling (python %s, %d cores): pool %d,"
                  " role CONNECTION LIMIT %d, watch = poll, poll_interval 1s"
                  % (bouncer.mode, sys.version.split()[0], os.cpu_count(), args.pool, args.pool))
            python_floor(args.runs)
            with ServerConnections(dsn, role) as server:
                starts(dsn, script, env, workdir, args.runs)
                admin_truncate(dsn)
                stops(dsn, script, env, workdir, args.runs)
            print("  server connections of the role: peak %d over %d samples (limit %d)"
                  % (server.peak, server.samples, args.pool))
        finally:
            bouncer.close()


def admin_truncate(dsn):
    connection = psycopg2.connect(dsn)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE cronpolicy.script_run")
    connection.commit()
    connection.close()


if __name__ == "__main__":
    main()
