"""cronpolicy relay: many running scripts on one database connection.

Real processes throughout: a relay (`python -m cronpolicy relay`) as a
cronpolicy_relay login, real cron scripts as a cronpolicy_script login
whose config names the relay, a DBA's plain UPDATE.  The relay is killed,
stalled, pointed at the wrong database and fed garbage; each time the
scripts must still hear a stop within a second and the fleet must still
give up on a dead run within its lease.
"""

import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import psycopg2
import pytest
from psycopg2.extensions import parse_dsn

from cronpolicy import relayed
from cronpolicy.config import Settings
from cronpolicy.errors import ConfigError
from cronpolicy.policy import DEPLOY_PENDING, stop_verdict

from .conftest import (ScriptRunner, create_database, drop_database_soon, make_env, read_line,
                       upgraded, wait_for, wait_for_file)

pytestmark = [pytest.mark.postgresql, pytest.mark.integration]

#: Short intervals, so that a lease (3 s) runs out within a test.
CONFIG = ("[cronpolicy]\nheartbeat_interval = 0.5s\nlease_ttl = 3s\npoll_interval = 0.25s\n"
          "relay = {relay}\n")


class Relay:
    """A `cronpolicy relay` process on a free loopback port."""

    def __init__(self, dsn, tmp_path, argv=("--listen", "127.0.0.1:0"), files=None):
        config = tmp_path / "relay.conf"
        config.write_text(CONFIG.format(relay="127.0.0.1:1"))
        env = dict(os.environ, CRONPOLICY_DSN=dsn, CRONPOLICY_CONFIG=str(config),
                   CRONPOLICY_STATE_DIR=str(tmp_path / "relay-state"))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cronpolicy", "relay", *argv],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=None if files is None else lambda: resource.setrlimit(
                resource.RLIMIT_NOFILE, (files, files)))
        line = read_line(self.process.stderr, timeout=60)
        assert "serving on 127.0.0.1:" in line, line
        self.address = line.split("serving on ")[1].split()[0]
        self.login = parse_dsn(dsn).get("user")
        # Its log, read as it comes: a full pipe would stall the relay.
        self.log = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self):
        for line in self.process.stderr:
            self.log.append(line.decode(errors="replace"))

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)
        self.process.stderr.close()


@pytest.fixture
def fleet(pg_dsn, pg_roles, tmp_path):
    """(relay, scripts, dba connection): a relay as a cronpolicy_relay
    login, and a ScriptRunner whose scripts log in as a cronpolicy_script
    login and name the relay."""
    relay = Relay(pg_roles("cronpolicy_relay"), tmp_path)
    script_dsn = pg_roles("cronpolicy_script")
    relay.script_login = parse_dsn(script_dsn)["user"]
    env = make_env(tmp_path, script_dsn)
    config = tmp_path / "scripts.conf"
    config.write_text(CONFIG.format(relay=relay.address))
    env["CRONPOLICY_CONFIG"] = str(config)
    dba = psycopg2.connect(pg_dsn)
    dba.autocommit = True
    try:
        yield relay, ScriptRunner(tmp_path, env), dba
    finally:
        relay.stop()
        dba.close()


def start_jobs(scripts, tmp_path, count, safe=True, extra_args=()):
    """``count`` running scripts inside main(); their Popens."""
    safe_file = tmp_path / "safe"
    if safe:
        safe_file.write_text("yes")
    scripts.write("relayed", safe_file=safe_file, extra="single_instance = False")
    started = []
    for number in range(count):
        ready = tmp_path / ("ready-%d" % number)
        started.append((scripts.start("relayed", "--sleep", "120", "--ready-file", str(ready),
                                      *extra_args), ready))
    for process, ready in started:
        wait_for_file(ready, process=process)
    return [process for process, _ in started]


def query(dba, sql, *parameters):
    with dba.cursor() as cursor:
        cursor.execute(sql, parameters)
        return cursor.fetchall()


def backends_of(dba, login):
    return query(dba, "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", login)[0][0]


def stop_everything(dba, processes):
    """Set deploy_pending; return the seconds from the UPDATE to each run's
    end, on the database clock (all runs must end)."""
    query(dba, "UPDATE cronpolicy.deploy_state SET deploy_pending = true, reason = 'relay test'"
               " RETURNING 1")
    for process in processes:
        process.wait(timeout=60)
    rows = query(dba, "SELECT extract(epoch FROM r.finished_at - d.changed_at), r.stop_decision"
                      " FROM cronpolicy.script_run AS r, cronpolicy.deploy_state AS d"
                      " WHERE r.status = 'interrupted' ORDER BY r.id")
    assert len(rows) == len(processes), rows
    assert {decision for _, decision in rows} == {DEPLOY_PENDING}
    return [float(seconds) for seconds, _ in rows]


def leases_left(dba):
    return [float(left) for (left,) in query(
        dba, "SELECT extract(epoch FROM lease_expires_at - now()) FROM cronpolicy.script_run"
             " WHERE status = 'running' ORDER BY id")]


# Through the relay -----------------------------------------------------------------------

def test_relayed_scripts_hold_no_connection_and_hear_a_stop_within_a_second(fleet, tmp_path):
    relay, scripts, dba = fleet
    processes = start_jobs(scripts, tmp_path, 3)
    # The scripts let go of their connections; the relay holds one for all.
    wait_for(lambda: backends_of(dba, relay.script_login) == 0, what="the scripts' backends gone",
             interval=0.1)
    assert backends_of(dba, relay.login) == 1
    # Their leases are renewed by the relay, past the first lease of 3 s.
    time.sleep(4)
    assert all(process.poll() is None for process in processes)
    left = leases_left(dba)
    assert len(left) == 3 and all(0 < each <= 3.0 for each in left), left
    assert all(seconds < 1.0 for seconds in stop_everything(dba, processes))
    # No script fell back to the database on its own.
    for process in processes:
        assert "watching the policy database directly" not in process.stderr.read()


def test_a_script_that_becomes_safe_is_renewed_as_such_at_once(fleet, tmp_path):
    _, scripts, dba = fleet
    [process] = start_jobs(scripts, tmp_path, 1, safe=False)
    wait_for(lambda: query(dba, "SELECT safe_to_interrupt FROM cronpolicy.script_run")
             == [(False,)], what="the run said to be unsafe", interval=0.05)
    became_safe = time.monotonic()
    (tmp_path / "safe").write_text("now")
    wait_for(lambda: query(dba, "SELECT safe_to_interrupt FROM cronpolicy.script_run")
             == [(True,)], what="the run said to be safe", interval=0.02)
    # Said in the next heartbeat the script sends at once, renewed within RUSH:
    # well under a heartbeat_interval plus a poll.
    assert time.monotonic() - became_safe < 0.75 + 1.0
    stop_everything(dba, [process])


def test_a_script_killed_under_a_relay_is_given_up_within_its_lease(fleet, tmp_path):
    _, scripts, dba = fleet
    doomed, survivor = start_jobs(scripts, tmp_path, 2)
    time.sleep(1.0)
    [(doomed_id,)] = query(dba, "SELECT id FROM cronpolicy.script_run WHERE pid = %s",
                           doomed.pid)
    doomed.kill()
    doomed.wait(timeout=30)
    [(killed_at,)] = query(dba, "SELECT now()")
    time.sleep(1.0)
    [(expires,)] = query(dba, "SELECT lease_expires_at FROM cronpolicy.script_run"
                              " WHERE id = %s", doomed_id)
    # No renewal after its death: its lease ends at most one lease after it.
    assert (expires - killed_at).total_seconds() <= 3.0
    time.sleep(max(0.0, (expires - killed_at).total_seconds()) + 0.5)
    assert query(dba, "SELECT count(*) FROM cronpolicy.script_run WHERE id = %s"
                      " AND lease_expires_at < now()", doomed_id) == [(1,)]
    assert survivor.poll() is None
    assert query(dba, "SELECT lease_expires_at > now() FROM cronpolicy.script_run"
                      " WHERE pid = %s", survivor.pid) == [(True,)]
    stop_everything(dba, [survivor])


@pytest.mark.parametrize("fault", ["kill", "stall"])
def test_scripts_outlive_their_relay_and_still_hear_a_stop(fleet, tmp_path, fault):
    relay, scripts, dba = fleet
    processes = start_jobs(scripts, tmp_path, 2)
    wait_for(lambda: backends_of(dba, relay.script_login) == 0, what="the scripts' backends gone",
             interval=0.1)
    relay.process.send_signal(signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
    # Killed: the scripts see the connection close.  Stalled (no FIN, no
    # word): they hear no tick for relayed.SILENCE and leave it.
    wait_for(lambda: backends_of(dba, relay.script_login) == 2, what="the scripts back on the database",
             timeout=30, interval=0.1)
    time.sleep(4)       # longer than a lease: they renew their own now
    assert all(process.poll() is None for process in processes)
    assert all(seconds < 1.0 for seconds in stop_everything(dba, processes))
    for process in processes:
        assert "watching the policy database directly" in process.stderr.read()


@pytest.mark.parametrize("fault", ["cut", "freeze"])
def test_when_the_relay_loses_its_database_a_stop_still_arrives(pg_dsn, pg_roles, fault_proxy,
                                                                 tmp_path, fault):
    """The relay's own connection is cut (RST: it reconnects and LISTENs
    again) or frozen (half-open: its statement hangs, so it stops ticking
    and its scripts leave it); either way a stop arrives within a second."""
    from .conftest import _via
    proxy, _ = fault_proxy
    relay_dsn = pg_roles("cronpolicy_relay")
    relay = Relay(_via(relay_dsn, "127.0.0.1", proxy.port), tmp_path)
    try:
        script_dsn = pg_roles("cronpolicy_script")
        env = make_env(tmp_path, script_dsn)
        (tmp_path / "scripts.conf").write_text(CONFIG.format(relay=relay.address))
        env["CRONPOLICY_CONFIG"] = str(tmp_path / "scripts.conf")
        processes = start_jobs(ScriptRunner(tmp_path, env), tmp_path, 2)
        dba = psycopg2.connect(pg_dsn)
        dba.autocommit = True
        try:
            wait_for(lambda: backends_of(dba, parse_dsn(script_dsn)["user"]) == 0,
                     what="the scripts' connections let go", interval=0.1)
            proxy.cut() if fault == "cut" else proxy.freeze()
            time.sleep(2.0)
            assert all(process.poll() is None for process in processes)
            assert all(seconds < 1.0 for seconds in stop_everything(dba, processes))
        finally:
            dba.close()
        said = "".join(process.stderr.read() for process in processes)
        if fault == "freeze":
            assert said.count("watching the policy database directly") == 2, said
    finally:
        relay.stop()


def test_a_relay_on_another_database_is_left_at_once(pg_dsn, pg_roles, tmp_path):
    name, other = create_database("relayother")
    try:
        upgraded(other)
        relay = Relay(other, tmp_path)      # (as its owner: the run is not there)
        try:
            env = make_env(tmp_path, pg_roles("cronpolicy_script"))
            config = tmp_path / "scripts.conf"
            config.write_text(CONFIG.format(relay=relay.address))
            env["CRONPOLICY_CONFIG"] = str(config)
            scripts = ScriptRunner(tmp_path, env)
            [process] = start_jobs(scripts, tmp_path, 1)
            dba = psycopg2.connect(pg_dsn)
            dba.autocommit = True
            try:
                time.sleep(4)       # a lease: renewed by the script itself, not lost
                assert process.poll() is None
                assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
            finally:
                dba.close()
            said = process.stderr.read()
            assert "does not know run #" in said and "watching the policy database" in said
        finally:
            relay.stop()
    finally:
        drop_database_soon(name)


def test_a_fleet_wide_slot_is_kept_through_the_relay(fleet, tmp_path):
    _, scripts, dba = fleet
    query(dba, "INSERT INTO cronpolicy.script_policy (name, max_concurrent)"
               " VALUES ('relayed', 1) RETURNING id")
    [holder] = start_jobs(scripts, tmp_path, 1)
    time.sleep(4.5)     # past the slot's first lease
    [(left,)] = query(dba, "SELECT extract(epoch FROM lease_expires_at - now())"
                           " FROM cronpolicy.run_slot")
    assert 0 < float(left) <= 3.0
    second = scripts.run("relayed", "--sleep", "0")
    assert second.returncode != 0 and "fleet-wide" in second.stderr, second.stderr
    assert holder.poll() is None
    stop_everything(dba, [holder])


def test_the_operators_example_serves_as_written(pg_dsn, pg_roles, tmp_path):
    """docs/operators.txt's "Many running scripts" command and config,
    verbatim but for the DSN (this test's relay login) and the address (a
    free loopback port): a script so configured holds no connection while
    it runs and hears a stop."""
    import shlex
    from .test_readme import indented_blocks, section
    command, config = indented_blocks(section("Many running scripts: cronpolicy relay"))[:2]
    argv = shlex.split(command)
    assert argv[:2] == ["cronpolicy", "relay"] and "relay = 10.0.0.5:7447" in config
    relay_dsn = pg_roles("cronpolicy_relay")
    argv = [relay_dsn if word.startswith("postgresql://") else
            word.replace("10.0.0.5:7447", "127.0.0.1:0") for word in argv[2:]]
    relay = Relay(relay_dsn, tmp_path, argv)
    try:
        script_dsn = pg_roles("cronpolicy_script")
        env = make_env(tmp_path, script_dsn)
        (tmp_path / "example.conf").write_text(config.replace("10.0.0.5:7447", relay.address))
        env["CRONPOLICY_CONFIG"] = str(tmp_path / "example.conf")
        [process] = start_jobs(ScriptRunner(tmp_path, env), tmp_path, 1)
        dba = psycopg2.connect(pg_dsn)
        dba.autocommit = True
        try:
            wait_for(lambda: backends_of(dba, parse_dsn(script_dsn)["user"]) == 0,
                     what="the script's connection let go", interval=0.1)
            assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
        finally:
            dba.close()
    finally:
        relay.stop()


# What the relay is sent --------------------------------------------------------------------

def garbage(rng):
    """A line no script sends."""
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    if kind == 1:
        return json.dumps(rng.choice([[], 1, "x", None, {"alive": 1}])).encode() + b"\n"
    if kind == 2:
        return json.dumps({"watch": rng.choice(["1", True, None, 1.5]),
                           "key": "k"}).encode() + b"\n"
    if kind == 3:
        return json.dumps({"watch": rng.randrange(1, 10**6), "key": "k", "name": "n",
                           "host": "h", "ttl": rng.choice([0, -1, 10**9, "30", True]),
                           }).encode() + b"\n"
    if kind == 4:
        return b"{" * rng.randrange(1, 100000)
    return b"x" * (relayed.MAX_LINE + 10)


def test_garbage_sent_to_the_relay_costs_only_its_sender(fleet, tmp_path):
    relay, scripts, dba = fleet
    [process] = start_jobs(scripts, tmp_path, 1)
    host, port = relayed.parse_address(relay.address)
    rng = random.Random(2026)
    for _ in range(60):
        with socket.create_connection((host, port), timeout=5) as attacker:
            try:
                attacker.sendall(garbage(rng))
                attacker.shutdown(socket.SHUT_WR)
                attacker.settimeout(5)
                while attacker.recv(65536):
                    pass
            except OSError:
                pass        # it may have let go before reading everything
    # Connections that say nothing are let go of too (after HELLO_WITHIN).
    silent = [socket.create_connection((host, port), timeout=5) for _ in range(5)]
    try:
        assert relay.process.poll() is None
        time.sleep(1.0)
        assert process.poll() is None and leases_left(dba)[0] > 0
        assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
        assert "watching the policy database directly" not in process.stderr.read()
    finally:
        for each in silent:
            each.close()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_relay_out_of_descriptors_waits_rather_than_spins(pg_dsn, pg_roles, tmp_path):
    relay = Relay(pg_roles("cronpolicy_relay"), tmp_path, files=32)
    try:
        host, port = relayed.parse_address(relay.address)
        flood = [socket.create_connection((host, port), timeout=5) for _ in range(60)]
        try:
            time.sleep(0.5)
            before = cpu_seconds(relay.process.pid)
            time.sleep(2.0)
            assert cpu_seconds(relay.process.pid) - before < 0.5      # not a busy loop
            assert relay.process.poll() is None
        finally:
            for each in flood:
                each.close()
        # Room again: a script is served as before.
        env = make_env(tmp_path, pg_roles("cronpolicy_script"))
        (tmp_path / "scripts.conf").write_text(CONFIG.format(relay=relay.address))
        env["CRONPOLICY_CONFIG"] = str(tmp_path / "scripts.conf")
        [process] = start_jobs(ScriptRunner(tmp_path, env), tmp_path, 1)
        dba = psycopg2.connect(pg_dsn)
        dba.autocommit = True
        try:
            time.sleep(1.5)
            assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
        finally:
            dba.close()
        assert "watching the policy database directly" not in process.stderr.read()
    finally:
        relay.stop()


def test_the_relay_command_refuses_in_one_line(pg_roles, tmp_path):
    env = dict(os.environ, CRONPOLICY_STATE_DIR=str(tmp_path / "state"),
               CRONPOLICY_CONFIG=str(tmp_path / "none.conf"))
    (tmp_path / "none.conf").write_text("[cronpolicy]\n")

    def relay(*argv, dsn=None):
        run_env = dict(env, CRONPOLICY_DSN=dsn) if dsn else env
        return subprocess.run([sys.executable, "-m", "cronpolicy", "relay", *argv],
                              env=run_env, capture_output=True, text=True, timeout=60)

    for listen in ("nowhere", "127.0.0.1:", "127.0.0.1:70000", "[::1"):
        result = relay("--listen", listen, dsn=pg_roles("cronpolicy_relay"))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    # SQLite: no relay serves it.
    result = relay()
    assert result.returncode == 2 and "PostgreSQL" in result.stderr
    # A login that may read but not renew leases (no cronpolicy_relay): told at once.
    result = relay("--listen", "127.0.0.1:0", dsn=pg_roles("cronpolicy_reader"))
    assert result.returncode == 4 and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    # A port taken.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = relay("--listen", "127.0.0.1:%d" % taken.getsockname()[1],
                       dsn=pg_roles("cronpolicy_relay"))
    assert result.returncode == 2 and "cannot listen" in result.stderr


# Settings and messages (no database) -------------------------------------------------------

@pytest.mark.unit
def test_the_relay_setting_is_checked(tmp_path):
    assert Settings(dsn="postgresql:///x", relay="relay1:7447").relay == "relay1:7447"
    for bad in ("relay1", "relay1:port", ":7447", "relay1:99999"):
        with pytest.raises(ConfigError):
            Settings(dsn="postgresql:///x", relay=bad)
    environ = {"CRONPOLICY_DSN": "postgresql:///x", "CRONPOLICY_RELAY": "[::1]:7447",
               "CRONPOLICY_CONFIG": str(tmp_path / "cronpolicy.conf")}
    (tmp_path / "cronpolicy.conf").write_text("[cronpolicy]\nrelay = nowhere:1\n")
    assert Settings.load(environ=environ).relay == "[::1]:7447"
    environ["CRONPOLICY_RELAY"] = ""
    assert Settings.load(environ=environ).relay is None
    environ["CRONPOLICY_RELAY"] = "nowhere"
    with pytest.raises(ConfigError, match="CRONPOLICY_RELAY"):
        Settings.load(environ=environ)


@pytest.mark.unit
def test_a_stop_verdict_travels_whole():
    from cronpolicy.rows import DeployState, Inputs
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc)
    inputs = Inputs(now=now, schema_version=20, policies=[], windows=[], recent_runtimes=[],
                    services=[], rollouts=[],
                    deploy=DeployState(deploy_pending=True, reason="r", changed_at=now,
                                       changed_by="dba"))
    stop = stop_verdict(inputs, "job", "host")
    assert stop is not None
    message = json.loads(json.dumps(relayed.verdict_message(stop)))
    again = relayed.verdict_from(message)
    for field in relayed.VERDICT_FIELDS:
        assert getattr(again, field) == getattr(stop, field)
    assert relayed.verdict_from(None) is None
    for bad in ({}, {"reason": 3}, [1], "stop"):
        with pytest.raises(ValueError):
            relayed.verdict_from(bad)
