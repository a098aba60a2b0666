"""What the benchmarks share: the server, a throwaway database, percentiles."""

import contextlib
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid

import psycopg2
from psycopg2.extensions import make_dsn, parse_dsn

from cronpolicy import schema

SERVER_DSN = os.environ.get("CRONPOLICY_TEST_DSN") or "postgresql://127.0.0.1:5432/postgres"


def _compile_cronpolicy():
    """Byte-compile the package, as pip does when it installs it: a fleet
    starts its scripts from compiled modules.  An editable install under
    PYTHONDONTWRITEBYTECODE=1 has none, and every start would compile every
    module again (the gated start measured 2.1x the probe so, 1.4x compiled)."""
    import compileall
    import cronpolicy
    compileall.compile_dir(os.path.dirname(cronpolicy.__file__), quiet=2)


_compile_cronpolicy()


def timed_process(argv, env, answers=(0,), timeout=600):
    """(wall seconds, CPU seconds, standard output) of one whole process;
    exits naming it when its status is not one of ``answers``.  CPU is user
    + system: on a shared machine, the figure load moves least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    process = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode not in answers:
        sys.exit("%s failed (%d): %s" % (" ".join(argv), process.returncode,
                                          process.stderr.strip()[-500:]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, process.stdout


def admin(sql):
    """Run one statement on the server's admin database (autocommit)."""
    connection = psycopg2.connect(SERVER_DSN)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


def execute(dsn, sql, params=None):
    """Run ``sql`` (one or more statements) on ``dsn``, autocommit."""
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    finally:
        connection.close()


@contextlib.contextmanager
def throwaway_database():
    """Yield (name, DSN) of a new database with the cronpolicy schema; drop it after."""
    name = "cronpolicy_bench_%s" % uuid.uuid4().hex[:8]
    admin('CREATE DATABASE "%s"' % name)
    try:
        dsn = SERVER_DSN.rpartition("/")[0] + "/" + name
        connection = psycopg2.connect(dsn)
        try:
            schema.upgrade_postgres(connection)
        finally:
            connection.close()
        yield name, dsn
    finally:
        admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def abba(first, second, runs):
    """``first`` and ``second``, ``runs`` times each, in the order A B B A A
    B B A ...: neither always goes first, nor always follows the other."""
    for number in range(runs * 2):
        yield (first, second)[number % 2 ^ (number // 2) % 2]


def percentile(values, q):
    """Nearest-rank-style percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def limited_login(dsn, limit):
    """The DSN of a new login role with a connection limit and the rights of
    cronpolicy_script on this database's tables; dropped after."""
    role = "cronpolicy_bench_%s" % uuid.uuid4().hex[:8]
    admin('CREATE ROLE "%s" LOGIN CONNECTION LIMIT %d' % (role, limit))
    try:
        connection = psycopg2.connect(dsn)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute('GRANT USAGE ON SCHEMA cronpolicy TO "%s";'
                           ' GRANT ALL ON ALL TABLES IN SCHEMA cronpolicy TO "%s";'
                           ' GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA cronpolicy TO "%s"'
                           % (role, role, role))
        connection.close()
        params = parse_dsn(dsn)
        params["user"] = role
        yield make_dsn(**params)
    finally:
        connection = psycopg2.connect(dsn)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE usename = %s", (role,))
            cursor.execute('DROP OWNED BY "%s"' % role)
        connection.close()
        admin('DROP ROLE IF EXISTS "%s"' % role)


def python_floor(count):
    launched = time.time()
    processes = [subprocess.Popen([sys.executable, "-c",
                                   "import time, psycopg2; print(time.time())"],
                                  stdout=subprocess.PIPE) for _ in range(count)]
    times = [float(process.communicate()[0]) - launched for process in processes]
    print("  %4d bare `python -c 'import psycopg2'` launched together: median %.2f s, p99 %.2f s"
          % (count, statistics.median(times), percentile(times, 0.99)))


#: An interruptible cron script whose main() sleeps (BENCH_SECONDS, default
#: an hour) and notes when it entered main(), was stopped or finished, in
#: files named after its last argument: the job of fleet_load.py and pooler.py.
JOB_SCRIPT = """\
import os, sys, time
from cronpolicy import CronScript

class BenchJob(CronScript):
    name = %(name)r
    single_instance = False

    def is_safe_to_interrupt(self):
        return True

    def main(self):
        marker = sys.argv[-1]
        with open(marker + ".entered", "w") as entered:
            entered.write(repr(time.time()))
        try:
            # One sleep: the interruption arrives as a signal and ends it, and
            # 500 processes polling a clock would cost more than cronpolicy.
            time.sleep(float(os.environ.get("BENCH_SECONDS", "3600")))
        except BaseException:
            with open(marker + ".stopped", "w") as stopped:
                stopped.write(repr(time.time()))
            raise
        with open(marker + ".done", "w") as done:
            done.write(repr(time.time()))

if __name__ == "__main__":
    BenchJob().run(sys.argv[1:-1])
"""


def job_script(name):
    """JOB_SCRIPT for a script called ``name``."""
    return JOB_SCRIPT % {"name": name}
