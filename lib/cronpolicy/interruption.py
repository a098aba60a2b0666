"""Stopping a running main() only at a safe point.

A stop is requested by the watcher (a stop verdict from the policy rules:
deploy pending, the script disabled, a window begun) or by SIGTERM/SIGINT.
It takes effect only where stopping leaves no mess:

* when the script's ``is_safe_to_interrupt()`` says True: the watcher
  thread notices and signals the main thread (``interrupt_signal``), whose
  handler asks the hook once more, at the very moment main() would be
  interrupted, before raising ``Interrupted``;
* at any ``checkpoint()`` call;
* at once, when a policy row says the script is interruptible.

A second SIGTERM (or SIGINT) forces the stop even when not safe, and says so.
Only the main thread can handle signals: a script run elsewhere stops at its
checkpoints only.
"""

import _thread

from cronpolicy.errors import Interrupted
from cronpolicy.policy import stopped_by_signal


# The signal functions, without the ``signal`` module: it wraps the C module
# ``_signal`` with enums (Signals, Handlers), and building them costs a cron
# job's start more than a decision does.  Same functions, same numbers.
try:
    import _signal as _signals
except ImportError:         # an interpreter without the C module's own name
    import signal as _signals

SIGTERM = _signals.SIGTERM
SIGINT = _signals.SIGINT
SIGUSR2 = _signals.SIGUSR2

_NAMES = {SIGTERM: "SIGTERM", SIGINT: "SIGINT", SIGUSR2: "SIGUSR2"}


def signal_name(signum):
    """SIGTERM for 15, and so on."""
    if signum in _NAMES:
        return _NAMES[signum]
    import signal as full
    try:
        return full.Signals(signum).name
    except ValueError:
        return "signal %d" % signum


def interrupt_signal_problem(signum):
    """Why ``signum`` cannot be a script's interrupt_signal, or None: the
    watcher must be able to catch it, and SIGTERM and SIGINT are taken."""
    try:
        valid = signum in _signals.valid_signals()
    except TypeError:
        valid = False
    if not valid or signum in (_signals.SIGKILL, _signals.SIGSTOP):
        return "interrupt_signal %r is not a signal a handler can catch" % (signum,)
    if signum in (SIGTERM, SIGINT):
        return "interrupt_signal %s is taken: SIGTERM and SIGINT ask for a stop" % (
            signal_name(signum),)
    return None


class Interruption:
    """The stop protocol of one run of a script."""

    def __init__(self, safety_hook, logger, interrupt_signal=SIGUSR2):
        """``safety_hook``: the script's is_safe_to_interrupt, or None (never safe)."""
        self.safety_hook = safety_hook
        self.logger = logger
        self.interrupt_signal = interrupt_signal
        #: A policy row says the run may be stopped at any moment.
        self.always_safe = False
        #: The RunWatcher, whose ``stop`` is the policy's stop verdict.
        self.watcher = None
        self.signal_stop = None
        self.in_main = False
        self.interrupting = False
        self._deciding = False
        self._hook_failed = False       # said once per run
        self._previous_handlers = None
        self._main_thread = None
        self._held = False
        self._forced_while_held = False

    @property
    def stop(self):
        """The stop verdict in force (SIGTERM's first), or None."""
        if self.signal_stop is not None:
            return self.signal_stop
        return self.watcher.stop if self.watcher is not None else None

    def checkpoint(self):
        stop = self.stop        # once: the watcher may withdraw it meanwhile
        if self.in_main and not self.interrupting and stop is not None:
            self._interrupt(stop)

    def safe_now(self):
        """Whether stopping main() now leaves no mess.  The script's hook is
        asked only while main() runs: before, the state it reads may not
        exist yet (main() sets it), and nothing can be interrupted anyway.
        A hook that raises counts as not safe, said once per run, in one
        line (cron mails every traceback)."""
        if self.always_safe:
            return True
        if self.safety_hook is None or not self.in_main:
            return False
        try:
            return bool(self.safety_hook())
        except Exception as error:
            if not self._hook_failed:
                self._hook_failed = True
                self.logger.warning("is_safe_to_interrupt() raised %s: %s; counting the run "
                                    "as not safe", type(error).__name__, error)
            return False

    def stopped_with_the_run(self, bound):
        """When what main() waited on ended by the very stop asked of this
        run (a service manager signals every process of a unit at once):
        the termination signal's stop, waited for up to ``bound`` seconds
        (the signals of one stop arrive in any order), raised as
        Interrupted.  Returns (nothing raised) when no such signal came."""
        import time
        deadline = time.monotonic() + bound
        while self.signal_stop is None and time.monotonic() < deadline:
            time.sleep(0.01)        # the handler runs here, and may raise itself
        if self.signal_stop is not None and not self.interrupting:
            self._interrupt(self.signal_stop)

    def hold(self):
        """Keep every stop from raising until ``release()``: for a moment in
        which an exception would lose track of something, such as a child
        process being started (raised inside subprocess.Popen, the stop left
        the child running on, unknown to the run).  Signals still count."""
        self._held = True

    def release(self):
        """End ``hold()``; raise the stop that came meanwhile when it may be
        taken now (forced by a second signal, or the run is safe)."""
        self._held = False
        stop = self.stop
        if not self.in_main or self.interrupting or stop is None:
            return
        if self._forced_while_held:
            self._interrupt(stop, forced=True)
        if self.safe_now():
            self._interrupt(stop)

    def _interrupt(self, stop, forced=False):
        self.interrupting = True
        raise Interrupted(stop.reason, forced=forced, stop=stop)

    # Signals ------------------------------------------------------------------------

    def install(self):
        """Take over SIGTERM, SIGINT and the interrupt signal (main thread only)."""
        previous = {}
        try:
            for signum, handler in ((SIGTERM, self._on_termination_signal),
                                    (SIGINT, self._on_termination_signal),
                                    (self.interrupt_signal, self._on_interrupt_signal)):
                previous[signum] = _signals.signal(signum, handler)
        except ValueError:          # not the main thread (the signal was checked
            for signum, handler in previous.items():        # before the gate)
                _signals.signal(signum, handler)
            return                  # checkpoints only
        self._previous_handlers = previous
        self._main_thread = _thread.get_ident()

    def start_deaf(self, start):
        """Call ``start``, which starts a thread (the watcher's), with SIGTERM
        and SIGINT blocked, so that thread is born unable to take them.
        Python runs a handler in the main thread only: a signal sent to the
        process that the kernel hands to another thread merely notes it, and
        a main thread blocked in a system call (a sleep, a read, a wait)
        runs the handler when that call returns.  A SIGTERM sent to a forced
        run sleeping in main() went unheard until the sleep ended whenever
        the watcher's thread took it; blocked there, it goes to the main
        thread, whose call it cuts short.  With no handlers of ours (not the
        main thread), ``start`` is called as it is."""
        if self._previous_handlers is None:
            return start()
        previous = _signals.pthread_sigmask(_signals.SIG_BLOCK, (SIGTERM, SIGINT))
        try:
            return start()
        finally:
            _signals.pthread_sigmask(_signals.SIG_SETMASK, previous)

    def restore(self):
        previous, self._previous_handlers = self._previous_handlers, None
        for signum, handler in (previous or {}).items():
            _signals.signal(signum, handler)

    def request_interrupt(self):
        """From the watcher thread: have the main thread check for a safe point."""
        # Without our handler the signal would kill the process: there, only
        # checkpoint() can stop main().
        if self._previous_handlers is not None:
            _signals.pthread_kill(self._main_thread, self.interrupt_signal)

    def _on_interrupt_signal(self, signum, frame):
        # The safety answer that counts is this one, taken in the main thread
        # at the very moment main() would be interrupted.  The watcher asks
        # again every SAFE_POLL: a signal arriving while the hook is still
        # being asked is dropped, not nested (a nested call could wait on a
        # lock the outer one holds).
        if self._deciding or self._held:
            return                  # (held: the watcher asks again)
        self._deciding = True
        try:
            stop = self.stop        # once: the watcher may withdraw it meanwhile
            if self.in_main and not self.interrupting and stop is not None and self.safe_now():
                self._interrupt(stop)
        finally:
            self._deciding = False

    def _on_termination_signal(self, signum, frame):
        name = signal_name(signum)
        if not self.in_main or self.interrupting:
            return
        if self.signal_stop is not None:
            self.logger.warning("second %s: forcing the interruption although the run is "
                                "not safe to interrupt", name)
            self.signal_stop = stopped_by_signal(
                "forced by a second %s (first: %s)" % (name, self.signal_stop.reason))
            if self._held:
                self._forced_while_held = True
                return
            self._interrupt(self.signal_stop, forced=True)
        self.signal_stop = stopped_by_signal(name)
        if not self._held and self.safe_now():
            self._interrupt(self.signal_stop)
        self.logger.warning("%s received: stopping at the next safe point "
                            "(send it again to force)", name)
        if self.watcher is not None:
            self.watcher.wake()
