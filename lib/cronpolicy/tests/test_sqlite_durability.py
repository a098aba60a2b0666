"""Issue 32.1, SQLite: a run's durable records are synced before the write
returns, by a checkpoint instead of a FULL commit, so that a start and its
end cost the floor's four syncs; what a killed process wrote survives it."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from cronpolicy.rows import RunEnd, RunRecord
from cronpolicy.store.sqlite import SQLiteStore

#: Every test here writes real SQLite files (and some start processes).
pytestmark = pytest.mark.integration


def start_and_end(store, name="job"):
    run = store.record_start(RunRecord(name=name, host="h", pid=1,
                                       spool_id=os.urandom(16).hex()))
    store.record_finish(run, RunEnd(status="succeeded", exit_code=0))
    return run


def statuses(path):
    connection = sqlite3.connect(path)
    try:
        return dict(connection.execute("SELECT id, status FROM script_run").fetchall())
    finally:
        connection.close()


def test_a_durable_end_is_in_the_database_file_when_the_write_returns(tmp_path):
    """The end record is copied into the (synced) database file at once:
    the file alone, without its WAL, already holds it."""
    path = str(tmp_path / "db.sqlite")
    store = SQLiteStore(path, create_directory=True)
    run = start_and_end(store)
    shutil.copyfile(path, str(tmp_path / "alone.sqlite"))       # no -wal beside it
    store.close()
    assert statuses(str(tmp_path / "alone.sqlite")) == {run.id: "succeeded"}


@pytest.mark.parametrize("linked", [False, True])
def test_the_end_is_synced_even_when_a_reader_keeps_the_checkpoint_back(tmp_path, monkeypatch,
                                                                         linked):
    """A reader in an older snapshot keeps the checkpoint from copying the
    end: the WAL file is synced instead (beside the file a link names, where
    SQLite keeps it), and the write still returns."""
    path = str(tmp_path / "db.sqlite")
    if linked:
        os.symlink(path, str(tmp_path / "link.sqlite"))
    store = SQLiteStore(str(tmp_path / "link.sqlite") if linked else path,
                        create_directory=True)
    run = store.record_start(RunRecord(name="job", host="h", pid=1,
                                       spool_id=os.urandom(16).hex()))
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM script_run").fetchall()    # its snapshot starts
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(os.readlink(
        "/proc/self/fd/%d" % fd)), real(fd)))
    store.record_finish(run, RunEnd(status="succeeded", exit_code=0))
    reader.execute("COMMIT")
    reader.close()
    assert synced == [path + "-wal"]
    store.close()
    assert statuses(path) == {run.id: "succeeded"}


KILLED = """\
import os, signal, sys
from cronpolicy.rows import RunEnd, RunRecord
from cronpolicy.store.sqlite import SQLiteStore

store = SQLiteStore(sys.argv[1], create_directory=True)
run = store.record_start(RunRecord(name="job", host="h", pid=os.getpid(), spool_id="k" * 32))
if sys.argv[2] == "after-end":
    store.record_finish(run, RunEnd(status="succeeded", exit_code=0))
print(run.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)        # no close, no checkpoint at exit
"""


@pytest.mark.parametrize("when, status", [("after-start", "running"),
                                          ("after-end", "succeeded")])
def test_what_a_killed_process_wrote_survives_it(tmp_path, when, status):
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    path = str(tmp_path / "db.sqlite")
    result = subprocess.run([sys.executable, str(script), path, when], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert statuses(path) == {int(result.stdout): status}


NOOP = textwrap.dedent("""\
    from cronpolicy import CronScript

    class Noop(CronScript):
        name = "noop"

        def main(self):
            pass

    Noop().run()
    """)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_a_gated_sqlite_run_syncs_no_more_than_the_floor(tmp_path):
    """The floor (sqlite3's rollback journal, one write committed) syncs
    four times: the journal, its directory, the journal again, the file.
    A run (its start, its durable end, its close) syncs no more."""
    script = tmp_path / "noop.py"
    script.write_text(NOOP)
    (tmp_path / "cronpolicy.conf").write_text("[cronpolicy]\n")
    env = dict(os.environ, CRONPOLICY_CONFIG=str(tmp_path / "cronpolicy.conf"),
               CRONPOLICY_STATE_DIR=str(tmp_path / "state"),
               CRONPOLICY_LOCK_DIR=str(tmp_path / "locks"),
               CRONPOLICY_DSN="sqlite:///%s" % (tmp_path / "db.sqlite"))
    trace = tmp_path / "trace"
    for _ in range(2):          # the second run opens a file that exists, as cron's do
        result = subprocess.run(["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,sync_file_range",
                                 "-o", str(trace), sys.executable, str(script)],
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    syncs = [line for line in trace.read_text().splitlines() if "sync" in line]
    assert len(syncs) <= 4, syncs
