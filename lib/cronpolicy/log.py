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
"""

import _thread
import sys

DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class LogSetup:
    """Where and from which level records go: standard error (default
    WARNING) or ``log_file`` (default INFO), ``verbose`` and ``quiet``
    steps of ten down and up."""

    def __init__(self, log_file=None, verbose=0, quiet=0):
        self.log_file = log_file
        base = INFO if log_file else WARNING
        self.level = min(max(base - 10 * verbose + 10 * quiet, DEBUG), CRITICAL)
        self.configured = False
        #: main() has begun: a root logger set up from then on is the script's.
        self.main_started = False
        self._lock = _thread.allocate_lock()

    def check(self):
        """Open the log file now (raises OSError), so that a bad path is
        said before the gate, not at the first record."""
        if self.log_file:
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
                handler = logging.FileHandler(self.log_file, encoding="utf-8")
            else:
                handler = logging.StreamHandler(sys.stderr)
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
        return self.log_file is not None or self.level != WARNING or "logging" in sys.modules


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
