#!/usr/bin/env python3
"""What running scripts cost the database, per running script; prints figures.

N processes of an interruptible script whose main() sleeps until stopped
run at once, as an ordinary login role, either straight to PostgreSQL
(watch = listen, the default) or through a real pgbouncer in transaction
pooling (pool of 20, watch = poll), with the default intervals
(poll_interval 1s, heartbeat_interval 5s, lease_ttl 30s).  Once every one
is inside main(), for --window seconds:

* transactions/s: the database's xact_commit + xact_rollback delta
  (pg_stat_database; the sampler reads it from another database, so its
  own statements are not counted);
* backends: the role's rows in pg_stat_activity, sampled every 0.1 s
  (mean and peak), and how many of them were in a statement (mean "active":
  by Little's law, that over transactions/s is the server time a
  transaction holds a connection);
* CPU, from /proc (user + system): the role's backends, pgbouncer, and the
  N script processes.  The machine is shared: CPU figures are noisy, the
  transaction and backend counts are not.

Then a DBA's UPDATE sets deploy_pending and it reports how many scripts
stopped and how fast (a stop still reaches a running script within a
second), and the arithmetic for a fleet of --fleet running scripts:
transactions/s, and server connections (direct: one each; pooled: the time
a transaction holds a connection times the transactions/s, doubled for
room).  Targets for 50,000: under 2,000 transactions/s, under 500 server
connections.

    python benchmarks/fleet_load.py [--runs 50,200,500] [--via direct,pgbouncer]
                                    [--window 30] [--fleet 50000]

Direct, every running script holds a backend: the server's max_connections
(100 here) caps N, and counts above --direct-max are left out, saying so.
The login's limit is twice N (plus 10): at four fifths of a limit in use
running scripts stop holding connections (issue 32.5), which is another
measurement (the pooled one's shape).
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

from common import SERVER_DSN, job_script, limited_login, percentile, throwaway_database

from cronpolicy.tests.pgbouncer import Pgbouncer

SCRIPT = job_script('fleet-job')

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` (all its threads), or None."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, ValueError, IndexError):
        return None


def cpu_delta(before, pids):
    """CPU seconds used by ``pids`` since ``before`` ({pid: seconds}); a pid
    not in ``before`` counts whole."""
    total = 0.0
    for pid in pids:
        now = cpu_seconds(pid)
        if now is not None:
            total += now - before.get(pid, 0.0)
    return total


class Sampler:
    """Samples the role's backends every 0.1 s from the admin database."""

    def __init__(self, roles):
        self.roles = list(roles)
        self.counts, self.active, self.pids = [], [], set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.connection = psycopg2.connect(SERVER_DSN)
        self.connection.autocommit = True

    def backends(self):
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pid, state FROM pg_stat_activity WHERE usename = ANY(%s)",
                           (self.roles,))
            return cursor.fetchall()

    def transactions(self, database):
        with self.connection.cursor() as cursor:
            # Stats pending in this session's own cache are not others'.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                           " WHERE datname = %s", (database,))
            return cursor.fetchone()[0]

    def _sample(self):
        while not self._stop.is_set():
            rows = self.backends()
            self.counts.append(len(rows))
            self.active.append(sum(state == "active" for _, state in rows))
            self.pids.update(pid for pid, _ in rows)
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def launch(script, env, workdir, count):
    processes = []
    for index in range(count):
        marker = os.path.join(workdir, "run-%d" % index)
        processes.append((marker, subprocess.Popen(
            [sys.executable, script, marker],
            env=dict(env, CRONPOLICY_HOST="host%d" % index),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    return processes


def read_time(path):
    try:
        with open(path) as handle:
            return float(handle.read())
    except (OSError, ValueError):
        return None


def wait_all_entered(processes, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(os.path.exists(marker + ".entered") or process.poll() is not None
               for marker, process in processes):
            break
        time.sleep(0.5)
    return sum(process.poll() is None and os.path.exists(marker + ".entered")
               for marker, process in processes)


def set_pending(dsn, pending):
    connection = psycopg2.connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = %s,"
                           " reason = 'fleet benchmark'", (pending,))
        connection.commit()
    finally:
        connection.close()
    return time.time()


def stop_all(dsn, processes):
    """Set deploy_pending; (stopped, p50, max) of UPDATE -> interrupted."""
    flipped = set_pending(dsn, True)
    for _, process in processes:
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
    set_pending(dsn, False)
    latencies = [read_time(marker + ".stopped") - flipped for marker, _ in processes
                 if read_time(marker + ".stopped") is not None]
    return latencies


def start_relay(relay_dsn, workdir):
    """A `cronpolicy relay` on a free loopback port: (process, HOST:PORT)."""
    config = os.path.join(workdir, "relay.conf")
    with open(config, "w") as handle:
        handle.write("[cronpolicy]\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "cronpolicy", "relay", "--listen", "127.0.0.1:0"],
        env=dict(os.environ, CRONPOLICY_DSN=relay_dsn, CRONPOLICY_CONFIG=config,
                 XDG_STATE_HOME=os.path.join(workdir, "relay-state")),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = process.stderr.readline()
    if "serving on " not in line:
        sys.exit("the relay did not start: %s%s" % (line, process.stderr.read()[-500:]))
    log = []
    threading.Thread(target=lambda: log.extend(process.stderr), daemon=True).start()
    process.log = log       # what it said since (drained: a full pipe would stall it)
    return process, line.split("serving on ")[1].split()[0]


def measure(name, dsn, login_dsn, role, via, count, args, workdir, bouncer=None, relay=None):
    """``relay``: (process, address, its login role) when via is relay."""
    script = os.path.join(workdir, "fleet_job.py")
    with open(script, "w") as handle:
        handle.write(SCRIPT)
    config = os.path.join(workdir, "fleet.conf")
    with open(config, "w") as handle:
        handle.write("[cronpolicy]\nwatch = %s\n" % ("poll" if bouncer else "listen"))
        if relay is not None:
            handle.write("relay = %s\n" % relay[1])
    env = dict(os.environ, CRONPOLICY_DSN=bouncer.dsn(name, user=role) if bouncer else login_dsn,
               CRONPOLICY_CONFIG=config, XDG_STATE_HOME=os.path.join(workdir, "state"))
    env.pop("CRONPOLICY_WATCH", None)
    env.pop("CRONPOLICY_RELAY", None)
    rundir = tempfile.mkdtemp(dir=workdir)
    processes = launch(script, env, rundir, count)
    running = wait_all_entered(processes, 300)
    time.sleep(6)       # past the first heartbeats (1s, 2s, 4s), into the steady state
    sampler = Sampler([role] + ([relay[2]] if relay else []))
    clients = [process.pid for _, process in processes]
    before_clients = {pid: cpu_seconds(pid) or 0.0 for pid in clients}
    before_server = {pid: cpu_seconds(pid) or 0.0 for pid, _ in sampler.backends()}
    # The middle tier: pgbouncer, or the relay.
    middle = bouncer.process.pid if bouncer else relay[0].pid if relay else None
    before_bouncer = cpu_seconds(middle) if middle else 0.0
    first = sampler.transactions(name)
    started = time.monotonic()
    with sampler:
        time.sleep(args.window)
    last = sampler.transactions(name)
    elapsed = time.monotonic() - started
    server_cpu = cpu_delta(before_server, sampler.pids)
    client_cpu = cpu_delta(before_clients, clients)
    bouncer_cpu = (cpu_seconds(middle) - before_bouncer) if middle else 0.0
    sampler.connection.close()
    latencies = stop_all(dsn, processes)
    rate = (last - first) / elapsed
    backends = statistics.mean(sampler.counts)
    held = statistics.mean(sampler.active) / rate if rate else 0.0
    print("  %-9s %4d running (of %d): %7.1f tx/s = %.4f per script; backends mean %.1f,"
          " peak %d; CPU per script: PostgreSQL %.2f ms/s, %s %.2f ms/s,"
          " client %.2f ms/s" % (
              via, running, count, rate, rate / running, backends, max(sampler.counts),
              1000 * server_cpu / elapsed / running, "relay" if relay else "pgbouncer",
              1000 * bouncer_cpu / elapsed / running,
              1000 * client_cpu / elapsed / running))
    fleet_rate = rate / running * args.fleet
    connections = args.fleet if bouncer is None else 2 * fleet_rate * held
    if relay is not None:
        # A relay's statements do not grow with its scripts (one a poll):
        # relays = what one core serves at the measured CPU per script,
        # each one connection and this run's transactions/s.
        per_core = 1.0 / (bouncer_cpu / elapsed / running) if bouncer_cpu > 0 else args.fleet
        relays = max(1, -(-args.fleet // int(min(per_core / 2, args.fleet))))
        fleet_rate, connections = rate * relays, relays
        print("            a relay at half a core serves %d scripts: %d relays for %d running"
              % (min(per_core / 2, args.fleet), relays, args.fleet))
    print("            stop: %d of %d stopped, UPDATE -> interrupted p50 %.2f s, p99 %.2f s;"
          " a transaction holds a connection %.2f ms; for %d running: %.0f tx/s,"
          " %.0f server connections" % (
              len(latencies), running, statistics.median(latencies) if latencies else -1,
              percentile(latencies, 0.99) if latencies else -1, 1000 * held, args.fleet,
              fleet_rate, connections))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="50,200,500")
    parser.add_argument("--via", default="direct,pgbouncer")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--fleet", type=int, default=50000)
    parser.add_argument("--pool", type=int, default=20)
    parser.add_argument("--direct-max", type=int, default=50)
    args = parser.parse_args()
    counts = [int(count) for count in args.runs.split(",")]
    print("cronpolicy fleet load (python %s, %d cores, load average %.1f): window %g s"
          % (sys.version.split()[0], os.cpu_count(), os.getloadavg()[0], args.window))
    for via in args.via.split(","):
        for count in counts:
            if via == "direct" and count > args.direct_max:
                print("  %-9s %4d running: left out (one backend each; --direct-max %d)"
                      % (via, count, args.direct_max))
                continue
            with throwaway_database() as (name, dsn), \
                    tempfile.TemporaryDirectory() as workdir, \
                    limited_login(dsn, 2 * count + 10 if via == "direct"
                                  else 40 if via == "relay" else args.pool) as login:
                role = psycopg2.extensions.parse_dsn(login)["user"]
                bouncer = relay = None
                if via == "pgbouncer":
                    bouncer = Pgbouncer(dsn, "transaction", users=[role], pool_size=args.pool,
                                        max_client_conn=count * 2 + 100).start()
                try:
                    if via == "relay":
                        with limited_login(dsn, 5) as relay_login:
                            process, address = start_relay(relay_login, workdir)
                            relay = (process, address,
                                     psycopg2.extensions.parse_dsn(relay_login)["user"])
                            try:
                                measure(name, dsn, login, role, via, count, args, workdir,
                                        relay=relay)
                            finally:
                                process.terminate()
                                process.wait(30)
                    else:
                        measure(name, dsn, login, role, via, count, args, workdir, bouncer)
                finally:
                    if bouncer is not None:
                        bouncer.close()


if __name__ == "__main__":
    main()
