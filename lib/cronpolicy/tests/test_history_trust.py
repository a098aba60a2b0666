"""Run history that script logins cannot forge (schema patch 0010), with
real login roles on the real server: times from the database clock, and a
script's runs recorded only by the logins it belongs to (script_owner)."""

import psycopg2
import pytest

from cronpolicy import exitcodes, schema

from .conftest import DBA, ScriptRunner, make_env
from .test_roles import try_sql


def user_of(dsn):
    return psycopg2.extensions.parse_dsn(dsn)["user"]


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
        ("publish-distro", user_of(owner), "first run")]

    # Plain SQL: fake successes, a fleet-wide slot, all refused, nothing written.
    for sql in (FORGED_SUCCESS,
                "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
                " VALUES (%s, 0, 'k', 'web9', now() + interval '1 hour')"):
        count, error = try_sql(intruder, sql, ("publish-distro",))
        assert count is None and "belongs to database role %s" % user_of(owner) in error, error
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run") == 1

    # The intruder's own copy of the script does not run unseen: exit 4, one line.
    theirs = ScriptRunner(tmp_path / "intruder", make_env(tmp_path / "intruder", intruder))
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
                                  " VALUES ('publish-*', %s)", (user_of(intruder),))
    assert count == 1, error
    result = theirs.run("publish-distro")
    assert result.returncode == exitcodes.OK, result.stderr
    assert dba.execute("SELECT db_user, status FROM cronpolicy.script_run ORDER BY id") == [
        (user_of(owner), "succeeded"), (user_of(intruder), "succeeded")]
    # Claims and shares are audited.
    assert dba.scalar("SELECT count(*) FROM cronpolicy.policy_audit"
                      " WHERE table_name = 'script_owner' AND operation = 'INSERT'") == 2


def test_a_group_role_shares_a_name_among_its_members(pg_roles, pg_dsn):
    first, second = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_owner (name, db_role)"
                " VALUES ('*', 'cronpolicy_script')")      # the rule before patch 0010
    for login in (first, second):
        count, error = try_sql(login, "INSERT INTO cronpolicy.script_run (name, host)"
                                      " VALUES ('anything', 'h')")
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
    from cronpolicy.rows import RunEnd, RunRecord
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
        pg_roles, empty_pg_dsn, monkeypatch):
    login = user_of(pg_roles("cronpolicy_script"))
    real_patches = schema.patches
    monkeypatch.setattr(schema, "patches",
                        lambda name: [patch for patch in real_patches(name) if patch[0] <= 9])
    connection = psycopg2.connect(empty_pg_dsn)
    schema.upgrade_postgres(connection)
    dba = DBA(empty_pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, db_user)"
                " VALUES ('publish-distro', 'web1', {}), ('by-root', 'web1', current_user)",
                (login,))
    monkeypatch.setattr(schema, "patches", real_patches)
    schema.upgrade_postgres(connection)
    connection.close()
    assert dba.execute("SELECT name, db_role FROM cronpolicy.script_owner") == [
        ("publish-distro", login)]
