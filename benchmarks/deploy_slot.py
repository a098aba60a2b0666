"""How long `cronpolicy deploy slot` takes on a large fleet, against a floor.

Issue 26.6: `deploy slot` answers a fleet of 5,000 jobs (200 hosts x 25)
within 10 s on this machine.  Each fleet is built in a fresh PostgreSQL
database: hosts in 8 roles, each host 25 jobs (5 every host runs, 20 of its
role), with the schedules of a real fleet: every minute, every 5 and 15
minutes, hourly and daily at minutes that differ from host to host, jobs
of two to six hours every six hours or weekly; registered as `schedule
import` registers them, with history (estimates, the hosts seen),
--history rows of older history, a few scripts skipped by the last
rollouts, runs in flight now (some safe to interrupt, some not) and
policy rows (an exempt heartbeat, a disabled script, services, every
script's expected interval, a row for one job in ten on its host).

Each round runs the installed command as a whole process, from spawn to
exit, beside its floor: `cronpolicy schedule list` on the same fleet
(reading every schedule and working out each next start).  The order
alternates each round.  Prints the median and the worst of each, and the
ratio of the medians, for 1,000 and 5,000 jobs.  Exits 1 when the median
for 5,000 jobs misses 10 s.

    python benchmarks/deploy_slot.py [--rounds 3] [--jobs 1000,5000] [--history 100000]

Run it from a regular install (`pip install .`).  It needs the PostgreSQL
server of the tests (CRONPOLICY_TEST_DSN or 127.0.0.1:5432).
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg2
from psycopg2.extras import execute_values

from common import throwaway_database

TARGET_SECONDS = 10.0
JOBS_PER_HOST = 25
ROLES = 8

#: (schedule kind, runtime range in seconds) of a host's 25 jobs.
KINDS = ([("every-5m", (20, 180))] * 8 + [("every-minute", (2, 5))]
         + [("every-15m", (60, 300))] * 2 + [("hourly", (120, 900))] * 7
         + [("daily", (600, 3600))] * 4 + [("six-hourly-long", (7200, 14400))] * 2
         + [("weekly-long", (18000, 21600))])
#: The jobs every host runs, and which of KINDS each is.
COMMON = {"metrics-push": 0, "heartbeat": 8, "cleanup-tmp": 11, "logrotate-app": 18,
          "backup-local": 22}


def host_jobs(number):
    """[(name, index in KINDS)] of host ``number``: the common jobs, then
    its role's in the other kinds."""
    role = number % ROLES
    others = [index for index in range(len(KINDS)) if index not in COMMON.values()]
    return sorted(COMMON.items(), key=lambda pair: pair[1]) + [
        ("role%d-job%02d" % (role, index), index) for index in others]


def schedule(kind, number, index):
    """A cron expression of ``kind``; minutes and hours differ between hosts
    as a fleet's staggered crontabs do."""
    minute = (number * 7 + index * 13) % 60
    hour = (number * 5 + index * 3) % 24
    return {"every-5m": "*/5 * * * *", "every-minute": "* * * * *",
            "every-15m": "%d-59/15 * * * *" % (minute % 15),
            "hourly": "%d * * * *" % minute, "daily": "%d %d * * *" % (minute, hour),
            "six-hourly-long": "%d */6 * * *" % minute,
            "weekly-long": "%d %d * * %d" % (minute, hour % 6, number % 7)}[kind]


def fleet(hosts, history, seed=26):
    """The rows of a fleet: (schedules, finished runs, runs in flight) as
    tuples for the INSERTs below, times in seconds before now."""
    generator = random.Random(seed)
    schedules, finished, flying, runtime = [], [], [], {}
    for number in range(hosts):
        host = "host-%03d" % number
        for name, index in host_jobs(number):
            kind, (low, high) = KINDS[index]
            seconds = runtime.setdefault(name, generator.uniform(low, high))
            schedules.append((name, host, schedule(kind, number, index),
                              "/etc/cron.d/app line %d" % (index + 1)))
            # Its last runs here: the hosts seen, and the estimate's history.
            for back in (3, 2, 1):
                start = back * 6 * 3600 + generator.uniform(0, 3600)
                finished.append((name, host, start,
                                 start - seconds * generator.uniform(0.8, 1.2), "succeeded"))
            if generator.random() < 0.01:       # in flight now
                flying.append((name, host, generator.uniform(0, seconds), seconds,
                               generator.random() < 0.5))
            if generator.random() < 0.005:      # skipped by the last two rollouts
                for block in ("window:9001", "window:9002"):
                    finished.append((name, host, 600.0, 599.0, "skipped:" + block))
    for _ in range(history):            # older history, over 30 days, where each job runs
        name, host = generator.choice(schedules)[:2]
        start = generator.uniform(86400, 30 * 86400)
        finished.append((name, host, start, start - runtime[name], "succeeded"))
    return schedules, finished, flying


POLICIES = """
INSERT INTO cronpolicy.script_policy (name, rollout_exempt) VALUES ('heartbeat', true);
INSERT INTO cronpolicy.script_policy (name, enabled, reason)
VALUES ('role3-job04', false, 'broken mirror');
INSERT INTO cronpolicy.script_policy (name, needs) VALUES ('role1-*', 'xmlrpc');
INSERT INTO cronpolicy.script_policy (name, host, interruptible)
VALUES ('cleanup-tmp', 'host-0*', true);
-- Every script's expected interval, and a row for one job in ten on its
-- host (a DBA's note): the rows a decision looks through.
INSERT INTO cronpolicy.script_policy (name, expected_interval)
SELECT DISTINCT name, interval '1 day' FROM cronpolicy.script_schedule
 WHERE name NOT IN ('heartbeat', 'role3-job04');
INSERT INTO cronpolicy.script_policy (name, host, reason)
SELECT name, host, 'bench' FROM cronpolicy.script_schedule WHERE id % 10 = 0;
"""


def fill(dsn, hosts, history):
    schedules, finished, flying = fleet(hosts, history)
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    with connection.cursor() as cursor:
        execute_values(cursor, "INSERT INTO cronpolicy.script_schedule"
                               " (name, host, schedule, origin) VALUES %s", schedules)
        cursor.execute(POLICIES)
        # status: succeeded, or skipped:BLOCK (a skip by a rollout's window).
        execute_values(cursor, """
            INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at, status,
                                               exit_code, decision, block, estimate_seconds,
                                               estimate_source, spool_id)
            SELECT name, host, 1, now() - make_interval(secs => started),
                   now() - make_interval(secs => ended), split_part(status, ':', 1),
                   CASE WHEN status = 'succeeded' THEN 0 END,
                   CASE WHEN status = 'succeeded' THEN 'run' ELSE 'in-window' END,
                   nullif(substring(status from position(':' in status) + 1), status),
                   started - ended, 'bench', md5(random()::text)
              FROM (VALUES %s) AS v (name, host, started, ended, status)""",
                       finished, page_size=5000)
        execute_values(cursor, """
            INSERT INTO cronpolicy.script_run (name, host, pid, started_at, status, decision,
                                               estimate_seconds, estimate_source,
                                               safe_to_interrupt, heartbeat_at,
                                               lease_expires_at, spool_id)
            SELECT name, host, 1, now() - make_interval(secs => started), 'running', 'run',
                   estimate, 'bench', safe, now(), now() + interval '1 hour',
                   md5(random()::text)
              FROM (VALUES %s) AS v (name, host, started, estimate, safe)""", flying)
        cursor.execute("ANALYZE")
    connection.close()
    return len(schedules)


def timed(argv, env):
    began = time.perf_counter()
    process = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - began
    if process.returncode != 0:
        sys.exit("%s failed (%d): %s" % (" ".join(argv), process.returncode,
                                          process.stderr.strip()))
    return elapsed


def measure(jobs, rounds, history, workdir):
    program = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    hosts = jobs // JOBS_PER_HOST
    with throwaway_database() as (_, dsn):
        made = fill(dsn, hosts, history)
        env = dict(os.environ, CRONPOLICY_DSN=dsn, CRONPOLICY_CONFIG=os.path.join(
            workdir, "cronpolicy.conf"), CRONPOLICY_HOST="bench",
            CRONPOLICY_STATE_DIR=os.path.join(workdir, "state"),
            CRONPOLICY_LOCK_DIR=os.path.join(workdir, "locks"))
        commands = [("deploy slot --duration 30m --within 24h",
                     [program, "deploy", "slot", "--duration", "30m", "--within", "24h"]),
                    ("floor: schedule list", [program, "schedule", "list"])]
        times = {label: [] for label, _ in commands}
        for round_number in range(rounds):
            for label, argv in commands[::1 if round_number % 2 == 0 else -1]:
                times[label].append(timed(argv, env))
    return made, hosts, times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", default="1000,5000",
                        help="fleet sizes, comma-separated (multiples of 25)")
    parser.add_argument("--history", type=int, default=100000)
    args = parser.parse_args()
    pass_times = []
    for _ in range(10):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        pass_times.append(time.perf_counter() - began)
    print("cronpolicy deploy slot on PostgreSQL, %d rounds, %d CPUs (python -c pass median "
          "%.1f ms), %d rows of older history" % (
              args.rounds, len(os.sched_getaffinity(0)), statistics.median(pass_times) * 1000,
              args.history))
    missed = False
    with tempfile.TemporaryDirectory() as workdir:
        with open(os.path.join(workdir, "cronpolicy.conf"), "w") as handle:
            handle.write("[cronpolicy]\n")
        for jobs in (int(word) for word in args.jobs.split(",")):
            made, hosts, times = measure(jobs, args.rounds, args.history, workdir)
            print()
            print("  %d jobs (%d hosts x %d):" % (made, hosts, JOBS_PER_HOST))
            floor = statistics.median(times["floor: schedule list"])
            for label, values in times.items():
                median = statistics.median(values)
                target = jobs >= 5000 and label.startswith("deploy")
                print("    %-42s median %7.2f s   worst %7.2f s   %6.2fx the floor%s" % (
                    label, median, max(values), median / floor,
                    "   (target %.0f s)" % TARGET_SECONDS if target else ""))
                missed = missed or (target and median > TARGET_SECONDS)
    if missed:
        print("\nmissed: the median for 5000 jobs is over %.0f s" % TARGET_SECONDS)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
