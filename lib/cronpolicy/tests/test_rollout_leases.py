"""Schema patch 0026: a rollout's lease is its owner's, and a rollout
holding values past the range guards can still be ended.

* A login renewing another login's open rollout (its lease_expires_at)
  kept a crashed owner's rollout looking alive, unaudited: now refused
  with one line naming the rollout and its owner, an administrator's
  change too.  Ending another's rollout (which clears its lease) still
  works and is audited; `deploy run` as a login holding only
  cronpolicy_rollout still renews its own.
* A rollout row holding values outside the ranges of patch 0009 (written
  with the guards off, restored from a dump) could not be ended nor marked
  quiet: the UPDATE that ends it was refused by the range check, so the
  fleet stayed stopped.  Now the change that ends it or marks it quiet
  brings the row into range, and the commands that read it say one line.

Real PostgreSQL (logins made per test, dropped after) and real SQLite files.
"""

import json
import subprocess
import sys

import psycopg2
import pytest

from cronpolicy import exitcodes

from .conftest import DBA, as_login, login_of, make_env, read_line, wait_for

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration


def cronpolicy(env, *argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "cronpolicy.tooling.cli"] + list(argv),
                          env=env, capture_output=True, text=True, timeout=timeout)


def connect(dsn):
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    return connection


def audit_count(dba):
    return dba.scalar("SELECT count(*) FROM cronpolicy.policy_audit WHERE table_name = 'rollout'")


# A lease is its owner's ---------------------------------------------------------------------

@pytest.fixture
def two_bots(pg_roles, pg_dsn):
    """(owner's DSN, another rollout login's DSN, an administrator's DSN), the
    owner having begun rollout #1 with a lease."""
    owner, other, admin = (pg_roles("cronpolicy_rollout"), pg_roles("cronpolicy_rollout"),
                           pg_roles("cronpolicy_admin"))
    assert as_login(owner, "INSERT INTO cronpolicy.rollout (reason, lease_expires_at)"
                           " VALUES ('release 4521', now() + interval '30 seconds')") is None
    return owner, other, admin


def lease(dba):
    return dba.scalar("SELECT lease_expires_at FROM cronpolicy.rollout WHERE id = 1")


def test_another_rollout_login_cannot_renew_a_rollout_it_does_not_own(two_bots, pg_dsn):
    owner, other, _ = two_bots
    dba = DBA(pg_dsn)
    before, audited = lease(dba), audit_count(dba)
    refused = as_login(other, "UPDATE cronpolicy.rollout"
                              " SET lease_expires_at = now() + interval '30 minutes' WHERE id = 1")
    assert refused is not None, "another login renewed rollout #1's lease"
    assert refused.pgcode == "23514"                        # check_violation
    message = str(refused).splitlines()[0]
    assert "rollout #1" in message and login_of(owner) in message and login_of(other) in message
    # Nor by setting it to nothing (the rollout would look ownerless), nor in
    # the same statement as another change.
    for sql in ("UPDATE cronpolicy.rollout SET lease_expires_at = NULL",
                "UPDATE cronpolicy.rollout SET reason = 'x', lease_expires_at = now()"
                " + interval '1 hour'"):
        assert getattr(as_login(other, sql), "pgcode", None) == "23514", sql
    assert lease(dba) == before and audit_count(dba) == audited
    # The owner renews it, unaudited, as before.
    assert as_login(owner, "UPDATE cronpolicy.rollout"
                           " SET lease_expires_at = now() + interval '40 seconds'") is None
    assert lease(dba) > before and audit_count(dba) == audited


def test_another_login_still_ends_it_and_marks_it_quiet_audited(two_bots, pg_dsn):
    _, other, _ = two_bots
    dba = DBA(pg_dsn)
    audited = audit_count(dba)
    assert as_login(other, "UPDATE cronpolicy.rollout SET quiet_at = now()") is None
    assert as_login(other, "UPDATE cronpolicy.rollout SET reason = 'release 4521 (late)'") is None
    assert as_login(other, "UPDATE cronpolicy.rollout SET ended_at = now()") is None
    [(ended_by, lease_left, quiet)] = dba.execute(
        "SELECT ended_by, lease_expires_at, quiet_at IS NOT NULL FROM cronpolicy.rollout")
    assert (ended_by, lease_left, quiet) == (login_of(other), None, True)
    assert audit_count(dba) == audited + 3
    assert dba.scalar("SELECT db_user FROM cronpolicy.policy_audit WHERE table_name = 'rollout'"
                      " ORDER BY id DESC LIMIT 1") == login_of(other)


def test_an_administrator_cannot_renew_anothers_lease_either(two_bots, pg_dsn):
    """A lease says the owning process lives: no other login vouches for
    it, an administrator no more than a bot (one who wants the fleet held
    begins a rollout of its own, audited)."""
    owner, _, admin = two_bots
    dba = DBA(pg_dsn)
    before = lease(dba)
    refused = as_login(admin, "UPDATE cronpolicy.rollout"
                              " SET lease_expires_at = now() + interval '10 minutes'")
    assert getattr(refused, "pgcode", None) == "23514" and login_of(owner) in str(refused)
    assert lease(dba) == before
    assert as_login(admin, "UPDATE cronpolicy.rollout SET ended_at = now()") is None
    assert dba.scalar("SELECT ended_by FROM cronpolicy.rollout") == login_of(admin)


def test_deploy_end_by_another_bot_and_its_renewal_refused_in_one_line(two_bots, pg_dsn,
                                                                       tmp_path):
    from cronpolicy.config import Settings
    from cronpolicy.errors import CronPolicyError
    from cronpolicy.tooling import deploy
    from cronpolicy.tooling.database import Database
    owner, other, _ = two_bots
    db = Database(Settings(dsn=other, dsn_source="--dsn"))
    with pytest.raises(CronPolicyError) as refused:
        deploy.renew(db, 1, 600)
    message = str(refused.value)
    assert "rollout #1" in message and login_of(owner) in message and "\n" not in message
    result = cronpolicy(make_env(tmp_path, other), "deploy", "end", "1")
    assert result.returncode == 0 and "rollout #1 ended" in result.stdout, result.stderr
    assert DBA(pg_dsn).scalar("SELECT ended_by FROM cronpolicy.rollout") == login_of(other)


def test_deploy_run_as_a_rollout_login_renews_its_own_lease(pg_roles, pg_dsn, tmp_path):
    bot = pg_roles("cronpolicy_rollout")
    env = make_env(tmp_path, bot)
    config = tmp_path / "cronpolicy.conf"
    config.write_text(config.read_text() + "heartbeat_interval = 0.2s\nlease_ttl = 30s\n")
    dba = DBA(pg_dsn)
    runner = subprocess.Popen([sys.executable, "-m", "cronpolicy.tooling.cli", "deploy", "run",
                               "--reason", "mine", "--", "sleep", "3"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(runner.stdout).startswith("rollout #1 began")
        wait_for(lambda: lease(dba) is not None, what="a lease")
        first = lease(dba)
        wait_for(lambda: (lease(dba) or first) > first, what="the lease renewed")
        out, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate(timeout=30)
    assert runner.returncode == 0, err
    assert "cannot renew" not in err and "Traceback" not in err
    assert dba.execute("SELECT owner, ended_by FROM cronpolicy.rollout") == [
        (login_of(bot), login_of(bot))]


# A rollout past the range guards can be ended ------------------------------------------------

#: Open rollouts holding values outside patch 0009's ranges, written past
#: the guards: #1 full, #2 of mail (quiet already, at a time out of range).
PAST_THE_GUARDS = {
    "postgresql": [
        "INSERT INTO cronpolicy.rollout (kind, reason, began_at, expected_duration)"
        " VALUES ('full', 'from a dump', '-infinity', interval '100000 years')",
        "INSERT INTO cronpolicy.rollout (kind, services, reason, began_at, quiet_at)"
        " VALUES ('services', 'mail', 'restored', '0001-01-01 00:00+00', 'infinity')",
        # A DBA's triggers off: a lease for ever.
        "SET LOCAL session_replication_role = replica",
        "UPDATE cronpolicy.rollout SET lease_expires_at = 'infinity' WHERE id = 1",
        "SET LOCAL session_replication_role = origin",
    ],
    "sqlite": [
        "INSERT INTO cronpolicy.rollout (kind, reason, began_at, expected_duration,"
        " lease_expires_at) VALUES ('full', 'from a dump', '0001-01-01 00:00:00', 3.1536e12,"
        " 'infinity')",
        "INSERT INTO cronpolicy.rollout (kind, services, reason, began_at, quiet_at,"
        " expected_duration) VALUES ('services', 'mail', 'restored', 'yesterday', 'infinity',"
        " '20 minutes')",
    ],
}


def all_in_range(dba):
    """Whether every rollout row now satisfies rollout_values_in_range."""
    if dba.backend == "postgresql":
        dba.execute("ALTER TABLE cronpolicy.rollout VALIDATE CONSTRAINT rollout_values_in_range")
        return True
    # (SQLite checks a row's CHECK constraints when a column they name is set.)
    dba.execute("UPDATE cronpolicy.rollout SET began_at = began_at")
    return True


def open_ids(dba):
    return [row[0] for row in dba.execute(
        "SELECT id FROM cronpolicy.rollout WHERE ended_at IS NULL ORDER BY id")]


def test_plain_sql_switches_end_rollouts_past_the_range_guards(dba):
    dba.execute_unchecked(*PAST_THE_GUARDS[dba.backend])
    assert open_ids(dba) == [1, 2]
    false = "false" if dba.backend == "postgresql" else "0"
    # (Each refused with rollout_values_in_range before patch 0026.)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = %s" % false)
    dba.execute("DELETE FROM cronpolicy.service_deploy WHERE service = 'mail'")
    assert open_ids(dba) == []
    assert dba.scalar("SELECT deploy_pending FROM cronpolicy.deploy_state") in (False, 0)
    assert all_in_range(dba)


def test_plain_sql_ends_and_marks_quiet_a_rollout_past_the_range_guards(pg_dsn):
    dba = DBA(pg_dsn)
    dba.execute_unchecked(*PAST_THE_GUARDS["postgresql"])
    dba.execute("UPDATE cronpolicy.rollout SET quiet_at = now() WHERE id = 1")
    dba.execute("UPDATE cronpolicy.rollout SET reason = 'still restored' WHERE id = 2")
    dba.execute("UPDATE cronpolicy.rollout SET ended_at = now()")
    assert open_ids(dba) == [] and all_in_range(dba)
    [(began, expected, lease_left)] = dba.execute(
        "SELECT began_at::text, expected_duration::text, lease_expires_at"
        " FROM cronpolicy.rollout WHERE id = 1")
    assert began.startswith("1970-01-01") and expected == "100 years" and lease_left is None
    # Brought into range by the changes that ended them: audited, old values kept.
    assert dba.scalar("SELECT count(*) FROM cronpolicy.policy_audit WHERE table_name = 'rollout'"
                      " AND operation = 'UPDATE' AND old_row->>'began_at' = '-infinity'") == 1


def test_every_command_reading_a_rollout_past_the_guards_says_one_line(dba, script_env,
                                                                        tmp_path):
    from .test_serve import Server
    dba.execute_unchecked(*PAST_THE_GUARDS[dba.backend])
    server = Server(script_env, "--allow-writer")
    try:
        for path in ("/api/live", "/api/overview", "/rollouts", "/"):
            status, _, body = server.get(path)
            assert status == 200 and "Traceback" not in body, (path, body)
        assert len(json.loads(server.get("/api/live")[2])["rollouts"]) == 2
    finally:
        server.stop()
    for argv in (("rollouts",), ("rollouts", "--json"), ("status",), ("overdue",),
                 ("deploy", "wait", "1", "--timeout", "3s"),
                 ("deploy", "wait", "--service", "mail", "--timeout", "3s"),
                 ("deploy", "end", "1"), ("deploy", "end", "2"), ("rollouts",)):
        result = cronpolicy(script_env, *argv)
        assert "Traceback" not in result.stderr, (argv, result.stderr)
        if argv[0] == "overdue":
            assert result.returncode == exitcodes.OVERDUE, (argv, result.stderr)
        else:
            assert result.returncode == 0, (argv, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) <= 1, (argv, result.stderr)
    assert open_ids(dba) == [] and all_in_range(dba)
    assert cronpolicy(script_env, "check", "any-script").returncode == exitcodes.OK
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE quiet_at IS NOT NULL") == 2
