"""Hosts whose clocks lie, with real processes against the real PostgreSQL.

Each script, command or relay runs as its own process on a "host" whose
wall clock is off (tests/skewed_host/sitecustomize.py: time.time,
datetime.now and file times shifted, time.monotonic left alone), by a
constant or by a step taken mid-run as NTP would.  The rule under attack:
time comes from the database clock whenever hosts must agree; a host's
own clock is used only where it is the host's by design (when cron fires,
its logs), or where no database clock can be had (records spooled with
no database read at all, which are marked spooled).
"""

import os
import subprocess
import sys
import time

import pytest

from cronpolicy import exitcodes

from .conftest import DBA, ScriptRunner, make_env, wait_for, wait_for_file
from .test_faults import spool_of, write_config

pytestmark = pytest.mark.integration

SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "skewed_host")
HOUR = 3600.0


class SkewedHost:
    """The environment of processes on one host whose clock is ``seconds`` off;
    ``step`` moves it (every such process at once, by rename)."""

    def __init__(self, tmp_path, env, seconds=0.0, name="skew"):
        self.path = tmp_path / ("%s.clock" % name)
        self.step(seconds)
        self.env = dict(env, CRONPOLICY_TEST_CLOCK_SKEW=str(self.path),
                        PYTHONPATH=os.pathsep.join(
                            [SHIM] + [part for part in [env.get("PYTHONPATH")] if part]))

    def step(self, seconds):
        part = self.path.with_suffix(".part")
        part.write_text("%r\n" % float(seconds))
        os.replace(part, self.path)


def flush(env):
    result = subprocess.run([sys.executable, "-m", "cronpolicy", "flush"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def proxied(tmp_path, fault_proxy, pg_dsn):
    """(proxy, env reaching the database only through it, DBA)."""
    proxy, dsn = fault_proxy
    env = make_env(tmp_path, dsn)
    env["CRONPOLICY_CONFIG"] = write_config(tmp_path)
    return proxy, env, DBA(pg_dsn)


def test_the_shim_lies_about_the_wall_clock_only(tmp_path, pg_dsn):
    host = SkewedHost(tmp_path, make_env(tmp_path, pg_dsn), -HOUR)
    probe = ("import datetime, os, time\n"
             "open('probe', 'w').close()\n"
             "print(time.time(), datetime.datetime.now(datetime.timezone.utc).timestamp(),"
             " os.stat('probe').st_mtime, time.monotonic())\n")
    out = subprocess.run([sys.executable, "-c", probe], env=host.env, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    wall, aware, mtime, monotonic = map(float, out.split())
    assert abs(wall - (time.time() - HOUR)) < 30
    assert abs(aware - wall) < 1 and abs(mtime - wall) < 2
    assert abs(monotonic - time.monotonic()) < 30


# Defects found ----------------------------------------------------------------------------

def test_a_clock_stepped_back_mid_run_keeps_the_spooled_end_true(proxied, tmp_path):
    """The run's start reached the database; the host clock then stepped
    back an hour (NTP correcting a clock that ran fast) and the database
    went away: the end is spooled.  It was stamped with the host clock plus
    the offset measured before the step, an hour early, which the database
    clamps to the start: a three-second run became one of no time."""
    proxy, env, dba = proxied
    host = SkewedHost(tmp_path, env)
    scripts = ScriptRunner(tmp_path, host.env)
    scripts.write("publish-distro")
    ready = tmp_path / "ready"
    job = scripts.start("publish-distro", "--sleep", "3", "--ready-file", str(ready))
    wait_for_file(ready, process=job)
    host.step(-HOUR)
    proxy.mode = "refuse"
    proxy.cut()
    out, err = job.communicate(timeout=60)
    assert job.returncode == exitcodes.OK, err
    assert "spooling it" in err and len(spool_of(scripts)) == 1
    proxy.mode = "pass"
    assert "wrote 1 spooled" in flush(host.env)
    [(status, seconds, spooled)] = dba.execute(
        "SELECT status, extract(epoch FROM finished_at - started_at), spooled"
        " FROM cronpolicy.script_run")
    assert (status, spooled) == ("succeeded", True)
    assert 2.5 < float(seconds) < 15, seconds


@pytest.mark.parametrize("step", [10 * 60.0, -10 * 60.0])
def test_a_clock_stepped_while_the_database_is_down_keeps_the_cached_window(
        proxied, tmp_path, step):
    """The database is down and the policy cache answers: it carried the
    database time it saved forward by this host's wall clock, so a step of
    the clock since moved every window.  Stepped ten minutes forward, a
    window with five minutes left was taken as over and the script ran
    inside it; stepped back, the cache looked saved in the future and
    was thrown away (the blind on_database_error decided)."""
    proxy, env, dba = proxied
    host = SkewedHost(tmp_path, env)
    scripts = ScriptRunner(tmp_path, host.env)
    scripts.write("publish-distro", extra='on_database_error = "run"')
    dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason)"
                " VALUES (now() - interval '1 minute', now() + interval '5 minutes', 'r42')")
    first = scripts.run("publish-distro")
    assert first.returncode == exitcodes.OK and scripts.main_calls("publish-distro") == 0
    host.step(step)
    proxy.mode = "refuse"
    result = scripts.run("publish-distro")
    assert result.returncode == exitcodes.OK, result.stderr
    assert "policy cached" in result.stderr and "r42" in result.stderr, result.stderr
    assert scripts.main_calls("publish-distro") == 0


# Attacks that held ----------------------------------------------------------------------

def fast_leases(env, tmp_path):
    config = tmp_path / "leases.conf"
    config.write_text(open(env["CRONPOLICY_CONFIG"]).read()
                      + "heartbeat_interval = 0.5s\nlease_ttl = 3s\n")
    return dict(env, CRONPOLICY_CONFIG=str(config))


def deploy_wait(env, timeout):
    return subprocess.run([sys.executable, "-m", "cronpolicy", "deploy", "wait", "--timeout",
                           timeout], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("skew", [HOUR, -HOUR])
def test_a_host_an_hour_off_decides_records_and_leases_as_a_true_one(pg_dsn, tmp_path, skew):
    true_env = fast_leases(make_env(tmp_path, pg_dsn), tmp_path)
    host = SkewedHost(tmp_path, true_env, skew)
    scripts = ScriptRunner(tmp_path, host.env)
    dba = DBA(pg_dsn)
    # Windows as the database clock has them; the host's own clock would judge
    # each of these the other way (an hour ahead: inside the second; an hour
    # behind: the third not yet near).
    for starts, ends, runtime, decision in (("-1 minute", "5 minutes", 60, "in-window"),
                                            ("30 minutes", "2 hours", 60, "run"),
                                            ("10 minutes", "2 hours", 1200, "window-cutoff")):
        dba.execute("UPDATE cronpolicy.rollout_window SET cancelled_at = now()"
                    " WHERE cancelled_at IS NULL")
        dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at)"
                    " VALUES (now() + interval %s, now() + interval %s)", (starts, ends))
        scripts.write("publish-distro", expected_runtime=runtime)
        result = scripts.run("publish-distro")
        assert result.returncode == exitcodes.OK, result.stderr
        assert dba.scalar("SELECT decision FROM cronpolicy.script_run"
                          " ORDER BY id DESC LIMIT 1") == decision, result.stderr
    dba.execute("UPDATE cronpolicy.rollout_window SET cancelled_at = now()")
    # Its records are on the database clock.
    assert dba.scalar("SELECT bool_and(started_at BETWEEN now() - interval '1 minute' AND now()"
                      " AND finished_at BETWEEN started_at AND now() AND NOT spooled)"
                      " FROM cronpolicy.script_run") is True

    # A live run on it outlives many of its leases; a true host's reaper and
    # the skewed host's own `deploy wait` both see it running, not dead.
    until = tmp_path / "until"
    ready = tmp_path / "ready"
    job = scripts.start("publish-distro", "--sleep", "120", "--until-file", str(until),
                        "--ready-file", str(ready))
    wait_for_file(ready, process=job)
    time.sleep(4.0)
    for env in (true_env, host.env):
        waited = deploy_wait(env, "1s")
        assert waited.returncode == exitcodes.WAIT_TIMEOUT and "publish-distro" in waited.stdout, (
            waited.stdout, waited.stderr)
    assert dba.scalar("SELECT status = 'running' AND lease_expires_at > now()"
                      " AND lease_expires_at <= now() + interval '3 seconds'"
                      " AND heartbeat_at > now() - interval '2 seconds'"
                      " FROM cronpolicy.script_run WHERE finished_at IS NULL") is True
    until.write_text("")
    assert job.wait(60) == exitcodes.OK
    waited = deploy_wait(host.env, "10s")
    assert waited.returncode == exitcodes.OK and "quiet" in waited.stdout, waited.stdout

    # Killed, it is given up on within its lease on the database clock, from
    # either host: neither never nor at once.
    ready.unlink()
    job = scripts.start("publish-distro", "--sleep", "120", "--ready-file", str(ready))
    wait_for_file(ready, process=job)
    job.kill()
    job.wait(10)
    killed = time.monotonic()
    waited = deploy_wait(host.env, "30s")
    assert waited.returncode == exitcodes.OK, waited.stdout
    assert time.monotonic() - killed < 3 + 6
    assert dba.scalar("SELECT status FROM cronpolicy.script_run ORDER BY id DESC LIMIT 1"
                      ) == "abandoned"


@pytest.mark.parametrize("watch", ["listen", "poll"])
def test_steps_of_the_clock_mid_run_move_no_heartbeat_lease_or_stop(pg_dsn, tmp_path, watch):
    """NTP steps the clock an hour forward, then two back, while a run
    lives: it keeps renewing its lease on time, and a window that begins
    two seconds later (database clock) still stops it then, as does the
    deploy flag, polled or heard."""
    env = fast_leases(make_env(tmp_path, pg_dsn), tmp_path)
    with open(env["CRONPOLICY_CONFIG"], "a") as config:
        config.write("watch = %s\n" % watch)
    host = SkewedHost(tmp_path, env)
    scripts = ScriptRunner(tmp_path, host.env)
    dba = DBA(pg_dsn)
    (tmp_path / "safe").write_text("yes")
    scripts.write("sync-mirror", safe_file=tmp_path / "safe", expected_runtime=1)
    for stop in ("window", "deploy"):
        ready = tmp_path / "ready"
        if ready.exists():
            ready.unlink()
        job = scripts.start("sync-mirror", "--sleep", "120", "--ready-file", str(ready))
        wait_for_file(ready, process=job)
        for seconds in (HOUR, -HOUR):
            host.step(seconds)
            time.sleep(2.0)
            assert dba.scalar(
                "SELECT status = 'running' AND heartbeat_at > now() - interval '2.5 seconds'"
                " AND lease_expires_at > now()"
                " FROM cronpolicy.script_run WHERE finished_at IS NULL") is True, seconds
        if stop == "window":
            dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason)"
                        " VALUES (now() + interval '2 seconds', now() + interval '10 minutes',"
                        " 'nightly')")
        else:
            dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true,"
                        " reason = 'release 42'")
        started = time.monotonic()
        job.communicate(timeout=30)
        assert job.returncode == exitcodes.INTERRUPTED
        elapsed = time.monotonic() - started
        assert (1.0 if stop == "window" else 0.0) <= elapsed < 10, elapsed
        host.step(0)
        dba.execute("UPDATE cronpolicy.rollout_window SET cancelled_at = now()")
    [(window,), (deploy,)] = dba.execute("SELECT stop_reason FROM cronpolicy.script_run"
                                         " ORDER BY id")
    assert window.startswith("inside rollout window") and deploy.startswith("deploy pending")


def catch_up(env, *args):
    return subprocess.run([sys.executable, "-m", "cronpolicy", "catch-up"] + list(args),
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("skew", [HOUR, -HOUR])
def test_a_host_an_hour_off_catches_up_once_and_not_after_a_real_start(pg_dsn, tmp_path, skew):
    """A ticket's time is the database's: on the host's own clock, an hour
    ahead would miss the real start after it (caught up twice), an hour
    behind would take the run before the skip for one after (never)."""
    host = SkewedHost(tmp_path, make_env(tmp_path, pg_dsn), skew)
    scripts = ScriptRunner(tmp_path, host.env)
    dba = DBA(pg_dsn)
    scripts.write("nightly")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, catch_up) VALUES ('nightly', 'once')")
    assert scripts.run("nightly").returncode == exitcodes.OK       # a run just before
    for real_start in (False, True):
        dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true, reason = 'r42'")
        assert scripts.run("nightly").returncode == exitcodes.OK   # skipped: a ticket
        dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
        calls = scripts.main_calls("nightly")
        if real_start:
            assert scripts.run("nightly").returncode == exitcodes.OK
        done = catch_up(host.env, "-v")
        assert done.returncode == exitcodes.OK, done.stderr
        assert ("dropped" if real_start else "started") in done.stdout, done.stdout
        assert scripts.main_calls("nightly") == calls + 1
        again = catch_up(host.env, "-v")
        assert again.stdout == "" and scripts.main_calls("nightly") == calls + 1
    assert [decision for (decision,) in dba.execute(
        "SELECT decision FROM cronpolicy.script_run ORDER BY id")] == [
            "run", "deploy-pending", "catch-up", "deploy-pending", "run"]


@pytest.mark.parametrize("skew", [HOUR, -HOUR])
def test_runs_spooled_on_a_host_an_hour_off_are_marked_placed_and_not_timed(
        proxied, tmp_path, skew):
    """With a cache, a whole run spooled while the database is down takes its
    times from the cache's database clock; with none, from the host's own
    (no database clock to be had): marked spooled, no later than the flush,
    and kept out of the runtime estimate either way."""
    proxy, env, dba = proxied
    host = SkewedHost(tmp_path, env, skew)
    scripts = ScriptRunner(tmp_path, host.env)
    scripts.write("publish-distro", extra='on_database_error = "run"')
    assert scripts.run("publish-distro").returncode == exitcodes.OK      # the cache
    proxy.mode = "refuse"
    cached = scripts.run("publish-distro", "--sleep", "1")
    assert "policy cached" in cached.stderr and scripts.main_calls("publish-distro") == 2
    for cache in (tmp_path / "state").rglob("*cache*"):
        cache.unlink()
    blind = scripts.run("publish-distro", "--sleep", "1")
    assert "no policy cached" in blind.stderr and scripts.main_calls("publish-distro") == 3
    proxy.mode = "pass"
    assert "wrote 2 spooled" in flush(host.env)
    rows = dba.execute("SELECT spooled, extract(epoch FROM now() - started_at),"
                       " extract(epoch FROM finished_at - started_at)"
                       " FROM cronpolicy.script_run ORDER BY id")
    assert [spooled for spooled, _, _ in rows] == [False, True, True]
    [_, (_, ago, seconds), (_, blind_ago, blind_seconds)] = rows
    assert 0 < ago < 30 and 0.9 < seconds < 10         # the cache's clock: true times
    if skew > 0:                                        # in the future: at the flush
        assert 0 <= blind_ago < 5 and blind_seconds == 0
    else:                                               # an hour early, as the host said
        assert HOUR < blind_ago < HOUR + 30 and 0.9 < blind_seconds < 10
    from cronpolicy.config import Settings
    from cronpolicy.store import open_store
    store = open_store(Settings(dsn=env["CRONPOLICY_DSN"], dsn_source="test"))
    try:
        assert len(store.load_inputs("publish-distro", 20).recent_runtimes) == 1
    finally:
        store.close()


@pytest.mark.postgresql
def test_a_relay_and_its_scripts_on_a_host_whose_clock_steps(pg_dsn, pg_roles, tmp_path,
                                                             monkeypatch):
    """The relay renews its scripts' leases on the database clock through
    steps of the host's (an hour forward, then two back): none runs out
    while its script lives, a killed one runs out within its lease, and a
    stop still arrives within a second."""
    from .test_relay import Relay, leases_left, query, relayed_runner, start_jobs, \
        stop_everything
    clock = SkewedHost(tmp_path, dict(os.environ), HOUR, name="relay-host")
    for key in ("CRONPOLICY_TEST_CLOCK_SKEW", "PYTHONPATH"):
        monkeypatch.setenv(key, clock.env[key])
    relay = Relay(pg_roles("cronpolicy_relay"), tmp_path)
    try:
        scripts = relayed_runner(tmp_path, pg_roles("cronpolicy_script"), relay.address)
        assert scripts.env["CRONPOLICY_TEST_CLOCK_SKEW"] == str(clock.path)
        import psycopg2
        dba = psycopg2.connect(pg_dsn)
        dba.autocommit = True
        try:
            doomed, *survivors = start_jobs(scripts, tmp_path, 3)
            time.sleep(1.0)
            for seconds in (2 * HOUR, -HOUR):
                clock.step(seconds)
                time.sleep(2.0)
                left = leases_left(dba)
                assert len(left) == 3 and all(0 < each <= 3.0 for each in left), left
            doomed.kill()
            doomed.wait(timeout=30)
            killed = time.monotonic()
            wait_for(lambda: query(dba, "SELECT count(*) FROM cronpolicy.script_run"
                                        " WHERE pid = %s AND lease_expires_at < now()",
                                   doomed.pid) == [(1,)], what="the killed run's lease out",
                     timeout=10, interval=0.1)
            assert time.monotonic() - killed < 3.0 + 1.0
            assert all(process.poll() is None for process in survivors)
            assert all(seconds < 1.0 for seconds in stop_everything(dba, survivors))
        finally:
            dba.close()
    finally:
        relay.stop()


def test_the_commands_say_the_same_on_a_host_an_hour_off(pg_dsn, tmp_path):
    """overdue, schedule list, deploy plan, status, estimate, window list
    and history answer the same from hosts an hour ahead and behind as
    from a true one (each reads the database clock: on the host's own, the
    next start of an hourly schedule would move by the hour, and so would
    what is overdue and what a rollout skips)."""
    env = make_env(tmp_path, pg_dsn)
    dba = DBA(pg_dsn)
    minute = int(dba.scalar("SELECT extract(minute FROM now() + interval '30 minutes')"))
    scripts = ScriptRunner(tmp_path, env)
    scripts.write("hourly", extra="schedule = '%d * * * *'\n    expected_interval = 600"
                  % minute)
    assert scripts.run("hourly").returncode == exitcodes.OK
    dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at)"
                " VALUES (now() + interval '50 minutes', now() + interval '2 hours')")
    dba.execute("UPDATE cronpolicy.script_run SET started_at = started_at - interval '20 minutes',"
                " finished_at = finished_at - interval '20 minutes'")
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, status, started_at,"
                " heartbeat_at, lease_expires_at) VALUES ('hourly', 'other', 'running',"
                " now() - interval '5 minutes', now(), now() + interval '1 hour')")
    at = dba.scalar("SELECT to_char(now() + interval '25 minutes', 'YYYY-MM-DD\"T\"HH24:MI:SSZ')")
    commands = (["overdue", "--all"], ["schedule", "list"], ["deploy", "plan", "--at", at],
                ["status"], ["estimate", "hourly"], ["window", "list"], ["history"])

    def said(host_env):
        import json
        answers = []
        for argv in commands:
            result = subprocess.run([sys.executable, "-m", "cronpolicy"] + argv + ["--json"],
                                    env=host_env, capture_output=True, text=True, timeout=60)
            assert result.returncode in (exitcodes.OK, exitcodes.OVERDUE), result.stderr
            answers.append(_without_moments(json.loads(result.stdout)))
        return answers
    truth = said(env)
    for skew in (HOUR, -HOUR):
        for argv, answer, true_answer in zip(commands, said(SkewedHost(tmp_path, env, skew).env),
                                             truth):
            assert answer == true_answer, (skew, argv)


def _without_moments(value):
    """``value`` without what moves between two reads of the database clock."""
    if isinstance(value, dict):
        return {key: _without_moments(item) for key, item in value.items()
                if key not in ("now", "seconds_since", "detail", "running_seconds", "age",
                               "runtime_seconds", "heard_seconds", "wait_seconds", "cutoff_at")}
    if isinstance(value, list):
        return [_without_moments(item) for item in value]
    return value
