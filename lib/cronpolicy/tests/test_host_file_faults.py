"""The files cronpolicy keeps on a host, hit as an unlucky operator and an
attacker would hit them: a file system that is full (a tiny tmpfs, filled)
or read-only, a planted symbolic link, garbage where a file was.

A fault in an optional file (the pid in a lock file, the policy cache)
never stops a cron job; nothing is half-written; nothing cronpolicy says is
false ("its record is spooled" when it is not); no traceback.  Tests that
mount skip, saying why, when not root or when mounting fails, and always
unmount.
"""

import contextlib
import os
import pwd
import subprocess
import sys
import time

import pytest

from cronpolicy import exitcodes, safety

from .conftest import make_env

#: Mounts and real processes.
pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def forget_checked_directories():
    safety._checked.clear()
    yield
    safety._checked.clear()


@contextlib.contextmanager
def tiny_tmpfs(directory, size="64k"):
    """A tmpfs of ``size`` mounted on ``directory`` (made), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to mount a tmpfs")
    os.makedirs(directory, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size,
                              "tmpfs", str(directory)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % mounted.stderr.strip())
    try:
        yield str(directory)
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def fill(directory):
    """Fill the file system of ``directory`` to the last block."""
    with open(os.path.join(directory, "filler"), "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass


def no_traceback(result):
    assert "Traceback" not in result.stderr, result.stderr


def job_script(tmp_path, body="pass"):
    """A cron script whose main() writes a marker, then runs ``body``."""
    path = tmp_path / "job.py"
    path.write_text(
        "import os, sys\n"
        "from cronpolicy import CronScript\n"
        "class Job(CronScript):\n"
        "    def main(self):\n"
        "        open(os.environ['JOB_MARKER'], 'a').write('main\\n')\n"
        "        %s\n"
        "Job().run()\n" % body)
    return path


def run_job(tmp_path, env, body="pass", timeout=60):
    env = dict(env, JOB_MARKER=str(tmp_path / "job.marker"))
    return subprocess.run([sys.executable, str(job_script(tmp_path, body))], env=env,
                          capture_output=True, text=True, timeout=timeout)


def main_ran(tmp_path):
    marker = tmp_path / "job.marker"
    return marker.exists() and marker.read_text().count("main") == 1


def sqlite_env(tmp_path, **extra):
    env = make_env(tmp_path, "sqlite:///" + str(tmp_path / "cronpolicy.sqlite"))
    env.update(extra)
    return env


# The lock file ---------------------------------------------------------------------


def test_a_full_lock_directory_still_gives_the_lock_and_the_job_runs(tmp_path):
    """The pid in the lock file only names the holder: a full file system
    that refuses those few bytes once made every start a traceback."""
    with tiny_tmpfs(tmp_path / "locks") as locks:
        fill(locks)
        result = run_job(tmp_path, sqlite_env(tmp_path, CRONPOLICY_LOCK_DIR=locks))
        no_traceback(result)
        assert result.returncode == exitcodes.OK, result.stderr
        assert main_ran(tmp_path)
