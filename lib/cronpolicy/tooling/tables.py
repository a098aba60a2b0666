"""The tables, as SQLAlchemy Core sees them: the contract with the SQL in schema/.

tests/test_schema.py applies the patches in order to a fresh PostgreSQL
database and a fresh SQLite file, reflects them, and proves they match these
definitions column by column (and each other), so neither side can drift;
tests/test_rows.py holds the row shapes of cronpolicy/rows.py to them.

Two custom types hide the backends' differences from the code that queries:

* Timestamp: ``timestamptz`` on PostgreSQL; UTC text on SQLite.  Python
  always sees aware UTC datetimes.
* Seconds: ``interval`` on PostgreSQL (DBAs write ``'20 minutes'``);
  seconds (double) on SQLite.  Python always sees float seconds.
"""

import datetime

from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, Column, Double, Index, Integer, MetaData,
    Table, Text, UniqueConstraint, text)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

from cronpolicy.rows import to_seconds, to_time
from cronpolicy.timeutil import to_sqlite

SCHEMA = "cronpolicy"

metadata = MetaData(schema=SCHEMA)


class Timestamp(TypeDecorator):
    impl = postgresql.TIMESTAMP(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a Timestamp column")
        return to_sqlite(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return to_time(value)


class Seconds(TypeDecorator):
    impl = postgresql.INTERVAL()
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Double())
        return dialect.type_descriptor(postgresql.INTERVAL())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return float(value) if dialect.name == "sqlite" else datetime.timedelta(seconds=value)

    def process_result_value(self, value, dialect):
        return to_seconds(value)


class SecondsNumber(TypeDecorator):
    """Seconds as a plain number on both backends (double precision), read
    like Seconds: clamped, and None for what is not a number (SQLite
    stores text in any column)."""
    impl = Double
    cache_ok = True

    def process_result_value(self, value, dialect):
        return to_seconds(value)


class JSONDocument(TypeDecorator):
    """jsonb on PostgreSQL, JSON text on SQLite; Python sees dicts."""
    impl = postgresql.JSONB()
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(postgresql.JSONB())

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name != "sqlite":
            return value
        import json
        return json.dumps(value)

    def process_result_value(self, value, dialect):
        if value is None or dialect.name != "sqlite":
            return value
        import json
        return json.loads(value)


# Server-side defaults, as each backend spells "now" and "who".
NOW = text("now()")
WHO = text("session_user")

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("applied_at", Timestamp, nullable=False, server_default=NOW),
)

script_policy = Table(
    "script_policy", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("host", Text, nullable=False, server_default="*"),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("reason", Text, nullable=False, server_default=""),
    Column("expected_runtime", Seconds),
    Column("rollout_exempt", Boolean, nullable=False, server_default=text("false")),
    Column("changed_by", Text, nullable=False, server_default=WHO),
    Column("changed_at", Timestamp, nullable=False, server_default=NOW),
    Column("interruptible", Boolean, nullable=False, server_default=text("false")),
    Column("fleet_single_instance", Boolean),
    Column("expected_interval", Seconds),
    Column("max_concurrent", Integer),
    Column("schedule", Text),
    Column("schedule_tz", Text),
    Column("catch_up", Text),
    Column("needs", Text),
    UniqueConstraint("name", "host", name="script_policy_name_host_key"),
    CheckConstraint("name <> ''", name="script_policy_name_not_empty"),
    CheckConstraint("host <> ''", name="script_policy_host_not_empty"),
    CheckConstraint("max_concurrent > 0", name="script_policy_max_concurrent_positive"),
    CheckConstraint("catch_up IN ('none', 'once')", name="script_policy_catch_up_known"),
    CheckConstraint("cronpolicy.service_list_ok(needs)", name="script_policy_needs_known"),
)

deploy_state = Table(
    "deploy_state", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False, server_default="1"),
    Column("deploy_pending", Boolean, nullable=False, server_default=text("false")),
    Column("reason", Text, nullable=False, server_default=""),
    Column("changed_by", Text, nullable=False, server_default=WHO),
    Column("changed_at", Timestamp, nullable=False, server_default=NOW),
    CheckConstraint("id = 1", name="deploy_state_single_row"),
)

#: Moves whenever a change running scripts hear of is committed (patch 0019):
#: scripts that poll re-read the policy only when it moved.
policy_version = Table(
    "policy_version", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False, server_default="1"),
    Column("version", BigInteger().with_variant(Integer, "sqlite"), nullable=False,
           server_default=text("0")),
    CheckConstraint("id = 1", name="policy_version_single_row"),
)

rollout_window = Table(
    "rollout_window", metadata,
    Column("id", Integer, primary_key=True),
    Column("starts_at", Timestamp, nullable=False),
    Column("ends_at", Timestamp, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("host", Text, nullable=False, server_default="*"),
    Column("script", Text, nullable=False, server_default="*"),
    Column("created_by", Text, nullable=False, server_default=WHO),
    Column("created_at", Timestamp, nullable=False, server_default=NOW),
    Column("cancelled_at", Timestamp),
    Column("cancelled_by", Text),
    Column("service", Text),
    CheckConstraint("ends_at > starts_at", name="rollout_window_ends_after_start"),
    CheckConstraint("service ~ '^[A-Za-z0-9_.-]+$'", name="rollout_window_service_known"),
    Index("rollout_window_standing_idx", "ends_at",
          postgresql_where=text("cancelled_at IS NULL"),
          sqlite_where=text("cancelled_at IS NULL")),
)

script_run = Table(
    "script_run", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("name", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("pid", Integer),
    Column("started_at", Timestamp, nullable=False, server_default=NOW),
    Column("finished_at", Timestamp),
    Column("status", Text, nullable=False, server_default="running"),
    Column("exit_code", Integer),
    Column("skip_reason", Text),
    Column("estimate_seconds", SecondsNumber),
    Column("estimate_source", Text),
    Column("policy_ignored", Boolean, nullable=False, server_default=text("false")),
    Column("heartbeat_at", Timestamp),
    Column("safe_to_interrupt", Boolean, nullable=False, server_default=text("false")),
    Column("stop_reason", Text),
    Column("spool_id", Text),
    Column("db_user", Text, nullable=False, server_default=WHO),
    Column("decision", Text),
    Column("policy_id", Integer),
    Column("window_id", Integer),
    Column("expected_interval", SecondsNumber),
    Column("stop_decision", Text),
    Column("stop_policy_id", Integer),
    Column("stop_window_id", Integer),
    Column("lease_expires_at", Timestamp),
    Column("spooled", Boolean, nullable=False, server_default=text("false")),
    Column("schedule", Text),
    Column("schedule_tz", Text),
    Column("block", Text),
    Column("needs", Text),
    Column("release", Text),
    Column("stop_block", Text),
    CheckConstraint("status IN ('running', 'succeeded', 'failed', 'skipped', 'interrupted',"
                    " 'abandoned')", name="script_run_known_status"),
    Index("script_run_estimate_idx", "name", text("finished_at DESC"),
          postgresql_include=["started_at"],
          postgresql_where=text("status = 'succeeded'"),
          sqlite_where=text("status = 'succeeded'")),
    Index("script_run_running_idx", "name",
          postgresql_where=text("status = 'running'"),
          sqlite_where=text("status = 'running'")),
    Index("script_run_name_started_idx", "name", text("started_at DESC")),
    Index("script_run_started_idx", "started_at"),
    Index("script_run_spool_id_key", "spool_id", unique=True),
    Index("script_run_declared_schedule_idx", "name", "host", text("started_at DESC"),
          postgresql_where=text("schedule IS NOT NULL"),
          sqlite_where=text("schedule IS NOT NULL")),
    Index("script_run_block_idx", "name", text("started_at DESC"),
          postgresql_where=text("block IS NOT NULL"),
          sqlite_where=text("block IS NOT NULL")),
    Index("script_run_skip_block_idx", "block",
          postgresql_where=text("block IS NOT NULL"),
          sqlite_where=text("block IS NOT NULL")),
    Index("script_run_stop_block_idx", "stop_block",
          postgresql_where=text("stop_block IS NOT NULL"),
          sqlite_where=text("stop_block IS NOT NULL")),
)

script_owner = Table(
    "script_owner", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("db_role", Text, nullable=False),
    Column("granted_by", Text, nullable=False, server_default=WHO),
    Column("granted_at", Timestamp, nullable=False, server_default=NOW),
    UniqueConstraint("name", "db_role", name="script_owner_name_role_key"),
    CheckConstraint("name <> ''", name="script_owner_name_not_empty"),
    CheckConstraint("db_role <> ''", name="script_owner_db_role_not_empty"),
    Index("script_owner_first_claim_key", "name", unique=True,
          postgresql_where=text("granted_by = 'first run'"),
          sqlite_where=text("granted_by = 'first run'")),
)

host_login = Table(
    "host_login", metadata,
    Column("id", Integer, primary_key=True),
    Column("host", Text, nullable=False),
    Column("db_role", Text, nullable=False),
    Column("granted_by", Text, nullable=False, server_default=WHO),
    Column("granted_at", Timestamp, nullable=False, server_default=NOW),
    UniqueConstraint("host", "db_role", name="host_login_host_role_key"),
    CheckConstraint("host <> ''", name="host_login_host_not_empty"),
    CheckConstraint("db_role <> ''", name="host_login_db_role_not_empty"),
    Index("host_login_first_claim_key", "host", unique=True,
          postgresql_where=text("granted_by = 'first run'"),
          sqlite_where=text("granted_by = 'first run'")),
)

service_deploy = Table(
    "service_deploy", metadata,
    Column("id", Integer, primary_key=True),
    Column("service", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("changed_by", Text, nullable=False, server_default=WHO),
    Column("changed_at", Timestamp, nullable=False, server_default=NOW),
    UniqueConstraint("service", name="service_deploy_one_per_service"),
    CheckConstraint("service ~ '^[A-Za-z0-9_.-]+$'", name="service_deploy_service_known"),
)

script_schedule = Table(
    "script_schedule", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("name", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("schedule", Text, nullable=False),
    Column("schedule_tz", Text),
    Column("origin", Text, nullable=False, server_default=""),
    Column("registered_at", Timestamp, nullable=False, server_default=NOW),
    Column("registered_by", Text, nullable=False, server_default=WHO),
    UniqueConstraint("name", "host", name="script_schedule_one_per_host"),
)

run_slot = Table(
    "run_slot", metadata,
    Column("name", Text, primary_key=True),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("run_key", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("lease_expires_at", Timestamp, nullable=False),
    Column("db_user", Text, nullable=False, server_default=WHO),
    CheckConstraint("slot >= 0", name="run_slot_slot_not_negative"),
)

policy_audit = Table(
    "policy_audit", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("changed_at", Timestamp, nullable=False, server_default=NOW),
    Column("db_user", Text, nullable=False, server_default=WHO),
    Column("table_name", Text, nullable=False),
    Column("operation", Text, nullable=False),
    Column("row_id", Integer),
    Column("old_row", JSONDocument),
    Column("new_row", JSONDocument),
    Column("reason", Text),
    CheckConstraint("operation IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')",
                    name="policy_audit_known_operation"),
    Index("policy_audit_changed_at_idx", "changed_at"),
    Index("policy_audit_row_idx", "table_name", "row_id", "changed_at"),
)

drain = Table(
    "drain", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("started_at", Timestamp, nullable=False, server_default=NOW),
    Column("finished_at", Timestamp, nullable=False, server_default=NOW),
    Column("host", Text, nullable=False, server_default="*"),
    Column("quiet", Boolean, nullable=False),
    Column("longest_blocker", Text),
    Column("longest_blocker_seconds", SecondsNumber),
    CheckConstraint("finished_at >= started_at", name="drain_finishes_after_start"),
    Index("drain_finished_at_idx", "finished_at"),
)

rollout = Table(
    "rollout", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", Text, nullable=False, server_default="full"),
    Column("services", Text, nullable=False, server_default=""),
    Column("reason", Text, nullable=False, server_default=""),
    Column("owner", Text, nullable=False, server_default=WHO),
    Column("owner_host", Text),
    Column("owner_pid", Integer),
    Column("began_at", Timestamp, nullable=False, server_default=NOW),
    Column("expected_duration", Seconds),
    Column("lease_expires_at", Timestamp),
    Column("quiet_at", Timestamp),
    Column("ended_at", Timestamp),
    Column("ended_by", Text),
    CheckConstraint("kind IN ('full', 'services')", name="rollout_kind_known"),
    CheckConstraint("CASE kind WHEN 'full' THEN services = '' ELSE services <> '' END",
                    name="rollout_services_fit_kind"),
    CheckConstraint("expected_duration > interval '0'",
                    name="rollout_expected_duration_positive"),
    CheckConstraint("ended_at >= began_at", name="rollout_ends_after_it_begins"),
    CheckConstraint("quiet_at >= began_at", name="rollout_quiet_after_it_begins"),
    Index("rollout_open_idx", "began_at",
          postgresql_where=text("ended_at IS NULL"), sqlite_where=text("ended_at IS NULL")),
)

rollout_awaited = Table(
    "rollout_awaited", metadata,
    Column("rollout_id", Integer, primary_key=True, autoincrement=False),
    Column("run_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("name", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("first_seen_at", Timestamp, nullable=False, server_default=NOW),
    Column("last_seen_at", Timestamp, nullable=False, server_default=NOW),
    CheckConstraint("last_seen_at >= first_seen_at", name="rollout_awaited_seen_in_order"),
)


def _run_counts(table):
    """The key and count of ``table``, a count of runs by script, host,
    final status, decision and whether a block was named (pruned_runs,
    run_tally): each table its own Column objects."""
    return (Column("name", Text, primary_key=True),
            Column("host", Text, primary_key=True),
            Column("status", Text, primary_key=True),
            Column("decision", Text, primary_key=True, server_default=""),
            Column("blocked", Boolean, primary_key=True, server_default=text("false")),
            Column("runs", BigInteger().with_variant(Integer, "sqlite"), nullable=False,
                   server_default=text("0")),
            CheckConstraint("runs >= 0", name="%s_runs_not_negative" % table))


pruned_runs = Table("pruned_runs", metadata, *_run_counts("pruned_runs"))

#: What the database keeps of the runs as each ends (schema patch 0022,
#: trigger script_run_tally_*): metrics' and overdue's counts and latest runs.
run_tally = Table(
    "run_tally", metadata, *_run_counts("run_tally"),
    Column("last_started_at", Timestamp),
    Column("last_finished_at", Timestamp),
    Column("last_run_id", BigInteger().with_variant(Integer, "sqlite")),
    Column("last_run_started_at", Timestamp),
    Column("last_run_estimate_seconds", SecondsNumber),
    Column("estimated_id", BigInteger().with_variant(Integer, "sqlite")),
    Column("estimated_started_at", Timestamp),
    Column("estimated_finished_at", Timestamp),
    Column("estimated_seconds", SecondsNumber),
    Column("interval_id", BigInteger().with_variant(Integer, "sqlite")),
    Column("expected_interval", SecondsNumber),
    Column("declared_id", BigInteger().with_variant(Integer, "sqlite")),
    Column("declared_started_at", Timestamp),
    Column("declared_seconds", SecondsNumber),
)

#: The names, hosts and decisions of runs too long for run_tally's index
#: that schema patch 0027 (mend_run_keys) shortened, each with the value it
#: was.  Never written on SQLite, which mends nothing.
mended_run_key = Table(
    "mended_run_key", metadata,
    Column("column_name", Text, primary_key=True),
    Column("mended", Text, primary_key=True),
    Column("original", Text, nullable=False),
    Column("mended_at", Timestamp, nullable=False, server_default=NOW),
)

#: Columns that have no default because DBAs' recipes always name them.
REQUIRED_COLUMNS = {
    "schema_version": {"version", "name"},
    "script_policy": {"name"},
    "deploy_state": set(),
    "rollout_window": {"starts_at", "ends_at"},
    "script_run": {"name", "host"},
    "policy_audit": {"table_name", "operation"},
    "drain": {"quiet"},
    "run_slot": {"name", "slot", "run_key", "host", "lease_expires_at"},
    "script_owner": {"name", "db_role"},
    "host_login": {"host", "db_role"},
    "script_schedule": {"name", "host", "schedule"},
    "service_deploy": {"service"},
    "rollout": set(),
    "rollout_awaited": {"rollout_id", "run_id", "name", "host"},
    "pruned_runs": {"name", "host", "status"},
    "run_tally": {"name", "host", "status"},
    "policy_version": set(),
    "mended_run_key": {"column_name", "mended", "original"},
}
