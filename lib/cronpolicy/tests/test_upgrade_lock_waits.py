"""A schema upgrade of a live database whose patch needs a table lock
(0027 adds script_run_keys_fit: ACCESS EXCLUSIVE on script_run) while a
long transaction reads the table (pg_dump, a report): starts queue behind
the upgrade's wait for the lock, so the upgrade must not wait long."""

import time
import uuid

import psycopg2

from cronpolicy import schema
from cronpolicy.config import Settings
from cronpolicy.rows import RunRecord
from cronpolicy.store import open_store

from .conftest import DBA, in_a_thread, upgraded, wait_for


def test_starts_go_on_while_an_upgrade_waits_behind_a_long_reader(empty_pg_dsn):
    upgraded(empty_pg_dsn, up_to=schema.SCHEMA_VERSION - 1)
    connection = psycopg2.connect(empty_pg_dsn)
    reader = psycopg2.connect(empty_pg_dsn)         # pg_dump's ACCESS SHARE, say
    with reader.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM cronpolicy.script_run")
    upgrading, outcome = in_a_thread(lambda: schema.upgrade_postgres(connection))
    store = open_store(Settings(dsn=empty_pg_dsn, decision_timeout=4))
    try:
        dba = DBA(empty_pg_dsn)
        wait_for(lambda: dba.scalar("SELECT count(*) FROM pg_locks WHERE NOT granted"
                                    " AND relation = 'cronpolicy.script_run'::regclass"),
                 what="the upgrade waiting for script_run's lock")
        # The store reads the schema's version first: the newest is not
        # there yet, so write the start as an older host would, by hand.
        began = time.monotonic()
        for number in range(3):
            store._retrying("record_start", dict(
                RunRecord(name="job", host="web1", pid=number,
                          spool_id=uuid.uuid4().hex)._asdict(), ttl=30),
                "record the start of job", only_when_full=True)
            time.sleep(0.5)
        took = time.monotonic() - began
        assert took < 3 + 1.5 + 1, took
    finally:
        store.close()
        reader.rollback()
        reader.close()
        upgrading.join(120)
        connection.close()
    [applied] = outcome
    assert applied == [schema.patches("postgresql")[-1][1]], applied


def test_an_upgrade_that_never_gets_its_lock_fails_in_one_line_and_applies_nothing(
        empty_pg_dsn, monkeypatch):
    from cronpolicy.errors import DatabaseError
    upgraded(empty_pg_dsn, up_to=schema.SCHEMA_VERSION - 1)
    connection = psycopg2.connect(empty_pg_dsn)
    monkeypatch.setattr(schema, "LOCK_RETRY_SECONDS", 3)
    reader = psycopg2.connect(empty_pg_dsn)
    try:
        with reader.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM cronpolicy.script_run")
        try:
            schema.upgrade_postgres(connection)
        except DatabaseError as error:
            message = str(error)
        else:
            raise AssertionError("the upgrade got a lock another transaction held")
        assert "\n" not in message and "lock timeout" in message, message
        assert "try again at a quieter moment" in message, message
        assert schema.postgres_version(connection) == schema.SCHEMA_VERSION - 1
    finally:
        reader.rollback()
        reader.close()
        connection.close()
