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

import os
import random
import string

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from cronpolicy.errors import DatabaseError
from cronpolicy.rows import RunEnd, RunRecord
from cronpolicy.spool import Spool, SpoolEntry

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
