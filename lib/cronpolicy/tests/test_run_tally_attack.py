"""Attacks on the tally (schema patch 0022): what a hostile reviewer and an
unlucky operator did to it, each held to what schema 21's statements said."""

import pytest

from cronpolicy.config import Settings
from cronpolicy.store.reads import reading

from .conftest import DBA, make_env
from .test_run_tally import _reads

pytestmark = pytest.mark.integration


def test_a_run_heard_from_again_is_no_pairs_last_finished_run_while_it_runs(dsn, tmp_path):
    """A run reaped as abandoned and heard from again is running: no read
    names it the pair's last finished run, nor gives its estimate the end
    the reap wrote."""
    dba = DBA(dsn)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision,"
                " started_at, finished_at, estimate_seconds)"
                " VALUES ('publish', 'h1', 1, 'succeeded', 'run', %s, %s, 60)"
                % (dba.now_plus(-4000), dba.now_plus(-3900)))
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision,"
                " started_at, estimate_seconds) VALUES ('publish', 'h1', 1, 'running', 'run', %s,"
                " 60)" % dba.now_plus(-1000))
    dba.execute("UPDATE cronpolicy.script_run SET status = 'abandoned', finished_at = %s"
                " WHERE status = 'running'" % dba.now_plus(-900))
    dba.execute("UPDATE cronpolicy.script_run SET status = 'running', finished_at = NULL"
                " WHERE status = 'abandoned'")
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    with reading(settings) as reader:
        new, old = _reads(reader)
    assert new[1] == old[1]


def test_logins_read_the_tally_and_only_the_trigger_writes_it(pg_roles, pg_dsn, tmp_path):
    """A script login's run end tallies (the trigger writes as its definer);
    the login cannot write run_tally itself; metrics and overdue answer a
    reader login and a rollout login (exit 0 or overdue's 8, one line at most)."""
    from .test_roles import cli, try_sql
    script = pg_roles("cronpolicy_script")
    count, error = try_sql(script, "INSERT INTO cronpolicy.script_run (name, host, pid, decision,"
                                   " schedule) VALUES ('publish', 'web1', 1, 'run', '0 * * * *')")
    assert count == 1, error
    count, error = try_sql(script, "UPDATE cronpolicy.script_run SET status = 'succeeded',"
                                   " finished_at = now()")
    assert count == 1, error
    assert DBA(pg_dsn).scalar("SELECT runs FROM cronpolicy.run_tally") == 1
    for sql in ("UPDATE cronpolicy.run_tally SET runs = 1000",
                "INSERT INTO cronpolicy.run_tally (name, host, status) VALUES ('x', 'y', 'failed')",
                "DELETE FROM cronpolicy.run_tally", "TRUNCATE cronpolicy.run_tally"):
        count, error = try_sql(script, sql)
        assert count is None and "permission denied" in error, sql
    assert DBA(pg_dsn).scalar("SELECT runs FROM cronpolicy.run_tally") == 1
    for group, commands in (("cronpolicy_reader", (("metrics",), ("overdue",))),
                            ("cronpolicy_rollout", (("overdue",), ("deploy", "plan", "--at",
                                                                   "+1h")))):
        env = dict(make_env(tmp_path, pg_roles(group)),
                   CRONPOLICY_STATE_DIR=str(tmp_path / group))
        for argv in commands:
            result = cli(env, *argv)
            assert result.returncode in (0, 8), (group, argv, result.stderr)
            assert "Traceback" not in result.stderr and "permission" not in result.stderr
            if argv == ("metrics",):
                assert 'cronpolicy_runs_total{script="publish",host="web1",status="succeeded"} 1' \
                    in result.stdout


def test_a_success_rewritten_as_a_failure_is_no_longer_the_last_success(dsn, tmp_path):
    """A DBA corrects a run recorded succeeded that failed: the pair's last
    success, last finished run and latest estimate are what the history
    says now (schema 21's statements), not the run that left its bucket."""
    dba = DBA(dsn)
    for start, end in ((-7200, -7100), (-3600, -3500)):
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision,"
                    " started_at, finished_at, estimate_seconds, expected_interval)"
                    " VALUES ('publish', 'h1', 1, 'succeeded', 'run', %s, %s, 60, 3600)"
                    % (dba.now_plus(start), dba.now_plus(end)))
    dba.execute("UPDATE cronpolicy.script_run SET status = 'failed', estimate_seconds = NULL,"
                " expected_interval = NULL WHERE id = (SELECT max(id) FROM cronpolicy.script_run)")
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    with reading(settings) as reader:
        new, old = _reads(reader)
    assert new == old


def test_a_count_at_its_largest_does_not_refuse_the_runs_that_end(dsn, tmp_path):
    """An absurd count written into run_tally (the largest a bigint holds)
    does not make every end of its runs fail: the count stays there."""
    dba = DBA(dsn)
    largest = 2 ** 63 - 1
    dba.execute("INSERT INTO cronpolicy.run_tally (name, host, status, decision, runs)"
                " VALUES ('publish', 'h1', 'succeeded', 'run', %d)" % largest)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision)"
                " VALUES ('publish', 'h1', 1, 'running', 'run')")
    dba.execute("UPDATE cronpolicy.script_run SET status = 'succeeded', finished_at = %s"
                % dba.now_plus(0))
    assert dba.scalar("SELECT status FROM cronpolicy.script_run") == "succeeded"
    assert dba.scalar("SELECT runs FROM cronpolicy.run_tally") == largest
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision,"
                " finished_at) VALUES ('publish', 'h1', 1, 'succeeded', 'run', %s)"
                % dba.now_plus(0))
    assert dba.scalar("SELECT runs FROM cronpolicy.run_tally") == largest
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    with reading(settings) as reader:
        [row] = reader.tuples("metrics_runs", {"host": None})
    assert row[5] == largest


def test_a_tally_row_written_around_its_checks_does_not_refuse_the_runs_that_end(sqlite_dsn,
                                                                                tmp_path):
    """SQLite keeps what a DBA writes with its checks off (metrics leaves
    such a count out, with a warning): a negative or fractional count must
    not make every end of its runs, or a run heard from again, fail."""
    import sqlite3
    dba = DBA(sqlite_dsn)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision)"
                " VALUES ('publish', 'h1', 1, 'running', 'run'), ('backup', 'h1', 1, 'running',"
                " 'run')")
    dba.execute("UPDATE cronpolicy.script_run SET status = 'abandoned', finished_at = started_at"
                " WHERE name = 'backup'")
    connection = sqlite3.connect(sqlite_dsn[len("sqlite:///"):])
    with connection:
        connection.execute("PRAGMA ignore_check_constraints = 1")
        connection.execute("INSERT INTO run_tally (name, host, status, decision, runs)"
                           " VALUES ('publish', 'h1', 'succeeded', 'run', -5)")
        connection.execute("UPDATE run_tally SET runs = 1.5 WHERE name = 'backup'")
    connection.close()
    dba.execute("UPDATE cronpolicy.script_run SET status = 'succeeded', finished_at = %s"
                " WHERE name = 'publish'" % dba.now_plus(0))
    dba.execute("UPDATE cronpolicy.script_run SET status = 'running', finished_at = NULL"
                " WHERE name = 'backup'")
    assert dba.execute("SELECT name, status FROM cronpolicy.script_run ORDER BY name") == [
        ("backup", "running"), ("publish", "succeeded")]
    assert dba.execute("SELECT name, runs FROM cronpolicy.run_tally ORDER BY name") == [
        ("backup", 0), ("publish", 1)]


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_the_upgrade_takes_no_count_of_pruned_runs_that_holds_none(tmp_path, backend):
    """pruned_runs rows schema 21's metrics left out (SQLite: written with
    its checks off) or could not add to in SQL (the largest count a bigint
    holds) must not fail the upgrade: a SQLite file upgrades as the gate
    opens it, and every script of the host would stop there."""
    import sqlite3
    from cronpolicy.store.sqlite import connect_sqlite
    from .test_run_tally import _Raw, _patched_before_0022, create_database, drop_database
    name = None
    if backend == "postgresql":
        import psycopg2
        name, dsn = create_database("tally")
        connection = psycopg2.connect(dsn)
    else:
        connection = connect_sqlite(str(tmp_path / "tally.db"))
    try:
        _patched_before_0022(backend, connection)
        raw = _Raw(connection, backend)
        raw.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision,"
                    " finished_at) VALUES ('publish', 'h1', 1, 'succeeded', 'run', %s),"
                    " ('backup', 'h1', 1, 'failed', 'run', %s), ('tidy', 'h1', 1, 'failed',"
                    " 'run', %s)" % ((DBA.now_plus(raw, 0),) * 3))
        raw.execute("INSERT INTO cronpolicy.pruned_runs (name, host, status, decision, runs)"
                    " VALUES ('publish', 'h1', 'succeeded', 'run', %d)" % (2 ** 63 - 1))
        if backend == "sqlite":
            connection.execute("PRAGMA ignore_check_constraints = 1")
            raw.execute("INSERT INTO cronpolicy.pruned_runs (name, host, status, decision, runs)"
                        " VALUES ('backup', 'h1', 'failed', 'run', -5),"
                        " ('tidy', 'h1', 'failed', 'run', 2.5),"
                        " ('gone', 'h1', 'failed', '', 'abc')")
            connection.execute("PRAGMA ignore_check_constraints = 0")
            from cronpolicy import schema
            schema.upgrade_sqlite(connection)
        else:
            from cronpolicy import schema
            schema.upgrade_postgres(connection)
        counts = dict(raw.execute("SELECT name, runs FROM cronpolicy.run_tally"))
        assert counts["publish"] == 2 ** 63 - 1
        if backend == "sqlite":
            assert counts["backup"] == 1 and counts["tidy"] == 1
            assert counts.get("gone", 0) == 0
    finally:
        connection.close()
        if name is not None:
            drop_database(name)


ABSURD_TALLY = {
    "postgresql": [
        "INSERT INTO cronpolicy.run_tally (name, host, status, decision, runs, last_started_at,"
        " last_finished_at, last_run_id, last_run_started_at, estimated_id, estimated_started_at,"
        " estimated_finished_at, estimated_seconds, interval_id, expected_interval, declared_id,"
        " declared_started_at, declared_seconds) VALUES ('job', 'web1', 'succeeded', 'run',"
        " 9223372036854775807, 'infinity', 'infinity', 1, '-infinity', 2, 'infinity',"
        " '-infinity', 'NaN', 3, 'Infinity', 4, '294276-12-31', '-Infinity')",
        "INSERT INTO cronpolicy.run_tally (name, host, status, decision, runs, last_started_at,"
        " last_finished_at, last_run_id, last_run_started_at, last_run_estimate_seconds)"
        " VALUES ('job', 'web1', 'failed', '', 9223372036854775807, '4713-01-01 BC',"
        " '294276-12-31', NULL, NULL, 0)",
        "INSERT INTO cronpolicy.run_tally (name, host, status, runs) VALUES ('job', 'web2',"
        " 'running', 3)",
        # (a last run and no times: column fuzz's find, 150 examples)
        "INSERT INTO cronpolicy.run_tally (name, host, status, last_run_id) VALUES ('job',"
        " 'web3', 'failed', 0)",
    ],
    "sqlite": [
        "INSERT INTO cronpolicy.run_tally (name, host, status, decision, runs, last_started_at,"
        " last_finished_at, last_run_id, last_run_started_at, last_run_estimate_seconds,"
        " estimated_id, estimated_started_at, estimated_finished_at, estimated_seconds,"
        " interval_id, expected_interval, declared_id, declared_started_at, declared_seconds)"
        " VALUES ('job', 'web1', 'succeeded', 'run', 9223372036854775807, 'garbage',"
        " 'infinity', 'x', X'00ff', 'abc', 2.5, 12345, '', 'NaN', 'y', 'Infinity', -1, 'now',"
        " '1e308')",
        "INSERT INTO cronpolicy.run_tally (name, host, status, decision, blocked, runs,"
        " last_started_at, last_finished_at, last_run_id) VALUES ('job', 'web1', 'failed', '',"
        " 7, 1, '9999-12-31 23:59:59', '200000-01-01', 5)",
        "INSERT INTO cronpolicy.run_tally (name, host, status, runs) VALUES ('job', 'web2',"
        " 'running', 3)",
        # (a last run and no times: column fuzz's find, 150 examples)
        "INSERT INTO cronpolicy.run_tally (name, host, status, last_run_id) VALUES ('job',"
        " 'web3', 'failed', 0)",
    ],
}


def test_absurd_tally_rows_get_answers_not_tracebacks(dsn, tmp_path):
    """Rows a DBA writes into run_tally with plain SQL (largest counts,
    infinite and far-off times, text where SQLite keeps it): each read
    command exits with a documented code and at most a line (besides a
    warning of each value out of range), and a run of the script still ends."""
    from cronpolicy import exitcodes
    from .test_roles import cli
    dba = DBA(dsn)
    for sql in ABSURD_TALLY[dba.backend]:
        dba.execute(sql)
    env = dict(make_env(tmp_path, dsn), CRONPOLICY_STATE_DIR=str(tmp_path / "state"))
    for argv in (("metrics",), ("overdue",), ("overdue", "--json"), ("deploy", "plan", "--at",
                                                                     "+1h"),
                 ("status",), ("deploy", "slot", "--duration", "10m")):
        result = cli(env, *argv)
        assert "Traceback" not in result.stderr, (argv, result.stderr)
        assert result.returncode in (exitcodes.OK, exitcodes.OVERDUE, exitcodes.GATE_ERROR), (
            argv, result.returncode, result.stderr)
        # (besides the warning each value out of range gets, as every table's)
        said = [line for line in result.stderr.strip().splitlines()
                if not line.startswith("a stored value (")]
        assert len(said) <= 1, (argv, result.stderr)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision)"
                " VALUES ('job', 'web1', 1, 'running', 'run')")
    dba.execute("UPDATE cronpolicy.script_run SET status = 'succeeded', finished_at = %s"
                % dba.now_plus(0))
    assert dba.scalar("SELECT status FROM cronpolicy.script_run") == "succeeded"


def test_a_script_login_heard_from_again_after_another_reaped_it(pg_roles, pg_dsn):
    """A run another login reaped, heard from again through its own login
    (the heartbeat's statement), leaves the abandoned count and is no
    pair's last run: the trigger reads the history as its definer, past
    row-level security."""
    from .test_roles import as_role
    web1, web2 = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    own = as_role(web1)
    try:
        with own.cursor() as cursor:
            cursor.execute("INSERT INTO cronpolicy.script_run (name, host, pid, decision,"
                           " heartbeat_at, lease_expires_at) VALUES ('publish', 'web1', 1, 'run',"
                           " now(), now() - interval '1 second') RETURNING id")
            [(run_id,)] = cursor.fetchall()
        other = as_role(web2)
        with other.cursor() as reaper:
            reaper.execute("SELECT cronpolicy.reap_dead_runs()")
            assert reaper.fetchall() == [(run_id,)]
        other.close()
        from cronpolicy.store import queries
        with own.cursor() as cursor:
            cursor.execute(queries("postgresql")["heartbeat"],
                           {"id": run_id, "safe": False, "ttl": 30, "name": "publish",
                            "slot": None, "run_key": None})
    finally:
        own.close()
    dba = DBA(pg_dsn)
    assert dba.scalar("SELECT status FROM cronpolicy.script_run") == "running"
    assert dba.execute("SELECT status, runs, last_run_id, estimated_id FROM cronpolicy.run_tally"
                       ) == [("abandoned", 0, None, None)]


def test_roles_given_before_schema_22_read_the_tally_after_the_upgrade(
        pg_roles, empty_pg_dsn, monkeypatch, tmp_path):
    """roles.sql given to psql on a schema-21 database (its run_tally grant
    fails alone), then the upgrade: the patch's grants let a reader login's
    metrics, a script login's overdue and its run's end through."""
    import psycopg2
    from cronpolicy import schema
    from .test_roles import cli, roles_sql_as_psql_gives_it, try_sql
    every = schema.patches("postgresql")
    monkeypatch.setattr(schema, "patches", lambda backend: [p for p in every if p[0] <= 21])
    connection = psycopg2.connect(empty_pg_dsn)
    schema.upgrade_postgres(connection)
    assert roles_sql_as_psql_gives_it(connection) == ["42P01"]
    monkeypatch.setattr(schema, "patches", lambda backend: every)
    schema.upgrade_postgres(connection)
    connection.close()
    dbname = psycopg2.extensions.parse_dsn(empty_pg_dsn)["dbname"]
    script, reader = (psycopg2.extensions.make_dsn(pg_roles(group), dbname=dbname)
                      for group in ("cronpolicy_script", "cronpolicy_reader"))
    assert try_sql(script, "INSERT INTO cronpolicy.script_run (name, host, decision)"
                           " VALUES ('nightly', 'web1', 'run')") == (1, None)
    assert try_sql(script, "UPDATE cronpolicy.script_run SET status = 'succeeded',"
                           " finished_at = now()") == (1, None)
    for dsn, argv in ((reader, ("metrics",)), (script, ("overdue",))):
        env = dict(make_env(tmp_path, dsn), CRONPOLICY_STATE_DIR=str(tmp_path / argv[0]))
        result = cli(env, *argv)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert 'status="succeeded"} 1' in cli(dict(make_env(tmp_path, reader),
                                               CRONPOLICY_STATE_DIR=str(tmp_path / "m")),
                                          "metrics").stdout


def test_a_tally_row_with_no_times_does_not_hide_a_pairs_last_run(dsn, tmp_path):
    """A run_tally row a DBA wrote naming a run but no times (column fuzz's
    kind) is not the pair's last run or latest estimate over a real one:
    PostgreSQL sorted its NULL first (DESC), SQLite last."""
    from cronpolicy.tooling.metrics import _latest
    dba = DBA(dsn)
    dba.execute("INSERT INTO cronpolicy.run_tally (name, host, status, last_run_id, estimated_id,"
                " estimated_seconds) VALUES ('job', 'web1', 'failed', 999, 999, 5)")
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision, started_at,"
                " finished_at, estimate_seconds) VALUES ('job', 'web1', 1, 'succeeded', 'run',"
                " %s, %s, 60)" % (dba.now_plus(-120), dba.now_plus(-60)))
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    with reading(settings) as reader:
        last_runs, estimates = _latest(reader, None)
    assert [(run.name, run.estimate_seconds) for run in last_runs] == [("job", 60.0)]
    assert [(run.name, run.estimate_seconds) for run in estimates] == [("job", 60.0)]
