"""cronpolicy behind a real pgbouncer (the rollout tests also run through
it, in both pooling modes: see test_rollout.py).

pgbouncer refuses libpq's ``options`` startup parameter, in which
cronpolicy sends its server settings, so connections are made again without
it; with ``watch = poll`` a running script holds no pooler connection
between its polls, while ``listen`` holds one for LISTEN.
"""

import time

import pytest
from psycopg2.extensions import parse_dsn

from cronpolicy.store import pgdriver

from .conftest import ScriptRunner, make_env, pooled_dsn, wait_for_file

# (every test here reaches the server through pgbouncer)
pytestmark = [pytest.mark.postgresql, pytest.mark.integration]


def test_connections_through_a_pooler_that_refuses_options_are_made_without_them(
        request, pg_dsn):
    pooled = pooled_dsn(request, "session")
    pgdriver._refuses_options.discard(pooled)
    connection = pgdriver.connect(pooled)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    finally:
        connection.close()
    assert pooled in pgdriver._refuses_options
    pgdriver._refuses_options.discard(pooled)
    connection = pgdriver.connect_async(pooled, time.monotonic() + 10, 5, "cronpolicy-test")
    connection.close()
    assert pooled in pgdriver._refuses_options
    # A server that takes them still gets them.
    direct = pgdriver.connect(pg_dsn)
    try:
        with direct.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone() == ("%ds" % pgdriver.STATEMENT_TIMEOUT_SECONDS,)
    finally:
        direct.close()
    assert pg_dsn not in pgdriver._refuses_options


@pytest.mark.integration
@pytest.mark.parametrize("mode, watch, held", [("transaction", "poll", False),
                                                ("session", "listen", True)])
def test_a_running_script_holds_a_pooler_connection_only_to_listen(
        request, tmp_path, mode, watch, held):
    bouncer = request.getfixturevalue("pgbouncers")(mode)
    env = make_env(tmp_path, pooled_dsn(request, mode))
    # Long intervals: between polls there is nothing to hold a connection for.
    with open(env["CRONPOLICY_CONFIG"], "w") as config:
        config.write("[cronpolicy]\nwatch = %s\npoll_interval = 5s\nheartbeat_interval = 5s\n"
                     "lease_ttl = 30s\n" % watch)
    runner = ScriptRunner(tmp_path, env)
    runner.write("holder")
    ready, release = tmp_path / "ready", tmp_path / "release"
    process = runner.start("holder", "-v", "--sleep", "60", "--ready-file", str(ready),
                           "--until-file", str(release))
    try:
        wait_for_file(ready)
        samples = []
        for _ in range(30):
            clients = bouncer.admin("SHOW CLIENTS")
            samples.append(any(client["application_name"] == "cronpolicy:holder"
                               for client in clients))
            time.sleep(0.1)
    finally:
        release.write_text("")
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert ("polling for stop requests (watch = poll)" in err) == (watch == "poll")
    if held:
        assert all(samples), samples
    else:
        # A poll (connect, read, close) takes milliseconds; at most a few
        # samples can land on one.
        assert sum(samples) <= 5, samples


def test_the_schema_is_upgraded_through_transaction_pooling_leaving_no_lock(
        request, empty_pg_dsn):
    import subprocess
    import sys
    bouncer = request.getfixturevalue("pgbouncers")("transaction")
    pooled = bouncer.dsn(parse_dsn(empty_pg_dsn)["dbname"])
    upgrades = [subprocess.Popen([sys.executable, "-m", "cronpolicy", "schema", "upgrade",
                                  "--dsn", pooled], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for upgrade in upgrades:
        out, err = upgrade.communicate(timeout=120)
        assert upgrade.returncode == 0, err
    from cronpolicy import schema

    from .conftest import DBA
    dba = DBA(empty_pg_dsn)
    assert dba.scalar("SELECT max(version) FROM cronpolicy.schema_version") \
        == schema.SCHEMA_VERSION
    assert dba.scalar("SELECT count(*) FROM cronpolicy.schema_version") \
        == len(schema.patches("postgresql"))
    assert dba.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                      " AND database = (SELECT oid FROM pg_database"
                      " WHERE datname = current_database())") == 0
