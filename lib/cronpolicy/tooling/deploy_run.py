"""`cronpolicy deploy run [--service S]... -- COMMAND [ARGS...]`: a rollout around one command.

It opens a rollout, waits for the fleet to be quiet for it (the live table
of `deploy wait`), runs COMMAND, and ends the rollout whatever happens:

* COMMAND's exit status is the command's own (127: not found, 126: not
  runnable), but for 0 when this process's own lines could not be written
  (10; 141 for a reader gone: cli._said);
* a wait that times out (--wait-timeout) ends the rollout and exits 7
  without running COMMAND; so does a rollout ended by someone else before
  the fleet was quiet for it (its scripts start again: no quiet to wait
  for);
* SIGINT, SIGTERM or SIGHUP (a lost terminal) while waiting ends the
  rollout and exits 130; while
  COMMAND runs, it is passed on to COMMAND (which runs in a session of its
  own, so a terminal's Ctrl-C reaches it through here only), COMMAND gets
  STOP_TIMEOUT seconds to exit before it is killed, then the rollout ends
  and the exit is 130.  A signal its caller had it ignore (as a shell does
  SIGINT for `deploy run ... &`) stays ignored.

While it lives, the process keeps a lease on its rollout (renewed every
heartbeat_interval for lease_ttl): killed (kill -9, a lost host), it
leaves the rollout open, the safe direction, and `status`, `rollouts`,
`metrics` and `overdue` say its owner is lost within lease_ttl.  A renewal
the database refuses (PostgreSQL: this process now connects as another
login than the one that began the rollout, schema 26) before COMMAND
starts ends the rollout and exits 4 without running it; while COMMAND
runs it is said once, and the rollout stays open until COMMAND exits.  When the
rollout cannot be ended (the database out of reach for END_TIMEOUT), it
says so, names the rollout to end by hand, and exits 4; one whose row was
deleted meanwhile (by hand) is said to be gone, and the exit stays what it
was.
"""

import os
import signal
import subprocess
import sys
import threading
import time

from cronpolicy import exitcodes
from cronpolicy.errors import CronPolicyError, DatabaseError, UsageError
from cronpolicy.timeutil import format_duration, positive_duration

#: How long COMMAND gets to exit after the signal it was passed on.
STOP_TIMEOUT = 60.0
#: How long ending the rollout is tried for before giving up (saying so).
END_TIMEOUT = 60.0


class _Stopped(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived while waiting for quiet."""


class _Signals:
    """SIGINT, SIGTERM and SIGHUP (the operator's terminal lost: its hang-up
    never reaches COMMAND, in a session of its own), noted when they
    arrive: the wait stops at its next look (never inside a statement), and
    while COMMAND runs they are passed on to its process group.  Nothing is
    raised from the handler."""

    def __init__(self):
        self.child = None
        self.received = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            # One its caller ignores stays ignored (`deploy run ... &` in a
            # shell script: a Ctrl-C meant for the foreground is not for it).
            if signal.getsignal(signum) != signal.SIG_IGN:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            # Stopped by a signal, the exit (130) is decided: a second Ctrl-C
            # on the way out must not kill the process instead (exit -2).
            signal.signal(signum, signal.SIG_IGN if self.received else handler)

    def _handle(self, signum, frame):
        self.received = self.received or signum
        if self.child is not None:
            try:
                os.killpg(self.child.pid, signum)
            except ProcessLookupError:
                pass

    def stop_if_asked(self, *ignored):
        """deploy wait's progress hook: stop the wait, between two looks."""
        if self.received:
            raise _Stopped()


class _LeaseRefused(Exception):
    """The database refused this process's renewal of its own rollout's
    lease: on PostgreSQL only the login that began a rollout renews it
    (schema 26), and this process now connects as another (its DSN names a
    service, a password file or a config file changed meanwhile)."""


class _LeaseKeeper(threading.Thread):
    """Renews the owner's lease of the rollout every heartbeat_interval;
    says once if someone else ended the rollout meanwhile.  A renewal the
    database refuses (``refused``: the data itself, never a passing outage)
    is noted: while COMMAND has not started, the wait stops on it
    (``check``); once it runs, it is said once (``command_runs``)."""

    def __init__(self, db, rollout_id, settings, owner=None):
        super().__init__(name="cronpolicy-rollout-lease", daemon=True)
        self.db = db
        self.rollout_id = rollout_id
        self.owner = owner
        self.settings = settings
        self.halt = threading.Event()
        self.ended_elsewhere = False
        self.refused = None
        self._running = False
        self._said_refused = False
        self._lock = threading.Lock()

    def run(self):
        from cronpolicy.tooling import deploy
        failing = False
        while not self.halt.wait(self.settings.heartbeat_interval):
            try:
                still_open = deploy.renew(self.db, self.rollout_id, self.settings.lease_ttl,
                                          owner=self.owner)
            except CronPolicyError as error:
                if getattr(error, "refused", False):
                    with self._lock:
                        self.refused = error
                        say = self._running
                    if say:
                        self._say_refused()
                    continue
                if not failing:
                    _say("warning: cannot renew the lease of rollout #%d: %s (trying again)"
                         % (self.rollout_id, error))
                failing = True
                continue
            failing = False
            with self._lock:
                self.refused = None
            if not still_open and not self.ended_elsewhere:
                self.ended_elsewhere = True
                _say("warning: rollout #%d %s: the scripts it stopped start again "
                     "(cronpolicy rollouts)" % (self.rollout_id,
                                                _fate(self.db, self.rollout_id, self.owner)))

    def check(self):
        """Raise _LeaseRefused when the last renewal was refused."""
        with self._lock:
            refused = self.refused
        if refused is not None:
            raise _LeaseRefused(refused)

    def command_runs(self):
        """COMMAND has started: a refusal is said from now on (once)."""
        with self._lock:
            self._running = True
            refused = self.refused
        if refused is not None:
            self._say_refused()

    def _say_refused(self):
        with self._lock:
            if self._said_refused or self.refused is None:
                return
            self._said_refused = True
            error = self.refused
        _say("warning: %s; rollout #%d stays open until its command exits and this ends it, "
             "though while its lease is refused `cronpolicy rollouts` will say its owner is lost"
             % (error, self.rollout_id))

    def stop(self):
        self.halt.set()
        self.join(self.settings.decision_timeout + self.settings.connect_timeout)


def _say(message):
    _print("cronpolicy: %s" % message, file=sys.stderr)


def _print(*args, file=None):
    """print, flushed.  What cannot be written (| head, a disk full) never
    raises in the CLI (output.GuardedStream): the rollout still ends, the
    command still runs, with the standard output it was given (not this
    process's /dev/null: its output is its own), and the exit status says
    what was lost (cli._said)."""
    print(*args, file=file or sys.stdout, flush=True)


def cmd_deploy_run(args, settings):
    from cronpolicy.store.writes import Plain
    from cronpolicy.tooling import deploy
    command = list(args.command)
    if not command:
        raise UsageError("give the command to run after --, as in cronpolicy deploy run "
                         "--reason 'release 4521' -- /srv/deploy/upgrade.sh")
    expect = positive_duration(args.expect, "--expect") if args.expect else None
    wait_timeout = positive_duration(args.wait_timeout, "--wait-timeout")
    services = sorted(set(args.service or ()))
    db = Plain(settings)
    with _Signals() as signals:
        row, others = deploy.begin(db, services=services, reason=args.reason, expect=expect,
                                   owner_host=settings.host, owner_pid=os.getpid(),
                                   lease=settings.lease_ttl)
        rollout_id = row["id"]
        # Its rollout is the one this process owns: not another that took
        # its id after its row was deleted (SQLite gives ids again).
        owner = (row["owner_host"], row["owner_pid"])
        keeper = _LeaseKeeper(db, rollout_id, settings, owner)
        keeper.start()
        code = failure = None
        try:
            try:
                code = _wait_then_run(
                    db, rollout_id, services, others, args.reason, command, wait_timeout,
                    signals, lambda: deploy.renew(db, rollout_id, settings.lease_ttl,
                                                  owner=owner), keeper)
            except DatabaseError as error:
                # (The look, once quiet, whether the rollout is still open:
                # COMMAND was not run.)
                failure = error
        finally:
            # Whatever happened (an error included: it is said after), the
            # rollout ends; a signal now is only noted.
            signals.child = None
            keeper.stop()
            ended = _end(db, rollout_id, code, owner,
                         not_run=command[0] if failure is not None else None)
        if failure is not None and ended is None:
            # Ended: what is left to say is why COMMAND was not run.  (Not
            # ended, the line saying so said that too, and the cause: the
            # same database out of reach, it is not said twice.)
            _say("error: %s; %s not run" % (failure, command[0]))
            return failure.exit_code
        return ended


def _wait_then_run(db, rollout_id, services, others, reason, command, wait_timeout, signals,
                   still_open, keeper):
    """The exit code: COMMAND's, WAIT_TIMEOUT, STOPPED, or GATE_ERROR (its
    lease refused before COMMAND started).  ``still_open()``: whether the
    rollout is still open (renewing its lease)."""
    from cronpolicy.tooling import deploy
    from cronpolicy.tooling.output import LiveTable, quote
    _print("rollout #%d began: %s: %s" % (
        rollout_id, "every script stops starting" if not services else
        "the scripts that need %s stop starting" % " or ".join(services), quote(reason)))
    for other in others:
        _print("also open: rollout #%d" % other["id"])
    table = LiveTable(sys.stdout)

    def progress(now, runs, waited):
        signals.stop_if_asked()
        keeper.check()
        table(now, runs, waited)
    try:
        signals.stop_if_asked()     # (one may have come while the rollout began)
        result = deploy.wait_until_quiet(db, wait_timeout, rollout_id=rollout_id,
                                         on_progress=progress, begun_here=True)
        reopened = result.quiet and not result.ended_meanwhile and not _renewed(still_open)
    except _Stopped:
        _say("interrupted while waiting for quiet: %s not run" % command[0])
        return exitcodes.STOPPED
    except _LeaseRefused as refused:
        # Started, COMMAND would run under a rollout whose lease nobody
        # renews: within lease_ttl it would look abandoned, and any rollout
        # login may end an abandoned rollout.  Nothing is done yet: stop.
        _say("error: %s; %s not run" % (refused.args[0], command[0]))
        return exitcodes.GATE_ERROR
    # Ended by someone else before quiet (seen by the wait, or since its
    # last look: the renewal finds it ended): nothing stops the fleet for
    # COMMAND any more.
    if result.ended_meanwhile or reopened:
        # (The wait has read what became of it; a renewal that found it not
        # open after the wait's last look has not.)
        fate = (FATES[result.rollout_gone] if result.ended_meanwhile
                else _fate(db, rollout_id, keeper.owner))
        _say("rollout #%d %s before the fleet was quiet for it: %s not run" % (
            rollout_id, fate, command[0]))
        return exitcodes.WAIT_TIMEOUT
    if not result.quiet:
        _print("timed out after %s with %d run%s in the way: %s not run" % (
            format_duration(result.waited_seconds), len(result.blockers),
            "" if len(result.blockers) == 1 else "s", command[0]))
        return exitcodes.WAIT_TIMEOUT
    if signals.received:        # arrived since the last look
        _say("interrupted: %s not run" % command[0])
        return exitcodes.STOPPED
    _print("quiet after %s: running %s" % (format_duration(result.waited_seconds),
                                           " ".join(command)))
    keeper.command_runs()
    return _run(command, signals)


#: What became of this process's rollout, found no longer open, by whether
#: its row is gone (deleted by hand) rather than ended.
FATES = {False: "was ended by someone else", True: "is gone (its row was deleted)"}


def _fate(db, rollout_id, owner):
    """FATES of this process's rollout, found no longer open; "is no longer
    open" when the database cannot tell just now."""
    from cronpolicy.tooling import deploy
    try:
        why = deploy.why_not_open(db, rollout_id, owner=owner)
    except CronPolicyError:
        return "is no longer open"
    return FATES[why == "deleted"]


def _renewed(still_open):
    """``still_open()``, a refusal of the renewal raised as _LeaseRefused."""
    try:
        return still_open()
    except DatabaseError as error:
        if error.refused:
            raise _LeaseRefused(error) from None
        raise


def _run(command, signals):
    try:
        child = subprocess.Popen(command, start_new_session=True)
    except OSError as error:
        _say("cannot run %s: %s" % (command[0], error.strerror))
        return 127 if isinstance(error, FileNotFoundError) else 126
    signals.child = child
    if signals.received:        # came while it was being started: pass it on now
        try:
            os.killpg(child.pid, signals.received)
        except ProcessLookupError:
            pass
    killed_at = None
    while True:
        try:
            code = child.wait(timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            if signals.received and killed_at is None:
                killed_at = time.monotonic() + STOP_TIMEOUT
            if killed_at is not None and time.monotonic() >= killed_at:
                _say("%s did not exit within %ds of the signal: killing it"
                     % (command[0], STOP_TIMEOUT))
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                code = child.wait()
                break
    signals.child = None
    if signals.received:
        return exitcodes.STOPPED
    return 128 - code if code < 0 else code


def _end(db, rollout_id, code, owner=None, not_run=None):
    """End the rollout (the one ``owner`` began), trying for END_TIMEOUT;
    the exit code (``code``, or GATE_ERROR when it could not be ended).
    ``not_run``: COMMAND, when a failure kept it from running (said with
    the failure to end)."""
    from cronpolicy.tooling import deploy
    deadline = time.monotonic() + END_TIMEOUT
    pause = 0.5
    while True:
        try:
            row, ended = deploy.end(db, rollout_id, owner=owner)
            break
        except UsageError:
            # Its row deleted by hand: nothing stops the fleet for it, and
            # the exit is still the command's (not 2: no bad usage here).
            _say("rollout #%d is gone (its row was deleted): nothing to end%s" % (
                rollout_id, "" if code in (None, exitcodes.WAIT_TIMEOUT)
                else " (the command exited %d)" % code))
            return code
        except DatabaseError as error:
            if not error.transient or time.monotonic() + pause >= deadline:
                _say("error: cannot end rollout #%d: %s; it stays open and keeps its scripts "
                     "stopped: end it with `cronpolicy deploy end %d`%s" % (
                         rollout_id, error, rollout_id,
                         " (%s not run)" % not_run if not_run is not None
                         else "" if code is None else " (the command exited %d)" % code))
                return exitcodes.GATE_ERROR
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
    opened = (row["ended_at"] - row["began_at"]).total_seconds()
    _print("rollout #%d %s after %s%s" % (
        rollout_id, "ended" if ended else "had been ended by %s" % (row["ended_by"] or "-"),
        format_duration(opened),
        "" if code in (None, exitcodes.WAIT_TIMEOUT) else " (exit %d)" % code))
    return code
