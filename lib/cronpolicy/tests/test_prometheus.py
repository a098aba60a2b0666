"""`cronpolicy metrics` as Prometheus reads it (issue 30.3): counters that
never go down, per-host and fleet-wide series that say which they are,
exports that split the fleet without duplicating it, and a Grafana
dashboard that asks only for what is exported."""

import json
import os
import re
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cronpolicy import exitcodes
from cronpolicy.tooling import metrics

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

DASHBOARD = next((path for path in (
    os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, os.pardir,
                 "examples", "grafana", "cronpolicy-dashboard.json"),
    os.path.join("examples", "grafana", "cronpolicy-dashboard.json")) if os.path.exists(path)),
    None)


def add_runs(dba, host, days_ago, status, count, decision="run", block=None):
    finished = "NULL" if status == "running" else dba.now_plus(-days_ago * 86400 + 60)
    for index in range(count):
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at,"
                    " finished_at, status, decision, block) VALUES ('nightly', {}, 1, %s, %s,"
                    " {}, {}, {})" % (dba.now_plus(-days_ago * 86400 + index), finished),
                    (host, status, decision, block))


def fleet_history(dba):
    """Two hosts' old and recent runs: every counter has something to count."""
    for host in ("web1", "web2"):
        for days_ago in (200, 1):
            add_runs(dba, host, days_ago, "succeeded", 3)
            add_runs(dba, host, days_ago, "failed", 2)
            add_runs(dba, host, days_ago, "skipped", 2, "deploy-pending", "rollout:1")
            add_runs(dba, host, days_ago, "skipped", 1, "disabled")
            add_runs(dba, host, days_ago, "succeeded", 1, "catch-up", "rollout:1")


def samples(text, kinds=None):
    """{(sample name, sorted labels): value}, of families of ``kinds`` only if given."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            if kinds is None or family.type in kinds for sample in family.samples}


def exported(cli, *options):
    code, out, err = cli("metrics", *options)
    assert code == exitcodes.OK, err
    return out


def test_counters_never_go_down_when_prune_deletes_rows(cli, dba):
    fleet_history(dba)
    before = samples(exported(cli), kinds={"counter"})
    assert before[("cronpolicy_runs_total", (("host", "web1"), ("script", "nightly"),
                                             ("status", "skipped")))] == 6
    rows = dba.scalar("SELECT count(*) FROM cronpolicy.script_run")
    code, out, err = cli("prune", "--older-than", "90d")
    assert code == exitcodes.OK, err
    assert dba.scalar("SELECT count(*) FROM cronpolicy.script_run") == rows - 10   # kept: the successes estimates read
    after = samples(exported(cli), kinds={"counter"})
    assert after == before
    add_runs(dba, "web2", 0, "failed", 1)           # and they still count what comes
    later = samples(exported(cli), kinds={"counter"})
    key = ("cronpolicy_runs_total", (("host", "web2"), ("script", "nightly"),
                                     ("status", "failed")))
    assert later[key] == before[key] + 1


def test_a_running_run_is_no_counter_series(cli, dba):
    """runs_total{status="running"} went down whenever a run ended."""
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, lease_expires_at)"
                " VALUES ('nightly', 'web1', 1, 'running', %s)" % dba.now_plus(3600))
    found = samples(exported(cli))
    assert not [key for key in found if key[0] == "cronpolicy_runs_total"]
    assert found[("cronpolicy_running", (("host", "web1"), ("script", "nightly")))] == 1


def test_per_host_and_fleet_exports_split_the_fleet_without_overlap(cli, dba):
    fleet_history(dba)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    everything = samples(exported(cli))
    web1, web2 = samples(exported(cli, "--host", "web1")), samples(exported(cli, "--host", "web2"))
    fleet = samples(exported(cli, "--fleet"))
    stamp = "cronpolicy_metrics_timestamp_seconds"
    for part, host in ((web1, "web1"), (web2, "web2")):
        assert all(dict(labels).get("host") == host for name, labels in part if name != stamp)
    assert not [labels for name, labels in fleet if "host" in dict(labels)]
    parts = [{key: value for key, value in part.items() if key[0] != stamp}
             for part in (web1, web2, fleet)]
    assert sum(len(part) for part in parts) == len(everything) - 1      # no series twice
    merged = {key: value for part in parts for key, value in part.items()}
    assert merged == {key: value for key, value in everything.items() if key[0] != stamp}
    assert fleet[("cronpolicy_deploy_pending", ())] == 1


def test_a_hosts_schedules_are_reported_by_its_export_as_by_the_whole_one(cli, dba):
    """`metrics --host H` finds its scheduled pairs' last successes in its
    own count of H's runs: every scheduled series of H (next start,
    overdue, starving) as the whole export says it.  Broken (no success
    found), the split test above still passed: its fleet had no schedule."""
    fleet_history(dba)
    for host, schedule in (("web1", "0 * * * *"), ("web2", "*/5 * * * *"),
                           ("web3", "0 4 * * *")):
        dba.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule,"
                    " registered_at) VALUES ('nightly', {}, {}, %s)" % dba.now_plus(-10 * 86400),
                    (host, schedule))
    add_runs(dba, "web2", 0, "succeeded", 1)        # a success a minute ago: not overdue
    everything = samples(exported(cli))
    scheduled = {key: value for key, value in everything.items()
                 if key[0] in ("cronpolicy_schedule_overdue",
                               "cronpolicy_next_start_timestamp_seconds",
                               "cronpolicy_starved_rollouts")}
    assert {dict(labels)["host"] for _, labels in scheduled} == {"web1", "web2", "web3"}
    overdue = {dict(labels)["host"]: value for (name, labels), value in scheduled.items()
               if name == "cronpolicy_schedule_overdue"}
    assert overdue == {"web1": 1, "web2": 0, "web3": 1}     # web3 never ran
    for host in ("web1", "web2", "web3"):
        part = samples(exported(cli, "--host", host))
        assert {key: value for key, value in part.items() if key in scheduled} == {
            key: value for key, value in scheduled.items() if dict(key[1])["host"] == host}


def test_every_family_says_whether_it_is_per_host_or_fleet_wide(cli, dba):
    fleet_history(dba)
    text = exported(cli)
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.MULTILINE))
    assert len(helps) > 15
    for name, help_text in helps.items():
        if name != "cronpolicy_metrics_timestamp_seconds":
            assert help_text.startswith((metrics.PER_HOST, metrics.FLEET_WIDE)), name
    kinds = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    for name, help_text in helps.items():       # per host: labelled host, fleet-wide: never
        labelled = [labels for sample, labels in samples(text) if sample.startswith(name)]
        if help_text.startswith(metrics.PER_HOST):
            assert all("host" in dict(labels) for labels in labelled), name
        elif kinds[name] != "histogram":
            assert not any("host" in dict(labels) for labels in labelled), name
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: prometheus); "
                    "prometheus_client's parser read the output")
    for options in ((), ("--host", "web1"), ("--fleet",)):
        result = subprocess.run([promtool, "check", "metrics"], input=exported(cli, *options),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def emitted_metric_names(text):
    """Every series name `metrics` can write: a histogram's with its suffixes."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_the_grafana_dashboard_asks_only_for_metrics_that_are_emitted(cli, dba):
    if DASHBOARD is None:
        pytest.skip("examples/grafana is in a checkout, not the wheel")
    with open(DASHBOARD, encoding="utf-8") as handle:
        dashboard = json.load(handle)
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [variable["definition"] for variable in dashboard["templating"]["list"]
                if variable.get("definition")]
    assert len(queries) > 15
    emitted = emitted_metric_names(exported(cli))       # every family, samples or not
    asked = {name for query in queries for name in re.findall(r"\bcronpolicy_\w+", query)}
    assert asked and asked <= emitted, sorted(asked - emitted)
    for query in queries:                       # a counter only through increase() or rate()
        for counter in re.findall(r"\bcronpolicy_\w+_total\b", query):
            assert re.search(r"(increase|rate)\(%s\b" % counter, query) or "label_values" in \
                query, query


def test_a_tally_written_around_its_checks_is_left_out_with_a_warning(tmp_path, sqlite_dsn):
    """SQLite stores text in an INTEGER column: a count that is none was a
    TypeError traceback from metrics."""
    import sqlite3
    import sys
    from .conftest import make_env
    env = make_env(tmp_path, sqlite_dsn)
    assert subprocess.run([sys.executable, "-m", "cronpolicy", "schema", "upgrade"], env=env,
                          capture_output=True, timeout=60).returncode == 0
    connection = sqlite3.connect(sqlite_dsn[len("sqlite:///"):])
    with connection:
        with pytest.raises(sqlite3.IntegrityError):
            connection.execute("INSERT INTO run_tally (name, host, status, runs)"
                               " VALUES ('job', 'web1', 'failed', 'abc')")
        connection.execute("PRAGMA ignore_check_constraints = 1")
        connection.execute("INSERT INTO run_tally (name, host, status, runs) VALUES"
                           " ('job', 'web1', 'failed', 'abc'), ('job', 'web1', 'skipped', 2)")
    connection.close()
    result = subprocess.run([sys.executable, "-m", "cronpolicy", "metrics"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == exitcodes.OK and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "1 rows of cronpolicy.run_tally" in result.stderr
    found = samples(result.stdout)
    assert found[("cronpolicy_runs_total", (("host", "web1"), ("script", "job"),
                                            ("status", "skipped")))] == 2


def sessions_of(database):
    """How many client sessions ``database`` has had (pg_stat_database.sessions),
    once every one of them has ended: a backend flushes its statistics
    before it leaves pg_stat_activity.  Read from the server's own database,
    so that the reading is no session of ``database``."""
    import time
    from .conftest import admin_connection
    deadline = time.monotonic() + 20
    with admin_connection() as connection, connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                           " AND backend_type = 'client backend'", (database,))
            if cursor.fetchone()[0] == 0:
                break
            assert time.monotonic() < deadline, "sessions of %s still open" % database
            time.sleep(0.05)
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,))
        return cursor.fetchone()[0]


@pytest.fixture
def pg_own_dsn(pg_database):         # (pg_database: the run's template is made)
    """A database of this test alone: sessions are counted once every one
    has ended, and the worker's shared database may keep a backend an
    earlier test left behind (a connection cut without FIN lives on until
    the server notices)."""
    from .conftest import create_database, drop_database_soon, schema_template
    name, dsn = create_database("sessions", template=schema_template())
    try:
        yield dsn
    finally:
        drop_database_soon(name)


def test_a_scrape_is_one_session(tmp_path, pg_own_dsn, monkeypatch, capsys):
    """Issue 29.3: one scrape opened a session to record dead runs, one
    for its own reads, one for the overdue scripts and one or two for the
    schedules (each reading through its own access layer): every host's
    scrape, every 15 s, times four."""
    from psycopg2.extensions import parse_dsn
    from .conftest import DBA, in_process_cli, make_env
    dba = DBA(pg_own_dsn)
    fleet_history(dba)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision,"
                " schedule, started_at, lease_expires_at) VALUES ('stuck', 'web1', 1,"
                " 'running', 'run', '*/5 * * * *', %s, %s)" % (dba.now_plus(-600),
                                                               dba.now_plus(-300)))
    dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_interval)"
                " VALUES ('nightly', interval '1 day')")
    cli = in_process_cli(make_env(tmp_path, pg_own_dsn), monkeypatch, capsys)
    database = parse_dsn(pg_own_dsn)["dbname"]
    before = sessions_of(database)
    text = exported(cli)
    assert sessions_of(database) - before == 1
    # The dead run was recorded (before the reads: it is not running).
    assert dba.execute("SELECT status FROM cronpolicy.script_run WHERE name = 'stuck'") \
        == [("abandoned",)]
    assert samples(text)[("cronpolicy_running", (("host", "web1"), ("script", "stuck")))] == 0
    assert samples(text)[("cronpolicy_overdue", (("script", "nightly"),))] == 0


def test_a_reader_login_is_scraped_and_leaves_dead_runs_to_others(tmp_path, pg_dsn, pg_roles,
                                                                   monkeypatch, capsys):
    """A Prometheus exporter's login may only read (cronpolicy_reader):
    recording dead runs is then left to a login that may, as the read
    commands leave it; metrics recorded them through a writer of its own,
    which failed the scrape (permission denied)."""
    from .conftest import DBA, in_process_cli, make_env
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision,"
                " started_at, lease_expires_at) VALUES ('stuck', 'web1', 1, 'running', 'run',"
                " %s, %s)" % (dba.now_plus(-600), dba.now_plus(-300)))
    cli = in_process_cli(make_env(tmp_path, pg_roles("cronpolicy_reader")), monkeypatch, capsys)
    text = exported(cli)
    assert dba.execute("SELECT status FROM cronpolicy.script_run") == [("running",)]
    assert samples(text)[("cronpolicy_running", (("host", "web1"), ("script", "stuck")))] == 0


def test_the_stall_histogram_has_each_quiet_rollout_in_its_bucket(cli, dba):
    """Issue 27.3: metrics' histogram of the stalls recorded (began until
    quiet), ended rollouts and open ones alike; one never seen quiet has none."""
    for began, quiet, ended in ((-100, -55, -50), (-40, -40, None), (-20, None, None)):
        dba.execute("INSERT INTO cronpolicy.rollout (kind, reason, began_at, quiet_at, ended_at)"
                    " VALUES ('full', 'r', %s, %s, %s)" % tuple(
                        "NULL" if at is None else dba.now_plus(at)
                        for at in (began, quiet, ended)))
    found = samples(exported(cli), {"histogram"})
    name = "cronpolicy_rollout_stall_seconds"
    assert (found[(name + "_count", ())], found[(name + "_sum", ())]) == (2, pytest.approx(45))
    assert [found[(name + "_bucket", (("le", le),))] for le in ("1.0", "30.0", "60.0", "+Inf")
            ] == [1, 1, 2, 2]


def test_labels_given_as_text_are_those_of_their_dict():
    """The per-host families give their labels as text made once per pair
    (issue 32.3: a fleet's families have tens of thousands of samples):
    the same lines as the dict of those labels, escapes and all."""
    odd = ['plain', 'a"quote', 'back\\slash', 'new\nline', 'ü', '', '\\"\n']
    for name in odd:
        for host in odd[:3]:
            labels = {"script": name, "host": host, "status": 'x"y'}
            by_dict, by_text = metrics._Exposition(), metrics._Exposition()
            by_dict.family("f", "gauge", "h", [(labels, 1)])
            by_text.family("f", "gauge", "h", [(",".join(
                '%s="%s"' % (key, metrics._escape(value)) for key, value in labels.items()),
                1)])
            assert by_dict.text() == by_text.text()
            [family] = text_string_to_metric_families(by_dict.text())
            assert family.samples[0].labels == labels


def test_the_latest_run_and_estimate_of_a_pair_are_the_higher_id_of_a_tie(cli, dba):
    """metrics finds each pair's last finished run and latest estimate in
    one statement (issue 32.3; it asked each apart): by the clock, a tie
    going to the higher id, a skipped start never the last run."""
    def at(minute, second=0):
        return "2026-12-01 10:%02d:%02d%s" % (minute, second,
                                             "+00" if dba.backend == "postgresql" else ".000")

    def run(started, finished, status, estimate):
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at,"
                    " finished_at, status, decision, estimate_seconds, lease_expires_at)"
                    " VALUES ('tied', 'web1', 1, {}, {}, {}, 'run', {}, %s)"
                    % dba.now_plus(3600), (started, finished, status, estimate))
    run(at(0), at(20), "succeeded", 50.0)       # finished last, tied...
    run(at(15), at(20), "failed", 70.0)         # ...with this one, of a higher id: 300 s
    run(at(1), at(2), "succeeded", None)
    run(at(30), at(30), "skipped", 90.0)        # finished later, but a skipped start;
    run(at(30), None, "running", 20.0)          # started as late, a higher id: its estimate
    found = samples(exported(cli))
    pair = (("host", "web1"), ("script", "tied"))
    assert found[("cronpolicy_last_duration_seconds", pair)] == 300.0
    assert found[("cronpolicy_estimate_seconds", pair)] == 20.0
    assert found[("cronpolicy_last_runtime_vs_estimate_ratio", pair)] == 300.0 / 70.0


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
def test_a_tally_row_with_no_count_is_said_by_the_exports_that_count(cli, dba, sqlite_dsn):
    """A count SQLite kept as written with its checks off is left out of
    the counters, with a warning, by the exports that have counters
    (everything, and the row's host's); --fleet has none and reads none."""
    import sqlite3
    fleet_history(dba)
    connection = sqlite3.connect(sqlite_dsn[len("sqlite:///"):])
    with connection:
        connection.execute("PRAGMA ignore_check_constraints = 1")
        connection.execute("INSERT INTO run_tally (name, host, status, decision, runs)"
                           " VALUES ('publish', 'web1', 'succeeded', 'run', -5)")
    connection.close()
    said = "1 rows of cronpolicy.run_tally hold no count of runs"
    for options, warned in (((), True), (("--host", "web1"), True), (("--host", "web2"), False),
                            (("--fleet",), False)):
        code, out, err = cli("metrics", *options)
        assert code == exitcodes.OK and "Traceback" not in err, err
        assert (said in err) == warned, (options, err)
        assert err.count(said) <= 1, err
        assert not [key for key in samples(out) if ("script", "publish") in key[1]], options
