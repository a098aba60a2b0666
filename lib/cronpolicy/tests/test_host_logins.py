"""No squatting across hosts (schema patch 0015), with real login roles on
the real server: a login writes runs, slots and schedules only for the
hosts it owns (host_login), as it records only the scripts it owns
(script_owner); ownership rows name roles that exist."""

import json
import time

import psycopg2
import pytest

from cronpolicy import exitcodes

from . import footprint
from .conftest import DBA, ScriptRunner, login_of, make_env, upgraded
from .test_roles import cli, try_sql

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration


def host_env(tmp_path, dsn, host):
    """The environment of a host: its own directories, its login's DSN, its name."""
    home = tmp_path / ("%s-%s" % (host, login_of(dsn)))
    home.mkdir(exist_ok=True)
    return dict(make_env(home, dsn), CRONPOLICY_HOST=host,
                CRONPOLICY_STATE_DIR=str(home / "state"))


@pytest.fixture
def two_hosts(pg_roles, pg_dsn):
    """web1 and web2, each with its own login, both allowed to record
    publish-distro through a group role (docs/dbas.txt's set-up): (web1, web2) DSNs."""
    web1, web2 = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    group = footprint.name("publishers")
    dba = DBA(pg_dsn)
    dba.execute('CREATE ROLE "%s" NOLOGIN; GRANT "%s" TO "%s", "%s"'
                % (group, group, login_of(web1), login_of(web2)))
    dba.execute("INSERT INTO cronpolicy.script_owner (name, db_role) VALUES ('publish-distro', {})",
                (group,))
    try:
        yield web1, web2
    finally:
        dba.execute("DELETE FROM cronpolicy.script_owner")
        dba.execute('DROP ROLE "%s"' % group)


#: What another host's login tries, in plain SQL, as host web1.
SQUATTING = (
    # A fake success: web1's catch-up ticket would go as "started since it was skipped",
    # and `overdue` would see web1's job succeed.
    "INSERT INTO cronpolicy.script_run (name, host, status, finished_at, exit_code)"
    " VALUES ('publish-distro', 'web1', 'succeeded', now(), 0)",
    "INSERT INTO cronpolicy.script_run (name, host, status, started_at, finished_at, spooled)"
    " VALUES ('publish-distro', 'web1', 'succeeded', now() - interval '1 minute', now(), true)",
    # web1's hourly job made yearly for `overdue` and `deploy slot`.
    "INSERT INTO cronpolicy.script_schedule (name, host, schedule)"
    " VALUES ('publish-distro', 'web1', '@yearly')",
    "INSERT INTO cronpolicy.script_schedule (name, host, schedule)"
    " VALUES ('publish-distro', 'web1', '@yearly')"
    " ON CONFLICT (name, host) DO UPDATE SET schedule = '@yearly'",
    # A fleet-wide slot taken in web1's name.
    "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
    " VALUES ('publish-distro', 0, 'k', 'web1', now() + interval '1 hour')",
)


def test_a_login_cannot_write_rows_as_another_host(two_hosts, pg_dsn, tmp_path):
    web1, web2 = two_hosts
    dba = DBA(pg_dsn)
    # web1 registers its hourly job and runs it: it claims its host.
    env1 = host_env(tmp_path, web1, "web1")
    (tmp_path / "web1.crontab").write_text("0 * * * * /srv/bin/publish-distro\n")
    imported = cli(env1, "schedule", "import", str(tmp_path / "web1.crontab"))
    assert imported.returncode == exitcodes.OK, imported.stderr
    assert dba.execute("SELECT host, db_role, granted_by FROM cronpolicy.host_login") == [
        ("web1", login_of(web1), "first run")]
    before = dba.execute("SELECT * FROM cronpolicy.script_schedule")
    runs = dba.scalar("SELECT count(*) FROM cronpolicy.script_run")

    for sql in SQUATTING:
        count, error = try_sql(web2, sql)
        assert count is None, sql
        assert "host web1 belongs to database role %s" % login_of(web1) in error, (sql, error)
    # Its own rows, moved to web1: refused too (run_slot and script_schedule),
    # or not its to move at all (script_run: no UPDATE of host granted).
    for sql, moved in (
            ("INSERT INTO cronpolicy.script_schedule (name, host, schedule)"
             " VALUES ('publish-distro', 'web2', '@hourly')",
             "UPDATE cronpolicy.script_schedule SET host = 'web1', schedule = '@yearly'"
             " WHERE host = 'web2'"),
            ("INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
             " VALUES ('publish-distro', 1, 'k2', 'web2', now() + interval '1 hour')",
             "UPDATE cronpolicy.run_slot SET host = 'web1' WHERE host = 'web2'"),
            ("INSERT INTO cronpolicy.script_run (name, host) VALUES ('publish-distro', 'web2')",
             "UPDATE cronpolicy.script_run SET host = 'web1' WHERE host = 'web2'")):
        count, error = try_sql(web2, sql)
        assert count == 1, (sql, error)
        count, error = try_sql(web2, moved)
        assert count is None and ("belongs to database role" in error
                                  or "permission denied" in error), (moved, error)
    # Nor the table that says who owns what.
    for sql in ("INSERT INTO cronpolicy.host_login (host, db_role) VALUES ('web1', current_user)",
                "UPDATE cronpolicy.host_login SET db_role = current_user",
                "DELETE FROM cronpolicy.host_login",
                "TRUNCATE cronpolicy.host_login"):
        count, error = try_sql(web2, sql)
        assert count is None and "permission denied" in error, (sql, error)
    # And web1's rows themselves: not its to change or remove.
    for sql in ("UPDATE cronpolicy.script_schedule SET schedule = '@yearly' WHERE host = 'web1'",
                "DELETE FROM cronpolicy.script_schedule WHERE host = 'web1'"):
        assert try_sql(web2, sql) == (0, None), sql

    assert dba.execute("SELECT * FROM cronpolicy.script_schedule WHERE host = 'web1'") == before
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run WHERE host = 'web1'") == 0
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run") == runs + 1
    assert dba.scalar("SELECT count(*) FROM cronpolicy.run_slot WHERE host = 'web1'") == 0
    listed = cli(env1, "schedule", "list", "--json")
    assert [(row["host"], row["schedule"]) for row in json.loads(listed.stdout)["schedules"]
            if row["name"] == "publish-distro"] == [("web1", "0 * * * *"), ("web2", "@hourly")]


def test_through_the_cli_and_the_gate_a_login_posing_as_another_host_is_one_line_and_exit_4(
        two_hosts, pg_dsn, tmp_path):
    web1, web2 = two_hosts
    env1 = host_env(tmp_path, web1, "web1")
    runner = ScriptRunner(tmp_path, env1)
    runner.write("publish-distro")
    assert runner.run("publish-distro").returncode == exitcodes.OK      # web1 claims web1
    posing = host_env(tmp_path, web2, "web1")                         # web2's login, as web1
    (tmp_path / "crontab").write_text("@yearly /srv/bin/publish-distro\n")
    for argv in (("schedule", "import", str(tmp_path / "crontab")),
                 ("run", "publish-distro", "--", "true")):
        result = cli(posing, *argv)
        assert result.returncode == exitcodes.GATE_ERROR, (argv, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert "host web1 belongs to database role %s" % login_of(web1) in line, line
    theirs = ScriptRunner(tmp_path, posing)
    result = theirs.run("publish-distro")
    assert result.returncode == exitcodes.GATE_ERROR and "Traceback" not in result.stderr
    assert "host web1 belongs to database role" in result.stderr
    assert DBA(pg_dsn).execute("SELECT host, db_user, status FROM cronpolicy.script_run") == [
        ("web1", login_of(web1), "succeeded")]
    assert DBA(pg_dsn).scalar("SELECT count(*) FROM cronpolicy.script_schedule") == 0


def test_a_fake_success_from_another_host_does_not_drop_a_catch_up_ticket(
        two_hosts, pg_dsn, tmp_path):
    """The symptom of issue 26.5: web1's start, skipped by a deploy, left a
    ticket; web2's login, posing as web1 in plain SQL, cannot make it look
    started since."""
    web1, web2 = two_hosts
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_policy (name, catch_up) VALUES ('publish-distro',"
                " 'once'); UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    env1 = host_env(tmp_path, web1, "web1")
    runner = ScriptRunner(tmp_path, env1)
    runner.write("publish-distro")
    assert runner.run("publish-distro").returncode == exitcodes.OK      # skipped, ticket left
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    count, error = try_sql(web2, SQUATTING[0])
    assert count is None and "host web1 belongs to" in error
    catch_up = cli(env1, "catch-up", "--dry-run", "--verbose")
    assert catch_up.returncode == exitcodes.OK, catch_up.stderr
    assert "would start" in catch_up.stdout + catch_up.stderr, catch_up.stdout


def test_schedule_import_that_leaves_rows_unchanged_exits_non_zero(two_hosts, pg_dsn, tmp_path):
    """Rows it may not change (here: all of them, so no new row's trigger
    refuses the whole import first) are said, and the exit says so too."""
    web1, web2 = two_hosts
    (tmp_path / "crontab").write_text("0 * * * * /srv/bin/publish-distro\n")
    assert cli(host_env(tmp_path, web1, "web1"), "schedule", "import",
               str(tmp_path / "crontab")).returncode == exitcodes.OK
    (tmp_path / "crontab").write_text("@yearly /srv/bin/publish-distro\n")
    result = cli(host_env(tmp_path, web2, "web1"), "schedule", "import", str(tmp_path / "crontab"))
    assert result.returncode == exitcodes.GATE_ERROR, (result.stdout, result.stderr)
    assert "not changed" in result.stderr and "publish-distro" in result.stderr
    assert "Traceback" not in result.stderr
    assert DBA(pg_dsn).scalar("SELECT schedule FROM cronpolicy.script_schedule") == "0 * * * *"


def test_an_administrator_moves_a_host_to_a_new_login(two_hosts, pg_roles, pg_dsn, tmp_path):
    web1, _ = two_hosts
    (tmp_path / "crontab").write_text("0 * * * * /srv/bin/publish-distro\n")
    assert cli(host_env(tmp_path, web1, "web1"), "schedule", "import",
               str(tmp_path / "crontab")).returncode == exitcodes.OK
    new = pg_roles("cronpolicy_script")
    admin = pg_roles("cronpolicy_admin")
    # docs/dbas.txt's recipe, as an administrator's login (the script name is shared too).
    for sql in ("UPDATE cronpolicy.host_login SET db_role = %s WHERE host = 'web1'",
                "INSERT INTO cronpolicy.script_owner (name, db_role) VALUES ('publish-distro', %s)"):
        count, error = try_sql(admin, sql, (login_of(new),))
        assert count == 1, error
    (tmp_path / "crontab").write_text("30 * * * * /srv/bin/publish-distro\n")
    moved = cli(host_env(tmp_path, new, "web1"), "schedule", "import", str(tmp_path / "crontab"))
    assert moved.returncode == exitcodes.OK, moved.stderr
    assert DBA(pg_dsn).execute("SELECT schedule, registered_by FROM cronpolicy.script_schedule"
                               ) == [("30 * * * *", login_of(new))]
    count, error = try_sql(web1, SQUATTING[0])
    assert count is None and "host web1 belongs to database role %s" % login_of(new) in error


def test_a_host_pattern_or_a_group_role_shares_hosts(pg_roles, pg_dsn):
    first, second = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_owner (name, db_role) VALUES ('*', 'cronpolicy_script');"
                " INSERT INTO cronpolicy.host_login (host, db_role) VALUES ('ppa*', {})",
                (login_of(first),))
    assert try_sql(first, "INSERT INTO cronpolicy.script_run (name, host) VALUES ('a', 'ppa3')"
                   ) == (1, None)
    count, error = try_sql(second, "INSERT INTO cronpolicy.script_run (name, host)"
                                   " VALUES ('a', 'ppa4')")
    assert count is None and "host ppa4 belongs to database role %s" % login_of(first) in error
    dba.execute("INSERT INTO cronpolicy.host_login (host, db_role) VALUES ('*', 'cronpolicy_script')")
    assert try_sql(second, "INSERT INTO cronpolicy.script_run (name, host) VALUES ('a', 'ppa4')"
                   ) == (1, None)
    # No claims were needed: the pattern rows said it all.
    assert dba.scalar("SELECT count(*) FROM cronpolicy.host_login WHERE granted_by = 'first run'"
                      ) == 0


def test_a_login_cannot_claim_a_host_pattern(pg_roles, pg_dsn):
    login = pg_roles("cronpolicy_script")
    for sql in ("SELECT cronpolicy.claim_host('*')",
                "INSERT INTO cronpolicy.script_run (name, host) VALUES ('a', 'web*')"):
        count, error = try_sql(login, sql)
        assert count is None and "holds * or ?" in error, (sql, error)
    assert DBA(pg_dsn).scalar("SELECT count(*) FROM cronpolicy.host_login") == 0


def test_a_claim_of_a_host_in_an_old_snapshot_is_refused(pg_roles, pg_dsn):
    early, late = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    DBA(pg_dsn).execute("INSERT INTO cronpolicy.script_owner (name, db_role)"
                        " VALUES ('*', 'cronpolicy_script')")
    stale = psycopg2.connect(late)
    try:
        stale.set_session(isolation_level="REPEATABLE READ")
        with stale.cursor() as cursor:
            cursor.execute("SELECT 1")                      # the snapshot is taken here
            assert try_sql(early, "INSERT INTO cronpolicy.script_run (name, host)"
                                  " VALUES ('job', 'newhost')")[0] == 1
            with pytest.raises(psycopg2.Error):
                cursor.execute("INSERT INTO cronpolicy.script_run (name, host)"
                               " VALUES ('job', 'newhost')")
        stale.rollback()
    finally:
        stale.close()
    assert DBA(pg_dsn).execute("SELECT db_role FROM cronpolicy.host_login") == [
        (login_of(early),)]


def test_the_upgrade_gives_each_host_to_the_logins_that_wrote_for_it(
        pg_roles, empty_pg_dsn):
    login, other = login_of(pg_roles("cronpolicy_script")), login_of(pg_roles("cronpolicy_script"))
    dba = DBA(upgraded(empty_pg_dsn, up_to=14))
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, db_user) VALUES"
                " ('publish-distro', 'web1', {}), ('by-root', 'web9', current_user),"
                " ('gone', 'web8', 'no_such_role_anywhere'), ('odd', 'web*', {})", (login, login))
    dba.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule, registered_by)"
                " VALUES ('publish-distro', 'web2', '@daily', {})", (other,))
    dba.execute("INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at,"
                " db_user) VALUES ('publish-distro', 0, 'k', 'web3', now(), {})", (other,))
    upgraded(empty_pg_dsn)
    assert sorted(dba.execute("SELECT host, db_role, granted_by FROM cronpolicy.host_login")) == [
        ("web1", login, "schema patch 0015"), ("web2", other, "schema patch 0015"),
        ("web3", other, "schema patch 0015")]


# Ownership rows name roles that exist (issue 26.12) -------------------------------------

@pytest.mark.parametrize("table, column", [("script_owner", "name"), ("host_login", "host")])
def test_ownership_rows_refuse_a_role_the_server_does_not_know(pg_roles, pg_dsn, tmp_path,
                                                               table, column):
    admin = pg_roles("cronpolicy_admin")
    count, error = try_sql(admin, "INSERT INTO cronpolicy.%s (%s, db_role)"
                                  " VALUES ('x', 'cron_wbe1')" % (table, column))
    assert count is None and "database role cron_wbe1 does not exist" in error, error
    count, error = try_sql(admin, "INSERT INTO cronpolicy.%s (%s, db_role)"
                                  " VALUES ('x', 'cronpolicy_script')" % (table, column))
    assert count == 1, error
    count, error = try_sql(admin, "UPDATE cronpolicy.%s SET db_role = 'cron_wbe1'" % table)
    assert count is None and "does not exist" in error, error


def test_status_names_ownership_rows_whose_role_was_dropped(pg_roles, pg_dsn, tmp_path):
    dba = DBA(pg_dsn)
    gone = footprint.name("gone")
    dba.execute('CREATE ROLE "%s" LOGIN' % gone)
    dba.execute("INSERT INTO cronpolicy.script_owner (name, db_role) VALUES ('publish-distro', {});"
                " INSERT INTO cronpolicy.host_login (host, db_role) VALUES ('web1', {})",
                (gone, gone))
    dba.execute('DROP ROLE "%s"' % gone)
    result = cli(make_env(tmp_path, pg_dsn), "status")
    assert result.returncode == exitcodes.OK, result.stderr
    warnings = [line for line in result.stderr.splitlines() if gone in line]
    assert len(warnings) == 2, result.stderr
    assert any("publish-distro" in line and "script_owner" in line for line in warnings)
    assert any("web1" in line and "host_login" in line for line in warnings)


#: The guards' helpers, as pg_stat_user_functions names them.
_GUARD_HELPERS = ("is_administrator", "claim_script", "claim_host")


def _guard_calls(dba):
    """How many times each guard helper was called in this database so far
    (the server's function statistics; the logins under test track them)."""
    rows = dba.execute("SELECT pg_stat_clear_snapshot(); "
                       "SELECT funcname, calls FROM pg_stat_user_functions "
                       "WHERE schemaname = 'cronpolicy' AND funcname = ANY(%s)",
                       (list(_GUARD_HELPERS),))
    calls = dict.fromkeys(_GUARD_HELPERS, 0)
    calls.update(dict(rows))
    return calls


def test_a_scripts_start_and_end_on_its_own_host_ask_no_catalog(pg_roles, pg_dsn):
    """Schema patch 0021: every start is a new backend, which pays for each
    catalog it reads.  A login's run of a script and host it is listed for
    makes the guards ask nobody who the writer is (is_administrator reads
    pg_roles) or what it may claim; a new name still claims as before."""
    from cronpolicy.store import queries
    statements = queries("postgresql")
    login = pg_roles("cronpolicy_script")
    dba = DBA(pg_dsn)
    dba.execute('ALTER ROLE "%s" SET track_functions = \'all\'' % login_of(login))

    def one_run(name, key):
        connection = psycopg2.connect(login)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statements["record_start"], dict(
                    started_at=None, name=name, host="web1", pid=1, estimate_seconds=None,
                    estimate_source=None, skip_reason=None, policy_ignored=False,
                    decision="run", policy_id=None, window_id=None, expected_interval=None,
                    spool_id=key, schedule=None, schedule_tz=None, block=None, needs=None,
                    release=None, ttl=30))
                (run_id,), = cursor.fetchall()
                cursor.execute(statements["record_finish"], dict(
                    status="succeeded", exit_code=0, stop_reason=None, stop_decision=None,
                    stop_policy_id=None, stop_window_id=None, stop_block=None, id=run_id))
                # A call the test can wait for: the login's statistics have
                # reached the server once it is counted.
                cursor.execute("SELECT cronpolicy.is_administrator(session_user),"
                               " pg_stat_force_next_flush()")
        finally:
            connection.close()

    def calls_after(run, *args):
        before = _guard_calls(dba)
        run(*args)
        deadline = time.monotonic() + 10
        while True:
            after = _guard_calls(dba)
            if after["is_administrator"] > before["is_administrator"] or (
                    time.monotonic() > deadline):
                return {name: after[name] - before[name] for name in _GUARD_HELPERS}
            time.sleep(0.05)

    try:
        # The first run claims the name and the host: the guard asks.
        first = calls_after(one_run, "nightly-report", footprint.name("k"))
        assert first["claim_script"] == 1 and first["claim_host"] == 1, first
        # Every run after: only the test's own call.
        assert calls_after(one_run, "nightly-report", footprint.name("k")) == dict(
            is_administrator=1, claim_script=0, claim_host=0)
        assert dba.execute("SELECT status, db_user FROM cronpolicy.script_run"
                           " WHERE name = 'nightly-report'") == [
            ("succeeded", login_of(login))] * 2
    finally:
        dba.execute('ALTER ROLE "%s" RESET track_functions' % login_of(login))
