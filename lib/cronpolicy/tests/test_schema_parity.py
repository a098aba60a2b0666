"""The SQLite schema against the PostgreSQL one: the same tables and columns,
the same bad rows refused, every column of the audited tables audited.

The SQLite patches are a hand-kept mirror of the PostgreSQL ones (different
dialect, no row-to-JSON for the audit triggers), so these tests compare the
two databases as built by their patches, not each against the code alone.
"""

import json

import pytest

from cronpolicy.tooling import tables

from .conftest import DBA, upgraded
from .test_schema import _reflect

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration


def _shape(reflected):
    """What must agree across backends, per table."""
    shape = {}
    for name, found in reflected.items():
        generated = set(found["pk"]["constrained_columns"]) if len(
            found["pk"]["constrained_columns"]) == 1 else set()
        shape[name] = {
            "columns": [(column["name"], column["nullable"],
                         column.get("default") is not None or column.get("identity") is not None
                         or column["name"] in generated)
                        for column in found["columns"]],
            "primary key": found["pk"]["constrained_columns"],
            "checks": sorted(check["name"] for check in found["checks"]
                             if not check["name"].endswith("_boolean")),
            "unique": sorted(unique["name"] for unique in found["unique"]),
            "indexes": sorted(index["name"] for index in found["indexes"]
                              if not index.get("duplicates_constraint")),
        }
    return shape


def assert_same_schema(postgres, sqlite):
    postgres, sqlite = _shape(postgres), _shape(sqlite)
    assert sorted(postgres) == sorted(sqlite), "tables differ"
    for table in postgres:
        for aspect in postgres[table]:
            assert postgres[table][aspect] == sqlite[table][aspect], (table, aspect)


def test_both_backends_build_the_same_tables_and_columns(empty_pg_dsn, sqlite_dsn):
    _, postgres = _reflect(upgraded(empty_pg_dsn))
    _, sqlite = _reflect(sqlite_dsn)
    assert_same_schema(postgres, sqlite)


def test_the_comparison_fails_when_a_column_is_added_to_one_side_only(empty_pg_dsn, sqlite_dsn):
    DBA(upgraded(empty_pg_dsn)).execute(
        "ALTER TABLE cronpolicy.script_policy ADD COLUMN max_retries integer")
    _, postgres = _reflect(empty_pg_dsn)
    _, sqlite = _reflect(sqlite_dsn)
    with pytest.raises(AssertionError) as failure:
        assert_same_schema(postgres, sqlite)
    assert "script_policy" in str(failure.value)


# The same bad rows refused --------------------------------------------------------

#: For every constraint, a row that breaks it, in SQL both backends accept
#: ({now0}: the database clock now, {now1}: an hour later).
BAD_ROWS = {
    "script_policy_name_host_key":
        "INSERT INTO cronpolicy.script_policy (name) VALUES ('a'), ('a')",
    "script_policy_name_not_empty": "INSERT INTO cronpolicy.script_policy (name) VALUES ('')",
    "script_policy_host_not_empty":
        "INSERT INTO cronpolicy.script_policy (name, host) VALUES ('a', '')",
    "script_policy_expected_runtime_positive":
        "INSERT INTO cronpolicy.script_policy (name, expected_runtime) VALUES ('a', {zero})",
    "script_policy_expected_interval_positive":
        "INSERT INTO cronpolicy.script_policy (name, expected_interval) VALUES ('a', {zero})",
    "script_policy_max_concurrent_positive":
        "INSERT INTO cronpolicy.script_policy (name, max_concurrent) VALUES ('a', 0)",
    "deploy_state_single_row": "INSERT INTO cronpolicy.deploy_state (id) VALUES (2)",
    "rollout_window_ends_after_start":
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at) VALUES ({now1}, {now0})",
    "rollout_window_host_not_empty":
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, host) VALUES ({now0}, {now1}, '')",
    "rollout_window_script_not_empty":
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, script)"
        " VALUES ({now0}, {now1}, '')",
    "script_run_name_not_empty":
        "INSERT INTO cronpolicy.script_run (name, host) VALUES ('', 'h')",
    "script_run_known_status":
        "INSERT INTO cronpolicy.script_run (name, host, status, finished_at)"
        " VALUES ('a', 'h', 'exploded', {now0})",
    "script_run_finished_unless_running":
        "INSERT INTO cronpolicy.script_run (name, host, status) VALUES ('a', 'h', 'succeeded')",
    "script_run_finishes_after_start":
        "INSERT INTO cronpolicy.script_run (name, host, status, started_at, finished_at)"
        " VALUES ('a', 'h', 'succeeded', {now1}, {now0})",
    "policy_audit_known_operation":
        "INSERT INTO cronpolicy.policy_audit (table_name, operation) VALUES ('x', 'MERGE')",
    "run_slot_slot_not_negative":
        "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
        " VALUES ('a', -1, 'k', 'h', {now1})",
    # Schema patch 0009 (on SQLite, triggers): finite times, durations up to 100 years.
    "script_policy_values_in_range":
        "INSERT INTO cronpolicy.script_policy (name, expected_runtime) VALUES ('a', {century} * 2)",
    "deploy_state_values_in_range": "INSERT INTO cronpolicy.deploy_state (changed_at)"
                                    " VALUES ('10000-01-01 00:00:00')",
    "rollout_window_values_in_range":
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at) VALUES ({now0}, 'infinity')",
    "script_run_values_in_range":
        "INSERT INTO cronpolicy.script_run (name, host, estimate_seconds) VALUES ('a', 'h', -1)",
    "run_slot_values_in_range":
        "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
        " VALUES ('a', 0, 'k', 'h', '1969-12-31 23:59:59')",
    "drain_values_in_range":
        "INSERT INTO cronpolicy.drain (started_at, finished_at, quiet)"
        " VALUES ({now0}, '20000-01-01 00:00:00', {true})",
    # ({role}: a role the server knows; on PostgreSQL a trigger refuses any
    # other, schema patch 0015.)
    "script_owner_name_role_key":
        "INSERT INTO cronpolicy.script_owner (name, db_role) VALUES ('a', {role}), ('a', {role})",
    "script_owner_name_not_empty":
        "INSERT INTO cronpolicy.script_owner (name, db_role) VALUES ('', {role})",
    "script_owner_db_role_not_empty":
        "INSERT INTO cronpolicy.script_owner (name, db_role) VALUES ('a', '')",
    # (On PostgreSQL a trigger sets granted_at; the check still stands behind it.)
    "script_owner_values_in_range": {
        "postgresql": "SET session_replication_role = replica;"
                      " INSERT INTO cronpolicy.script_owner (name, db_role, granted_at)"
                      " VALUES ('a', 'r', '1969-01-01 00:00:00')",
        "sqlite": "INSERT INTO cronpolicy.script_owner (name, db_role, granted_at)"
                  " VALUES ('a', 'r', '1969-01-01 00:00:00')"},
    # Schema patch 0015.
    "host_login_host_role_key":
        "INSERT INTO cronpolicy.host_login (host, db_role) VALUES ('a', {role}), ('a', {role})",
    "host_login_host_not_empty":
        "INSERT INTO cronpolicy.host_login (host, db_role) VALUES ('', {role})",
    "host_login_db_role_not_empty":
        "INSERT INTO cronpolicy.host_login (host, db_role) VALUES ('a', '')",
    "host_login_values_in_range": {
        "postgresql": "SET session_replication_role = replica;"
                      " INSERT INTO cronpolicy.host_login (host, db_role, granted_at)"
                      " VALUES ('a', 'r', '1969-01-01 00:00:00')",
        "sqlite": "INSERT INTO cronpolicy.host_login (host, db_role, granted_at)"
                  " VALUES ('a', 'r', '1969-01-01 00:00:00')"},
    # Schema patch 0013.
    "script_policy_catch_up_known":
        "INSERT INTO cronpolicy.script_policy (name, catch_up) VALUES ('a', 'twice')",
    "script_schedule_one_per_host":
        "INSERT INTO cronpolicy.script_schedule (name, host, schedule)"
        " VALUES ('a', 'h', '@daily'), ('a', 'h', '@hourly')",
    "script_schedule_values_in_range": {
        "postgresql": "SET session_replication_role = replica;"
                      " INSERT INTO cronpolicy.script_schedule (name, host, schedule,"
                      " registered_at) VALUES ('a', 'h', '@daily', '1969-01-01 00:00:00')",
        "sqlite": "INSERT INTO cronpolicy.script_schedule (name, host, schedule, registered_at)"
                  " VALUES ('a', 'h', '@daily', '1969-01-01 00:00:00')"},
    # Schema patch 0014.
    "script_policy_needs_known":
        "INSERT INTO cronpolicy.script_policy (name, needs) VALUES ('a', 'xmlrpc, librarian')",
    "rollout_window_service_known":
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, service)"
        " VALUES ({now0}, {now1}, 'x;y')",
    "service_deploy_one_per_service":
        "INSERT INTO cronpolicy.service_deploy (service) VALUES ('xmlrpc'), ('xmlrpc')",
    "service_deploy_service_known":
        "INSERT INTO cronpolicy.service_deploy (service) VALUES ('')",
    "service_deploy_values_in_range": {
        "postgresql": "SET session_replication_role = replica;"
                      " INSERT INTO cronpolicy.service_deploy (service, changed_at)"
                      " VALUES ('xmlrpc', '1969-01-01 00:00:00')",
        "sqlite": "INSERT INTO cronpolicy.service_deploy (service, changed_at)"
                  " VALUES ('xmlrpc', '1969-01-01 00:00:00')"},
    # Schema patch 0016 (rollouts).  (An administrator may say when a rollout began, by
    # patch 0017 not after now.)
    "rollout_kind_known": "INSERT INTO cronpolicy.rollout (kind) VALUES ('partial')",
    "rollout_services_fit_kind":
        "INSERT INTO cronpolicy.rollout (kind, services) VALUES ('full', 'xmlrpc')",
    "rollout_expected_duration_positive":
        "INSERT INTO cronpolicy.rollout (expected_duration) VALUES ({zero})",
    "rollout_ends_after_it_begins":
        "INSERT INTO cronpolicy.rollout (began_at, ended_at) VALUES ({now0}, '2000-01-01')",
    "rollout_quiet_after_it_begins":
        "INSERT INTO cronpolicy.rollout (began_at, quiet_at) VALUES ({now0}, '2000-01-01')",
    "rollout_values_in_range":
        "INSERT INTO cronpolicy.rollout (expected_duration) VALUES ({century} * 2)",
    # (Without a rollout #1: on PostgreSQL the foreign key is left out of the question.)
    "rollout_awaited_seen_in_order": {
        "postgresql": "SET session_replication_role = replica;"
                      " INSERT INTO cronpolicy.rollout_awaited (rollout_id, run_id, name, host,"
                      " first_seen_at, last_seen_at) VALUES (1, 1, 'a', 'h', {now1}, {now0})",
        "sqlite": "INSERT INTO cronpolicy.rollout_awaited (rollout_id, run_id, name, host,"
                  " first_seen_at, last_seen_at) VALUES (1, 1, 'a', 'h', {now1}, {now0})"},
    "rollout_awaited_values_in_range": {
        "postgresql": "SET session_replication_role = replica;"
                      " INSERT INTO cronpolicy.rollout_awaited (rollout_id, run_id, name, host,"
                      " first_seen_at) VALUES (1, 1, 'a', 'h', '1969-01-01 00:00:00')",
        "sqlite": "INSERT INTO cronpolicy.rollout_awaited (rollout_id, run_id, name, host,"
                  " first_seen_at) VALUES (1, 1, 'a', 'h', '1969-01-01 00:00:00')"},
    # Schema patch 0018 (counters that pruning never lowers).
    "pruned_runs_runs_not_negative":
        "INSERT INTO cronpolicy.pruned_runs (name, host, status, runs) VALUES ('a', 'h', 'failed', -1)",
    "run_tally_runs_not_negative":
        "INSERT INTO cronpolicy.run_tally (name, host, status, runs) VALUES ('a', 'h', 'failed', -1)",
    # Schema patch 0027 (keys run_tally's index can hold).
    "script_run_keys_fit":
        "INSERT INTO cronpolicy.script_run (name, host, pid) VALUES ('a', '%s', 1)" % ("h" * 256),
    # Schema patch 0019 (the policy's version row).
    "policy_version_single_row": "INSERT INTO cronpolicy.policy_version (id) VALUES (2)",
    "drain_finishes_after_start":
        "INSERT INTO cronpolicy.drain (started_at, finished_at, quiet) VALUES ({now1}, {now0}, {true})",
}


def test_every_constraint_has_a_bad_row(empty_pg_dsn):
    _, postgres = _reflect(upgraded(empty_pg_dsn))
    names = {check["name"] for found in postgres.values() for check in found["checks"]}
    names |= {unique["name"] for found in postgres.values() for unique in found["unique"]}
    assert names == set(BAD_ROWS)


@pytest.mark.parametrize("constraint", sorted(BAD_ROWS))
def test_both_backends_refuse_the_same_bad_rows(dba, constraint):
    sql = BAD_ROWS[constraint]
    sql = (sql if isinstance(sql, str) else sql[dba.backend]).format(
        now0=dba.now_plus(0), now1=dba.now_plus(3600), true="true",
        zero="interval '0 seconds'" if dba.backend == "postgresql" else "0",
        century="interval '100 years'" if dba.backend == "postgresql" else "3155760000",
        role="current_user" if dba.backend == "postgresql" else "'r'")
    tables = ("script_policy", "rollout_window", "script_run", "policy_audit", "drain",
              "deploy_state", "script_owner", "script_schedule", "service_deploy", "rollout",
              "rollout_awaited", "host_login")
    before = dba.counts(*tables)
    with pytest.raises(Exception) as refused:
        dba.execute(sql)
    message = str(refused.value).lower()
    assert "constraint" in message or "unique" in message, message
    assert dba.counts(*tables) == before


# Every column audited --------------------------------------------------------------

AUDITED = ("script_policy", "rollout_window", "deploy_state", "script_owner", "service_deploy",
           "host_login")
# A trigger keeps changed_at current; on SQLite the audit cannot tell a DBA's
# own update of it from the trigger's, so it is audited with other changes only.
NOT_AUDITED_ALONE = {"id", "changed_at"}
# On PostgreSQL the database sets who changed a row (schema patch 0011): a
# statement that names someone else changes nothing.
SET_BY_THE_DATABASE = {"changed_by", "created_by", "created_at", "cancelled_by", "granted_by",
                       "granted_at"}


def _new_value(dba, column):
    """SQL for a value of ``column`` that differs from any the test rows hold."""
    kind = type(column.type).__name__
    if kind == "Boolean":
        return "CASE WHEN %s THEN false ELSE true END" % column.name
    if kind == "Seconds":
        return "interval '7 minutes'" if dba.backend == "postgresql" else "420"
    if kind == "Integer":
        return "7"
    if kind == "Timestamp":
        return dba.now_plus(2 * 86400 if column.name == "ends_at" else 7200)
    # Columns with a closed set of values: one of them (none the test rows hold).
    known = {"schedule": "'7 * * * *'", "schedule_tz": "'Europe/Riga'", "catch_up": "'once'",
             "needs": "'xmlrpc,mail'", "service": "'librarian'",
             # A role the server knows (PostgreSQL refuses any other), unlike the test rows'.
             "db_role": "'pg_monitor'"}
    return known.get(column.name, "'changed-%s'" % column.name)


def _last_audit(dba, table):
    old, new = dba.execute("SELECT old_row, new_row FROM cronpolicy.policy_audit"
                           " WHERE table_name = {} ORDER BY id DESC LIMIT 1", (table,))[0]
    if dba.backend == "sqlite":
        old, new = json.loads(old), json.loads(new)
    return old, new


@pytest.mark.parametrize("table", AUDITED)
def test_every_column_of_the_audited_tables_is_audited(dba, table):
    if table == "script_policy":
        dba.execute("INSERT INTO cronpolicy.script_policy (name) VALUES ('job')")
    elif table == "rollout_window":
        dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at)"
                    " VALUES ({}, {})".format(dba.now_plus(60), dba.now_plus(86400)))
    elif table in ("script_owner", "host_login"):
        dba.execute("INSERT INTO cronpolicy.%s (%s, db_role) VALUES ('job', %s)" % (
            table, "name" if table == "script_owner" else "host",
            "current_user" if dba.backend == "postgresql" else "'cron'"))
    elif table == "service_deploy":
        dba.execute("INSERT INTO cronpolicy.service_deploy (service) VALUES ('xmlrpc')")
    skipped = NOT_AUDITED_ALONE | (SET_BY_THE_DATABASE if dba.backend == "postgresql" else set())
    columns = [column for column in tables.metadata.tables["cronpolicy." + table].columns
               if column.name not in skipped]
    assert columns
    # (Counted per table: a change to a switch also opens or ends a rollout.)
    count = "SELECT count(*) FROM cronpolicy.policy_audit WHERE table_name = '%s'" % table
    for column in columns:
        before = dba.scalar(count)
        dba.execute("UPDATE cronpolicy.%s SET %s = %s" % (table, column.name,
                                                          _new_value(dba, column)))
        assert dba.scalar(count) == before + 1, \
            "%s.%s: an UPDATE of it alone was not audited" % (table, column.name)
        old, new = _last_audit(dba, table)
        assert column.name in old and column.name in new, \
            "%s.%s is missing from the audited row" % (table, column.name)
        assert old[column.name] != new[column.name], "%s.%s" % (table, column.name)
