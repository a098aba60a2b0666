"""The read and planning commands on a fleet of 5,000 registered schedules, against the probe.

Issue 32.3: with 5,000 registered schedules, `status` and the read
commands answer within 2x the PostgreSQL floor probe, `deploy plan` within
1 s and `deploy slot` within 10 s.  The fleet is deploy_slot.py's (200
hosts x 25 jobs in 8 roles, a real fleet's schedules, their history,
--history rows of older history, runs in flight, rollout skips, 667 policy
rows), built in a fresh PostgreSQL database.

Each round runs every command as a whole process of the installed
`cronpolicy`, from spawn to exit, interleaved with the floor probe (python,
import psycopg2, connect, one query), in an order that rotates each round.
Prints each command's median wall time and its ratio to the probe's, and
the median CPU time the process used (user + system: on a machine shared
with other work, the figure that load moves least) and its ratio to the
probe's.  The targets are judged on wall time.  Exits 1 when a target
is missed.

    python benchmarks/fleet_commands.py [--rounds 5] [--jobs 5000] [--history 100000]

Run it from a regular install (`pip install .`).  It needs the PostgreSQL
server of the tests (CRONPOLICY_TEST_DSN or 127.0.0.1:5432).
"""

import argparse
import os
import statistics
import sys
import tempfile

from common import throwaway_database, timed_process
from deploy_slot import JOBS_PER_HOST, fill

#: (label, argv after `cronpolicy`, target: ("probe", ratio) or ("seconds", s) or None)
COMMANDS = [
    ("status", ["status"], ("probe", 2.0)),
    ("history", ["history"], ("probe", 2.0)),
    ("check role1-job01", ["check", "role1-job01"], ("probe", 2.0)),
    ("schedule list", ["schedule", "list"], None),
    ("overdue", ["overdue"], None),
    ("metrics", ["metrics"], None),
    ("metrics --host host-007", ["metrics", "--host", "host-007"], None),
    ("metrics --fleet", ["metrics", "--fleet"], None),
    ("deploy plan --at +1h", ["deploy", "plan", "--at", "+1h"], ("seconds", 1.0)),
    ("deploy slot --duration 30m --within 24h",
     ["deploy", "slot", "--duration", "30m", "--within", "24h"], ("seconds", 10.0)),
]
PROBE = "import psycopg2, sys; c = psycopg2.connect(sys.argv[1]); c.cursor().execute('SELECT 1')"
#: Exit statuses that are answers, not failures (overdue: 8 when something is).
ANSWERS = (0, 5, 8)


def timed(argv, env):
    """(wall seconds, CPU seconds) of one whole process."""
    return timed_process(argv, env, ANSWERS)[:2]


def measure(jobs, rounds, history, workdir):
    program = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    with throwaway_database() as (_, dsn):
        made = fill(dsn, jobs // JOBS_PER_HOST, history)
        env = dict(os.environ, CRONPOLICY_DSN=dsn, CRONPOLICY_CONFIG=os.path.join(
            workdir, "cronpolicy.conf"), CRONPOLICY_HOST="bench",
            CRONPOLICY_STATE_DIR=os.path.join(workdir, "state"),
            CRONPOLICY_LOCK_DIR=os.path.join(workdir, "locks"))
        runs = [("probe", [sys.executable, "-c", PROBE, dsn])] + [
            (label, [program] + argv) for label, argv, _ in COMMANDS]
        times = {label: [] for label, _ in runs}
        for round_number in range(rounds):
            shift = round_number % len(runs)
            for label, argv in runs[shift:] + runs[:shift]:
                times[label].append(timed(argv, env))
    return made, times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=5000, help="a multiple of 25")
    parser.add_argument("--history", type=int, default=100000)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as workdir:
        with open(os.path.join(workdir, "cronpolicy.conf"), "w") as handle:
            handle.write("[cronpolicy]\n")
        made, times = measure(args.jobs, args.rounds, args.history, workdir)
    probe = statistics.median(wall for wall, _ in times["probe"])
    probe_cpu = statistics.median(cpu for _, cpu in times["probe"])
    print("%d registered schedules on PostgreSQL, %d rounds, %d CPUs, load average %.1f "
          "before, %.1f after" % (made, args.rounds, len(os.sched_getaffinity(0)), load,
                                  os.getloadavg()[0]))
    print()
    print("  %-42s %9s %8s %9s %8s   %s" % ("", "wall", "x probe", "CPU", "x probe",
                                             "target"))
    missed = []
    for label, argv, target in [("probe", None, None)] + COMMANDS:
        wall = statistics.median(value for value, _ in times[label])
        cpu = statistics.median(value for _, value in times[label])
        said = ""
        if target and target[0] == "probe":
            said = "within %.1fx the probe" % target[1]
            if wall > probe * target[1]:
                missed.append(label)
        elif target:
            said = "within %.0f s" % target[1]
            if wall > target[1]:
                missed.append(label)
        print("  %-42s %7.0f ms %7.2fx %6.0f ms %7.2fx   %s" % (
            label, wall * 1000, wall / probe, cpu * 1000, cpu / probe_cpu, said))
    if missed:
        print("\nmissed: %s" % ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
