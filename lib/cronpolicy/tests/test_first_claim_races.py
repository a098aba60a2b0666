"""Two starts of a new script on a new host by the same login at once (the
first time a script is deployed, cron starts it everywhere at :00): the
second waits for the first's claim, and must then run, not be refused for
its data, whatever transaction isolation the DBA gave the login."""

import uuid

import psycopg2
import pytest

from cronpolicy.config import Settings
from cronpolicy.rows import RunRecord
from cronpolicy.store import open_store
from cronpolicy.tests.conftest import admin_connection, in_a_thread, login_of, wait_for


def until_waiting_for_a_lock(login, what):
    """Return once a session of ``login`` waits for a lock (bounded)."""
    with admin_connection() as watcher, watcher.cursor() as cursor:
        def waiting():
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
                           " AND wait_event_type = 'Lock'", (login_of(login),))
            return cursor.fetchone()[0] > 0
        wait_for(waiting, what=what)


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read", "serializable"])
@pytest.mark.parametrize("claimer", ["the same login", "another login"])
def test_a_start_waiting_for_a_first_claim_is_written_or_denied(pg_roles, isolation, claimer):
    login = pg_roles("cronpolicy_script")
    other = login if claimer == "the same login" else pg_roles("cronpolicy_script")
    with admin_connection() as connection, connection.cursor() as cursor:
        cursor.execute('ALTER ROLE "%s" SET default_transaction_isolation = %%s' % login_of(login),
                       (isolation,))
    name, host = "fresh-%s" % uuid.uuid4().hex[:8], "newhost-%s" % uuid.uuid4().hex[:8]
    first = psycopg2.connect(other)         # holds the claims of name and host, uncommitted
    store = open_store(Settings(dsn=login))
    try:
        with first.cursor() as cursor:
            cursor.execute("INSERT INTO cronpolicy.script_run (name, host) VALUES (%s, %s)",
                           (name, host))
        thread, outcome = in_a_thread(lambda: store.record_start(RunRecord(
            name=name, host=host, pid=2, spool_id=uuid.uuid4().hex)))
        until_waiting_for_a_lock(login, "the second start waiting for the first's claim")
        first.commit()
        thread.join(30)
        [result] = outcome
        if claimer == "the same login":
            assert getattr(result, "id", None) is not None, result
        else:       # another's now: refused as a start of another login's script is
            assert getattr(result, "denied", False) and "belongs to" in str(result), result
    finally:
        first.close()
        store.close()


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read", "serializable"])
def test_a_slot_claim_that_loses_a_race_for_an_expired_slot_takes_the_next(pg_roles, pg_dsn, isolation):
    login = pg_roles("cronpolicy_script")
    with admin_connection() as connection, connection.cursor() as cursor:
        cursor.execute('ALTER ROLE "%s" SET default_transaction_isolation = %%s' % login_of(login),
                       (isolation,))
    name = "limited-%s" % uuid.uuid4().hex[:8]
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO cronpolicy.run_slot (name, slot, run_key, host,"
                       " lease_expires_at) VALUES (%s, 0, 'dead', 'web9',"
                       " now() - interval '1 minute')", (name,))
    other = psycopg2.connect(pg_dsn)    # another host taking the expired slot, uncommitted
    store = open_store(Settings(dsn=login))
    try:
        with other.cursor() as cursor:
            cursor.execute("DELETE FROM cronpolicy.run_slot WHERE name = %s AND slot = 0", (name,))
            cursor.execute("INSERT INTO cronpolicy.run_slot (name, slot, run_key, host,"
                           " lease_expires_at) VALUES (%s, 0, 'other', 'web8',"
                           " now() + interval '1 minute')", (name,))
        thread, outcome = in_a_thread(lambda: store.claim_slot(RunRecord(
            name=name, host="web1", pid=1, spool_id=uuid.uuid4().hex), 2))
        until_waiting_for_a_lock(login, "the claim waiting for the other host's")
        other.commit()
        thread.join(30)
        assert outcome == [True]
        assert store.held_slot == [name, 1]
    finally:
        other.close()
        store.close()
