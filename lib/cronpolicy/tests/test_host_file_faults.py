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
import stat
import subprocess
import sys
import time

import pytest

from cronpolicy import exitcodes, safety

from .conftest import make_env
from .test_safety import forget_checked_directories, needs_root  # noqa: F401 (autouse)

#: Mounts and real processes.
pytestmark = pytest.mark.integration


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


def job_script_text(body="pass"):
    """A cron script whose main() writes a marker, then runs ``body``."""
    return ("import os, sys\n"
            "from cronpolicy import CronScript\n"
            "class Job(CronScript):\n"
            "    def main(self):\n"
            "        open(os.environ['JOB_MARKER'], 'a').write('main\\n')\n"
            "        %s\n"
            "Job().run()\n" % body)


def job_script(tmp_path, body="pass"):
    path = tmp_path / "job.py"
    path.write_text(job_script_text(body))
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


def test_a_read_only_lock_directory_still_locks_with_the_lock_file_there(tmp_path):
    """flock() needs no write: a lock file already there is opened read-only
    (the start was refused, exit 4, "cannot create lock file"); and it
    still keeps a second instance out."""
    with tiny_tmpfs(tmp_path / "locks") as locks:
        env = sqlite_env(tmp_path, CRONPOLICY_LOCK_DIR=locks)
        assert run_job(tmp_path, env).returncode == exitcodes.OK
        os.remove(str(tmp_path / "job.marker"))
        subprocess.run(["mount", "-o", "remount,ro", locks], check=True)
        result = run_job(tmp_path, env)
        no_traceback(result)
        assert result.returncode == exitcodes.OK, result.stderr
        assert main_ran(tmp_path)
        from cronpolicy.locking import LockHeld, ScriptLock
        with ScriptLock(locks, "job"):
            with pytest.raises(LockHeld):
                ScriptLock(locks, "job").acquire()


# The spool ---------------------------------------------------------------------------


FILL_THE_STATE_DIR = ("import cronpolicy.tests.test_host_file_faults as faults; "
                      "faults.fill(os.environ['CRONPOLICY_STATE_DIR'])")


def test_an_end_neither_database_nor_spool_could_take_is_said_lost_not_spooled(tmp_path):
    """The SQLite file and the spool share a file system that fills up
    while main() runs: the end is refused by both.  It was said lost, then
    "its record is spooled" (false); now said lost once, and the run stays
    recorded as running (its lease then makes it abandoned)."""
    with tiny_tmpfs(tmp_path / "state", size="1m") as state:
        env = make_env(tmp_path, "sqlite:///" + os.path.join(state, "cronpolicy.sqlite"))
        env.update(CRONPOLICY_STATE_DIR=state, PYTHONPATH=os.pathsep.join(sys.path))
        result = run_job(tmp_path, env, FILL_THE_STATE_DIR)
        no_traceback(result)
        assert result.returncode == exitcodes.OK, result.stderr
        assert main_ran(tmp_path)
        assert "it is lost" in result.stderr, result.stderr
        assert "spooled" not in result.stderr.split("it is lost")[1], result.stderr
        assert not [name for name in os.listdir(os.path.join(state, "spool"))
                    if not name.startswith("rejected")]


def unreachable_env(tmp_path, **extra):
    """A database that refuses connections, on_database_error = run: every
    record goes to the spool."""
    env = make_env(tmp_path, "postgresql://cronpolicy@127.0.0.1:1/none?connect_timeout=1")
    with open(env["CRONPOLICY_CONFIG"], "a") as config:
        config.write("on_database_error = run\ndecision_timeout = 0.2s\n")
    env.update(CRONPOLICY_STATE_DIR=str(tmp_path / "state"), **extra)
    return env


@pytest.mark.parametrize("exit_code", [0, 3])
def test_a_spool_that_is_no_directory_keeps_mains_exit_code_and_says_the_record_is_lost(
        tmp_path, exit_code):
    """A plain file where the spool directory goes, met when the run's end
    must be spooled: "not running: refusing spool directory" and exit 4
    came after main() had run; now main()'s code, and one ERROR saying the
    record is lost."""
    env = unreachable_env(tmp_path)
    os.makedirs(env["CRONPOLICY_STATE_DIR"], mode=0o700)
    spool = os.path.join(env["CRONPOLICY_STATE_DIR"], "spool")
    with open(spool, "w") as taken:
        taken.write("not a directory\n")
    result = run_job(tmp_path, env, "sys.exit(%d)" % exit_code)
    no_traceback(result)
    assert main_ran(tmp_path)
    assert result.returncode == exit_code, result.stderr
    assert "not running" not in result.stderr and "it is lost" in result.stderr, result.stderr
    assert "its record is spooled" not in result.stderr, result.stderr
    with open(spool) as taken:
        assert taken.read() == "not a directory\n"


# Garbage where a file was --------------------------------------------------------------

#: Valid JSON nested past Python's recursion limit: json raises RecursionError.
TOO_DEEP = "[" * 100000 + "]" * 100000


def test_a_cache_nested_too_deep_is_moved_aside_as_damaged(tmp_path):
    """Read on a start with the database down: a RecursionError was a traceback."""
    from cronpolicy.cache import PolicyCache
    path = tmp_path / "policy-cache.json"
    path.write_text(TOO_DEEP)
    cache = PolicyCache(str(path), 3600)
    assert cache.load_inputs("job", 20) is None
    aside, why = cache.rejected
    assert aside == str(path) + ".rejected" and "Recursion" in why
    assert not path.exists()


def test_a_spool_entry_nested_too_deep_is_no_entry(tmp_path):
    """Read by every flush after a run, and by `cronpolicy flush`."""
    from cronpolicy.spool import Spool
    spool = Spool(str(tmp_path / "spool"))
    os.makedirs(spool.directory, mode=0o700)
    path = os.path.join(spool.directory, "00000000000000000001-deep.json")
    with open(path, "w") as entry:
        entry.write(TOO_DEEP)
    assert spool.entries() == [(path, None)]


def test_a_catch_up_ticket_nested_too_deep_is_refused_as_no_ticket(tmp_path):
    from cronpolicy import catchup
    from cronpolicy.locking import name_file
    state = str(tmp_path / "state")
    directory = safety.checked_directory(catchup.ticket_dir(state), "state_dir", 0o700)
    path = name_file(directory, "job", catchup.SUFFIX)
    fd = safety.create_exclusive(path)
    os.write(fd, TOO_DEEP.encode())
    os.close(fd)
    found, refused = catchup.tickets(state, recover=False)
    assert found == [] and refused[0][0] == path and "not a ticket" in refused[0][1]
    assert os.path.exists(path + ".rejected")


def test_a_spool_file_larger_than_any_entry_is_set_aside_unread(tmp_path):
    """A flush after every run read each file whole, whatever its size (a
    log copied into the spool: all of it in memory, after each run)."""
    from cronpolicy import spool as spool_module
    from cronpolicy.rows import RunRecord
    spool = spool_module.Spool(str(tmp_path / "spool"))
    spool.record_skip(RunRecord(name="job", host="web1", pid=1))
    [(path, entry)] = spool.entries()
    assert entry is not None
    with open(path, "a") as padded:     # still valid JSON: padded with spaces
        padded.write(" " * (16 << 20))      # (spool.ENTRY_LIMIT)
    assert spool.entries() == [(path, None)]


# The policy cache ---------------------------------------------------------------------


def cached_inputs(reason, enabled=False):
    """What a read found: one script's policy row (None: no row)."""
    from cronpolicy.rows import DeployState, Inputs, PolicyRow, to_time
    policies = [] if reason is None else [PolicyRow(id=1, name="job", enabled=enabled,
                                                    reason=reason)]
    return Inputs(now=to_time(time.time()), schema_version=27, deploy=DeployState(False),
                  policies=policies, windows=[], recent_runtimes=[])


def test_a_cache_a_full_disk_kept_from_being_updated_does_not_answer_later(tmp_path):
    """The database enabled the script again, the new cache could not be
    written: the old one (disabled), confirmed a moment earlier, answered
    for the script once the database was away."""
    from cronpolicy.cache import PolicyCache
    with tiny_tmpfs(tmp_path / "state") as state:
        cache = PolicyCache(os.path.join(state, "policy-cache.json"), 3600)
        cache.keep(cached_inputs("disabled for the migration"))
        assert cache.load_inputs("job", 20).policies
        fill(state)
        with pytest.raises(OSError):        # (pages more than the old files free)
            cache.keep(cached_inputs("enabled again: " + "x" * 20000, enabled=True))
        assert cache.load_inputs("job", 20) is None


def test_a_fingerprint_that_is_no_plain_file_leaves_the_cache_usable(tmp_path):
    """Only a cache the new content could not replace is out of date: one
    written whole, whose fingerprint cannot be (a FIFO there), stays and
    answers when the database is away."""
    from cronpolicy.cache import PolicyCache
    os.chmod(tmp_path, 0o700)
    cache = PolicyCache(str(tmp_path / "policy-cache.json"), 3600)
    os.mkfifo(cache.fingerprint_path)
    for _ in range(2):
        with pytest.raises(OSError):
            cache.keep(cached_inputs("disabled"))
    assert cache.load_inputs("job", 20).policies[0].reason == "disabled"


def test_a_cache_larger_than_any_cache_is_moved_aside_unread(tmp_path):
    """Read whole on a start with the database down, whatever its size."""
    from cronpolicy.cache import PolicyCache
    os.chmod(tmp_path, 0o700)
    cache = PolicyCache(str(tmp_path / "policy-cache.json"), 3600)
    cache.keep(cached_inputs("disabled"))
    with open(cache.path, "a") as padded:       # still valid JSON
        padded.write(" " * (64 << 20))          # (cache.SIZE_LIMIT)
    assert cache.load_inputs("job", 20) is None
    assert cache.rejected[0] == cache.path + ".rejected" and "larger" in cache.rejected[1]


def test_a_cache_whose_fingerprint_could_not_be_written_is_never_confirmed_as_the_old(
        tmp_path, monkeypatch):
    """Disabled (cache and fingerprint A), enabled (cache B written, its
    fingerprint not: the disk filled), disabled again: the fingerprint A
    still there made the start only touch the cache, which held B, so with
    the database away the cache said enabled."""
    from cronpolicy import cache as cache_module
    os.chmod(tmp_path, 0o700)
    cache = cache_module.PolicyCache(str(tmp_path / "policy-cache.json"), 3600)
    disabled, enabled = cached_inputs("disabled"), cached_inputs(None)
    cache.keep(disabled)
    real = safety.write_atomically

    def fingerprint_refused(path, write, *args, **kwargs):
        if path == cache.fingerprint_path:
            raise OSError(28, "No space left on device", path)
        return real(path, write, *args, **kwargs)
    monkeypatch.setattr(safety, "write_atomically", fingerprint_refused)
    with pytest.raises(OSError):
        cache.keep(enabled)
    monkeypatch.setattr(safety, "write_atomically", real)
    cache.keep(disabled)
    assert cache.load_inputs("job", 20).policies[0].reason == "disabled"


# The SQLite file -----------------------------------------------------------------------


def test_a_schema_upgrade_on_a_full_disk_says_the_disk_is_full_and_can_be_repeated(tmp_path):
    """SQLite rolls a transaction back itself on a full disk: the upgrade's
    own ROLLBACK then failed, and the one line said "cannot rollback - no
    transaction is active" instead of why.  Once there is room, the
    upgrade is simply repeated."""
    with tiny_tmpfs(tmp_path / "db", size="64k") as directory:
        env = sqlite_env(tmp_path)
        dsn = "sqlite:///" + os.path.join(directory, "cronpolicy.sqlite")
        command = [sys.executable, "-m", "cronpolicy", "--dsn", dsn, "schema", "upgrade"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        no_traceback(result)
        assert result.returncode == exitcodes.GATE_ERROR, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "full" in line and "rollback" not in line, line
        subprocess.run(["mount", "-o", "remount,size=2m", directory], check=True)
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == exitcodes.OK, again.stderr


@pytest.mark.parametrize("place", ["sticky-shared-directory", "directory-of-another-user"])
def test_a_sqlite_file_is_never_written_through_a_link_another_user_planted(tmp_path, place):
    """A DSN naming a file in /tmp (sticky, everyone's) or in another
    user's directory: that user's link there made root's cron job create
    the victim file, schema and all (SQLite follows links; this host's
    fs.protected_symlinks may be 0).  Refused in one line, exit 4."""
    uid = needs_root()
    shared = tmp_path / "shared"
    shared.mkdir()
    if place == "sticky-shared-directory":
        shared.chmod(0o1777)
    else:
        os.chown(shared, uid, -1)
    victim = tmp_path / "victim"
    database = shared / "cronpolicy.sqlite"
    os.symlink(victim, database)
    os.lchown(database, uid, -1)
    env = make_env(tmp_path, "sqlite:///%s" % database)
    result = run_job(tmp_path, env)
    no_traceback(result)
    assert result.returncode == exitcodes.GATE_ERROR, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not main_ran(tmp_path)
    assert not victim.exists() and not os.path.exists(str(victim) + "-wal")


# The config file -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["fifo", "link-to-a-fifo"])
def test_a_config_file_that_is_a_fifo_is_refused_at_once(tmp_path, how):
    """Every start of every job waited forever on reading it (and one
    linked to /dev/zero read without end)."""
    env = sqlite_env(tmp_path)
    fifo = str(tmp_path / "fifo.conf")
    os.mkfifo(fifo, 0o600)
    if how == "link-to-a-fifo":
        os.remove(env["CRONPOLICY_CONFIG"])
        os.symlink(fifo, env["CRONPOLICY_CONFIG"])
    else:
        env["CRONPOLICY_CONFIG"] = fifo
    started = time.monotonic()
    try:
        result = run_job(tmp_path, env, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the start still waited on the FIFO after 20s")
    assert time.monotonic() - started < 10
    no_traceback(result)
    assert result.returncode == exitcodes.GATE_ERROR, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "config file" in line and "FIFO" in line, line
    assert not main_ran(tmp_path)


# The log file --------------------------------------------------------------------------


def test_a_log_file_on_a_full_disk_is_said_once_and_the_job_runs(tmp_path):
    """Each record printed Python's "--- Logging error ---" and a traceback
    to standard error (cron mails it)."""
    with tiny_tmpfs(tmp_path / "logs") as logs:
        fill(logs)
        env = sqlite_env(tmp_path)
        env["JOB_MARKER"] = str(tmp_path / "job.marker")
        result = subprocess.run([sys.executable, str(job_script(tmp_path)), "--log-file",
                                 os.path.join(logs, "job.log")], env=env,
                                capture_output=True, text=True, timeout=60)
        no_traceback(result)
        assert result.returncode == exitcodes.OK, result.stderr
        assert main_ran(tmp_path)
        [line] = result.stderr.strip().splitlines()
        assert "cannot write log file" in line and "No space left" in line, line


def test_a_log_file_that_is_a_fifo_nobody_reads_is_refused_at_once(tmp_path):
    """The start waited forever in open()."""
    fifo = str(tmp_path / "job.log")
    os.mkfifo(fifo, 0o600)
    env = sqlite_env(tmp_path)
    env["JOB_MARKER"] = str(tmp_path / "job.marker")
    try:
        result = subprocess.run([sys.executable, str(job_script(tmp_path)), "--log-file", fifo],
                                env=env, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the start still waited on the FIFO after 20s")
    no_traceback(result)
    assert result.returncode == exitcodes.GATE_ERROR, result.stderr
    assert "cannot open log file" in result.stderr and not main_ran(tmp_path)


def test_a_flush_into_a_read_only_spool_says_what_was_written_in_one_line(tmp_path):
    """`cronpolicy flush` wrote the first entry, could not remove it, and
    ended in a traceback; now one line (exit 4), and the entries stay for
    a later flush, which writes nothing twice."""
    from cronpolicy.rows import RunRecord
    from cronpolicy.spool import Spool
    with tiny_tmpfs(tmp_path / "state") as state:
        env = sqlite_env(tmp_path, CRONPOLICY_STATE_DIR=state)
        spool = Spool(os.path.join(state, "spool"))
        for number in range(2):
            spool.record_skip(RunRecord(name="spooled-%d" % number, host="web1", pid=1))
        subprocess.run(["mount", "-o", "remount,ro", state], check=True)
        command = [sys.executable, "-m", "cronpolicy", "flush"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        no_traceback(result)
        assert result.returncode == exitcodes.GATE_ERROR, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "wrote 1 spooled run record" in line and "Read-only" in line, line
        assert len(spool) == 2
        subprocess.run(["mount", "-o", "remount,rw", state], check=True)
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == exitcodes.OK and len(spool) == 0, again.stderr
        import sqlite3
        with contextlib.closing(sqlite3.connect(str(tmp_path / "cronpolicy.sqlite"))) as db:
            assert db.execute("SELECT count(*) FROM script_run").fetchone()[0] == 2


def planted_log_file(tmp_path, plant):
    """(root's victim file, the name /tmp/job.log would be: ``plant``(victim,
    name) made it, in a sticky directory every user may write)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    planted = shared / "job.log"
    plant(victim, planted)
    return victim, planted


def run_with_log_file(tmp_path, log_file):
    """A job run on SQLite with --log-file ``log_file``."""
    env = sqlite_env(tmp_path, JOB_MARKER=str(tmp_path / "job.marker"))
    return subprocess.run([sys.executable, str(job_script(tmp_path)), "--log-file",
                           str(log_file)], env=env, capture_output=True, text=True, timeout=60)


def test_a_log_file_is_never_appended_through_a_link_another_user_planted(tmp_path):
    """--log-file /tmp/job.log, and another user's link there: root's cron
    job appended its log to the file the link named.  Refused (exit 4); a
    link of root's own is still followed."""
    uid = needs_root()
    victim, planted = planted_log_file(tmp_path, os.symlink)
    os.lchown(planted, uid, -1)
    result = run_with_log_file(tmp_path, planted)
    no_traceback(result)
    assert result.returncode == exitcodes.GATE_ERROR, result.stderr
    assert "symbolic link owned by uid %d" % uid in result.stderr, result.stderr
    assert victim.read_text() == "root's file\n" and not main_ran(tmp_path)
    own = planted.parent / "own.log"
    os.symlink(tmp_path / "own-target.log", own)
    result = run_with_log_file(tmp_path, own)
    assert result.returncode == exitcodes.OK, result.stderr
    assert "policy database" in (tmp_path / "own-target.log").read_text()


SYSTEM_PYTHON = "/usr/bin/python3"


def as_user(uid, argv, env):
    """``argv`` run as ``uid`` (setpriv) by SYSTEM_PYTHON, which another user
    may run (this suite's may live in root's home); skips when that
    python cannot import cronpolicy as that user."""
    command = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups",
               SYSTEM_PYTHON]
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("needs %s, which another user may run" % SYSTEM_PYTHON)
    probe = subprocess.run(command + ["-c", "import cronpolicy.tooling.cli"], env=env,
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("%s cannot import cronpolicy as uid %d here: %s"
                    % (SYSTEM_PYTHON, uid, probe.stderr.strip()[-200:]))
    return subprocess.run(command + argv, env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def world_readable_dir():
    """A directory others may read (pytest's own are root's only), removed after."""
    import shutil
    import tempfile
    directory = tempfile.mkdtemp(prefix="cronpolicy-faults-", dir="/tmp")
    os.chmod(directory, 0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_sqlite_file_this_user_may_only_read_stops_the_start_as_a_missing_privilege(
        world_readable_dir):
    """The database made by root, the job run as another user: "attempt to
    write a readonly database" was taken for an outage, so main() ran
    unseen by `deploy wait` and its record was spooled, to be refused at
    every flush.  Now as a missing privilege on PostgreSQL: exit 4, main()
    not run, one line."""
    uid = needs_root()
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("needs %s" % SYSTEM_PYTHON)
    top = world_readable_dir
    made = os.path.join(top, "made")
    os.mkdir(made, 0o755)
    state = os.path.join(top, "state")
    os.mkdir(state, 0o700)
    config = os.path.join(top, "cronpolicy.conf")
    with open(config, "w") as handle:
        handle.write("[cronpolicy]\n")
    library = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": library, "CRONPOLICY_CONFIG": config,
           "CRONPOLICY_HOST": "web1", "HOME": top, "CRONPOLICY_STATE_DIR": state,
           "JOB_MARKER": os.path.join(state, "job.marker")}
    created = subprocess.run(
        [SYSTEM_PYTHON, "-m", "cronpolicy", "--dsn",
         "sqlite:///" + os.path.join(made, "cronpolicy.sqlite"), "schema", "upgrade"],
        env=env, capture_output=True, text=True, timeout=60)
    if created.returncode != 0:
        pytest.skip("%s cannot run cronpolicy here: %s" % (SYSTEM_PYTHON, created.stderr))
    os.rename(os.path.join(made, "cronpolicy.sqlite"), os.path.join(state, "cronpolicy.sqlite"))
    os.chown(state, uid, -1)
    script = os.path.join(top, "job.py")
    with open(script, "w") as handle:
        handle.write(job_script_text())
    result = as_user(uid, [script], env)
    no_traceback(result)
    assert result.returncode == exitcodes.GATE_ERROR, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "not running" in line and "readonly" in line, line
    assert not os.path.exists(env["JOB_MARKER"])
    spool = os.path.join(state, "spool")
    assert not os.path.isdir(spool) or not os.listdir(spool)


# Catch-up tickets ----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["to-start", "to-drop"])
def test_catch_up_on_a_read_only_state_dir_says_why_in_one_line(tmp_path, case):
    """`cronpolicy catch-up`, run from cron every minute: a ticket it could
    neither start (no slot file can be made, nor the ticket taken) nor drop
    ended in a traceback, mailed every minute.  Now one line each: the
    start failed (exit 1), or the ticket stays."""
    import sqlite3
    from cronpolicy import catchup
    from cronpolicy.policy import ScriptFacts
    env = sqlite_env(tmp_path)
    command = [sys.executable, "-m", "cronpolicy"]
    subprocess.run(command + ["schema", "upgrade"], env=env, check=True, capture_output=True)
    with contextlib.closing(sqlite3.connect(str(tmp_path / "cronpolicy.sqlite"))) as db:
        db.execute("INSERT INTO script_policy (name, enabled, catch_up) VALUES ('job', ?, "
                   "'once')", (case == "to-start",))
        db.commit()
    with tiny_tmpfs(tmp_path / "state") as state:
        env["CRONPOLICY_STATE_DIR"] = state
        catchup.write_ticket(state, ScriptFacts("job", "testhost"), "deploy", time.time())
        subprocess.run(["mount", "-o", "remount,ro", state], check=True)
        result = subprocess.run(command + ["catch-up"], env=env, capture_output=True,
                                text=True, timeout=60)
        no_traceback(result)
        [line] = [line for line in (result.stdout + result.stderr).splitlines()
                  if line.startswith("job:")]
        if case == "to-start":
            assert result.returncode == exitcodes.FAILED, result.stderr
            assert "failed" in line and "Read-only file system" in line, line
        else:
            assert result.returncode == exitcodes.OK, result.stderr
            assert "dropped" in line and "its ticket stays" in line, line


def test_a_sqlite_file_with_a_second_name_is_refused_as_a_planted_hard_link(tmp_path):
    """A hard link to root's (empty) file planted in /tmp as the DSN's file
    (fs.protected_hardlinks = 0 lets any user make one): SQLite wrote its
    schema into that file."""
    if os.geteuid() != 0:
        pytest.skip("needs root, as the cron job it stands for")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim"
    victim.write_bytes(b"")
    database = shared / "cronpolicy.sqlite"
    os.link(victim, database)
    result = run_job(tmp_path, make_env(tmp_path, "sqlite:///%s" % database))
    no_traceback(result)
    assert result.returncode == exitcodes.GATE_ERROR, result.stderr
    assert "hard link" in result.stderr and not main_ran(tmp_path)
    assert victim.read_bytes() == b""


def test_a_sqlite_file_on_a_full_disk_is_said_full_not_only_an_io_error(tmp_path):
    """SQLite cannot size its -shm file: "disk I/O error" alone sent an
    operator to the hardware."""
    with tiny_tmpfs(tmp_path / "state", size="2m") as state:
        env = make_env(tmp_path, "sqlite:///" + os.path.join(state, "cronpolicy.sqlite"))
        env["CRONPOLICY_STATE_DIR"] = state
        assert run_job(tmp_path, env).returncode == exitcodes.OK
        fill(state)
        result = run_job(tmp_path, env)
        no_traceback(result)
        assert result.returncode == exitcodes.GATE_ERROR, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "its file system is full" in line, line


def test_a_record_committed_when_the_disk_filled_is_not_taken_for_a_failed_one(tmp_path):
    """The skip's commit fit in the WAL, the checkpoint after it could not
    grow the database file: the write raised "database or disk is full",
    so the record was spooled (or said lost) although it was in the
    database.  Now the WAL is synced instead and the write succeeds."""
    import sqlite3
    from cronpolicy.rows import RunRecord
    from cronpolicy.store.sqlite import SQLiteStore
    with tiny_tmpfs(tmp_path / "db", size="2m") as directory:
        path = os.path.join(directory, "cronpolicy.sqlite")
        store = SQLiteStore(path)
        store.record_skip(RunRecord(name="first", host="web1", pid=1, spool_id="a" * 32,
                                    status="skipped"))
        free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
        with open(os.path.join(directory, "filler"), "wb") as filler:
            filler.write(b"\0" * (free - 100 * 1024))     # (the WAL, reused, is larger)
        store.record_skip(RunRecord(name="second", host="web1", pid=1, spool_id="b" * 32,
                                    status="skipped", skip_reason="x" * (200 * 1024)))
        store.close()
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert [name for name, in db.execute("SELECT name FROM script_run ORDER BY id")] \
                == ["first", "second"]


def test_a_spool_entry_this_user_cannot_read_stays_and_is_not_called_damaged(
        world_readable_dir):
    """An entry root copied into a user's spool (0600, root's): the user's
    flush called it "not a spool entry (damaged ...)" and moved it to
    rejected/, never to be sent.  Now it stays, said unreadable."""
    import shutil
    from cronpolicy.rows import RunRecord
    from cronpolicy.spool import Spool
    uid = needs_root()
    top = world_readable_dir
    made = Spool(os.path.join(top, "made"))
    made.record_skip(RunRecord(name="roots", host="web1", pid=1))
    made.record_skip(RunRecord(name="theirs", host="web1", pid=1))
    state = os.path.join(top, "state")
    shutil.copytree(made.directory, os.path.join(state, "spool"))
    for directory, _, names in os.walk(state):
        os.chown(directory, uid, -1)
        for name in names:
            if "roots" not in open(os.path.join(directory, name)).read():
                os.chown(os.path.join(directory, name), uid, -1)
    config = os.path.join(top, "cronpolicy.conf")
    with open(config, "w") as handle:
        handle.write("[cronpolicy]\n")
    library = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": library, "CRONPOLICY_CONFIG": config,
           "CRONPOLICY_HOST": "web1", "HOME": top, "CRONPOLICY_STATE_DIR": state}
    result = as_user(uid, ["-m", "cronpolicy", "flush"], env)
    no_traceback(result)
    assert "wrote 1 spooled run record" in result.stdout, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "cannot read" in line and "Permission denied" in line and "stays" in line, line
    assert len(Spool(os.path.join(state, "spool"))) == 1
    assert not os.path.exists(os.path.join(state, "spool", "rejected"))


@pytest.mark.parametrize("which", ["cache", "spool-entry", "catch-up-ticket"])
def test_moving_a_damaged_file_aside_never_replaces_what_is_not_a_plain_file(tmp_path, which):
    """The name a damaged file is moved to (.rejected, rejected/NAME) held
    a FIFO: the rename destroyed it.  Only a plain file is ever replaced
    (cronpolicy.safety): the damaged file now stays where it is."""
    from cronpolicy import catchup
    from cronpolicy.cache import PolicyCache
    from cronpolicy.locking import name_file
    from cronpolicy.spool import Spool
    os.chmod(tmp_path, 0o700)
    if which == "cache":
        path = str(tmp_path / "policy-cache.json")
        aside = path + ".rejected"
    elif which == "spool-entry":
        spool = Spool(str(tmp_path / "spool"))
        os.makedirs(os.path.join(spool.directory, "rejected"), mode=0o700)
        path = os.path.join(spool.directory, "00000000000000000001-x.json")
        aside = os.path.join(spool.directory, "rejected", os.path.basename(path))
    else:
        directory = safety.checked_directory(catchup.ticket_dir(str(tmp_path)), "state_dir",
                                             0o700)
        path = name_file(directory, "job", catchup.SUFFIX)
        aside = path + ".rejected"
    with open(path, "w") as damaged:
        damaged.write("{not json")
    os.mkfifo(aside)
    if which == "cache":
        assert PolicyCache(path, 3600).load_inputs("job", 20) is None
    elif which == "spool-entry":
        spool.flush(store=None)
        assert spool.rejected[0][0] is None
    else:
        catchup.tickets(str(tmp_path), recover=False)
    assert stat.S_ISFIFO(os.lstat(aside).st_mode) and os.path.exists(path)


def test_a_link_planted_between_the_check_and_sqlites_open_is_not_followed(tmp_path,
                                                                          monkeypatch):
    """The DSN's file, missing when checked, planted as another user's link
    (in /tmp) before SQLite opens it: SQLite followed the link and root
    created the file it named.  The check now makes the file itself."""
    from cronpolicy.errors import ConfigError
    from cronpolicy.store.sqlite import connect_sqlite
    uid = needs_root()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim"
    database = shared / "cronpolicy.sqlite"
    real_lstat, planted = os.lstat, []

    def lstat(path, *args, **kwargs):
        try:
            return real_lstat(path, *args, **kwargs)
        except FileNotFoundError:
            if os.fspath(path) == str(database) and not planted:
                planted.append(True)        # the race, won by the other user
                os.symlink(victim, database)
                os.lchown(database, uid, -1)
            raise
    monkeypatch.setattr(os, "lstat", lstat)
    with pytest.raises(ConfigError, match="symbolic link owned by uid %d" % uid):
        connect_sqlite(str(database)).close()
    assert planted and not victim.exists()


def test_a_sqlite_file_of_another_user_in_a_shared_directory_is_refused(tmp_path):
    """A plain file another user made at the DSN's name in /tmp (sticky):
    its owner may swap it for a link at any moment (fs.protected_regular
    may be 0), between the check and SQLite's open.  Refused, one line,
    exit 4; such a file in a directory only root may write is used."""
    uid = needs_root()
    for mode, expected in ((0o1777, exitcodes.GATE_ERROR), (0o755, exitcodes.OK)):
        shared = tmp_path / ("shared-%o" % mode)
        shared.mkdir()
        shared.chmod(mode)
        database = shared / "cronpolicy.sqlite"
        database.write_bytes(b"")
        os.chown(database, uid, -1)
        result = run_job(tmp_path, make_env(tmp_path, "sqlite:///%s" % database))
        no_traceback(result)
        assert result.returncode == expected, (mode, result.stderr)
        if expected:
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert "owned by uid %d" % uid in result.stderr and not main_ran(tmp_path)
            assert database.read_bytes() == b""


def test_a_log_file_with_a_second_name_is_refused_as_a_planted_hard_link(tmp_path):
    """--log-file /tmp/job.log, where another user linked root's file
    (fs.protected_hardlinks = 0 lets any user link a file they cannot
    write): root's job appended its log to that file, as with the SQLite
    file and the lock file, which refuse a second name.  Refused, exit 4."""
    if os.geteuid() != 0:
        pytest.skip("needs root, as the cron job it stands for")
    victim, planted = planted_log_file(tmp_path, os.link)
    result = run_with_log_file(tmp_path, planted)
    no_traceback(result)
    assert result.returncode == exitcodes.GATE_ERROR, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "hard link" in result.stderr and not main_ran(tmp_path)
    assert victim.read_text() == "root's file\n"


def test_a_crontab_on_a_read_only_file_system_is_named_not_its_temporary(tmp_path):
    """`crontab wrap --in-place` on a read-only file system said "cannot
    write /etc/cron.d/.publisher.28462-1fc7c57885c8b2f4.tmp: Read-only file
    system", a name the operator never gave: the crontab is named."""
    with tiny_tmpfs(tmp_path / "etc") as etc:
        crontab = os.path.join(etc, "publisher")
        with open(crontab, "w") as handle:
            handle.write("* * * * * /srv/bin/publish --all\n")
        subprocess.run(["mount", "-o", "remount,ro", etc], check=True)
        result = subprocess.run(
            [sys.executable, "-m", "cronpolicy", "crontab", "wrap", "--in-place", "--no-backup",
             crontab], env=dict(os.environ, CRONPOLICY_CONFIG=str(tmp_path / "none.conf"),
                                XDG_STATE_HOME=str(tmp_path / "state")),
            capture_output=True, text=True, timeout=60)
        no_traceback(result)
        assert result.returncode == exitcodes.USAGE, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "cannot write %s: Read-only" % crontab in line, line
        with open(crontab) as handle:
            assert handle.read() == "* * * * * /srv/bin/publish --all\n"
