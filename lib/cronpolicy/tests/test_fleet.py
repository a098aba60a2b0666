"""Operating a fleet: overdue detection on constructed history, and metrics
read back by the real Prometheus text parser."""

import json
import re
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cronpolicy import exitcodes

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

INSERT = ("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at, status,"
          " exit_code, skip_reason, decision, expected_interval, estimate_seconds)"
          " VALUES ('{name}', 'web1', 1, {start}, {end}, '{status}', {code}, {reason}, {decision},"
          " {interval}, {estimate})")


def add_run(dba, name, ago, status, length=60, interval="NULL", code=0, reason="NULL",
            decision="NULL", estimate="NULL"):
    dba.execute(INSERT.format(name=name, start=dba.now_plus(-ago), end=dba.now_plus(-ago + length),
                              status=status, code=code if status != "skipped" else "NULL",
                              reason=reason, decision=decision, interval=interval,
                              estimate=estimate))


def build_history(dba):
    hour = 3600
    # Healthy: declared hourly, succeeded 20 minutes ago.
    add_run(dba, "fresh-job", 20 * 60, "succeeded", interval=hour)
    # Skipped by every deploy since its last success 5 hours ago.
    add_run(dba, "publish-distro", 5 * hour, "succeeded", interval=hour)
    for ago in (4 * hour, 3 * hour, 2 * hour):
        add_run(dba, "publish-distro", ago, "skipped", length=0, interval=hour,
                reason="'deploy pending: release 42'", decision="'deploy-pending'")
    # Failing since its last success.
    add_run(dba, "sync-mirror", 10 * hour, "succeeded", interval=hour)
    add_run(dba, "sync-mirror", 2 * hour, "failed", interval=hour, code=3)
    # Declared only by a policy row, and no run for a day.
    add_run(dba, "nightly-report", 30 * hour, "succeeded")
    interval = "interval '2 hours'" if dba.backend == "postgresql" else "7200"
    dba.execute("INSERT INTO cronpolicy.script_policy (name, expected_interval)"
                " VALUES ('nightly-*', %s)" % interval)
    # No interval at all: never overdue.
    add_run(dba, "ad-hoc", 100 * hour, "succeeded")


def test_overdue_says_why_each_job_is_late(cli, dba):
    build_history(dba)
    code, out, _ = cli("overdue", "--json")
    assert code == exitcodes.OVERDUE
    reports = {report["name"]: report for report in json.loads(out)["reports"]}
    assert sorted(reports) == ["nightly-report", "publish-distro", "sync-mirror"]
    assert reports["publish-distro"]["state"] == "skipped"
    assert "3 times" in reports["publish-distro"]["detail"]
    assert "release 42" in reports["publish-distro"]["detail"]
    assert reports["sync-mirror"]["state"] == "failing"
    assert "exit code 3" in reports["sync-mirror"]["detail"]
    assert reports["nightly-report"]["state"] == "not started"
    assert reports["nightly-report"]["interval_source"] == "policy"
    assert "no run started since 20" in reports["nightly-report"]["detail"]
    code, out, _ = cli("overdue", "--all", "--json")
    fresh = {report["name"]: report for report in json.loads(out)["reports"]}["fresh-job"]
    # Healthy is not "not started" (it once said so for every healthy script).
    assert (fresh["overdue"], fresh["state"]) == (False, "ok")
    assert re.match(r"succeeded 1[89]m\d*s? ago$", fresh["detail"]), fresh["detail"]
    code, out, _ = cli("overdue", "--tolerance", "100")
    assert code == exitcodes.OK and "nothing overdue" in out


def test_metrics_parse_with_the_prometheus_parser(cli, dba, tmp_path):
    build_history(dba)
    add_run(dba, "fresh-job", 10 * 60, "succeeded", length=90, interval=3600, estimate=60)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    dba.execute("INSERT INTO cronpolicy.drain (started_at, finished_at, quiet, longest_blocker,"
                " longest_blocker_seconds) VALUES ({}, {}, true, 'publish-distro', 42.5)"
                .format(dba.now_plus(-100), dba.now_plus(-40)))
    output = tmp_path / "cronpolicy.prom"
    code, out, err = cli("metrics", "--output", str(output))
    assert code == exitcodes.OK, err
    families = {family.name: family for family in
                text_string_to_metric_families(output.read_text())}

    def value(family, **labels):
        [sample] = [sample for sample in families[family].samples
                    if all(sample.labels.get(key) == wanted for key, wanted in labels.items())]
        return sample.value

    assert value("cronpolicy_runs", script="publish-distro", status="skipped") == 3
    assert value("cronpolicy_skips", script="publish-distro", reason="deploy-pending") == 3
    assert value("cronpolicy_last_duration_seconds", script="fresh-job") == 90
    assert value("cronpolicy_last_runtime_vs_estimate_ratio", script="fresh-job") == 1.5
    assert value("cronpolicy_overdue", script="sync-mirror") == 1
    assert value("cronpolicy_overdue", script="fresh-job") == 0
    assert value("cronpolicy_deploy_pending") == 1
    assert abs(value("cronpolicy_last_drain_seconds") - 60) < 1
    assert value("cronpolicy_last_drain_longest_blocker_seconds", script="publish-distro") == 42.5
    assert value("cronpolicy_running", script="fresh-job") == 0
    code, out, _ = cli("metrics")
    assert code == exitcodes.OK and 'cronpolicy_runs_total{script="publish-distro"' in out


def test_metrics_label_values_are_escaped(cli, dba):
    add_run(dba, 'odd "name"\\with\nnewline', 60, "succeeded")
    code, out, _ = cli("metrics")
    names = {sample.labels.get("script") for family in text_string_to_metric_families(out)
             for sample in family.samples}
    assert 'odd "name"\\with\nnewline' in names


def test_deploy_wait_records_the_drain(script_env, dba, scripts, tmp_path):
    from .conftest import read_line, wait_for_file
    scripts.write("publish-distro")
    ready, done = tmp_path / "ready", tmp_path / "done"
    job = scripts.start("publish-distro", "--sleep", "30", "--ready-file", str(ready),
                        "--until-file", str(done))
    wait_for_file(ready)
    waiter = subprocess.Popen([sys.executable, "-m", "cronpolicy", "deploy", "wait",
                               "--timeout", "30s"], env=script_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert "waiting for publish-distro" in read_line(waiter.stdout)   # seen once...
    import time
    time.sleep(1.5)                                    # ...and at its next looks
    done.write_text("")
    job.communicate(timeout=30)
    waiter.communicate(timeout=30)
    assert waiter.returncode == 0
    [(quiet, blocker, seconds)] = dba.execute(
        "SELECT quiet, longest_blocker, longest_blocker_seconds FROM cronpolicy.drain")
    assert quiet in (True, 1) and blocker == "publish-distro" and 0 < seconds < 30


def test_metrics_and_drains_are_not_fooled_by_ids_or_idle_waits(cli, dba):
    """The last duration came from the highest id (an imported old run won);
    an idle `deploy wait` recorded a 0s drain over the real one; a second
    `deploy end` wrote an audit entry saying "no change"."""
    add_run(dba, "publish-distro", 600, "succeeded", length=2)          # the latest
    add_run(dba, "publish-distro", 86400, "succeeded", length=1080)     # imported later
    true = "true" if dba.backend == "postgresql" else "1"
    dba.execute("INSERT INTO cronpolicy.drain (started_at, finished_at, quiet)"
                " VALUES ({}, {}, {})".format(dba.now_plus(-200), dba.now_plus(-140), true))
    assert cli("deploy", "wait", "--timeout", "5s")[0] == exitcodes.OK
    assert dba.scalar("SELECT count(*) FROM cronpolicy.drain") == 1
    code, out, _ = cli("metrics")
    families = {family.name: family for family in text_string_to_metric_families(out)}
    [duration] = families["cronpolicy_last_duration_seconds"].samples
    assert duration.value == 2
    [drained] = families["cronpolicy_last_drain_seconds"].samples
    assert abs(drained.value - 60) < 1
    assert cli("deploy", "end")[0] == exitcodes.OK
    assert cli("deploy", "end")[0] == exitcodes.OK
    assert dba.scalar("SELECT count(*) FROM cronpolicy.policy_audit") == 0
    # Each begin opens a rollout of its own; the switch changes once, with the first.
    assert cli("deploy", "begin", "--reason", "r1")[0] == exitcodes.OK
    assert cli("deploy", "begin", "--reason", "r1")[0] == exitcodes.OK
    assert cli("deploy", "begin", "--reason", "r2")[0] == exitcodes.OK
    assert dba.execute("SELECT table_name, operation FROM cronpolicy.policy_audit"
                       " ORDER BY id") == [("rollout", "INSERT"), ("deploy_state", "UPDATE"),
                                           ("rollout", "INSERT"), ("rollout", "INSERT")]
