"""The gate protocol, in process, against the in-memory store.

Every path of a start (run, skip, forced, locked, fleet-wide slots, the
cache and the spool when the database is away) and of a run in progress
(stop requests from the policy, safe points, SIGTERM, checkpoints,
heartbeats), with real threads and signals but no server: the database is
``store.memory``, a real IPolicyStore provider.  The same behaviour is
tested across real processes and databases in test_script.py,
test_rollout.py and test_faults.py.
"""

import datetime
import logging
import os
import signal
import threading
import time

import pytest

from cronpolicy import CronScript, exitcodes
from cronpolicy.errors import DatabaseError
from cronpolicy.locking import ScriptLock
from cronpolicy.spool import Spool
from cronpolicy.store.memory import MemoryDatabase, MemoryStore

from .conftest import wait_for

UTC = datetime.timezone.utc
BOUND = 10.0     # no wait in these tests lasts longer than this


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A host of its own: config, lock and state directories; logging restored after."""
    config = tmp_path / "cronpolicy.conf"
    config.write_text("[cronpolicy]\nheartbeat_interval = 0.2s\nlease_ttl = 2s\n"
                      "poll_interval = 0.1s\ndecision_timeout = 2s\n")
    for key in list(os.environ):
        if key.startswith("CRONPOLICY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CRONPOLICY_CONFIG", str(config))
    monkeypatch.setenv("CRONPOLICY_HOST", "web1")
    monkeypatch.setenv("CRONPOLICY_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("CRONPOLICY_STATE_DIR", str(tmp_path / "state"))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield tmp_path
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def database():
    return MemoryDatabase()


class Job(CronScript):
    """A job whose main() the test drives."""

    name = "job"

    def __init__(self, database, body=None, **kwargs):
        super().__init__(store=database.session())
        self.body = body
        self.calls = 0
        self.started = threading.Event()

    def main(self):
        self.calls += 1
        self.started.set()
        if self.body is not None:
            self.body(self)


class SafeJob(Job):
    safe = True

    def is_safe_to_interrupt(self):
        return self.safe


def run(job, env, *argv):
    """Run ``job`` in this process; the log goes to env/job.log at INFO."""
    return job.run(["--log-file", str(env / "job.log")] + list(argv), exit=False)


def log(env):
    path = env / "job.log"
    return path.read_text() if path.exists() else ""


def spool(env):
    return Spool(str(env / "state" / "spool"))


def until_stopped(job):
    """A main() that waits, bounded, until it is asked to stop."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        job.checkpoint() if getattr(job, "use_checkpoints", False) else None
        if job.stop_requested and not getattr(job, "keep_going", False):
            return
        time.sleep(0.01)
    raise AssertionError("no stop request within %ss" % BOUND)


# Starts -------------------------------------------------------------------------

def test_a_run_is_recorded_with_its_verdict(database, env):
    seen = {}
    job = Job(database, body=lambda job: seen.update(run_id=job.run_id, verdict=job.decision))
    job.expected_runtime = 90
    assert run(job, env) == exitcodes.OK
    [record] = database.runs
    assert (record["status"], record["exit_code"], record["decision"]) == ("succeeded", 0, "run")
    assert (record["host"], record["pid"], record["estimate_seconds"]) == ("web1", os.getpid(), 90)
    assert seen["run_id"] == record["id"] and seen["verdict"].run
    assert "started run #1" in log(env) and "run #1 succeeded" in log(env)


def test_a_skip_never_calls_main_and_records_the_rule(database, env):
    row = database.add_policy("j*", enabled=False, reason="mirror down")
    job = Job(database)
    assert run(job, env) == exitcodes.OK and job.calls == 0
    [record] = database.runs
    assert (record["status"], record["decision"], record["policy_id"]) == (
        "skipped", "disabled", row.id)
    assert "mirror down" in record["skip_reason"] and "skipped: disabled" in log(env)


def test_ignore_policy_runs_and_records_what_it_overrode(database, env):
    database.set_deploy(True, "release 42")
    job = Job(database)
    assert run(job, env, "--ignore-policy") == exitcodes.OK and job.calls == 1
    [record] = database.runs
    assert (record["status"], record["policy_ignored"], record["decision"]) == (
        "succeeded", True, "deploy-pending")
    assert "release 42" in record["skip_reason"] and "running despite policy" in log(env)


def test_a_held_host_lock_skips_the_second_instance(database, env):
    held = ScriptLock(str(env / "locks"), "job").acquire()
    try:
        job = Job(database)
        assert run(job, env) == exitcodes.LOCKED and job.calls == 0
    finally:
        held.release()
    [record] = database.runs
    assert (record["status"], record["decision"]) == ("skipped", "locked")
    assert "pid %d" % os.getpid() in record["skip_reason"]


def test_a_fleet_wide_limit_holds_one_slot_per_live_run(database, env):
    class Fleet(Job):
        fleet_single_instance = True
        single_instance = False      # so only the fleet-wide slot stands in the way

    inner = []
    outer = Fleet(database, body=lambda job: inner.append(run(Fleet(database), env)))
    assert run(outer, env) == exitcodes.OK
    assert inner == [exitcodes.LOCKED]
    assert [record["status"] for record in database.runs] == ["succeeded", "skipped"]
    assert database.runs[1]["decision"] == "locked" and not database.slots
    # A policy row's fleet_single_instance = false lifts the limit.
    database.add_policy("job", fleet_single_instance=False)
    inner.clear()
    assert run(Fleet(database, body=lambda job: inner.append(run(Fleet(database), env))),
               env) == exitcodes.OK
    assert inner == [exitcodes.OK]


def test_max_concurrent_lets_that_many_run_at_once(database, env):
    class Limited(Job):
        max_concurrent = 2
        single_instance = False

    codes = []

    def nest(depth):
        def body(job):
            if depth < 3:
                codes.append(run(Limited(database, body=nest(depth + 1)), env))
        return body
    assert run(Limited(database, body=nest(1)), env) == exitcodes.OK
    assert codes == [exitcodes.LOCKED, exitcodes.OK]      # innermost first
    assert [record["status"] for record in database.runs] == ["succeeded", "succeeded",
                                                              "skipped"]
    assert "all 2 fleet-wide slots are taken" in database.runs[2]["skip_reason"]


def test_dry_run_prints_the_verdict_and_records_nothing(database, env, capsys):
    job = Job(database)
    job.expected_runtime = 300
    assert run(job, env, "--dry-run") == exitcodes.OK
    assert "would run" in capsys.readouterr().out
    database.set_deploy(True)
    assert run(Job(database), env, "--dry-run") == exitcodes.WOULD_SKIP
    assert "would skip: deploy pending" in capsys.readouterr().out
    assert database.runs == [] and job.calls == 0


# Without the database ------------------------------------------------------------------

def test_no_database_and_no_cache_skips_by_default_and_spools_the_skip(database, env):
    database.outage = True
    job = Job(database)
    assert run(job, env) == exitcodes.OK and job.calls == 0
    assert "database unreachable" in log(env) and "on_database_error = skip" in log(env)
    assert len(spool(env)) == 1 and database.runs == []
    database.outage = False
    assert run(Job(database), env) == exitcodes.OK          # flushes after its own run
    assert len(spool(env)) == 0
    assert [(r["status"], r["decision"]) for r in database.runs] == [
        ("succeeded", "run"), ("skipped", "database-unreachable")]


def test_on_database_error_run_runs_unwatched_and_spools_the_whole_run(database, env):
    class Hardy(Job):
        on_database_error = "run"
    database.outage = True
    job = Hardy(database, body=lambda job: time.sleep(0.2))
    assert run(job, env) == exitcodes.OK and job.calls == 1
    [(_, entry)] = spool(env).entries()
    assert entry.record.status == "succeeded" and entry.record.decision == "run"
    assert (entry.record.finished_at - entry.record.started_at).total_seconds() >= 0.2
    database.outage = False
    assert spool(env).flush(database.session()) == 1
    assert database.runs[0]["status"] == "succeeded"


def test_a_cached_policy_decides_while_the_database_is_away(database, env):
    class Hardy(Job):
        on_database_error = "run"
    database.set_deploy(True, "r42")
    assert run(Hardy(database), env) == exitcodes.OK            # skipped; cache written
    database.outage = True
    job = Hardy(database)
    assert run(job, env) == exitcodes.OK and job.calls == 0
    assert "deciding from the policy cached" in log(env) and "r42" in log(env)


@pytest.mark.parametrize("damage", [b"[1, 2]", b'{"format": 2, "saved_at": "x"', b"\xff\xfe\x00",
                                    b'{"format": 2}', b'{"format": 2, "saved_at": 1e999}'])
def test_a_damaged_cache_is_moved_aside_with_one_warning(database, env, damage):
    class Hardy(Job):
        on_database_error = "run"
    assert run(Hardy(database), env) == exitcodes.OK                # writes the cache
    [cache] = (env / "state").glob("policy-cache-*.json")
    cache.write_bytes(damage)
    database.outage = True
    job = Hardy(database)
    assert run(job, env) == exitcodes.OK and job.calls == 1         # on_database_error = run
    assert log(env).count("is damaged") == 1 and "on_database_error = run" in log(env)
    assert not cache.exists() and cache.with_name(cache.name + ".rejected").exists()
    assert run(Hardy(database), env) == exitcodes.OK
    assert log(env).count("is damaged") == 1                       # said once


def test_a_fleet_wide_limit_cannot_be_kept_without_the_database(database, env):
    class Fleet(Job):
        fleet_single_instance = True
        on_database_error = "run"
    database.outage = True
    job = Fleet(database)
    assert run(job, env, "--ignore-policy") == exitcodes.LOCKED and job.calls == 0
    [(_, entry)] = spool(env).entries()
    assert entry.record.decision == "locked"


def test_a_start_that_cannot_be_written_runs_and_is_spooled_whole(database, env):
    class NoStart(MemoryStore):
        def record_start(self, record):
            raise DatabaseError("the connection dropped", transient=True)
    job = Job(database)
    job._store = NoStart(database)
    assert run(job, env) == exitcodes.OK and job.calls == 1
    assert "cannot record the start" in log(env) and "its record is spooled" in log(env)
    [(_, entry)] = spool(env).entries()
    assert entry.record.status == "succeeded"


def test_a_start_written_late_is_seen_by_the_fleet_and_hears_stop_requests(database, env):
    """The start's INSERT failed (a lock wait past the deadline, say): the
    watcher writes it as soon as the database answers, with the real start
    time, and the run then holds a lease and can be stopped like any other."""
    class StartFailsOnce(MemoryStore):
        failed = False

        def record_start(self, record):
            if not self.failed:
                self.failed = True
                raise DatabaseError("the database did not answer in time", transient=True)
            return super().record_start(record)

    def seen_then_stopped(job):
        wait_for(lambda: [r["status"] for r in database.runs] == ["running"], BOUND,
                 "the late start")
        database.set_deploy(True, "release 42")
        until_stopped(job)
    job = SafeJob(database, body=seen_then_stopped)
    job._store = StartFailsOnce(database)
    started = database.clock()
    assert run(job, env) == exitcodes.INTERRUPTED
    [row] = database.runs
    assert (row["status"], row["stop_decision"]) == ("interrupted", "deploy-pending")
    assert row["started_at"] <= started + datetime.timedelta(seconds=1)
    assert "recorded the start late" in log(env) and len(spool(env)) == 0


def test_a_run_begun_without_the_database_is_stopped_once_it_is_back(database, env):
    class Hardy(SafeJob):
        on_database_error = "run"

    def database_returns(job):
        database.outage = False
        wait_for(lambda: database.runs, BOUND, "the late start")
        database.set_deploy(True, "release 42")
        until_stopped(job)
    database.outage = True
    job = Hardy(database, body=database_returns)
    assert run(job, env) == exitcodes.INTERRUPTED
    [row] = database.runs
    assert row["status"] == "interrupted" and len(spool(env)) == 0


def test_an_end_that_cannot_be_written_is_spooled_and_completes_the_run(database, env):
    def lose_the_database(job):
        database.outage = True
    job = Job(database, body=lose_the_database)
    assert run(job, env) == exitcodes.OK
    assert database.runs[0]["status"] == "running"        # until its lease runs out
    [(_, entry)] = spool(env).entries()
    assert entry.run_id == database.runs[0]["id"] and entry.end.status == "succeeded"
    database.outage = False
    assert spool(env).flush(database.session()) == 1
    assert database.runs[0]["status"] == "succeeded"


# While main() runs ------------------------------------------------------------------------

def flip_when_started(job, action):
    """Do ``action`` from another thread once main() has started.  That
    thread takes no SIGTERM or SIGINT: sent to the process, they are the
    script's, for its main thread (any thread that does not block a signal
    may be the one the kernel hands it to)."""
    def flip():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        job.started.wait(BOUND)
        action()
    thread = threading.Thread(target=flip, daemon=True)
    thread.start()
    return thread


def test_deploy_pending_stops_a_safe_run_at_once(database, env):
    job = SafeJob(database, body=lambda job: time.sleep(BOUND))
    flip_when_started(job, lambda: database.set_deploy(True, "release 42"))
    started = time.monotonic()
    assert run(job, env) == exitcodes.INTERRUPTED
    assert time.monotonic() - started < BOUND / 2
    [record] = database.runs
    assert (record["status"], record["stop_decision"]) == ("interrupted", "deploy-pending")
    assert record["stop_reason"].startswith("deploy pending")


def test_a_forced_run_is_not_stopped_by_the_policy_it_ignores(database, env):
    def body(job):
        database.set_deploy(True, "release 42")
        database.add_policy("job", enabled=False)
        # The watcher hears both at once (notifications) and would interrupt
        # this safe run within 0.1s; give it five times that.
        time.sleep(0.5)
    job = SafeJob(database, body=body)
    assert run(job, env, "--ignore-policy") == exitcodes.OK
    assert database.runs[0]["status"] == "succeeded" and "stop requested" not in log(env)


def naps(seconds):
    """Sleep ``seconds`` in naps of 50 ms.  A signal that arrives as a sleep
    begins (the GIL let go, the system call not yet made) has its handler
    run only when that sleep ends: a race in CPython, which the thread of
    flip_when_started, woken by that very release of the GIL, often wins."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


def threads_taking(signum):
    """The native ids of this process's threads that do not block ``signum``
    (Linux: /proc/self/task/*/status)."""
    taking = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/status" % task) as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:             # the thread ended meanwhile
            continue
        if not int(fields["SigBlk"], 16) >> (signum - 1) & 1:
            taking.add(int(task))
    return taking


def test_sigterm_still_stops_a_forced_run(database, env):
    job = SafeJob(database, body=lambda job: naps(BOUND))
    flip_when_started(job, lambda: os.kill(os.getpid(), signal.SIGTERM))
    started = time.monotonic()
    assert run(job, env, "--ignore-policy") == exitcodes.INTERRUPTED
    assert time.monotonic() - started < BOUND / 2
    assert database.runs[0]["stop_decision"] == "signal"


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux /proc")
def test_the_watchers_thread_leaves_sigterm_and_sigint_to_the_main_thread(database, env):
    """Python runs a handler in the main thread only; a signal the kernel
    hands to another thread waits until the main thread's system call (a
    sleep, a read) returns: SIGTERM sent to a run blocked there went unheard
    for as long whenever the watcher's thread, awake at that moment, took it."""
    before = {signum: threads_taking(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    during = {}

    def body(job):
        during.update((signum, threads_taking(signum)) for signum in before)
    job = Job(database, body=body)
    assert run(job, env) == exitcodes.OK
    assert during and all(during[signum] <= before[signum] for signum in before), (
        before, during)


def test_an_unsafe_run_is_left_to_finish(database, env):
    def body(job):
        until_stopped(job)                  # the watcher has heard the request...
        time.sleep(0.3)                     # ...and has had time to act on it
    job = SafeJob(database, body=body)
    job.safe = False
    flip_when_started(job, lambda: database.set_deploy(True))
    assert run(job, env) == exitcodes.OK
    assert database.runs[0]["status"] == "succeeded"


def test_a_policy_row_can_make_a_script_without_hook_interruptible(database, env):
    database.add_policy("job", interruptible=True)
    job = Job(database, body=lambda job: time.sleep(BOUND))
    flip_when_started(job, lambda: database.set_deploy(True))
    assert run(job, env) == exitcodes.INTERRUPTED
    record = database.runs[0]
    assert (record["stop_decision"], record["stop_policy_id"]) == ("deploy-pending", 1)


def test_checkpoints_stop_a_script_without_hook(database, env):
    job = Job(database, body=until_stopped)
    job.use_checkpoints, job.keep_going = True, True
    flip_when_started(job, lambda: database.add_window(
        database.clock() - datetime.timedelta(seconds=1),
        database.clock() + datetime.timedelta(hours=1), reason="nightly"))
    assert run(job, env) == exitcodes.INTERRUPTED
    record = database.runs[0]
    assert (record["stop_decision"], record["stop_window_id"]) == ("in-window", 1)


def test_a_window_that_begins_mid_run_stops_it_when_it_begins(database, env):
    with open(env / "cronpolicy.conf", "a") as config:
        config.write("cutoff_margin = 0s\n")
    job = SafeJob(database, body=lambda job: time.sleep(BOUND))
    job.expected_runtime = 0.1
    begins = database.clock() + datetime.timedelta(seconds=0.6)
    database.add_window(begins, begins + datetime.timedelta(hours=1))
    assert run(job, env) == exitcodes.INTERRUPTED
    assert database.runs[0]["finished_at"] >= begins


def test_a_withdrawn_request_lets_the_run_go_on(database, env):
    def body(job):
        until_stopped(job)
        database.set_deploy(False)
        wait_for(lambda: not job.stop_requested, BOUND, "the withdrawal")
        job.safe = True
        time.sleep(0.3)
    job = SafeJob(database, body=body)
    job.safe = False
    flip_when_started(job, lambda: database.set_deploy(True))
    assert run(job, env) == exitcodes.OK
    assert "stop request withdrawn" in log(env)


def test_sigterm_waits_for_a_safe_point(database, env):
    def body(job):
        until_stopped(job)          # SIGTERM has arrived while unsafe
        time.sleep(0.2)
        job.safe = True             # the watcher notices and interrupts
        time.sleep(BOUND)
    job = SafeJob(database, body=body)
    job.safe = False
    flip_when_started(job, lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert run(job, env) == exitcodes.INTERRUPTED
    record = database.runs[0]
    assert (record["stop_decision"], record["stop_reason"]) == ("signal", "SIGTERM")
    assert "SIGTERM received: stopping at the next safe point" in log(env)


def test_a_second_sigterm_forces_the_stop(database, env):
    def body(job):
        until_stopped(job)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(BOUND)
    job = SafeJob(database, body=body)
    job.safe = False
    flip_when_started(job, lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert run(job, env) == exitcodes.INTERRUPTED
    assert "forced by a second SIGTERM" in database.runs[0]["stop_reason"]
    assert "forcing the interruption" in log(env)


def test_outside_the_main_thread_only_checkpoints_stop_a_run(database, env):
    job = SafeJob(database, body=until_stopped)
    job.use_checkpoints, job.keep_going = True, True
    flip_when_started(job, lambda: database.set_deploy(True))
    codes = []
    worker = threading.Thread(target=lambda: codes.append(run(job, env)))
    worker.start()
    worker.join(BOUND * 2)
    assert codes == [exitcodes.INTERRUPTED]      # and this process is still alive to say so


def test_heartbeats_carry_what_the_hook_says(database, env):
    def body(job):
        wait_for(lambda: database.runs[0]["heartbeat_at"] > database.runs[0]["started_at"],
                 BOUND, "a heartbeat")
        job.safe = True
        wait_for(lambda: database.runs[0]["safe_to_interrupt"], BOUND, "safety reported")
    job = SafeJob(database, body=body)
    job.safe = False
    assert run(job, env) == exitcodes.OK


# Found in review ------------------------------------------------------------------------------

def test_a_request_withdrawn_while_the_hook_is_asked_does_not_crash_main(database, env):
    class Racy(Job):
        def is_safe_to_interrupt(self):
            if threading.current_thread() is threading.main_thread():
                # The DBA withdraws the request while the main thread decides.
                database.set_deploy(False)
                wait_for(lambda: self._interruption.watcher.stop is None, BOUND,
                         "the withdrawal")
            return True
    job = Racy(database, body=lambda job: (database.set_deploy(True, "r1"), time.sleep(2)))
    assert run(job, env) in (exitcodes.OK, exitcodes.INTERRUPTED)
    assert database.runs[0]["status"] in ("succeeded", "interrupted")
    assert "Traceback" not in log(env)


def test_an_interrupted_raised_by_main_keeps_its_reason(database, env):
    from cronpolicy import Interrupted

    def body(job):
        raise Interrupted("upstream asked us to stop")
    assert run(Job(database, body=body), env) == exitcodes.INTERRUPTED
    record = database.runs[0]
    assert (record["stop_reason"], record["stop_decision"]) == (
        "upstream asked us to stop", None)


def test_dry_run_tells_what_the_policy_says_even_with_ignore_policy(database, env, capsys):
    database.set_deploy(True)
    assert run(Job(database), env, "--dry-run", "--ignore-policy") == exitcodes.WOULD_SKIP
    assert "would skip: deploy pending" in capsys.readouterr().out


def test_the_decision_is_there_after_a_skip_too(database, env):
    database.set_deploy(True)
    job = Job(database)
    assert run(job, env) == exitcodes.OK
    assert (job.decision.run, job.decision.code) == (False, "deploy-pending")


def test_a_limited_start_that_cannot_be_written_is_one_clear_skip(database, env):
    class NoStart(MemoryStore):
        def record_start(self, record):
            raise DatabaseError("the connection dropped", transient=True)

    class Fleet(Job):
        fleet_single_instance = True
    job = Fleet(database)
    job._store = NoStart(database)
    assert run(job, env) == exitcodes.LOCKED and job.calls == 0
    assert "running and spooling" not in log(env)
    assert "cannot hold a fleet-wide slot: the connection dropped" in log(env)


def test_a_slow_hook_is_not_asked_again_while_it_answers(database, env):
    """The watcher re-sends its signal every 0.1s; a hook still answering in
    the main thread must not be entered again underneath itself."""
    depth = {"now": 0, "most": 0}

    class Slow(Job):
        def is_safe_to_interrupt(self):
            if threading.current_thread() is threading.main_thread():
                depth["now"] += 1
                depth["most"] = max(depth["most"], depth["now"])
                time.sleep(0.5)
                depth["now"] -= 1
            return True
    job = Slow(database, body=lambda job: (database.set_deploy(True), time.sleep(BOUND)))
    assert run(job, env) == exitcodes.INTERRUPTED
    assert depth["most"] == 1


def test_a_run_whose_lease_lapsed_stops_at_its_next_safe_point(database, env):
    """Given up on by the fleet (reaped while it could not renew), the run
    is shown as running again, but stops at its next safe point."""
    def body(job):
        database.runs[0].update(status="abandoned", finished_at=database.clock(),
                                lease_expires_at=None)
        time.sleep(BOUND)
    job = SafeJob(database, body=body)
    assert run(job, env) == exitcodes.INTERRUPTED
    record = database.runs[0]
    assert (record["status"], record["stop_decision"]) == ("interrupted", "lease-lost")
    assert "the fleet no longer counts this run as running" in log(env)


def test_a_hook_is_asked_only_while_main_runs_and_a_raising_one_is_one_warning(database, env):
    """The quick start's first hook read an attribute main() sets: asked
    before main() (3 runs in 10) it raised, logged at ERROR with a traceback,
    which cron mails."""
    from cronpolicy.interruption import Interruption
    asked = []
    interruption = Interruption(lambda: asked.append(1) or True, logging.getLogger("t"))
    assert interruption.safe_now() is False and asked == []     # main() has not begun
    interruption.in_main = True
    assert interruption.safe_now() is True and asked == [1]

    hook_asked = []

    class LateState(Job):
        def is_safe_to_interrupt(self):
            hook_asked.append(1)
            return not self.publishing          # set only once main() is under way

    def body(job):
        # Several heartbeats (every 0.2 s here) ask the hook meanwhile.
        wait_for(lambda: len(hook_asked) >= 4, BOUND, "the hook asked four times")
        job.publishing = False

    assert run(LateState(database, body=body), env) == exitcodes.OK
    text = log(env)
    assert "Traceback" not in text and " ERROR " not in text, text
    warnings = [line for line in text.splitlines() if "is_safe_to_interrupt() raised" in line]
    assert len(warnings) == 1 and "AttributeError" in warnings[0], text


def test_the_start_line_gives_the_estimate_once(database, env):
    begins = database.clock() + datetime.timedelta(hours=6)
    database.add_window(begins, begins + datetime.timedelta(hours=1))
    assert run(Job(database), env) == exitcodes.OK
    [started] = [line for line in log(env).splitlines() if "started run" in line]
    # The value once (it was in the reason and again after it).
    assert started.count("30m") == 1 and "next rollout window #1" in started, started


# What a script class may get wrong ------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, 0, 1000,
                                    "SIGUSR1"])
def test_an_interrupt_signal_no_handler_can_take_is_one_line_before_anything_is_recorded(
        database, env, capsys, signum):
    """It used to be accepted: the run then went on with no way to be
    interrupted at a safe point (or, once, a traceback after its start was
    recorded)."""
    job = Job(database)
    job.interrupt_signal = signum
    assert run(job, env) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupt_signal" in err, err
    assert job.calls == 0 and database.runs == []

