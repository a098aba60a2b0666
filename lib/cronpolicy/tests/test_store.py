"""The stores: one read for the decision, history writes, both backends."""

import time

import pytest
from zope.interface.verify import verifyObject

from cronpolicy import schema
from cronpolicy.config import Settings
from cronpolicy.errors import DatabaseError
from cronpolicy.interfaces import IPolicyStore
from cronpolicy.policy import Estimate
from cronpolicy.store import PostgresStore, SQLiteStore, open_store


@pytest.fixture
def policy_store(dsn):
    opened = open_store(Settings(dsn=dsn, dsn_source="--dsn"))
    yield opened
    opened.close()


def test_providers_verify(policy_store, dsn):
    assert verifyObject(IPolicyStore, policy_store)
    expected = SQLiteStore if dsn.startswith("sqlite") else PostgresStore
    assert isinstance(policy_store, expected)


def test_load_inputs_reads_every_input(policy_store, dba):
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, enabled, reason, rollout_exempt)"
                " VALUES ('publish-*', 'web?', false, 'mirror down', true)")
    if dba.backend == "postgresql":
        dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_runtime)"
                    " VALUES ('publish-distro', interval '20 minutes')")
    else:
        dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_runtime)"
                    " VALUES ('publish-distro', 1200)")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true, reason = 'r42'")
    window = "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason) VALUES ({}, {}, {})"
    dba.execute(window.format(dba.now_plus(600), dba.now_plus(1200), "'upcoming'"))
    dba.execute(window.format(dba.now_plus(-600), dba.now_plus(600), "'active'"))
    dba.execute(window.format(dba.now_plus(-1200), dba.now_plus(-600), "'over'"))
    dba.execute(window.format(dba.now_plus(600), dba.now_plus(1200), "'cancelled'"))
    dba.execute("UPDATE cronpolicy.rollout_window SET cancelled_at = starts_at"
                " WHERE reason = 'cancelled'")

    inputs = policy_store.load_inputs("publish-distro", 20)

    assert inputs.schema_version == schema.SCHEMA_VERSION
    assert inputs.deploy.pending and inputs.deploy.reason == "r42"
    by_name = {row.name: row for row in inputs.policies}
    assert by_name["publish-*"].host == "web?" and by_name["publish-*"].enabled is False
    assert by_name["publish-*"].rollout_exempt is True
    assert by_name["publish-*"].reason == "mirror down"
    assert by_name["publish-distro"].expected_runtime == 1200.0
    assert sorted(window.reason for window in inputs.windows) == ["active", "upcoming"]
    for window in inputs.windows:
        assert window.starts_at.tzinfo is not None and window.ends_at > inputs.now
    assert inputs.recent_runtimes == []


def test_recent_runtimes_are_succeeded_runs_of_that_script_newest_first(policy_store, dba):
    insert = ("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at, status,"
              " exit_code) VALUES ({}, 'h', 1, {}, {}, {}, 0)")
    # 30 runs of 'job', oldest first, lasting 1..30 minutes; a failure and another script.
    for minute in range(1, 31):
        start = -100000 + minute * 3000
        dba.execute(insert.format("'job'", dba.now_plus(start), dba.now_plus(start + 60 * minute),
                                  "'succeeded'"))
    dba.execute(insert.format("'job'", dba.now_plus(-50), dba.now_plus(-40), "'failed'"))
    dba.execute(insert.format("'other'", dba.now_plus(-50), dba.now_plus(-10), "'succeeded'"))

    runtimes = policy_store.load_inputs("job", 5).recent_runtimes

    assert runtimes == pytest.approx([1800.0, 1740.0, 1680.0, 1620.0, 1560.0], abs=0.01)


def test_records_runs_with_the_database_clock(policy_store, dba):
    run_id = policy_store.record_start("job", "web1", 4242, Estimate(90.0, "history"))
    row = dba.runs("job")[0]
    assert (row["id"], row["status"], row["pid"], row["estimate_seconds"]) == (
        run_id, "running", 4242, 90.0)
    time.sleep(0.05)
    policy_store.record_finish(run_id, "failed", 3)
    row = dba.runs("job")[0]
    assert (row["status"], row["exit_code"]) == ("failed", 3)
    duration = dba.scalar(
        "SELECT extract(epoch FROM finished_at - started_at) FROM cronpolicy.script_run"
        if dba.backend == "postgresql" else
        "SELECT (julianday(finished_at) - julianday(started_at)) * 86400 FROM cronpolicy.script_run")
    assert 0.04 <= float(duration) < 5

    skip_id = policy_store.record_skip("job", "web1", 4243, None, "deploy pending")
    skipped = [run for run in dba.runs("job") if run["id"] == skip_id][0]
    assert (skipped["status"], skipped["skip_reason"]) == ("skipped", "deploy pending")
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run"
                      " WHERE status = 'skipped' AND finished_at IS NOT NULL") == 1


def test_names_and_reasons_are_stored_literally(policy_store, dba):
    hostile = "x'); DROP TABLE cronpolicy.script_run; --"
    run_id = policy_store.record_skip(hostile, hostile, 1, None, hostile)
    row = dba.runs(hostile)[0]
    assert (row["id"], row["name"], row["host"], row["skip_reason"]) == (
        run_id, hostile, hostile, hostile)


def test_unreachable_postgres_fails_fast_with_one_line_and_no_password():
    dsn = "postgresql://cron:s3cretpw@127.0.0.1:1/nowhere"
    unreachable = PostgresStore(dsn, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(DatabaseError) as error:
        unreachable.load_inputs("job", 20)
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert "cannot connect" in message and "s3cretpw" not in message and "\n" not in message
    assert "cron:***@" in message


def test_estimate_query_uses_its_index(pg_dsn):
    from .conftest import DBA
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                " status, exit_code) SELECT 'job-' || (i % 200), 'h', i,"
                " now() - i * interval '1 minute', now() - i * interval '1 minute' + interval '5s',"
                " 'succeeded', 0 FROM generate_series(1, 20000) AS i")
    dba.execute("ANALYZE cronpolicy.script_run")
    plan = "\n".join(row[0] for row in dba.execute(
        "EXPLAIN SELECT extract(epoch FROM finished_at - started_at) FROM cronpolicy.script_run"
        " WHERE name = 'job-7' AND status = 'succeeded' ORDER BY finished_at DESC LIMIT 20"))
    assert "script_run_estimate_idx" in plan, plan
