"""One simulated week of the reference fleet with 100 rollouts: how long it
takes, and what it finds.

Issue 17.4: `cronpolicy simulate` plays a week of the reference workload
(benchmarks/workload: 154 job instances on 21 hosts) through 100 rollouts
under the four strategies in under 10 s on this machine.  Each round runs
the installed command as a whole process, from spawn to exit, beside its
floor: the same command with --rollouts 0 (reading the fleet, drawing every
runtime and playing the week with nothing to decide).  The order alternates
each round.

Prints the median and the worst wall time of each, the ratio of the
medians, then the figures of one play (they do not depend on the machine:
the seed fixes them) and the line README.txt quotes.  Exits 1 when the
median misses 10 s.

    python benchmarks/simulate.py [--rounds 5] [--workers N]

Run it from a regular install (`pip install .`).  It needs no database.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FLEET = os.path.join(HERE, "workload", "fleet.json")
TARGET_SECONDS = 10.0


def command(rollouts, workers, *extra):
    program = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    argv = [program, "simulate", FLEET, "--days", "7", "--rollouts", str(rollouts),
            "--seed", "1"] + list(extra)
    if workers:
        argv += ["--workers", str(workers)]
    return argv


def timed(argv):
    began = time.perf_counter()
    process = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - began
    if process.returncode != 0:
        sys.exit("%s failed: %s" % (" ".join(argv), process.stderr.strip()))
    return elapsed, process.stdout


def python_pass():
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, help="processes (default: one per CPU)")
    args = parser.parse_args()
    pass_median = statistics.median(python_pass() for _ in range(10))
    times = {"week, 100 rollouts": [], "floor: week, no rollout": []}
    output = None
    for round_number in range(args.rounds):
        runs = [("week, 100 rollouts", 100), ("floor: week, no rollout", 0)]
        for label, rollouts in runs[::1 if round_number % 2 == 0 else -1]:
            elapsed, out = timed(command(rollouts, args.workers))
            times[label].append(elapsed)
            if rollouts:
                output = out
    print("cronpolicy simulate, the reference fleet, %d rounds, %d CPUs (python -c pass "
          "median %.1f ms)" % (args.rounds, len(os.sched_getaffinity(0)),
                               pass_median * 1000))
    print()
    floor = statistics.median(times["floor: week, no rollout"])
    for label, values in times.items():
        median = statistics.median(values)
        print("    %-26s median %6.2f s   worst %6.2f s   %5.2fx the floor%s" % (
            label, median, max(values), median / floor,
            "   (target %.0f s)" % TARGET_SECONDS if label.startswith("week,") else ""))
    print()
    print("\n".join("    " + line if line else "" for line in output.splitlines()))
    missed = statistics.median(times["week, 100 rollouts"]) > TARGET_SECONDS
    if missed:
        print("\nmissed: the median is over %.0f s" % TARGET_SECONDS)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
