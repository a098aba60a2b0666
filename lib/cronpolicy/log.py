"""Logging that costs nothing until a record is due.

A cron script's start logs little that passes its level (WARNING by
default, on standard error, so that a routine run mails nobody), and
importing and configuring the ``logging`` package costs more than a whole
decision.  So the start path logs through ``DeferredLogger``: it compares a
record's level with the one the options chose and, only for a record that
passes, or when the script asks for ``self.logger``, sets ``logging`` up
for real (``LogSetup.configure``, once) and hands the record on.

Code of the script's own that logs through ``logging`` directly gets the
real set-up as soon as ``logging`` is there: before main() runs, when the
script imported it; with ``--log-file`` or ``-v``, always.

Where records go: a log file (``--log-file``); else the local syslog
socket (``--syslog``, or the config file's ``syslog``), facility cron; else
standard error, as today, but for one case: when standard error is the
journal (systemd's $JOURNAL_STREAM names its device and inode), each line
starts with its syslog priority, ``<3>`` for ERROR, which journald reads,
and without the time and process id that journald records itself.
"""

import _thread
import os
import sys

DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: Lines to the journal: journald adds the time, the process id and the unit.
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: Messages to syslog, after the <PRI> the handler adds: the usual TAG[PID]:.
SYSLOG_FORMAT = "cronpolicy[%(process)d]: %(levelname)s %(name)s: %(message)s"
#: The local syslog socket, when the config file names none.
DEFAULT_SYSLOG_SOCKET = "/dev/log"

#: syslog's priorities (sd-daemon(3) prefixes) for the logging levels.
_PRIORITIES = ((CRITICAL, 2), (ERROR, 3), (WARNING, 4), (INFO, 6))


def priority(level):
    """The syslog priority of a logging level: 2 critical ... 7 debug."""
    return next((number for floor, number in _PRIORITIES if level >= floor), 7)


def hold_standard_descriptors():
    """Open /dev/null on each of descriptors 0, 1 and 2 that is closed (a
    process started with >&-, 2>&-, <&-), before anything else is opened.
    Else the next file or socket takes that number: the lock file became
    standard input, the PostgreSQL connection standard output, and what a
    script's main() wrote there by os.write, a C library's printf or a
    command run by os.system went into the lock file or the protocol
    stream.  Python's own sys.stdout (None) is unchanged: print() is still
    silent and the CLI still says its output was lost.  The descriptor is
    not inherited (PEP 446), so a command started keeps the closed stream
    it was given, as before.  (SQLite does the same for its own files.)"""
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            try:
                opened = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if opened != descriptor:        # (a lower one taken meanwhile)
                os.dup2(opened, descriptor, inheritable=False)
                os.close(opened)


def settle_stderr():
    """Flush standard error now; when it cannot be written (a full disk, a
    reader gone) put /dev/null under it, so that the flush on the way out
    does not fail too: Python then exits 120, in place of the run's own
    exit code (main()'s, the command's).  What was lost is lost; the run's
    record in the database stands."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.flush()
    except (OSError, ValueError):
        put_devnull_under(stream)


def put_devnull_under(stream):
    """Point ``stream``'s descriptor at /dev/null: what it still holds,
    flushed on the way out, would fail again (a full disk, a reader gone:
    Python's "Exception ignored", exit 120).  Only once nothing more is
    started: a command started after it would inherit /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):      # (io.UnsupportedOperation is both)
        pass


def stderr_is_the_journal(environ=None, stream=None):
    """Whether standard error is systemd's journal stream: $JOURNAL_STREAM
    holds its "device:inode", which a redirected stderr (2>file, a pipe)
    of a child that inherited the variable does not match."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        device, inode = (int(part) for part in value.split(":"))
        info = os.fstat((sys.stderr if stream is None else stream).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def _syslog_handler(path):
    """A handler sending to the syslog socket at ``path`` (facility cron);
    raises OSError at once when nothing listens there (Python's own would
    wait for the first record), and a record it cannot send later is one
    line on standard error, not a traceback per record."""
    import logging.handlers
    import socket
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        probe = socket.socket(socket.AF_UNIX, kind)
        try:
            probe.connect(path)
            break
        except OSError as error:
            if kind == socket.SOCK_STREAM:
                raise error
        finally:
            probe.close()

    class SysLogHandler(logging.handlers.SysLogHandler):
        said = False

        def handleError(self, record):
            if not self.said:
                self.said = True
                error = sys.exc_info()[1]
                sys.stderr.write("cronpolicy: cannot log to syslog at %s: %s\n" % (
                    path, getattr(error, "strerror", None) or error))

    return SysLogHandler(path, logging.handlers.SysLogHandler.LOG_CRON)


def _failures_said_once(handler, where):
    """A record ``handler`` cannot write (standard error full, closed or its
    reader gone) is one line on standard error, the first time, naming
    ``where`` (None: standard error itself, where nothing can be said):
    Python's logging printed a traceback and the record for each one.  The
    run goes on and its exit code is main()'s: the database has the run.
    (A log file's handler says its own: _file_handler.)"""
    said = []

    def handleError(record):
        if said:
            return
        said.append(True)
        error = sys.exc_info()[1]
        if where is None:
            return
        try:
            sys.stderr.write("cronpolicy: cannot write the log to %s: %s\n" % (
                where, getattr(error, "strerror", None) or error))
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
    handler.handleError = handleError


def _file_handler(path):
    """A handler appending to the log file at ``path``.  Opened without
    waiting: a FIFO nobody reads made the start wait forever in open()
    (now OSError, ENXIO, at once; one a collector reads is fine).  A record
    it cannot write later (a full file system) is one line on standard
    error, once, not a traceback per record."""
    import errno
    import logging
    import stat

    from cronpolicy.safety import planted

    def refuse(problem, filename):
        if problem:
            raise OSError(errno.EPERM, problem + "; other users could make cronpolicy write "
                          "into any file", filename)

    class FileHandler(logging.FileHandler):
        said = False

        def _open(self):
            # A link is followed only when it is this user's or root's
            # (/var/log/x -> ...); one another user planted (in /tmp) would
            # have root append to whatever file it names.  No link there
            # now: none is followed (O_NOFOLLOW), should one be planted
            # before the open; a link of root's in a sticky directory
            # cannot be swapped for another.
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
            try:
                info = os.lstat(self.baseFilename)
            except FileNotFoundError:
                info = None
            if info is None or not stat.S_ISLNK(info.st_mode):
                flags |= os.O_NOFOLLOW
            else:
                refuse(planted(info), self.baseFilename)
            descriptor = os.open(self.baseFilename, flags, 0o666)
            try:
                # (A hard link to root's file: judged on what was opened.)
                refuse(planted(os.fstat(descriptor)), self.baseFilename)
                os.set_blocking(descriptor, True)
                return open(descriptor, "a", encoding=self.encoding, errors=self.errors)
            except BaseException:
                os.close(descriptor)
                raise

        def handleError(self, record):
            if not self.said:
                self.said = True
                error = sys.exc_info()[1]
                sys.stderr.write("cronpolicy: cannot write log file %s: %s\n" % (
                    self.baseFilename, getattr(error, "strerror", None) or error))

    return FileHandler(path, encoding="utf-8")


def _journal_formatter():
    import logging

    class JournalFormatter(logging.Formatter):
        """Every line of a record (a traceback's too) with its priority."""

        def format(self, record):
            prefix = "<%d>" % priority(record.levelno)
            return "\n".join(prefix + line for line in super().format(record).split("\n"))

    return JournalFormatter(JOURNAL_FORMAT)


class LogSetup:
    """Where and from which level records go: standard error (default
    WARNING) or ``log_file`` (default INFO), ``verbose`` and ``quiet``
    steps of ten down and up."""

    def __init__(self, log_file=None, verbose=0, quiet=0, syslog=None):
        """``syslog``: the syslog socket to log to (no log file given)."""
        self.log_file = log_file
        self.syslog = None if log_file else syslog
        self._steps = 10 * quiet - 10 * verbose
        self.level = self._level()
        self.configured = False
        #: main() has begun: a root logger set up from then on is the script's.
        self.main_started = False
        self._lock = _thread.allocate_lock()

    def _level(self):
        base = INFO if self.log_file or self.syslog else WARNING
        return min(max(base + self._steps, DEBUG), CRITICAL)

    def use_syslog(self, socket):
        """Log to the syslog ``socket`` from now on (the config file's
        ``syslog`` is known only once the settings are read), unless a log
        file was given; set up now (again, if it was), so that a socket
        nothing listens on is said at once: raises OSError."""
        if self.log_file or (socket == self.syslog and self.configured):
            return
        self.syslog = socket
        self.level = self._level()
        self.configured = False
        self.configure()

    def check(self):
        """Open the log file or the syslog socket now (raises OSError), so
        that a bad path is said before the gate, not at the first record."""
        if self.log_file or self.syslog:
            self.configure()

    def configure(self):
        """Set ``logging`` up (root handler, level, UTC times), once.

        Once main() runs, a root logger the script set up itself is left as
        it is (the gate's records go through its handlers).  A signal
        handler that logs while this very thread is configuring (SIGTERM
        during the first self.logger) must not wait for itself: after a
        second it logs as logging stands."""
        if self.configured:
            return
        if not self._lock.acquire(timeout=1.0):
            return
        try:
            if self.configured:
                return
            import logging
            import time
            root = logging.getLogger()
            if self.main_started and root.handlers:
                self.configured = True
                return
            if self.log_file:
                handler = _file_handler(self.log_file)
            elif self.syslog:
                handler = _syslog_handler(self.syslog)
            else:
                handler = logging.StreamHandler(sys.stderr)
                _failures_said_once(handler, None)
            if self.syslog and not self.log_file:
                formatter = logging.Formatter(SYSLOG_FORMAT)
            elif not self.log_file and stderr_is_the_journal():
                formatter = _journal_formatter()
            else:
                formatter = logging.Formatter(FORMAT, DATE_FORMAT)
                formatter.converter = time.gmtime
            handler.setFormatter(formatter)
            for old in list(root.handlers):
                root.removeHandler(old)
            root.addHandler(handler)
            root.setLevel(self.level)
            self.configured = True
        finally:
            self._lock.release()

    def must_configure_before_main(self):
        """Whether main() must find ``logging`` set up: asked for (a log
        file, -v or -q: Python's last resort prints WARNING and above), or
        imported already by the script, which may log through it."""
        return (self.log_file is not None or self.syslog is not None or self.level != WARNING
                or "logging" in sys.modules)


class DeferredLogger:
    """The parts of logging.Logger the gate uses, for logger ``name``."""

    def __init__(self, name, setup):
        self.name = name
        self.setup = setup

    def real(self):
        import logging
        self.setup.configure()
        return logging.getLogger(self.name)

    def isEnabledFor(self, level):
        return level >= self.setup.level

    def log(self, level, message, *args, **kwargs):
        if level >= self.setup.level:
            self.real().log(level, message, *args, **kwargs)

    def debug(self, message, *args, **kwargs):
        self.log(DEBUG, message, *args, **kwargs)

    def info(self, message, *args, **kwargs):
        self.log(INFO, message, *args, **kwargs)

    def warning(self, message, *args, **kwargs):
        self.log(WARNING, message, *args, **kwargs)

    def error(self, message, *args, **kwargs):
        self.log(ERROR, message, *args, **kwargs)

    def exception(self, message, *args, **kwargs):
        kwargs.setdefault("exc_info", True)
        self.log(ERROR, message, *args, **kwargs)

    def critical(self, message, *args, **kwargs):
        self.log(CRITICAL, message, *args, **kwargs)
