"""Rollouts as owned, recorded objects (schema patch 0016): begun, waited
for, ended one by one; the switches of earlier versions in step with them;
`deploy run` around a command; an owner that dies; what each one cost.
Both backends, real processes where the behaviour crosses them."""

import json
import signal
import subprocess
import sys
import time

import pytest

from cronpolicy import exitcodes

from .conftest import read_line, wait_for, wait_for_file

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration


def cronpolicy(env, *argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "cronpolicy.tooling.cli"] + list(argv),
                          env=env, capture_output=True, text=True, timeout=timeout)


def start_cronpolicy(env, *argv):
    return subprocess.Popen([sys.executable, "-m", "cronpolicy.tooling.cli"] + list(argv),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rollouts(dba):
    return dba.execute("SELECT id, kind, services, reason, ended_at IS NOT NULL"
                       " FROM cronpolicy.rollout ORDER BY id")


def switch(dba):
    """(deploy_pending, services with a service_deploy row)."""
    pending = dba.scalar("SELECT deploy_pending FROM cronpolicy.deploy_state")
    return bool(pending), [row[0] for row in dba.execute(
        "SELECT service FROM cronpolicy.service_deploy ORDER BY service")]


# Two rollouts no longer end each other ----------------------------------------------------

def test_two_rollouts_are_two_and_one_ending_leaves_the_other(cli, dba):
    code, out, _ = cli("deploy", "begin", "--reason", "db patch", "--json")
    first = json.loads(out)
    assert code == 0 and first["id"] == 1 and first["kind"] == "full" and first["others"] == []
    code, out, _ = cli("deploy", "begin", "--reason", "hotfix")
    assert code == 0 and out.startswith("rollout #2 began: every script stops starting: hotfix")
    assert "also open: #1 full by" in out and "db patch" in out
    code, _, err = cli("deploy", "end")
    assert code == exitcodes.USAGE and "2 rollouts are open: #1 full" in err and "#2 full" in err
    assert rollouts(dba) == [(1, "full", "", "db patch", False), (2, "full", "", "hotfix", False)]
    code, out, _ = cli("deploy", "end", "2")
    assert code == 0 and "rollout #2 ended after" in out and "still open: #1 full" in out
    assert switch(dba) == (True, [])            # the other still stops the fleet
    code, out, _ = cli("check", "any-script")
    assert code == exitcodes.WOULD_SKIP and "deploy pending (rollout #1)" in out
    code, out, _ = cli("deploy", "end", "2")
    assert code == 0 and "rollout #2 had ended already" in out
    code, out, _ = cli("deploy", "end")
    assert code == 0 and "rollout #1 ended" in out
    assert switch(dba) == (False, []) and cli("check", "any-script")[0] == exitcodes.OK
    code, out, _ = cli("deploy", "end")
    assert code == 0 and out == "no rollout is open\n"


def test_ending_an_unknown_rollout_or_ids_and_all_together_is_refused(cli, dba):
    code, _, err = cli("deploy", "end", "7")
    assert code == exitcodes.USAGE and "there is no rollout #7" in err
    cli("deploy", "begin")
    for argv in (("deploy", "end", "1", "--all"), ("deploy", "end", "0"),
                 ("deploy", "end", "x")):
        code, _, err = cli(*argv)
        assert code == exitcodes.USAGE and len(err.strip().splitlines()) == 1, (argv, err)
    assert rollouts(dba)[0][4] is False or rollouts(dba)[0][4] == 0


def test_rollouts_of_services_and_a_full_one_end_each_on_their_own(cli, dba):
    cli("deploy", "begin", "--service", "xmlrpc", "--service", "librarian", "--reason", "r1")
    cli("deploy", "begin", "--service", "xmlrpc", "--reason", "r2")
    cli("deploy", "begin", "--reason", "r3")
    assert switch(dba) == (True, ["librarian", "xmlrpc"])
    code, _, err = cli("deploy", "end", "--service", "xmlrpc")
    assert code == exitcodes.USAGE and "2 rollouts of xmlrpc are open" in err
    assert cli("deploy", "end", "1")[0] == 0
    assert switch(dba) == (True, ["xmlrpc"])    # #2 still covers xmlrpc
    assert cli("deploy", "end", "--service", "xmlrpc")[0] == 0
    assert switch(dba) == (True, [])
    code, out, _ = cli("deploy", "end", "--all")
    assert code == 0 and "rollout #3 ended" in out and switch(dba) == (False, [])


# The plain-SQL switches keep their meaning -------------------------------------------------

def test_the_plain_sql_switch_opens_and_ends_rollouts(cli, dba):
    true, false = ("true", "false") if dba.backend == "postgresql" else ("1", "0")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = %s, reason = 'by hand'"
                % true)
    assert rollouts(dba) == [(1, "full", "", "by hand", False)]
    if dba.backend == "postgresql":
        assert dba.scalar("SELECT owner FROM cronpolicy.rollout") == \
            dba.scalar("SELECT session_user")
    cli("deploy", "begin", "--reason", "tooling")
    cli("deploy", "begin", "--service", "mail")
    dba.execute("UPDATE cronpolicy.deploy_state SET reason = 'renamed'")
    assert rollouts(dba)[0][3] == "renamed"     # the oldest open full rollout's
    # Cleared: every full rollout ends, whoever began it, as the switch always did.
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = %s" % false)
    assert [row[4] in (True, 1) for row in rollouts(dba)] == [True, True, False]
    assert switch(dba) == (False, ["mail"])
    dba.execute("DELETE FROM cronpolicy.service_deploy WHERE service = 'mail'")
    assert rollouts(dba)[2][4] in (True, 1)
    dba.execute("INSERT INTO cronpolicy.service_deploy (service, reason) VALUES ('xmlrpc', 'x')")
    assert rollouts(dba)[3] == (4, "services", "xmlrpc", "x", False)
    assert switch(dba) == (False, ["xmlrpc"])


def test_a_rollout_stays_what_it_began_as_and_ended_stays_ended(dba):
    dba.execute("INSERT INTO cronpolicy.rollout (kind, services) VALUES ('services', 'mail')")
    for sql in ("UPDATE cronpolicy.rollout SET kind = 'full', services = ''",
                "UPDATE cronpolicy.rollout SET services = 'xmlrpc'"):
        with pytest.raises(Exception) as refused:
            dba.execute(sql)
        assert "stays" in str(refused.value)
    dba.execute("UPDATE cronpolicy.rollout SET ended_at = %s" % dba.now_plus(0))
    with pytest.raises(Exception) as refused:
        dba.execute("UPDATE cronpolicy.rollout SET ended_at = NULL")
    assert "ended" in str(refused.value)
    assert switch(dba) == (False, [])


def test_a_lease_renewed_is_neither_audited_nor_announced(cli, dba):
    from cronpolicy.config import Settings
    from cronpolicy.tooling import deploy
    from cronpolicy.tooling.database import Database
    db = Database(Settings(dsn=dba.dsn, dsn_source="--dsn"))
    row, _ = deploy.begin(db, reason="r", lease=30)
    before = dba.scalar("SELECT count(*) FROM cronpolicy.policy_audit")
    for _ in range(3):
        assert deploy.renew(db, row["id"], 30)
    assert dba.scalar("SELECT count(*) FROM cronpolicy.policy_audit") == before
    deploy.end(db, row["id"])
    assert not deploy.renew(db, row["id"], 30)      # ended: nothing to renew


def test_the_database_says_who_and_when_for_a_rollout_login(pg_roles, pg_dsn):
    import psycopg2
    from .conftest import DBA
    rollout_dsn = pg_roles("cronpolicy_rollout")
    login = psycopg2.extensions.parse_dsn(rollout_dsn)["user"]
    connection = psycopg2.connect(rollout_dsn)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO cronpolicy.rollout (reason, lease_expires_at)"
                           " VALUES ('r', now() + interval '5 hours')")
            with pytest.raises(psycopg2.Error) as refused:
                cursor.execute("INSERT INTO cronpolicy.rollout (reason, owner, began_at)"
                               " VALUES ('r', 'alice', '2020-01-01')")
            assert "permission denied" in str(refused.value)
            cursor.execute("UPDATE cronpolicy.rollout SET ended_at = '2020-01-01'")
    finally:
        connection.close()
    dba = DBA(pg_dsn)
    [(owner, capped, ended_by, ended_now)] = dba.execute(
        "SELECT owner, lease_expires_at IS NULL, ended_by, ended_at > now() - interval '1 minute'"
        " FROM cronpolicy.rollout")
    assert (owner, capped, ended_by, ended_now) == (login, True, login, True)


# deploy run ------------------------------------------------------------------------------

def test_deploy_run_runs_the_command_once_quiet_and_ends_with_its_exit(script_env, dba,
                                                                       tmp_path):
    out = tmp_path / "ran"
    result = cronpolicy(script_env, "deploy", "run", "--reason", "r7", "--expect", "10m", "--",
                        "sh", "-c", "echo ran > %s; exit 3" % out)
    assert result.returncode == 3, result.stderr
    assert out.read_text() == "ran\n"
    assert "rollout #1 began" in result.stdout and "rollout #1 ended after" in result.stdout
    assert dba.execute("SELECT kind, reason, quiet_at IS NOT NULL, ended_at IS NOT NULL,"
                       " lease_expires_at IS NULL FROM cronpolicy.rollout"
                       ) in ([("full", "r7", True, True, True)], [("full", "r7", 1, 1, 1)])
    missing = cronpolicy(script_env, "deploy", "run", "--", str(tmp_path / "no-such-command"))
    assert missing.returncode == 127 and "cannot run" in missing.stderr
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE ended_at IS NULL") == 0
    nothing = cronpolicy(script_env, "deploy", "run", "--reason", "r")
    assert nothing.returncode == exitcodes.USAGE and "after --" in nothing.stderr
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout") == 2


def test_deploy_run_times_out_without_running_the_command(scripts, script_env, dba, tmp_path):
    scripts.write("publisher")                      # never safe: rollouts wait for it
    ready = tmp_path / "ready"
    job = scripts.start("publisher", "--sleep", "600", "--ready-file", str(ready))
    try:
        wait_for_file(str(ready), process=job)
        out = tmp_path / "ran"
        # The wait looks once before it may time out: 0.1s finds what 1s did.
        result = cronpolicy(script_env, "deploy", "run", "--wait-timeout", "0.1s", "--",
                            "touch", str(out))
        assert result.returncode == exitcodes.WAIT_TIMEOUT, result.stdout + result.stderr
        assert not out.exists() and "timed out" in result.stdout
        assert "publisher" in result.stdout         # the live table named it
        [(ended, awaited)] = dba.execute(
            "SELECT ended_at IS NOT NULL, (SELECT string_agg(name, ',')"
            " FROM cronpolicy.rollout_awaited) FROM cronpolicy.rollout"
            if dba.backend == "postgresql" else
            "SELECT ended_at IS NOT NULL, (SELECT group_concat(name, ',')"
            " FROM cronpolicy.rollout_awaited) FROM cronpolicy.rollout")
        assert ended in (True, 1) and awaited == "publisher"
    finally:
        job.kill()
        job.communicate(timeout=30)


@pytest.mark.parametrize("when", ["waiting", "running"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_deploy_run_and_ends_the_rollout(scripts, script_env, dba, tmp_path,
                                                         when, signum):
    if when == "waiting":
        job = scripts.start_never_safe("publisher")
    got = tmp_path / "got"
    started = tmp_path / "started"
    command = ("trap 'echo $1 > %s; exit 9' INT TERM; echo up > %s;"
               " while :; do sleep 0.05; done" % (got, started))
    runner = start_cronpolicy(script_env, "deploy", "run", "--", "sh", "-c", command, "x")
    try:
        assert read_line(runner.stdout).startswith("rollout #1 began")
        if when == "waiting":
            wait_for(lambda: dba.scalar("SELECT count(*) FROM cronpolicy.rollout_awaited"),
                     what="the wait to see the publisher")
        else:
            wait_for_file(str(started), process=runner)
        runner.send_signal(signum)
        _, err = runner.communicate(timeout=90)
    finally:
        if when == "waiting":
            job.kill()
            job.communicate(timeout=30)
    assert runner.returncode == exitcodes.STOPPED, err
    assert "Traceback" not in err
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE ended_at IS NULL") == 0
    if when == "running":
        assert got.exists()     # the command got the signal, and had its say
    else:
        assert not started.exists()


def test_a_killed_owner_leaves_its_rollout_open_and_says_so_within_the_lease(
        scripts, script_env, dba, tmp_path):
    config = tmp_path / "cronpolicy.conf"
    config.write_text(config.read_text() + "heartbeat_interval = 0.5s\nlease_ttl = 2s\n")
    scripts.write("publisher")
    ready = tmp_path / "ready"
    job = scripts.start("publisher", "--sleep", "600", "--ready-file", str(ready))
    try:
        wait_for_file(str(ready), process=job)
        runner = start_cronpolicy(script_env, "deploy", "run", "--reason", "doomed", "--",
                                  "true")
        assert read_line(runner.stdout).startswith("rollout #1 began")
        assert cronpolicy(script_env, "overdue").returncode == exitcodes.OK
        runner.kill()                       # kill -9: no chance to end anything
        runner.communicate(timeout=30)
        wait_for(lambda: json.loads(cronpolicy(script_env, "rollouts", "--json").stdout)[
            "rollouts"][0]["owner_lost"], timeout=30, what="owner lost")
        [row] = json.loads(cronpolicy(script_env, "rollouts", "--json").stdout)["rollouts"]
        assert row["state"] == "open" and row["owner_pid"] == runner.pid
        assert switch(dba)[0]                          # the safe direction: still stopped
        status = cronpolicy(script_env, "status")
        assert "! owner lost: pid %d on testhost" % runner.pid in status.stdout
        overdue = cronpolicy(script_env, "overdue")
        assert overdue.returncode == exitcodes.OVERDUE and "rollout #1 full" in overdue.stdout
        metrics = cronpolicy(script_env, "metrics").stdout
        assert "cronpolicy_rollouts_owner_lost 1.0" in metrics
        assert 'cronpolicy_rollouts_open{kind="full",service=""} 1.0' in metrics
        assert cronpolicy(script_env, "deploy", "end", "1").returncode == 0
        assert cronpolicy(script_env, "overdue").returncode == exitcodes.OK
    finally:
        job.kill()
        job.communicate(timeout=30)


def test_a_rollout_open_past_its_expectation_is_overdue(cli, dba):
    cli("deploy", "begin", "--expect", "1s", "--reason", "quick")
    cli("deploy", "begin", "--service", "mail")          # no --expect: an hour by default
    wait_for(lambda: cli("overdue")[0] == exitcodes.OVERDUE, timeout=20, what="overdue")
    code, out, _ = cli("overdue", "--json")
    [late] = [entry for entry in json.loads(out)["reports"] if entry.get("rollout")]
    assert late["rollout"] == 1 and "overdue: open" in late["detail"] and "expected 1s" in \
        late["detail"]
    code, out, _ = cli("metrics")
    assert "cronpolicy_rollouts_overdue 1.0" in out
    assert 'cronpolicy_rollouts_open{kind="services",service="mail"} 1.0' in out


# Code-only rollouts: twenty running scripts, four that need the service --------------------

@pytest.mark.slow
def test_a_code_only_rollout_waits_for_four_of_twenty_and_nobody_else(scripts, script_env,
                                                                       dba, tmp_path):
    """20 running scripts, 4 of which need xmlrpc and are never safe to stop:
    a code-only rollout of xmlrpc ends as soon as those 4 end; none of the
    16 others waits or is skipped, and its record says so."""
    release_xmlrpc, release_others = tmp_path / "go-xmlrpc", tmp_path / "go-others"
    names = ["xmlrpc-%d" % index for index in range(4)] + ["other-%d" % index
                                                           for index in range(16)]
    for name in names + ["xmlrpc-late", "other-late"]:
        scripts.write(name, extra="needs = ('xmlrpc',)" if name.startswith("xmlrpc") else
                      "needs = ('mail',)" if name.endswith(("1", "3")) else "pass")
    running = {}
    for name in names:
        until = release_xmlrpc if name.startswith("xmlrpc") else release_others
        running[name] = scripts.start(name, "--sleep", "600", "--until-file", str(until),
                                      "--ready-file", str(tmp_path / (name + ".ready")))
    try:
        for name in names:
            wait_for_file(str(tmp_path / (name + ".ready")), process=running[name])
        restarted = tmp_path / "restarted"
        runner = start_cronpolicy(script_env, "deploy", "run", "--service", "xmlrpc",
                                  "--reason", "xmlrpc 1.4", "--wait-timeout", "10m", "--",
                                  "sh", "-c", "echo restarted > %s" % restarted)
        assert read_line(runner.stdout).startswith("rollout #1 began: the scripts that need "
                                                   "xmlrpc stop starting")
        wait_for(lambda: dba.scalar("SELECT count(*) FROM cronpolicy.rollout_awaited") == 4,
                 timeout=60, what="the wait to see the four")
        # Meanwhile: a new start of a script that needs xmlrpc is skipped, any other runs.
        assert scripts.run("xmlrpc-late").returncode == 0
        assert scripts.run("other-late").returncode == 0
        assert (scripts.main_calls("xmlrpc-late"), scripts.main_calls("other-late")) == (0, 1)
        assert not restarted.exists() and runner.poll() is None
        release_xmlrpc.write_text("go")
        out, err = runner.communicate(timeout=120)
        assert runner.returncode == 0, out + err
        assert restarted.read_text() == "restarted\n"
        for name in names[:4]:
            assert running[name].wait(timeout=60) == 0
        assert all(running[name].poll() is None for name in names[4:])   # untouched
        [record] = json.loads(cronpolicy(script_env, "rollouts", "--json").stdout)["rollouts"]
        assert (record["kind"], record["services"], record["state"]) == (
            "services", ["xmlrpc"], "ended")
        assert sorted(run["name"] for run in record["awaited"]) == names[:4]
        assert (record["skipped_starts"], record["interrupted"]) == (1, 0)
        # As soon as the four ended: quiet within a few seconds of the last end.
        last_end = dba.scalar(
            "SELECT max(finished_at) FROM cronpolicy.script_run WHERE name LIKE 'xmlrpc-_'")
        gap = dba.scalar("SELECT extract(epoch FROM quiet_at - %s) FROM cronpolicy.rollout"
                         % "(SELECT max(finished_at) FROM cronpolicy.script_run"
                           " WHERE name LIKE 'xmlrpc-_')" if dba.backend == "postgresql" else
                         "SELECT (julianday(quiet_at) - julianday(%r)) * 86400"
                         " FROM cronpolicy.rollout" % last_end)
        assert 0 <= gap < 5, gap
        assert record["stall_seconds"] >= record["awaited"][0]["seconds"] - 1
        release_others.write_text("go")
        for name in names[4:]:
            assert running[name].wait(timeout=60) == 0, name
        statuses = dict(dba.execute("SELECT name, status FROM cronpolicy.script_run"
                                    " WHERE name LIKE 'other-%'"))
        assert set(statuses.values()) == {"succeeded"} and len(statuses) == 17
    finally:
        release_xmlrpc.write_text("go")
        release_others.write_text("go")
        for process in running.values():
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)


# deploy run when the network misbehaves (PostgreSQL, through a fault proxy) ----------------

@pytest.mark.parametrize("fault", ["refused", "half-open"])
def test_deploy_run_through_a_broken_network_ends_its_rollout(fault, pg_scripts, fault_proxy, pg_dsn,
                                                              tmp_path):
    """Connections cut and refused while it waits: one line, exit 4, the
    command not run, the rollout ended once the database answers again.
    Connections left half-open: the wait notices, reconnects and goes on."""
    from .conftest import DBA, make_env
    proxy, proxied = fault_proxy
    dba = DBA(pg_dsn)
    env = make_env(tmp_path, proxied)
    config = tmp_path / "cronpolicy.conf"
    # (A heartbeat far off: while the proxy refuses, only the wait's
    # reconnection and the rollout's end connect through it.)
    config.write_text(config.read_text() + "tcp_keepalive = 1s\ntcp_user_timeout = 2s\n"
                      "decision_timeout = 2s\nheartbeat_interval = 60s\nlease_ttl = 180s\n")
    pg_scripts.write("publisher")
    ready, go = tmp_path / "ready", tmp_path / "go"
    job = pg_scripts.start("publisher", "--sleep", "600", "--ready-file", str(ready),
                           "--until-file", str(go))
    ran = tmp_path / "ran"
    try:
        wait_for_file(str(ready), process=job)
        runner = start_cronpolicy(env, "deploy", "run", "--", "touch", str(ran))
        assert read_line(runner.stdout).startswith("rollout #1 began")
        wait_for(lambda: dba.scalar("SELECT count(*) FROM cronpolicy.rollout_awaited"),
                 what="the wait to see the publisher")
        if fault == "refused":
            proxy.mode = "refuse"
            proxy.cut()
            # Refused until the wait has tried to connect again (it gives
            # up then, and tries to end the rollout meanwhile): a fixed two
            # seconds let a wait slowed by a loaded machine reconnect after
            # them, and wait on for the publisher (CI, once).
            wait_for(lambda: proxy.refused >= 1, timeout=60,
                     what="the wait to connect again and be refused")
            proxy.mode = "pass"
            out, err = runner.communicate(timeout=120)
            assert runner.returncode == exitcodes.GATE_ERROR, out + err
            assert "Traceback" not in err and not ran.exists()
            assert len([line for line in err.splitlines() if "error" in line]) == 1, err
        else:
            proxy.freeze()                  # new connections still pass
            time.sleep(3)
            go.write_text("go")
            out, err = runner.communicate(timeout=120)
            assert runner.returncode == 0, out + err
            assert ran.exists() and "Traceback" not in err
        assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE ended_at IS NULL") == 0
    finally:
        go.write_text("go")
        job.communicate(timeout=60)


def test_deploy_run_whose_reader_leaves_still_runs_the_command_and_ends(script_env, dba,
                                                                        tmp_path):
    """`cronpolicy deploy run -- CMD | head -1`: the reader leaves after the
    first line; the command still runs, the rollout still ends, and the exit
    is the command's (it was 0 and the command never ran)."""
    ran = tmp_path / "ran"
    script = ("%s -m cronpolicy.tooling.cli deploy run -- sh -c 'sleep 0.5; echo ran > %s;"
              " exit 5' | head -1; exit ${PIPESTATUS[0]}" % (sys.executable, ran))
    result = subprocess.run(["bash", "-c", script], env=script_env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 5, result.stderr
    assert ran.read_text() == "ran\n" and result.stdout.startswith("rollout #1 began")
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert dba.scalar("SELECT count(*) FROM cronpolicy.rollout WHERE ended_at IS NULL") == 0


def test_the_python_api_takes_a_database_or_plain_settings_alike(dba):
    """Rollouts, windows and the audit from Python: the tooling's Database
    (SQLAlchemy beneath) and store.writes.Plain (what the commands use) give
    the same rows, and each sees what the other wrote."""
    from cronpolicy.config import Settings
    from cronpolicy.store.writes import Plain
    from cronpolicy.tooling import audit, deploy, windows
    from cronpolicy.tooling.database import Database
    settings = Settings(dsn=dba.dsn, dsn_source="--dsn")
    database, plain = Database(settings), Plain(settings)
    first, _ = deploy.begin(database, services=["xmlrpc"], reason="by database", expect=600)
    second, others = deploy.begin(plain, reason="by plain", lease=30)
    assert [row["id"] for row in others] == [first["id"]]
    assert others[0] == first and first["expected_duration"] == 600.0
    assert deploy.open_rollouts(database) == deploy.open_rollouts(plain) == [first, second]
    assert deploy.renew(database, second["id"], 60) and deploy.renew(plain, second["id"], 60)
    ended, did = deploy.end(plain, first["id"], reason="done")
    assert did and ended["ended_at"] is not None and ended["ended_by"]
    assert deploy.end(database, first["id"]) == (ended, False)
    assert deploy.deploy_end(database, reason="all") == [second["id"]]
    assert deploy.end_open(plain) == []
    made = [windows.add_window(source, "+1h", duration=3600, reason=source.__class__.__name__)
            for source in (database, plain)]
    assert windows.list_windows(database)[1] == windows.list_windows(plain)[1]
    assert [window["id"] for window in windows.list_windows(plain)[1]] == [
        window["id"] for window in made]
    cancelled, already = windows.cancel_window(database, made[1]["id"], reason="no")
    assert not already and cancelled["state"] == "cancelled"
    assert windows.cancel_window(plain, made[1]["id"]) == (cancelled, True)
    assert windows.list_windows(plain, include_all=True)[1][1] == cancelled
    entries = audit.changes(database, table="rollout")
    assert [entry["reason"] for entry in entries if entry["operation"] == "INSERT"] == [
        "by database", "by plain"]
    assert all(entry["db_user"] for entry in entries)
