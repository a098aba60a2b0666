"""Real cron scripts, run as separate processes, behind the gate."""

import signal
import time

import pytest
from zope.interface.verify import verifyObject

from cronpolicy import CronScript, exitcodes
from cronpolicy.interfaces import ICronScript, IInterruptible

from .conftest import wait_for_file


def test_normal_run_records_success(scripts, dba):
    scripts.write("nightly-report", expected_runtime=60)
    result = scripts.run("nightly-report")
    assert result.returncode == exitcodes.OK, result.stderr
    assert result.stderr == ""                      # nothing for cron to mail
    assert scripts.main_calls("nightly-report") == 1
    run = dba.runs("nightly-report")[0]              # the name defaults to the file name
    assert (run["status"], run["exit_code"], run["host"]) == ("succeeded", 0, "testhost")
    assert run["estimate_seconds"] == 60.0 and "script's expected_runtime" in run["estimate_source"]
    assert run["pid"] > 0 and run["skip_reason"] is None
    told = scripts.run("nightly-report", "-v")              # -v names the store in use
    assert "policy database: %s (from CRONPOLICY_DSN)" % dba.dsn in told.stderr


def test_policy_disabled_run_never_calls_main(scripts, dba):
    scripts.write("publish-distro")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled, reason)"
                " VALUES ('publish-*', false, 'mirror is down')")
    result = scripts.run("publish-distro")
    assert result.returncode == exitcodes.OK
    assert result.stderr == ""
    assert scripts.main_calls("publish-distro") == 0
    [run] = dba.runs("publish-distro")
    assert run["status"] == "skipped" and "mirror is down" in run["skip_reason"]


def test_deploy_pending_flipped_with_plain_sql(scripts, dba):
    scripts.write("publish-distro")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, enabled)"
                " VALUES ('publish-distro', 'otherhost', false)")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true, reason = 'release 42'")
    skipped = scripts.run("publish-distro", "-v")
    assert skipped.returncode == exitcodes.OK
    assert "skipped: deploy pending" in skipped.stderr and "release 42" in skipped.stderr
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    ran = scripts.run("publish-distro")
    assert ran.returncode == exitcodes.OK, ran.stderr
    assert scripts.main_calls("publish-distro") == 1
    assert [run["status"] for run in dba.runs("publish-distro")] == ["skipped", "succeeded"]
    # The overlay left the DBA's own row alone.
    assert dba.execute("SELECT name, host, enabled FROM cronpolicy.script_policy") in (
        [("publish-distro", "otherhost", False)], [("publish-distro", "otherhost", 0)])


def test_window_cutoff_skips_the_long_script_and_runs_the_short_one(scripts, dba):
    scripts.write("publish-distro", expected_runtime=20 * 60)
    scripts.write("quick-sync", expected_runtime=60)
    dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, reason)"
                " VALUES ({}, {}, 'release 42')".format(dba.now_plus(5 * 60), dba.now_plus(65 * 60)))
    long_run = scripts.run("publish-distro")
    short_run = scripts.run("quick-sync")
    assert long_run.returncode == short_run.returncode == exitcodes.OK
    assert scripts.main_calls("publish-distro") == 0
    assert scripts.main_calls("quick-sync") == 1
    [skipped] = dba.runs("publish-distro")
    assert skipped["status"] == "skipped" and "would reach it" in skipped["skip_reason"]
    assert skipped["estimate_seconds"] == 1200.0
    assert dba.runs("quick-sync")[0]["status"] == "succeeded"


def test_cutoff_uses_real_history_over_the_declared_runtime(scripts, dba):
    scripts.write("publish-distro", expected_runtime=60)   # claims one minute...
    for index in range(20):                                 # ...history says twenty
        start = -100000 + index * 2000
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                    " status, exit_code) VALUES ('publish-distro', 'h', 1, {}, {}, 'succeeded', 0)"
                    .format(dba.now_plus(start), dba.now_plus(start + 1200)))
    dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at)"
                " VALUES ({}, {})".format(dba.now_plus(10 * 60), dba.now_plus(70 * 60)))
    result = scripts.run("publish-distro")
    assert result.returncode == exitcodes.OK
    assert scripts.main_calls("publish-distro") == 0
    skipped = dba.runs("publish-distro")[-1]
    assert skipped["status"] == "skipped" and "p95 of last 20" in skipped["estimate_source"]
    assert skipped["estimate_seconds"] == pytest.approx(1200.0, abs=0.01)


def test_inside_an_active_window_scoped_to_this_host(scripts, dba):
    scripts.write("publish-distro", expected_runtime=1)
    dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at, host)"
                " VALUES ({}, {}, 'test*')".format(dba.now_plus(-60), dba.now_plus(600)))
    assert scripts.run("publish-distro").returncode == exitcodes.OK
    assert scripts.main_calls("publish-distro") == 0
    other_host = scripts.run("publish-distro", env={"CRONPOLICY_HOST": "web1"})
    assert other_host.returncode == exitcodes.OK
    assert scripts.main_calls("publish-distro") == 1


def test_failing_main_logs_the_traceback_and_records_failure(scripts, dba):
    scripts.write("broken-job")
    result = scripts.run("broken-job", "--fail")
    assert result.returncode == exitcodes.FAILED
    assert "Traceback" in result.stderr and "RuntimeError: the job broke" in result.stderr
    [run] = dba.runs("broken-job")
    assert (run["status"], run["exit_code"]) == ("failed", 1)


def test_main_exiting_nonzero_is_a_failure_with_that_code(scripts, dba):
    scripts.write("picky-job")
    result = scripts.run("picky-job", "--exit", "7")
    assert result.returncode == 7
    assert (dba.runs("picky-job")[0]["status"], dba.runs("picky-job")[0]["exit_code"]) == (
        "failed", 7)


def test_second_concurrent_instance_is_recorded_and_exits_locked(scripts, dba, tmp_path):
    scripts.write("publish-distro")
    ready, release = tmp_path / "ready", tmp_path / "release"
    first = scripts.start("publish-distro", "--sleep", "120", "--until-file", str(release),
                          "--ready-file", str(ready))
    try:
        wait_for_file(ready)
        second = scripts.run("publish-distro")
        assert second.returncode == exitcodes.LOCKED
        assert "another instance is running (pid %d)" % first.pid in second.stderr
    finally:
        release.write_text("")
        first.communicate(timeout=60)
    assert first.returncode == exitcodes.OK
    assert scripts.main_calls("publish-distro") == 1
    runs = dba.runs("publish-distro")
    assert sorted(run["status"] for run in runs) == ["skipped", "succeeded"]
    locked = [run for run in runs if run["status"] == "skipped"][0]
    assert "another instance" in locked["skip_reason"]


def test_kill_9_does_not_leave_a_stale_lock(scripts, tmp_path):
    scripts.write("publish-distro")
    ready = tmp_path / "ready"
    victim = scripts.start("publish-distro", "--sleep", "60", "--ready-file", str(ready))
    wait_for_file(ready)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert scripts.run("publish-distro").returncode == exitcodes.OK
    assert scripts.main_calls("publish-distro") == 2


def test_log_file_gets_info_including_the_skip_reason(scripts, dba, tmp_path):
    scripts.write("publish-distro")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled, reason)"
                " VALUES ('publish-distro', false, 'on hold')")
    log = tmp_path / "job.log"
    result = scripts.run("publish-distro", "--log-file", str(log))
    assert result.returncode == exitcodes.OK and result.stderr == ""
    text = log.read_text()
    assert "INFO" in text and "skipped: disabled by policy" in text and "on hold" in text
    quiet = scripts.run("publish-distro", "--log-file", str(log), "-q")
    assert quiet.returncode == exitcodes.OK
    assert log.read_text() == text


def test_bad_option_is_a_usage_error(scripts, dba):
    scripts.write("publish-distro")
    result = scripts.run("publish-distro", "--no-such-option")
    assert result.returncode == exitcodes.USAGE
    assert dba.runs() == [] and scripts.main_calls("publish-distro") == 0


@pytest.mark.parametrize("attribute", [
    "expected_interval = '1d'", "expected_runtime = '20m'", "expected_runtime = -5",
    "expected_interval = float('nan')", "expected_runtime = True",
    "expected_interval = 10 ** 12", "max_concurrent = 0", "max_concurrent = '2'"])
def test_a_declared_value_of_the_wrong_kind_is_a_usage_error(scripts, dba, attribute):
    """expected_interval = '1d' (the docs say seconds) passed the gate; the
    database refused the start record ("invalid input syntax for type double
    precision"), which was taken for an outage: the run was spooled, and the
    spool refused at every flush.  Now one line, exit 2, nothing recorded."""
    scripts.write("publish-distro", extra=attribute)
    result = scripts.run("publish-distro")
    err = result.stderr.decode() if isinstance(result.stderr, bytes) else result.stderr
    assert result.returncode == exitcodes.USAGE, err
    assert len(err.strip().splitlines()) == 1 and attribute.split()[0] in err, err
    assert dba.runs() == [] and scripts.main_calls("publish-distro") == 0


def test_missing_schema_stops_the_script_with_one_line(scripts, empty_pg_dsn):
    scripts.write("publish-distro")
    result = scripts.run("publish-distro", env={"CRONPOLICY_DSN": empty_pg_dsn})
    assert result.returncode == exitcodes.GATE_ERROR
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "no cronpolicy schema" in line and "cronpolicy schema upgrade" in line
    assert scripts.main_calls("publish-distro") == 0


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)     # (it names a server of its own)
def test_unreachable_database_without_cache_follows_on_database_error(scripts, tmp_path):
    scripts.write("publish-distro")
    config = tmp_path / "fast.conf"
    # A refused connection is tried again until decision_timeout is up.
    config.write_text("[cronpolicy]\nconnect_timeout = 2s\ndecision_timeout = 0.5s\n")
    env = {"CRONPOLICY_DSN": "postgresql://cron:hunter22@127.0.0.1:1/x",
           "CRONPOLICY_CONFIG": str(config)}
    started = time.monotonic()
    result = scripts.run("publish-distro", env=env)
    assert time.monotonic() - started < 10
    assert result.returncode == exitcodes.OK          # the default: skip
    [line] = result.stderr.strip().splitlines()
    assert "database unreachable" in line and "on_database_error = skip" in line
    assert "hunter22" not in line
    assert scripts.main_calls("publish-distro") == 0
    config.write_text("[cronpolicy]\nconnect_timeout = 2s\ndecision_timeout = 0.5s\n"
                      "[script:publish-distro]\non_database_error = run\n")
    result = scripts.run("publish-distro", env=env)
    assert result.returncode == exitcodes.OK
    assert "run (on_database_error = run)" in result.stderr
    assert scripts.main_calls("publish-distro") == 1


# In-process: the class's contract -------------------------------------------

class Quiet(CronScript):
    name = "quiet"

    def add_my_options(self):
        self.parser.add_argument("--colour", default="blue")

    def main(self):
        self.seen = (self.options.colour, self.run_id, self.decision.run, self.host)


class Careful(Quiet):
    name = "careful"

    def is_safe_to_interrupt(self):
        return True


def test_script_classes_provide_their_interfaces():
    assert verifyObject(ICronScript, Quiet())
    assert not IInterruptible.providedBy(Quiet())
    careful = Careful()
    assert verifyObject(ICronScript, careful) and verifyObject(IInterruptible, careful)


def test_run_in_process_with_own_options(script_env, monkeypatch, dba):
    for key, value in script_env.items():
        if key.startswith(("CRONPOLICY_", "XDG_")):
            monkeypatch.setenv(key, value)
    script = Quiet()
    assert script.run(["--colour", "green"], exit=False) == exitcodes.OK
    colour, run_id, ran, host = script.seen
    assert (colour, ran, host) == ("green", True, "testhost")
    assert dba.runs("quiet")[0]["id"] == run_id


@pytest.mark.slow
def test_many_simultaneous_starts_run_main_once(scripts, dba, tmp_path):
    scripts.write("publish-distro")
    # The one that gets the lock holds it until the others have given up,
    # however slowly the machine starts them.
    release = tmp_path / "release"
    starters = [scripts.start("publish-distro", "--sleep", "120", "--until-file", str(release))
                for _ in range(12)]
    deadline = time.monotonic() + 90
    while sum(starter.poll() is not None for starter in starters) < 11:
        assert time.monotonic() < deadline, "eleven starts did not give up within 90s"
        time.sleep(0.05)
    release.write_text("")
    codes = []
    for starter in starters:
        starter.communicate(timeout=120)
        codes.append(starter.returncode)
    assert sorted(set(codes)) == [exitcodes.OK, exitcodes.LOCKED], codes
    assert codes.count(exitcodes.OK) == 1
    assert scripts.main_calls("publish-distro") == 1
    statuses = [run["status"] for run in dba.runs("publish-distro")]
    assert statuses.count("succeeded") == 1 and statuses.count("skipped") == 11


def test_outcome_is_recorded_after_the_server_drops_the_connection(pg_scripts, pg_dsn, tmp_path):
    from .conftest import DBA
    dba = DBA(pg_dsn)
    # A name no other test uses: a session another test's script left behind
    # (a killed process's, say) must not be counted, nor cut.
    pg_scripts.write("outcome-after-drop")
    ready = tmp_path / "ready"
    job = pg_scripts.start("outcome-after-drop", "--sleep", "1.5", "--ready-file", str(ready))
    wait_for_file(ready)
    killed = dba.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE application_name = 'cronpolicy:outcome-after-drop'"
                        " AND datname = current_database()")   # this test's database only
    out, err = job.communicate(timeout=60)
    assert killed == 1
    assert job.returncode == exitcodes.OK, err
    assert [run["status"] for run in dba.runs("outcome-after-drop")] == ["succeeded"]


def test_gate_keeps_sqlalchemy_off_the_start_up_path(scripts, tmp_path):
    # Importing SQLAlchemy costs more than a whole gated start; main() may
    # import it itself, but the gate must not have done so already.
    (tmp_path / "import-check.py").write_text(
        "import os, sys\n"
        "from cronpolicy import CronScript\n"
        "class Check(CronScript):\n"
        "    def main(self):\n"
        "        with open(os.environ['JOB_MARKER'], 'w') as marker:\n"
        "            marker.write('main sqlalchemy=%s' % ('sqlalchemy' in sys.modules))\n"
        "Check().run()\n")
    result = scripts.run("import-check")
    assert result.returncode == exitcodes.OK, result.stderr
    assert scripts.marker("import-check").read_text() == "main sqlalchemy=False"
