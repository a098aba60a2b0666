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
``max_concurrent``
    Class attribute, default None: at most this many live runs across all
    hosts (each run holds one of the script's slots in the database; a
    policy row's ``max_concurrent`` or ``fleet_single_instance`` overrides
    it).  Starts beyond it are recorded as skipped (locked) and exit 3.
``fleet_single_instance``
    Class attribute, default False: True is the same as ``max_concurrent = 1``.
``needs``
    Class attribute, default (): the services the script depends on, such
    as ("xmlrpc", "librarian").  A rollout of one of them (`deploy begin
    --service xmlrpc`, a window of that service) skips and stops it; a
    script that needs none follows only global rollouts.  A policy row's
    ``needs`` wins.  Recorded with each run.
``pin_release``
    Class attribute, default True: at start, resolve the symbolic links in
    the script's own path and in sys.path (/srv/app/current to
    /srv/app/releases/4521), so that imports made later, after a deploy
    switched the link, still come from the release the run started in;
    the run records that release.  (cronpolicy.release)
``schedule``, ``schedule_tz``
    Class attributes, default None: when cron runs the script (a cron
    expression: five fields or @hourly, @daily...; in time zone
    ``schedule_tz``, an IANA name, default UTC).  Recorded with each run,
    for `deploy plan`, `deploy slot` and `overdue`; a policy row's schedule
    and the host's registered crontab win over it.  One that is not a
    schedule is refused at start (exit 2).
``interrupt_signal``
    The signal the watcher thread sends the main thread (default SIGUSR2);
    change it if your job uses SIGUSR2 itself.

What you call
-------------
``YourScript().run()``
    Parses ``sys.argv``, sets up logging, takes the per-host lock, consults
    the policy, records the start, calls ``main()``, records the outcome and
    exits with one of the codes in ``cronpolicy.exitcodes`` (docs/script-authors.txt).
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
``self.decision``   the ``policy.Verdict`` (with ``.estimate``) that let it run
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
``--syslog``, ``--dsn``, ``--ignore-policy``, ``--dry-run``.
"""

import os
import sys

from cronpolicy import exitcodes
from cronpolicy.interruption import SIGUSR2
from cronpolicy.config import Settings
from cronpolicy.errors import CronPolicyError, Interrupted, UsageError
from cronpolicy.gate import Ending, Gate
from cronpolicy.interruption import Interruption, interrupt_signal_problem
from cronpolicy.log import FORMAT as LOG_FORMAT, DeferredLogger, LogSetup  # noqa: F401
from cronpolicy.log import hold_standard_descriptors, put_devnull_under, settle_stderr
from cronpolicy.matching import name_problem
from cronpolicy.options import parse_standard_options, standard_options_parser
from cronpolicy.policy import ScriptFacts, stopped


class CronScript:
    """Base class for cron scripts gated by cronpolicy (see the module docstring)."""

    name = None
    expected_runtime = None
    single_instance = True
    max_concurrent = None
    fleet_single_instance = False
    #: Seconds within which the script should succeed, for `cronpolicy overdue`
    #: (a policy row's expected_interval takes precedence).
    expected_interval = None
    #: The services it depends on (names of letters, digits, '_', '.', '-').
    needs = ()
    #: Resolve the links in its path and sys.path at start (cronpolicy.release).
    pin_release = True
    #: When cron runs it (a cron expression) and in which time zone (None: UTC).
    schedule = None
    schedule_tz = None
    #: "run" or "skip": what to do when the database cannot be reached and no
    #: cached policy is fresh enough.  None: the config file decides (default skip).
    on_database_error = None
    description = None
    #: Sent by the watcher thread to the main thread to interrupt main().
    interrupt_signal = SIGUSR2

    #: Set by cronpolicy.interfaces (never imported on the start path): it
    #: declares IInterruptible for subclasses that define the hook.
    _declare_interfaces = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if CronScript._declare_interfaces is not None:
            CronScript._declare_interfaces(cls)

    def __init__(self, name=None, store=None):
        """``store``: an IPolicyStore to use instead of the one the settings
        name (a ``cronpolicy.store.memory.MemoryStore`` in tests, say)."""
        self.name = name or self.name or _name_from_argv()
        self.host = None
        self.options = None
        self.settings = None
        self.run_id = None
        self.decision = None
        self._store = store
        self._interruption = None
        self._parser = None
        self._logger = None
        self._log_setup = LogSetup()
        self._log = DeferredLogger(self.logger_name, self._log_setup)
        self.release = None

    #: The logger the script's records go to (``self.logger``).
    @property
    def logger_name(self):
        return self.name

    @property
    def logger(self):
        """A logging.Logger named after the script (logging is set up on first use)."""
        if self._logger is None:
            self._logger = self._log.real()
        return self._logger

    @logger.setter
    def logger(self, logger):
        # A logger of the script's choosing gets the gate's records too.
        self._logger = self._log = logger

    @property
    def parser(self):
        """The argparse parser: the standard options and the script's own.
        Built on first use: a script that adds no options, started with
        standard ones only, never needs it."""
        if self._parser is None:
            self._parser = standard_options_parser(
                self.name, self.description or (type(self).__doc__ or "").strip() or None)
            self.add_my_options()
        return self._parser

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
        stop = self._interruption.stop if self._interruption is not None else None
        return stop.reason if stop is not None else None

    @property
    def stop_requested(self):
        """True once a rollout, a policy change or SIGTERM asks this run to stop."""
        return self.stop_reason is not None

    def checkpoint(self):
        """An explicit safe point: raise Interrupted here if a stop is requested."""
        if self._interruption is not None:
            self._interruption.checkpoint()

    # Running -------------------------------------------------------------------

    def run(self, argv=None, exit=True):
        hold_standard_descriptors()
        try:
            code = self._run(sys.argv[1:] if argv is None else list(argv))
        except SystemExit as error:  # argparse: --help, bad usage
            code = error.code if isinstance(error.code, int) else exitcodes.USAGE
            if code == exitcodes.OK:        # --help: was it written?
                from cronpolicy.written import say
                code = say(sys.stdout, "", code, self.parser.prog,
                           getattr(self._parser, "unwritten", None))
        settle_stderr()
        if exit:
            sys.exit(code)
        return code

    def _parse(self, argv):
        """The options: read directly when they are standard ones only and
        the script adds none, else by argparse (which also says what is wrong)."""
        if self._parser is None and type(self).add_my_options is CronScript.add_my_options:
            options = parse_standard_options(argv)
            if options is not None:
                return options
        from cronpolicy.arguments import attach_dashed_values
        return self.parser.parse_args(attach_dashed_values(argv, self.parser))

    def _run(self, argv):
        if self.pin_release:
            from cronpolicy.release import pin
            self.release = pin(self._script_path())
        self.options = self._parse(argv)
        try:
            problem = name_problem(self.name) or interrupt_signal_problem(self.interrupt_signal)
            if problem:
                raise UsageError(problem)
            self.check_options()
            # (After check_options: it may set them, as `cronpolicy run` does.)
            problem = _needs_problem(self.needs) or _declared_problem(self)
            if not problem and (self.schedule is not None or self.schedule_tz is not None):
                from cronpolicy.schedule import schedule_problem     # cronsim: only if declared
                problem = schedule_problem(self.schedule, self.schedule_tz)
            if problem:
                raise UsageError(problem)
        except UsageError as error:
            print("%s: error: %s" % (self.parser.prog, error), file=sys.stderr)
            return exitcodes.USAGE
        # INFO by default only into a log file: cron mails whatever reaches
        # standard error, and a routine skip should mail nobody.
        self._log_setup = LogSetup(self.options.log_file, self.options.verbose,
                                   self.options.quiet)
        if isinstance(self._log, DeferredLogger):
            self._log.setup = self._log_setup
        elif self._log_setup.must_configure_before_main():
            # A logger of the script's own (`cronpolicy run`'s): the gate's
            # records go straight to it, so -v shows the database in use and
            # the run id at start only if logging is set up before the gate.
            self._log_setup.configure()
        try:
            self._log_setup.check()
        except OSError as error:
            print("%s: cannot open log file %s: %s" % (
                self.name, self.options.log_file, error.strerror), file=sys.stderr)
            return exitcodes.GATE_ERROR
        try:
            self.settings = Settings.load(dsn=self.options.dsn)
        except CronPolicyError as error:
            self._log.error("%s", error)
            return error.exit_code      # 4, or 2 for text that is not UTF-8
        if self.settings.syslog or getattr(self.options, "syslog", False):
            from cronpolicy.log import DEFAULT_SYSLOG_SOCKET
            socket = self.settings.syslog or DEFAULT_SYSLOG_SOCKET
            try:
                self._log_setup.use_syslog(socket)
            except OSError as error:
                print("%s: cannot log to syslog at %s: %s" % (
                    self.name, socket, error.strerror or error), file=sys.stderr)
                return exitcodes.GATE_ERROR
        self.host = self.settings.host
        if "CRONPOLICY_GATED_BY" in os.environ and not self.options.dry_run:
            from cronpolicy import nesting      # only inside cronpolicy run NAME
            gate = nesting.gated_by_wrapper()
            if gate is not None:
                return self._run_gated_by(*gate)
        gate = self._gate()
        if self.options.dry_run:
            return gate.dry_run(sys.stdout)
        hook = getattr(self, "is_safe_to_interrupt", None)
        self._interruption = Interruption(hook if callable(hook) else None, self._log,
                                          self.interrupt_signal)
        try:
            return gate.run(lambda watcher: self._perform(gate, watcher), self._interruption)
        finally:
            self.decision = gate.verdict

    def _gate(self):
        from cronpolicy.store import open_store
        settings = self.settings
        facts = ScriptFacts(
            name=self.name, host=self.host, expected_runtime=self.expected_runtime,
            max_concurrent=self.max_concurrent or (1 if self.fleet_single_instance else None),
            ignore_policy=self.options.ignore_policy,
            on_database_error=settings.on_database_error_for(self.name, self.on_database_error),
            schedule=self.schedule, schedule_tz=self.schedule_tz,
            catch_up_of=_catching_up(self.name), needs=tuple(self.needs or ()),
            release=self.release)
        store = self._store or open_store(settings, application_name="cronpolicy:" + self.name)
        return Gate(settings, facts, store, self._log, single_instance=self.single_instance,
                    expected_interval=self.expected_interval)

    def _script_path(self):
        """The file the script's class is defined in (its release's path)."""
        module = sys.modules.get(type(self).__module__)
        return getattr(module, "__file__", None) or (sys.argv[0] if sys.argv else None)

    def _run_gated_by(self, name, wrapper):
        """main() alone, under ``name``: the `cronpolicy run NAME` (pid
        ``wrapper``) decided, holds the lock and records the run, one run
        (cronpolicy.nesting)."""
        self._log.info("gated by cronpolicy run %s (pid %d): main() runs under that name, "
                       "without a gate of its own%s", name, wrapper,
                       "" if name == self.name else " (its own name is %s)" % self.name)
        self.name = name
        hook = getattr(self, "is_safe_to_interrupt", None)
        self._interruption = Interruption(hook if callable(hook) else None, self._log,
                                          self.interrupt_signal)
        return self._perform(None, _NoWatcher()).exit_code

    def _perform(self, gate, watcher):
        """Call main() under the watcher and the interruption protocol."""
        if gate is not None:
            self.decision = gate.verdict
            self.run_id = gate.run_handle.id
        interruption = self._interruption
        if self._log_setup.must_configure_before_main():
            self._log_setup.configure()
        self._log_setup.main_started = True
        interruption.install()
        interruption.start_deaf(watcher.start)
        try:
            try:
                interruption.in_main = True
                self.main()
            finally:
                interruption.in_main = False
        except Interrupted as interruption_raised:
            log = self._log.warning if interruption_raised.forced else self._log.info
            log("interrupted%s: %s", "" if interruption_raised.forced else " at a safe point",
                interruption_raised.reason)
            return Ending("interrupted", exitcodes.INTERRUPTED,
                          interruption_raised.stop or stopped(interruption_raised.reason))
        except SystemExit as error:
            if error.code is None or error.code == 0:
                return self._unless_output_lost(Ending("succeeded", exitcodes.OK))
            if isinstance(error.code, int):
                return Ending("failed", error.code)
            self._log.error("%s", error.code)
            return Ending("failed", exitcodes.FAILED)
        except KeyboardInterrupt:
            self._log.error("interrupted by SIGINT")
            return Ending("failed", 128 + 2)
        except Exception:
            self._log.exception("main() failed")
            return Ending("failed", exitcodes.FAILED)
        finally:
            watcher.stop_watching()
            interruption.restore()
        return self._unless_output_lost(Ending("succeeded", exitcodes.OK))

    def _unless_output_lost(self, ending):
        """``ending`` (main() succeeded) once what main() printed is written.
        Block-buffered (as cron gives standard output), a full disk or a
        reader gone was met only on the way out, after a run recorded as
        succeeded, and Python exited 120; unbuffered, print() raised in
        main().  Now both are main()'s failure: recorded failed, exit 1."""
        stream = sys.stdout
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError) as error:
            self._log.error("main() failed: its standard output could not be written: %s",
                            getattr(error, "strerror", None) or error)
            put_devnull_under(stream)   # (else the way out fails on it again: exit 120)
            return Ending("failed", exitcodes.FAILED)
        return ending


class _NoWatcher:
    """A watcher for a run that someone else watches (cronpolicy.nesting)."""

    stop = None

    def start(self):
        pass

    def stop_watching(self):
        pass

    def wake(self):
        pass


def _needs_problem(needs):
    """Why ``needs`` is not a list of service names, or None."""
    if isinstance(needs, str):
        return "needs must be a tuple of service names, not the string %r" % needs
    from cronpolicy.matching import service_name_problem
    return next(filter(None, map(service_name_problem, needs or ())), None)


#: The longest duration a run may declare (100 years, as the schema holds).
_LONGEST_SECONDS = 3155760000


def _declared_problem(script):
    """Why a number the class declares is not one the database takes (a
    string such as '1d' passed the gate, and its refused start record was
    taken for an outage), or None."""
    for attribute in ("expected_runtime", "expected_interval"):
        value = getattr(script, attribute)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= _LONGEST_SECONDS):
            return "%s must be a number of seconds from 0 to %d, not %r" % (
                attribute, _LONGEST_SECONDS, value)
    value = script.max_concurrent
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        return "max_concurrent must be a whole number of at least 1, not %r" % (value,)
    return None


def _catching_up(name):
    """The block this start catches up (`cronpolicy catch-up` started it), or
    None.  The module that knows is loaded only for such a start."""
    if "CRONPOLICY_CATCH_UP_NAME" not in os.environ:       # catchup.CATCH_UP_NAME
        return None
    from cronpolicy.catchup import catching_up
    return catching_up(name)


def _name_from_argv():
    base = os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "")
    if base.endswith(".py"):
        base = base[:-3]
    if not base or base.startswith("-"):
        raise ValueError("cannot derive a script name from sys.argv[0]; set the name attribute")
    return base
