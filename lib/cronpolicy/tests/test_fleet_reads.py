"""The reads a planner makes of many scripts at once (issue 32.3) say what
the one-script reads say, on both backends.

`deploy plan`, `deploy slot`, `overdue` and `metrics` once asked the history
one script (or one script and host) at a time: about 1,400 statements for a
fleet of 5,000 jobs.  On PostgreSQL they now ask for all in one statement;
each is held here to the one-script statement it replaces, over generated
history (several seeds) that mixes successes, failures, rollout skips, runs
in flight, spooled rows, needs and declared intervals, written with plain SQL."""

import datetime
import random

import pytest

from cronpolicy.config import Settings
from cronpolicy.store.reads import reading

from .conftest import DBA, make_env

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

NAMES = ["publish", "backup", "mirror-*sync", "a", "b'quote", "never-ran"]
HOSTS = ["h1", "h2", "h3", "h-4"]
STATUSES = ["succeeded"] * 4 + ["failed", "skipped", "skipped", "interrupted", "abandoned"]
DECISIONS = ["deploy-pending", "service-pending", "in-window", "window-cutoff", "disabled"]


def _fill(dba, seed):
    """Write generated history (times relative to the database clock), on
    one connection (each statement still its own transaction)."""
    with dba.batch():
        _fill_rows(dba, seed)


def _fill_rows(dba, seed):
    rng = random.Random(seed)
    for number in range(120):
        name, host = rng.choice(NAMES[:-1]), rng.choice(HOSTS)
        status = rng.choice(STATUSES)
        start = -rng.randint(60, 40 * 86400)
        end = start + rng.randint(0, 7200)
        decision = rng.choice(DECISIONS) if status == "skipped" else "run"
        block = (rng.choice(["deploy:1", "window:2", "rollout:3", "rollout:4", None])
                 if status == "skipped" else None)
        interval = rng.choice([None, None, 3600.0, 86400.0])
        dba.execute(
            "INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
            " status, decision, block, needs, expected_interval, spooled, spool_id)"
            " VALUES ({}, {}, 1, %s, %s, {}, {}, {}, {}, {}, {}, {})"
            % (dba.now_plus(start), dba.now_plus(end)),
            (name, host, status, decision, block, rng.choice([None, "xmlrpc", "db,xmlrpc"]),
             interval, rng.random() < 0.1, "seed%d-%d" % (seed, number)))
    # Two runs in flight.
    for name, host in (("publish", "h1"), ("backup", "h-4")):
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, status,"
                    " decision, spool_id) VALUES ({}, {}, 1, %s, 'running', 'run', {})"
                    % dba.now_plus(-30), (name, host, "flight-%s-%s" % (name, host)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_scripts_at_once_read_what_one_at_a_time_reads(dsn, tmp_path, seed):
    dba = DBA(dsn)
    _fill(dba, seed)
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    pairs = [(name, host) for name in NAMES for host in HOSTS]
    with reading(settings) as reader:
        starts = reader.recent_starts_of_each(NAMES, 7)
        runtimes = reader.recent_runtimes_of_each(NAMES, 5)
        in_a_row = reader.rollouts_in_a_row_of_each(NAMES)
        successes = reader.last_success_of_each(pairs)
        now = reader.now()
        every_pair = reader.pair_starts(now - datetime.timedelta(days=3))
        recent = reader.recent_pairs(now - datetime.timedelta(days=3))
        measured = reader.success_and_first_run(NAMES)
        declared = reader.declared_intervals()
        for name in NAMES:
            one = reader.recent_runs(name, 7)
            assert [(run["host"], run["status"], run["started_at"], run["needs"])
                    for run in starts[name]] == [
                (run["host"], run["status"], run["started_at"], run["needs"]) for run in one]
            assert runtimes[name] == pytest.approx(reader.recent_runtimes(name, 5))
            assert in_a_row[name] == reader.rollouts_in_a_row(name)
        for pair in pairs:
            assert successes.get(pair) == reader.last_success_on(*pair), pair
            assert every_pair.get(pair, (False, None))[1] == reader.last_success_on(*pair), pair
        assert sorted(pair for pair, (seen, _) in every_pair.items() if seen) == recent
        assert set(every_pair) <= set(pairs) and 0 < len(recent) < len(every_pair)
    rows = dba.execute("SELECT name, status, started_at, finished_at, expected_interval, id"
                       " FROM cronpolicy.script_run")
    from cronpolicy.rows import to_time
    for name in NAMES:
        mine = [row for row in rows if row[0] == name]
        succeeded = [to_time(row[3]) for row in mine if row[1] == "succeeded"]
        assert measured[name] == (max(succeeded, default=None),
                                  min((to_time(row[2]) for row in mine), default=None)), name
        declaring = [row for row in mine if row[4] is not None]
        if declaring:
            assert declared[name] == pytest.approx(float(max(declaring, key=lambda r: r[5])[4]))
        else:
            assert name not in declared
    assert "never-ran" in measured and measured["never-ran"] == (None, None)


@pytest.mark.parametrize("seed", [1, 2])
def test_overdue_of_the_whole_fleet_says_what_it_says_of_each_host(dsn, tmp_path, seed):
    """overdue and metrics of the whole fleet take each pair's last success
    from one pass over the history (Reader.pair_starts) instead of its
    script's recent starts and a walk for each pair those do not tell;
    the reports of each host are those that asking that host alone gives
    (which still reads the old way)."""
    from cronpolicy.tooling.overdue import scheduled_reports_of
    dba = DBA(dsn)
    _fill(dba, seed)
    for number, (name, host) in enumerate((name, host) for name in NAMES for host in HOSTS):
        dba.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule)"
                    " VALUES ({}, {}, {})",
                    (name, host, ["*/7 * * * *", "0 * * * *", "30 2 * * *", "0 0 1 * *"][
                        number % 4]))
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    with reading(settings) as reader:
        _, fleet = scheduled_reports_of(reader, settings, include_all=True)
        assert len(fleet) == len(NAMES) * len(HOSTS)
        assert any(report["last_success"] is not None for report in fleet)
        assert any(report["last_success"] is None for report in fleet)
        for host in HOSTS:
            _, alone = scheduled_reports_of(reader, settings, include_all=True, host=host)
            assert alone == [report for report in fleet if report["host"] == host], host
        # metrics finds the last successes in its one pass over the runs.
        from cronpolicy.tooling.metrics import _read_runs
        assert _read_runs(reader, None)["last_success_starts"] == {
            pair: started for pair, (_, started) in reader.pair_starts(reader.now()).items()
            if started is not None}


def test_the_policy_rows_are_read_once_a_transaction(dsn, tmp_path):
    """metrics asks the policy rows for its schedules and again for its
    interval reports, in one transaction: they are read once (one set of
    rows for both); the next transaction reads them again."""
    from cronpolicy.store.reads import session, transaction
    dba = DBA(dsn)
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host) VALUES ('a', '*')")
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    with session(settings) as reader:
        with transaction(reader, "read"):
            first = reader.policies()
            assert reader.policies() is first and [row.name for row in first] == ["a"]
        dba.execute("INSERT INTO cronpolicy.script_policy (name, host) VALUES ('b', '*')")
        with transaction(reader, "read"):
            assert [row.name for row in reader.policies()] == ["a", "b"]
        assert reader.policies() is not reader.policies()      # (outside one: each read)


def test_the_fleet_reads_as_tuples_say_what_the_rows_say(dsn, tmp_path):
    """registered_since, pair_starts and metrics_runs read tuples (a
    fleet's thousands of rows): what the dict rows of the same tables say."""
    from cronpolicy.tooling.metrics import _read_runs
    dba = DBA(dsn)
    _fill(dba, 4)
    dba.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule, schedule_tz,"
                " origin) VALUES ('a', 'h1', '*/5 * * * *', NULL, 'x line 1'),"
                " ('b', 'h2', '0 3 * * *', 'Europe/Paris', '')")
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    from cronpolicy.rows import to_time
    with reading(settings) as reader:
        assert reader.registered_since() == {(name, host): (
            schedule, tz, origin, to_time(registered_at))
            for name, host, schedule, tz, origin, registered_at in dba.execute(
                "SELECT name, host, schedule, schedule_tz, origin, registered_at"
                " FROM cronpolicy.script_schedule")}
        registered, _ = reader.schedule_sources(reader.now())
        assert registered == {pair: {"schedule": schedule, "schedule_tz": tz, "origin": origin,
                                     "registered_at": at}
                              for pair, (schedule, tz, origin, at)
                              in reader.registered_since().items()}
        starts = reader.pair_starts(reader.now() - datetime.timedelta(days=3))
        assert set(starts) == {(row["name"], row["host"]) for row in reader.rows(
            "recent_pairs", {"since": reader._time(reader.now() - datetime.timedelta(days=90)),
                             "host": None})}
        for (name, host), (recent, started) in starts.items():
            assert started == reader.last_success_on(name, host)
        counted = _read_runs(reader, None)
        by_status, finished, started = {}, {}, {}
        for row in reader.recent_runs(limit=1000):
            pair = (row["name"], row["host"])
            by_status[pair + (row["status"],)] = by_status.get(pair + (row["status"],), 0) + 1
            if row["status"] == "succeeded":
                finished[pair] = max(finished.get(pair, row["finished_at"]), row["finished_at"])
                started[pair] = max(started.get(pair, row["started_at"]), row["started_at"])
        assert {tuple(key): count for *key, count in counted["by_status"]} == by_status
        assert {(name, host): moment
                for name, host, moment in counted["last_success"]} == finished
        assert counted["last_success_starts"] == started


def test_sqlite_finds_the_running_runs_by_their_index(sqlite_dsn, tmp_path):
    """SQLite answered running_runs (status, deploy wait, serve, metrics) by
    walking script_run_started_idx through the whole history, to spare
    itself sorting the few running rows: 290 ms of `status` on a fleet of
    115,000 runs (issue 32.3).  It now takes the partial index of the
    running ones."""
    settings = Settings.load(environ=make_env(tmp_path, sqlite_dsn))
    with reading(settings) as reader:
        plan = " ".join(str(step[-1]) for step in reader.connection.execute(
            "EXPLAIN QUERY PLAN " + reader._sql["running_runs"]).fetchall())
    assert "script_run_running_idx" in plan and "script_run_started_idx" not in plan, plan


@pytest.mark.parametrize("query", ["recent_pairs", "declared_runtimes", "pair_starts",
                                   "metrics_runs", "metrics_latest_runs", "declared_intervals"])
def test_sqlite_reads_the_whole_history_in_one_scan(sqlite_dsn, tmp_path, query):
    """On SQLite these statements walked script_run_name_started_idx to have
    their groups in order, fetching each row apart (recent_pairs 570 ms
    against 130 on 115,000 runs), and metrics_latest_runs looked up each
    pair's runs by name (26 s against 0.5 s), and declared_intervals walked
    it for each script's newest declaration (140 ms against 11): each now
    reads the table once (issue 32.3)."""
    settings = Settings.load(environ=make_env(tmp_path, sqlite_dsn))
    with reading(settings) as reader:
        sql = reader._sql[query]
        plan = [str(step[-1]) for step in reader.connection.execute(
            "EXPLAIN QUERY PLAN " + sql, {name: None for name in ("host", "since", "declared")
                                         if ":" + name in sql}).fetchall()]
    assert not any("script_run_name_started_idx" in step for step in plan), plan


def _seen_as(found):
    """fleet_schedules' answer as plain values."""
    return {pair: None if schedule is None else (
        schedule.expression, schedule.tz, schedule.source, schedule.origin, schedule.known_since)
        for pair, schedule in found.items()}


@pytest.mark.parametrize("seed", [1, 2])
def test_the_schedules_of_one_host_are_the_fleets_of_that_host(dsn, tmp_path, seed):
    """fleet_schedules for one host (no pattern) reads that host's rows only
    (`metrics --host H` on every host each minute read the fleet's each
    time): its answer is the whole fleet's, of that host.  A policy row
    naming, on that host, a script the host has not seen: the pair is the
    row's only when no host has seen the script."""
    from cronpolicy.tooling.schedules import fleet_schedules
    dba = DBA(dsn)
    _fill(dba, seed)
    rng = random.Random(seed)
    with dba.batch():
        for name in NAMES[:-1]:
            for host in rng.sample(HOSTS, 2):
                dba.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule)"
                            " VALUES ({}, {}, {})", (name, host, rng.choice(
                                ["*/5 * * * *", "17 3 * * *", "@hourly", "0 0 1 1 *"])))
    dba.execute("UPDATE cronpolicy.script_run SET schedule = '30 4 * * 1' WHERE name = 'a'")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, schedule) VALUES"
                " ('backup', 'h3', NULL), ('publish', 'h9', NULL), ('only-a-row', 'h2', NULL),"
                " ('mirror-*', 'h1', '@daily'), ('a', '*', NULL)")
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    with reading(settings) as reader:
        inputs = reader.inputs()
        fleet = _seen_as(fleet_schedules(reader, inputs))
        for host in HOSTS + ["h9", "nowhere"]:
            for scheduled_only in (False, True):
                mine = _seen_as(fleet_schedules(reader, inputs, host=host,
                                                scheduled_only=scheduled_only))
                whole = _seen_as(fleet_schedules(reader, inputs, scheduled_only=scheduled_only))
                assert mine == {pair: found for pair, found in whole.items()
                                if pair[1] == host}, (host, scheduled_only)
    assert ("only-a-row", "h2") in fleet and ("publish", "h9") not in fleet
