"""The read and planning commands' outputs on the benchmark fleet, clock frozen, to compare two versions.

A speed-up must not change what a command says.  This builds
deploy_slot.py's fleet once (PostgreSQL, and a copy in a SQLite file),
freezes its clock, and writes what each command prints (standard output,
standard error and exit status) with a given install, so that two installs
can be compared byte for byte:

    python benchmarks/fleet_outputs.py build NAME [--jobs 5000] [--history 100000]
    python benchmarks/fleet_outputs.py run NAME OUTDIR [--python VENV/bin/python] [--state DIR]
    python benchmarks/fleet_outputs.py run NAME OTHERDIR --python OTHER/bin/python
    diff -r OUTDIR OTHERDIR
    python benchmarks/fleet_outputs.py drop NAME

PostgreSQL's clock is frozen by a schema holding a now() of its own, put
first on the search_path by the DSN's options; SQLite's by running the
command in process with Reader.now frozen (the run command's own writes,
none for these commands, still see the real clock), from a pristine copy
of the file each time.  The commands: status (and --json), schedule list
(and --json), deploy plan --at +1h, overdue (and --all --json), metrics
(and --host of two hosts, and --fleet), history and check.  Commands
that keep files in the state directory
(status keeps next starts) keep them in --state (default: a new directory
each run): run twice with the same --state into two directories to
compare with and without what was kept.
"""

import argparse
import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

import psycopg2

from common import SERVER_DSN, admin
from deploy_slot import JOBS_PER_HOST, fill
from cronpolicy import schema

COMMANDS = [["status"], ["status", "--json"], ["schedule", "list"],
            ["schedule", "list", "--json"], ["deploy", "plan", "--at", "+1h"],
            ["overdue"], ["overdue", "--all", "--json"], ["metrics"],
            ["metrics", "--host", "host-007"], ["metrics", "--host", "host-150"],
            ["metrics", "--fleet"], ["history"], ["check", "role1-job01"]]
#: Run in process for SQLite: the command with Reader.now frozen (argv[1]: ISO time).
FROZEN_SQLITE = """
import datetime, sys
from cronpolicy.store import reads
frozen = datetime.datetime.fromisoformat(sys.argv[1])
reads.Reader.now = lambda self: frozen
from cronpolicy.tooling import cli
sys.exit(cli.main(sys.argv[2:]))
"""


def paths(name):
    dsn = SERVER_DSN.rpartition("/")[0] + "/" + name
    frozen = dsn + "?options=-csearch_path%3Dfrozen,pg_catalog,public"
    return dsn, frozen, "/tmp/%s.sqlite" % name, "/tmp/%s.json" % name


def scratch_of(name):
    """Where each SQLite command runs, on a copy (its path shows in status)."""
    return "/tmp/%s.run.sqlite" % name


def _sqlite_value(value):
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return value


def build(name, jobs, history):
    dsn, _, path, facts = paths(name)
    admin('CREATE DATABASE "%s"' % name)
    connection = psycopg2.connect(dsn)
    schema.upgrade_postgres(connection)
    connection.close()
    made = fill(dsn, jobs // JOBS_PER_HOST, history)
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    cursor = connection.cursor()
    cursor.execute("SELECT now()")
    now = cursor.fetchone()[0]
    cursor.execute("CREATE SCHEMA frozen; CREATE FUNCTION frozen.now() RETURNS timestamptz"
                   " LANGUAGE sql IMMUTABLE AS $$ SELECT %s::timestamptz $$", (now.isoformat(),))
    copy = sqlite3.connect(":memory:", isolation_level=None)
    copy.execute("ATTACH ? AS cronpolicy", (path,))
    schema.upgrade_sqlite(copy)
    copy.execute("BEGIN")
    for table in ("script_schedule", "script_policy", "script_run"):
        columns = [row[1] for row in copy.execute("PRAGMA cronpolicy.table_info(%s)" % table)]
        listed = ", ".join('"%s"' % column for column in columns)
        cursor.execute("SELECT %s FROM cronpolicy.%s" % (listed, table))
        copy.execute("DELETE FROM cronpolicy.%s" % table)
        copy.executemany("INSERT INTO cronpolicy.%s (%s) VALUES (%s)" % (
            table, listed, ", ".join("?" * len(columns))),
            [[_sqlite_value(value) for value in row] for row in cursor.fetchall()])
    copy.execute("COMMIT")
    copy.close()
    connection.close()
    with open(facts, "w") as handle:
        json.dump({"now": now.isoformat()}, handle)
    print("%d schedules in %s and %s, clock frozen at %s" % (made, name, path, now.isoformat()))


def run(name, outdir, python, state=None):
    _, frozen, path, facts = paths(name)
    with open(facts) as handle:
        now = json.load(handle)["now"]
    os.makedirs(outdir)
    settings = tempfile.mkdtemp(prefix="fleet-outputs-")
    with open(os.path.join(settings, "cronpolicy.conf"), "w") as handle:
        handle.write("[cronpolicy]\n")
    env = dict(os.environ, CRONPOLICY_CONFIG=os.path.join(settings, "cronpolicy.conf"),
               CRONPOLICY_HOST="bench",
               CRONPOLICY_STATE_DIR=state or os.path.join(settings, "state"),
               CRONPOLICY_LOCK_DIR=os.path.join(settings, "locks"))
    program = os.path.join(os.path.dirname(python), "cronpolicy")
    scratch = scratch_of(name)
    for number, command in enumerate(COMMANDS, 1):
        for backend, argv in (
                ("postgresql", [program, "--dsn", frozen] + command),
                ("sqlite", [python, "-c", FROZEN_SQLITE, now, "--dsn", "sqlite:///" + scratch]
                 + command)):
            if backend == "sqlite":
                for suffix in ("-wal", "-shm"):
                    if os.path.exists(scratch + suffix):
                        os.remove(scratch + suffix)
                shutil.copy(path, scratch)
            done = subprocess.run(argv, env=env, capture_output=True)
            stem = os.path.join(outdir, "%s.%02d.%s" % (backend, number, "-".join(command)))
            with open(stem + ".out", "wb") as handle:
                handle.write(done.stdout)
            with open(stem + ".err", "wb") as handle:
                handle.write(done.stderr + b"exit %d\n" % done.returncode)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(scratch + suffix):
            os.remove(scratch + suffix)
    shutil.rmtree(settings)
    print("outputs of %d commands on both backends in %s" % (len(COMMANDS), outdir))


def drop(name):
    _, _, path, facts = paths(name)
    admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    for found in (path, path + "-wal", path + "-shm", facts):
        if os.path.exists(found):
            os.remove(found)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    made = sub.add_parser("build")
    made.add_argument("name")
    made.add_argument("--jobs", type=int, default=5000, help="a multiple of 25")
    made.add_argument("--history", type=int, default=100000)
    ran = sub.add_parser("run")
    ran.add_argument("name")
    ran.add_argument("outdir")
    ran.add_argument("--python", default=sys.executable,
                     help="the Python of the install to run (its bin/cronpolicy)")
    ran.add_argument("--state", help="the state directory (default: a new one)")
    sub.add_parser("drop").add_argument("name")
    args = parser.parse_args()
    if args.action == "build":
        build(args.name, args.jobs, args.history)
    elif args.action == "run":
        run(args.name, args.outdir, args.python, args.state)
    else:
        drop(args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
