"""The watcher against the real PostgreSQL server: notifications that arrive
while another statement is on the wire are not lost."""

import logging
import threading

from cronpolicy.config import Settings
from cronpolicy.interruption import Interruption
from cronpolicy.rows import RunRecord
from cronpolicy.store.postgresql import PostgresStore
from cronpolicy.watcher import RunWatcher

from .conftest import DBA


class FlipDuringHeartbeat(PostgresStore):
    """The deploy switch flips, and its NOTIFY reaches this session, while
    the session is busy with a heartbeat: psycopg2 then reads the
    notification off the socket as part of the heartbeat's reply, so the
    socket never becomes readable for it."""

    flipped = False

    def load_inputs(self, name, history_runs):
        # The watcher's first read: the NOTIFY arrives with the reply to a
        # statement of its own, then the read still sees the old policy.
        inputs = super().load_inputs(name, history_runs)
        if not self.flipped and self._listening:
            self.flipped = True
            DBA(self.dsn).execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
            self._execute("listen", None, "wait for the NOTIFY")
            assert self._connection.notifies, "the NOTIFY should have arrived by now"
        return inputs


def test_a_notification_read_with_another_reply_still_stops_the_run(pg_dsn):
    # Long intervals: only the notification can make the watcher look again.
    settings = Settings(dsn=pg_dsn, dsn_source="--dsn", heartbeat_interval=30,
                        lease_ttl=90, poll_interval=30)
    store = FlipDuringHeartbeat(pg_dsn)
    run = store.record_start(RunRecord(name="job", host="web1", pid=1))
    interruption = Interruption(None, logging.getLogger("job"))
    watcher = RunWatcher(store, run, "job", "web1", settings, interruption)
    interruption.watcher = watcher
    stopped = threading.Event()
    watcher.start()
    try:
        # The first loop reads the policy (not pending yet), and the NOTIFY
        # comes in with a reply on the way.
        assert wait_for(lambda: watcher.stop is not None, stopped, 5.0), \
            "the stop request was not heard within 5s"
        assert watcher.stop.code == "deploy-pending"
    finally:
        watcher.stop_watching()
        store.close()


def wait_for(predicate, event, timeout):
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            if predicate():
                return True
            event.wait(0.02)
        return predicate()
    finally:
        timer.cancel()


def test_the_end_of_a_run_waits_for_the_watchers_statement(pg_dsn, tmp_path, monkeypatch):
    """The watcher may be in the middle of a slow statement when main()
    returns; the run's end waits for it instead of colliding with it on the
    shared connection (and being spooled for no reason)."""
    from cronpolicy import CronScript, exitcodes

    for key in ("CRONPOLICY_DSN", "CRONPOLICY_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    config = tmp_path / "c.conf"
    config.write_text("[cronpolicy]\ndecision_timeout = 8s\n")
    monkeypatch.setenv("CRONPOLICY_CONFIG", str(config))
    monkeypatch.setenv("CRONPOLICY_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("CRONPOLICY_STATE_DIR", str(tmp_path / "state"))
    busy = threading.Event()

    class SlowHeartbeat(PostgresStore):
        def heartbeat(self, run, safe_to_interrupt):
            self._sql = dict(self._sql, slow="SELECT pg_sleep(5.5)")
            busy.set()
            self._execute("slow", None, "take its time")
            super().heartbeat(run, safe_to_interrupt)

    class Quick(CronScript):
        name = "quick"

        def main(self):
            busy.wait(10)          # the watcher is now in its slow statement

    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        code = Quick(store=SlowHeartbeat(pg_dsn, timeout=8)).run(
            ["--dsn", pg_dsn, "--log-file", str(tmp_path / "log")], exit=False)
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
    assert code == exitcodes.OK
    assert "spooled" not in (tmp_path / "log").read_text()
    assert DBA(pg_dsn).execute("SELECT status FROM cronpolicy.script_run") == [("succeeded",)]


def test_a_flood_of_notifications_is_one_read_per_tenth_of_a_second(pg_dsn):
    """Anyone may NOTIFY the channel: 300 of them in about a second must not
    turn into 300 policy reads by every running script."""
    settings = Settings(dsn=pg_dsn, dsn_source="--dsn", heartbeat_interval=30,
                        lease_ttl=90, poll_interval=30)
    reads = []

    class Counting(PostgresStore):
        def load_inputs(self, name, history_runs):
            reads.append(name)
            return super().load_inputs(name, history_runs)

    store = Counting(pg_dsn)
    run = store.record_start(RunRecord(name="job", host="web1", pid=1))
    interruption = Interruption(None, logging.getLogger("job"))
    watcher = RunWatcher(store, run, "job", "web1", settings, interruption)
    interruption.watcher = watcher
    watcher.start()
    import time
    import psycopg2
    flooder = psycopg2.connect(pg_dsn)
    flooder.autocommit = True
    try:
        wait_for(lambda: reads, threading.Event(), 5.0)          # the first read
        before = len(reads)
        started = time.monotonic()
        with flooder.cursor() as cursor:
            for index in range(300):                              # each its own transaction
                cursor.execute("SELECT pg_notify('cronpolicy_policy', %s)", (str(index),))
                time.sleep(0.003)
        elapsed = time.monotonic() - started
        time.sleep(0.3)
        during = len(reads) - before
    finally:
        flooder.close()
        watcher.stop_watching()
        store.close()
    assert 1 <= during <= 2 + (elapsed + 0.3) / 0.1, (during, elapsed)


def test_a_stop_announced_as_main_begins_is_read_at_once(pg_dsn):
    """Issue 32.2: the decision's own read did not count as a re-read for
    the flood limit, so news announced as main() began waited up to
    REREAD_AT_MOST_EVERY (115 ms at p50) for its read.  The first news is
    read at once; the next within the limit waits for it."""
    import time
    from cronpolicy.watcher import REREAD_AT_MOST_EVERY
    settings = Settings(dsn=pg_dsn, dsn_source="--dsn", heartbeat_interval=30,
                        lease_ttl=90, poll_interval=30)
    store = PostgresStore(pg_dsn)
    try:
        inputs = store.load_inputs("job", 20)       # the decision's read
        run = store.record_start(RunRecord(name="job", host="web1", pid=1))
        watcher = RunWatcher(store, run, "job", "web1", settings,
                             Interruption(None, logging.getLogger("job")), inputs=inputs)
        later = time.monotonic() + 60
        assert watcher._first_check > time.monotonic() + 1        # no re-read without news
        assert watcher._soon(later) <= time.monotonic()           # news: at once
        watcher._evaluate()                                        # that read
        assert watcher._soon(later) >= time.monotonic() + REREAD_AT_MOST_EVERY / 2
    finally:
        store.close()


def test_news_missed_while_reconnecting_is_still_news(pg_dsn):
    """A change announced while the run had no session (between a dropped
    connection and the next LISTEN) is lost by the server; the store says
    there may have been news, so the watcher reads the policy again."""
    store = PostgresStore(pg_dsn, application_name="cronpolicy-missed-news")
    try:
        run = store.record_start(RunRecord(name="job", host="web1", pid=1, spool_id="news"))
        store.listen()
        assert store.take_notifications() == 0
        DBA(pg_dsn).execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = 'cronpolicy-missed-news'"
                            " AND datname = current_database()")
        DBA(pg_dsn).execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
        assert store.heartbeat(run, False) is True      # reconnects, LISTENs again
        assert store.take_notifications() >= 1          # and says there may be news
        assert store.take_notifications() == 0
    finally:
        store.close()


class FlipAfterTheDecision(PostgresStore):
    """The deploy switch flips just after the gate read the policy, before
    the start is even recorded: the gate learns of it once the start is
    written (the policy's version moved) and main() never runs; were that
    read lost, the watcher, which no longer re-reads at once, would hear of
    it through the LISTEN sent with the decision's read."""

    def record_start(self, record):
        DBA(self.dsn).execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
        return super().record_start(record)


def flipped_job(store, tmp_path, monkeypatch):
    """Run a safe job behind ``store`` (which flips the deploy switch at some
    moment of the start) with re-reads 30 s apart; (exit code, seconds
    main() ran, or None if it never ran)."""
    import time
    from cronpolicy.script import CronScript
    for key, value in {"CRONPOLICY_CONFIG": str(tmp_path / "none.conf"),
                       "CRONPOLICY_STATE_DIR": str(tmp_path / "state"),
                       "CRONPOLICY_LOCK_DIR": str(tmp_path / "locks")}.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "none.conf").write_text("[cronpolicy]\nheartbeat_interval = 30s\n"
                                        "lease_ttl = 90s\npoll_interval = 30s\n")
    waited = {}

    class Job(CronScript):
        name = "job"

        def is_safe_to_interrupt(self):
            return True

        def main(self):
            started = time.monotonic()
            try:
                while not self.stop_requested and time.monotonic() - started < 10:
                    time.sleep(0.01)
            finally:
                waited["seconds"] = time.monotonic() - started

    code = Job(store=store).run(argv=["--dsn", store.dsn], exit=False)
    return code, waited.get("seconds")


def test_a_change_right_after_the_decision_still_stops_the_run(pg_dsn, tmp_path, monkeypatch):
    from cronpolicy import exitcodes
    code, seconds = flipped_job(FlipAfterTheDecision(pg_dsn, hold_connection=True), tmp_path,
                                monkeypatch)
    assert code == exitcodes.INTERRUPTED
    # (None: main() never ran, the gate read the change once the start was written)
    assert (seconds or 0) < 5, "the change was heard only by a later re-read"


class FlipAfterTheRecheck(PostgresStore):
    """The switch flips just after the gate's second look at the policy's
    version (once the start is written), which found nothing moved: main()
    runs, and only the LISTEN sent with the decision's read can tell the
    watcher, which no longer re-reads at once."""

    def policy_version(self):
        version = super().policy_version()
        DBA(self.dsn).execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
        return version


def test_a_change_right_after_the_gates_second_look_is_heard_by_listening(
        pg_dsn, tmp_path, monkeypatch):
    """What test_a_change_right_after_the_decision_still_stops_the_run held
    before the gate looked again once its start was written: the watcher
    hears the change through LISTEN within a second, not at its next
    re-read (poll_interval 30 s here)."""
    from cronpolicy import exitcodes
    code, seconds = flipped_job(FlipAfterTheRecheck(pg_dsn, hold_connection=True), tmp_path,
                                monkeypatch)
    assert code == exitcodes.INTERRUPTED
    assert seconds is not None, "main() never ran: the flip came before the gate's second look"
    assert seconds < 5, "the change was heard only by a later re-read"


def test_a_wake_while_the_self_pipe_is_being_made_is_not_lost():
    """The database came back after a start without it: the first sleep on
    its socket makes the self-pipe, and a wake (SIGTERM, a stop) landing
    just before the pipe existed wrote no byte: the watcher slept on."""
    import os
    import time
    settings = Settings(dsn="sqlite:////nonexistent", dsn_source="--dsn", heartbeat_interval=30,
                        lease_ttl=90, poll_interval=30)
    watcher = RunWatcher(None, None, "job", "web1", settings, None, logging.getLogger("job"))
    make_pipe = watcher._make_pipe

    def woken_meanwhile():
        watcher.wake()
        make_pipe()
    watcher._make_pipe = woken_meanwhile
    quiet, other_end = os.pipe()
    try:
        started = time.monotonic()
        watcher._sleep(5.0, database=quiet)
        assert time.monotonic() - started < 1.0, "slept through a wake"
    finally:
        for fd in (quiet, other_end, watcher._wake_read, watcher._wake_write):
            os.close(fd)
