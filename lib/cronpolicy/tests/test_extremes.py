"""Absurd values a login could store with plain SQL: 'infinity', year
200000, runs lasting millennia, and on SQLite text where numbers belong.
Schema patch 0009 refuses them when written, on both backends, and brings
rows written before it into range.  Rows that still hold them (written past
the guards) touch no script and no read command: values are clamped with a
warning (rows.EARLIEST, LATEST, MAX_SECONDS), never a traceback."""

import psycopg2
import pytest

from cronpolicy import exitcodes, schema
from cronpolicy.store.sqlite import connect_sqlite

from .conftest import DBA, schema_up_to, upgraded

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

ABSURD = {
    "postgresql": [
        "INSERT INTO cronpolicy.script_run (name, host, pid, status, started_at, finished_at,"
        " exit_code) SELECT 'publish-distro', 'web1', 1, 'succeeded', now() - interval '1 hour',"
        " '200000-01-01', 0 FROM generate_series(1, 5)",
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason)"
        " VALUES (now() + interval '1 day', 'infinity', 'until further notice')",
        "INSERT INTO cronpolicy.script_policy (name, expected_runtime)"
        " VALUES ('sync-mirror', interval '100000 years')",
    ],
    "sqlite": [
        "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 5)"
        " INSERT INTO cronpolicy.script_run (name, host, pid, status, started_at, finished_at,"
        " exit_code) SELECT 'publish-distro', 'web1', 1, 'succeeded',"
        " strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 hour'), '200000-01-01 00:00:00.000', 0"
        " FROM i",
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason)"
        " VALUES (strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 day'), 'infinity',"
        " 'until further notice')",
        "INSERT INTO cronpolicy.script_policy (name, expected_runtime) VALUES ('sync-mirror',"
        " 3.1536e12)",
        # The PostgreSQL recipes, typed into SQLite.
        "INSERT INTO cronpolicy.script_policy (name, expected_runtime)"
        " VALUES ('send-mail', '20 minutes')",
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at) VALUES ('tomorrow', 'infinity')",
    ],
}

#: More values past the ranges, each refused by the backend that can hold it.
ALSO_REFUSED = {
    "postgresql": [
        "INSERT INTO cronpolicy.script_run (name, host, started_at) VALUES ('a', 'h', '-infinity')",
        "INSERT INTO cronpolicy.script_run (name, host, estimate_seconds)"
        " VALUES ('a', 'h', 'NaN')",
        "INSERT INTO cronpolicy.script_run (name, host, expected_interval)"
        " VALUES ('a', 'h', 'Infinity')",
        "INSERT INTO cronpolicy.script_policy (name, expected_interval)"
        " VALUES ('a', interval '101 years')",
        "INSERT INTO cronpolicy.drain (quiet, longest_blocker_seconds) VALUES (true, -1)",
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, cancelled_at)"
        " VALUES (now(), now() + interval '1 hour', '0001-01-01')",
        "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
        " VALUES ('a', 0, 'k', 'h', '20000-01-01')",
    ],
    "sqlite": [
        "INSERT INTO cronpolicy.script_run (name, host, started_at) VALUES ('a', 'h', 'now')",
        "INSERT INTO cronpolicy.script_run (name, host, started_at) VALUES ('a', 'h', 2461041.5)",
        "INSERT INTO cronpolicy.script_run (name, host, pid) VALUES ('a', 'h', 'one')",
        "INSERT INTO cronpolicy.script_run (name, host, estimate_seconds)"
        " VALUES ('a', 'h', '9e999')",
        "INSERT INTO cronpolicy.script_policy (name, max_concurrent) VALUES ('a', 'two')",
        "INSERT INTO cronpolicy.drain (quiet, longest_blocker_seconds) VALUES (1, -1)",
        "UPDATE cronpolicy.deploy_state SET changed_at = '0001-01-01 00:00:00'",
        "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
        " VALUES ('a', 0, 'k', 'h', '2026-02-30 00:00:00')",
        # Forms SQLite reads but Python's reader does not (or reads otherwise).
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at)"
        " VALUES ('2026-12-01 00:00', '2026-12-01T10:00:00z')",
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at)"
        " VALUES ('2026-12-01 00:00', '2026-12-01 24:00:00')",
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at)"
        " VALUES ('2026-12-01 00:00', '2026-12-01  10:00')",
        "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at)"
        " VALUES ('2026-12-01 00:00', '2026-12-01 10:00:00+02:00')",
    ],
}


@pytest.mark.parametrize("index", range(max(len(ABSURD[backend]) + len(ALSO_REFUSED[backend])
                                            for backend in ABSURD)))
def test_absurd_values_are_refused_when_written(dba, index):
    statements = ABSURD[dba.backend] + ALSO_REFUSED[dba.backend]
    if index >= len(statements):
        pytest.skip("%s has fewer cases" % dba.backend)
    before = dba.scalar("SELECT count(*) FROM cronpolicy.policy_audit")
    with pytest.raises(Exception) as refused:
        dba.execute(statements[index])
    assert "values_in_range" in str(refused.value), refused.value
    assert dba.scalar("SELECT count(*) FROM cronpolicy.policy_audit") == before


def test_values_in_range_are_accepted(dba):
    """The edges themselves, and the forms of time SQLite's functions read."""
    if dba.backend == "postgresql":
        dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_runtime)"
                    " VALUES ('a', interval '100 years')")
        dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at)"
                    " VALUES ('1970-01-01 00:00+00', '9898-12-31 00:00+00')")
    else:
        dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_runtime)"
                    " VALUES ('a', 3155760000)")
        for starts, ends in (("1970-01-01", "9898-12-31"), ("2026-12-01 02:00", "2026-12-01 03:00:00"),
                             ("2026-12-01 02:00:00.000", "2026-12-01 02:00:00.500")):
            dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at)"
                        " VALUES ({}, {})", (starts, ends))


def test_absurd_stored_values_are_clamped_not_crashed_on(scripts, dba, cli):
    dba.execute_unchecked(*ABSURD[dba.backend])
    for name in ("publish-distro", "sync-mirror"):
        scripts.write(name)
        result = scripts.run(name)
        assert result.returncode == exitcodes.OK, result.stderr
        assert "Traceback" not in result.stderr
    if dba.backend == "postgresql":
        # Expected to run for 100000 years (read as 100), a window tomorrow: skipped.
        # (SQLite cannot compute with 'infinity' and does not see that window
        # at all: refusing such values when written is issue 11, item 3.)
        assert scripts.main_calls("sync-mirror") == 0
        assert [run["status"] for run in dba.runs("sync-mirror")] == ["skipped"]
    for argv in (["status"], ["history"], ["history", "publish-distro"], ["why", "sync-mirror"],
                 ["metrics"], ["deploy", "plan", "--at", "+1h"], ["estimate"],
                 ["overdue", "--all"], ["check", "sync-mirror"], ["window", "list"], ["audit"]):
        code, out, err = cli(*argv)
        assert code in (exitcodes.OK, exitcodes.WOULD_SKIP), (argv, code, err)
        assert "Traceback" not in err


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_the_patch_brings_rows_written_before_it_into_range(request, backend):
    dsn = request.getfixturevalue("empty_pg_dsn" if backend == "postgresql" else "sqlite_dsn")
    with schema_up_to(8):           # (the DBA's SQLite file would upgrade itself)
        dba = DBA(upgraded(dsn))
        for statement in ABSURD[backend]:
            dba.execute(statement)
    if backend == "postgresql":
        connection = psycopg2.connect(dsn)
        assert schema.upgrade_postgres(connection) [0] == "0009-values-in-range.sql"
    else:
        connection = connect_sqlite(dsn[len("sqlite:///"):])
        assert schema.upgrade_sqlite(connection) [0] == "0009-values-in-range.sql"
    connection.close()

    text = "::text" if backend == "postgresql" else ""
    assert {row[0][:10] for row in dba.execute(
        "SELECT finished_at%s FROM cronpolicy.script_run" % text)} == {"9898-12-31"}
    windows = dba.execute("SELECT starts_at%s, ends_at%s FROM cronpolicy.rollout_window"
                          " ORDER BY id" % (text, text))
    assert windows[0][1][:10] == "9898-12-31"
    if backend == "sqlite":
        # 'tomorrow' cannot be read: the window moves to 1970, harmless and audited.
        assert windows[1][0][:10] == "1970-01-01" and windows[1][1][:10] == "9898-12-31"
        assert dba.scalar("SELECT expected_runtime FROM cronpolicy.script_policy"
                          " WHERE name = 'send-mail'") is None
    runtime = dba.scalar("SELECT %s FROM cronpolicy.script_policy WHERE name = 'sync-mirror'" % (
        "extract(epoch FROM expected_runtime)" if backend == "postgresql" else "expected_runtime"))
    assert float(runtime) == 3155760000
    # Every policy and window the patch changed is in the audit, with the old value.
    changed = dba.scalar("SELECT count(*) FROM cronpolicy.policy_audit WHERE operation = 'UPDATE'")
    assert changed == (4 if backend == "sqlite" else 2)
