"""A run record the database refuses for its data is no outage.

The database answers, and would refuse the same record again at every
flush: a start it refuses must not run unseen (exit 4, as a start of
another login's script), a skip or an end it refuses is kept aside in the
spool's rejected/ with one warning, and a spooled entry it refuses is moved
there without holding up the entries behind it.  Refusals come from the
schema's guards (classes 22, 23 and 54 on PostgreSQL, IntegrityError and
RAISE(ABORT) on SQLite), from a DBA's own rules, and from values the driver
will not even send (NUL, text that is not UTF-8, numbers past 64 bits).
Real processes, real databases, both backends.
"""

import json
import os
import random
import string

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from cronpolicy import exitcodes
from cronpolicy.errors import DatabaseError
from cronpolicy.rows import RunEnd, RunRecord
from cronpolicy.spool import Spool, SpoolEntry

from .conftest import DBA, wait_for_file

pytestmark = pytest.mark.integration

#: A host too long for PostgreSQL's btree indexes once written (run_tally's
#: key, script_run_declared_schedule_idx): random, so it does not compress.
LONG_HOST = "".join(random.Random(7).choices(string.ascii_letters, k=3000))


def spool_dir(env):
    return os.path.join(env["XDG_STATE_HOME"], "cronpolicy", "spool")


def rejected_files(env):
    directory = os.path.join(spool_dir(env), "rejected")
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def no_traceback(result):
    assert "Traceback" not in result.stderr, result.stderr


class SiteRule:
    """A DBA's own rule on script_run (a CHECK on PostgreSQL, a trigger's
    RAISE(ABORT) on SQLite): runs of host ``host`` are refused.  Dropped
    after the test (the PostgreSQL database is shared by the run)."""

    def __init__(self, dba, host):
        self.dba, self.host = dba, host

    def __enter__(self):
        if self.dba.backend == "postgresql":
            self.dba.execute("ALTER TABLE cronpolicy.script_run ADD CONSTRAINT site_rule_%s"
                             " CHECK (host <> '%s')" % (os.getpid(), self.host))
        else:
            self.dba.execute("CREATE TRIGGER cronpolicy.site_rule BEFORE INSERT ON script_run"
                             " WHEN NEW.host = '%s' BEGIN SELECT RAISE(ABORT, 'site rule:"
                             " no runs of %s'); END" % (self.host, self.host))
        return self

    def __exit__(self, *exc):
        if self.dba.backend == "postgresql":
            self.dba.execute("ALTER TABLE cronpolicy.script_run DROP CONSTRAINT site_rule_%s"
                             % os.getpid())
        else:
            self.dba.execute("DROP TRIGGER cronpolicy.site_rule")


def test_a_start_the_database_refuses_for_its_data_does_not_run(scripts, dba):
    """It ran, unrecorded (`deploy wait` said quiet meanwhile), its record
    spooled as if the database were down, and refused at every flush."""
    scripts.write("nightly-report")
    with SiteRule(dba, "refused-host"):
        result = scripts.run("nightly-report", env={"CRONPOLICY_HOST": "refused-host"})
    no_traceback(result)
    assert scripts.main_calls("nightly-report") == 0
    assert result.returncode == exitcodes.GATE_ERROR, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "not running" in line and "cannot record the start of nightly-report" in line
    assert len(Spool(spool_dir(scripts.env))) == 0 and rejected_files(scripts.env) == []
    assert dba.runs() == []
    # The database is not marked down: the next start runs and is recorded.
    assert scripts.run("nightly-report").returncode == exitcodes.OK
    assert [run["status"] for run in dba.runs()] == ["succeeded"]


def test_a_start_a_dbas_trigger_raises_on_does_not_run(pg_scripts, pg_dsn):
    """A DBA's own trigger refusing runs with plpgsql's RAISE EXCEPTION
    (SQLSTATE P0001, not a constraint's class 23): taken for an outage, the
    job ran unseen, and its spooled start was sent again at every flush,
    each failing (exit 4) on it.  Now refused as a CHECK is: not run; and a
    spooled record it refuses is moved aside."""
    dba = DBA(pg_dsn)
    dba.execute("CREATE FUNCTION public.frozen_%d() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN IF NEW.host = 'frozen-host' THEN RAISE EXCEPTION 'frozen by the DBA';"
                " END IF; RETURN NEW; END $$;"
                " CREATE TRIGGER frozen BEFORE INSERT ON cronpolicy.script_run FOR EACH ROW"
                " EXECUTE FUNCTION public.frozen_%d()" % (os.getpid(), os.getpid()))
    try:
        pg_scripts.write("nightly-report")
        result = pg_scripts.run("nightly-report", env={"CRONPOLICY_HOST": "frozen-host"})
        no_traceback(result)
        assert result.returncode == exitcodes.GATE_ERROR, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "not running" in line and "frozen by the DBA" in line, line
        assert pg_scripts.main_calls("nightly-report") == 0
        assert len(Spool(spool_dir(pg_scripts.env))) == 0
        Spool(spool_dir(pg_scripts.env)).record_skip(
            RunRecord(name="old-spooled", host="frozen-host", pid=1))
        flushed = pg_scripts.run("nightly-report")
        no_traceback(flushed)
        assert flushed.returncode == exitcodes.OK, flushed.stderr
        [kept] = rejected_files(pg_scripts.env)
        assert "frozen by the DBA" in flushed.stderr and kept in flushed.stderr
    finally:
        dba.execute("DROP TRIGGER frozen ON cronpolicy.script_run;"
                    " DROP FUNCTION public.frozen_%d()" % os.getpid())


def test_a_skip_the_database_refuses_is_kept_aside_with_one_warning(scripts, dba):
    scripts.write("nightly-report")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled, reason)"
                " VALUES ('nightly-report', {}, 'off for the audit')",
                (False,))
    with SiteRule(dba, "refused-host"):
        result = scripts.run("nightly-report", env={"CRONPOLICY_HOST": "refused-host"})
    no_traceback(result)
    assert result.returncode == exitcodes.OK and scripts.main_calls("nightly-report") == 0
    [line] = result.stderr.strip().splitlines()
    [kept] = rejected_files(scripts.env)
    assert "refused the skip's record for its data" in line and kept in line
    assert len(Spool(spool_dir(scripts.env))) == 0     # never sent again
    with open(os.path.join(spool_dir(scripts.env), "rejected", kept)) as handle:
        entry = json.load(handle)
    assert entry["record"]["host"] == "refused-host" and "site" in entry["refused"]
    assert dba.runs() == []


@pytest.mark.parametrize("dsn", ["postgresql", "sqlite"], indirect=True)
def test_an_end_the_database_refuses_is_written_with_its_status_alone(scripts, dba):
    """sys.exit(2**31) (PostgreSQL's integer) or 2**63 (SQLite's): the end
    was spooled as if the database were down (PostgreSQL) or the gate died
    in a traceback (SQLite), and the run stayed running in the database
    until its lease ran out."""
    huge = 2 ** 31 if dba.backend == "postgresql" else 2 ** 63
    scripts.write("exit-huge")
    result = scripts.run("exit-huge", "--exit", str(huge))
    no_traceback(result)
    assert scripts.main_calls("exit-huge") == 1
    # The refusal, then the failed run's own line (a failed run logs an error).
    refused, failed = result.stderr.strip().splitlines()
    assert "refused the end of run #1 for its data" in refused
    assert "status (failed) alone" in refused and "run #1 failed" in failed
    [run] = dba.runs()
    assert (run["status"], run["exit_code"]) == ("failed", None)
    assert len(Spool(spool_dir(scripts.env))) == 0 and rejected_files(scripts.env) == []


def test_an_end_refused_even_alone_is_kept_aside_and_left_to_its_lease(scripts, dba):
    """A DBA's rule that refuses the end itself: the run's end is kept in
    rejected/, said once, and the run is left to its lease (then abandoned)."""
    scripts.write("nightly-report")
    if dba.backend == "postgresql":
        rule = ("ALTER TABLE cronpolicy.script_run ADD CONSTRAINT no_end_%d"
                " CHECK (status IN ('running', 'skipped'))" % os.getpid())
        undo = "ALTER TABLE cronpolicy.script_run DROP CONSTRAINT no_end_%d" % os.getpid()
    else:
        rule = ("CREATE TRIGGER cronpolicy.no_end BEFORE UPDATE OF status ON script_run"
                " WHEN NEW.status <> 'running' BEGIN SELECT RAISE(ABORT, 'no ends'); END")
        undo = "DROP TRIGGER cronpolicy.no_end"
    dba.execute(rule)
    try:
        result = scripts.run("nightly-report")
    finally:
        dba.execute(undo)
    no_traceback(result)
    assert result.returncode == exitcodes.OK and scripts.main_calls("nightly-report") == 1
    lines = result.stderr.strip().splitlines()
    [kept] = rejected_files(scripts.env)
    assert len(lines) == 2 and kept in lines[0] and "even its status alone" in lines[0]
    assert "until its lease runs out" in lines[1]
    assert len(Spool(spool_dir(scripts.env))) == 0
    [run] = dba.runs()
    assert run["status"] == "running"           # for its lease: the reaper ends it


def refused_spooled_record(backend):
    """A whole run, spooled, that the database refuses for its data: too
    long for an index (PostgreSQL: class 54, taken for an outage) or a pid
    past 64 bits (SQLite: sqlite3's OverflowError, a traceback)."""
    if backend == "postgresql":
        return RunRecord(name="old-spooled", host=LONG_HOST, pid=1)
    return RunRecord(name="old-spooled", host="web1", pid=2 ** 63)


def test_a_spooled_record_the_database_refuses_is_moved_aside_with_one_warning(
        script_env, dba, cli):
    spool = Spool(spool_dir(script_env))
    spool.record_skip(refused_spooled_record(dba.backend))
    spool.record_skip(RunRecord(name="good-spooled", host="web1", pid=2))
    code, out, err = cli("flush")
    assert "Traceback" not in err
    assert code == exitcodes.OK, err
    assert "wrote 1 spooled run record" in out
    [kept] = rejected_files(script_env)
    [line] = err.strip().splitlines()
    assert "refused" in line and kept in line
    assert [run["name"] for run in dba.runs()] == ["good-spooled"]
    assert len(spool) == 0


def test_the_gate_flush_moves_a_refused_record_aside_and_says_so(scripts, dba):
    spool = Spool(spool_dir(scripts.env))
    spool.record_skip(refused_spooled_record(dba.backend))
    spool.record_skip(RunRecord(name="good-spooled", host="web1", pid=2))
    scripts.write("nightly-report")
    result = scripts.run("nightly-report")
    no_traceback(result)
    assert result.returncode == exitcodes.OK
    [line] = result.stderr.strip().splitlines()
    [kept] = rejected_files(scripts.env)
    assert "refused" in line and kept in line and "database unreachable" not in line
    assert sorted(run["name"] for run in dba.runs()) == ["good-spooled", "nightly-report"]
    assert len(spool) == 0
    again = scripts.run("nightly-report")           # said once: nothing left to refuse
    assert again.returncode == exitcodes.OK and again.stderr == ""


@pytest.mark.parametrize("where,host", [
    ("environment", LONG_HOST[:256]), ("environment", "web1\x7f"), ("environment", "web\n1"),
    ("config file", LONG_HOST[:256]), ("config file", "web\x001")],
    ids=["256 characters", "DEL", "newline", "256 in the file", "NUL in the file"])
def test_a_host_name_no_database_would_take_stops_in_one_line(scripts, dba, host, where):
    """A host of 3,000 characters was taken for an outage on PostgreSQL (too
    long for an index); one with NUL (only a config file can hold it) ended
    the gate in psycopg2's traceback."""
    scripts.write("nightly-report")
    env = {"CRONPOLICY_HOST": host}
    if where == "config file":
        config = os.path.join(os.path.dirname(scripts.env["CRONPOLICY_CONFIG"]), "host.conf")
        with open(config, "w") as handle:
            handle.write("[cronpolicy]\nhost = %s\n" % host)
        env = {"CRONPOLICY_CONFIG": config, "CRONPOLICY_HOST": None}
    result = scripts.run("nightly-report", env=env)
    no_traceback(result)
    assert result.returncode == exitcodes.USAGE, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "host" in line
    assert scripts.main_calls("nightly-report") == 0 and dba.runs() == []


# Generated values, straight at the stores: every one is written, or refused
# as data (never taken for an outage, never an exception of the driver's).

TEXT = st.one_of(
    st.text(st.characters(codec=None), max_size=12),        # NUL, lone surrogates
    st.just(LONG_HOST))
NUMBER = st.one_of(st.integers(-2 ** 70, 2 ** 70),
                   st.sampled_from([2 ** 31, -2 ** 31 - 1, 2 ** 63, -2 ** 63 - 1]))
SECONDS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), NUMBER)
FIELDS = {"name": TEXT, "host": TEXT, "pid": NUMBER, "skip_reason": TEXT,
          "estimate_seconds": SECONDS, "estimate_source": TEXT, "decision": TEXT,
          "policy_id": NUMBER, "window_id": NUMBER, "expected_interval": SECONDS,
          "schedule": TEXT, "schedule_tz": TEXT, "block": TEXT, "needs": TEXT,
          "release": TEXT}
END_FIELDS = {"exit_code": NUMBER, "stop_reason": TEXT, "stop_decision": TEXT,
              "stop_policy_id": NUMBER, "stop_window_id": NUMBER, "stop_block": TEXT}


def writes_or_refuses(write):
    try:
        write()
    except DatabaseError as error:
        assert error.refused and not error.transient and not error.denied, error


@hypothesis_settings(max_examples=120, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(FIELDS)), data=st.data())
def test_a_record_is_written_or_refused_for_its_data(dsn, tmp_path, field, data):
    from cronpolicy.config import Settings
    from cronpolicy.store import open_store
    value = data.draw(FIELDS[field], label=field)
    end_field = data.draw(st.sampled_from(sorted(END_FIELDS)), label="end field")
    end_value = data.draw(END_FIELDS[end_field], label=end_field)
    store = open_store(Settings(dsn=dsn, dsn_source="--dsn", lock_dir=str(tmp_path / "l")))
    try:
        record = RunRecord(**dict(dict(name="job", host="web1", pid=1,
                                       spool_id=os.urandom(8).hex()), **{field: value}))
        writes_or_refuses(lambda: store.record_skip(record._replace(
            spool_id=os.urandom(8).hex(), status="skipped")))
        writes_or_refuses(lambda: store.record_start(record))
        run = store.record_start(RunRecord(name="job", host="web1", pid=1,
                                           spool_id=os.urandom(8).hex()))
        writes_or_refuses(lambda: store.record_finish(run, RunEnd(
            status="failed", **{end_field: end_value})))
        now = Spool(str(tmp_path / "spool")).clock()
        writes_or_refuses(lambda: store.apply_spooled(SpoolEntry(record._replace(
            spool_id=os.urandom(8).hex(), status="failed", started_at=now, finished_at=now),
            None, None)))
    finally:
        store.close()


def test_a_run_whose_late_start_is_refused_stops_at_its_next_safe_point(
        pg_scripts, tmp_path, pg_dsn):
    """The start's INSERT waits on a lock past the deadline, so the run goes
    on and its watcher writes the start once it can; the database then
    refuses that start for its data.  The watcher tried again at every
    check, never read the policy again, and the run went on to its end
    unseen by the fleet (deploy wait) and deaf to a deploy; it now stops at
    its next safe point, as a run that lost its lease does."""
    import psycopg2

    from .test_faults import lease_config
    scripts, dba = pg_scripts, DBA(pg_dsn)
    scripts.env["CRONPOLICY_CONFIG"] = lease_config(tmp_path)
    (tmp_path / "safe").write_text("")
    scripts.write("sync-mirror", safe_file=tmp_path / "safe")
    with SiteRule(dba, "refused-host"):
        locker = psycopg2.connect(pg_dsn)
        try:
            with locker.cursor() as cursor:
                cursor.execute("LOCK TABLE cronpolicy.script_run IN SHARE MODE")
            job = scripts.start("sync-mirror", "--sleep", "60", "--ready-file",
                                str(tmp_path / "ready"), env={"CRONPOLICY_HOST": "refused-host"})
            wait_for_file(tmp_path / "ready")           # main() runs, its start unwritten
        finally:
            locker.rollback()
            locker.close()
        try:
            _, err = job.communicate(timeout=30)
        finally:
            if job.poll() is None:
                job.kill()
                job.communicate()
    assert "Traceback" not in err
    assert job.returncode == exitcodes.INTERRUPTED, err
    assert "refused its start record for its data" in err
    assert dba.runs("sync-mirror") == []
