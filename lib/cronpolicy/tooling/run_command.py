"""`cronpolicy run NAME [options] -- COMMAND [ARGS...]`: any command behind the gate.

The command runs under the same policy, lock, history and rollout protocol
as a CronScript: the gate decides first; the run is recorded; the command's
output passes through untouched (it inherits standard input, output and
error); its exit code becomes the wrapper's and a non-zero one is recorded
as failed.  The wrapper's own log lines are marked ``cronpolicy:NAME``.

Interruptibility, since a command has no is_safe_to_interrupt():

``--interruptible``  it may be stopped at any time: a rollout, a disabling
                     policy or SIGTERM sends it SIGTERM;
``--safe-file PATH`` it is safe while PATH exists (the command creates and
                     removes it around its critical sections);
neither              it is never safe: it runs to completion and rollouts
                     wait for it (a second SIGTERM still forces it).

SIGHUP, SIGUSR1 and SIGQUIT are passed on to the command as they arrive.

The command runs in a session of its own (a stop reaches everything it
started), so it would outlive a wrapper killed by SIGKILL (or the OOM
killer): it ran on unseen while its run, no longer renewed, was recorded
abandoned and `deploy wait` said quiet.  A guard (_Guard: a shell reading a
pipe only the wrapper writes to) kills the command's process group when the
wrapper goes without saying its command ended.

SIGTERM (or SIGINT) to the wrapper is a stop request, kept as SIGNALS says
(the text of ``cronpolicy run --help``).  A command that ends by SIGTERM or
SIGINT while the wrapper was sent one too (within SIGNAL_SPREAD) was
stopped along with it, as a service manager stops a unit (systemd's
default KillMode=control-group signals every process): the run is recorded
as interrupted, exit 6, not as failed 143.
"""

import logging
import os
import signal
import subprocess
import sys

from cronpolicy import exitcodes, nesting
from cronpolicy.errors import Interrupted, UsageError
from cronpolicy.matching import name_problem
from cronpolicy.script import CronScript
from cronpolicy.timeutil import parse_duration

#: How long a command gets to exit after SIGTERM before it is killed
#: (--stop-timeout).
STOP_TIMEOUT = 60.0

#: How long after its command ended by a termination signal the wrapper
#: waits for one of its own, to tell a stop of the whole unit (signals sent
#: to every process at once, in any order) from the command's alone.
SIGNAL_SPREAD = 1.0

#: What SIGTERM does, as `cronpolicy run --help` says it (and README).
SIGNALS = """\
SIGTERM or SIGINT asks the run to stop. With --interruptible the command's
process group gets SIGTERM at once; with --safe-file, as soon as that file
exists; otherwise the request is held until the command ends by itself (its
exit code is then the run's). A second SIGTERM or SIGINT passes SIGTERM on at
once. A command that has not exited --stop-timeout (default %(timeout)ds) after
SIGTERM gets SIGKILL.
A stopped run is recorded as interrupted and exits 6; so is one whose command
ended by SIGTERM when the wrapper got SIGTERM too (a service manager stopping
the whole unit). SIGHUP, SIGUSR1 and SIGQUIT are passed on as they arrive.
A wrapper killed (SIGKILL, the OOM killer) takes the command's process group
with it: a run no longer heard from must not run on unseen.
""" % {"timeout": STOP_TIMEOUT}

_PASSED_ON = (signal.SIGHUP, signal.SIGUSR1, signal.SIGQUIT)
#: The exit codes of a command ended by SIGTERM or SIGINT (as a shell reports them).
_ENDED_BY_A_STOP = (128 + signal.SIGTERM, 128 + signal.SIGINT)


class CommandScript(CronScript):
    """Run COMMAND behind the cronpolicy gate: it starts only when the policy
    says run, and is recorded like any cron script.  Rollouts wait for it
    unless it may be stopped (--interruptible, or --safe-file while that
    file exists); SIGTERM is a stop request (SIGNALS)."""

    #: Its release is the one --pin names (the wrapper's own path is cronpolicy's).
    pin_release = False

    def __init__(self, name, command):
        super().__init__(name=name)
        self.command = list(command)
        self.child = None
        self._guard = None
        self.stop_timeout = STOP_TIMEOUT
        self.logger = logging.getLogger("cronpolicy:" + name)
        self.parser.prog = "cronpolicy run %s" % name
        self.parser.usage = USAGE
        self.parser.epilog = SIGNALS
        import argparse
        self.parser.formatter_class = argparse.RawDescriptionHelpFormatter

    def add_my_options(self):
        from cronpolicy.arguments import positive_int
        group = self.parser.add_argument_group("the command")
        group.add_argument("--interruptible", action="store_true",
                           help="it may be stopped at any time: a stop request (a rollout, "
                                "SIGTERM) sends it SIGTERM at once")
        group.add_argument("--safe-file", metavar="PATH",
                           help="it is safe to stop while this file exists")
        group.add_argument("--stop-timeout", metavar="D",
                           help="how long the command gets to exit after SIGTERM before "
                                "SIGKILL (default %ds)" % STOP_TIMEOUT)
        group.add_argument("--expected-runtime", metavar="D",
                           help="how long it runs, until there is history (like 20m)")
        group.add_argument("--expected-interval", metavar="D",
                           help="it should succeed at least this often (for `overdue`)")
        group.add_argument("--overlap", action="store_true",
                           help="allow more than one instance per host")
        group.add_argument("--max-concurrent", metavar="N", type=positive_int,
                           help="at most N live runs across all hosts")
        group.add_argument("--schedule", metavar="EXPR",
                           help="when cron runs it (like '0 2 * * *' or @hourly), recorded "
                                "with each run for deploy plan, deploy slot and overdue")
        group.add_argument("--schedule-tz", metavar="ZONE",
                           help="the time zone of --schedule (an IANA name; default UTC)")
        group.add_argument("--needs", metavar="SERVICES", action="append",
                           help="the services it depends on (comma-separated, or repeated): "
                                "a rollout of one of them skips and stops it")
        group.add_argument("--pin", metavar="PATH",
                           help="resolve PATH (a release link such as /srv/app/current) once, "
                                "at start, and run the command from the resolved release")
        group.add_argument("--from-crontab", action="store_true",
                           help="written by `cronpolicy crontab wrap`, so that unwrap takes "
                                "apart its own lines only (no other effect)")

    def check_options(self):
        for option in ("expected_runtime", "expected_interval", "stop_timeout"):
            text = getattr(self.options, option)
            if text is not None:
                setattr(self, option, parse_duration(text))
        if self.options.overlap:
            self.single_instance = False
        self.max_concurrent = self.options.max_concurrent
        self.schedule = self.options.schedule
        self.schedule_tz = self.options.schedule_tz
        from cronpolicy.matching import parse_needs
        self.needs = tuple(service for words in self.options.needs or ()
                           for service in parse_needs(words))
        if self.options.pin:
            from cronpolicy.release import pinned_command
            if not os.path.exists(self.options.pin):
                raise UsageError("--pin: %s does not exist" % self.options.pin)
            self.release, self.command = pinned_command(self.options.pin, self.command)
            from cronpolicy.matching import text_problem
            problem = text_problem(self.release, "--pin: the release")
            if problem:         # runs record their release: it must be text
                raise UsageError(problem)

    def is_safe_to_interrupt(self):
        if self.options.interruptible:
            return True
        if self.options.safe_file:
            return os.path.exists(self.options.safe_file)
        return False

    def main(self):
        try:
            # Its own process group, so stopping it stops everything it started
            # (`sh -c 'a | b'` from crontab wrap included).
            # A CronScript of the same name inside knows it is gated already.
            # (Not a catch-up itself, whatever it starts: catchup's marks stay here.)
            env = dict({key: value for key, value in os.environ.items()
                        if not key.startswith("CRONPOLICY_CATCH_UP_")},
                       **{nesting.GATED_BY: self.name, nesting.GATED_PID: str(os.getpid())})
            # A stop (SIGTERM) may land while the command is being started:
            # held until the wrapper knows its child, then it stops the
            # command.  (Raised inside Popen, it left the command running on
            # alone, and so did one between the start and the wait.)
            self._hold_stops()
            self._guard = _Guard.start(self.logger)
            self.child = subprocess.Popen(self.command, start_new_session=True, env=env)
            if self._guard is not None:
                self._guard.watch(self.child.pid)
            previous = {signum: signal.signal(signum, self._pass_on) for signum in _PASSED_ON}
            try:
                self._release_stops()
                code = self.child.wait()
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        except OSError as error:
            self.logger.error("cannot run %s: %s", self.command[0], error.strerror)
            sys.exit(127 if isinstance(error, FileNotFoundError) else 126)
        except Interrupted:
            if self.child is not None:
                self._stop_child()
            raise
        finally:
            if self._guard is not None:
                self._guard.close(ended=self.child is None or self.child.poll() is not None)
        if code < 0:
            code = 128 - code          # killed by a signal, as a shell reports it
        if code in _ENDED_BY_A_STOP:
            self._interruption.stopped_with_the_run(SIGNAL_SPREAD)
        if code:
            sys.exit(code)

    def _hold_stops(self):
        if self._interruption is not None:      # (None: main() called on its own)
            self._interruption.hold()

    def _release_stops(self):
        if self._interruption is not None:
            self._interruption.release()

    def _signal_group(self, signum):
        try:
            os.killpg(self.child.pid, signum)
        except ProcessLookupError:
            pass

    def _pass_on(self, signum, frame):
        if self.child is not None and self.child.poll() is None:
            self._signal_group(signum)

    def _stop_child(self):
        if self.child.poll() is not None:
            return
        self.logger.info("sending SIGTERM to %s (process group %d)", self.command[0],
                         self.child.pid)
        self._signal_group(signal.SIGTERM)
        try:
            self.child.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.logger.warning("%s did not exit within %gs of SIGTERM: killing it",
                                self.command[0], self.stop_timeout)
            self._signal_group(signal.SIGKILL)
            self.child.wait()


#: The guard: told the command's process group, then "ended" once it has;
#: the pipe closed without it (the wrapper gone), it kills the group.
_GUARD_SCRIPT = ('read group || exit 0; read word;'
                 ' [ "$word" = ended ] || kill -s KILL -- "-$group" 2>/dev/null')


class _Guard:
    """A shell in a session of its own, outliving the wrapper: it kills the
    command's process group unless the wrapper says first that the command
    ended.  Started before the command, so a wrapper killed at any later
    moment leaves nothing behind (but the instant between the command's
    start and its group being told)."""

    def __init__(self, process, writing):
        self._process, self._writing = process, writing
        self._told = False

    @classmethod
    def start(cls, logger):
        """A guard, or None (said) when none can be started."""
        reading, writing = os.pipe()
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", _GUARD_SCRIPT], stdin=reading, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, env={})
        except OSError as error:
            os.close(writing)
            logger.warning("cannot start the guard that stops the command should this"
                           " wrapper be killed (/bin/sh: %s): running it unguarded",
                           error.strerror)
            return None
        finally:
            os.close(reading)
        return cls(process, writing)

    def watch(self, group):
        self._say(b"%d\n" % group)
        self._told = True

    def close(self, ended):
        """The wrapper leaves: with ``ended`` its command has, and the guard
        goes quietly; without, it kills the command's group."""
        if self._writing is None:
            return
        if ended and self._told:        # (no group told, as when it could not start: EOF)
            self._say(b"ended\n")
        os.close(self._writing)
        self._writing = None
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:    # (a stopped shell: init reaps it later)
            pass

    def _say(self, line):
        try:
            os.write(self._writing, line)
        except OSError:         # the guard is gone: nothing more it can do
            pass


USAGE = "cronpolicy run [options] NAME [options] -- COMMAND [ARGS...]"


def run_command(argv):
    """``cronpolicy run`` with ``argv`` after the word run; returns the exit
    code.  Its options may come before NAME or after it (docs/releases.txt's
    `cronpolicy run --pin LINK NAME -- ...`), never after the --."""
    split = argv.index("--") if "--" in argv else len(argv)
    head, command = argv[:split], argv[split + 1:]
    at = _name_index(head)
    name = head[at] if at is not None else None
    if any(word in ("-h", "--help") for word in head):
        from cronpolicy.written import say
        parser = CommandScript(name or "NAME", []).parser
        parser.print_help()
        return say(sys.stdout, "", exitcodes.OK, "cronpolicy run", parser.unwritten)
    if name is None:
        return _usage("no NAME: usage: %s" % USAGE)
    problem = name_problem(name)
    if problem:         # '' would have become the script file's name
        return _usage(problem)
    if not command:
        return _usage("give the command after --, as in cronpolicy run %s -- /path/to/job"
                      % name)
    return CommandScript(name, command).run(head[:at] + head[at + 1:], exit=False)


def _name_index(head):
    """Where NAME is among the words before the -- : the first that is
    neither an option nor the value of one (--pin PATH...); None if none."""
    from cronpolicy.arguments import valued_options
    valued = valued_options(CommandScript("NAME", []).parser)
    index = 0
    while index < len(head):
        word = head[index]
        if not word.startswith("-") or word == "-":
            return index
        index += 2 if word in valued else 1
    return None


def _usage(message):
    from cronpolicy.log import stderr_is_the_journal
    stream = sys.stderr
    if stderr_is_the_journal():         # (main() hands run its words before it wraps stderr)
        from cronpolicy.tooling.output import JournalPriorities
        stream = JournalPriorities(stream)
    print("cronpolicy run: error: %s" % message, file=stream)
    return exitcodes.USAGE
