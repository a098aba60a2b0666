"""A spool whose rejected/ directory cronpolicy may not trust (writable by
others) when a flush after a run meets an entry the database refuses: the
run's exit code stays main()'s, and the entry stays spooled, said once."""

import os

from cronpolicy import exitcodes
from cronpolicy.spool import Spool
from cronpolicy.tests.test_data_refusals import refused_spooled_record, spool_dir
from cronpolicy.rows import RunRecord


def test_a_refused_entry_that_cannot_be_moved_aside_keeps_the_runs_exit_code(scripts, dba):
    spool = Spool(spool_dir(scripts.env))
    spool.record_skip(refused_spooled_record(dba.backend))
    spool.record_skip(RunRecord(name="good-spooled", host="web1", pid=2))
    rejected = os.path.join(spool_dir(scripts.env), "rejected")
    os.mkdir(rejected)
    os.chmod(rejected, 0o777)
    scripts.write("nightly-report")
    result = scripts.run("nightly-report")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == exitcodes.OK, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "refused" in line and "stays in the spool" in line, line
    assert "rejected" in result.stderr, result.stderr
    assert "not running" not in result.stderr, result.stderr
    assert sorted((run["name"], run["status"]) for run in dba.runs()) == [
        ("good-spooled", "skipped"), ("nightly-report", "succeeded")]
    assert len(spool) == 1      # the refused entry stays, for when rejected/ is safe
