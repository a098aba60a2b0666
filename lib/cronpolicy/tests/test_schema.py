"""The SQL patches, applied in order, give exactly the tables the code expects."""

import subprocess
import sys

import psycopg2
import pytest
from sqlalchemy import TypeDecorator, inspect

from cronpolicy import schema
from cronpolicy.config import Settings
from cronpolicy.store.postgresql import PostgresStore
from cronpolicy.store.sqlite import connect_sqlite
from cronpolicy.tooling import tables
from cronpolicy.tooling.database import Database
from cronpolicy.errors import DatabaseError, SchemaError

from .conftest import DBA


def _reflect(dsn):
    database = Database(Settings(dsn=dsn, dsn_source="--dsn"))
    try:
        with database.engine.connect() as connection:
            inspector = inspect(connection)
            names = set(inspector.get_table_names(schema=tables.SCHEMA))
            reflected = {}
            for name in names:
                reflected[name] = {
                    "columns": inspector.get_columns(name, schema=tables.SCHEMA),
                    "pk": inspector.get_pk_constraint(name, schema=tables.SCHEMA),
                    "indexes": inspector.get_indexes(name, schema=tables.SCHEMA),
                    "unique": inspector.get_unique_constraints(name, schema=tables.SCHEMA),
                    "checks": inspector.get_check_constraints(name, schema=tables.SCHEMA),
                    "comment": (inspector.get_table_comment(name, schema=tables.SCHEMA)
                                if database.backend == "postgresql" else None),
                }
            if database.backend == "sqlite":
                _add_trigger_checks(connection, reflected)
            return connection.dialect, reflected
    finally:
        database.dispose()


def _add_trigger_checks(connection, reflected):
    """SQLite cannot add a CHECK constraint to a table that exists: patches
    enforce <table>_values_in_range (and script_run_keys_fit, patch 0027)
    with a BEFORE INSERT and a BEFORE UPDATE trigger instead.  Where both
    are present, count it as the constraint."""
    from sqlalchemy import text
    triggers = {name for (name,) in connection.execute(text(
        "SELECT name FROM cronpolicy.sqlite_master WHERE type = 'trigger'"))}
    for table, found in reflected.items():
        for constraint in (table + "_values_in_range", table + "_keys_fit"):
            if {constraint + "_insert", constraint + "_update"} <= triggers:
                found["checks"].append({"name": constraint, "sqltext": "(triggers)"})


def _type_sql(type_, dialect):
    if isinstance(type_, TypeDecorator):
        type_ = type_.load_dialect_impl(dialect)
    return type_.compile(dialect=dialect).upper()


def _check_matches_tables(dsn):
    dialect, reflected = _reflect(dsn)
    assert set(reflected) == set(tables.metadata.tables[key].name
                                 for key in tables.metadata.tables)
    for table in tables.metadata.sorted_tables:
        found = reflected[table.name]
        columns = {column["name"]: column for column in found["columns"]}
        assert [column["name"] for column in found["columns"]] == [c.name for c in table.columns], \
            table.name
        for column in table.columns:
            actual = columns[column.name]
            where = "%s.%s" % (table.name, column.name)
            assert actual["nullable"] == column.nullable, where
            assert _type_sql(actual["type"], dialect) == _type_sql(column.type, dialect), where
            generated = table.autoincrement_column is column
            has_default = (actual.get("default") is not None or actual.get("identity") is not None
                           or (dialect.name == "sqlite" and generated))
            expects_default = column.server_default is not None or generated
            assert has_default == expects_default, where
        assert found["pk"]["constrained_columns"] == [c.name for c in table.primary_key.columns]
        assert {index["name"] for index in found["indexes"]
                if not index.get("duplicates_constraint")} == {i.name for i in table.indexes}
        expected_unique = {c.name for c in table.constraints
                           if c.__class__.__name__ == "UniqueConstraint"}
        assert {u["name"] for u in found["unique"]} == expected_unique
        expected_checks = {c.name for c in table.constraints
                           if c.__class__.__name__ == "CheckConstraint"}
        assert expected_checks <= {check["name"] for check in found["checks"]}, table.name
    return reflected


def test_postgres_patches_give_the_tables_the_code_uses(empty_pg_dsn):
    connection = psycopg2.connect(empty_pg_dsn)
    try:
        assert schema.upgrade_postgres(connection) == [
            name for _, name, _ in schema.patches("postgresql")]
    finally:
        connection.close()
    reflected = _check_matches_tables(empty_pg_dsn)
    # Every table and column carries a COMMENT for the DBAs.
    for name, found in reflected.items():
        assert found["comment"]["text"], name
        for column in found["columns"]:
            assert column.get("comment"), "%s.%s has no COMMENT" % (name, column["name"])


def test_sqlite_schema_created_on_first_use_matches_too(sqlite_dsn):
    _check_matches_tables(sqlite_dsn)


def test_both_backends_have_the_same_check_constraints(empty_pg_dsn, sqlite_dsn):
    connection = psycopg2.connect(empty_pg_dsn)
    try:
        schema.upgrade_postgres(connection)
    finally:
        connection.close()
    _, pg = _reflect(empty_pg_dsn)
    _, lite = _reflect(sqlite_dsn)
    for name in pg:
        pg_checks = {c["name"] for c in pg[name]["checks"]}
        lite_checks = {c["name"] for c in lite[name]["checks"] if not c["name"].endswith("_boolean")}
        assert pg_checks == lite_checks, name


def test_patches_are_numbered_alike_and_match_the_code():
    for backend in ("postgresql", "sqlite"):
        versions = [version for version, _, _ in schema.patches(backend)]
        assert versions[-1] == schema.SCHEMA_VERSION
    assert ([name for _, name, _ in schema.patches("postgresql")]
            == [name for _, name, _ in schema.patches("sqlite")])


def test_every_column_outside_the_recipes_has_a_default():
    for table in tables.metadata.sorted_tables:
        without_default = {
            column.name for column in table.columns
            if not column.nullable and column.server_default is None
            and table.autoincrement_column is not column}
        assert without_default == tables.REQUIRED_COLUMNS[table.name], table.name


def test_upgrade_command_is_idempotent_and_records_versions(empty_pg_dsn):
    command = [sys.executable, "-m", "cronpolicy", "schema", "upgrade", "--dsn", empty_pg_dsn]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "applied 0001-initial.sql" in first.stdout
    assert "applied 0002-rollouts-in-motion.sql" in first.stdout
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and "already up to date" in second.stdout
    dba = DBA(empty_pg_dsn)
    assert dba.execute("SELECT version, name FROM cronpolicy.schema_version ORDER BY version") == [
        (version, name) for version, name, _ in schema.patches("postgresql")]


def test_failed_patch_leaves_nothing_behind(empty_pg_dsn, monkeypatch):
    good = schema.patches("postgresql")
    bad = (len(good) + 1, "%04d-broken.sql" % (len(good) + 1),
           "CREATE TABLE cronpolicy.half_done (x int); SELECT 1 / 0;")
    monkeypatch.setattr(schema, "patches", lambda backend: good + [bad])
    connection = psycopg2.connect(empty_pg_dsn)
    try:
        with pytest.raises(DatabaseError) as error:
            schema.upgrade_postgres(connection)
    finally:
        connection.close()
    assert "broken.sql" in str(error.value) and "division by zero" in str(error.value)
    dba = DBA(empty_pg_dsn)
    assert dba.scalar("SELECT max(version) FROM cronpolicy.schema_version") == len(good)
    assert dba.scalar("SELECT to_regclass('cronpolicy.half_done')") is None


def test_missing_schema_is_one_line_naming_the_command(empty_pg_dsn):
    postgres = PostgresStore(empty_pg_dsn)
    with pytest.raises(SchemaError) as error:
        postgres.load_inputs("job", 20)
    postgres.close()
    message = str(error.value)
    assert "no cronpolicy schema" in message and "cronpolicy schema upgrade" in message
    assert "\n" not in message


def test_older_schema_is_one_line_naming_the_command(pg_dsn, monkeypatch):
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    postgres = PostgresStore(pg_dsn)
    with pytest.raises(SchemaError) as error:
        postgres.load_inputs("job", 20)
    postgres.close()
    assert "version %d, this cronpolicy needs %d" % (
        schema.SCHEMA_VERSION - 1, schema.SCHEMA_VERSION) in str(error.value)
    assert "cronpolicy schema upgrade" in str(error.value)


# Constraints: impossible rows are refused by the database itself -----------

REJECTED = [
    ("window ending before it starts",
     "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at) VALUES ({now1}, {now0})"),
    ("window ending when it starts",
     "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at) VALUES ({now0}, {now0})"),
    ("empty policy name", "INSERT INTO cronpolicy.script_policy (name) VALUES ('')"),
    ("duplicate policy", "INSERT INTO cronpolicy.script_policy (name) VALUES ('a'), ('a')"),
    ("unknown run status",
     "INSERT INTO cronpolicy.script_run (name, host, status, finished_at)"
     " VALUES ('a', 'h', 'exploded', {now0})"),
    ("running run with an end",
     "INSERT INTO cronpolicy.script_run (name, host, status, finished_at)"
     " VALUES ('a', 'h', 'running', {now0})"),
    ("finished run without an end",
     "INSERT INTO cronpolicy.script_run (name, host, status) VALUES ('a', 'h', 'succeeded')"),
    ("run ending before it starts",
     "INSERT INTO cronpolicy.script_run (name, host, status, started_at, finished_at)"
     " VALUES ('a', 'h', 'succeeded', {now1}, {now0})"),
    ("second deploy_state row", "INSERT INTO cronpolicy.deploy_state (id) VALUES (2)"),
    ("deleting the deploy_state row", "DELETE FROM cronpolicy.deploy_state"),
]


@pytest.mark.parametrize("what, sql", REJECTED, ids=[what for what, _ in REJECTED])
def test_database_rejects_impossible_rows(dba, what, sql):
    before = [dba.scalar("SELECT count(*) FROM cronpolicy.%s" % table)
              for table in ("rollout_window", "script_policy", "script_run", "deploy_state")]
    with pytest.raises(Exception) as error:
        dba.execute(sql.format(now0=dba.now_plus(0), now1=dba.now_plus(3600)))
    assert "constraint" in str(error.value).lower() or "deploy_state" in str(error.value) \
        or "unique" in str(error.value).lower()
    after = [dba.scalar("SELECT count(*) FROM cronpolicy.%s" % table)
             for table in ("rollout_window", "script_policy", "script_run", "deploy_state")]
    assert before == after


def test_dba_recipes_need_only_the_named_columns(dba):
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled, reason)"
                " VALUES ('publish-*', false, 'mirror down')")
    dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason)"
                " VALUES ({}, {}, 'release')".format(dba.now_plus(60), dba.now_plus(3600)))
    dba.execute("INSERT INTO cronpolicy.script_run"
                " (name, host, pid, started_at, finished_at, status, exit_code)"
                " VALUES ('old-job', 'web1', 123, {}, {}, 'succeeded', 0)".format(
                    dba.now_plus(-600), dba.now_plus(-60)))
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_policy WHERE host = '*'") == 1
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout_window"
                      " WHERE host = '*' AND script = '*' AND cancelled_at IS NULL") == 1
    assert dba.scalar("SELECT policy_ignored FROM cronpolicy.script_run") in (False, 0)


def test_plain_update_refreshes_changed_at(dba):
    dba.execute("INSERT INTO cronpolicy.script_policy (name, changed_at)"
                " VALUES ('job', {})".format(dba.now_plus(-86400)))
    old = dba.scalar("SELECT changed_at FROM cronpolicy.script_policy")
    dba.execute("UPDATE cronpolicy.script_policy SET enabled = false")
    assert str(dba.scalar("SELECT changed_at FROM cronpolicy.script_policy")) > str(old)


@pytest.mark.integration
@pytest.mark.slow
def test_concurrent_first_use_of_a_new_sqlite_file(tmp_path):
    path = tmp_path / "fresh.sqlite"
    code = ("import sys; from cronpolicy.store.sqlite import open_sqlite; "
            "c = open_sqlite(sys.argv[1]); "
            "print(c.execute('SELECT count(*) FROM cronpolicy.deploy_state').fetchone()[0])")
    processes = [subprocess.Popen([sys.executable, "-c", code, str(path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(8)]
    results = [process.communicate(timeout=60) + (process.returncode,) for process in processes]
    assert all(code == 0 and out.strip() == "1" for out, err, code in results), results
    dba = DBA("sqlite:///" + str(path))
    assert dba.execute("SELECT version FROM cronpolicy.schema_version ORDER BY version") == [
        (version,) for version in range(1, schema.SCHEMA_VERSION + 1)]


OLD_HISTORY = ("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at, status,"
               " exit_code) VALUES ('old-job', 'web1', 7, {}, {}, 'succeeded', 0)")


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_upgrading_an_old_database_keeps_its_rows(backend, empty_pg_dsn, sqlite_dsn, monkeypatch):
    real_patches = schema.patches
    first_only = lambda name: [patch for patch in real_patches(name) if patch[0] == 1]
    monkeypatch.setattr(schema, "patches", first_only)
    if backend == "postgresql":
        dsn = empty_pg_dsn
        connection = psycopg2.connect(dsn)
        schema.upgrade_postgres(connection)
    else:
        dsn = sqlite_dsn
        connection = connect_sqlite(sqlite_dsn[len("sqlite:///"):])
        schema.upgrade_sqlite(connection)
    connection.close()
    dba = DBA(dsn) if backend == "postgresql" else None
    if backend == "sqlite":
        raw = connect_sqlite(sqlite_dsn[len("sqlite:///"):])
        raw.execute(OLD_HISTORY.format("'2026-11-20 10:00:00.000'", "'2026-11-20 10:18:00.000'"))
        raw.execute("INSERT INTO cronpolicy.script_policy (name, enabled) VALUES ('x', 0)")
        raw.close()
    else:
        dba.execute(OLD_HISTORY.format("'2026-11-20 10:00+00'", "'2026-11-20 10:18+00'"))
        dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled) VALUES ('x', false)")
    monkeypatch.setattr(schema, "patches", real_patches)
    # The next use upgrades (SQLite by itself, PostgreSQL by the command).
    if backend == "postgresql":
        connection = psycopg2.connect(dsn)
        assert schema.upgrade_postgres(connection)[0].startswith("0002")
        connection.close()
    _check_matches_tables(dsn)
    dba = DBA(dsn)
    assert dba.execute("SELECT name, host, pid, status, exit_code, safe_to_interrupt"
                       " FROM cronpolicy.script_run") in (
        [("old-job", "web1", 7, "succeeded", 0, False)], [("old-job", "web1", 7, "succeeded", 0, 0)])
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_policy WHERE NOT enabled") == 1
