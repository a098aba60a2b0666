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

    def heartbeat(self, run, safe_to_interrupt):
        if not self.flipped:
            self.flipped = True
            DBA(self.dsn).execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
            self._execute("heartbeat", {"id": run.id, "safe": False}, "wait for the NOTIFY")
            assert self._connection.notifies, "the NOTIFY should have arrived by now"
        super().heartbeat(run, safe_to_interrupt)


def test_a_notification_read_with_another_reply_still_stops_the_run(pg_dsn):
    # Long intervals: only the notification can make the watcher look again.
    settings = Settings(dsn=pg_dsn, dsn_source="--dsn", heartbeat_interval=30,
                        dead_after=90, poll_interval=30)
    store = FlipDuringHeartbeat(pg_dsn)
    run = store.record_start(RunRecord(name="job", host="web1", pid=1))
    interruption = Interruption(None, logging.getLogger("job"))
    watcher = RunWatcher(store, run, "job", "web1", settings, interruption)
    interruption.watcher = watcher
    stopped = threading.Event()
    watcher.start()
    try:
        # The first loop reads the policy (not pending yet), then heartbeats.
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
