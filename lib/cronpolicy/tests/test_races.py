"""Races on PostgreSQL held open deterministically: one transaction holds a
row uncommitted, the other statement is started in a thread and seen
waiting for the lock (pg_stat_activity) before the first commits.  The
first tests are defects found so (READ COMMITTED: a statement that waited
for a row re-checks only its own table's conditions on the row as it is
then; what it read elsewhere, subqueries and other CTEs, stays as its
snapshot had it), and one found beside them (a start decided before a
rollout began); then races found safe, which stay so; the last, two
statements that locked the same rows in different orders (deadlocks),
three transactions held so that their orders cross."""

import threading

import psycopg2
import pytest

from cronpolicy.config import Settings

from .conftest import wait_for

pytestmark = [pytest.mark.postgresql, pytest.mark.integration]


def query(connection, sql, *parameters):
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        return cursor.fetchall() if cursor.description else None


class Race:
    """A DBA connection (autocommit) that watches, a transaction ``holder``
    left open, and the racing call run in a thread until it waits for a lock."""

    def __init__(self, pg_dsn):
        self.dba = psycopg2.connect(pg_dsn)
        self.dba.autocommit = True
        self.holder = psycopg2.connect(pg_dsn)
        self.threads = []
        self.answers, self.errors = {}, []

    def hold(self, sql, *parameters):
        return query(self.holder, sql, *parameters)

    def start(self, call, what="the racing statement waiting for a lock"):
        """Run ``call()`` in a thread; return once it waits for a lock: once
        as many backends as calls started, other than the DBA's and the
        holder's, wait for one."""
        others = (self.dba.get_backend_pid(), self.holder.get_backend_pid())
        number = len(self.threads)

        def run():
            try:
                self.answers[number] = call()
            except Exception as error:          # (said by finish)
                self.errors.append(error)
        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()
        wait_for(lambda: self.errors or query(
            self.dba, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                      " AND wait_event_type = 'Lock' AND pid NOT IN %s", others)[0][0]
                 == len(self.threads), timeout=30, what=what)
        assert not self.errors, self.errors

    def finish(self):
        """Commit the holder; the racing call's answer (of several, their
        answers in the order they were started)."""
        self.holder.commit()
        for thread in self.threads:
            thread.join(timeout=30)
            assert not thread.is_alive()
        if self.errors:
            raise self.errors[0]
        answers = [self.answers[number] for number in range(len(self.threads))]
        return answers[0] if len(answers) == 1 else answers

    def close(self):
        for connection in (self.holder, self.dba):
            connection.close()


@pytest.fixture
def race(pg_dsn):
    opened = Race(pg_dsn)
    yield opened
    opened.close()


def test_prune_leaves_a_run_heard_from_again_while_it_waited(pg_dsn, race):
    """prune picks old ended runs by its snapshot and deletes them by id.
    A run recorded abandoned long ago whose script is heard from again (its
    heartbeat revives it: it is running) while prune waits for its row was
    deleted all the same: the living run's record was gone, `deploy wait`
    no longer saw it, and its end was written to no row."""
    from cronpolicy.tooling.database import Database
    from cronpolicy.tooling.retention import prune
    [(run_id,)] = query(race.dba, "INSERT INTO cronpolicy.script_run (name, host, pid, spool_id,"
                                  " started_at, status, finished_at) VALUES ('job', 'web1', 1,"
                                  " 'old', now() - interval '2 days', 'abandoned',"
                                  " now() - interval '2 days') RETURNING id")
    # The heartbeat's revival (store/postgresql.sql), not yet committed.
    race.hold("UPDATE cronpolicy.script_run SET status = 'running', finished_at = NULL,"
              " stop_reason = NULL, heartbeat_at = now(),"
              " lease_expires_at = now() + interval '30 s' WHERE id = %s", run_id)
    db = Database(Settings(dsn=pg_dsn, dsn_source="--dsn"))
    race.start(lambda: prune(db, older_than=86400, keep=0)[0], "prune waiting for the run")
    race.finish()
    assert query(race.dba, "SELECT id, status FROM cronpolicy.script_run") == [
        (run_id, "running")]



def test_prune_keeps_a_success_whose_end_was_written_while_it_waited(pg_dsn, race):
    """prune keeps the last successes of every script (the estimates read
    them).  An old run recorded abandoned whose script writes its end (it
    succeeded: the run's end overwrites an abandonment) while prune waits
    for its row was deleted as the abandoned run prune's snapshot showed:
    the script's one success, the newest of all, was gone."""
    from cronpolicy.tooling.database import Database
    from cronpolicy.tooling.retention import prune
    [(run_id,)] = query(race.dba, "INSERT INTO cronpolicy.script_run (name, host, pid, spool_id,"
                                  " started_at, status, finished_at) VALUES ('job', 'web1', 1,"
                                  " 'old', now() - interval '2 days', 'abandoned',"
                                  " now() - interval '2 days') RETURNING id")
    # record_finish (store/postgresql.sql), not yet committed.
    race.hold("UPDATE cronpolicy.script_run SET status = 'succeeded', exit_code = 0,"
              " finished_at = now(), lease_expires_at = NULL WHERE id = %s", run_id)
    db = Database(Settings(dsn=pg_dsn, dsn_source="--dsn"))
    race.start(lambda: prune(db, older_than=86400, keep=1)[0], "prune waiting for the run")
    assert race.finish() == 0
    assert query(race.dba, "SELECT id, status FROM cronpolicy.script_run") == [
        (run_id, "succeeded")]



def test_deploy_end_says_it_ended_only_the_rollouts_it_ended(pg_dsn, race):
    """`deploy end` (no id) reads the open rollouts, then ends them.  Two
    at once (two release managers, a retried script): the second waited
    for the first, ended nothing, and still said "rollout #N ended after
    ..." of the rollout the first had ended, as if its own."""
    from cronpolicy.tooling import deploy
    from cronpolicy.tooling.database import Database
    db = Database(Settings(dsn=pg_dsn, dsn_source="--dsn"))
    rollout, _ = deploy.begin(db, reason="release")
    # The first `deploy end`, not yet committed.
    race.hold("UPDATE cronpolicy.rollout SET ended_at = now() WHERE id = %s", rollout["id"])
    race.start(lambda: deploy.end_open(db), "the second deploy end waiting")
    assert race.finish() == []
    assert query(race.dba, "SELECT count(*) FROM cronpolicy.rollout WHERE ended_at IS NULL") == [
        (0,)]



def test_deploy_wait_is_not_quiet_while_a_start_decided_before_the_rollout_runs(
        pg_dsn, tmp_path, monkeypatch):
    """A script reads the policy (no rollout: run) and records its start a
    moment later (after its slot, if it has one).  A rollout that begins
    in between, and a `deploy wait` that looks before the start is
    written, find the fleet quiet; the script then runs main() under the
    rollout (to its end, if it is never safe to interrupt) while the
    release goes ahead.  Either the wait must see the run or the script
    must not run main()."""
    from cronpolicy import CronScript, exitcodes
    from cronpolicy.store import open_store
    from cronpolicy.tooling import deploy
    from cronpolicy.tooling.database import Database
    config = tmp_path / "cronpolicy.conf"
    config.write_text("[cronpolicy]\nheartbeat_interval = 0.2s\nlease_ttl = 2s\n")
    for key in ("CRONPOLICY_DSN", "CRONPOLICY_WATCH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CRONPOLICY_CONFIG", str(config))
    monkeypatch.setenv("CRONPOLICY_HOST", "web1")
    monkeypatch.setenv("CRONPOLICY_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("CRONPOLICY_STATE_DIR", str(tmp_path / "state"))
    settings = Settings(dsn=pg_dsn, dsn_source="--dsn", lock_dir=str(tmp_path / "locks"))
    store = open_store(settings)
    db = Database(settings)
    waits = []
    recording = store.record_start

    def record_start(record):
        # Between the decision's read and the start: a rollout and its wait.
        rollout, _ = deploy.begin(db, reason="release")
        waits.append(deploy.wait_until_quiet(db, timeout=2, rollout_id=rollout["id"]))
        return recording(record)
    monkeypatch.setattr(store, "record_start", record_start)

    class Job(CronScript):
        name = "job"
        ran = False

        def main(self):
            type(self).ran = True
    code = Job(store=store).run(["--dsn", pg_dsn, "--log-file", str(tmp_path / "job.log")],
                                exit=False)
    assert waits and not (waits[0].quiet and Job.ran), (waits, Job.ran)
    # (the fleet was quiet: the script learned of the rollout as its start
    # was written, and never ran main(): interrupted at once)
    assert code == exitcodes.INTERRUPTED
    [(rollout_id,)] = query_all(pg_dsn, "SELECT id FROM cronpolicy.rollout")
    assert query_all(pg_dsn, "SELECT status, stop_block FROM cronpolicy.script_run") == [
        ("interrupted", "rollout:%d" % rollout_id)]
    assert "not running after all" in (tmp_path / "job.log").read_text()


def query_all(dsn, sql):
    connection = psycopg2.connect(dsn)
    try:
        return query(connection, sql)
    finally:
        connection.close()


# Races checked and found safe, held open the same way: they stay so. ------------------

RUN = ("INSERT INTO cronpolicy.script_run (name, host, pid, spool_id, decision, started_at, status,"
       " finished_at, heartbeat_at, lease_expires_at) VALUES ('job', 'web1', 1, %s, 'run',"
       " now() - %s * interval '1 minute', %s, CASE WHEN %s <> 'running' THEN now() - %s *"
       " interval '1 minute' + interval '10 s' END, now(), CASE WHEN %s = 'running' THEN now()"
       " + interval '30 s' END) RETURNING id")


def run(race, key, minutes, status):
    return query(race.dba, RUN, key, minutes, status, status, minutes, status)[0][0]


def tally(race):
    return query(race.dba, "SELECT status, runs, last_run_id FROM cronpolicy.run_tally"
                           " ORDER BY status")


FINISH = ("UPDATE cronpolicy.script_run SET status = 'succeeded', exit_code = 0,"
          " finished_at = now(), lease_expires_at = NULL WHERE id = %s")
REWRITE = "UPDATE cronpolicy.script_run SET status = 'failed' WHERE id = %s"


@pytest.mark.parametrize("held", ["leave", "join"])
def test_a_leave_and_a_join_of_one_bucket_of_the_tally(pg_dsn, race, held):
    """A run rewritten out of a bucket of run_tally (its latest run, so the
    bucket takes its latest again from the history) and a run ending into
    it, either holding the tally's row while the other waits: the bucket
    ends with the run that ended, whichever read the history first."""
    run(race, "d", 120, "succeeded")
    a = run(race, "a", 60, "succeeded")
    c = run(race, "c", 30, "running")
    first, then = (REWRITE, a), (FINISH, c)
    if held == "join":
        first, then = then, first
    race.hold(first[0], first[1])
    race.start(lambda: _autocommit(pg_dsn, then[0], then[1]))
    race.finish()
    assert tally(race) == [("failed", 1, a), ("succeeded", 2, c)]


def _autocommit(dsn, sql, *parameters):
    """``sql`` on a connection of its own, as the store sends it (autocommit)."""
    import psycopg2
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    try:
        return query(connection, sql, *parameters)
    finally:
        connection.close()


def test_two_leaves_of_one_bucket_of_the_tally(pg_dsn, race):
    d = run(race, "d", 120, "succeeded")
    a = run(race, "a", 60, "succeeded")
    b = run(race, "b", 30, "succeeded")
    race.hold(REWRITE, b)
    race.start(lambda: _autocommit(pg_dsn, REWRITE, a))
    race.finish()
    assert tally(race) == [("failed", 2, b), ("succeeded", 1, d)]


def test_a_slot_renewed_while_taken_from_an_expired_lease(pg_dsn, race):
    """take_slot frees a slot whose lease ran out and takes it; its holder's
    heartbeat, waiting for the row meanwhile, renews nothing (slots 0: lost)."""
    query(race.dba, "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
                    " VALUES ('job', 0, 'old', 'web1', now() - interval '1 s')")
    # take_slot by another host, not yet committed
    race.hold("DELETE FROM cronpolicy.run_slot WHERE name = 'job' AND slot = 0"
              " AND lease_expires_at < now();"
              " INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
              " VALUES ('job', 0, 'new', 'web2', now() + interval '30 s')"
              " ON CONFLICT (name, slot) DO NOTHING RETURNING slot")
    race.start(lambda: _autocommit(
        pg_dsn, "UPDATE cronpolicy.run_slot SET lease_expires_at = now() + interval '30 s'"
                " WHERE name = 'job' AND slot = 0 AND run_key = 'old' RETURNING slot"))
    assert race.finish() == []
    assert query(race.dba, "SELECT run_key FROM cronpolicy.run_slot") == [("new",)]


def test_an_expired_slot_taken_while_its_holder_renews(pg_dsn, race):
    """The other order: the renewal holds the row, take_slot waits, finds
    the lease standing once it holds it, and takes nothing."""
    query(race.dba, "INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
                    " VALUES ('job', 0, 'old', 'web1', now() - interval '1 s')")
    race.hold("UPDATE cronpolicy.run_slot SET lease_expires_at = now() + interval '30 s'"
              " WHERE name = 'job' AND slot = 0 AND run_key = 'old'")
    race.start(lambda: _autocommit(
        pg_dsn, "DELETE FROM cronpolicy.run_slot WHERE name = 'job' AND slot = 0"
                " AND lease_expires_at < now();"
                " INSERT INTO cronpolicy.run_slot (name, slot, run_key, host, lease_expires_at)"
                " VALUES ('job', 0, 'new', 'web2', now() + interval '30 s')"
                " ON CONFLICT (name, slot) DO NOTHING RETURNING slot"))
    assert race.finish() == []
    assert query(race.dba, "SELECT run_key FROM cronpolicy.run_slot") == [("old",)]


def test_a_reap_waiting_for_a_heartbeat_leaves_the_run_running(pg_dsn, race):
    r = query(race.dba, "INSERT INTO cronpolicy.script_run (name, host, pid, spool_id,"
                        " heartbeat_at, lease_expires_at) VALUES ('job', 'web1', 1, 'k',"
                        " now() - interval '1 min', now() - interval '1 s') RETURNING id")[0][0]
    race.hold("UPDATE cronpolicy.script_run SET heartbeat_at = now(),"
              " lease_expires_at = now() + interval '30 s' WHERE id = %s", r)
    race.start(lambda: _autocommit(pg_dsn, "SELECT cronpolicy.reap_dead_runs()"))
    assert race.finish() == []
    assert query(race.dba, "SELECT status FROM cronpolicy.script_run") == [("running",)]


# Deadlocks: two statements that lock the same rows must lock them in one order. ---------

def _running(race, key, lease, name="job"):
    """A running run of ``name`` on web1 whose lease runs out in ``lease``
    seconds (has run out, if negative)."""
    return query(race.dba, "INSERT INTO cronpolicy.script_run (name, host, pid, spool_id,"
                           " decision, started_at, heartbeat_at, lease_expires_at) VALUES"
                           " (%s, 'web1', 1, %s, 'run', now() - interval '5 min',"
                           " now() - interval '1 min', now() + %s * interval '1 s')"
                           " RETURNING id", name, key, lease)[0][0]


def _renewal(dsn, ids, keys):
    """A relay's renewal of runs ``ids`` (keys ``keys``), a word just now, as
    the relay sends it (autocommit): [(id, known, renewed)]."""
    count = len(ids)
    return _autocommit(dsn, "SELECT * FROM cronpolicy.renew_relayed(%s::bigint[], %s::text[],"
                            " %s::boolean[], %s::float8[], %s::text[], %s::integer[],"
                            " %s::float8[])", ids, keys, [False] * count, [0.0] * count,
                       [None] * count, [None] * count, [30.0] * count)


def test_a_reap_and_a_renewal_of_the_same_runs_do_not_deadlock(pg_dsn, race):
    """A relay's renewal locks the runs it renews in the order of their ids
    (schema 24); the reaper updated every dead run in the order its scan met
    them, which is the order of the rows in the table, not of their ids (a
    row updated moves to the table's end).  A reaper that held a later run
    and waited for an earlier one the renewal held, while the renewal
    waited for the later one: PostgreSQL killed one of them (40P01,
    deadlock detected).  Held open here: runs 1 and 3 dead, 1 moved behind
    3 in the table, run 2 alive and held by a third transaction so that
    the renewal stops between 1 and 3 while the reaper starts."""
    first = _running(race, "a", -10)
    middle = _running(race, "b", 30)
    last = _running(race, "c", -10)
    # (the first run's row, rewritten with an indexed column, now comes
    # after the last's in a scan of the table or of an index)
    query(race.dba, "UPDATE cronpolicy.script_run SET started_at = started_at"
                    " - interval '1 s' WHERE id = %s", first)
    assert [id for id, in query(race.dba, "SELECT id FROM cronpolicy.script_run"
                                          " WHERE id <> %s", middle)] == [last, first]
    race.hold("SELECT 1 FROM cronpolicy.script_run WHERE id = %s FOR SHARE", middle)
    race.start(lambda: _renewal(pg_dsn, [first, middle, last], ["a", "b", "c"]),
               "the renewal holding the first run, waiting for the middle one")
    race.start(lambda: _autocommit(pg_dsn, "SELECT cronpolicy.reap_dead_runs()"),
               "the reaper waiting for the first run")
    renewed, reaped = race.finish()
    # The renewal took the rows first: every run is running, none reaped
    # (the reaper judges each run as it is once it holds it).
    assert renewed == [(first, True, False), (middle, True, True), (last, True, False)]
    assert reaped == []
    assert query(race.dba, "SELECT id, status, lease_expires_at > now()"
                           " FROM cronpolicy.script_run ORDER BY id") == [
        (first, "running", True), (middle, "running", True), (last, "running", True)]


def test_a_reap_and_a_renewal_reviving_runs_do_not_deadlock_on_the_tally(pg_dsn, race):
    """A reap of dead runs of several scripts adds each to its script's
    count of abandoned runs (run_tally, schema 22), and a relay's renewal
    reviving runs recorded abandoned (their host came back) takes each from
    its count: each statement's triggers updated those rows in the order it
    updated the runs, not one order for all.  A reap holding p's count and
    waiting for r's while a renewal held r's and waited for p's: PostgreSQL
    killed one of them (40P01).  Held open here: a third transaction holds
    q's count, which the reap updates between p's and r's."""
    def abandoned(name, key):
        return query(race.dba, "INSERT INTO cronpolicy.script_run (name, host, pid, spool_id,"
                               " decision, started_at, heartbeat_at, status, finished_at)"
                               " VALUES (%s, 'web1', 1, %s, 'run', now() - interval '5 min',"
                               " now() - interval '2 min', 'abandoned', now() - interval"
                               " '2 min') RETURNING id", name, key)[0][0]
    # The renewal's runs, r's before p's (ids and rows); a run that gives q
    # a count; then the reap's, in the order of their names, ids and rows
    # alike (whichever its scan or its sort follows: p, q, r).
    revived = [abandoned("r", "revived-r"), abandoned("p", "revived-p")]
    abandoned("q", "old-q")
    for name in ("p", "q", "r"):
        _running(race, "dead-" + name, -10, name)
    race.hold("SELECT 1 FROM cronpolicy.run_tally WHERE name = 'q' FOR UPDATE")
    race.start(lambda: _autocommit(pg_dsn, "SELECT cronpolicy.reap_dead_runs()"),
               "the reap holding p's count, waiting for q's")
    race.start(lambda: _renewal(pg_dsn, revived, ["revived-r", "revived-p"]),
               "the renewal waiting for p's count")
    reaped, renewed = race.finish()
    assert len(reaped) == 3
    assert renewed == [(revived[0], True, False), (revived[1], True, False)]
    assert query(race.dba, "SELECT name, status, count(*) FROM cronpolicy.script_run"
                           " GROUP BY 1, 2 ORDER BY 1, 2") == [
        ("p", "abandoned", 1), ("p", "running", 1), ("q", "abandoned", 2),
        ("r", "abandoned", 1), ("r", "running", 1)]
    assert query(race.dba, "SELECT name, runs FROM cronpolicy.run_tally"
                           " WHERE status = 'abandoned' ORDER BY name") == [
        ("p", 1), ("q", 2), ("r", 1)]
