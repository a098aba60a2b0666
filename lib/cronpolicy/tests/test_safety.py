"""Files on a shared host: what another local user plants where cronpolicy
writes (symlinks, hard links, directories created first, config files they
can edit) is refused with one line, and nothing else is ever overwritten.

Scripts run as root in production; the tests run as root in CI.  Tests that
need a second user chown to ``nobody`` and so need root: elsewhere they are
skipped, saying so.
"""

import os
import pwd
import stat

import pytest

from cronpolicy import exitcodes, safety
from cronpolicy.config import Settings, mask_dsn, scrub
from cronpolicy.errors import ConfigError
from cronpolicy.locking import ScriptLock, lock_path

from .conftest import ScriptRunner


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("needs root, to make files owned by another user")
    return pwd.getpwnam("nobody").pw_uid


@pytest.fixture(autouse=True)
def forget_checked_directories():
    safety._checked.clear()
    yield
    safety._checked.clear()


@pytest.fixture
def secret(tmp_path):
    """A root-only file an attacker would like root to overwrite."""
    path = tmp_path / "shadow"
    path.write_text("root's secret\n")
    path.chmod(0o600)
    return path


def one_line_refusal(result, fragment):
    assert result.returncode == exitcodes.GATE_ERROR, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr, lines


def test_a_symlink_planted_as_the_lock_file_is_refused_and_its_target_untouched(
        scripts, script_env, secret):
    lock_dir = script_env["CRONPOLICY_LOCK_DIR"]
    os.makedirs(lock_dir)
    os.symlink(secret, lock_path(lock_dir, "publish-distro"))
    scripts.write("publish-distro")
    result = scripts.run("publish-distro")
    one_line_refusal(result, "symbolic link")
    assert secret.read_text() == "root's secret\n"
    assert scripts.main_calls("publish-distro") == 0


def test_a_hard_link_planted_as_the_lock_file_is_refused_and_its_target_untouched(
        tmp_path, secret):
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    os.link(secret, lock_path(str(lock_dir), "publish-distro"))
    with pytest.raises(ConfigError, match="not a plain file with one name"):
        ScriptLock(str(lock_dir), "publish-distro").acquire()
    assert secret.read_text() == "root's secret\n"


def test_a_lock_dir_another_user_created_first_is_refused(scripts, script_env):
    nobody = needs_root()
    lock_dir = script_env["CRONPOLICY_LOCK_DIR"]
    os.makedirs(lock_dir)
    os.chown(lock_dir, nobody, -1)
    scripts.write("publish-distro")
    one_line_refusal(scripts.run("publish-distro"), "owned by uid %d" % nobody)
    assert os.listdir(lock_dir) == []


@pytest.mark.parametrize("mode, accepted", [(0o777, False), (0o775, False), (0o1777, True),
                                            (0o755, True)])
def test_a_lock_dir_others_may_write_is_refused_unless_sticky_and_ours(tmp_path, mode, accepted):
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    lock_dir.chmod(mode)
    lock = ScriptLock(str(lock_dir), "job")
    if accepted:
        lock.acquire().release()
    else:
        with pytest.raises(ConfigError, match="writable by other users"):
            lock.acquire()


def test_a_sticky_directory_of_another_user_is_refused(tmp_path):
    nobody = needs_root()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    os.chown(shared, nobody, -1)
    with pytest.raises(ConfigError, match="owned by uid"):
        safety.checked_directory(str(shared), "lock_dir")


def test_a_symbolic_link_of_another_user_on_the_way_is_refused(tmp_path):
    nobody = needs_root()
    (tmp_path / "real").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real")
    os.lchown(link, nobody, -1)
    with pytest.raises(ConfigError, match="symbolic link owned by uid %d" % nobody):
        safety.checked_directory(str(link / "locks"), "lock_dir")
    assert safety.checked_directory(str(tmp_path / "real" / "locks"), "lock_dir")


def test_an_ancestor_others_may_write_is_refused(tmp_path):
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)                     # anyone could rename locks/ away
    with pytest.raises(ConfigError, match="in .*writable by other users"):
        safety.checked_directory(str(parent / "locks"), "lock_dir")


def test_an_unsafe_state_dir_is_refused_before_anything_is_written(scripts, script_env):
    state = os.path.join(script_env["XDG_STATE_HOME"], "cronpolicy")
    os.makedirs(state)
    os.chmod(state, 0o777)
    scripts.write("publish-distro")
    one_line_refusal(scripts.run("publish-distro"), "state_dir")
    assert os.listdir(state) == []


def test_metrics_output_never_writes_through_a_planted_name(cli, tmp_path, secret):
    output = tmp_path / "cronpolicy.prom"
    # The temporary name metrics used to take: predictable from the pid.
    os.symlink(secret, "%s.%d.tmp" % (output, os.getpid()))
    code, _, err = cli("metrics", "--output", str(output))
    assert code == exitcodes.OK, err
    assert secret.read_text() == "root's secret\n"
    assert "cronpolicy_" in output.read_text()
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] \
        == [os.path.basename("%s.%d.tmp" % (output, os.getpid()))]


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646])
def test_a_config_file_others_may_change_is_refused(tmp_path, mode):
    path = tmp_path / "cronpolicy.conf"
    path.write_text("[cronpolicy]\nlock_dir = /tmp/elsewhere\n")   # no password in it
    path.chmod(mode)
    with pytest.raises(ConfigError, match="can be changed by other users"):
        Settings.load(environ={"CRONPOLICY_CONFIG": str(path)})


def test_a_config_file_of_another_user_is_refused(tmp_path):
    nobody = needs_root()
    path = tmp_path / "cronpolicy.conf"
    path.write_text("[cronpolicy]\n")
    path.chmod(0o644)
    os.chown(path, nobody, -1)
    with pytest.raises(ConfigError, match="owned by uid %d" % nobody):
        Settings.load(environ={"CRONPOLICY_CONFIG": str(path)})


@pytest.mark.parametrize("dsn, secret_value", [
    ("host=db sslpassword=k3y dbname=x", "k3y"),
    ("postgresql://cron@db/x?sslpassword=k3y&sslmode=require", "k3y"),
    ("postgresql://cron@db/x?password=s3cret", "s3cret"),
])
def test_every_libpq_secret_is_masked_and_needs_a_private_file(tmp_path, dsn, secret_value):
    assert secret_value not in mask_dsn(dsn) and "***" in mask_dsn(dsn)
    assert secret_value not in scrub("could not load %s" % secret_value, dsn)
    path = tmp_path / "cronpolicy.conf"
    path.write_text("[cronpolicy]\ndsn = %s\n" % dsn)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="contains a password"):
        Settings.load(environ={"CRONPOLICY_CONFIG": str(path)})
    path.chmod(0o600)
    assert Settings.load(environ={"CRONPOLICY_CONFIG": str(path)}).dsn == dsn


def test_the_directories_cronpolicy_creates_are_private(tmp_path):
    created = safety.checked_directory(str(tmp_path / "state" / "cronpolicy"), "state_dir",
                                       0o700)
    assert stat.S_IMODE(os.stat(created).st_mode) & 0o077 == 0


def test_a_real_run_is_unaffected_in_safe_directories(tmp_path, script_env):
    runner = ScriptRunner(tmp_path, script_env)
    runner.write("publish-distro")
    result = runner.run("publish-distro")
    assert result.returncode == exitcodes.OK, result.stderr
    assert runner.main_calls("publish-distro") == 1


def test_missing_parents_get_the_umasks_mode_and_the_directory_its_own(tmp_path):
    """As os.makedirs: before, every missing parent got the private mode
    too (a new ~/.local made 0700 by a cron job's first start)."""
    old = os.umask(0o022)
    try:
        safety.checked_directory(str(tmp_path / "a" / "b" / "state"), "state_dir", 0o700)
    finally:
        os.umask(old)
    modes = [stat.S_IMODE(os.stat(tmp_path / part).st_mode) for part in ("a", "a/b", "a/b/state")]
    assert modes == [0o755, 0o755, 0o700]


def test_a_directory_another_start_makes_first_is_no_error(tmp_path, monkeypatch):
    """Two first starts on a new host: the one that lost the race to mkdir
    exited 4 ("cannot create state_dir: File exists")."""
    real_mkdir = os.mkdir

    def lose_the_race(path, mode=0o777):
        real_mkdir(path, mode)          # the other start, just before this one
        real_mkdir(path, mode)
    monkeypatch.setattr(os, "mkdir", lose_the_race)
    target = tmp_path / "x" / "state"
    assert safety.checked_directory(str(target), "state_dir", 0o700) == str(target)


def test_a_durable_atomic_write_is_on_disk_before_its_name_is(tmp_path, monkeypatch):
    """Catch-up tickets and simulate's picture: fsync'ed before the rename,
    so a power cut cannot leave the name on an empty file.  (A cache need
    not pay for it: without ``durable`` there is no fsync.)"""
    from cronpolicy.safety import write_atomically
    target = tmp_path / "ticket"
    synced = []
    real_fsync = os.fsync

    def watching_fsync(descriptor):
        synced.append((os.fstat(descriptor).st_size, target.exists()))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", watching_fsync)
    write_atomically(str(target), lambda handle: handle.write("x" * 100), durable=True)
    assert synced == [(100, False)] and target.read_text() == "x" * 100
    write_atomically(str(target), lambda handle: handle.write("y"))
    assert len(synced) == 1 and target.read_text() == "y"


def test_a_file_being_written_has_a_name_no_cron_reads(tmp_path):
    """Every file replaced goes through one writer (crontab wrap's too), whose
    temporary file is a dot-name beside its target: cron skips those in
    /etc/cron.d, and nothing is left behind when the write fails."""
    from cronpolicy.safety import write_atomically
    target = tmp_path / "php"
    seen = []

    def write(handle):
        seen.extend(os.listdir(tmp_path))
        handle.write("x")
    write_atomically(str(target), write)
    assert len(seen) == 1 and seen[0].startswith(".php.") and seen[0].endswith(".tmp")

    def failing(handle):
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError):
        write_atomically(str(target), failing)
    assert os.listdir(tmp_path) == ["php"] and target.read_text() == "x"
