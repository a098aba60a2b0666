"""A simulated week of the reference fleet, 100 rollouts (half of them
code-only), 5 seeds: how long it takes against its floor, and whether
cronpolicy meets the targets of issue 28.6.

Speed (28.6): `cronpolicy simulate` plays the week with 100 rollouts and 5
seeds within 3x its floor, the same command with --rollouts 0 (reading the
fleet, the warm-up, drawing every runtime and playing the same week of
every seed under every strategy with nothing to decide).  Each round runs
the installed command as a whole process, from spawn to exit; the order
alternates each round.

Targets (28.6, the reference fleet, a day's announce), per seed and their
median:
  - code-only rollouts under cronpolicy (c) skip at most 5% of the starts
    all-stop (a) skips in them;
  - c's stall p95 of code-only rollouts is no longer than the longest run
    of a job that needs a restarted service (the longest drawn in the play,
    and, stricter, the longest such job's p95);
  - c's stall p95 of full rollouts is at most 1/3 of on/off, no kills (b0);
  - c kills no run while unsafe.

Prints the median and the worst wall time of each, the ratio of the
medians (wall time, and the CPU time of the command and its workers: on a
shared machine the wall time also measures the neighbours, so the exit
status follows the CPU ratio), and each target per seed (the seeds fix them, whatever the
machine; docs/simulation.txt's first command prints the whole table).  Exits 1 when the speed target is missed (the
others are findings, reported).

    python benchmarks/simulate.py [--rounds 3] [--workers N]

Run it from a regular install (`pip install .`).  It needs no database.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FLEET = os.path.join(HERE, "workload", "fleet.json")
TARGET_RATIO = 3.0
PLAY = ["--days", "7", "--seed", "1", "--seeds", "5", "--code-share", "0.5"]


def command(rollouts, workers, *extra):
    program = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    argv = [program, "simulate", FLEET, "--rollouts", str(rollouts)] + PLAY + list(extra)
    if workers:
        argv += ["--workers", str(workers)]
    return argv


def timed(argv):
    """(wall seconds, CPU seconds of the command and its workers, output)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    process = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        sys.exit("%s failed: %s" % (" ".join(argv), process.stderr.strip()))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, process.stdout


def short(seconds):
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 3600:
        return "%dm%02ds" % divmod(seconds, 60)
    return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)


def targets(result):
    """[(what, per seed values, median, met)] of 28.6 from a --json play."""
    found = {"code-only skips, c over a (at most 5%)": [],
             "code-only stall p95, c": [],
             "  longest drawn run of a job needing a restarted service": [],
             "full stall p95, c over b0 (at most 33%)": [],
             "  full stall p95, c": [], "  full stall p95, b0": [],
             "runs killed while unsafe, c (0)": []}
    for play in result["plays"]:
        strategies = play["strategies"]
        c, a, b0 = (strategies[name]["kinds"] for name in
                    ("cronpolicy", "all-stop", "on-off-no-kills"))
        found["code-only skips, c over a (at most 5%)"].append(
            c["code-only"]["skipped_starts"] / max(1, a["code-only"]["skipped_starts"]))
        found["code-only stall p95, c"].append(c["code-only"]["stall_seconds"]["p95"])
        found["  longest drawn run of a job needing a restarted service"].append(
            play["longest_needing_run_seconds"])
        found["full stall p95, c over b0 (at most 33%)"].append(
            c["full"]["stall_seconds"]["p95"] / max(1.0, b0["full"]["stall_seconds"]["p95"]))
        found["  full stall p95, c"].append(c["full"]["stall_seconds"]["p95"])
        found["  full stall p95, b0"].append(b0["full"]["stall_seconds"]["p95"])
        found["runs killed while unsafe, c (0)"].append(
            strategies["cronpolicy"]["killed_while_unsafe"])
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, help="processes (default: one per CPU)")
    args = parser.parse_args()
    times = {"week, 100 rollouts, 5 seeds": [], "floor: the same, no rollout": []}
    cpu = {label: [] for label in times}
    output = None
    for round_number in range(args.rounds):
        runs = [("week, 100 rollouts, 5 seeds", 100), ("floor: the same, no rollout", 0)]
        for label, rollouts in runs[::1 if round_number % 2 == 0 else -1]:
            elapsed, used, out = timed(command(rollouts, args.workers, "--json"))
            times[label].append(elapsed)
            cpu[label].append(used)
            if rollouts:
                output = out
    print("cronpolicy simulate, the reference fleet, %d rounds, %d CPUs, load average %.1f"
          % (args.rounds, len(os.sched_getaffinity(0)), os.getloadavg()[0]))
    print()
    floor = statistics.median(times["floor: the same, no rollout"])
    cpu_floor = statistics.median(cpu["floor: the same, no rollout"])
    for label, values in times.items():
        median = statistics.median(values)
        print("    %-30s wall: median %7.2f s, worst %7.2f s, %5.2fx the floor;  CPU: median "
              "%7.2f s, %5.2fx%s" % (
                  label, median, max(values), median / floor, statistics.median(cpu[label]),
                  statistics.median(cpu[label]) / cpu_floor,
                  "   (target %.0fx)" % TARGET_RATIO if label.startswith("week,") else ""))
    result = json.loads(output)
    print()
    print("    issue 28.6 targets, seeds %s:" % ", ".join(result["seeds"]))
    for what, values in targets(result).items():
        shown = [("%.1f%%" % (100 * value)) if "over" in what else
                 str(value) if "killed" in what else short(value) for value in values]
        middle = statistics.median(values)
        print("    %-62s median %8s   %s" % (
            what, ("%.1f%%" % (100 * middle)) if "over" in what else
            str(middle) if "killed" in what else short(middle), "  ".join(shown)))
    print("    %-62s %8s" % ("  the longest p95 of a job needing a restarted service",
                              short(result["longest_needing_p95_seconds"])))
    ratio = statistics.median(times["week, 100 rollouts, 5 seeds"]) / floor
    cpu_ratio = statistics.median(cpu["week, 100 rollouts, 5 seeds"]) / cpu_floor
    if ratio > TARGET_RATIO:
        print("\nwall time: %.2fx the floor, over %.0fx%s" % (
            ratio, TARGET_RATIO, " (CPU %.2fx: the machine was busy)" % cpu_ratio
            if cpu_ratio <= TARGET_RATIO else ""))
    if cpu_ratio > TARGET_RATIO:
        print("\nmissed: CPU %.2fx the floor, over %.0fx" % (cpu_ratio, TARGET_RATIO))
    return 1 if cpu_ratio > TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
