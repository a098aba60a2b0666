"""One run row whose name, host or decision no index entry can hold
(written by plain SQL, by an older cronpolicy, or before config limited
host names), once its lease ran out: the reap that records it abandoned
adds it to run_tally, whose key PostgreSQL refused ('index row size
exceeds btree maximum', 54000), and every read command records dead runs
first: `status`, `overdue`, `deploy plan`, `deploy wait` failed for the
whole fleet until someone deleted the row.  Schema patch 0027 holds the
keys to what cronpolicy writes and shortens the rows written before it."""

import random
import string

import pytest

from cronpolicy.store.sqlite import connect_sqlite

from .conftest import DBA, in_process_cli, make_env, upgraded

pytestmark = pytest.mark.integration

#: A host of 3,000 characters no compression shortens (random letters and digits).
RANDOM = "".join(random.Random(27).choices(string.ascii_letters + string.digits, k=3000))

#: (name, host, decision) of the absurd running row, by what is too long.
ROWS = {
    "host": ("publish", RANDOM, "run"),
    "name-and-host": (RANDOM[:1500], RANDOM[1500:], "run"),
    "decision": ("publish", "web9", RANDOM),
}


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
@pytest.mark.parametrize("too_long", sorted(ROWS))
def test_one_run_no_index_can_hold_stops_nobody_once_its_lease_runs_out(
        too_long, backend, empty_pg_dsn, sqlite_dsn, tmp_path, monkeypatch, capsys):
    """Written before schema 27 (the last patch before it applied), the row
    and a dead run of another script are both given up on (abandoned) by
    the upgraded database's first read; every read command answers (no
    exit 4, no traceback), deploy wait says quiet only once nothing runs,
    and (PostgreSQL, which shortened them) the row's values are kept whole
    in mended_run_key.  SQLite, which has no limit on an index entry, keeps the
    row as it is."""
    dsn = empty_pg_dsn if backend == "postgresql" else sqlite_dsn
    upgraded(dsn, up_to=26)           # before this patch
    dba = DBA(dsn)
    name, host, decision = ROWS[too_long]
    insert = ("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision, started_at,"
              " heartbeat_at, lease_expires_at) VALUES (%s, %s, 1, 'running', %s, %s, %s, %s)"
              % (("{}",) * 3 + tuple(dba.now_plus(s) for s in (-600, -120, -60))))
    rows = ((name, host, decision), ("sync-mirror", "web1", "run"))
    if backend == "postgresql":
        for row in rows:
            dba.execute(insert, row)
    else:           # (not through DBA, which opens with the store's upgrade)
        raw = connect_sqlite(dsn[len("sqlite:///"):])
        raw.executemany(insert.replace("{}", "?"), rows)
        raw.commit()
        raw.close()
    if backend == "postgresql":      # (SQLite upgrades itself on first use)
        upgraded(dsn)
    cli = in_process_cli(make_env(tmp_path, dsn), monkeypatch, capsys)
    for argv in (("status",), ("overdue",), ("deploy", "plan", "--at", "+1h")):
        code, out, err = cli(*argv)
        assert code in (0, 8), (argv, err)
        assert "Traceback" not in err and "btree" not in err, (argv, err)
    assert dba.execute("SELECT status FROM cronpolicy.script_run ORDER BY id") == [
        ("abandoned",), ("abandoned",)]
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    code, out, err = cli("deploy", "wait", "--timeout", "5s")
    assert code == 0, err
    # Both runs counted abandoned in the tally, nothing refused.
    assert dba.scalar("SELECT sum(runs) FROM cronpolicy.run_tally"
                      " WHERE status = 'abandoned'") == 2
    if backend == "sqlite":
        assert dba.execute("SELECT name, host, decision FROM cronpolicy.script_run"
                           " ORDER BY id")[0] == (name, host, decision)
        return
    # What the patch shortened is kept whole beside what the row holds now.
    kept = dict(((column, original), mended) for column, original, mended in dba.execute(
        "SELECT column_name, original, mended FROM cronpolicy.mended_run_key"))
    [row] = dba.execute("SELECT name, host, decision FROM cronpolicy.script_run"
                        " WHERE name <> 'sync-mirror'")
    for column, value, now in zip(("name", "host", "decision"), (name, host, decision), row):
        longest = 64 if column == "decision" else 255
        if len(value) <= longest:
            assert now == value and (column, value) not in kept
        else:
            assert kept[column, value] == now and len(now) == longest
            assert now[:20] == value[:20]


@pytest.mark.parametrize("too_long", sorted(ROWS))
def test_a_run_no_index_can_hold_is_refused_when_written(too_long, dsn):
    """After schema 27 such a row is refused when written (its writer's
    refusal, naming script_run_keys_fit, not the fleet's when it dies), on
    both backends, and so is a change that makes a key too long; keys of
    exactly the limits, of 4-byte characters too, are taken."""
    dba = DBA(dsn)
    name, host, decision = ROWS[too_long]
    insert = ("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision)"
              " VALUES ({}, {}, 1, 'running', {})")
    with pytest.raises(Exception) as refused:
        dba.execute(insert, (name[:3000], host, decision))
    assert "keys_fit" in str(refused.value) or "255" in str(refused.value)
    widest = "".join(random.Random(5).choices([chr(c) for c in range(0x1F300, 0x1FB00)],
                                              k=255 * 2 + 64))       # 4 bytes each, random
    dba.execute(insert, (widest[:255], widest[255:510], widest[510:]))
    run_id = dba.scalar("SELECT max(id) FROM cronpolicy.script_run")
    # (and it ends: run_tally's index holds its key, 2,296 bytes)
    dba.execute("UPDATE cronpolicy.script_run SET status = 'failed', finished_at = started_at"
                " WHERE id = {}", (run_id,))
    assert dba.scalar("SELECT runs FROM cronpolicy.run_tally WHERE host = {}",
                      (widest[255:510],)) == 1
    with pytest.raises(Exception):
        dba.execute("UPDATE cronpolicy.script_run SET host = host || 'x' WHERE id = {}",
                    (run_id,))


def test_counts_under_a_key_too_long_join_the_mended_key(empty_pg_dsn, tmp_path, monkeypatch,
                                                         capsys):
    """Ended runs of a host of 300 characters (it fit the index, as a
    compressible one does) written before schema 27, one of them deleted
    since (pruned: its count stays): the patch moves the runs and their
    count to the shortened host, nothing under the old key, no run lost;
    metrics reads it, and mended_run_key keeps the host whole."""
    upgraded(empty_pg_dsn, up_to=26)
    dba = DBA(empty_pg_dsn)
    host = "rack7-" + "h" * 294
    for hours in (3, 2, 1):
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision,"
                    " started_at, finished_at, exit_code) VALUES ('publish', {}, 1, 'succeeded',"
                    " 'run', now() - {} * interval '1 hour', now() - {} * interval '1 hour'"
                    " + interval '1 minute', 0)", (host, hours, hours))
    dba.execute("DELETE FROM cronpolicy.script_run WHERE started_at < now() - interval '150 minutes'")
    assert dba.scalar("SELECT runs FROM cronpolicy.run_tally") == 3
    upgraded(empty_pg_dsn)
    mended = dba.scalar("SELECT cronpolicy.key_that_fits({}, 255)", (host,))
    assert len(mended) == 255 and mended.startswith("rack7-hhh") and mended != host[:255]
    assert dba.execute("SELECT DISTINCT host FROM cronpolicy.script_run") == [(mended,)]
    assert dba.execute("SELECT host, status, runs FROM cronpolicy.run_tally") == [
        (mended, "succeeded", 3)]
    assert dba.execute("SELECT column_name, original, mended FROM cronpolicy.mended_run_key") \
        == [("host", host, mended)]
    cli = in_process_cli(make_env(tmp_path, empty_pg_dsn), monkeypatch, capsys)
    code, out, err = cli("metrics")
    assert code == 0, err
    assert 'host="%s",status="succeeded"} 3' % mended in out
    # Applying the patch's mend again finds nothing.
    assert dba.scalar("SELECT cronpolicy.mend_run_keys()") == 0
