"""The stores: one read for the decision, run records, fleet-wide slots, bounded
waits; PostgreSQL, SQLite and the in-memory provider behind one interface."""

import datetime
import socket
import threading
import time

import pytest
from zope.interface.verify import verifyObject

from cronpolicy import schema
from cronpolicy.cache import PolicyCache
from cronpolicy.config import Settings
from cronpolicy.errors import DatabaseError
from cronpolicy.fallback import FallbackRecorder, FallbackSource
from cronpolicy.interfaces import IPolicySource, IPolicyStore, IRunRecorder
from cronpolicy.rows import RunEnd, RunRecord
from cronpolicy.spool import Spool
from cronpolicy.store import open_store
from cronpolicy.store.memory import MemoryDatabase
from cronpolicy.store.postgresql import PostgresStore
from cronpolicy.store.sqlite import SQLiteStore


@pytest.fixture
def policy_store(dsn, tmp_path):
    opened = open_store(Settings(dsn=dsn, dsn_source="--dsn", lock_dir=str(tmp_path / "locks")))
    yield opened
    opened.close()


def record(name="job", **fields):
    return RunRecord(name=name, host=fields.pop("host", "web1"), pid=fields.pop("pid", 4242),
                     **fields)


def test_every_provider_verifies(policy_store, dsn, tmp_path):
    expected = SQLiteStore if dsn.startswith("sqlite") else PostgresStore
    assert isinstance(policy_store, expected)
    memory = MemoryDatabase().session()
    spool, cache = Spool(str(tmp_path / "spool")), PolicyCache(str(tmp_path / "c.json"), 60)
    for store in (policy_store, memory):
        assert verifyObject(IPolicyStore, store)
    for source in (cache, FallbackSource(memory, cache, None)):
        assert verifyObject(IPolicySource, source)
    for recorder in (spool, FallbackRecorder(memory, spool, None)):
        assert verifyObject(IRunRecorder, recorder)


def test_load_inputs_reads_every_input(policy_store, dba):
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, enabled, reason, rollout_exempt)"
                " VALUES ('publish-*', 'web?', false, 'mirror down', true)")
    interval = "interval '20 minutes'" if dba.backend == "postgresql" else "1200"
    dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_runtime, expected_interval)"
                " VALUES ('publish-distro', %s, %s)" % (interval, interval))
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true, reason = 'r42'")
    window = "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason) VALUES ({}, {}, {})"
    dba.execute(window.format(dba.now_plus(600), dba.now_plus(1200), "'upcoming'"))
    dba.execute(window.format(dba.now_plus(-600), dba.now_plus(600), "'active'"))
    dba.execute(window.format(dba.now_plus(-1200), dba.now_plus(-600), "'over'"))
    dba.execute(window.format(dba.now_plus(600), dba.now_plus(1200), "'cancelled'"))
    dba.execute("UPDATE cronpolicy.rollout_window SET cancelled_at = starts_at"
                " WHERE reason = 'cancelled'")

    inputs = policy_store.load_inputs("publish-distro", 20)

    assert inputs.schema_version == schema.SCHEMA_VERSION and inputs.source == "database"
    assert inputs.deploy.deploy_pending is True and inputs.deploy.reason == "r42"
    by_name = {row.name: row for row in inputs.policies}
    assert by_name["publish-*"].host == "web?" and by_name["publish-*"].enabled is False
    assert by_name["publish-*"].rollout_exempt is True
    assert by_name["publish-*"].reason == "mirror down"
    assert by_name["publish-distro"].expected_runtime == 1200.0
    assert by_name["publish-distro"].expected_interval == 1200.0
    assert by_name["publish-distro"].changed_at.tzinfo is not None
    assert sorted(window.reason for window in inputs.windows) == ["active", "upcoming"]
    for window in inputs.windows:
        assert window.starts_at.tzinfo is not None and window.ends_at > inputs.now
    assert inputs.recent_runtimes == []


def test_recent_runtimes_are_succeeded_runs_of_that_script_newest_first(policy_store, dba):
    insert = ("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at, status,"
              " exit_code) VALUES ({}, 'h', 1, {}, {}, {}, 0)")
    # 30 runs of 'job', oldest first, lasting 1..30 minutes; a failure and another script.
    for minute in range(1, 31):
        start = -100000 + minute * 3000
        dba.execute(insert.format("'job'", dba.now_plus(start), dba.now_plus(start + 60 * minute),
                                  "'succeeded'"))
    dba.execute(insert.format("'job'", dba.now_plus(-50), dba.now_plus(-40), "'failed'"))
    dba.execute(insert.format("'other'", dba.now_plus(-50), dba.now_plus(-10), "'succeeded'"))

    runtimes = policy_store.load_inputs("job", 5).recent_runtimes

    assert runtimes == pytest.approx([1800.0, 1740.0, 1680.0, 1620.0, 1560.0], abs=0.01)


def test_records_runs_with_the_database_clock(policy_store, dba):
    run = policy_store.record_start(record(estimate_seconds=90.0, estimate_source="history",
                                           decision="run"))
    row = dba.runs("job")[0]
    assert (row["id"], row["status"], row["pid"], row["estimate_seconds"]) == (
        run.id, "running", 4242, 90.0)
    time.sleep(0.05)
    policy_store.record_finish(run, RunEnd(status="interrupted", exit_code=6,
                                           stop_reason="deploy pending",
                                           stop_decision="deploy-pending", stop_policy_id=3))
    [stopped] = dba.execute("SELECT status, exit_code, stop_reason, stop_decision, stop_policy_id"
                            " FROM cronpolicy.script_run")
    assert tuple(stopped) == ("interrupted", 6, "deploy pending", "deploy-pending", 3)
    duration = dba.scalar(
        "SELECT extract(epoch FROM finished_at - started_at) FROM cronpolicy.script_run"
        if dba.backend == "postgresql" else
        "SELECT (julianday(finished_at) - julianday(started_at)) * 86400 FROM cronpolicy.script_run")
    assert 0.04 <= float(duration) < 5

    skip = policy_store.record_skip(record(pid=4243, skip_reason="deploy pending",
                                           decision="deploy-pending"))
    skipped = [row for row in dba.runs("job") if row["id"] == skip.id][0]
    assert (skipped["status"], skipped["skip_reason"]) == ("skipped", "deploy pending")
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run"
                      " WHERE status = 'skipped' AND finished_at IS NOT NULL") == 1


def test_names_and_reasons_are_stored_literally(policy_store, dba):
    hostile = "x'); DROP TABLE cronpolicy.script_run; --"
    skip = policy_store.record_skip(record(hostile, host=hostile, skip_reason=hostile))
    row = dba.runs(hostile)[0]
    assert (row["id"], row["name"], row["host"], row["skip_reason"]) == (
        skip.id, hostile, hostile, hostile)


def test_fleet_wide_slots_are_leases_given_back_at_the_end(dsn, dba, tmp_path):
    settings = Settings(dsn=dsn, dsn_source="--dsn", lock_dir=str(tmp_path / "locks"))
    sessions = [open_store(settings) for _ in range(5)]
    runs = [record("publisher", spool_id="run-%d" % index) for index in range(5)]
    try:
        taken = [session.claim_slot(run, 2) for session, run in zip(sessions[:3], runs)]
        assert taken == [True, True, False]
        assert sessions[3].claim_slot(record("other-job", spool_id="other"), 1)
        sessions[0].close()                            # the end of a run gives its slot back
        assert sessions[2].claim_slot(runs[2], 2)
        assert not sessions[4].claim_slot(runs[4], 2)
        # A slot whose lease ran out is free, whoever held it.
        dba.execute("UPDATE cronpolicy.run_slot SET lease_expires_at = {}"
                    " WHERE run_key = 'run-1'".format(dba.now_plus(-1)))
        assert sessions[4].claim_slot(runs[4], 2)
        assert sorted(row[0] for row in dba.execute(
            "SELECT run_key FROM cronpolicy.run_slot WHERE name = 'publisher'")) == [
            "run-2", "run-4"]
    finally:
        for session in sessions:
            session.close()
    assert dba.scalar("SELECT count(*) FROM cronpolicy.run_slot") == 0


def test_a_lease_renewed_by_heartbeats_keeps_a_run_alive(dsn, dba, tmp_path):
    settings = Settings(dsn=dsn, dsn_source="--dsn", heartbeat_interval=0.2, lease_ttl=1)
    store = open_store(settings)
    try:
        run = store.record_start(record(spool_id="alive"))
        assert store.heartbeat(run, True) is True
        expires = dba.scalar("SELECT lease_expires_at FROM cronpolicy.script_run")
        assert expires is not None
        dba.execute("UPDATE cronpolicy.script_run SET status = 'abandoned',"
                    " finished_at = started_at")          # reaped while it was away...
        assert store.heartbeat(run, True) is False         # ...it learns its lease was lost
        assert dba.scalar("SELECT status FROM cronpolicy.script_run") == "running"  # shown
        dba.execute("UPDATE cronpolicy.script_run SET status = 'failed',"
                    " finished_at = started_at")           # ended for good
        assert store.heartbeat(run, True) is False
    finally:
        store.close()


def test_a_heartbeat_waiting_for_a_run_being_recorded_abandoned_learns_its_lease_was_lost(
        pg_dsn):
    """A reaper records a run abandoned while the run's heartbeat waits for
    its row: the heartbeat judged the lease by the row as it was before it
    waited (still standing) and answered "renewed", so the script went on
    as if nothing had happened, its abandonment undone in silence."""
    import psycopg2
    settings = Settings(dsn=pg_dsn, dsn_source="--dsn", lease_ttl=30)
    store = open_store(settings)
    reaper = psycopg2.connect(pg_dsn)
    watcher = psycopg2.connect(pg_dsn)
    watcher.autocommit = True
    try:
        run = store.record_start(record(spool_id="raced"))
        with reaper.cursor() as cursor:       # the abandonment, not yet committed
            cursor.execute("UPDATE cronpolicy.script_run SET status = 'abandoned',"
                           " finished_at = now(), lease_expires_at = now() - interval '1 s'"
                           " WHERE id = %s", (run.id,))
        answers = []
        beat = threading.Thread(target=lambda: answers.append(store.heartbeat(run, True)))
        beat.start()

        def waiting():
            with watcher.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                               " current_database() AND wait_event_type = 'Lock'"
                               " AND pid <> pg_backend_pid()")
                return cursor.fetchone()[0] == 1
        deadline = time.monotonic() + 30
        while not waiting():
            assert time.monotonic() < deadline, "the heartbeat never waited for the row"
            time.sleep(0.01)
        reaper.commit()
        beat.join(timeout=30)
        assert not beat.is_alive()
        assert answers == [False]                          # its lease was lost
        with watcher.cursor() as cursor:
            cursor.execute("SELECT status FROM cronpolicy.script_run")
            assert cursor.fetchall() == [("running",)]     # shown running: it is
    finally:
        reaper.close()
        watcher.close()
        store.close()


def test_memory_store_slots_and_leases():
    now = [datetime.datetime(2026, 11, 28, tzinfo=datetime.timezone.utc)]
    database = MemoryDatabase(clock=lambda: now[0])
    first, second = database.session(lease_ttl=30), database.session(lease_ttl=30)
    assert first.claim_slot(record(spool_id="a"), 1)
    assert not second.claim_slot(record(spool_id="b"), 1)
    run = first.record_start(record(spool_id="a"))
    first.close()                            # a lost session alone does not end the run...
    assert database.runs_of("job")[0]["status"] == "running" and database.reap() == []
    now[0] += datetime.timedelta(seconds=31)  # ...its lease running out does
    assert database.reap() == [run.id]
    assert database.runs_of("job")[0]["status"] == "abandoned"
    assert second.claim_slot(record(spool_id="b"), 1)
    database.outage = True
    with pytest.raises(DatabaseError) as error:
        second.load_inputs("job", 20)
    assert error.value.transient


@pytest.mark.integration
def test_unreachable_postgres_fails_fast_with_one_line_and_no_password():
    dsn = "postgresql://cron:s3cretpw@127.0.0.1:1/nowhere"
    unreachable = PostgresStore(dsn, connect_timeout=2, timeout=2)
    started = time.monotonic()
    with pytest.raises(DatabaseError) as error:
        unreachable.load_inputs("job", 20)
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert "cannot connect" in message and "s3cretpw" not in message and "\n" not in message
    assert "cron:***@" in message and error.value.transient


@pytest.mark.integration
def test_a_silent_server_is_given_up_on_at_the_deadline_without_a_thread():
    """A server that accepts the connection and never answers: the store's
    own deadline ends the wait, in this thread."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except socket.timeout:
                continue
    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        silent = PostgresStore("postgresql://cron@127.0.0.1:%d/x" % listener.getsockname()[1],
                               connect_timeout=5, timeout=1.0)
        threads = threading.active_count()
        started = time.monotonic()
        with pytest.raises(DatabaseError) as error:
            silent.load_inputs("job", 20)
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 2.0, elapsed
        assert error.value.transient and threading.active_count() == threads
    finally:
        stop.set()
        acceptor.join()
        for connection in accepted:
            connection.close()
        listener.close()


def test_estimate_query_uses_its_index(pg_dsn):
    from .conftest import DBA
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                " status, exit_code) SELECT 'job-' || (i % 200), 'h', i,"
                " now() - i * interval '1 minute', now() - i * interval '1 minute' + interval '5s',"
                " 'succeeded', 0 FROM generate_series(1, 20000) AS i")
    dba.execute("ANALYZE cronpolicy.script_run")
    plan = "\n".join(row[0] for row in dba.execute(
        "EXPLAIN SELECT extract(epoch FROM finished_at - started_at) FROM cronpolicy.script_run"
        " WHERE name = 'job-7' AND status = 'succeeded' ORDER BY finished_at DESC LIMIT 20"))
    assert "script_run_estimate_idx" in plan, plan


def test_the_cache_round_trips_what_the_store_read(policy_store, dba, tmp_path):
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled, fleet_single_instance)"
                " VALUES ('job', false, true)")
    dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason)"
                " VALUES ({}, {}, 'soon')".format(dba.now_plus(60), dba.now_plus(600)))
    read = policy_store.load_inputs("job", 20)
    cache = PolicyCache(str(tmp_path / "cache" / "policy.json"), 60)
    cache.save(read)
    cached = cache.load_inputs("job", 20)
    assert cached.source == "cache" and 0 <= cached.age < 5
    assert (cached.policies, cached.windows, cached.deploy) == (
        read.policies, read.windows, read.deploy)
    assert abs((cached.now - read.now).total_seconds()) < 5
    assert PolicyCache(cache.path, 0).load_inputs("job", 20) is None       # too old


def test_spooled_runs_are_written_once_with_their_times(policy_store, dba, tmp_path):
    moments = iter([datetime.datetime(2026, 11, 20, 10, 0, tzinfo=datetime.timezone.utc),
                    datetime.datetime(2026, 11, 20, 10, 18, tzinfo=datetime.timezone.utc)])
    spool = Spool(str(tmp_path / "spool"), clock=lambda: next(moments))
    run = spool.record_start(record(decision="run", estimate_seconds=60.0))
    spool.record_finish(run, RunEnd(status="succeeded", exit_code=0))
    assert len(spool) == 1
    [(path, entry)] = spool.entries()
    copy = open(path).read()
    assert spool.flush(policy_store) == 1
    open(path, "w").write(copy)                 # as if the flush died before removing it
    assert spool.flush(policy_store) == 1
    [row] = dba.runs("job")
    assert (row["status"], row["exit_code"], row["estimate_seconds"]) == ("succeeded", 0, 60.0)
    assert str(dba.scalar("SELECT started_at FROM cronpolicy.script_run")).startswith(
        "2026-11-20 10:00")


def test_a_host_name_is_looked_up_within_the_deadline(monkeypatch):
    """libpq would look the name up itself, synchronously, for as long as the
    resolver takes; the store looks it up first, bounded."""
    asked = []

    def slow_resolver(host, *args, **kwargs):
        asked.append(host)
        time.sleep(30)
        raise socket.gaierror("too slow to matter")
    monkeypatch.setattr(socket, "getaddrinfo", slow_resolver)
    # A short deadline: the resolver takes 30 s, so any answer in seconds
    # shows the bound (a 1 s deadline was a second of the unit layer's 20).
    store = PostgresStore("postgresql://cron@slowdb.example/x", connect_timeout=5, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(DatabaseError) as error:
        store.load_inputs("job", 20)
    assert time.monotonic() - started < 2.5
    assert asked and asked[0] == "slowdb.example"
    assert "looking up slowdb.example" in str(error.value) and error.value.transient


def test_a_cache_written_by_the_previous_version_is_still_read(tmp_path):
    import json
    path = tmp_path / "policy-cache.json"
    path.write_text(json.dumps({
        "format": 1, "saved_at": time.time() - 5, "database_now": time.time() - 5,
        "schema_version": 5, "deploy": [True, "r42", "alice", time.time() - 60],
        "policies": [[3, "job", "*", False, "off", 60.0, False, "bob", time.time(), True, None]],
        "windows": [[7, time.time() + 60, time.time() + 600, "nightly", "*", "*"]]}))
    cached = PolicyCache(str(path), 3600).load_inputs("job", 20)
    assert cached.deploy.deploy_pending is True and cached.deploy.reason == "r42"
    [row] = cached.policies
    assert (row.id, row.enabled, row.expected_runtime, row.interruptible) == (3, False, 60.0, True)
    assert [window.id for window in cached.windows] == [7]


def test_a_busy_sqlite_file_is_waited_for_no_longer_than_decision_timeout(sqlite_dsn, tmp_path):
    from cronpolicy.store.sqlite import connect_sqlite
    settings = Settings(dsn=sqlite_dsn, dsn_source="--dsn", lock_dir=str(tmp_path / "locks"),
                        connect_timeout=6, decision_timeout=1)
    store = open_store(settings)
    store.load_inputs("job", 20)                         # creates the file
    holder = connect_sqlite(sqlite_dsn[len("sqlite:///"):])
    holder.execute("BEGIN IMMEDIATE")                    # another writer holds the lock
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseError):
            store.record_skip(record())
        assert time.monotonic() - started < 2.5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()


def test_connections_notice_a_dead_peer_within_seconds_on_both_sides(pg_dsn):
    from cronpolicy.store import pgdriver
    settings = Settings(dsn=pg_dsn, dsn_source="--dsn", tcp_keepalive=6, tcp_user_timeout=9)
    connection = pgdriver.connect(pg_dsn, network=settings.network)
    try:
        with connection.cursor() as cursor:
            found = {}
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_user_timeout"):
                cursor.execute("SELECT setting || unit FROM pg_settings WHERE name = %s", (name,))
                found[name] = cursor.fetchone()[0]
    finally:
        connection.close()
    assert found == {"tcp_keepalives_idle": "6s", "tcp_keepalives_interval": "2s",
                     "tcp_user_timeout": "9000ms"}
    client = pgdriver.options(5, "x", True, pg_dsn, settings.network)
    assert (client["keepalives_idle"], client["tcp_user_timeout"]) == (6, 9000)


@pytest.mark.integration
def test_first_opens_of_a_fresh_sqlite_file_at_once_all_succeed(tmp_path):
    """Cron starts a host's scripts on the same second, and the first ones
    open a SQLite file that does not exist yet: SQLite may answer one's
    switch to WAL with "database is locked" at once, without its busy
    timeout, and that script exited 4 (seen in test_services; this test
    failed in one run of three before the fix, about one round in 900).  Eight connections released at once
    on each of 300 fresh files."""
    from cronpolicy.store.sqlite import connect_sqlite
    failures = []
    for round_ in range(300):
        path = str(tmp_path / ("fresh-%d.sqlite" % round_))
        barrier = threading.Barrier(8)

        def open_it():
            barrier.wait(timeout=60)
            try:
                connect_sqlite(path, 5.0).close()
            except DatabaseError as error:
                failures.append(str(error))

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
    assert failures == []
