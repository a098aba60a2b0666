"""The commands a rollout script runs, whole processes, against the floor.

Release tooling runs, at every deploy, `deploy begin`, `window add`,
`window list`, `audit`, `disable`, `enable`, `window cancel` and `deploy
end`.  Each is run as an installed `cronpolicy` command, from spawn to
exit, in that order (each needs the one before: the window cancelled is
the one added), beside the floor probe (python, import the driver,
connect, one query; for SQLite: sqlite3, one SELECT), in rounds whose
order of installs rotates.  Several installs may be compared in one run
(--install NAME=PATH, PATH the installed `cronpolicy` program; default:
this Python's), each on a database of its own built the same way.

Prints each command's median wall time and CPU time (user + system: on a
shared machine, the figure load moves least) for each install, and their
ratios to the probe's.  Figures only: no target (the read commands'
targets are read_commands.py's).

    python benchmarks/rollout_commands.py [--rounds 15] [--no-sqlite]
        [--install before=/path/to/old/venv/bin/cronpolicy --install after=...]

Run it from a regular install (`pip install .`): an editable install's
import hook costs each process about 10 ms.  It needs the PostgreSQL server
of the tests (CRONPOLICY_TEST_DSN or 127.0.0.1:5432).
"""

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile

from common import throwaway_database, timed_process as timed

PG_PROBE = ("import psycopg2, sys; c = psycopg2.connect(sys.argv[1]); cur = c.cursor();"
            " cur.execute('SELECT 1'); cur.fetchone(); c.close()")
SQLITE_PROBE = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
                " c.execute('SELECT count(*) FROM script_policy').fetchone(); c.close()")

#: One rollout's commands, in order; {window} is the id `window add` printed.
SEQUENCE = [
    ("deploy begin", ["deploy", "begin", "--reason", "bench"]),
    ("window add", ["window", "add", "--start", "+1h", "--duration", "1h", "--reason", "bench"]),
    ("window list", ["window", "list", "--all"]),
    ("audit", ["audit", "--limit", "20"]),
    ("disable", ["disable", "script-7", "--reason", "bench"]),
    ("enable", ["enable", "script-7"]),
    ("window cancel", ["window", "cancel", "{window}"]),
    ("deploy end", ["deploy", "end", "--all"]),
]


def one_rollout(program, env, figures):
    window = None
    for label, argv in SEQUENCE:
        argv = [word.format(window=window) for word in argv]
        wall, cpu, out = timed([program] + argv, env)
        figures.setdefault(label, []).append((wall, cpu))
        if label == "window add":
            window = re.search(r"#(\d+)", out).group(1)


def backend_databases(backend, installs, workdir):
    """{install name: (env, probe argv)} on databases of their own."""
    @contextlib.contextmanager
    def made():
        with contextlib.ExitStack() as stack:
            found = {}
            for name in installs:
                base = dict(os.environ, CRONPOLICY_CONFIG=os.path.join(workdir, "empty.conf"),
                            CRONPOLICY_STATE_DIR=os.path.join(workdir, name, backend, "state"),
                            CRONPOLICY_LOCK_DIR=os.path.join(workdir, name, backend, "locks"))
                if backend == "postgresql":
                    _, dsn = stack.enter_context(throwaway_database())
                    probe = [sys.executable, "-c", PG_PROBE, dsn]
                else:
                    path = os.path.join(workdir, name, "bench.sqlite")
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    dsn = "sqlite:///" + path
                    probe = None
                env = dict(base, CRONPOLICY_DSN=dsn)
                subprocess.run([installs[name], "schema", "upgrade"], env=env, check=True,
                               capture_output=True, timeout=120)
                if backend == "sqlite":
                    probe = [sys.executable, "-c", SQLITE_PROBE, path]
                found[name] = (env, probe)
            yield found
    return made()


def measure(backend, installs, rounds, workdir):
    with backend_databases(backend, installs, workdir) as databases:
        figures = {name: {} for name in installs}
        probes = []
        names = list(installs)
        for round_number in range(rounds + 1):        # the first warms up
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                env, probe = databases[name]
                wall, cpu, _ = timed(probe, env)
                kept = figures[name] if round_number else {}
                one_rollout(installs[name], env, kept)
                if round_number:
                    probes.append((wall, cpu))
        return figures, probes


def report(backend, figures, probes):
    probe_wall = statistics.median(wall for wall, _ in probes)
    probe_cpu = statistics.median(cpu for _, cpu in probes)
    print("%s: probe %.1f ms wall, %.1f ms CPU (median of %d)"
          % (backend, 1000 * probe_wall, 1000 * probe_cpu, len(probes)))
    names = list(figures)
    print("  %-15s" % "" + "".join("%34s" % name for name in names))
    print("  %-15s" % "" + "   wall  x probe    CPU  x probe" * len(names))
    for label, _ in SEQUENCE:
        line = "  %-15s" % label
        for name in names:
            samples = figures[name][label]
            wall = statistics.median(wall for wall, _ in samples)
            cpu = statistics.median(cpu for _, cpu in samples)
            line += "  %5.0f ms  %5.2fx  %4.0f ms  %5.2fx" % (
                1000 * wall, wall / probe_wall, 1000 * cpu, cpu / probe_cpu)
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--install", action="append", default=[],
                        help="NAME=PATH of an installed cronpolicy program")
    args = parser.parse_args()
    installs = dict(item.split("=", 1) for item in args.install) or {
        "this install": os.path.join(os.path.dirname(sys.executable), "cronpolicy")}
    print("cronpolicy rollout commands (python %s, %d cores, load average %.1f)"
          % (sys.version.split()[0], os.cpu_count(), os.getloadavg()[0]))
    with tempfile.TemporaryDirectory() as workdir:
        with open(os.path.join(workdir, "empty.conf"), "w") as handle:
            handle.write("[cronpolicy]\n")
        for backend in ["postgresql"] + ([] if args.no_sqlite else ["sqlite"]):
            report(backend, *measure(backend, installs, args.rounds, workdir))
    print("load average after: %.1f" % os.getloadavg()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
