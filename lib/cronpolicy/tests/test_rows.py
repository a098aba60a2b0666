"""One place turns rows into objects: the shapes match the tables, and every
path into them (the gate's store, the tooling's SQLAlchemy, the cache, the
spool) gives the same object for the same row."""

import datetime
import decimal

import pytest

from cronpolicy.config import Settings
from cronpolicy.rows import (
    AuditEntry, RunRow, DeployState, PolicyRow, RunEnd, RunRecord, Window, from_mapping, to_mapping, to_seconds,
    to_time)
from cronpolicy.store import open_store
from cronpolicy.tooling import tables
from cronpolicy.tooling.explain import DOCUMENT_KINDS
from cronpolicy.tooling.database import Database

UTC = datetime.timezone.utc

# Columns a shape leaves out on purpose, and why.
NOT_IN_SHAPE = {
    "deploy_state": {"id"},                                  # always 1
    # Written by the database or the watcher, never by a start's record.
    # spooled: said by the statement that writes the record late.
    "script_run": {"id", "db_user", "heartbeat_at", "safe_to_interrupt", "lease_expires_at",
                   "spooled"},
}
SHAPES = {"script_policy": PolicyRow, "rollout_window": Window, "deploy_state": DeployState,
          "script_run": RunRecord}


@pytest.mark.parametrize("table", sorted(SHAPES))
def test_each_shape_has_exactly_the_columns_of_its_table(table):
    columns = [column.name for column in tables.metadata.tables["cronpolicy." + table].columns]
    expected = [name for name in columns if name not in NOT_IN_SHAPE.get(table, set())]
    assert sorted(SHAPES[table]._fields) == sorted(expected)


def test_run_end_names_only_script_run_columns():
    columns = {column.name for column in tables.script_run.columns}
    assert set(RunEnd._fields) <= columns


@pytest.mark.parametrize("shape, table", [(RunRow, "script_run"), (AuditEntry, "policy_audit")])
def test_the_read_commands_shapes_are_whole_rows(shape, table):
    columns = tables.metadata.tables["cronpolicy." + table].columns
    assert sorted(shape._fields) == sorted(column.name for column in columns)


@pytest.mark.parametrize("table", sorted(DOCUMENT_KINDS))
def test_audit_documents_are_read_by_the_kinds_of_their_columns(table):
    """What `why` and `audit` turn back into booleans, times and seconds is
    every column the tables declare as such."""
    expected = {"Boolean": ("bool", "bool?"), "Timestamp": ("time",), "Seconds": ("seconds",)}
    for column in tables.metadata.tables["cronpolicy." + table].columns:
        kinds = expected.get(type(column.type).__name__)
        if kinds:
            assert DOCUMENT_KINDS[table].get(column.name) in kinds, column.name


@pytest.mark.parametrize("value, expected", [
    (datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC), datetime.datetime(2026, 11, 28, 2, 0,
                                                                           tzinfo=UTC)),
    (1795831200, datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)),
    (decimal.Decimal("1795831200.5"), datetime.datetime(2026, 11, 28, 2, 0, 0, 500000, tzinfo=UTC)),
    ("2026-11-28 02:00:00.000", datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)),
    ("2026-11-28T03:00+01:00", datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)),
    (None, None),
])
def test_times_from_every_backend(value, expected):
    assert to_time(value) == expected


def test_seconds_from_every_backend():
    assert to_seconds(datetime.timedelta(minutes=20)) == 1200.0
    assert to_seconds(decimal.Decimal("1.5")) == 1.5 and to_seconds(None) is None


def test_unknown_columns_are_ignored_and_missing_ones_defaulted():
    row = from_mapping(PolicyRow, {"id": 3, "name": "x", "enabled": 0, "from_the_future": 1})
    assert (row.id, row.name, row.host, row.enabled, row.interruptible) == (3, "x", "*", False,
                                                                          False)
    assert from_mapping(PolicyRow, to_mapping(row)) == row


@pytest.mark.parametrize("raw", [
    {"id": "7", "name": "job", "host": "h*", "enabled": 0, "reason": None,
     "expected_runtime": datetime.timedelta(minutes=20), "rollout_exempt": 1,
     "changed_by": "dba", "changed_at": "2026-11-28 02:00:00.5", "interruptible": None,
     "fleet_single_instance": 0, "expected_interval": decimal.Decimal("60"),
     "max_concurrent": 2.0, "schedule": "@daily", "schedule_tz": None, "catch_up": "once",
     "needs": "xmlrpc", "from_the_future": 1},
    {"id": 1, "name": "x", "host": "*", "enabled": True, "reason": "",
     "expected_runtime": None, "rollout_exempt": False, "changed_by": "",
     "changed_at": datetime.datetime(2026, 1, 1, 3, tzinfo=datetime.timezone(
         datetime.timedelta(hours=2))), "interruptible": False, "fleet_single_instance": None,
     "expected_interval": "two", "max_concurrent": None, "schedule": None,
     "schedule_tz": None, "catch_up": None, "needs": None},
])
def test_a_row_with_every_column_is_made_as_any_mapping_makes_it(raw):
    """Issue 32.3: a dict holding every field becomes its shape by
    position, which must give what the keyword path gives (a mapping that
    is not a dict, such as sqlite3.Row, still takes it)."""
    import types
    by_position = from_mapping(PolicyRow, raw)
    by_keyword = from_mapping(PolicyRow, types.MappingProxyType(raw))
    assert by_position == by_keyword and type(by_position) is PolicyRow
    assert [type(value) for value in by_position] == [type(value) for value in by_keyword]


def test_the_gate_and_the_tooling_read_the_same_objects(dsn, dba, tmp_path):
    interval = "interval '20 minutes'" if dba.backend == "postgresql" else "1200"
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, enabled, reason,"
                " expected_runtime, rollout_exempt, interruptible, fleet_single_instance,"
                " expected_interval) VALUES ('job', 'web?', false, 'why', %s, true, true, true, %s)"
                % (interval, interval))
    dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason, host, script)"
                " VALUES ({}, {}, 'r', 'web*', 'j*')".format(dba.now_plus(60), dba.now_plus(600)))
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true, reason = 'r42'")
    settings = Settings(dsn=dsn, dsn_source="--dsn", lock_dir=str(tmp_path / "locks"))
    store = open_store(settings)
    try:
        gate_view = store.load_inputs("job", 20)
    finally:
        store.close()
    database = Database(settings)
    try:
        with database.begin() as connection:
            tooling_view = database.inputs(connection)
    finally:
        database.dispose()
    assert gate_view.policies == tooling_view.policies
    assert gate_view.windows == tooling_view.windows
    assert gate_view.deploy == tooling_view.deploy
    [policy] = gate_view.policies
    assert (policy.expected_runtime, policy.fleet_single_instance, policy.enabled) == (
        1200.0, True, False)
