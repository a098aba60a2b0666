"""Schema patch 0026 attacked: `deploy run` whose own lease renewal is
refused, and rows the range mending must leave as they were.

`deploy run` connects anew for each renewal, so the login it renews as
can change under it: a DSN naming a service (pg_service.conf edited
meanwhile), a password file, a config file rewritten by the deploy tooling.
Its renewals are then another login's, refused (schema 26).  It must say
so in one line that is true, keep its command safe (not started when the
refusal comes before it), and end its rollout.

Real PostgreSQL (logins made per test, dropped after), real processes.
"""

import contextlib
import subprocess
import sys
import time

import psycopg2
import pytest

from cronpolicy import exitcodes

from .conftest import (DBA, ScriptRunner, as_login, login_of, make_env, read_line, schema_up_to,
                       upgraded, wait_for, wait_for_file)

pytestmark = pytest.mark.integration


def write_service(path, dsn):
    """pg_service.conf naming ``dsn``'s server, database and login as [cp]."""
    params = psycopg2.extensions.parse_dsn(dsn)
    path.write_text("[cp]\n" + "".join("%s=%s\n" % item for item in sorted(params.items())))


@pytest.fixture
def switched(pg_roles, pg_dsn, tmp_path):
    """(environment of a `deploy run` whose DSN is service=cp, the pg_service
    file, the owner's DSN, another rollout login's DSN)."""
    owner, other = pg_roles("cronpolicy_rollout"), pg_roles("cronpolicy_rollout")
    services = tmp_path / "pg_service.conf"
    write_service(services, owner)
    env = make_env(tmp_path, "service=cp")
    env["PGSERVICEFILE"] = str(services)
    config = tmp_path / "cronpolicy.conf"
    config.write_text(config.read_text() + "heartbeat_interval = 0.2s\nlease_ttl = 30s\n")
    return env, services, owner, other


def deploy_run(env, *command):
    return subprocess.Popen([sys.executable, "-m", "cronpolicy.tooling.cli", "deploy", "run",
                             "--reason", "release 4521", "--"] + list(command), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(runner, timeout=90):
    try:
        return runner.communicate(timeout=timeout)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate(timeout=30)


@contextlib.contextmanager
def deploy_run_waiting_on_a_holder(env, pg_dsn, tmp_path):
    """`deploy run -- touch ran` begun while a never-safe script (the
    holder) runs, once its wait has seen the holder: yields (runner, until,
    ran, dba); writing ``until`` ends the holder, and the fleet is quiet."""
    (tmp_path / "holder").mkdir()
    holder = ScriptRunner(tmp_path, make_env(tmp_path / "holder", pg_dsn))
    holder.write("holder")
    ready, until = tmp_path / "holder.ready", tmp_path / "holder.until"
    job = holder.start("holder", "--sleep", "600", "--ready-file", str(ready),
                       "--until-file", str(until))
    ran = tmp_path / "ran"
    dba = DBA(pg_dsn)
    try:
        wait_for_file(str(ready), process=job)
        runner = deploy_run(env, "sh", "-c", "touch %s" % ran)
        assert read_line(runner.stdout).startswith("rollout #1 began")
        wait_for(lambda: dba.scalar("SELECT count(*) FROM cronpolicy.rollout_awaited") > 0,
                 what="the wait to see the holder")
        yield runner, until, ran, dba
    finally:
        if job.poll() is None:
            job.kill()
        job.communicate(timeout=30)


def test_deploy_run_whose_login_changes_while_waiting_runs_nothing_and_says_one_line(
        switched, pg_dsn, tmp_path):
    """The login changes while the fleet is not yet quiet: the command is not
    started (its rollout could not be kept alive: within lease_ttl it would
    look abandoned, and anyone may end an abandoned rollout), the rollout
    ends, one line says why, exit 4."""
    env, services, owner, other = switched
    with deploy_run_waiting_on_a_holder(env, pg_dsn, tmp_path) as (runner, until, ran, dba):
        write_service(services, other)
        time.sleep(1.0)                     # five heartbeats, each refused
        until.write_text("")                # the fleet goes quiet
        out, err = finish(runner)
    assert not ran.exists(), "the command ran with a lease nobody could renew"
    assert runner.returncode == exitcodes.GATE_ERROR, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "trying again" not in err
    assert "rollout #1" in lines[0] and login_of(owner) in lines[0] and "sh not run" in lines[0]
    assert dba.scalar("SELECT lease_expires_at FROM cronpolicy.rollout") is None
    assert dba.execute("SELECT owner, ended_by FROM cronpolicy.rollout") == [
        (login_of(owner), login_of(other))]
    assert "rollout #1 ended" in out


def test_deploy_run_whose_login_changes_while_its_command_runs_says_so_once_truly(
        switched, pg_dsn, tmp_path):
    """The login changes while the command runs: the command is left to
    finish (stopping a release half-way is worse), the rollout stays open
    until it has, and one line says the lease is refused: no "trying
    again" that never succeeds."""
    env, services, owner, other = switched
    started, done = tmp_path / "started", tmp_path / "done"
    runner = deploy_run(env, "sh", "-c", "touch %s; while [ ! -e %s ]; do sleep 0.05; done"
                        % (started, done))
    try:
        assert read_line(runner.stdout).startswith("rollout #1 began")
        wait_for(started.exists, what="the command to start")
        write_service(services, other)
        dba = DBA(pg_dsn)
        time.sleep(1.0)                     # five heartbeats, each refused
        assert dba.scalar("SELECT ended_at IS NULL FROM cronpolicy.rollout"), \
            "the rollout ended while its command ran"
        done.write_text("")
        out, err = finish(runner)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "trying again" not in err
    assert "rollout #1" in lines[0] and login_of(owner) in lines[0]
    assert "stays open" in lines[0], lines[0]
    assert dba.execute("SELECT owner, ended_by FROM cronpolicy.rollout") == [
        (login_of(owner), login_of(other))]
    assert "rollout #1 ended" in out and "(exit 0)" in out


def test_deploy_run_whose_login_is_renamed_while_waiting_says_one_error(
        switched, pg_dsn, tmp_path):
    """ALTER ROLE ... RENAME while it waits: it can no longer connect at all
    (its DSN names the old login), so it can neither renew nor end its
    rollout.  The command is not run, the rollout stays open (the safe
    direction), and one error line says so and how to end it: not that
    line and then the connection failure again."""
    from .conftest import admin_connection
    env, _, owner, _ = switched
    login = login_of(owner)
    renamed = login + "_renamed"
    with deploy_run_waiting_on_a_holder(env, pg_dsn, tmp_path) as (runner, until, ran, dba):
        with admin_connection() as connection, connection.cursor() as cursor:
            cursor.execute('ALTER ROLE "%s" RENAME TO "%s"' % (login, renamed))
        try:
            time.sleep(1.0)                 # renewals fail: the login is gone
            until.write_text("")            # the fleet goes quiet
            out, err = finish(runner, timeout=180)
        finally:
            with admin_connection() as connection, connection.cursor() as cursor:
                cursor.execute('ALTER ROLE "%s" RENAME TO "%s"' % (renamed, login))
    assert not ran.exists()
    assert runner.returncode == exitcodes.GATE_ERROR, (out, err)
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("cronpolicy: error:")]
    assert len(errors) == 1, err
    assert "cronpolicy deploy end 1" in errors[0] and "sh not run" in errors[0], errors[0]
    assert dba.scalar("SELECT ended_at IS NULL FROM cronpolicy.rollout")


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_database_of_schema_25_holding_rollouts_past_the_guards_upgrades_and_ends_them(
        backend, empty_pg_dsn, sqlite_dsn, tmp_path):
    """Upgraded from schema 25 with absurd open rollouts in it (a dump
    restored with the guards off): the upgrade leaves them be, then
    `deploy end` and the plain-SQL switch end them, each audited with the
    values it held, and nothing else of theirs is rewritten."""
    from cronpolicy import schema
    from .test_rollout_leases import PAST_THE_GUARDS, all_in_range, open_ids
    dsn = empty_pg_dsn if backend == "postgresql" else sqlite_dsn
    with schema_up_to(25):          # (the DBA's SQLite file would upgrade itself)
        dba = DBA(upgraded(dsn))
        dba.execute_unchecked(*PAST_THE_GUARDS[backend])
        assert dba.scalar("SELECT max(version) FROM cronpolicy.schema_version") == 25
    if backend == "postgresql":
        connection = psycopg2.connect(dsn)
        assert schema.upgrade_postgres(connection)[0].startswith("0026")
        connection.close()
    env = make_env(tmp_path, dsn)
    result = subprocess.run([sys.executable, "-m", "cronpolicy.tooling.cli", "deploy", "end",
                             "2"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "rollout #2 ended" in result.stdout, result.stderr
    assert dba.scalar("SELECT max(version) FROM cronpolicy.schema_version") == schema.SCHEMA_VERSION
    false = "false" if backend == "postgresql" else "0"
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = %s" % false)
    assert open_ids(dba) == [] and all_in_range(dba)
    audited = [row[0] for row in dba.execute(
        "SELECT old_row FROM cronpolicy.policy_audit WHERE table_name = 'rollout'"
        " AND operation = 'UPDATE' ORDER BY id")]
    import json
    olds = [json.loads(row) if isinstance(row, str) else row for row in audited]
    began = {}
    for old in olds:                # the first change of each: the values it held
        began.setdefault(old["id"], old["began_at"])
    assert began[1] in ("-infinity", "0001-01-01 00:00:00"), olds
    assert began[2] in ("0001-01-01T00:00:00+00:00", "yesterday") or began[2].startswith(
        "0001-01-01"), olds


def _waiting_on_a_lock(dba, login):
    return dba.scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = {}"
                      " AND wait_event_type = 'Lock'", (login,)) > 0


@pytest.mark.parametrize("first", ["renewal", "end"])
def test_a_renewal_racing_another_logins_end(pg_roles, pg_dsn, first):
    """The owner's renewal and another login's end, each held in a
    transaction while the other waits on it (pg_stat_activity orders them):
    whichever commits first, the rollout ends, by the other login, its
    lease cleared; a renewal that waited for the end renews nothing."""
    import threading
    owner, other = pg_roles("cronpolicy_rollout"), pg_roles("cronpolicy_rollout")
    dba = DBA(pg_dsn)
    seed = psycopg2.connect(owner)
    seed.autocommit = True
    with seed.cursor() as cursor:
        cursor.execute("INSERT INTO cronpolicy.rollout (reason, lease_expires_at)"
                       " VALUES ('release 4521', now() + interval '30 seconds')")
    seed.close()
    renew = ("UPDATE cronpolicy.rollout SET lease_expires_at = now() + interval '40 seconds'"
             " WHERE id = 1 AND ended_at IS NULL")
    end = "UPDATE cronpolicy.rollout SET ended_at = now() WHERE id = 1 AND ended_at IS NULL"
    held_dsn, held_sql, late_dsn, late_sql = (
        (owner, renew, other, end) if first == "renewal" else (other, end, owner, renew))
    held = psycopg2.connect(held_dsn)
    late = psycopg2.connect(late_dsn)
    late.autocommit = True
    outcome = {}

    def run_late():
        try:
            with late.cursor() as cursor:
                cursor.execute(late_sql)
                outcome["rows"] = cursor.rowcount
        except psycopg2.Error as error:
            outcome["error"] = error
    try:
        with held.cursor() as cursor:
            cursor.execute(held_sql)
        thread = threading.Thread(target=run_late)
        thread.start()
        wait_for(lambda: _waiting_on_a_lock(dba, login_of(late_dsn)), what="the lock wait")
        held.commit()
        thread.join(30)
    finally:
        held.close()
        late.close()
    assert "error" not in outcome, outcome
    assert outcome["rows"] == (1 if first == "renewal" else 0)
    assert dba.execute("SELECT ended_by, lease_expires_at FROM cronpolicy.rollout") == [
        (login_of(other), None)]


def test_a_rollout_mended_by_a_change_the_audit_would_pass_over_is_refused(pg_roles, pg_dsn):
    """Any change of a rollout past the range guards mends it (schema 26):
    another login's `SET reason = reason` moved its lease ('infinity' to
    within the hour: a lease only its owner may change) and its beginning
    ('-infinity' to 1970), and the audit, which passes over an unchanged
    reason, a beginning and a lease, had no trace of either.  (The audit
    trigger cannot be replaced by the database owner who upgrades: its
    function is the auditor's.)  Now such a change is refused in one line;
    the end, audited with the values the row held, still mends it."""
    owner, other = pg_roles("cronpolicy_rollout"), pg_roles("cronpolicy_rollout")
    seed = psycopg2.connect(owner)
    seed.autocommit = True
    with seed.cursor() as cursor:
        cursor.execute("INSERT INTO cronpolicy.rollout (reason, lease_expires_at)"
                       " VALUES ('restored', now() + interval '30 seconds')")
        cursor.execute("INSERT INTO cronpolicy.rollout (kind, services, reason, lease_expires_at)"
                       " VALUES ('services', 'mail', 'mine', now() + interval '30 seconds')")
    dba = DBA(pg_dsn)
    dba.execute_unchecked("SET LOCAL session_replication_role = replica",
                          "UPDATE cronpolicy.rollout SET began_at = '-infinity',"
                          " lease_expires_at = 'infinity' WHERE id = 1")

    def audited():
        return [(row[0], row[1]) for row in dba.execute(
            "SELECT old_row->>'began_at', old_row->>'lease_expires_at'"
            " FROM cronpolicy.policy_audit WHERE table_name = 'rollout'"
            " AND operation = 'UPDATE' ORDER BY id")]

    refused = as_login(other, "UPDATE cronpolicy.rollout SET reason = reason WHERE id = 1")
    assert getattr(refused, "pgcode", None) == "23514", refused
    assert "rollout #1" in str(refused).splitlines()[0]
    assert dba.execute("SELECT began_at::text, lease_expires_at::text FROM cronpolicy.rollout"
                       " WHERE id = 1") == [("-infinity", "infinity")]
    assert audited() == []
    assert as_login(other, "UPDATE cronpolicy.rollout SET reason = 'restored (ended)',"
                           " ended_at = now() WHERE id = 1") is None
    assert audited() == [("-infinity", "infinity")]
    # The owner's renewals of a rollout in range: unaudited, as before.
    with seed.cursor() as cursor:
        cursor.execute("UPDATE cronpolicy.rollout SET lease_expires_at = now()"
                       " + interval '40 seconds' WHERE id = 2")
    seed.close()
    assert len(audited()) == 1


def test_a_lease_past_the_guards_ended_by_the_switch_is_audited_as_it_was(dba):
    """A rollout whose only value past the guards is its lease ('infinity'),
    ended by the plain-SQL switch: the audit keeps the lease it held.  On
    SQLite the switch's BEFORE trigger mended it first, an UPDATE the audit
    passed over (a lease), and the end was audited with the mended lease:
    'infinity' was nowhere."""
    dba.execute_unchecked(
        "INSERT INTO cronpolicy.rollout (kind, reason) VALUES ('full', 'leased for ever')",
        *(["SET LOCAL session_replication_role = replica"] if dba.backend == "postgresql"
          else []),
        "UPDATE cronpolicy.rollout SET lease_expires_at = 'infinity' WHERE id = 1")
    false = "false" if dba.backend == "postgresql" else "0"
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = %s" % false)
    assert dba.scalar("SELECT ended_at IS NOT NULL FROM cronpolicy.rollout") in (True, 1)
    leases = [row[0] for row in dba.execute(
        "SELECT old_row->>'lease_expires_at' FROM cronpolicy.policy_audit"
        " WHERE table_name = 'rollout' AND operation = 'UPDATE' ORDER BY id")]
    assert leases and leases[0] == "infinity", leases


def test_through_pgbouncer_transaction_pooling_the_lease_stays_its_owners(
        pg_roles, pg_dsn, tmp_path):
    """pgbouncer in transaction mode hands each transaction any server
    connection of its pool: pools are per login, so session_user is still
    the client's.  `deploy run` as one bot renews its lease through it;
    another bot's renewal through the same pooler is refused."""
    from .pgbouncer import Pgbouncer
    owner, other = pg_roles("cronpolicy_rollout"), pg_roles("cronpolicy_rollout")
    bouncer = Pgbouncer(pg_dsn, "transaction",
                        users=(login_of(owner), login_of(other))).start()
    try:
        database = psycopg2.extensions.parse_dsn(pg_dsn)["dbname"]
        pooled_owner = bouncer.dsn(database, user=login_of(owner))
        pooled_other = bouncer.dsn(database, user=login_of(other))
        env = make_env(tmp_path, pooled_owner)
        config = tmp_path / "cronpolicy.conf"
        config.write_text(config.read_text() + "heartbeat_interval = 0.2s\nlease_ttl = 30s\n")
        done = tmp_path / "done"
        runner = deploy_run(env, "sh", "-c", "while [ ! -e %s ]; do sleep 0.05; done" % done)
        dba = DBA(pg_dsn)
        try:
            assert read_line(runner.stdout).startswith("rollout #1 began")
            wait_for(lambda: dba.scalar("SELECT lease_expires_at FROM cronpolicy.rollout")
                     is not None, what="a lease")
            first = dba.scalar("SELECT lease_expires_at FROM cronpolicy.rollout")
            wait_for(lambda: dba.scalar("SELECT lease_expires_at FROM cronpolicy.rollout")
                     > first, what="the lease renewed through the pooler")
            connection = psycopg2.connect(pooled_other)
            connection.autocommit = True
            try:
                with connection.cursor() as cursor:
                    with pytest.raises(psycopg2.Error) as refused:
                        cursor.execute("UPDATE cronpolicy.rollout SET lease_expires_at = now()"
                                       " + interval '50 minutes' WHERE id = 1")
            finally:
                connection.close()
            assert refused.value.pgcode == "23514" and login_of(owner) in str(refused.value)
            done.write_text("")
            out, err = finish(runner)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.communicate(timeout=30)
        assert runner.returncode == 0 and err == "", (out, err)
        assert dba.execute("SELECT owner, ended_by FROM cronpolicy.rollout") == [
            (login_of(owner), login_of(owner))]
    finally:
        bouncer.close()


def test_a_rollout_ended_by_the_switches_keeps_no_lease(dba, script_env):
    """Ending a rollout clears its lease (schema 26 says so, PostgreSQL's
    trigger does it for every end): on SQLite the plain-SQL switches ended
    it and left the lease, so `rollouts --json` showed an ended rollout
    with a lease running on."""
    false = "false" if dba.backend == "postgresql" else "0"
    lease = dba.now_plus(600)
    dba.execute("INSERT INTO cronpolicy.rollout (kind, reason, lease_expires_at)"
                " VALUES ('full', 'release 4521', %s)" % lease)
    dba.execute("INSERT INTO cronpolicy.rollout (kind, services, reason, lease_expires_at)"
                " VALUES ('services', 'mail', 'release 4522', %s)" % lease)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = %s" % false)
    dba.execute("DELETE FROM cronpolicy.service_deploy WHERE service = 'mail'")
    assert dba.execute("SELECT id, ended_at IS NOT NULL, lease_expires_at"
                       " FROM cronpolicy.rollout ORDER BY id") in (
        [(1, True, None), (2, True, None)], [(1, 1, None), (2, 1, None)])
    result = subprocess.run([sys.executable, "-m", "cronpolicy.tooling.cli", "rollouts",
                             "--json"], env=script_env, capture_output=True, text=True,
                            timeout=120)
    import json
    assert [row["lease_expires_at"] for row in json.loads(result.stdout)["rollouts"]] == [
        None, None], result.stderr


def test_an_ended_rollout_takes_no_lease(dba):
    """A lease says the owning process lives for an open rollout: its owner's
    plain UPDATE (or a SQLite writer's) gave an ended rollout one, which
    `rollouts --json` then showed running on."""
    dba.execute("INSERT INTO cronpolicy.rollout (kind, reason) VALUES ('full', 'release 4521')")
    dba.execute("UPDATE cronpolicy.rollout SET ended_at = %s WHERE id = 1" % dba.now_plus(0))
    dba.execute("UPDATE cronpolicy.rollout SET lease_expires_at = %s WHERE id = 1"
                % dba.now_plus(600))
    assert dba.scalar("SELECT lease_expires_at FROM cronpolicy.rollout WHERE id = 1") is None
