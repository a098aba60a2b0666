"""Issue 14.4: deploy wait hears the end of the last run at once, on one
connection; a poller in transaction mode still polls."""

import os
import threading
import time

import pytest

from cronpolicy.config import Settings
from cronpolicy.tooling import deploy
from cronpolicy.tooling.database import Database

from .conftest import DBA

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration


def running_row(dba, name="publish-distro"):
    """A live run on another host with an hour's lease: only its end (or a
    deploy end) can free the wait."""
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, heartbeat_at,"
                " lease_expires_at, status) VALUES ({}, 'elsewhere', %d, %s, %s, %s, 'running')"
                % (os.getpid(), dba.now_plus(-5), dba.now_plus(0), dba.now_plus(3600)),
                (name,))
    return dba.scalar("SELECT max(id) FROM cronpolicy.script_run")


def waiting(db, timeout=30):
    """Start deploy.wait_until_quiet in a thread; returns (thread, result box)."""
    box = {}

    def wait():
        box["result"] = deploy.wait_until_quiet(db, timeout=timeout)
        box["returned"] = time.monotonic()
    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread, box


def backends_of(dba, application_name):
    return dba.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                      " AND application_name = {}", (application_name,))


def test_the_end_of_the_last_run_is_heard_at_once_on_one_connection(pg_dsn, monkeypatch):
    # Without the notification the wait would look again only after 30s.
    monkeypatch.setattr(deploy, "LISTENING_LOOK_EVERY", 30.0)
    dba = DBA(pg_dsn)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    run_id = running_row(dba)
    db = Database(Settings(dsn=pg_dsn, dsn_source="--dsn"), application_name="wait-under-test")
    thread, box = waiting(db)
    time.sleep(1.0)
    assert "result" not in box
    assert backends_of(dba, "wait-under-test") == 1
    ended = time.monotonic()
    dba.execute("UPDATE cronpolicy.script_run SET status = 'succeeded', finished_at = now()"
                " WHERE id = {}", (run_id,))
    thread.join(10)
    assert box["result"].quiet
    assert box["returned"] - ended < 2.0, "heard only by a later look"


def test_a_run_that_dies_is_given_up_on_when_its_lease_runs_out(pg_dsn, monkeypatch):
    monkeypatch.setattr(deploy, "LISTENING_LOOK_EVERY", 30.0)
    dba = DBA(pg_dsn)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    run_id = running_row(dba)
    dba.execute("UPDATE cronpolicy.script_run SET lease_expires_at = now() + interval '2 seconds'"
                " WHERE id = {}", (run_id,))
    db = Database(Settings(dsn=pg_dsn, dsn_source="--dsn"))
    started = time.monotonic()
    result = deploy.wait_until_quiet(db, timeout=20)
    assert result.quiet and time.monotonic() - started < 6


@pytest.mark.parametrize("dsn", ["sqlite", "pgbouncer-transaction"], indirect=True)
def test_polling_still_finds_the_end(dsn, monkeypatch):
    """SQLite has no notifications, and a transaction pooler loses LISTEN."""
    dba = DBA(dsn)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = {}", (True,))
    run_id = running_row(dba)
    settings = Settings(dsn=dsn, dsn_source="--dsn",
                        watch="poll" if not dsn.startswith("sqlite") else "listen")
    db = Database(settings)
    thread, box = waiting(db)
    time.sleep(0.5)
    assert "result" not in box
    dba.execute("UPDATE cronpolicy.script_run SET status = 'succeeded', finished_at = %s"
                " WHERE id = {}" % dba.now_plus(0), (run_id,))
    thread.join(10)
    assert box["result"].quiet


def test_a_lost_connection_is_replaced_and_the_wait_goes_on(pg_dsn, monkeypatch):
    """It held one connection: a backend killed (a restart, a failover) ended
    the whole wait with an error, though the server was back at once."""
    monkeypatch.setattr(deploy, "LISTENING_LOOK_EVERY", 30.0)
    dba = DBA(pg_dsn)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    run_id = running_row(dba)
    db = Database(Settings(dsn=pg_dsn, dsn_source="--dsn"), application_name="wait-cut")
    thread, box = waiting(db)
    time.sleep(1.0)
    dba.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'wait-cut'")
    time.sleep(0.5)
    assert "result" not in box and thread.is_alive()
    dba.execute("UPDATE cronpolicy.script_run SET status = 'succeeded', finished_at = now()"
                " WHERE id = {}", (run_id,))
    thread.join(10)
    assert box.get("result") is not None and box["result"].quiet


def test_a_flood_of_notifications_is_not_a_flood_of_looks(pg_dsn, monkeypatch):
    dba = DBA(pg_dsn)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    running_row(dba)
    db = Database(Settings(dsn=pg_dsn, dsn_source="--dsn"))
    looks = []
    original = deploy.blocking_runs
    monkeypatch.setattr(deploy, "blocking_runs",
                        lambda *args, **kwargs: looks.append(1) or original(*args, **kwargs))
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            dba.execute("NOTIFY cronpolicy_run")
    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        result = deploy.wait_until_quiet(db, timeout=2)
    finally:
        stop.set()
        flooder.join(10)
    assert not result.quiet
    assert len(looks) <= 2 / 0.05 + 5, len(looks)      # at most one look per 50 ms


def test_an_announcement_just_after_a_look_is_looked_at_at_once(pg_dsn, monkeypatch):
    """Issue 32.2: each look made the next wait at least 50 ms, so the last
    blocker's end, announced just after another announcement (its
    heartbeat), was looked at up to 50 ms late.  A few looks in a row are
    made at once; only a flood waits (the test above)."""
    db = Database(Settings(dsn=pg_dsn, dsn_source="--dsn"))
    looks = deploy._Looks(db)
    slept = []
    try:
        looks.look("*")
        DBA(pg_dsn).execute("NOTIFY cronpolicy_run")
        monkeypatch.setattr(deploy.time, "sleep", slept.append)
        looks.wait(5.0)
    finally:
        monkeypatch.undo()
        looks.close()
    assert not slept, slept


@pytest.mark.parametrize("argv, code, said", [
    (["--timeout", "10s"], 0, "quiet after"),
    (["--timeout", "1s"], 7, "publish-distro  elsewhere"),
    (["--timeout", "10s", "--json"], 0, '"quiet": true')])
def test_a_wait_that_ends_its_process_at_once_still_says_all(dsn, script_env, tmp_path, argv,
                                                             code, said):
    """Issue 32.2: `deploy wait` ends its process without the interpreter's
    teardown; what it wrote still reaches a pipe and a file whole, with its
    exit status, and the database is left as a closed connection leaves it."""
    import subprocess
    import sys
    dba = DBA(dsn)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    if code == 7:
        running_row(dba)
    program = [sys.executable, "-m", "cronpolicy", "deploy", "wait"] + argv
    piped = subprocess.run(program, env=script_env, capture_output=True, text=True, timeout=60)
    assert piped.returncode == code, piped.stderr
    assert said in piped.stdout and piped.stdout.endswith("\n")
    assert said in piped.stdout.splitlines()[-1] or piped.stdout.endswith("}\n")
    with open(tmp_path / "out", "w") as out:
        to_file = subprocess.run(program, env=script_env, stdout=out, timeout=60)
    assert to_file.returncode == code
    written = (tmp_path / "out").read_text()
    # (the last line, its end included: nothing left in a buffer)
    assert said in written.splitlines()[-1] or said in written and written.endswith("}\n")
    if dsn.startswith("sqlite"):
        # no connection left open to the file (its WAL was checkpointed away)
        assert not os.path.exists(dsn[len("sqlite:///"):] + "-wal")


def test_the_schema_is_checked_once_per_held_connection(pg_dsn, monkeypatch):
    """Issue 32.2: the look that finds the fleet quiet and the record of the
    drain after it are each two round trips shorter without the schema's
    check, made already when the connection was first used."""
    from cronpolicy import schema
    checks = []
    real = schema.postgres_version
    monkeypatch.setattr(schema, "postgres_version",
                        lambda connection: checks.append(1) or real(connection))
    monkeypatch.setattr(deploy, "LISTENING_LOOK_EVERY", 0.2)
    dba = DBA(pg_dsn)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    run_id = running_row(dba)
    db = Database(Settings(dsn=pg_dsn, dsn_source="--dsn"))
    thread, box = waiting(db)
    time.sleep(1.0)             # several looks
    dba.execute("UPDATE cronpolicy.script_run SET status = 'succeeded', finished_at = now()"
                " WHERE id = {}", (run_id,))
    thread.join(10)
    assert box["result"].quiet
    assert len(checks) == 1
