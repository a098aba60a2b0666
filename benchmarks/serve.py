"""How long `cronpolicy serve` takes to answer its page for a large fleet.

Issue 31.3: the page for a fleet of 10,000 jobs answers in under a second
on this machine.  The fleet is deploy_slot.py's (400 hosts x 25 jobs,
their schedules registered, history, runs in flight, policy rows), plus
--recent runs over the last six hours (more than the page reads: it reads
the newest 5,000 and says so), two windows and an open rollout.

The installed `cronpolicy serve` runs as a process; each round asks it,
over HTTP on loopback, in an order that rotates: the page (/), its JSON
(/api/overview), the live view its poll reads (/api/live), and two
floors: a static file through the same server (the HTTP round trip), and
`status --json` as a whole process on the same fleet (what the commands
read).  Prints medians and worst times, and each median against the
floors.  Exits 1 when the page's median misses 1 s.

    python benchmarks/serve.py [--rounds 10] [--jobs 10000] [--recent 50000]

Run it from a regular install (`pip install '.[web]'`).  It needs the
PostgreSQL server of the tests (CRONPOLICY_TEST_DSN or 127.0.0.1:5432).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import execute, throwaway_database
from deploy_slot import JOBS_PER_HOST, fill

TARGET_SECONDS = 1.0

RECENT = """
INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at, status, exit_code,
                                   decision, skip_reason, estimate_seconds, estimate_source,
                                   spool_id)
SELECT s.name, s.host, 1, now() - make_interval(secs => r.back),
       now() - make_interval(secs => r.back - 60),
       CASE WHEN r.n %% 23 = 0 THEN 'skipped' WHEN r.n %% 31 = 0 THEN 'failed'
            ELSE 'succeeded' END,
       CASE WHEN r.n %% 23 = 0 THEN NULL WHEN r.n %% 31 = 0 THEN 1 ELSE 0 END,
       CASE WHEN r.n %% 23 = 0 THEN 'in-window' ELSE 'run' END,
       CASE WHEN r.n %% 23 = 0 THEN 'window #1: <b>bench</b>' END,
       60, 'bench', md5(random()::text)
  FROM (SELECT n, (n::bigint * 7919) %% (SELECT count(*) FROM cronpolicy.script_schedule) AS pick,
               (n::bigint * 104729) %% 21600 + 61 AS back
          FROM generate_series(1, %(recent)s) AS n) AS r
  JOIN (SELECT name, host, row_number() OVER (ORDER BY id) - 1 AS pick
          FROM cronpolicy.script_schedule) AS s USING (pick);
INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason)
VALUES (now() + interval '2 hours', now() + interval '3 hours', 'release 4522'),
       (now() + interval '1 day', now() + interval '25 hours', 'release 4523');
INSERT INTO cronpolicy.rollout (kind, services, reason) VALUES ('services', 'xmlrpc', 'bench');
ANALYZE;
"""

PAGES = [("page /", "/"), ("JSON /api/overview", "/api/overview"),
         ("live /api/live", "/api/live"), ("floor: a static file", "/static/style.css")]


def get(url):
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as answer:
        body = answer.read()
        if answer.status != 200:
            sys.exit("%s: %d" % (url, answer.status))
    return time.perf_counter() - began, len(body)


def timed(argv, env):
    began = time.perf_counter()
    process = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if process.returncode != 0:
        sys.exit("%s failed: %s" % (" ".join(argv), process.stderr.strip()))
    return time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=10000, help="a multiple of 25")
    parser.add_argument("--history", type=int, default=20000)
    parser.add_argument("--recent", type=int, default=50000)
    args = parser.parse_args()
    program = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    with tempfile.TemporaryDirectory() as workdir, throwaway_database() as (_, dsn):
        made = fill(dsn, args.jobs // JOBS_PER_HOST, args.history)
        execute(dsn, RECENT, {"recent": args.recent})
        config = os.path.join(workdir, "cronpolicy.conf")
        with open(config, "w") as handle:
            handle.write("[cronpolicy]\n")
        env = dict(os.environ, CRONPOLICY_DSN=dsn, CRONPOLICY_CONFIG=config,
                   CRONPOLICY_HOST="bench", CRONPOLICY_STATE_DIR=os.path.join(workdir, "state"),
                   CRONPOLICY_LOCK_DIR=os.path.join(workdir, "locks"))
        server = subprocess.Popen([program, "serve", "--listen", "127.0.0.1:0",
                                   "--allow-writer"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        try:
            found = re.search(r"(http://\S+)/", server.stdout.readline())
            if not found:
                sys.exit("serve did not start")
            base = found.group(1)
            sizes = {}
            for label, path in PAGES:               # warm up: imports, caches
                sizes[label] = get(base + path)[1]
            times = {label: [] for label, _ in PAGES}
            times["floor: status --json"] = []
            labels = list(times)
            for round_number in range(args.rounds):
                shift = round_number % len(labels)
                for label in labels[shift:] + labels[:shift]:
                    if label == "floor: status --json":
                        times[label].append(timed([program, "status", "--json"], env))
                    else:
                        times[label].append(get(base + dict(PAGES)[label])[0])
        finally:
            server.terminate()
            server.wait(timeout=30)
    medians = {label: statistics.median(found) for label, found in times.items()}
    print("cronpolicy serve on PostgreSQL: %d jobs on %d hosts, %d recent runs, %d rounds, "
          "%d CPUs" % (made, args.jobs // JOBS_PER_HOST, args.recent, args.rounds,
                       os.cpu_count()))
    for label, found in times.items():
        print("    %-24s median %7.1f ms  worst %7.1f ms  %6.2fx status --json%s" % (
            label, medians[label] * 1000, max(found) * 1000,
            medians[label] / medians["floor: status --json"],
            "  %7d bytes" % sizes[label] if label in sizes else ""))
    page = medians["page /"]
    print("the page: %.0f ms, %.2f of the %.0f ms target" % (
        page * 1000, page / TARGET_SECONDS, TARGET_SECONDS * 1000))
    return 0 if page < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
