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

from .conftest import DBA, ScriptRunner, make_env, wait_for_file
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
