#!/usr/bin/env python3
"""What one relay costs for thousands of running scripts; prints figures.

fleet_load.py runs real scripts, one Python process each: on this machine
a few hundred at most.  This measures the relay itself at fleet size: N
running runs are written to a fresh database (plain SQL, as an
administrator), and one client process speaks the scripts' side of the
protocol (cronpolicy.relayed) for all of them over N TCP connections to a
real `cronpolicy relay` (an ordinary login): a hello each, then a word
every heartbeat_interval (5 s, spread), reading every tick.  Over --window
seconds: the relay's CPU, its backend's CPU, the database's transactions/s
(xact_commit + xact_rollback) and backends; then a DBA's UPDATE sets
deploy_pending and it times how long until every connection has been sent
its stop (UPDATE commit to the line read, one clock: this machine's).
Then the arithmetic for --fleet running scripts: relays at half a core
each, one connection and their measured transactions/s each.

    python benchmarks/relay_load.py [--runs 1000,5000] [--window 20] [--fleet 50000]
"""

import argparse
import os
import selectors
import socket
import statistics
import sys
import time

import psycopg2

from common import SERVER_DSN, limited_login, percentile, throwaway_database
from fleet_load import cpu_seconds, start_relay

from cronpolicy import relayed

HEARTBEAT = 5.0


def write_runs(dsn, count):
    """(id, key) of ``count`` running runs on as many hosts."""
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO cronpolicy.script_run (name, host, pid, spool_id, decision,"
            " heartbeat_at, lease_expires_at)"
            " SELECT 'job' || (n %% 170), 'host' || n, n, 'relay-load-' || n, 'run',"
            " now(), now() + interval '30 seconds' FROM generate_series(1, %s) AS n"
            " RETURNING id, spool_id", (count,))
        runs = cursor.fetchall()
    connection.close()
    return runs


class Scripts:
    """The scripts' side of N relay connections, in one process."""

    def __init__(self, address, runs):
        host, port = address.rsplit(":", 1)
        self.selector = selectors.DefaultSelector()
        self.connections = {}
        self.stopped_at = {}
        started = time.monotonic()
        for index, (run_id, key) in enumerate(runs):
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.setblocking(False)
            sock.sendall(relayed.encode({
                "watch": run_id, "key": key, "name": "job%d" % (index % 170),
                "host": "host%d" % index, "needs": [], "ignore": False, "safe": True,
                "slot": None, "ttl": 30}))
            # Words spread over a heartbeat, as scripts started at random moments.
            self.connections[sock] = [b"", 0, started + HEARTBEAT * index / len(runs)]
            self.selector.register(sock, selectors.EVENT_READ)

    def pump(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for key, _ in self.selector.select(0.05):
                self._read(key.fileobj)
            now = time.monotonic()
            for sock, state in self.connections.items():
                if now >= state[2]:
                    state[1] += 1
                    sock.send(relayed.encode({"alive": state[1], "safe": True}))
                    state[2] = now + HEARTBEAT

    def _read(self, sock):
        state = self.connections[sock]
        data = sock.recv(65536)
        if not data:
            raise SystemExit("the relay closed a connection")
        lines, state[0] = relayed.split_lines(state[0], data)
        for line in lines:
            if line.startswith(b'{"tick"'):
                continue        # most of what arrives: not worth parsing here
            message = relayed.decode(line)
            if message.get("verdict") and sock not in self.stopped_at:
                self.stopped_at[sock] = time.time()
            if "unknown" in message or "lost" in message or "bye" in message:
                raise SystemExit("the relay said %s" % message)

    def close(self):
        for sock in self.connections:
            sock.close()


def sample(role, database):
    connection = psycopg2.connect(SERVER_DSN)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                       " WHERE datname = %s", (database,))
        transactions = cursor.fetchone()[0]
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE usename = %s", (role,))
        backends = [pid for (pid,) in cursor.fetchall()]
    connection.close()
    return transactions, backends


def measure(count, args):
    with throwaway_database() as (name, dsn), limited_login(dsn, 5) as relay_login:
        role = psycopg2.extensions.parse_dsn(relay_login)["user"]
        runs = write_runs(dsn, count)
        import tempfile
        with tempfile.TemporaryDirectory() as workdir:
            relay, address = start_relay(relay_login, workdir)
            try:
                scripts = Scripts(address, runs)
                scripts.pump(HEARTBEAT + 2)     # every run said its first word
                first, backends = sample(role, name)
                relay_before = cpu_seconds(relay.pid)
                server_before = {pid: cpu_seconds(pid) or 0.0 for pid in backends}
                began = time.monotonic()
                scripts.pump(args.window)
                elapsed = time.monotonic() - began
                last, backends_after = sample(role, name)
                relay_cpu = cpu_seconds(relay.pid) - relay_before
                server_cpu = sum((cpu_seconds(pid) or 0.0) - server_before.get(pid, 0.0)
                                 for pid in backends_after)
                connection = psycopg2.connect(dsn)
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM cronpolicy.script_run"
                                   " WHERE lease_expires_at > now()")
                    alive = cursor.fetchone()[0]
                    flipped = time.time()
                    cursor.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true,"
                                   " reason = 'relay benchmark'")
                connection.close()
                scripts.pump(5.0)
                latencies = [at - flipped for at in scripts.stopped_at.values()]
                told = [line.strip() for line in relay.log if " told " in line]
                scripts.close()
            finally:
                relay.terminate()
                relay.wait(30)
    rate = (last - first) / elapsed
    per_script = relay_cpu / elapsed / count
    served = min(args.fleet, int(0.5 / per_script)) if per_script else args.fleet
    relays = -(-args.fleet // served)
    print("  %5d scripts on one relay: %.1f tx/s, %d backend(s); relay CPU %.1f%% of a core"
          " (%.3f ms/s per script), its backend %.1f%%; leases standing %d of %d"
          % (count, rate, len(backends_after), 100 * relay_cpu / elapsed, 1000 * per_script,
             100 * server_cpu / elapsed, alive, count))
    print("         stop sent to %d of %d: p50 %.3f s, p99 %.3f s, max %.3f s after the UPDATE"
          % (len(latencies), count, statistics.median(latencies) if latencies else -1,
             percentile(latencies, 0.99) if latencies else -1,
             max(latencies) if latencies else -1))
    print("         the relay: %s" % (told[-1] if told else "(said nothing of it)"))
    print("         for %d running: a relay at half a core serves %d, so %d relays: %d server"
          " connections, %.0f tx/s" % (args.fleet, served, relays, relays, relays * rate))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="1000,5000")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--fleet", type=int, default=50000)
    args = parser.parse_args()
    print("cronpolicy relay load (python %s, %d cores, load average %.1f): window %g s"
          % (sys.version.split()[0], os.cpu_count(), os.getloadavg()[0], args.window))
    for count in (int(each) for each in args.runs.split(",")):
        measure(count, args)


if __name__ == "__main__":
    main()
