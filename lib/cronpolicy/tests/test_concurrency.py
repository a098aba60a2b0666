"""max_concurrent across real processes: many hosts starting at the same
moment never run more than the limit at once, on PostgreSQL (the policy
column) and on one SQLite machine (the class attribute)."""

import os
import subprocess
import sys

import pytest

from cronpolicy import exitcodes

from .conftest import DBA, make_env

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

JOB = '''\
import os, sys, time
from cronpolicy import CronScript

class Publisher(CronScript):
    name = "publisher"
    single_instance = False
    {attribute}

    def main(self):
        spans = os.environ["SPANS"]
        with open(spans, "a") as out:
            out.write("start %r\\n" % time.monotonic())
        # The first runs wait (bounded) until two have started, so the limit
        # is certainly reached, not just never exceeded by luck.
        deadline = time.monotonic() + 10
        while open(spans).read().count("start") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        with open(spans, "a") as out:
            out.write("end %r\\n" % time.monotonic())

Publisher().run()
'''


def most_at_once(spans_file):
    """The largest number of main() calls that overlapped (monotonic clock,
    shared by every process on this machine)."""
    events = []
    for line in spans_file.read_text().splitlines():
        kind, moment = line.split()
        # At equal times an end comes before a start: touching is not overlapping.
        events.append((float(moment), 1 if kind == "start" else 0, kind))
    running = most = 0
    for _, _, kind in sorted(events):
        running += 1 if kind == "start" else -1
        most = max(most, running)
    return most


def start_herd(tmp_path, dsn, hosts, attribute="pass", shared_host_dirs=False):
    script = tmp_path / "publisher.py"
    script.write_text(JOB.format(attribute=attribute))
    spans = tmp_path / "spans"
    spans.write_text("")
    processes = []
    # One machine's directories are set up once: writing its config file again
    # for each start raced with the starts already reading it (exit 4).
    shared_env = make_env(tmp_path, dsn) if shared_host_dirs else None
    for index in range(hosts):
        host_dir = tmp_path if shared_host_dirs else tmp_path / ("host%d" % index)
        host_dir.mkdir(exist_ok=True)
        env = dict(shared_env) if shared_host_dirs else make_env(host_dir, dsn)
        env.update(SPANS=str(spans), CRONPOLICY_HOST="web%d" % index)
        processes.append(subprocess.Popen([sys.executable, str(script)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    codes = [process.wait(timeout=120) for process in processes]
    for process in processes:
        process.stdout.close()
        process.stderr.close()
    return codes, spans


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3))
def test_thirty_hosts_starting_at_once_never_exceed_the_limit(pg_dsn, tmp_path, round_):
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_policy (name, max_concurrent)"
                " VALUES ('publisher', 2)")
    codes, spans = start_herd(tmp_path, pg_dsn, 30)
    assert set(codes) <= {exitcodes.OK, exitcodes.LOCKED}, codes
    assert most_at_once(spans) == 2                   # the limit, and reached
    statuses = [row[0] for row in dba.execute(
        "SELECT status FROM cronpolicy.script_run WHERE name = 'publisher'")]
    assert statuses.count("succeeded") == codes.count(exitcodes.OK) >= 2
    assert statuses.count("skipped") == codes.count(exitcodes.LOCKED)
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run WHERE decision = 'locked'"
                      " AND skip_reason LIKE 'all 2 fleet-wide slots are taken%'") == \
        codes.count(exitcodes.LOCKED)


@pytest.mark.slow
def test_one_sqlite_machine_keeps_the_class_limit(sqlite_dsn, tmp_path):
    codes, spans = start_herd(tmp_path, sqlite_dsn, 12, attribute="max_concurrent = 2",
                              shared_host_dirs=True)
    assert set(codes) <= {exitcodes.OK, exitcodes.LOCKED}, codes
    assert most_at_once(spans) == 2
    assert codes.count(exitcodes.OK) >= 2


def test_cronpolicy_run_takes_a_limit(script_env, dba, tmp_path):
    program = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    release = tmp_path / "release"
    first = subprocess.Popen([program, "run", "mirror", "--overlap", "--max-concurrent", "1",
                              "--", "sh", "-c", "touch %s.ready; while [ ! -e %s ]; do"
                              " sleep 0.02; done" % (release, release)], env=script_env)
    try:
        deadline_file = tmp_path / "release.ready"
        for _ in range(1500):
            if deadline_file.exists():
                break
            import time
            time.sleep(0.02)
        second = subprocess.run([program, "run", "mirror", "--overlap", "--max-concurrent", "1",
                                 "--", "true"], env=script_env, capture_output=True, timeout=60)
        assert second.returncode == exitcodes.LOCKED, second.stderr
        bad = subprocess.run([program, "run", "mirror", "--max-concurrent", "0", "--", "true"],
                             env=script_env, capture_output=True, timeout=60)
        assert bad.returncode == exitcodes.USAGE and b"must be at least 1" in bad.stderr
    finally:
        release.write_text("")
        first.wait(timeout=60)
    assert first.returncode == exitcodes.OK
    assert sorted(run["status"] for run in dba.runs("mirror")) == ["skipped", "succeeded"]
