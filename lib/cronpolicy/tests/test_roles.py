"""Least privilege, with real login roles on the real server."""

import os
import subprocess
import sys

import psycopg2
import pytest

from cronpolicy import exitcodes, schema

from . import footprint
from .conftest import DBA, ScriptRunner, apply_roles, make_env


def as_role(dsn):
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    return connection


def try_sql(dsn, sql, params=None):
    """(rowcount, None) or (None, the error's first line)."""
    connection = as_role(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount, None
    except psycopg2.Error as error:
        return None, str(error).strip().splitlines()[0]
    finally:
        connection.close()


def cli(env, *argv):
    return subprocess.run([sys.executable, "-m", "cronpolicy"] + list(argv), env=env,
                          capture_output=True, text=True, timeout=60)


def test_roles_file_applies_twice_and_in_a_second_database(pg_roles, pg_dsn, empty_pg_dsn):
    apply_roles(pg_dsn)                              # a second time
    connection = psycopg2.connect(empty_pg_dsn)
    schema.upgrade_postgres(connection)
    connection.close()
    apply_roles(empty_pg_dsn)                        # roles exist already: still fine
    apply_roles(empty_pg_dsn)
    granted = DBA(empty_pg_dsn).scalar(
        "SELECT has_table_privilege('cronpolicy_script', 'cronpolicy.script_policy', 'SELECT')")
    assert granted is True


def test_schema_roles_names_every_role_it_puts_in_place(pg_roles, pg_dsn, tmp_path):
    """cronpolicy_reader (the dashboard's, issue 31) among them: a DBA reading
    the answer should not think the login of `cronpolicy serve` is missing."""
    result = cli(make_env(tmp_path, pg_dsn), "schema", "roles")
    assert result.returncode == 0, result.stderr
    for role in ("cronpolicy_script", "cronpolicy_rollout", "cronpolicy_admin",
                 "cronpolicy_reader"):
        assert role in result.stdout, role


def test_script_role_runs_a_real_script_end_to_end(pg_roles, tmp_path, pg_dsn):
    script_dsn = pg_roles("cronpolicy_script")
    runner = ScriptRunner(tmp_path, make_env(tmp_path, script_dsn))
    runner.write("publish-distro")
    result = runner.run("publish-distro", "--sleep", "0.5")
    assert result.returncode == exitcodes.OK, result.stderr
    role = psycopg2.extensions.parse_dsn(script_dsn)["user"]
    assert DBA(pg_dsn).execute("SELECT status, db_user FROM cronpolicy.script_run") == [
        ("succeeded", role)]
    status = cli(make_env(tmp_path, script_dsn), "status")
    assert status.returncode == 0, status.stderr


@pytest.mark.parametrize("sql", [
    "UPDATE cronpolicy.script_policy SET enabled = false",
    "INSERT INTO cronpolicy.script_policy (name, enabled) VALUES ('x', false)",
    "UPDATE cronpolicy.deploy_state SET deploy_pending = true",
    "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at) VALUES (now(), now() + '1h')",
    "DELETE FROM cronpolicy.policy_audit",
])
def test_script_role_cannot_change_policy_or_the_deploy_switch(pg_roles, sql):
    script_dsn = pg_roles("cronpolicy_script")
    count, error = try_sql(script_dsn, sql)
    assert count is None and "permission denied" in error


def test_script_role_gets_a_clear_one_line_error_from_the_cli(pg_roles, tmp_path):
    env = make_env(tmp_path, pg_roles("cronpolicy_script"))
    for argv in (("disable", "publish-distro"), ("deploy", "begin"),
                 ("window", "add", "--start", "+1h", "--duration", "1h")):
        result = cli(env, *argv)
        assert result.returncode == exitcodes.GATE_ERROR
        [line] = result.stderr.strip().splitlines()
        assert "permission denied" in line


def test_a_host_cannot_update_another_hosts_runs(pg_roles, pg_dsn):
    """...and is told whose run it is, while reaping dead runs still works."""
    web1, web2 = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    count, error = try_sql(web1, "INSERT INTO cronpolicy.script_run (name, host, pid)"
                                 " VALUES ('publish-distro', 'web1', 1)")
    assert count == 1, error
    run_id = DBA(pg_dsn).scalar("SELECT id FROM cronpolicy.script_run")
    count, error = try_sql(web2, "UPDATE cronpolicy.script_run SET status = 'failed',"
                                 " finished_at = now() WHERE id = %s", (run_id,))
    web1_name = psycopg2.extensions.parse_dsn(web1)["user"]
    assert count is None
    assert "run #%d belongs to database user %s" % (run_id, web1_name) in error
    assert DBA(pg_dsn).scalar("SELECT status FROM cronpolicy.script_run") == "running"
    count, error = try_sql(web2, "INSERT INTO cronpolicy.script_run (name, host, pid, db_user)"
                                 " VALUES ('x', 'web2', 1, 'someone_else')")
    assert count is None and "row-level security" in error
    count, error = try_sql(web1, "UPDATE cronpolicy.script_run SET status = 'succeeded',"
                                 " finished_at = now() WHERE id = %s", (run_id,))
    assert count == 1, error


def test_rollout_role_flips_the_switch_and_manages_windows_but_not_policies(pg_roles, tmp_path,
                                                                            pg_dsn):
    env = make_env(tmp_path, pg_roles("cronpolicy_rollout"))
    assert cli(env, "deploy", "begin", "--reason", "r1").returncode == 0
    added = cli(env, "window", "add", "--start", "+1h", "--duration", "1h", "--json")
    assert added.returncode == 0, added.stderr
    import json
    window_id = json.loads(added.stdout)["id"]
    assert cli(env, "window", "cancel", str(window_id)).returncode == 0
    assert cli(env, "deploy", "end").returncode == 0
    disabled = cli(env, "disable", "publish-distro")
    assert disabled.returncode == exitcodes.GATE_ERROR and "permission denied" in disabled.stderr
    assert cli(env, "audit").returncode == 0
    assert DBA(pg_dsn).scalar("SELECT count(*) FROM cronpolicy.script_policy") == 0


def test_the_audit_is_append_only_for_every_role_administrators_included(pg_roles, pg_dsn):
    rollout, admin = pg_roles("cronpolicy_rollout"), pg_roles("cronpolicy_admin")
    count, error = try_sql(rollout, "UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    assert count == 1, error
    for login in (rollout, admin):
        for sql in ("DELETE FROM cronpolicy.policy_audit",
                    "UPDATE cronpolicy.policy_audit SET db_user = 'nobody'",
                    "TRUNCATE cronpolicy.policy_audit",
                    "INSERT INTO cronpolicy.policy_audit (table_name, operation)"
                    " VALUES ('deploy_state', 'UPDATE')"):
            count, error = try_sql(login, sql)
            assert count is None and "permission denied" in error, (sql, error)
    role = psycopg2.extensions.parse_dsn(rollout)["user"]
    # (Setting the switch opens a rollout, audited too.)
    assert DBA(pg_dsn).execute("SELECT db_user, table_name, operation"
                               " FROM cronpolicy.policy_audit ORDER BY id") == [
        (role, "deploy_state", "UPDATE"), (role, "rollout", "INSERT")]


def test_an_administrator_cannot_silence_the_audit(pg_roles, pg_dsn):
    """The attacks of issue 11: a trigger on the audit that drops entries,
    or on a policy table; disabling or replacing the audit's triggers."""
    admin = pg_roles("cronpolicy_admin")
    for sql in ("CREATE TRIGGER drop_entries BEFORE INSERT ON cronpolicy.policy_audit"
                " FOR EACH ROW EXECUTE FUNCTION cronpolicy.touch_changed()",
                "CREATE TRIGGER sneak BEFORE UPDATE ON cronpolicy.script_policy"
                " FOR EACH ROW EXECUTE FUNCTION cronpolicy.touch_changed()",
                "ALTER TABLE cronpolicy.script_policy DISABLE TRIGGER script_policy_audit",
                "ALTER TABLE cronpolicy.policy_audit DISABLE TRIGGER ALL",
                "DROP TRIGGER script_policy_audit ON cronpolicy.script_policy",
                "CREATE OR REPLACE FUNCTION cronpolicy.audit_change() RETURNS trigger"
                " LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
                "ALTER FUNCTION cronpolicy.audit_change() OWNER TO CURRENT_USER"):
        count, error = try_sql(admin, sql)
        assert count is None, sql
        assert "permission denied" in error or "must be owner" in error, (sql, error)
    assert DBA(pg_dsn).scalar(
        "SELECT pg_get_userbyid(relowner) FROM pg_class"
        " WHERE oid = 'cronpolicy.policy_audit'::regclass") == "cronpolicy_auditor"
    # Everything else administrators may still do, and it is audited.
    count, error = try_sql(admin, "INSERT INTO cronpolicy.script_policy (name) VALUES ('x')")
    assert count == 1, error
    assert DBA(pg_dsn).scalar("SELECT count(*) FROM cronpolicy.policy_audit") == 1


def test_truncate_is_audited_with_every_row_it_removes(pg_roles, pg_dsn):
    admin = pg_roles("cronpolicy_admin")
    for name in ("publish-distro", "sync-*"):
        assert try_sql(admin, "INSERT INTO cronpolicy.script_policy (name, enabled)"
                              " VALUES (%s, false)", (name,))[0] == 1
    count, error = try_sql(admin, "BEGIN; SET LOCAL cronpolicy.reason = 'spring cleaning';"
                                  " TRUNCATE cronpolicy.script_policy; COMMIT")
    assert error is None, error
    entries = DBA(pg_dsn).execute(
        "SELECT row_id, old_row ->> 'name', old_row ->> 'enabled', reason, db_user"
        " FROM cronpolicy.policy_audit WHERE operation = 'TRUNCATE' ORDER BY id")
    login = psycopg2.extensions.parse_dsn(admin)["user"]
    assert entries[0] == (None, None, None, "spring cleaning", login)
    assert sorted(entry[1:3] for entry in entries[1:]) == [
        ("publish-distro", "false"), ("sync-*", "false")]


def test_who_changed_a_row_is_the_login_whatever_the_statement_says(pg_roles, pg_dsn):
    rollout = pg_roles("cronpolicy_rollout")
    login = psycopg2.extensions.parse_dsn(rollout)["user"]
    for sql in ("UPDATE cronpolicy.deploy_state SET deploy_pending = true, changed_by = 'alice'",
                "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, created_by,"
                " cancelled_by) VALUES (now(), now() + interval '1 hour', 'alice', 'bob')",
                "UPDATE cronpolicy.rollout_window SET cancelled_at = now(), cancelled_by = 'bob'"):
        count, error = try_sql(rollout, sql)
        assert count == 1, error
    dba = DBA(pg_dsn)
    assert dba.scalar("SELECT changed_by FROM cronpolicy.deploy_state") == login
    assert dba.execute("SELECT created_by, cancelled_by FROM cronpolicy.rollout_window") == [
        (login, login)]


def test_config_file_with_a_password_must_be_private(tmp_path):
    from cronpolicy.config import Settings
    from cronpolicy.errors import ConfigError
    path = tmp_path / "cronpolicy.conf"
    path.write_text("[cronpolicy]\ndsn = postgresql://cron:s3cret@db/x\n")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError) as error:
        Settings.load(environ={"CRONPOLICY_CONFIG": str(path)})
    message = str(error.value)
    assert "other users can read it" in message and str(path) in message
    assert "s3cret" not in message
    os.chmod(path, 0o600)
    assert Settings.load(environ={"CRONPOLICY_CONFIG": str(path)}).dsn.endswith("/x")
    path.write_text("[cronpolicy]\ndsn = postgresql://cron@db/x\n")
    os.chmod(path, 0o644)                            # no password: fine to share
    assert Settings.load(environ={"CRONPOLICY_CONFIG": str(path)})


def test_passwords_never_reach_output_or_history(pg_dsn, tmp_path):
    # Trust authentication ignores the password, so it can be real here.
    from psycopg2.extensions import make_dsn, parse_dsn
    params = parse_dsn(pg_dsn)
    params["password"] = "pw-s3cret-42"
    with_password = make_dsn(**params)
    env = make_env(tmp_path, with_password)
    runner = ScriptRunner(tmp_path, env)
    runner.write("publish-distro")
    result = runner.run("publish-distro", "-vv")
    assert result.returncode == 0 and "pw-s3cret-42" not in result.stderr
    for argv in (("status",), ("status", "--json"), ("history", "--json"), ("check", "x"),
                 ("why", "publish-distro", "--json")):
        output = cli(env, *argv)
        assert "pw-s3cret-42" not in output.stdout + output.stderr, argv
    assert "pw-s3cret-42" not in str(DBA(pg_dsn).execute("SELECT * FROM cronpolicy.script_run"))


def test_any_role_may_record_other_hosts_expired_runs_as_abandoned(pg_roles, pg_dsn,
                                                                   tmp_path):
    web1, web2 = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    for name, lease in (("ghost", "now() - interval '1 second'"),
                        ("alive", "now() + interval '30 seconds'")):
        count, error = try_sql(web1, "INSERT INTO cronpolicy.script_run (name, host, pid,"
                                     " heartbeat_at, lease_expires_at)"
                                     " VALUES (%s, 'web1', 1, now(), " + lease + ")", (name,))
        assert count == 1, error
    status = cli(make_env(tmp_path, web2), "status", "--json")
    assert status.returncode == 0, status.stderr
    assert dict(DBA(pg_dsn).execute("SELECT name, status FROM cronpolicy.script_run")) == {
        "ghost": "abandoned", "alive": "running"}


def test_a_script_role_cannot_declare_the_fleet_dead_or_steer_a_start(pg_roles, pg_dsn):
    """Reaping reads each run's own lease: there is no staleness to choose.
    Fleet-wide slots are rows only granted roles may write: a login with no
    grants can neither take nor block one."""
    web1 = pg_roles("cronpolicy_script")
    params = psycopg2.extensions.parse_dsn(web1)
    params["options"] = "-c role=cronpolicy_script"
    with_role = psycopg2.extensions.make_dsn(**params)
    count, error = try_sql(with_role, "INSERT INTO cronpolicy.script_run (name, host, pid,"
                                      " heartbeat_at, lease_expires_at)"
                                      " VALUES ('job', 'web1', 1, now(), now() + interval '1h')")
    assert count == 1, error
    count, error = try_sql(with_role, "UPDATE cronpolicy.script_run SET heartbeat_at = now()")
    assert count == 1, error
    other = as_role(pg_roles("cronpolicy_script"))
    try:
        with other.cursor() as reaper:
            reaper.execute("SELECT cronpolicy.reap_dead_runs()")
            assert reaper.fetchall() == []
    finally:
        other.close()
    assert DBA(pg_dsn).scalar("SELECT status FROM cronpolicy.script_run") == "running"
    # A login that was granted nothing.
    stranger = footprint.name("stranger")
    DBA(pg_dsn).execute('CREATE ROLE "%s" LOGIN' % stranger)
    try:
        params = psycopg2.extensions.parse_dsn(pg_dsn)
        params["user"] = stranger
        count, error = try_sql(psycopg2.extensions.make_dsn(**params),
                               "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host,"
                               " lease_expires_at) VALUES ('job', 0, 'x', 'evil', now() + '1y')")
        assert count is None and "permission denied" in error
    finally:
        DBA(pg_dsn).execute('DROP ROLE "%s"' % stranger)


def test_an_upgrade_grants_scripts_the_columns_it_adds(pg_roles, pg_dsn, empty_pg_dsn, tmp_path):
    """Roles set up before an upgrade keep working after it: the run's end
    (which now records why it stopped) is not refused."""
    from .conftest import upgraded
    upgraded(empty_pg_dsn, up_to=5)
    DBA(empty_pg_dsn).execute(          # what roles.sql granted scripts at version 5
        "GRANT USAGE ON SCHEMA cronpolicy TO cronpolicy_script;"
        " GRANT SELECT ON ALL TABLES IN SCHEMA cronpolicy TO cronpolicy_script;"
        " GRANT INSERT ON cronpolicy.script_run TO cronpolicy_script;"
        " GRANT UPDATE (status, exit_code, finished_at, heartbeat_at, safe_to_interrupt,"
        " stop_reason) ON cronpolicy.script_run TO cronpolicy_script")
    upgraded(empty_pg_dsn)
    params = psycopg2.extensions.parse_dsn(pg_roles("cronpolicy_script"))
    params["dbname"] = psycopg2.extensions.parse_dsn(empty_pg_dsn)["dbname"]
    runner = ScriptRunner(tmp_path, make_env(tmp_path, psycopg2.extensions.make_dsn(**params)))
    runner.write("publish-distro", extra="fleet_single_instance = True")   # a slot, too
    result = runner.run("publish-distro")
    assert result.returncode == exitcodes.OK and result.stderr == "", result.stderr
    assert DBA(empty_pg_dsn).execute("SELECT status FROM cronpolicy.script_run") == [
        ("succeeded",)]
    assert DBA(empty_pg_dsn).scalar("SELECT count(*) FROM cronpolicy.run_slot") == 0


def test_a_spooled_record_refused_for_want_of_a_privilege_stays_spooled(pg_roles, pg_dsn,
                                                                       tmp_path):
    """An administrator can grant a privilege; a constraint never changes its
    mind.  Only the second kind of refusal sends an entry to rejected/."""
    from cronpolicy.config import Settings
    from cronpolicy.errors import DatabaseError
    from cronpolicy.rows import RunEnd, RunHandle, RunRecord
    from cronpolicy.spool import Spool
    from cronpolicy.store import open_store
    web1, web2 = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    count, error = try_sql(web1, "INSERT INTO cronpolicy.script_run (name, host, pid)"
                                 " VALUES ('job', 'web1', 1)")
    assert count == 1, error
    run_id = DBA(pg_dsn).scalar("SELECT id FROM cronpolicy.script_run")
    spool = Spool(str(tmp_path / "spool"))
    spool.record_finish(RunHandle(run_id, RunRecord(name="job", host="web1")),
                        RunEnd(status="succeeded", exit_code=0))
    store = open_store(Settings(dsn=web2, dsn_source="--dsn", lock_dir=str(tmp_path)))
    try:
        with pytest.raises(DatabaseError) as refused:
            spool.flush(store)                  # web2 may not end web1's run
    finally:
        store.close()
    assert "belongs to database user" in str(refused.value)
    assert len(spool) == 1 and not (tmp_path / "spool" / "rejected").exists()


def test_a_role_out_of_connections_is_an_outage_not_a_configuration_error(pg_roles, pg_dsn,
                                                                           tmp_path):
    """Superusers ignore connection limits, so this uses an ordinary login."""
    script_dsn = pg_roles("cronpolicy_script")
    role = psycopg2.extensions.parse_dsn(script_dsn)["user"]
    DBA(pg_dsn).execute('ALTER ROLE "%s" CONNECTION LIMIT 1' % role)
    env = make_env(tmp_path, script_dsn)
    config = tmp_path / "quick.conf"
    config.write_text("[cronpolicy]\ndecision_timeout = 2s\n")
    env["CRONPOLICY_CONFIG"] = str(config)
    runner = ScriptRunner(tmp_path, env)
    runner.write("publish-distro")
    holder = as_role(script_dsn)                  # the role's only connection
    try:
        result = runner.run("publish-distro")
    finally:
        holder.close()
    assert result.returncode == exitcodes.OK      # on_database_error = skip, not exit 4
    [line] = result.stderr.strip().splitlines()
    assert "database unreachable" in line and "too many connections" in line
    again = runner.run("publish-distro", "-v")     # the connection is free again
    assert again.returncode == exitcodes.OK, again.stderr
    assert sorted(row[0] for row in DBA(pg_dsn).execute(
        "SELECT decision FROM cronpolicy.script_run")) == ["database-unreachable", "run"], \
        again.stderr


def test_a_host_cannot_take_or_free_another_hosts_slot_while_its_lease_stands(pg_roles, pg_dsn):
    web1, web2 = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    count, error = try_sql(web1, "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host,"
                                 " lease_expires_at) VALUES ('job', 0, 'k1', 'web1',"
                                 " now() + interval '1 hour')")
    assert count == 1, error
    for sql in ("UPDATE cronpolicy.run_slot SET run_key = 'k2', host = 'web2'",
                "DELETE FROM cronpolicy.run_slot"):
        count, error = try_sql(web2, sql)
        assert count == 0, error                 # row-level security: not its row
    assert DBA(pg_dsn).scalar("SELECT run_key FROM cronpolicy.run_slot") == "k1"
    DBA(pg_dsn).execute("UPDATE cronpolicy.run_slot SET lease_expires_at = now() - interval '1s'")
    count, error = try_sql(web2, "DELETE FROM cronpolicy.run_slot")     # now it is free
    assert count == 1, error


def test_the_rollout_role_deploys_a_service_and_a_script_login_cannot(pg_roles, tmp_path, pg_dsn):
    rollout, script = pg_roles("cronpolicy_rollout"), pg_roles("cronpolicy_script")
    env = make_env(tmp_path, rollout)
    begun = cli(env, "deploy", "begin", "--service", "xmlrpc", "--reason", "r4522")
    assert begun.returncode == 0, begun.stderr
    [(by, reason)] = DBA(pg_dsn).execute("SELECT changed_by, reason FROM cronpolicy.service_deploy")
    assert (by, reason) == (psycopg2.extensions.parse_dsn(rollout)["user"], "r4522")
    count, error = try_sql(script, "DELETE FROM cronpolicy.service_deploy")
    assert count is None and "permission denied" in error
    count, error = try_sql(script, "INSERT INTO cronpolicy.service_deploy (service) VALUES ('x')")
    assert count is None and "permission denied" in error
    assert cli(env, "deploy", "end", "--service", "xmlrpc").returncode == 0
    assert DBA(pg_dsn).scalar("SELECT count(*) FROM cronpolicy.service_deploy") == 0
    # Who began it is the login, whatever the writer says.
    count, _ = try_sql(rollout, "INSERT INTO cronpolicy.service_deploy (service, changed_by)"
                                " VALUES ('mail', 'someone-else')")
    assert count == 1
    assert DBA(pg_dsn).scalar("SELECT changed_by FROM cronpolicy.service_deploy") == \
        psycopg2.extensions.parse_dsn(rollout)["user"]


# Every command, as a login that may not use it (issue 26.8) --------------------------

#: What each command needs to do something; a command not named here runs
#: with no arguments (a new command is covered at once: if it needs some,
#: it exits 2 and this test says so).
ARGUMENTS = {
    ("disable",): ["publish-distro"],
    ("enable",): ["publish-distro"],
    ("window", "add"): ["--start", "+1h", "--duration", "1h"],
    ("window", "cancel"): ["1"],
    ("deploy", "wait"): ["--timeout", "1s"],
    ("deploy", "run"): ["--wait-timeout", "1s", "--", "true"],
    ("deploy", "plan"): ["--at", "+1h"],
    ("deploy", "slot"): ["--duration", "10m"],
    ("why",): ["publish-distro"],
    ("schedule", "import"): ["{crontab}"],
    ("prune",): ["--older-than", "1s"],
    ("check",): ["publish-distro"],
    ("simulate",): ["--from-database", "--days", "1", "--rollouts", "1"],
    ("run",): ["publish-distro", "--", "true"],
    ("relay",): ["--listen", "127.0.0.1:0"],
}

#: What a cronpolicy_script login may not do: change policies, windows or
#: the switch, delete history, read the audit or the drains, grant roles.
DENIED_TO_SCRIPTS = {("schema", "roles"), ("disable",), ("enable",), ("window", "add"),
                     ("window", "cancel"), ("deploy", "begin"), ("deploy", "end"), ("deploy", "wait"),
                     ("deploy", "run"),
                     ("audit",), ("metrics",), ("prune",), ("relay",)}


def database_commands(parser=None, path=()):
    """Every command of the `cronpolicy` parser that uses the database, as
    a tuple of words: the parser's own list, so a new one is in it."""
    import argparse
    from cronpolicy.tooling.cli import build_parser
    parser = parser or build_parser()
    groups = [action for action in parser._actions
              if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        # crontab wrap/unwrap/names are text in, text out: no settings, no database.
        return [] if parser.get_default("needs_settings") is False else [path]
    return [command for group in groups for name, sub in group.choices.items()
            for command in database_commands(sub, path + (name,))]


def _with_work_to_do(pg_dsn, env, tmp_path):
    """A deploy pending, window #1, history, a spooled record and a catch-up
    ticket: every command has something to read or write."""
    import datetime
    from cronpolicy import catchup
    from cronpolicy.config import Settings
    from cronpolicy.policy import ScriptFacts
    from cronpolicy.rows import RunRecord
    from cronpolicy.spool import Spool
    DBA(pg_dsn).execute(
        "UPDATE cronpolicy.deploy_state SET deploy_pending = true, reason = 'r1';"
        " INSERT INTO cronpolicy.rollout_window (id, starts_at, ends_at)"
        " VALUES (1, now() + interval '2 hours', now() + interval '3 hours');"
        " INSERT INTO cronpolicy.script_run (name, host, status, started_at, finished_at,"
        " schedule) VALUES ('publish-distro', 'testhost', 'succeeded',"
        " now() - interval '1 day', now() - interval '1 day' + interval '1 minute',"
        " '0 * * * *')")
    settings = Settings.load(environ=env)
    assert settings.state_dir.startswith(str(tmp_path))
    now = datetime.datetime.now(datetime.timezone.utc)
    Spool(settings.spool_dir).record_skip(RunRecord(
        name="publish-distro", host="testhost", pid=1, started_at=now, finished_at=now,
        status="skipped", spool_id="spooled-1"))
    catchup.write_ticket(settings.state_dir, ScriptFacts("publish-distro", "testhost"),
                         "deploy:1", now.timestamp())
    (tmp_path / "crontab").write_text("0 * * * * /srv/bin/publish-distro\n")


def _every_command(env, tmp_path):
    """{command: CompletedProcess} of every database command, as ``env``'s login."""
    from concurrent.futures import ThreadPoolExecutor
    commands = database_commands()

    def one(command):
        argv = [word.format(crontab=tmp_path / "crontab")
                for word in list(command) + ARGUMENTS.get(command, [])]
        return cli(env, *argv)
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(commands, pool.map(one, commands)))


def _one_line_exit_4(command, result):
    assert result.returncode == exitcodes.GATE_ERROR, (command, result.returncode,
                                                       result.stderr)
    assert "Traceback" not in result.stderr, (command, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (command, result.stderr)
    return lines[0]


def test_a_login_with_no_grants_gets_one_line_and_exit_4_from_every_command(
        pg_roles, pg_dsn, tmp_path):
    stranger = footprint.name("stranger")
    DBA(pg_dsn).execute('CREATE ROLE "%s" LOGIN' % stranger)
    try:
        params = psycopg2.extensions.parse_dsn(pg_dsn)
        params["user"] = stranger
        env = dict(make_env(tmp_path, psycopg2.extensions.make_dsn(**params)),
                   CRONPOLICY_STATE_DIR=str(tmp_path / "state"))
        _with_work_to_do(pg_dsn, env, tmp_path)
        results = _every_command(env, tmp_path)
    finally:
        DBA(pg_dsn).execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE usename = '%s'" % stranger)
        DBA(pg_dsn).execute('DROP ROLE "%s"' % stranger)
    assert len(results) > 25 and ("run",) in results and ("catch-up",) in results
    for command, result in results.items():
        line = _one_line_exit_4(command, result)
        assert "permission denied" in line, (command, line)
    from cronpolicy.config import Settings
    from cronpolicy.spool import Spool
    assert len(Spool(Settings.load(environ=env).spool_dir)) == 1     # kept for later


def test_a_script_login_gets_one_line_and_exit_4_from_the_commands_it_may_not_use(
        pg_roles, pg_dsn, tmp_path):
    env = dict(make_env(tmp_path, pg_roles("cronpolicy_script")),
               CRONPOLICY_STATE_DIR=str(tmp_path / "state"))
    _with_work_to_do(pg_dsn, env, tmp_path)
    results = _every_command(env, tmp_path)
    assert DENIED_TO_SCRIPTS <= set(results)
    for command, result in results.items():
        if command in DENIED_TO_SCRIPTS:
            line = _one_line_exit_4(command, result)
            assert "permission denied" in line or "must have" in line, (command, line)
        elif command == ("serve",):     # it would serve through a login that can write
            assert result.returncode == exitcodes.USAGE, result.stderr
            assert "this login can write" in result.stderr
        else:
            # (overdue may say 8: the hourly job's last success is a day
            # old; the commands running beside it change what it reads.)
            assert result.returncode in (exitcodes.OK, exitcodes.WOULD_SKIP,
                                         exitcodes.WAIT_TIMEOUT, exitcodes.OVERDUE), (
                command, result.stderr)
            assert "Traceback" not in result.stderr, (command, result.stderr)
    dba = DBA(pg_dsn)
    assert dba.scalar("SELECT deploy_pending FROM cronpolicy.deploy_state") is True
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_policy") == 0
    assert dba.scalar("SELECT cancelled_at FROM cronpolicy.rollout_window") is None


def roles_sql_as_psql_gives_it(connection):
    """Give schema/roles.sql to ``connection`` as `psql -f` would, each
    statement alone and on past a failure; the SQLSTATEs of those that failed."""
    failed = []
    connection.autocommit = True
    with open(os.path.join(schema.patch_dir("postgresql"), "roles.sql"), encoding="utf-8") as f:
        for statement in psql_statements(f.read()):
            with connection.cursor() as cursor:
                try:
                    cursor.execute(statement)
                except psycopg2.Error as error:
                    failed.append(error.pgcode)
    return failed


def psql_statements(sql):
    """The statements of a file as psql sends them: each alone ($$ bodies whole)."""
    statements, pending, quoted = [], [], False
    for line in sql.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending.append(line)
        quoted ^= line.count("$$") % 2 == 1
        if not quoted and line.rstrip().endswith(";"):
            statements.append("\n".join(pending))
            pending = []
    return statements


def test_roles_sql_given_to_psql_before_schema_21_names_a_runs_owner_after_the_upgrade(
        pg_roles, empty_pg_dsn, monkeypatch):
    # roles.sql attaches guard_run_writer, which schema patch 0021 defines.
    # Given to psql (roles.sql's own words: `psql -f schema/roles.sql`) on
    # a database of schema 20, that one statement fails and psql goes on:
    # row-level security still refuses another login's run, but with no
    # word of whose it is, until the upgrade attaches the guard.
    every = schema.patches("postgresql")
    monkeypatch.setattr(schema, "patches", lambda backend: [p for p in every if p[0] <= 20])
    connection = psycopg2.connect(empty_pg_dsn)
    schema.upgrade_postgres(connection)
    failed = roles_sql_as_psql_gives_it(connection)
    # undefined_table: the grant of run_tally (schema 22), a statement of its
    # own; undefined_function: guard_run_writer.  Nothing else fails.
    assert failed == ["42P01", "42883"]
    monkeypatch.setattr(schema, "patches", lambda backend: every)
    schema.upgrade_postgres(connection)            # 0021 on, as docs/dbas.txt says to do
    connection.close()
    web1, web2 = (psycopg2.extensions.make_dsn(
        pg_roles("cronpolicy_script"), dbname=psycopg2.extensions.parse_dsn(empty_pg_dsn)[
            "dbname"]) for _ in "12")
    assert try_sql(web1, "INSERT INTO cronpolicy.script_run (name, host, spool_id)"
                         " VALUES ('nightly', 'web1', 'web1-run')") == (1, None)
    rowcount, error = try_sql(web2, "UPDATE cronpolicy.script_run SET status = 'failed',"
                                    " finished_at = now() WHERE spool_id = 'web1-run'")
    assert rowcount is None and "may update only its own runs" in error
