"""cronpolicy relay: many running scripts on one database connection.

Real processes throughout: a relay (`python -m cronpolicy relay`) as a
cronpolicy_relay login, real cron scripts as a cronpolicy_script login
whose config names the relay, a DBA's plain UPDATE.  The relay is killed,
stalled, pointed at the wrong database and fed garbage; each time the
scripts must still hear a stop within a second and the fleet must still
give up on a dead run within its lease.
"""

import contextlib
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
    scripts = relayed_runner(tmp_path, script_dsn, relay.address)
    dba = psycopg2.connect(pg_dsn)
    dba.autocommit = True
    try:
        yield relay, scripts, dba
    finally:
        relay.stop()
        dba.close()


def relayed_runner(tmp_path, dsn, address):
    """A ScriptRunner whose scripts log in with ``dsn`` and name the relay at ``address``."""
    env = make_env(tmp_path, dsn)
    (tmp_path / "scripts.conf").write_text(CONFIG.format(relay=address))
    env["CRONPOLICY_CONFIG"] = str(tmp_path / "scripts.conf")
    return ScriptRunner(tmp_path, env)


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


@contextlib.contextmanager
def dba_at(dsn):
    """A DBA's autocommit connection to ``dsn``, closed after."""
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


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
    if len(rows) != len(processes):     # say what became of each, and what the scripts said
        runs = query(dba, "SELECT id, status, stop_decision, stop_reason, spooled"
                          " FROM cronpolicy.script_run ORDER BY id")
        said = [(process.returncode, process.stderr.read()) for process in processes]
        raise AssertionError("%d of %d runs interrupted: %r\n%r" % (len(rows), len(processes),
                                                                      runs, said))
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


@pytest.mark.parametrize("fault", ["kill", "stall", "term"])
def test_scripts_outlive_their_relay_and_still_hear_a_stop(fleet, tmp_path, fault):
    relay, scripts, dba = fleet
    processes = start_jobs(scripts, tmp_path, 2)
    wait_for(lambda: backends_of(dba, relay.script_login) == 0, what="the scripts' backends gone",
             interval=0.1)
    relay.process.send_signal({"kill": signal.SIGKILL, "stall": signal.SIGSTOP,
                               "term": signal.SIGTERM}[fault])
    # Killed: the scripts see the connection close.  Stalled (no FIN, no
    # word): they hear no tick for relayed.SILENCE and leave it.  Stopped
    # (SIGTERM): it says goodbye, and they leave it at once.
    wait_for(lambda: backends_of(dba, relay.script_login) == 2, what="the scripts back on the database",
             timeout=2 if fault == "term" else 30, interval=0.05)
    if fault == "term":
        assert relay.process.wait(timeout=5) == 0
    time.sleep(4)       # longer than a lease: they renew their own now
    assert all(process.poll() is None for process in processes)
    assert all(seconds < 1.0 for seconds in stop_everything(dba, processes))
    for process in processes:
        said = process.stderr.read()
        assert "watching the policy database directly" in said
        if fault == "term":
            assert "it is going away (the relay was stopped (SIGTERM))" in said, said


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
        scripts = relayed_runner(tmp_path, script_dsn, relay.address)
        processes = start_jobs(scripts, tmp_path, 2)
        with dba_at(pg_dsn) as dba:
            wait_for(lambda: backends_of(dba, parse_dsn(script_dsn)["user"]) == 0,
                     what="the scripts' connections let go", interval=0.1)
            proxy.cut() if fault == "cut" else proxy.freeze()
            time.sleep(2.0)
            assert all(process.poll() is None for process in processes)
            assert all(seconds < 1.0 for seconds in stop_everything(dba, processes))
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
            scripts = relayed_runner(tmp_path, pg_roles("cronpolicy_script"), relay.address)
            [process] = start_jobs(scripts, tmp_path, 1)
            with dba_at(pg_dsn) as dba:
                time.sleep(4)       # a lease: renewed by the script itself, not lost
                assert process.poll() is None
                assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
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
        with dba_at(pg_dsn) as dba:
            wait_for(lambda: backends_of(dba, parse_dsn(script_dsn)["user"]) == 0,
                     what="the script's connection let go", interval=0.1)
            assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
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
        scripts = relayed_runner(tmp_path, pg_roles("cronpolicy_script"), relay.address)
        [process] = start_jobs(scripts, tmp_path, 1)
        with dba_at(pg_dsn) as dba:
            time.sleep(1.5)
            assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
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


# Settings and messages (no database; integration all the same, with the module) -----------

def test_the_relay_setting_is_checked(tmp_path):
    assert Settings(dsn="postgresql:///x", relay="relay1:7447").relay == "relay1:7447"
    for bad in ("relay1", "relay1:port", ":7447", "relay1:99999", "relay1:\u00b2",
                "relay1:\u0663", "[::1]", "[::1]7447", "relay1:-1", "relay1:+1"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
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


# A hostile reviewer's inputs ---------------------------------------------------------------

def hello(run_id=1, key="k", **fields):
    message = {"watch": run_id, "key": key, "name": "relayed", "host": "h", "needs": [],
               "ignore": False, "safe": False, "slot": None, "ttl": 3}
    message.update(fields)
    return message


def said_back(sock, timeout=3.0):
    """The messages a relay sent on ``sock`` until it closed it or ``timeout`` passed."""
    sock.settimeout(0.2)
    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return [json.loads(line) for line in data.split(b"\n") if line]


#: Hellos a relay can read that no database takes, and lines it cannot parse
#: without running out of stack.
POISON = [
    json.dumps(hello(2**63)), json.dumps(hello(-2**70)), json.dumps(hello(1, "a\u0000b")),
    json.dumps(hello(1, "\ud800")), json.dumps(hello(1, slot=["x\u0000", 1])),
    json.dumps(hello(1, slot=["x", 2**31])), json.dumps(hello(1, slot=["\udc80", 0])),
    json.dumps(hello(1, name="\u0000\ud800", host="\udfff", needs=["\u0000"])),
    "[" * 60000, '{"a":' * 30000,
]


def test_a_hello_no_database_takes_costs_only_its_sender(fleet, tmp_path):
    """One connection's run id past bigint, a NUL or a lone surrogate in its
    key or slot, or JSON nested deeper than the stack must not stop the
    relay (a traceback) nor fail the batch renewal of every other script
    (then the relay falls silent for all of them, for good)."""
    relay, scripts, dba = fleet
    [process] = start_jobs(scripts, tmp_path, 1)
    host, port = relayed.parse_address(relay.address)
    attackers = []
    for line in POISON:
        attacker = socket.create_connection((host, port), timeout=5)
        attacker.sendall(line.encode("utf-8", "surrogatepass") + b"\n")
        attackers.append(attacker)
    try:
        time.sleep(2.0)
        assert relay.process.poll() is None, "".join(relay.log)
        for attacker in attackers:
            answer = said_back(attacker, timeout=1.0)
            assert not any("renewed" in each or "tick" in each for each in answer), answer
        assert process.poll() is None
        assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
        assert "watching the policy database directly" not in process.stderr.read()
        assert "Traceback" not in "".join(relay.log)
    finally:
        for attacker in attackers:
            attacker.close()


class FakeRelay:
    """A relay that lies: to each script it sends ``lines`` after its hello,
    then a tick every 0.1 s (so it never falls silent) until the script
    leaves.  ``hellos``: what each script said first."""

    def __init__(self, lines):
        self.lines = lines
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.hellos = []
        self.served = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.served.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock):
        try:
            with sock.makefile("rb") as reader:
                self.hellos.append(json.loads(reader.readline()))
            for line in self.lines:
                sock.sendall(line.encode("utf-8", "surrogatepass") + b"\n")
            while True:
                sock.sendall(b'{"tick":1}\n')
                time.sleep(0.1)
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for sock in self.served:
            sock.close()


def lied_to(pg_roles, tmp_path, lines):
    """A script relayed by a FakeRelay sending ``lines``: (relay, process, scripts, dba)."""
    relay = FakeRelay(lines)
    scripts = relayed_runner(tmp_path, pg_roles("cronpolicy_script"), relay.address)
    return relay, start_jobs(scripts, tmp_path, 1)[0], scripts


#: What no relay sends: a script must leave such a relay (and watch the
#: database itself), not die, stop, or record what no column takes.
LIES = {
    "deep": "[" * 60000,
    "deep-object": '{"tick":' * 30000,
    "renewed-list": '{"renewed":[0]}',
    "renewed-object": '{"renewed":{}}',
    "verdict-policy-text": json.dumps({"verdict": {"code": "deploy-pending", "reason": "r",
                                                   "policy_id": "abc"}}),
    "verdict-policy-huge": json.dumps({"verdict": {"code": "deploy-pending", "reason": "r",
                                                   "policy_id": 2**40}}),
    "verdict-nul": json.dumps({"verdict": {"code": "deploy-pending", "reason": "r\u0000"}}),
    "verdict-code": json.dumps({"verdict": {"code": ["x"], "reason": "r"}}),
    "verdict-block": json.dumps({"verdict": {"code": "deploy-pending", "reason": "r",
                                             "block": {"x": 1}}}),
    "verdict-surrogate": '{"verdict":{"code":"deploy-pending","reason":"\\ud800"}}',
    "lost-object": '{"lost":{"x":"\\u0000"}}',
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_script_leaves_a_relay_that_sends_what_no_relay_sends(pg_dsn, pg_roles, tmp_path,
                                                                 lie):
    relay, process, _ = lied_to(pg_roles, tmp_path, [LIES[lie]])
    with dba_at(pg_dsn) as dba:
        time.sleep(1.5)
        assert process.poll() is None, process.stderr.read()
        assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
        said = process.stderr.read()
        assert "Traceback" not in said and "unexpectedly" not in said, said
        assert "watching the policy database directly" in said, said
        assert query(dba, "SELECT status FROM cronpolicy.script_run") == [("interrupted",)]
        relay.close()


def test_a_relay_that_ticks_but_never_renews_costs_the_script_its_lease(pg_dsn, pg_roles,
                                                                       tmp_path):
    """Ticks say the relay lives, not that it renewed anything: within
    lease_ttl (3 s) of its last renewal (none: its start) the script takes
    its lease for lost, as the fleet does."""
    relay, process, _ = lied_to(pg_roles, tmp_path, ['{"renewed":12345}'])
    try:
        process.wait(timeout=10)
        said = process.stderr.read()
        assert "relay did not renew its lease" in said, said
        assert "Traceback" not in said
    finally:
        relay.close()


def test_a_relay_on_another_database_stops_no_script_by_that_databases_policy(pg_dsn, pg_roles,
                                                                             tmp_path):
    """A relay pointed at staging while its scripts record in production
    told each script staging's verdict with its hello, before the batch
    renewal found the run unknown: staging's deploy_pending stopped
    production's scripts.  A verdict goes only to a run the relay found."""
    name, other = create_database("relayother")
    try:
        upgraded(other)
        with psycopg2.connect(other) as staging, staging.cursor() as cursor:
            cursor.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true,"
                           " reason = 'staging deploys'")
        relay = Relay(other, tmp_path)
        try:
            scripts = relayed_runner(tmp_path, pg_roles("cronpolicy_script"), relay.address)
            [process] = start_jobs(scripts, tmp_path, 1)
            with dba_at(pg_dsn) as dba:
                time.sleep(2.0)
                assert process.poll() is None, process.stderr.read()
                assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
            said = process.stderr.read()
            assert "staging deploys" not in said, said
            assert "does not know run #" in said
        finally:
            relay.stop()
    finally:
        drop_database_soon(name)


def test_a_run_id_said_with_the_wrong_key_is_answered_for_itself(fleet, tmp_path):
    """Run ids are small numbers, alike in every database: connections
    naming a served run's id with another key (another database's run of
    that id, or anyone) were answered as the run's own script was, when in
    the same batch: told "renewed" though nothing was (the fleet of their
    own database gives up on them), or the real script told "unknown" and
    sent away.  Each connection gets its own answer."""
    relay, scripts, dba = fleet
    [process] = start_jobs(scripts, tmp_path, 1)
    [(run_id,)] = query(dba, "SELECT id FROM cronpolicy.script_run")
    host, port = relayed.parse_address(relay.address)
    impostors, answers = [], []
    deadline = time.monotonic() + 6.0       # the real script speaks at 1, 2 and 4 s, and 5 s on
    while time.monotonic() < deadline:
        impostor = socket.create_connection((host, port), timeout=5)
        impostor.sendall(json.dumps(hello(run_id, "another-database")).encode() + b"\n")
        impostor.setblocking(False)
        impostors.append(impostor)
        time.sleep(0.03)
        for each in impostors:
            try:
                answers.append(each.recv(65536))
            except (BlockingIOError, OSError):
                pass
    try:
        heard = b"".join(answers)
        assert b'"unknown"' in heard
        assert b'"renewed"' not in heard and b'"lost"' not in heard, heard[:2000]
        assert process.poll() is None
        assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
        assert "watching the policy database directly" not in process.stderr.read()
    finally:
        for each in impostors:
            each.close()


def renewal_behind(pg_dsn, pg_roles, write):
    """A relay's renewal of a running run that waits for its row while
    another transaction holds it, having made ``write`` (SQL with the run's
    id as its one parameter); that one commits once the renewal waits.
    Returns (the renewal's rows, each (whether for the run, known,
    renewed), and the run's row as it then is: status, ended, lease)."""
    dba = psycopg2.connect(pg_dsn)
    dba.autocommit = True
    other = psycopg2.connect(pg_dsn)
    relay = psycopg2.connect(pg_roles("cronpolicy_relay"))
    relay.autocommit = True
    try:
        [(run_id,)] = query(dba, "INSERT INTO cronpolicy.script_run (name, host, pid, spool_id,"
                                 " decision, heartbeat_at, lease_expires_at) VALUES ('job',"
                                 " 'web1', 1, 'key-1', 'run', now(), now() + interval '30 s')"
                                 " RETURNING id")
        with other.cursor() as cursor:        # not yet committed
            cursor.execute(write, (run_id,))
        answers = []
        renewal = threading.Thread(target=lambda: answers.append(query(
            relay, "SELECT * FROM cronpolicy.renew_relayed(%s::bigint[], %s::text[],"
                   " '{true}', '{0}', '{NULL}', '{NULL}', '{30}')", [run_id], ["key-1"])))
        renewal.start()
        relay_pid = relay.get_backend_pid()
        wait_for(lambda: query(dba, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                               relay_pid) == [("Lock",)], what="the renewal waiting for the row")
        other.commit()
        renewal.join(timeout=30)
        assert not renewal.is_alive()
        [run] = query(dba, "SELECT status, finished_at IS NOT NULL, lease_expires_at"
                           " FROM cronpolicy.script_run")
        return [(row[0] == run_id,) + tuple(row[1:]) for row in answers[0]], run
    finally:
        for connection in (other, relay, dba):
            connection.close()


def test_a_renewal_waiting_for_a_run_being_ended_leaves_it_ended(pg_dsn, pg_roles):
    """The relay's batch renewal meets a run whose end is being written
    (the script's record_finish holds the row): once that commits, the
    renewal must see the run ended and leave it so.  It read the row as it
    was before and set it running again, lease and all: the run looked
    alive to `deploy wait` though its script was gone (one failure in 50
    runs of the stop test)."""
    answers, run = renewal_behind(pg_dsn, pg_roles, (
        "UPDATE cronpolicy.script_run SET status = 'interrupted', finished_at = now(),"
        " lease_expires_at = NULL WHERE id = %s"))         # record_finish
    assert answers == [(True, True, False)]                # known, not renewed
    assert run == ("interrupted", True, None)


def test_a_renewal_waiting_for_a_run_being_recorded_abandoned_says_its_lease_was_lost(
        pg_dsn, pg_roles):
    """A reaper (or a DBA) records a relayed run abandoned while the relay's
    renewal waits for its row: the renewal shows the run running again (it
    is) but must say its lease was lost.  It judged the lease by the row as
    it was before it waited (still standing), told the script "renewed",
    and the abandonment `deploy wait` may already have counted was undone
    in silence (the relay's stop test failed under load)."""
    answers, run = renewal_behind(pg_dsn, pg_roles, (
        "UPDATE cronpolicy.script_run SET status = 'abandoned', finished_at = now(),"
        " lease_expires_at = now() - interval '1 s' WHERE id = %s"))    # a reaper
    assert answers == [(True, True, False)]                # known, not renewed: lost
    assert run[:2] == ("running", False)                   # shown running: it is


def test_renew_relayed_in_plain_sql_and_what_a_relay_login_may_not(pg_dsn, pg_roles, tmp_path):
    """cronpolicy.renew_relayed called by hand, as a relay login: one row
    per run asked about, in order, each for its own key; a word a whole
    lease old does not bring a dead run (recorded abandoned) back; a ttl
    that is no number is not an hour; arrays of unequal lengths, NULLs and
    absurd values fail nothing.  And the login changes nothing else."""
    scripts = ScriptRunner(tmp_path, make_env(tmp_path, pg_roles("cronpolicy_script")))
    [process] = start_jobs(scripts, tmp_path, 1)
    process.kill()
    process.wait(timeout=30)
    dba = psycopg2.connect(pg_dsn)
    dba.autocommit = True
    relay = psycopg2.connect(pg_roles("cronpolicy_relay"))
    relay.autocommit = True
    try:
        [(run_id, key)] = query(dba, "SELECT id, spool_id FROM cronpolicy.script_run")
        query(dba, "UPDATE cronpolicy.script_run SET status = 'abandoned', finished_at = now(),"
                   " lease_expires_at = now() - interval '1 second' RETURNING 1")

        def renew(ids, keys, ages, ttls, safe=None, slot_names=None, slots=None):
            return query(relay, "SELECT * FROM cronpolicy.renew_relayed(%s::bigint[], %s::text[],"
                                " %s::boolean[], %s::float8[], %s::text[], %s::integer[],"
                                " %s::float8[])",
                         ids, keys, safe or [True] * len(ids), ages,
                         slot_names or [None] * len(ids), slots or [None] * len(ids), ttls)

        def status():
            return query(dba, "SELECT status, extract(epoch FROM lease_expires_at - now())"
                              " FROM cronpolicy.script_run")[0]

        # The right key a lease ago, and a wrong key just now: neither renews.
        assert renew([run_id, run_id], [key, "wrong"], [3.0, 0.0], [3.0, 3.0]) == [
            (run_id, True, False), (run_id, False, False)]
        assert renew([run_id, run_id], ["wrong", key], [0.0, float("nan")], [3.0, 3.0]) == [
            (run_id, False, False), (run_id, True, False)]
        assert status()[0] == "abandoned"
        # Mismatched arrays, NULLs, infinities: answered, nothing renewed.
        for ids, keys in (([run_id], []), ([], [key]), ([None], [key]), ([run_id], [None])):
            rows = relay.cursor()
            rows.execute("SELECT * FROM cronpolicy.renew_relayed(%s::bigint[], %s::text[],"
                         " NULL, NULL, NULL, NULL, NULL)", (ids, keys))
            assert all(not renewed for _, _, renewed in rows.fetchall())
        assert renew([run_id], [key], [float("-inf")], [float("inf")])[0][1:] == (True, False)
        assert status()[0] == "running"     # (as its own heartbeat would: its host lives)
        assert float(status()[1]) <= 3600.5
        # A ttl that is no number is the default's.
        query(dba, "UPDATE cronpolicy.script_run SET lease_expires_at = now() RETURNING 1")
        renew([run_id], [key], [0.0], [float("nan")])
        assert 0 < float(status()[1]) <= 30.5
        # A late word never shortens a lease (nor moves the heartbeat back):
        # a relay that stalled most of a lease renews the scripts that left
        # it (they renew their own leases since) as of their last word to it.
        query(dba, "UPDATE cronpolicy.script_run SET lease_expires_at = now() + interval '20 s',"
                   " heartbeat_at = now(), safe_to_interrupt = false RETURNING 1")
        assert renew([run_id], [key], [2.9], [3.0], safe=[True]) == [(run_id, True, True)]
        assert float(status()[1]) > 19
        assert query(dba, "SELECT heartbeat_at > now() - interval '1 second', safe_to_interrupt"
                          " FROM cronpolicy.script_run") == [(True, False)]
        renew([run_id], [key], [0.0], [3.0], safe=[True])       # a word just now counts
        assert query(dba, "SELECT safe_to_interrupt FROM cronpolicy.script_run") == [(True,)]
        # Nothing else: no policy, no run's row, no deploy switch, no reaping.
        for statement in (
                "INSERT INTO cronpolicy.script_policy (name, enabled) VALUES ('x', false)",
                "UPDATE cronpolicy.script_policy SET enabled = false",
                "UPDATE cronpolicy.script_run SET status = 'running'",
                "UPDATE cronpolicy.script_run SET lease_expires_at = now() + interval '1 day'",
                "DELETE FROM cronpolicy.script_run",
                "UPDATE cronpolicy.deploy_state SET deploy_pending = false",
                "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
                " VALUES ('x', 0, 'k', 'h', now())",
                "SELECT cronpolicy.reap_dead_runs()",
                "SELECT * FROM cronpolicy.host_login"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                query(relay, statement)
    finally:
        relay.close()
        dba.close()


def test_a_relay_host_that_does_not_answer_delays_no_stop(pg_dsn, pg_roles, tmp_path):
    """A relay's host that is down (or drops connections: here a listener
    whose queue is full) leaves a connect waiting for connect_timeout (5 s
    by default); meanwhile the script must still hear a stop within a
    second, from the database it watches while it waits."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    filler = socket.create_connection(blackhole.getsockname(), timeout=5)
    address = "%s:%d" % blackhole.getsockname()
    try:
        scripts = relayed_runner(tmp_path, pg_roles("cronpolicy_script"), address)
        [process] = start_jobs(scripts, tmp_path, 1)
        with dba_at(pg_dsn) as dba:
            time.sleep(0.2)
            assert all(seconds < 1.0 for seconds in stop_everything(dba, [process]))
        said = process.stderr.read()
        assert "Traceback" not in said, said
    finally:
        filler.close()
        blackhole.close()


def test_a_relay_no_one_can_find_costs_one_warning(pg_dsn, pg_roles, tmp_path):
    """relay = a name that does not resolve, or a port no one listens on:
    the script runs, watches for itself, warns once, and hears a stop."""
    login = pg_roles("cronpolicy_script")
    addresses = ("relay.invalid:7447", "127.0.0.1:1", "[::1]:1")
    processes = []
    for number, address in enumerate(addresses):      # side by side: one lease waited
        directory = tmp_path / str(number)
        directory.mkdir()
        [process] = start_jobs(relayed_runner(directory, login, address), directory, 1)
        processes.append(process)
    with dba_at(pg_dsn) as dba:
        time.sleep(4)       # past a lease: renewed by each script itself
        for address, process in zip(addresses, processes):
            assert process.poll() is None, (address, process.stderr.read())
        assert all(seconds < 1.0 for seconds in stop_everything(dba, processes))
    for address, process in zip(addresses, processes):
        said = process.stderr.read()
        assert said.count("watching the policy database directly") == 1, (address, said)
        assert "Traceback" not in said and "relay" in said, (address, said)


def test_a_relay_in_the_config_costs_a_sqlite_start_nothing(tmp_path):
    """One config file for a fleet whose hosts record in PostgreSQL or in
    SQLite: relay = ... is no use to SQLite's scripts, and must not load
    what their start path keeps out (json: test_fast_path), nor the relay."""
    from .test_fast_path import NEVER_ON_SQLITE, NOOP
    (tmp_path / "noop.py").write_text(NOOP)
    (tmp_path / "cronpolicy.conf").write_text("[cronpolicy]\nrelay = 127.0.0.1:7447\n")
    env = dict(os.environ, CRONPOLICY_CONFIG=str(tmp_path / "cronpolicy.conf"),
               CRONPOLICY_STATE_DIR=str(tmp_path / "state"),
               CRONPOLICY_LOCK_DIR=str(tmp_path / "locks"),
               CRONPOLICY_DSN="sqlite:///%s" % (tmp_path / "db.sqlite"))
    bare = set(subprocess.run([sys.executable, "-c", "import sys; print(' '.join(sys.modules))"],
                              capture_output=True, text=True, timeout=60).stdout.split())
    for _ in range(2):          # the second start finds its cache written
        result = subprocess.run([sys.executable, str(tmp_path / "noop.py")], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stderr == "", result.stderr
    loaded = set(result.stdout.split()) - bare
    assert not {name.split(".")[0] for name in loaded} & NEVER_ON_SQLITE, loaded
    assert "cronpolicy.tooling.relay" not in loaded


def test_a_run_recorded_abandoned_while_relayed_stops_as_a_direct_one_would(fleet, tmp_path):
    """Another host's reaper (or a DBA) records a relayed run abandoned:
    the relay's next renewal shows it running again (it is) but tells the
    script its lease was lost, and it stops at its next safe point, as with
    its own heartbeat."""
    _, scripts, dba = fleet
    [process] = start_jobs(scripts, tmp_path, 1)
    time.sleep(0.5)
    query(dba, "UPDATE cronpolicy.script_run SET status = 'abandoned', finished_at = now(),"
               " lease_expires_at = now() - interval '1 second' RETURNING 1")
    assert process.wait(timeout=10) != 0
    said = process.stderr.read()
    assert "lease" in said and "Traceback" not in said, said
    assert "watching the policy database directly" not in said
    assert query(dba, "SELECT status, stop_decision FROM cronpolicy.script_run") == [
        ("interrupted", "lease-lost")]


def test_a_relay_that_cannot_read_the_policy_does_not_tick(fleet, tmp_path):
    """A relay that renews leases but cannot read the policy (a grant
    missing, a read that times out) kept ticking: its scripts stayed, and
    no stop reached them.  It falls silent instead, and they watch the
    database themselves.  (And the relay's reconnection, given the
    descriptor number of the connection it dropped, found it still
    registered: KeyError, a traceback, the relay gone.)"""
    relay, scripts, dba = fleet
    processes = start_jobs(scripts, tmp_path, 2)
    time.sleep(0.5)
    query(dba, "REVOKE SELECT ON cronpolicy.rollout_window FROM cronpolicy_relay; SELECT 1")
    try:
        time.sleep(0.1)
        assert all(seconds < 1.5 for seconds in stop_everything(dba, processes))
        for process in processes:
            assert "watching the policy database directly" in process.stderr.read()
        assert relay.process.poll() is None and "Traceback" not in "".join(relay.log)
    finally:
        query(dba, "GRANT SELECT ON cronpolicy.rollout_window TO cronpolicy_relay; SELECT 1")


def test_a_relay_without_its_database_still_lets_go_of_connections_that_say_nothing(
        pg_dsn, pg_roles, fault_proxy, tmp_path):
    """Connections that never say which run they are let go of after
    HELLO_WITHIN whether or not the relay's database answers: they held a
    descriptor each for as long as it did not (silent, it does not tick).
    While its database refuses, the relay tries each statement once a poll:
    retrying one for decision_timeout (10 s) held up everything else, its
    scripts' connections and its SIGTERM included (let go after 15 s)."""
    from cronpolicy.tooling.relay import HELLO_WITHIN
    from .conftest import _via
    proxy, _ = fault_proxy
    relay_dsn = pg_roles("cronpolicy_relay")
    relay = Relay(_via(relay_dsn, "127.0.0.1", proxy.port), tmp_path)
    try:
        proxy.mode = "refuse"
        with dba_at(pg_dsn) as dba:
            # Its session ends at the server (the proxy's RST may come late):
            # the next statement fails at once, and every new one is refused.
            query(dba, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                       " WHERE usename = %s", parse_dsn(relay_dsn)["user"])
        host, port = relayed.parse_address(relay.address)
        silent = [socket.create_connection((host, port), timeout=5) for _ in range(5)]
        try:
            started = time.monotonic()
            for each in silent:
                each.settimeout(40)
                assert each.recv(100) == b""        # closed (not a timeout)
            let_go = time.monotonic() - started
            assert let_go < HELLO_WITHIN + 2, let_go
        finally:
            for each in silent:
                each.close()
        assert relay.process.poll() is None
        relay.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert relay.process.wait(timeout=30) == 0
        assert time.monotonic() - started < 1.0
    finally:
        relay.stop()


def test_a_relay_waiting_for_a_database_that_does_not_answer_stops_at_once(
        pg_roles, fault_proxy, tmp_path):
    """SIGTERM during a statement that hangs (a half-open connection: no
    answer, no error) ends the wait at once; the relay exited only when
    the statement's decision_timeout (10 s) ran out."""
    from .conftest import _via
    proxy, _ = fault_proxy
    relay = Relay(_via(pg_roles("cronpolicy_relay"), "127.0.0.1", proxy.port), tmp_path)
    try:
        proxy.freeze()
        time.sleep(1.0)     # its next poll (every 0.25 s) hangs
        relay.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert relay.process.wait(timeout=30) == 0
        assert time.monotonic() - started < 1.0
        relay._reader.join(timeout=10)
        assert "cannot" not in "".join(relay.log)       # a stop, not a failure, said nothing
    finally:
        relay.stop()


def test_a_relay_that_cannot_renew_leases_lets_its_scripts_go(fleet, tmp_path):
    """A relay whose reads pass but whose renewals fail (its EXECUTE on
    renew_relayed revoked, a row a trigger refuses) kept ticking: its
    scripts stayed, their leases ran out, and every one of them stopped as
    lease-lost.  It falls silent instead, and they renew their own."""
    relay, scripts, dba = fleet
    processes = start_jobs(scripts, tmp_path, 2)
    time.sleep(0.5)
    signature = "cronpolicy.renew_relayed(bigint[], text[], boolean[], float8[], text[], " \
                "integer[], float8[])"
    query(dba, "REVOKE EXECUTE ON FUNCTION %s FROM cronpolicy_relay; SELECT 1" % signature)
    try:
        time.sleep(4.5)     # past a lease (3 s)
        assert all(process.poll() is None for process in processes)
        assert all(seconds < 1.0 for seconds in stop_everything(dba, processes))
        for process in processes:
            assert "watching the policy database directly" in process.stderr.read()
        assert relay.process.poll() is None and "Traceback" not in "".join(relay.log)
    finally:
        query(dba, "GRANT EXECUTE ON FUNCTION %s TO cronpolicy_relay; SELECT 1" % signature)


def test_while_serving_the_relay_tries_a_statement_once_and_its_loop_tries_again():
    """A read that retried for decision_timeout while the database refused
    held the relay's whole loop (its scripts, its signals) for as long;
    serving, it fails at once and the loop tries again at its next poll.
    Before serving (the check `cronpolicy relay` makes first) it still
    waits out a database that is starting."""
    from cronpolicy.errors import DatabaseError
    from cronpolicy.tooling.relay import RelayStore
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]      # nothing listens there once closed
    store = RelayStore("host=127.0.0.1 port=%d dbname=x" % port, 1.0, 3.0)
    timings = {}
    for serving in (False, True):
        store.serving = serving
        started = time.monotonic()
        with pytest.raises(DatabaseError):
            store.load_inputs("", 1)
        timings[serving] = time.monotonic() - started
    # (Retrying: pauses from 0.05 s doubling, half to whole, until 3 s.)
    assert timings[False] > 0.7 and timings[True] < 0.3, timings


def test_a_lease_renewed_over_a_new_connection_runs_from_the_scripts_last_word(
        pg_dsn, pg_roles, fault_proxy):
    """A relay's renewal gives each run a lease as of its script's last
    word.  The ages were taken before connecting: a connection that took
    2 s to make lengthened every lease it renewed by 2 s."""
    import types
    from cronpolicy.tooling.relay import RelayStore
    from .conftest import _via
    proxy, _ = fault_proxy
    key = "lease-%d" % random.getrandbits(48)
    with dba_at(pg_dsn) as dba:
        [(run_id,)] = query(dba, "INSERT INTO cronpolicy.script_run (name, host, spool_id,"
                                 " lease_expires_at) VALUES ('relayed-lease', 'h1', %s,"
                                 " now() + interval '3 seconds') RETURNING id", key)
    store = RelayStore(_via(pg_roles("cronpolicy_relay"), "127.0.0.1", proxy.port), 5.0, 10.0)
    store.serving = True
    proxy.delay = 2.0
    try:
        run = types.SimpleNamespace(id=run_id, key=key, safe=False, slot=None, ttl=6.0,
                                    heard_at=time.monotonic())
        [(_, known, renewed)], _ = store.renew_relayed([run])
        assert known and renewed
        with dba_at(pg_dsn) as dba:
            [(left,)] = query(dba, "SELECT extract(epoch FROM lease_expires_at - now())"
                                   " FROM cronpolicy.script_run WHERE id = %s", run_id)
        # 6 s from its last word, 2 s and more of which went in connecting.
        assert left < 5.0, left
    finally:
        store.close()
        with dba_at(pg_dsn) as dba:
            query(dba, "DELETE FROM cronpolicy.script_run WHERE id = %s RETURNING id", run_id)


def test_scripts_go_back_to_a_relay_restarted_on_its_address(pg_dsn, pg_roles, tmp_path):
    """A relay restarted (SIGTERM, then started again on the same address)
    takes back the runs it served: they watch the database themselves
    meanwhile and try the relay again REJOIN_FIRST seconds later.  Before,
    they held a connection each for the rest of their runs."""
    from cronpolicy.relayed import REJOIN_FIRST
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = "127.0.0.1:%d" % probe.getsockname()[1]
    relay_dsn = pg_roles("cronpolicy_relay")
    relay = Relay(relay_dsn, tmp_path, argv=("--listen", address))
    restarted = None
    try:
        script_dsn = pg_roles("cronpolicy_script")
        login = parse_dsn(script_dsn)["user"]
        scripts = relayed_runner(tmp_path, script_dsn, relay.address)
        processes = start_jobs(scripts, tmp_path, 2)
        with dba_at(pg_dsn) as dba:
            wait_for(lambda: backends_of(dba, login) == 0, what="the scripts relayed",
                     interval=0.1)
            relay.process.send_signal(signal.SIGTERM)
            assert relay.process.wait(timeout=5) == 0
            wait_for(lambda: backends_of(dba, login) == 2, what="the scripts on the database",
                     timeout=5, interval=0.05)
            restarted = Relay(relay_dsn, tmp_path, argv=("--listen", address))
            wait_for(lambda: backends_of(dba, login) == 0, what="the scripts relayed again",
                     timeout=REJOIN_FIRST + 10, interval=0.1)
            assert all(process.poll() is None for process in processes)
            assert all(seconds < 1.0 for seconds in stop_everything(dba, processes))
        for process in processes:
            said = process.stderr.read()
            # (one warning; the relay serving it again is said at INFO, in its log file)
            assert said.count("watching the policy database directly") == 1, said
    finally:
        relay.stop()
        if restarted is not None:
            restarted.stop()
