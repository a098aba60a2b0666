"""Run history that script logins cannot forge (schema patch 0010), with
real login roles on the real server: times from the database clock, and a
script's runs recorded only by the logins it belongs to (script_owner)."""

import psycopg2
import pytest

from cronpolicy import exitcodes, schema

from .conftest import DBA, ScriptRunner, login_of, make_env, upgraded
from .test_roles import try_sql

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration


FORGED_SUCCESS = (
    "INSERT INTO cronpolicy.script_run (name, host, status, started_at, finished_at)"
    " VALUES (%s, 'web9', 'succeeded', now() - interval '100 days', now())")


def test_a_login_cannot_write_or_steer_the_runs_of_another_logins_script(
        pg_roles, pg_dsn, tmp_path):
    owner, intruder = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    for folder in ("owner", "intruder"):
        (tmp_path / folder).mkdir()
    mine = ScriptRunner(tmp_path / "owner", make_env(tmp_path / "owner", owner))
    mine.write("publish-distro")
    assert mine.run("publish-distro").returncode == exitcodes.OK
    dba = DBA(pg_dsn)
    assert dba.execute("SELECT name, db_role, granted_by FROM cronpolicy.script_owner") == [
        ("publish-distro", login_of(owner), "first run")]

    # Plain SQL: fake successes, a fleet-wide slot, all refused, nothing written.
    for sql in (FORGED_SUCCESS,
                "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
                " VALUES (%s, 0, 'k', 'web9', now() + interval '1 hour')"):
        count, error = try_sql(intruder, sql, ("publish-distro",))
        assert count is None and "belongs to database role %s" % login_of(owner) in error, error
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run") == 1

    # The intruder's own copy of the script (on its own host) does not run unseen:
    # exit 4, one line.
    theirs = ScriptRunner(tmp_path / "intruder", dict(make_env(tmp_path / "intruder", intruder),
                                                      CRONPOLICY_HOST="web2"))
    theirs.write("publish-distro")
    result = theirs.run("publish-distro")
    assert result.returncode == exitcodes.GATE_ERROR, result.stderr
    assert theirs.main_calls("publish-distro") == 0
    assert "Traceback" not in result.stderr
    assert "belongs to database role" in result.stderr
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run") == 1

    # An administrator shares the name (a pattern, through a group role would do too).
    admin = pg_roles("cronpolicy_admin")
    count, error = try_sql(admin, "INSERT INTO cronpolicy.script_owner (name, db_role)"
                                  " VALUES ('publish-*', %s)", (login_of(intruder),))
    assert count == 1, error
    result = theirs.run("publish-distro")
    assert result.returncode == exitcodes.OK, result.stderr
    assert dba.execute("SELECT db_user, status FROM cronpolicy.script_run ORDER BY id") == [
        (login_of(owner), "succeeded"), (login_of(intruder), "succeeded")]
    # Claims and shares are audited.
    assert dba.scalar("SELECT count(*) FROM cronpolicy.policy_audit"
                      " WHERE table_name = 'script_owner' AND operation = 'INSERT'") == 2


def test_a_group_role_shares_a_name_among_its_members(pg_roles, pg_dsn):
    first, second = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_owner (name, db_role)"
                " VALUES ('*', 'cronpolicy_script')")      # the rule before patch 0010
    for login, host in ((first, "h1"), (second, "h2")):
        count, error = try_sql(login, "INSERT INTO cronpolicy.script_run (name, host)"
                                      " VALUES ('anything', %s)", (host,))
        assert count == 1, error
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_owner") == 1     # no claims


def test_times_come_from_the_database_clock(pg_roles, pg_dsn):
    login = pg_roles("cronpolicy_script")
    dba = DBA(pg_dsn)
    count, error = try_sql(login, FORGED_SUCCESS, ("mine",))
    assert count == 1, error
    # A 100-day success became what it was: a run that took no time.
    assert dba.execute("SELECT finished_at - started_at < interval '1 second', spooled,"
                       " started_at > now() - interval '1 minute' FROM cronpolicy.script_run"
                       ) == [(True, False, True)]
    # A spooled record keeps the host's times, no later than now, and says so.
    count, error = try_sql(
        login, "INSERT INTO cronpolicy.script_run (name, host, status, started_at,"
               " finished_at, spooled) VALUES ('mine', 'h', 'succeeded',"
               " now() - interval '1 hour', now() + interval '100 days', true)")
    assert count == 1, error
    assert dba.execute("SELECT round(extract(epoch FROM finished_at - started_at)), spooled"
                       " FROM cronpolicy.script_run WHERE spooled") == [(3600, True)]
    # Ending a run: the end is now, whatever the statement says; a lease is at most an hour.
    try_sql(login, "INSERT INTO cronpolicy.script_run (name, host, lease_expires_at)"
                   " VALUES ('mine', 'h', now() + interval '100 days')")
    assert dba.scalar("SELECT lease_expires_at <= now() + interval '1 hour'"
                      " FROM cronpolicy.script_run WHERE status = 'running'") is True
    count, error = try_sql(login, "UPDATE cronpolicy.script_run SET status = 'succeeded',"
                                  " finished_at = now() + interval '1 day'"
                                  " WHERE status = 'running'")
    assert count == 1, error
    assert dba.scalar("SELECT max(finished_at) <= now() FROM cronpolicy.script_run") is True


def test_spooled_records_are_clamped_and_marked_on_both_backends(dsn, dba, cli):
    """Through the store's own statements, as the gate and `flush` write them."""
    import datetime
    from cronpolicy.config import Settings
    from cronpolicy.rows import RunRecord
    from cronpolicy.spool import SpoolEntry
    from cronpolicy.store import open_store
    now = datetime.datetime.now(datetime.timezone.utc)
    store = open_store(Settings(dsn=dsn, dsn_source="test"))
    try:
        record = RunRecord(name="late", host="h", pid=1, status="succeeded", exit_code=0,
                           started_at=now - datetime.timedelta(hours=1),
                           finished_at=now + datetime.timedelta(days=100), spool_id="k1")
        store.apply_spooled(SpoolEntry(record=record, run_id=None, end=None))
    finally:
        store.close()
    [(spooled, seconds)] = dba.execute(
        "SELECT spooled, %s FROM cronpolicy.script_run" % (
            "extract(epoch FROM finished_at - started_at)" if dba.backend == "postgresql"
            else "(julianday(finished_at) - julianday(started_at)) * 86400"))
    assert spooled in (True, 1)
    assert 3590 < float(seconds) < 3700
    code, out, _ = cli("history")
    assert code == exitcodes.OK and "succeeded (spooled)" in out


def test_the_upgrade_gives_each_name_to_the_logins_that_recorded_it(
        pg_roles, empty_pg_dsn):
    login = login_of(pg_roles("cronpolicy_script"))
    dba = DBA(upgraded(empty_pg_dsn, up_to=9))
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, db_user)"
                " VALUES ('publish-distro', 'web1', {}), ('by-root', 'web1', current_user)",
                (login,))
    upgraded(empty_pg_dsn)
    assert dba.execute("SELECT name, db_role FROM cronpolicy.script_owner") == [
        ("publish-distro", login)]


# Found by attacking the first version of patch 0010 ------------------------------------

def test_a_login_cannot_claim_a_pattern_and_with_it_every_name(pg_roles, pg_dsn):
    owner, intruder = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    assert try_sql(owner, "INSERT INTO cronpolicy.script_run (name, host)"
                          " VALUES ('publish-distro', 'h')")[0] == 1
    for sql in ("SELECT cronpolicy.claim_script('*')",
                "INSERT INTO cronpolicy.script_run (name, host) VALUES ('*', 'h')",
                "INSERT INTO cronpolicy.script_run (name, host) VALUES ('publish-?*', 'h')"):
        count, error = try_sql(intruder, sql)
        assert count is None and "holds * or ?" in error, (sql, error)
    count, error = try_sql(intruder, FORGED_SUCCESS, ("publish-distro",))
    assert count is None and "belongs to database role" in error
    assert DBA(pg_dsn).scalar("SELECT count(*) FROM cronpolicy.script_owner") == 1


def test_a_spooled_run_cannot_stretch_the_runtime_estimate(pg_roles, pg_dsn, tmp_path):
    login = pg_roles("cronpolicy_script")
    count, error = try_sql(
        login, "INSERT INTO cronpolicy.script_run (name, host, status, started_at, finished_at,"
               " spooled) SELECT 'mine', 'h', 'succeeded', '1970-01-02', now(), true"
               " FROM generate_series(1, 20)")
    assert count == 20, error
    from cronpolicy.config import Settings
    from cronpolicy.store import open_store
    store = open_store(Settings(dsn=login, dsn_source="test"))
    try:
        assert store.load_inputs("mine", 20).recent_runtimes == []
    finally:
        store.close()


def test_a_claim_in_an_old_snapshot_is_refused(pg_roles, pg_dsn):
    early, late = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    stale = psycopg2.connect(late)
    try:
        stale.set_session(isolation_level="REPEATABLE READ")
        with stale.cursor() as cursor:
            cursor.execute("SELECT 1")                      # the snapshot is taken here
            assert try_sql(early, "INSERT INTO cronpolicy.script_run (name, host)"
                                  " VALUES ('newscript', 'h')")[0] == 1
            with pytest.raises(psycopg2.Error):
                cursor.execute("INSERT INTO cronpolicy.script_run (name, host, spooled)"
                               " VALUES ('newscript', 'h', true)")
        stale.rollback()
    finally:
        stale.close()
    assert DBA(pg_dsn).execute("SELECT db_role FROM cronpolicy.script_owner") == [
        (login_of(early),)]


def test_ids_and_who_columns_are_the_databases(pg_roles, pg_dsn):
    login, admin = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_admin")
    count, error = try_sql(login, "INSERT INTO cronpolicy.script_run (id, name, host)"
                                  " VALUES (2147483000, 'mine', 'h')")
    assert count is None and "non-DEFAULT value" in error, error
    count, error = try_sql(admin, "INSERT INTO cronpolicy.script_owner"
                                  " (name, db_role, granted_by, granted_at)"
                                  " VALUES ('x', 'cronpolicy_script', 'first run', '1999-01-01')")
    assert count == 1, error
    assert DBA(pg_dsn).execute("SELECT granted_by, granted_at > now() - interval '1 minute'"
                               " FROM cronpolicy.script_owner") == [(login_of(admin), True)]
    count, error = try_sql(admin, "SELECT setval('cronpolicy.policy_audit_id_seq', 1)")
    assert count is None and "permission denied" in error, error


def test_flush_writes_the_others_and_keeps_what_this_login_may_not_write(
        pg_roles, pg_dsn, tmp_path):
    import datetime
    from cronpolicy.config import Settings
    from cronpolicy.errors import DatabaseError
    from cronpolicy.rows import RunRecord
    from cronpolicy.spool import Spool
    from cronpolicy.store import open_store
    owner, web = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    assert try_sql(owner, "INSERT INTO cronpolicy.script_run (name, host)"
                          " VALUES ('aaa', 'h')")[0] == 1
    spool = Spool(str(tmp_path / "spool"))
    now = datetime.datetime.now(datetime.timezone.utc)
    for name in ("aaa", "zzz"):
        spool.record_skip(RunRecord(name=name, host="web", pid=1, started_at=now,
                                    finished_at=now, status="skipped", spool_id=name))
    store = open_store(Settings(dsn=web, dsn_source="test"))
    try:
        with pytest.raises(DatabaseError) as denied:
            spool.flush(store)
    finally:
        store.close()
    assert denied.value.denied and denied.value.written == 1
    assert len(spool) == 1          # aaa waits for an administrator; zzz went through
    assert DBA(pg_dsn).execute("SELECT name FROM cronpolicy.script_run WHERE host = 'web'") == [
        ("zzz",)]


def test_the_upgrade_takes_back_what_administrators_could_bend_the_audit_with(
        pg_roles, pg_dsn, monkeypatch):
    """Rights roles.sql granted before schema 11, and a trigger planted with them."""
    admin = pg_roles("cronpolicy_admin")
    dba = DBA(pg_dsn)
    dba.execute("DELETE FROM cronpolicy.schema_version WHERE version >= 11")
    dba.execute("GRANT ALL ON ALL TABLES IN SCHEMA cronpolicy TO cronpolicy_admin;"
                " GRANT ALL ON ALL SEQUENCES IN SCHEMA cronpolicy TO cronpolicy_admin;"
                " CREATE FUNCTION cronpolicy.drop_it() RETURNS trigger LANGUAGE plpgsql"
                " AS $$ BEGIN RETURN NULL; END $$;"
                " CREATE TRIGGER zz_drop BEFORE INSERT ON cronpolicy.policy_audit"
                " FOR EACH ROW EXECUTE FUNCTION cronpolicy.drop_it()")
    connection = psycopg2.connect(pg_dsn)
    try:
        # Patch 11 again, as if the database were at 10 (its statements are idempotent
        # but for the triggers it recreates: drop those first).
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER script_policy_audit_truncate ON cronpolicy.script_policy;"
                           " DROP TRIGGER rollout_window_audit_truncate"
                           " ON cronpolicy.rollout_window;"
                           " DROP TRIGGER script_owner_audit_truncate ON cronpolicy.script_owner;"
                           " CREATE TRIGGER script_owner_audit_truncate AFTER TRUNCATE"
                           " ON cronpolicy.script_owner FOR EACH STATEMENT"
                           " EXECUTE FUNCTION cronpolicy.audit_truncate();"
                           " CREATE TRIGGER script_policy_audit_truncate AFTER TRUNCATE"
                           " ON cronpolicy.script_policy FOR EACH STATEMENT"
                           " EXECUTE FUNCTION cronpolicy.audit_truncate();"
                           " CREATE TRIGGER rollout_window_audit_truncate AFTER TRUNCATE"
                           " ON cronpolicy.rollout_window FOR EACH STATEMENT"
                           " EXECUTE FUNCTION cronpolicy.audit_truncate();"
                           " DROP TRIGGER script_policy_touch_insert ON cronpolicy.script_policy;"
                           " DROP TRIGGER rollout_window_touch ON cronpolicy.rollout_window;"
                           " DROP FUNCTION cronpolicy.touch_window()")
        connection.commit()
        assert schema.upgrade_postgres(connection)[:1] == [
            "0011-audit-that-admins-cannot-bend.sql"]
    finally:
        connection.close()
    for sql in ("DELETE FROM cronpolicy.policy_audit",
                "SELECT setval('cronpolicy.policy_audit_id_seq', 1)",
                "CREATE TRIGGER again BEFORE INSERT ON cronpolicy.policy_audit"
                " FOR EACH ROW EXECUTE FUNCTION cronpolicy.drop_it()"):
        count, error = try_sql(admin, sql)
        assert count is None and "permission denied" in error, (sql, error)
    assert try_sql(admin, "INSERT INTO cronpolicy.script_policy (name) VALUES ('x')")[0] == 1
    assert dba.scalar("SELECT count(*) FROM cronpolicy.policy_audit"
                      " WHERE table_name = 'script_policy'") == 1
