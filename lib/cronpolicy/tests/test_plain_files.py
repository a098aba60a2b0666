"""Issue 26.1: no file that is not a plain file is ever replaced.

As root, `metrics --output /dev/null` renamed a new file over the device
node.  Every writer (metrics --output, simulate --svg, crontab wrap
--output-dir and --in-place, the state files a cron job writes) is pointed
here at a FIFO, a socket, a directory, a symbolic link to /dev/null and,
as root, a character device made with mknod (the same device as /dev/null,
in a temporary directory): a person's path is refused in one line, exit 2;
a state file is left alone with a warning, the job still runs; and the node
is still what it was.  Nothing waits on a FIFO either.
"""

import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile

import pytest

from cronpolicy import exitcodes, safety
from cronpolicy.config import Settings
from cronpolicy import errors

from .test_crontab_files import USER_CRONTAB, cronpolicy as crontab_command

KINDS = ("fifo", "socket", "directory", "link-to-dev-null", "device")


class Hung(Exception):
    """Not an OSError (as TimeoutError is): no handler of a failed open takes it."""


@pytest.fixture(autouse=True)
def bounded():
    """Whatever a test does in this process (open a FIFO nobody writes...)
    ends within a minute: an alarm interrupts it."""
    def hung(number, frame):
        raise Hung("still waiting after 60s (on a FIFO?)")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def make_node(kind, path):
    """A file of ``kind`` at ``path`` (skips "device" unless root)."""
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        # Bound where the path is short (AF_UNIX allows 108 bytes), then moved.
        short = tempfile.mkdtemp(prefix="cp-")
        server = socket.socket(socket.AF_UNIX)
        server.bind(os.path.join(short, "s"))
        server.close()
        os.rename(os.path.join(short, "s"), path)
        os.rmdir(short)
    elif kind == "directory":
        os.mkdir(path)
    elif kind == "link-to-dev-null":
        os.symlink("/dev/null", path)
    elif kind == "device":
        if os.geteuid() != 0:
            pytest.skip("needs root, to make a device node")
        null = os.stat("/dev/null")
        os.mknod(path, stat.S_IFCHR | 0o666, null.st_rdev)
    return path


def identity(path):
    """What the node at ``path`` is: its type, inode, device and link target."""
    info = os.lstat(path)
    return (stat.S_IFMT(info.st_mode), info.st_ino, info.st_rdev,
            os.readlink(path) if stat.S_ISLNK(info.st_mode) else None)


def one_line_usage_error(code, err):
    assert code == exitcodes.USAGE, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("kind", KINDS)
def test_write_atomically_never_replaces_what_is_not_a_plain_file(tmp_path, kind):
    target = make_node(kind, tmp_path / "target")
    before = identity(target)
    with pytest.raises(OSError) as raised:
        safety.write_atomically(target, lambda handle: handle.write("x"))
    assert isinstance(raised.value, errors.UsageError) and "not a plain file" in str(raised.value)
    assert identity(target) == before
    assert os.listdir(tmp_path) == ["target"]          # no temporary left behind


@pytest.mark.parametrize("kind", KINDS)
def test_a_node_made_while_the_file_is_written_is_not_replaced_either(tmp_path, kind):
    target = str(tmp_path / "target")
    made = []

    def write(handle):
        handle.write("x")
        made.append(identity(make_node(kind, target)))

    with pytest.raises(OSError):
        safety.write_atomically(target, write)
    assert identity(target) == made[0]


def test_a_plain_file_is_replaced_and_a_missing_one_made(tmp_path):
    target = tmp_path / "plain"
    safety.write_atomically(str(target), lambda handle: handle.write("one"))
    target_inode = os.stat(target).st_ino
    safety.write_atomically(str(target), lambda handle: handle.write("two"))
    assert target.read_text() == "two" and os.stat(target).st_ino != target_inode


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_metrics_output_refuses_it_in_one_line(cli, tmp_path, kind):
    target = make_node(kind, tmp_path / "out" / "cronpolicy.prom")
    before = identity(target)
    code, out, err = cli("metrics", "--output", target)
    one_line_usage_error(code, err)
    assert "not a plain file" in err and out == ""
    assert identity(target) == before


@pytest.mark.parametrize("kind", KINDS)
def test_simulate_svg_refuses_it_before_the_play(tmp_path, kind, capsys):
    from cronpolicy.tooling.cli import main
    crontab = tmp_path / "web1"
    crontab.write_text("*/5 * * * * /srv/bin/job\n")
    target = make_node(kind, tmp_path / "out" / "picture.svg")
    before = identity(target)
    code = main(["simulate", "--crontab", str(crontab), "--default-model", "1m,2m,true",
                 "--days", "1", "--rollouts", "1", "--workers", "1", "--svg", target])
    out, err = capsys.readouterr()
    one_line_usage_error(code, err)
    assert out == "" and identity(target) == before


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_crontab_output_dir_refuses_it_and_writes_nothing(tmp_path, kind):
    crontab = tmp_path / "mine"
    crontab.write_text(USER_CRONTAB)
    other = tmp_path / "other"
    other.write_text(USER_CRONTAB)
    out_dir = tmp_path / "out"
    target = make_node(kind, str(out_dir) + str(crontab))
    before = identity(target)
    code, out, err = crontab_command(tmp_path, "wrap", "--output-dir", str(out_dir),
                                     str(other), str(crontab))
    one_line_usage_error(code, err)
    assert identity(target) == before
    assert not os.path.lexists(str(out_dir) + str(other))     # nothing half-written


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_crontab_in_place_refuses_it_as_the_crontab_or_as_its_backup(tmp_path, kind):
    crontab = tmp_path / "mine"
    crontab.write_text(USER_CRONTAB)
    backup = make_node(kind, tmp_path / ".mine.cronpolicy-orig")
    before = identity(backup)
    code, out, err = crontab_command(tmp_path, "wrap", "--in-place", str(crontab))
    one_line_usage_error(code, err)
    assert identity(backup) == before and crontab.read_text() == USER_CRONTAB
    itself = make_node(kind, tmp_path / "itself")
    before = identity(itself)
    code, out, err = crontab_command(tmp_path, "unwrap", "--in-place", str(crontab), itself)
    one_line_usage_error(code, err)
    assert identity(itself) == before


def _state_file(script_env, which):
    settings = Settings(dsn=script_env["CRONPOLICY_DSN"],
                        state_dir=os.path.join(script_env["XDG_STATE_HOME"], "cronpolicy"))
    from cronpolicy.cache import PolicyCache
    cache = PolicyCache(settings.cache_path, settings.cache_max_age)
    return {"cache": cache.path, "fingerprint": cache.fingerprint_path}[which]


@pytest.mark.parametrize("which", ["cache", "fingerprint"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_cron_job_leaves_its_state_files_alone_when_they_are_not_plain(
        scripts, script_env, kind, which):
    """The policy cache and its fingerprint, written after every start that
    read the database: the job runs, says it in one warning, and the node
    stays (a FIFO once made every start wait forever on reading it)."""
    target = make_node(kind, _state_file(script_env, which))
    before = identity(target)
    scripts.write("job")
    result = scripts.run("job", timeout=30)
    assert result.returncode == exitcodes.OK, result.stderr
    assert scripts.main_calls("job") == 1 and "Traceback" not in result.stderr
    if which == "cache":
        assert "cannot write the policy cache" in result.stderr
        assert "not a plain file" in result.stderr
    assert identity(target) == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_cache_that_is_not_a_plain_file_is_ignored_when_the_database_is_away(
        tmp_path, kind):
    """Read when the database is out of reach: never opened (a FIFO would
    block the start), never moved."""
    from cronpolicy.cache import PolicyCache
    path = make_node(kind, tmp_path / "policy-cache.json")
    before = identity(path)
    cache = PolicyCache(path, 3600)
    assert cache.load_inputs("job", 20) is None
    assert cache.rejected is not None and cache.rejected[0] is None
    assert "not a plain file" in cache.rejected[1]
    assert identity(path) == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_catch_up_ticket_that_is_not_a_plain_file_is_moved_aside_whole(tmp_path, kind):
    """A ticket's place holding something else: moved aside (the node
    kept, under .rejected), and the new ticket written; catch-up reading
    the directory never waits on a FIFO."""
    from cronpolicy import catchup
    from cronpolicy.locking import name_file
    from cronpolicy.policy import ScriptFacts
    state = tmp_path / "state"
    directory = safety.checked_directory(catchup.ticket_dir(str(state)), "state_dir", 0o700)
    path = name_file(directory, "job", catchup.SUFFIX)
    make_node(kind, path)
    before = identity(path)
    written, problem = catchup.write_ticket(str(state), ScriptFacts("job", "web1"), "deploy",
                                            1.0)
    assert written == path and problem and catchup.read_ticket(path)["name"] == "job"
    assert identity(path + ".rejected") == before


@pytest.mark.integration
def test_a_spool_entry_that_is_not_a_plain_file_is_set_aside_not_waited_on(tmp_path):
    from cronpolicy.spool import Spool
    spool = Spool(str(tmp_path / "spool"))
    os.makedirs(spool.directory)
    fifo = os.path.join(spool.directory, "00000000000000000001-x.json")
    os.mkfifo(fifo)
    before = identity(fifo)
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from cronpolicy.spool import Spool; "
         "print(Spool(sys.argv[1]).entries())", spool.directory],
        capture_output=True, text=True, timeout=30)
    assert child.returncode == 0 and "None" in child.stdout, child.stderr
    assert identity(fifo) == before
