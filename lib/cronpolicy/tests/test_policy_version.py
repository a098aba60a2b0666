"""The policy's version row (schema patch 0019) and the watcher that polls it.

A running script that polls (watch = poll, behind a pooler in transaction
mode) reads one small row each poll and the whole policy only when that row
moved: it must move with every change a listener would hear of, in the same
commit, and a stop must still arrive within a poll."""

import logging
import threading
import time

import psycopg2
import pytest

from cronpolicy.config import Settings
from cronpolicy.interruption import Interruption
from cronpolicy.rows import RunRecord
from cronpolicy.store.postgresql import PostgresStore
from cronpolicy.watcher import RunWatcher

from .conftest import DBA

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

#: Each change a running script must hear of, in SQL both backends accept.
CHANGES = [
    "UPDATE cronpolicy.deploy_state SET deploy_pending = {true}",
    "INSERT INTO cronpolicy.script_policy (name, enabled) VALUES ('job', {false})",
    "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at) VALUES ({now0}, {now1})",
    "INSERT INTO cronpolicy.service_deploy (service) VALUES ('xmlrpc')",
    "INSERT INTO cronpolicy.rollout (kind, reason) VALUES ('full', 'r')",
]


def version(dba):
    return dba.scalar("SELECT version FROM cronpolicy.policy_version WHERE id = 1")


def sql(dba, template):
    return template.format(true="true" if (dba.backend == "postgresql") else "1",
                           false="false" if (dba.backend == "postgresql") else "0",
                           now0=dba.now_plus(0), now1=dba.now_plus(3600))


def test_every_change_a_listener_hears_of_moves_the_version(dba):
    for change in CHANGES:
        before = version(dba)
        dba.execute(sql(dba, change))
        assert version(dba) > before, change
    before = version(dba)
    dba.execute("UPDATE cronpolicy.script_policy SET enabled = %s"
                % ("true" if (dba.backend == "postgresql") else "1"))
    dba.execute("DELETE FROM cronpolicy.rollout_window")
    assert version(dba) >= before + 2
    # A rollout's lease renewed changes no decision: no re-read for it.
    before = version(dba)
    dba.execute("UPDATE cronpolicy.rollout SET lease_expires_at = %s" % dba.now_plus(60))
    assert version(dba) == before
    dba.execute("UPDATE cronpolicy.rollout SET ended_at = %s" % dba.now_plus(0))
    assert version(dba) > before


@pytest.mark.postgresql
def test_a_truncate_moves_the_version(pg_dsn):
    dba = DBA(pg_dsn)
    for table in ("script_policy", "rollout_window", "service_deploy"):
        before = version(dba)
        dba.execute("TRUNCATE cronpolicy.%s" % table)
        assert version(dba) > before, table


@pytest.mark.postgresql
def test_service_deploys_and_rollouts_truncated_together_with_a_rollout_open(pg_dsn):
    """service_deploy's BEFORE TRUNCATE trigger ends the rollouts it covers:
    row events queued for those (a version moved at commit, by row) then
    pointed into the truncated rollout table and the commit failed."""
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.service_deploy (service) VALUES ('xmlrpc')")
    before = version(dba)
    dba.execute("TRUNCATE cronpolicy.service_deploy, cronpolicy.rollout CASCADE")
    assert version(dba) > before
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout") == 0


@pytest.mark.postgresql
def test_logins_without_rights_on_the_row_move_it_and_scripts_read_it(pg_roles, pg_dsn):
    before = version(DBA(pg_dsn))
    DBA(pg_roles("cronpolicy_rollout")).execute(
        "UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    DBA(pg_roles("cronpolicy_admin")).execute(
        "INSERT INTO cronpolicy.script_policy (name) VALUES ('job')")
    assert PostgresStore(pg_roles("cronpolicy_script")).policy_version() >= before + 2


@pytest.mark.postgresql
def test_changes_in_different_orders_do_not_deadlock_on_the_row(pg_dsn):
    """An administrator's transaction changes a policy, then the deploy
    switch; meanwhile another session flips the switch alone.  Bumped after
    each statement, the row was held by the first while the second held the
    switch: a deadlock.  Bumped (and locked) before, the second just waits."""
    first = psycopg2.connect(pg_dsn)
    second = psycopg2.connect(pg_dsn)
    try:
        with first.cursor() as cursor:
            cursor.execute("INSERT INTO cronpolicy.script_policy (name) VALUES ('job')")
        flipped = threading.Thread(target=lambda: _flip(second))
        flipped.start()
        time.sleep(0.5)     # the second holds the switch's row and commits
        with first.cursor() as cursor:
            cursor.execute("SET lock_timeout = '10s'")
            cursor.execute("UPDATE cronpolicy.deploy_state SET reason = 'first'")
        first.commit()
        flipped.join(20)
        assert not flipped.is_alive()
    finally:
        first.close()
        second.close()
    assert DBA(pg_dsn).scalar("SELECT deploy_pending FROM cronpolicy.deploy_state") is True


def _flip(connection):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    connection.commit()


# The watcher ----------------------------------------------------------------------

class CountingStore(PostgresStore):
    """A real store that counts whole reads of the policy, and may commit a
    change just before or just after one version read."""

    reads = 0
    change = None
    change_first = False

    def load_inputs(self, name, history_runs):
        self.reads += 1
        return super().load_inputs(name, history_runs)

    def policy_version(self):
        if self.change_first:
            self._change()
        found = super().policy_version()
        self._change()
        return found

    def _change(self):
        if self.change is not None:
            change, self.change = self.change, None
            change()


def polling(store, dsn, poll_interval=0.1):
    settings = Settings(dsn=dsn, dsn_source="--dsn", heartbeat_interval=30, lease_ttl=90,
                        poll_interval=poll_interval, watch="poll")
    run = store.record_start(RunRecord(name="job", host="web1", pid=1))
    interruption = Interruption(None, logging.getLogger("job"))
    watcher = RunWatcher(store, run, "job", "web1", settings, interruption)
    interruption.watcher = watcher
    return watcher.start()


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.mark.postgresql
def test_a_poller_reads_the_policy_only_when_it_moved_and_still_hears_a_stop(pg_roles, pg_dsn):
    login = pg_roles("cronpolicy_script")
    store = CountingStore(login, hold_connection=False)
    watcher = polling(store, login)
    try:
        time.sleep(2.0)     # 20 polls
        assert store.reads <= 2, "%d whole reads of an unchanged policy" % store.reads
        flipped = time.monotonic()
        DBA(pg_dsn).execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
        assert wait_for(lambda: watcher.stop is not None, 5.0), "the stop was not heard"
        assert time.monotonic() - flipped < 1.0
        assert watcher.stop.code == "deploy-pending"
    finally:
        watcher.stop_watching()
        store.close()


@pytest.mark.postgresql
@pytest.mark.parametrize("change_first", [False, True], ids=["after", "before"])
def test_a_change_next_to_a_version_read_is_not_lost(pg_dsn, change_first):
    """A change committed just before or just after a version read, whichever
    order the version and the policy are read in, is seen by the whole read
    or moves the version past what that read recorded."""
    store = CountingStore(pg_dsn, hold_connection=False)
    store.change_first = change_first
    dba = DBA(pg_dsn)
    store.change = lambda: dba.execute(
        "UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    watcher = polling(store, pg_dsn)
    try:
        assert wait_for(lambda: watcher.stop is not None, 5.0), "the stop was not heard"
        store.change = lambda: dba.execute(
            "UPDATE cronpolicy.deploy_state SET deploy_pending = false")
        assert wait_for(lambda: watcher.stop is None, 5.0), "the withdrawal was not heard"
    finally:
        watcher.stop_watching()
        store.close()
