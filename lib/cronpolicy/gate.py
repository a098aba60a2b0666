"""The gate protocol for one start of one script.

    take the host lock -> read the inputs -> decide -> record the skip, or
    claim a fleet-wide slot and record the start -> hold the run (watcher)
    while main() runs -> record the end -> write what earlier runs spooled

The decision is ``policy.decide``; the database is an IPolicyStore, read
through ``FallbackSource`` (cache, then "nothing known") and written through
``FallbackRecorder`` (spool), so the protocol reads the same whether the
database answers or not.  Every store operation is bounded by the store
itself.  CronScript (script.py) supplies main() and the interruption
protocol; this module knows nothing of options, logging set-up or signals.
"""

import datetime
import os
import time

from cronpolicy import config, exitcodes, policy
from cronpolicy.cache import PolicyCache
from cronpolicy.errors import CronPolicyError, DatabaseError
from cronpolicy.fallback import FallbackRecorder, FallbackSource
from cronpolicy.locking import LockHeld, ScriptLock
from cronpolicy.rows import FROM_CACHE, FROM_DATABASE, UNAVAILABLE, RunEnd, RunRecord
from cronpolicy.safety import checked_directory
from cronpolicy.shapes import shape
from cronpolicy.timeutil import format_duration, steady

#: How main() ended: a run status, the exit code, and for an interrupted
#: run the stop verdict (code, reason, policy and window ids).
Ending = shape("Ending", "status exit_code stop", defaults=(None,))


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def record_for(verdict, facts, expected_interval=None, spool_id=None):
    """The script_run row of a start (or skip) decided by ``verdict``.  Its
    key is chosen here, before anything is written, so every copy of the
    record (a late start, the spool) makes one row."""
    estimate = verdict.estimate
    return RunRecord(
        name=facts.name, host=facts.host, pid=os.getpid(),
        spool_id=spool_id or os.urandom(16).hex(),
        status="running" if verdict.run else "skipped",
        skip_reason=None if verdict.run and not verdict.forced else verdict.reason,
        estimate_seconds=estimate.seconds if estimate is not None else None,
        estimate_source=estimate.source if estimate is not None else None,
        policy_ignored=facts.ignore_policy and verdict.run, decision=verdict.code,
        policy_id=verdict.policy_id, window_id=verdict.window_id,
        expected_interval=expected_interval, schedule=facts.schedule,
        schedule_tz=facts.schedule_tz if facts.schedule else None, block=verdict.block,
        needs=",".join(verdict.needs) if verdict.needs else None, release=facts.release)


class _SpoolMaker:
    """Makes the host's Spool when a record must go there (see FallbackRecorder)."""

    def __init__(self, directory, clock):
        self.directory = directory
        self.clock = clock

    def __call__(self):
        from cronpolicy.spool import Spool
        return Spool(self.directory, self.clock)


class Gate:
    """One start of script ``facts.name`` on ``facts.host`` through ``store``."""

    def __init__(self, settings, facts, store, logger, single_instance=True,
                 expected_interval=None):
        self.settings = settings
        self.facts = facts
        self.store = store
        self.logger = logger
        self.single_instance = single_instance
        self.expected_interval = expected_interval
        #: (the database clock, steady()) as of the last read that gave one.
        self.clock_anchor = None
        self.source = FallbackSource(store, PolicyCache(settings.cache_path,
                                                        settings.cache_max_age), logger)
        self.recorder = FallbackRecorder(store, _SpoolMaker(settings.spool_dir,
                                                            self.database_time), logger)
        self.verdict = None
        self.inputs = None
        self.listening = False
        self.record = None
        self.leased_from = None
        self.run_handle = None

    def database_time(self):
        """The database clock as last read, carried forward by the time that
        passed since on a clock no step of this host's moves (an NTP step
        mid-run must not move a spooled end); this host's own clock when no
        read gave one (such records are marked spooled)."""
        if self.clock_anchor is None:
            return _utcnow()
        read_at, then = self.clock_anchor
        return read_at + datetime.timedelta(seconds=steady() - then)

    # The protocol ------------------------------------------------------------------

    def run(self, perform, interruption):
        """The whole protocol; returns the exit code.  ``perform(watcher)`` runs
        main() with ``watcher`` (a RunWatcher feeding ``interruption``) and
        returns an Ending."""
        lock = ScriptLock(self.settings.lock_dir, self.facts.name)
        self.logger.info("policy database: %s (from %s)%s", self.store.masked_dsn,
                         "the script" if self.store.backend == "memory"
                         else self.settings.dsn_source,
                         "; polling for stop requests (watch = poll)"
                         if self.settings.watch == config.WATCH_POLL
                         and self.store.backend == config.POSTGRESQL
                         else "")
        try:
            # Refuse a state directory others could write into before
            # anything is cached or spooled there (cronpolicy.safety).
            checked_directory(self.settings.state_dir, "state_dir", 0o700)
            if self.single_instance:
                try:
                    lock.acquire()
                except LockHeld as held:
                    return self._skip(policy.locked("another instance is running (%s)" % (
                        "pid %d" % held.holder_pid if held.holder_pid
                        else "lock " + held.path)), warn=True)
            verdict = self.decide(listen=True)
            if not verdict.run:
                return self._skip(verdict)
            self.record = record_for(verdict, self.facts, self.expected_interval)
            self.leased_from = time.monotonic()   # no lease of this run starts earlier
            if not self._claim_slot(verdict):
                return exitcodes.LOCKED
            return self._hold(perform, interruption)
        except CronPolicyError as error:
            self.logger.error("not running: %s", error)
            return exitcodes.GATE_ERROR
        finally:
            self.store.close()
            lock.release()

    def decide(self, listen=False):
        """Read the inputs (database, else cache, else nothing) and decide;
        ``listen``: LISTEN for policy changes from before that read."""
        if listen:
            try:
                self.store.listen()
                self.listening = True
            except DatabaseError:
                pass        # the read below says what is wrong; the watcher listens later
        inputs = self.source.load_inputs(self.facts.name, self.settings.estimate_runs)
        self.inputs = inputs
        if inputs.source != FROM_DATABASE:
            self.recorder.reachable = False
        if inputs.source != UNAVAILABLE:
            self.clock_anchor = (inputs.now, steady())
        self.verdict = policy.decide(inputs, self.facts, self.settings)
        self._log_decision(inputs, self.verdict)
        return self.verdict

    def _log_decision(self, inputs, verdict):
        if inputs.source != FROM_DATABASE:
            if inputs.source == FROM_CACHE:
                path = "deciding from the policy cached %s ago" % format_duration(inputs.age)
                shown = verdict.reason
            else:
                path = "no policy cached within %s" % format_duration(
                    self.settings.cache_max_age)
                shown = "on_database_error = %s" % self.facts.on_database_error
            if verdict.code == policy.LOCKED:
                path, shown = "skip", verdict.reason
                self.logger.warning("database unreachable (%s); %s (%s)", inputs.error, path,
                                    shown)
                return
            self.logger.warning("database unreachable (%s); %s: %s (%s)", inputs.error, path,
                                "run" if verdict.run else "skip", shown)
        elif verdict.forced:
            self.logger.warning("running despite policy (--ignore-policy): %s", verdict.reason)

    def _skip(self, verdict, warn=False, spool_id=None):
        self.verdict = verdict
        self.recorder.record_skip(record_for(verdict, self.facts, self.expected_interval,
                                             spool_id))
        if policy.catches_up(verdict):
            self._leave_ticket(verdict)
        if verdict.code == policy.LOCKED:
            if self.recorder.reachable or warn:
                self.logger.warning("skipped: %s", verdict.reason)
            return exitcodes.LOCKED
        if self.recorder.reachable:
            self.logger.info("skipped: %s", verdict.reason)
            self.recorder.flush(self.settings.decision_timeout)
        return exitcodes.OK

    def _leave_ticket(self, verdict):
        """Leave this host the ticket `cronpolicy catch-up` starts this
        script again with once the block ends (cronpolicy.catchup)."""
        from cronpolicy.catchup import write_ticket
        try:
            _, problem = write_ticket(self.settings.state_dir, self.facts, verdict.block,
                                      self.database_time().timestamp())
        except (OSError, CronPolicyError) as error:
            self.logger.warning("cannot leave the catch-up ticket of %s: %s", self.facts.name,
                                getattr(error, "strerror", None) or error)
            return
        if problem:
            self.logger.warning("%s (moved aside; a new ticket is in its place)", problem)
        self.logger.info("it will be caught up once %s ends (cronpolicy catch-up)",
                         policy.describe_block(verdict.block))

    def _claim_slot(self, verdict):
        """True when the run may go on; else the skip is recorded."""
        limit = verdict.max_concurrent
        if limit is None:
            return True
        try:
            taken = self.store.claim_slot(self.record, limit)
        except DatabaseError as error:
            if error.denied or error.refused:
                raise       # not this login's script (script_owner), or its data refused
            # Whether other hosts run it cannot be known now: do not guess.
            self.recorder.reachable = False
            self._skip(policy.locked("cannot take a fleet-wide slot: %s" % error,
                                     verdict.estimate, limit), warn=True)
            return False
        if not taken:
            self._skip(policy.locked(
                "another instance is running on some host (fleet-wide single instance)"
                if limit == 1 else "all %d fleet-wide slots are taken (max_concurrent)" % limit,
                verdict.estimate, limit), warn=True)
        return taken

    def _hold(self, perform, interruption):
        """Record the start, run ``perform`` under the watcher, record the end."""
        from cronpolicy.watcher import RunWatcher
        verdict = self.verdict
        limited = verdict.max_concurrent is not None
        try:
            self.run_handle = run = self.recorder.record_start(self.record,
                                                               may_spool=not limited)
        except DatabaseError as error:
            if error.denied or error.refused:
                raise       # the database answers, and refuses this run: it must not go on
            # A limited run must be seen to hold its slot: no unrecorded run.
            # Same key: should the start have landed after all, the skip finds
            # its row and changes nothing; never renewed, that row is given up
            # on (abandoned) within its lease, as a run that died would be.
            self._skip(policy.locked("cannot record the start, so cannot hold a fleet-wide "
                                     "slot: %s" % error, verdict.estimate, verdict.max_concurrent),
                       warn=True, spool_id=self.record.spool_id)
            return exitcodes.LOCKED
        if run.id is not None:
            self.logger.info("started run #%s: %s (estimate %s, %s)", run.id, verdict.reason,
                             format_duration(verdict.estimate.seconds), verdict.estimate.source)
            again = self._decided_again()
            if again is not None and not again.run:
                return self._withdrawn(run, again)
        watcher = RunWatcher(self.store, run, self.facts.name,
                             self.facts.host, self.settings, interruption, self.logger,
                             ignore_policy=self.facts.ignore_policy,
                             leased_from=self.leased_from,
                             inputs=self.inputs if self.listening
                             and self.inputs.source == FROM_DATABASE else None,
                             needs=self.facts.needs)
        interruption.watcher = watcher
        interruption.always_safe = verdict.interruptible
        self.store.release()        # with watch = poll, hold no connection during main()
        started = time.monotonic()
        ending = perform(watcher)
        if watcher.run.id is not None and run.id is None:
            # The watcher wrote the start late: the database answers again.
            self.run_handle = run = watcher.run
            self.recorder.reachable = True
        return self._finish(run, ending, format_duration(time.monotonic() - started))

    def _decided_again(self):
        """The decision taken again when the policy moved between the read
        it was taken with and the start's record (a rollout or a window
        begun, the script disabled); else None.  Read once the start is
        written: a `deploy wait` that looked before the start was written
        (and found the fleet quiet) began after a rollout that this read
        sees, and one that looks after sees the run (test_races).  One
        small read (the policy's version) when nothing moved."""
        inputs = self.inputs
        if (inputs is None or inputs.source != FROM_DATABASE or inputs.policy_version is None
                or self.facts.ignore_policy):
            return None
        try:
            if self.store.policy_version() == inputs.policy_version:
                return None
            fresh = self.store.load_inputs(self.facts.name, self.settings.estimate_runs)
        except DatabaseError:
            return None         # the watcher reads the policy again as soon as it can
        self.inputs = fresh
        return policy.decide(fresh, self.facts, self.settings)

    def _withdrawn(self, run, verdict):
        """A start the policy stopped as it was recorded: main() never runs.
        Recorded, and exits, as a run the rollout (or window, or disabling)
        interrupted at once; caught up as the skip it would have been a
        moment earlier would have been."""
        self.logger.info("not running after all: %s (it came into force as the start was "
                         "recorded)", verdict.reason)
        self.verdict = verdict
        if policy.catches_up(verdict):
            self._leave_ticket(verdict)
        return self._finish(run, Ending("interrupted", exitcodes.INTERRUPTED, verdict), "0s")

    def _finish(self, run, ending, elapsed):
        stop = ending.stop
        end = RunEnd(status=ending.status, exit_code=ending.exit_code,
                     stop_reason=stop.reason if stop is not None else None,
                     stop_decision=stop.code if stop is not None else None,
                     stop_policy_id=stop.policy_id if stop is not None else None,
                     stop_window_id=stop.window_id if stop is not None else None,
                     stop_block=stop.block if stop is not None else None)
        recorded = self.recorder.record_finish(run, end)
        if recorded is None:
            # Refused for its data, or the spool could not take it: the
            # recorder said so, and where the record is (or that it is lost).
            return ending.exit_code
        if not recorded:
            self.logger.warning("%s %s in %s (exit code %d); its record is spooled",
                                "run #%s" % run.id if run.id else "offline run",
                                ending.status, elapsed, ending.exit_code)
            return ending.exit_code
        log = self.logger.info if ending.status in ("succeeded", "interrupted") \
            else self.logger.error
        log("run #%s %s in %s (exit code %d)", run.id, ending.status, elapsed, ending.exit_code)
        self.recorder.flush(self.settings.decision_timeout)
        return ending.exit_code

    # Looking without doing ---------------------------------------------------------

    def dry_run(self, out):
        """Print what a start now would do; record nothing.  Exit 0, 5 or 4."""
        name, host = self.facts.name, self.facts.host
        try:
            if self.single_instance:
                lock = ScriptLock(self.settings.lock_dir, name)
                try:
                    lock.acquire()
                    lock.release()
                except LockHeld as held:
                    return _say(out, "%s on %s: would skip: another instance is running "
                                "(%s)" % (name, host, held), exitcodes.WOULD_SKIP, name)
            # What the policy says, --ignore-policy or not.
            verdict = policy.decide(self.store.load_inputs(name, self.settings.estimate_runs),
                                    self.facts._replace(ignore_policy=False), self.settings)
        except CronPolicyError as error:
            self.logger.error("cannot decide: %s", error)
            return exitcodes.GATE_ERROR
        finally:
            self.store.close()
        return _say(out, "%s on %s: would %s: %s\nestimated runtime: %s (%s)" % (
            name, host, "run" if verdict.run else "skip", verdict.reason,
            format_duration(verdict.estimate.seconds), verdict.estimate.source),
            exitcodes.OK if verdict.run else exitcodes.WOULD_SKIP, name)


def _say(out, text, code, name):
    """--dry-run's answer written (its exit status ``code``), or what not
    writing it makes of that status (written.say: never a traceback)."""
    from cronpolicy.written import say
    return say(out, text + "\n", code, name)
