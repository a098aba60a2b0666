"""CronScript: the base class that puts a cron job behind the policy gate.

What you define
---------------
``main(self)``
    The job.  Called only when the policy says run.  Return normally for
    success; raise (or ``sys.exit(n)`` with n != 0) for failure.
``name``
    Class attribute: the script's name in policies, windows and history.
    Defaults to the script file's base name without ``.py``.
``expected_runtime``
    Optional class attribute, seconds.  Used for rollout cut-offs until the
    script has enough succeeded runs in history (a policy row's
    ``expected_runtime`` takes precedence over it).
``is_safe_to_interrupt(self)``
    Optional hook: return True when stopping the job right now would leave
    no mess.  Defining it makes the script provide ``IInterruptible``.  It
    is called from the watcher thread (to report, and to notice the moment
    a stopping script becomes safe) and, decisively, from the main thread
    at the moment of interruption; keep it a cheap read of your own state.
    Without it (and without ``checkpoint()`` calls) a run is never
    interrupted: it runs to completion and rollouts wait for it, unless its
    policy row says ``interruptible``.
``add_my_options(self)``
    Optional hook: add options with ``self.parser.add_argument(...)``.
``check_options(self)``
    Optional hook: check ``self.options`` before the gate; raise
    ``cronpolicy.errors.UsageError`` to exit 2 with that message.
``single_instance``
    Class attribute, default True: at most one instance per host, enforced
    with a lock file.  Set False for jobs that may overlap.
``fleet_single_instance``
    Class attribute, default False: at most one live run across all hosts
    (a PostgreSQL advisory lock; a policy row's ``fleet_single_instance``
    overrides it).
``interrupt_signal``
    The signal the watcher thread sends the main thread (default SIGUSR2);
    change it if your job uses SIGUSR2 itself.

What you call
-------------
``YourScript().run()``
    Parses ``sys.argv``, sets up logging, takes the per-host lock, consults
    the policy, records the start, calls ``main()``, records the outcome and
    exits with one of the codes in ``cronpolicy.exitcodes`` (README.txt).
    ``run(argv=[...], exit=False)`` returns the code instead of exiting.
``self.checkpoint()``
    An explicit safe point inside ``main()``: raises ``cronpolicy.Interrupted``
    if a stop has been requested, else returns at once.

What you get (inside ``main``)
------------------------------
``self.logger``     a logging.Logger named after the script
``self.options``    the parsed argparse namespace (standard and your options)
``self.settings``   the resolved ``cronpolicy.config.Settings``
``self.name``, ``self.host``
``self.run_id``     this run's id in ``cronpolicy.script_run``
``self.decision``   the ``policy.Decision`` (with ``.estimate``) that let it run
``self.stop_requested``, ``self.stop_reason``
                    whether (and why) a rollout, a policy change or SIGTERM
                    has asked this run to stop

Stop requests
-------------
While ``main()`` runs, a watcher thread keeps the run's row alive
(heartbeat, current safety) and hears of stop requests within a second:
deploy pending set, the script's policy disabled, a covering rollout window
beginning (on PostgreSQL through LISTEN/NOTIFY, on SQLite by polling), or
SIGTERM.  The run then stops only at a safe point: when
``is_safe_to_interrupt()`` says True (asked again in the main thread, right
where ``main()`` would be interrupted) or at a ``checkpoint()``.  Stopping
raises ``cronpolicy.Interrupted`` inside ``main()``, so ``finally`` blocks
run; the run is recorded as ``interrupted`` with the reason and exits 6.  A
second SIGTERM (or SIGINT) forces the interruption even when not safe, and
says so in the log.  A policy stop request is withdrawn if the policy
changes back before the run reached a safe point; a SIGTERM is not.

Options every script has: ``-v``/``-q`` (repeatable), ``--log-file``,
``--dsn``, ``--ignore-policy``, ``--dry-run``.
"""

import argparse
import datetime
import logging
import os
import signal
import sys
import threading
import time

from zope.interface import classImplements, implementer

from cronpolicy import exitcodes
from cronpolicy.config import Settings
from cronpolicy.errors import (
    CronPolicyError, DatabaseError, Interrupted, SchemaError, UsageError)
from cronpolicy.interfaces import ICronScript, IInterruptible
from cronpolicy.locking import LockHeld, ScriptLock
from cronpolicy.policy import decide_from_inputs, run_options
from cronpolicy.store import DeadlineExceeded, open_store, within
from cronpolicy.timeutil import format_duration


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


@implementer(ICronScript)
class CronScript:
    """Base class for cron scripts gated by cronpolicy (see the module docstring)."""

    name = None
    expected_runtime = None
    single_instance = True
    fleet_single_instance = False
    #: Seconds within which the script should succeed, for `cronpolicy overdue`
    #: (a policy row's expected_interval takes precedence).
    expected_interval = None
    #: "run" or "skip": what to do when the database cannot be reached and no
    #: cached policy is fresh enough.  None: the config file decides (default skip).
    on_database_error = None
    description = None
    #: Sent by the watcher thread to the main thread to interrupt main().
    interrupt_signal = signal.SIGUSR2

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if callable(getattr(cls, "is_safe_to_interrupt", None)):
            classImplements(cls, IInterruptible)

    def __init__(self, name=None):
        self.name = name or self.name or _name_from_argv()
        self.host = None
        self.logger = logging.getLogger(self.name)
        self.options = None
        self.settings = None
        self.run_id = None
        self.decision = None
        self._watcher = None
        self._extra_lock = None
        self._store_usable = True
        self._clock_offset = datetime.timedelta(0)
        self._in_main = False
        self._handlers_installed = False
        self._interrupting = False
        self._signal_reason = None
        self._policy_interruptible = False
        self.parser = argparse.ArgumentParser(
            prog=self.name,
            description=self.description or (type(self).__doc__ or "").strip() or None)
        self._add_standard_options()
        self.add_my_options()

    # Hooks for subclasses -------------------------------------------------

    def main(self):
        raise NotImplementedError("%s must define main()" % type(self).__name__)

    def add_my_options(self):
        """Override to add script-specific options to ``self.parser``."""

    def check_options(self):
        """Override to check ``self.options`` before the gate; raise
        cronpolicy.errors.UsageError (exit 2) for bad values."""

    # Stop requests -----------------------------------------------------------

    @property
    def stop_reason(self):
        """Why this run has been asked to stop, or None."""
        if self._signal_reason is not None:
            return self._signal_reason
        return self._watcher.policy_reason if self._watcher is not None else None

    @property
    def stop_requested(self):
        """True once a rollout, a policy change or SIGTERM asks this run to stop."""
        return self.stop_reason is not None

    def checkpoint(self):
        """An explicit safe point: raise Interrupted here if a stop is requested."""
        if self._in_main and not self._interrupting and self.stop_requested:
            self._interrupting = True
            raise Interrupted(self.stop_reason)

    def _safe_now(self):
        if self._policy_interruptible:
            return True
        if not IInterruptible.providedBy(self):
            return False
        try:
            return bool(self.is_safe_to_interrupt())
        except Exception:
            self.logger.exception("is_safe_to_interrupt() raised; counting the run as not safe")
            return False

    def _on_interrupt_signal(self, signum, frame):
        # Runs in the main thread: the safety answer that counts is this one,
        # taken at the very moment main() would be interrupted.
        if self._in_main and not self._interrupting and self.stop_requested and self._safe_now():
            self._interrupting = True
            raise Interrupted(self.stop_reason)

    def _on_termination_signal(self, signum, frame):
        name = signal.Signals(signum).name
        if not self._in_main or self._interrupting:
            return
        if self._signal_reason is not None:
            self._interrupting = True
            self.logger.warning("second %s: forcing the interruption although the run is "
                                "not safe to interrupt", name)
            raise Interrupted("forced by a second %s (first: %s)" % (name, self._signal_reason),
                              forced=True)
        self._signal_reason = name
        if self._safe_now():
            self._interrupting = True
            raise Interrupted(name)
        self.logger.warning("%s received: stopping at the next safe point "
                            "(send it again to force)", name)
        if self._watcher is not None:
            self._watcher.wake()

    def _request_interrupt(self):
        # Without our handler (run() outside the main thread) the signal would
        # kill the process: there, only checkpoint() can stop main().
        if self._handlers_installed:
            signal.pthread_kill(threading.main_thread().ident, self.interrupt_signal)

    # The gate ---------------------------------------------------------------

    def run(self, argv=None, exit=True):
        try:
            code = self._run(sys.argv[1:] if argv is None else list(argv))
        except SystemExit as error:  # argparse: --help, bad usage
            code = error.code if isinstance(error.code, int) else exitcodes.USAGE
        if exit:
            sys.exit(code)
        return code

    def _add_standard_options(self):
        group = self.parser.add_argument_group("cronpolicy options")
        group.add_argument("-v", "--verbose", action="count", default=0,
                           help="more logging (repeatable)")
        group.add_argument("-q", "--quiet", action="count", default=0,
                           help="less logging (repeatable)")
        group.add_argument("--log-file", metavar="PATH",
                           help="append the log here instead of standard error; "
                                "the default level there is INFO")
        group.add_argument("--dsn", help="policy database (overrides CRONPOLICY_DSN "
                                         "and the config file)")
        group.add_argument("--ignore-policy", action="store_true",
                           help="run even if the policy says skip (recorded as such)")
        group.add_argument("--dry-run", action="store_true",
                           help="print the decision and exit; run and record nothing")

    def _setup_logging(self):
        # INFO by default only into a log file: cron mails whatever reaches
        # standard error, and a routine skip should mail nobody.
        base = logging.INFO if self.options.log_file else logging.WARNING
        level = base - 10 * self.options.verbose + 10 * self.options.quiet
        level = min(max(level, logging.DEBUG), logging.CRITICAL)
        if self.options.log_file:
            handler = logging.FileHandler(self.options.log_file, encoding="utf-8")
        else:
            handler = logging.StreamHandler(sys.stderr)
        formatter = logging.Formatter(LOG_FORMAT, "%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(level)

    def _run(self, argv):
        self.options = self.parser.parse_args(argv)
        try:
            self.check_options()
        except UsageError as error:
            print("%s: error: %s" % (self.parser.prog, error), file=sys.stderr)
            return exitcodes.USAGE
        try:
            self._setup_logging()
        except OSError as error:
            print("%s: cannot open log file %s: %s" % (
                self.name, self.options.log_file, error.strerror), file=sys.stderr)
            return exitcodes.GATE_ERROR
        try:
            self.settings = Settings.load(dsn=self.options.dsn)
        except CronPolicyError as error:
            self.logger.error("%s", error)
            return error.exit_code if error.exit_code != exitcodes.USAGE else exitcodes.GATE_ERROR
        self.host = self.settings.host
        if self.options.dry_run:
            return self._dry_run()

        lock = ScriptLock(self.settings.lock_dir, self.name) if self.single_instance else None
        store = open_store(self.settings, application_name="cronpolicy:" + self.name)
        self._store_usable = True
        try:
            if lock is not None:
                try:
                    lock.acquire()
                except LockHeld as held:
                    return self._skip_locked(store, held)
                except CronPolicyError as error:
                    self.logger.error("not running: %s", error)
                    return exitcodes.GATE_ERROR
            return self._gate(store, lock)
        finally:
            if self._store_usable:
                store.close()
            # else a thread that overran its deadline still owns the
            # connection; it goes with the process.
            if lock is not None:
                lock.release()
            if self._extra_lock is not None:
                self._extra_lock.release()

    def _gate(self, store, lock):
        """Decide (within decision_timeout, retrying transient errors), record, run."""
        settings = self.settings
        deadline = time.monotonic() + settings.decision_timeout
        try:
            inputs = within(deadline, lambda: self._load_inputs(store, deadline),
                            "read the policy")
        except DatabaseError as error:
            if isinstance(error, SchemaError) or not error.transient:
                # Bad credentials, an unknown database, a missing privilege:
                # configuration to fix, not an outage to ride out.
                self.logger.error("not running: %s", error)
                return exitcodes.GATE_ERROR
            self._store_usable = not isinstance(error, DeadlineExceeded)
            return self._gate_offline(error)
        except CronPolicyError as error:  # a DSN that cannot even be parsed
            self.logger.error("not running: %s", error)
            return exitcodes.GATE_ERROR
        self._clock_offset = inputs.now - _utcnow()
        self._after_successful_read(store, inputs, deadline)
        self.decision = self._decide(inputs)
        if not self.decision.run and not self.options.ignore_policy:
            self._record_skip(store, self.decision.estimate, self.decision.reason, self.decision)
            self.logger.info("skipped: %s", self.decision.reason)
            self._flush_spool(store)
            return exitcodes.OK
        self._policy_interruptible, fleet_wide = run_options(
            inputs.policies, self.name, self.host, self.fleet_single_instance)
        forced = not self.decision.run
        try:
            if fleet_wide:
                held = self._take_fleet_lock(store, lock)
                if held is not None:
                    return held
            if forced:
                self.logger.warning("running despite policy (--ignore-policy): %s",
                                    self.decision.reason)
            self.run_id = within(
                time.monotonic() + settings.decision_timeout,
                lambda: store.record_start(
                    self.name, self.host, os.getpid(), self.decision.estimate,
                    skip_reason=self.decision.reason if forced else None,
                    policy_ignored=self.options.ignore_policy, decision=self.decision,
                    expected_interval=self.expected_interval),
                "record the start")
        except DatabaseError as error:
            self._store_usable = False
            if fleet_wide:
                # Whether another host runs it cannot be known now: do not guess.
                reason = "cannot take the fleet-wide lock: %s" % error
                self._record_skip(None, self.decision.estimate, reason, "locked")
                self.logger.warning("skipped: %s", reason)
                return exitcodes.LOCKED
            # Decided on fresh inputs, but the database went away since: run
            # without a row (and without a watcher); the record is spooled.
            self.logger.warning("cannot record the start (%s); running and spooling the "
                                "record", error)
            return self._call_main(None)
        self.logger.info("started run #%s: %s (estimate %s, %s)", self.run_id,
                         self.decision.reason, format_duration(self.decision.estimate.seconds),
                         self.decision.estimate.source)
        return self._call_main(store)

    def _load_inputs(self, store, deadline):
        """load_inputs, retrying transient errors with jittered backoff until ``deadline``."""
        delay = 0.05
        while True:
            try:
                return store.load_inputs(self.name, self.settings.estimate_runs)
            except SchemaError:
                raise
            except DatabaseError as error:
                store.close()
                import random  # only when retrying: keep it off the normal path
                pause = random.uniform(delay / 2, delay)
                if not error.transient or time.monotonic() + pause >= deadline:
                    raise
                self.logger.debug("retrying in %.2fs: %s", pause, error)
                time.sleep(pause)
                delay = min(delay * 2, 1.0)

    def _after_successful_read(self, store, inputs, deadline):
        """Refresh this host's policy cache (best effort)."""
        from cronpolicy import cache
        try:
            cache.save(self.settings.cache_path, inputs)
        except OSError as error:
            self.logger.warning("cannot write the policy cache %s: %s",
                                self.settings.cache_path, error.strerror)

    def _flush_spool(self, store):
        """After a run that reached the database: write what earlier runs on this
        host spooled (best effort, bounded), off the start-up path."""
        spool = self._spool()
        if store is None or not self._store_usable or not len(spool):
            return
        try:
            written = within(time.monotonic() + self.settings.decision_timeout,
                             lambda: spool.flush(store), "write spooled runs")
            self.logger.info("wrote %d spooled run record%s", written,
                             "" if written == 1 else "s")
        except DatabaseError as error:
            self._store_usable = not isinstance(error, DeadlineExceeded)
            self.logger.info("spooled run records stay spooled for now: %s", error)
        except OSError as error:
            self.logger.warning("cannot tidy the spool %s: %s", spool.directory, error.strerror)

    def _spool(self):
        from cronpolicy.spool import Spool
        return Spool(self.settings.spool_dir)

    def _gate_offline(self, error):
        """The database is out of reach: decide from the cached policy if it is
        fresh enough, else by on_database_error; run (or skip) and spool."""
        from cronpolicy import cache
        from cronpolicy.policy import Decision, Estimate
        settings = self.settings
        cached = cache.load(settings.cache_path, settings.cache_max_age)
        if cached is not None:
            inputs, age = cached
            self._clock_offset = inputs.now - _utcnow()
            self.decision = self._decide(inputs)
            self._policy_interruptible = run_options(
                inputs.policies, self.name, self.host, self.fleet_single_instance)[0]
            path = "deciding from the policy cached %s ago" % format_duration(age)
        else:
            mode = settings.on_database_error_for(self.name, self.on_database_error)
            estimate = Estimate(float(self.expected_runtime or settings.default_runtime),
                                "no history (database unreachable)")
            self.decision = Decision(
                mode == "run", "run" if mode == "run" else "database-unreachable",
                "database unreachable and no policy cached within %s (on_database_error = %s)"
                % (format_duration(settings.cache_max_age), mode), estimate, None, None)
            path = "no policy cached within %s" % format_duration(settings.cache_max_age)
        fleet_wide = run_options(cached[0].policies if cached else [], self.name, self.host,
                                 self.fleet_single_instance)[1]
        if fleet_wide and (self.decision.run or self.options.ignore_policy):
            # At most one live run fleet-wide cannot be checked without the database.
            from cronpolicy.policy import Decision as _Decision
            self.decision = _Decision(False, "locked", "fleet-wide single instance cannot be "
                                      "checked while the database is unreachable",
                                      self.decision.estimate, None, None)
            self._record_skip(None, self.decision.estimate, self.decision.reason, "locked")
            self.logger.warning("database unreachable (%s); skip (%s)", error,
                                self.decision.reason)
            return exitcodes.LOCKED
        verdict = "run" if self.decision.run or self.options.ignore_policy else "skip"
        shown = (self.decision.reason if cached is not None
                 else "on_database_error = %s" % mode)
        self.logger.warning("database unreachable (%s); %s: %s (%s)", error, path, verdict,
                            shown)
        if verdict == "skip":
            self._record_skip(None, self.decision.estimate, self.decision.reason, self.decision)
            return exitcodes.OK
        return self._call_main(None)

    def _record_skip(self, store, estimate, reason, decision):
        """Record a skip in the database, or in the spool when it cannot be."""
        if store is not None and self._store_usable:
            try:
                within(time.monotonic() + self.settings.decision_timeout,
                       lambda: store.record_skip(self.name, self.host, os.getpid(), estimate,
                                                 reason, decision, self.expected_interval),
                       "record the skip")
                return
            except DatabaseError as error:
                self._store_usable = not isinstance(error, DeadlineExceeded)
                self.logger.warning("cannot record the skip (%s); spooling it", error)
        now = self._database_time()
        self._spool_safely(lambda spool: spool.add_run(
            self.name, self.host, os.getpid(), now, now, "skipped", skip_reason=reason,
            estimate=estimate, decision=decision, expected_interval=self.expected_interval))

    def _spool_safely(self, write):
        try:
            write(self._spool())
        except OSError as error:
            self.logger.error("cannot spool the run record in %s: %s; it is lost",
                              self.settings.spool_dir, error.strerror)

    def _database_time(self):
        """This host's clock moved onto the database's, as last measured."""
        return _utcnow() + self._clock_offset

    def _take_fleet_lock(self, store, host_lock):
        """None when this run may go on, else the exit code after recording the skip."""
        if store.backend == "sqlite" and host_lock is None:
            # One machine is the whole fleet there: the host lock is the fleet lock.
            host_lock = ScriptLock(self.settings.lock_dir, self.name)
            try:
                host_lock.acquire()
                self._extra_lock = host_lock
            except LockHeld as held:
                return self._skip_locked(store, held)
            except CronPolicyError as error:
                self.logger.error("not running: %s", error)
                return exitcodes.GATE_ERROR
        if not within(time.monotonic() + self.settings.decision_timeout,
                      lambda: store.try_fleet_lock(self.name), "take the fleet-wide lock"):
            reason = "another instance is running on some host (fleet-wide single instance)"
            self._record_skip(store, None, reason, "locked")
            self.logger.warning("skipped: %s", reason)
            return exitcodes.LOCKED
        return None

    def _decide(self, inputs):
        settings = self.settings
        return decide_from_inputs(
            inputs, self.name, self.host, script_runtime=self.expected_runtime,
            q=settings.estimate_quantile, min_runs=settings.estimate_min_runs,
            default_runtime=settings.default_runtime, margin=settings.cutoff_margin)

    def _call_main(self, store):
        """Run main() under the watcher; record the outcome (``store`` None: spool it)."""
        from cronpolicy.watcher import RunWatcher
        started = time.monotonic()
        started_at = self._database_time()
        status, code, stop_reason = "succeeded", exitcodes.OK, None
        self._watcher = RunWatcher(
            store, self.run_id, self.name, self.host, self.settings,
            report_safe=self._safe_now, stop_pending=lambda: self._signal_reason is not None,
            request_interrupt=self._request_interrupt, logger=self.logger)
        previous_handlers = self._install_signal_handlers()
        self._handlers_installed = previous_handlers is not None
        self._watcher.start()
        try:
            try:
                self._in_main = True
                self.main()
            finally:
                self._in_main = False
        except Interrupted as interruption:
            status, code, stop_reason = "interrupted", exitcodes.INTERRUPTED, interruption.reason
            log = self.logger.warning if interruption.forced else self.logger.info
            log("interrupted%s: %s", "" if interruption.forced else " at a safe point",
                interruption.reason)
        except SystemExit as error:
            if error.code is None or error.code == 0:
                pass
            elif isinstance(error.code, int):
                status, code = "failed", error.code
            else:
                self.logger.error("%s", error.code)
                status, code = "failed", exitcodes.FAILED
        except KeyboardInterrupt:
            self.logger.error("interrupted by SIGINT")
            status, code = "failed", 128 + 2
        except Exception:
            self.logger.exception("main() failed")
            status, code = "failed", exitcodes.FAILED
        finally:
            self._watcher.stop()
            self._handlers_installed = False
            self._restore_signal_handlers(previous_handlers)
        elapsed = format_duration(time.monotonic() - started)
        if not self._record_finish(store, started_at, status, code, stop_reason):
            self.logger.warning("%s %s in %s (exit code %d); its record is spooled",
                                "run #%s" % self.run_id if self.run_id else "offline run",
                                status, elapsed, code)
            return code
        log = {"succeeded": self.logger.info, "interrupted": self.logger.info}.get(
            status, self.logger.error)
        log("run #%s %s in %s (exit code %d)", self.run_id, status, elapsed, code)
        self._flush_spool(store)
        return code

    def _record_finish(self, store, started_at, status, code, stop_reason):
        """Write the outcome; False when it had to be spooled instead."""
        finished_at = self._database_time()
        if store is not None and self.run_id is not None and self._store_usable:
            try:
                within(time.monotonic() + self.settings.decision_timeout,
                       lambda: store.record_finish(self.run_id, status, code, stop_reason),
                       "record the end of the run")
                return True
            except DatabaseError as error:
                self._store_usable = not isinstance(error, DeadlineExceeded)
                self.logger.warning("cannot record the end of run #%s (%s); spooling it",
                                    self.run_id, error)
        if self.run_id is not None:
            self._spool_safely(lambda spool: spool.add_finish(
                self.run_id, status, code, finished_at, stop_reason))
        else:
            self._spool_safely(lambda spool: spool.add_run(
                self.name, self.host, os.getpid(), started_at, finished_at, status,
                exit_code=code, estimate=self.decision.estimate if self.decision else None,
                policy_ignored=self.options.ignore_policy, stop_reason=stop_reason,
                skip_reason=None if self.decision is None or self.decision.run
                else self.decision.reason, decision=self.decision,
                expected_interval=self.expected_interval))
        return False

    def _install_signal_handlers(self):
        """SIGTERM/SIGINT defer to a safe point; the interrupt signal checks for one.
        Only the main thread can handle signals; elsewhere checkpoint() still works."""
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = {}
        for signum, handler in ((signal.SIGTERM, self._on_termination_signal),
                                (signal.SIGINT, self._on_termination_signal),
                                (self.interrupt_signal, self._on_interrupt_signal)):
            previous[signum] = signal.signal(signum, handler)
        return previous

    def _restore_signal_handlers(self, previous):
        for signum, handler in (previous or {}).items():
            signal.signal(signum, handler)

    def _skip_locked(self, store, held):
        reason = "another instance is running (%s)" % (
            "pid %d" % held.holder_pid if held.holder_pid else "lock " + held.path)
        self._record_skip(store, None, reason, "locked")
        self.logger.warning("skipped: %s", reason)
        return exitcodes.LOCKED

    def _dry_run(self):
        if self.single_instance:
            lock = ScriptLock(self.settings.lock_dir, self.name)
            try:
                lock.acquire()
                lock.release()
            except LockHeld as held:
                print("%s on %s: would skip: another instance is running (%s)"
                      % (self.name, self.host, held))
                return exitcodes.WOULD_SKIP
            except CronPolicyError as error:
                self.logger.error("cannot decide: %s", error)
                return exitcodes.GATE_ERROR
        store = open_store(self.settings, application_name="cronpolicy:" + self.name)
        try:
            decision = self._decide(within(
                time.monotonic() + self.settings.decision_timeout,
                lambda: store.load_inputs(self.name, self.settings.estimate_runs),
                "read the policy"))
        except CronPolicyError as error:
            self.logger.error("cannot decide: %s", error)
            return exitcodes.GATE_ERROR
        finally:
            store.close()
        print("%s on %s: would %s: %s" % (self.name, self.host,
                                           "run" if decision.run else "skip", decision.reason))
        print("estimated runtime: %s (%s)" % (format_duration(decision.estimate.seconds),
                                              decision.estimate.source))
        return exitcodes.OK if decision.run else exitcodes.WOULD_SKIP


def _name_from_argv():
    base = os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "")
    if base.endswith(".py"):
        base = base[:-3]
    if not base or base.startswith("-"):
        raise ValueError("cannot derive a script name from sys.argv[0]; set the name attribute")
    return base
