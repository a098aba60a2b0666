"""The tally the database keeps as runs end (schema patch 0022) answers what
the history answers, on both backends.

metrics and overdue read run_tally and the running runs instead of passing
over the whole history (2 s of a server's time a scrape at a million rows).
Each read is held here to the statement it replaced, kept below as the
oracle, over generated lifecycles written with plain SQL: starts, ends,
skips with and without a block, runs spooled late with old times and high
ids, dead runs reaped several in one statement (on PostgreSQL by
cronpolicy.reap_dead_runs), heartbeats, dead runs heard
from again, ended runs a DBA rewrites, and times that tie.  Then what the tally does where the two part on purpose: deleting
history takes nothing from it; and the upgrade that makes it counts what
the history and pruned_runs held."""

import datetime
import random

import psycopg2
import pytest

from cronpolicy import schema
from cronpolicy.config import Settings
from cronpolicy.estimate import SCRIPT_SOURCE
from cronpolicy.rows import to_seconds, to_time
from cronpolicy.store.reads import reading

from .conftest import DBA, create_database, drop_database, make_env

#: Every test here is integration (they reach a database or start processes).
pytestmark = pytest.mark.integration

NAMES = ["publish", "backup", "b'quote"]
HOSTS = ["h1", "h2"]
ENDS = ["succeeded", "succeeded", "failed", "interrupted"]
SKIPS = [("in-window", "window:2"), ("deploy-pending", "rollout:3"), ("disabled", None),
         ("catch-up", None)]

#: The statements the tally replaced that both backends said alike.
_BOTH = {
    "metrics_runs": """
            SELECT name, host, status, coalesce(decision, '') AS decision,
                   block IS NOT NULL AS blocked, count(*) AS runs,
                   CASE WHEN status = 'succeeded' THEN max(finished_at) END AS finished_at,
                   CASE WHEN status = 'succeeded' THEN max(started_at) END AS started_at
              FROM cronpolicy.script_run
             GROUP BY name, host, status, coalesce(decision, ''), block IS NOT NULL""",
    "metrics_latest_runs": """
            SELECT run.name, run.host, run.id, run.started_at, run.finished_at,
                   run.estimate_seconds,
                   (run.finished_at = newest.finished AND run.status <> 'skipped'),
                   (run.started_at = newest.started AND run.estimate_seconds IS NOT NULL)
              FROM cronpolicy.script_run AS run
              JOIN (SELECT name, host,
                           max(CASE WHEN status <> 'skipped' THEN finished_at END) AS finished,
                           max(CASE WHEN estimate_seconds IS NOT NULL THEN started_at END)
                               AS started
                      FROM cronpolicy.script_run GROUP BY name, host) AS newest
                ON run.name = newest.name AND run.host = newest.host
             WHERE (run.finished_at = newest.finished AND run.status <> 'skipped')
                OR (run.started_at = newest.started AND run.estimate_seconds IS NOT NULL)""",
}

#: The statements the tally replaced (schema 21's), as the oracle:
#: {backend: {name: SQL}}, parameters as each backend's reads take them.
ORACLE = {
    "postgresql": {
        **_BOTH,
        "pair_starts": """
            SELECT name, host, bool_or(started_at > %(since)s),
                   max(CASE WHEN status = 'succeeded' THEN started_at END)
              FROM cronpolicy.script_run GROUP BY name, host""",
        "recent_pairs": """
            SELECT DISTINCT name, host FROM cronpolicy.script_run
             WHERE started_at > %(since)s""",
        # (schema 21's, the higher id first among starts that tie: it left them unordered)
        "declared_runtimes": """
            SELECT DISTINCT ON (name, host) name, host, estimate_seconds, started_at
              FROM cronpolicy.script_run
             WHERE estimate_source LIKE %(declared)s AND started_at > %(since)s
             ORDER BY name, host, started_at DESC, id DESC""",
        "declared_intervals": """
            SELECT name, expected_interval FROM cronpolicy.script_run
             WHERE id IN (SELECT max(id) FROM cronpolicy.script_run
                           WHERE expected_interval IS NOT NULL GROUP BY name)""",
    },
    "sqlite": {
        **_BOTH,
        "pair_starts": """
            SELECT name, host, coalesce(max(julianday(started_at) > julianday(:since)), 0),
                   max(CASE WHEN status = 'succeeded' THEN started_at END)
              FROM cronpolicy.script_run GROUP BY name, host""",
        "recent_pairs": """
            SELECT DISTINCT name, host FROM cronpolicy.script_run
             WHERE julianday(started_at) > julianday(:since)""",
        "declared_runtimes": """
            SELECT name, host, estimate_seconds, started_at
              FROM (SELECT name, host, estimate_seconds, started_at,
                           row_number() OVER (PARTITION BY name, host
                                              ORDER BY started_at DESC, id DESC) AS nth
                      FROM cronpolicy.script_run
                     WHERE estimate_source LIKE :declared
                       AND julianday(started_at) > julianday(:since))
             WHERE nth = 1""",
        "declared_intervals": """
            SELECT name, expected_interval FROM cronpolicy.script_run
             WHERE id IN (SELECT max(id) FROM cronpolicy.script_run
                           WHERE expected_interval IS NOT NULL GROUP BY name)""",
    },
}


def _oracle(reader, name, parameters=None):
    cursor = reader.connection.cursor()
    try:
        cursor.execute(ORACLE[reader.backend][name], parameters or {})
        return cursor.fetchall()
    finally:
        cursor.close()


def _live(dba, seed, steps=160):
    """Write a generated fleet's life with plain SQL, as the library and its
    faults would: times on a coarse grid of seconds, so that they tie."""
    rng = random.Random(seed)
    running, abandoned = [], []

    base = to_time(dba.scalar("SELECT " + dba.now_plus(0)))

    def moment(offset):
        """A time on the grid (whole seconds from one reading of the clock)."""
        when = base + datetime.timedelta(seconds=offset)
        if dba.backend == "sqlite":
            from cronpolicy.timeutil import to_sqlite
            return "'%s'" % to_sqlite(when)
        return "'%s'::timestamptz" % when.isoformat()

    for number in range(steps):
        roll = rng.random()
        name, host = rng.choice(NAMES), rng.choice(HOSTS)
        estimate = rng.choice([None, 60.0, 600.0])
        source = rng.choice([None, "history (5 runs)", SCRIPT_SOURCE, SCRIPT_SOURCE + " (600 s)"])
        interval = rng.choice([None, None, 3600.0, 86400.0])
        start = -rng.choice([4000, 3000, 2000, 1000, 500])
        if roll < 0.3:                                  # a start
            dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, status,"
                        " decision, estimate_seconds, estimate_source, expected_interval)"
                        " VALUES ({}, {}, 1, %s, 'running', 'run', {}, {}, {})" % moment(start),
                        (name, host, estimate, source, interval))
            running.append(dba.scalar("SELECT max(id) FROM cronpolicy.script_run"))
        elif roll < 0.45:                               # a skip
            decision, block = rng.choice(SKIPS)
            dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at,"
                        " finished_at, status, decision, block, estimate_seconds, estimate_source)"
                        " VALUES ({}, {}, 1, %s, %s, 'skipped', {}, {}, {}, {})"
                        % (moment(start), moment(start)),
                        (name, host, decision, block, estimate, source))
        elif roll < 0.55:                               # a run spooled late, ended
            ended = start + rng.choice([0, 100, 500])
            dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at,"
                        " finished_at, status, decision, estimate_seconds, estimate_source,"
                        " expected_interval, spooled) VALUES ({}, {}, 1, %s, %s, {}, 'run', {}, {},"
                        " {}, {})" % (moment(start), moment(ended)),
                        (name, host, rng.choice(ENDS), estimate, source, interval, True))
        elif roll < 0.80 and running:                   # an end
            run_id = running.pop(rng.randrange(len(running)))
            dba.execute("UPDATE cronpolicy.script_run SET status = {}, finished_at = %s"
                        " WHERE id = {}" % moment(-rng.choice([400, 300, 200])),
                        (rng.choice(ENDS), run_id))
        elif roll < 0.87 and running:                   # a heartbeat
            dba.execute("UPDATE cronpolicy.script_run SET heartbeat_at = %s WHERE id = {}"
                        % moment(-100), (rng.choice(running),))
        elif roll < 0.93 and running:                   # dead runs reaped, in one statement
            reaped, running[:] = running[:2], running[2:]
            abandoned.extend(reaped)
            listed = ", ".join(str(run_id) for run_id in reaped)
            if dba.backend == "postgresql":
                # The reaper itself, which locks and inserts the counts it
                # adds to before its triggers do (schema 25).
                dba.execute("UPDATE cronpolicy.script_run SET lease_expires_at = CASE WHEN id"
                            " IN (%s) THEN now() - interval '1 s' ELSE now() + interval '1 h'"
                            " END WHERE status = 'running'" % listed)
                assert sorted(id for id, in dba.execute(
                    "SELECT cronpolicy.reap_dead_runs()")) == sorted(reaped)
            else:
                dba.execute("UPDATE cronpolicy.script_run SET status = 'abandoned',"
                            " finished_at = started_at WHERE id IN (%s)" % listed)
        elif roll < 0.97 and abandoned:                 # a dead run heard from again
            run_id = abandoned.pop(rng.randrange(len(abandoned)))
            running.append(run_id)
            dba.execute("UPDATE cronpolicy.script_run SET status = 'running', finished_at = NULL"
                        " WHERE id = {}", (run_id,))
        elif roll >= 0.97:                              # a DBA rewrites how runs ended
            dba.execute("UPDATE cronpolicy.script_run SET status = {}, estimate_seconds = {},"
                        " expected_interval = {} WHERE status IN ('succeeded', 'failed')"
                        " AND name = {} AND host = {} AND id - 3 * (id / 3) = {}",
                        (rng.choice(ENDS), estimate, interval, name, host, rng.randrange(3)))
    # Runs in flight at the end, one with an estimate started after every other.
    for name, host, start, estimate in (("publish", "h1", -10, 60.0), ("backup", "h2", -2000,
                                                                       None)):
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, status,"
                    " decision, estimate_seconds, estimate_source, expected_interval) VALUES"
                    " ({}, {}, 1, %s, 'running', 'run', {}, {}, {})" % moment(start),
                    (name, host, estimate, SCRIPT_SOURCE, None))


def _counts(rows):
    """metrics_runs' rows, comparable: {(name, host, status, decision, blocked): (runs,
    finished, started)}."""
    return {(name, host, status, decision, bool(blocked)): (int(runs), to_time(finished),
                                                            to_time(started))
            for name, host, status, decision, blocked, runs, finished, started in rows}


def _chosen(rows):
    """The caller's choice of metrics_latest_runs' rows: per pair and flag, the higher id."""
    chosen = ({}, {})
    for name, host, run_id, started, finished, estimate, last_run, latest in rows:
        for flagged, flag in zip(chosen, (last_run, latest)):
            if flag and ((name, host) not in flagged or run_id > flagged[name, host][0]):
                flagged[name, host] = (run_id, to_time(started), to_time(finished),
                                       None if estimate is None else float(estimate))
    return chosen


def _reads(reader):
    """(new, old) answers of every read the tally serves."""
    since = reader.now() - datetime.timedelta(seconds=2500)
    parameter = {"since": reader._time(since), "declared": SCRIPT_SOURCE + "%"}
    new = (_counts(reader.tuples("metrics_runs", {"host": None})),
           _chosen(reader.tuples("metrics_latest_runs", {"host": None})),
           {pair: (bool(recent), to_time(started)) for pair, (recent, started)
            in reader.pair_starts(since).items()},
           sorted(reader.recent_pairs(since)),
           reader.declared_runtimes(since),
           reader.declared_intervals())
    old = (_counts(_oracle(reader, "metrics_runs")),
           _chosen(_oracle(reader, "metrics_latest_runs")),
           {(name, host): (bool(recent), to_time(started)) for name, host, recent, started
            in _oracle(reader, "pair_starts", parameter)},
           sorted(tuple(row) for row in _oracle(reader, "recent_pairs", parameter)),
           {(name, host): (to_seconds(seconds), to_time(started)) for name, host, seconds, started
            in _oracle(reader, "declared_runtimes", parameter)},
           {name: float(interval) for name, interval
            in _oracle(reader, "declared_intervals")})
    return new, old


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_tally_reads_what_the_history_reads(dsn, tmp_path, seed):
    dba = DBA(dsn)
    with dba.batch():
        _live(dba, seed)
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    with reading(settings) as reader:
        new, old = _reads(reader)
    assert new[0] == old[0]
    assert new[1] == old[1]
    assert new[2] == old[2]
    assert new[3] == old[3]
    assert new[4] == old[4] and len(new[4]) > 2
    assert new[5] == old[5] and len(new[5]) == len(NAMES)
    assert len(new[0]) > 10 and any(status == "running" for _, _, status, _, _ in new[0])


def test_deleting_history_takes_nothing_from_the_tally(dsn, tmp_path):
    """Counters never go down and a pair's last success stays known, however
    its rows go: prune (which also adds to pruned_runs) or a DBA's DELETE."""
    dba = DBA(dsn)
    with dba.batch():
        _live(dba, 7)
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    with reading(settings) as reader:
        before, _ = _reads(reader)
    dba.execute("DELETE FROM cronpolicy.script_run WHERE status <> 'running'")
    dba.execute("INSERT INTO cronpolicy.pruned_runs (name, host, status, runs)"
                " VALUES ('publish', 'h1', 'succeeded', 5)")
    with reading(settings) as reader:
        after, history = _reads(reader)
    assert after == before
    assert history[0] != before[0]          # (the history alone has forgotten them)


def test_a_run_that_ends_after_a_newer_one_keeps_neither_its_interval_nor_its_runtime(
        dsn, tmp_path):
    """Two runs of a script on a host, the newer (higher id, later start)
    ending first: what the script declares is the newer's, whichever ended
    last; the run that finished last is the older."""
    dba = DBA(dsn)
    for started, interval, runtime in ((-300, 3600.0, 60.0), (-200, 86400.0, 90.0)):
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, status,"
                    " decision, expected_interval, estimate_seconds, estimate_source)"
                    " VALUES ('publish', 'h1', 1, %s, 'running', 'run', {}, {}, {})"
                    % dba.now_plus(started), (interval, runtime, SCRIPT_SOURCE))
    older, newer = [row["id"] for row in dba.runs("publish")]
    for run_id, ended in ((newer, -100), (older, -50)):
        dba.execute("UPDATE cronpolicy.script_run SET status = 'succeeded', finished_at = %s"
                    " WHERE id = {}" % dba.now_plus(ended), (run_id,))
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    with reading(settings) as reader:
        assert reader.declared_intervals() == {"publish": 86400.0}
        [(seconds, _)] = reader.declared_runtimes(reader.now() - datetime.timedelta(hours=1)).values()
        last_runs, _ = _chosen(reader.tuples("metrics_latest_runs", {"host": None}))
    assert seconds == 90.0 and last_runs[("publish", "h1")][0] == older


def test_a_run_heard_from_again_leaves_the_count_of_abandoned(dsn, tmp_path):
    """A run recorded abandoned whose host is heard from again is running
    (a heartbeat sets it back): it counts among the running, not twice."""
    dba = DBA(dsn)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision)"
                " VALUES ('publish', 'h1', 1, 'running', 'run')")
    dba.execute("UPDATE cronpolicy.script_run SET status = 'abandoned', finished_at = started_at")
    dba.execute("UPDATE cronpolicy.script_run SET status = 'running', finished_at = NULL")
    settings = Settings.load(environ=make_env(tmp_path, dsn))
    with reading(settings) as reader:
        counts = _counts(reader.tuples("metrics_runs", {"host": None}))
    assert counts[("publish", "h1", "abandoned", "run", False)][0] == 0
    assert counts[("publish", "h1", "running", "run", False)][0] == 1
    dba.execute("UPDATE cronpolicy.script_run SET status = 'succeeded',"
                " finished_at = started_at")
    with reading(settings) as reader:
        counts = _counts(reader.tuples("metrics_runs", {"host": None}))
    assert counts[("publish", "h1", "succeeded", "run", False)][0] == 1
    assert ("publish", "h1", "running", "run", False) not in counts


class _Raw(DBA):
    """The DBA's plain SQL on a connection of the test's own, which opens
    nothing that would upgrade the schema (a SQLite store upgrades a file
    as it opens it)."""

    def __init__(self, connection, backend):
        self.backend, self.connection, self._held = backend, connection, None

    def execute(self, sql, params=()):
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql.replace("{}", "?" if self.backend == "sqlite" else "%s"), params)
            found = cursor.fetchall() if cursor.description else None
        finally:
            cursor.close()
        self.connection.commit()
        return found

    def batch(self):
        import contextlib
        return contextlib.nullcontext(self)


def test_the_patch_knows_a_declared_runtime_by_the_words_the_gate_records():
    """The triggers tell a run that decided with its script's declared
    runtime by estimate_source's words, estimate.SCRIPT_SOURCE's."""
    words = "LIKE '%s%%'" % SCRIPT_SOURCE.replace("'", "''")
    for backend in ("postgresql", "sqlite"):
        [(_, _, sql)] = [patch for patch in schema.patches(backend) if patch[0] == 22]
        assert words in sql, backend


def _patched_before_0022(backend, connection):
    """Apply the patches before 0022 as `schema upgrade` would have."""
    for version, _, sql in schema.patches(backend):
        if version >= 22:
            break
        statements = [sql] if backend == "postgresql" else schema.split_sqlite_script(sql)
        cursor = connection.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.execute("INSERT INTO cronpolicy.schema_version (version, name) VALUES (%s, %s)"
                       .replace("%s", "?" if backend == "sqlite" else "%s"),
                       (version, "before 0022"))
        cursor.close()
        connection.commit()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_the_upgrade_counts_the_history_and_what_prune_deleted(tmp_path, backend):
    """A schema-21 database with history and pruned_runs, upgraded, tallies
    what metrics counted before (the history plus what prune deleted)."""
    from cronpolicy.store.sqlite import connect_sqlite
    name = None
    if backend == "postgresql":
        name, dsn = create_database("tally")
        connection = psycopg2.connect(dsn)
    else:
        dsn = "sqlite:///" + str(tmp_path / "tally.db")
        connection = connect_sqlite(str(tmp_path / "tally.db"))
    try:
        _patched_before_0022(backend, connection)
        raw = _Raw(connection, backend)
        _live(raw, 11)
        raw.execute("INSERT INTO cronpolicy.pruned_runs (name, host, status, decision, runs)"
                    " VALUES ('publish', 'h1', 'succeeded', 'run', 5), ('gone', 'h9', 'failed', '', 2)")
        old = _counts(raw.execute(ORACLE[backend]["metrics_runs"]))
        if backend == "postgresql":
            schema.upgrade_postgres(connection)
        else:
            schema.upgrade_sqlite(connection)
        settings = Settings.load(environ=make_env(tmp_path, dsn))
        with reading(settings) as reader:
            new, oracle = _reads(reader)
        key = ("publish", "h1", "succeeded", "run", False)
        old[key] = (old[key][0] + 5,) + old[key][1:]
        old[("gone", "h9", "failed", "", False)] = (2, None, None)
        assert new[0] == old
        assert new[1:] == oracle[1:]
    finally:
        connection.close()
        if name is not None:
            drop_database(name)


def test_a_start_and_its_heartbeats_fire_no_tally_and_its_end_one(pg_roles, pg_dsn):
    """What schema 22 costs a run: nothing at its start or at a heartbeat
    (a running run is in no tally row: the triggers' WHEN leaves them out
    before any function is called), one call of tally_run at its end.
    Counted by the server's function statistics of a script login."""
    import time
    from cronpolicy.store import queries
    from .conftest import login_of
    statements = queries("postgresql")
    login = pg_roles("cronpolicy_script")
    dba = DBA(pg_dsn)
    dba.execute('ALTER ROLE "%s" SET track_functions = \'all\'' % login_of(login))

    def calls():
        rows = dba.execute("SELECT pg_stat_clear_snapshot(); SELECT funcname, calls"
                           " FROM pg_stat_user_functions WHERE schemaname = 'cronpolicy'"
                           " AND funcname IN ('tally_run', 'is_administrator')")
        return dict(dict.fromkeys(("tally_run", "is_administrator"), 0), **dict(rows))

    def counted(*steps):
        """tally_run's calls while ``steps`` (statement, parameters) run on a
        new connection of the login; a marker call tells its statistics arrived."""
        before = calls()
        connection = psycopg2.connect(login)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                for statement, parameters in steps:
                    cursor.execute(statements[statement], parameters)
                    found = cursor.fetchall() if cursor.description else None
                cursor.execute("SELECT cronpolicy.is_administrator(session_user),"
                               " pg_stat_force_next_flush()")
        finally:
            connection.close()
        deadline = time.monotonic() + 10
        while calls()["is_administrator"] == before["is_administrator"]:
            assert time.monotonic() < deadline, "the login's statistics never arrived"
            time.sleep(0.05)
        return calls()["tally_run"] - before["tally_run"], found

    try:
        start = dict(started_at=None, name="nightly", host="web1", pid=1, estimate_seconds=60.0,
                     estimate_source=None, skip_reason=None, policy_ignored=False,
                     decision="run", policy_id=None, window_id=None, expected_interval=None,
                     spool_id="tally-calls", schedule=None, schedule_tz=None, block=None,
                     needs=None, release=None, ttl=30)
        fired, [(run_id,)] = counted(("record_start", start))
        assert fired == 0
        beat = dict(id=run_id, safe=True, ttl=30, name="nightly", slot=None, run_key=None)
        fired, _ = counted(("heartbeat", beat), ("heartbeat", beat))
        assert fired == 0
        fired, _ = counted(("record_finish", dict(
            status="succeeded", exit_code=0, stop_reason=None, stop_decision=None,
            stop_policy_id=None, stop_window_id=None, stop_block=None, id=run_id)))
        assert fired == 1
        assert dba.execute("SELECT status, runs FROM cronpolicy.run_tally") == [("succeeded", 1)]
    finally:
        dba.execute('ALTER ROLE "%s" RESET track_functions' % login_of(login))
