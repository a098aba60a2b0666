"""The database with its offline fallbacks, behind the same interfaces.

``FallbackSource`` (IPolicySource) reads from the store; when the database
is out of reach it answers from the host's policy cache, else with
``rows.unavailable_inputs`` (nothing known: on_database_error decides).
``FallbackRecorder`` (IRunRecorder) writes to the store; what cannot be
written there goes to the spool, with the run's real times.  A record the
database refuses for its data (``DatabaseError.refused``: a constraint, a
guard trigger, a value out of range or too long) is no outage: the
database answers, and would refuse the same record at every flush.  Such a
start raises (the run must not go on unseen: exit 4); such a skip, or an
end that not even its status alone gets into the database, is kept in the
spool's rejected/ directory, never sent again, with one warning naming the
file; and the database stays reachable for what follows.  The gate talks
to these two and never branches on where an answer came from, except to
say so in the log.
"""

import datetime
import os

from cronpolicy.errors import CronPolicyError, DatabaseError, DeadlineExceeded, SchemaError
from cronpolicy.rows import RunEnd, RunHandle, unavailable_inputs


class FallbackSource:
    """IPolicySource: the store, else the cache, else "nothing known"."""

    def __init__(self, store, cache, logger):
        self.store = store
        self.cache = cache
        self.logger = logger

    def load_inputs(self, name, history_runs):
        """Raises only what no fallback may paper over: a missing or old
        schema, refused credentials, an unknown database (exit 4)."""
        try:
            inputs = self.store.load_inputs(name, history_runs)
        except SchemaError:
            raise
        except DatabaseError as error:
            if not error.transient:
                raise
            cached = self.cache.load_inputs(name, history_runs)
            if self.cache.rejected is not None:
                aside, why = self.cache.rejected
                self.logger.warning("the policy cache %s is damaged (%s); %s", self.cache.path,
                                    why, "moved it to %s" % aside if aside else "ignoring it")
            if cached is not None:
                return cached._replace(error=error)
            return unavailable_inputs(datetime.datetime.now(datetime.timezone.utc), error)
        try:
            self.cache.keep(inputs)
        except OSError as error:
            self.logger.warning("cannot write the policy cache %s: %s", self.cache.path,
                                error.strerror)
        return inputs


class FallbackRecorder:
    """IRunRecorder: the store while it answers, the spool once it does not."""

    def __init__(self, store, spool, logger):
        """``spool``: a Spool, or a function making one (the start path then
        imports the spool module only when a record must go there)."""
        self.store = store
        self._spool_or_maker = spool
        self.logger = logger
        #: False once the database failed us: every later write goes to the
        #: spool at once instead of waiting out another timeout.
        self.reachable = True

    @property
    def spool(self):
        if callable(self._spool_or_maker):
            self._spool_or_maker = self._spool_or_maker()
        return self._spool_or_maker

    def _failed(self, error, what):
        self.reachable = False
        self.logger.warning("%s (%s); %s", what[0], error, what[1])

    def _keep_refused(self, error, what, **record):
        """Say once that the database refused ``what`` for its data, and keep
        the record in the spool's rejected/ (never sent again)."""
        try:
            kept = "kept in %s" % self.spool.keep_refused(str(error), **record)
        except (OSError, CronPolicyError) as problem:   # (ConfigError: an unsafe spool)
            kept = "it is lost (cannot keep it in %s: %s)" % (
                self.spool.directory, getattr(problem, "strerror", None) or problem)
        self.logger.warning("the database refused %s for its data (%s); %s", what, error, kept)

    def _spool(self, write):
        """``write()``'s result, or None (said) when the spool could not take
        the record: a full or read-only file system, or a spool directory
        that is no safe directory (ConfigError; after main() ran, that must
        not end the run as a gate error that never ran it)."""
        try:
            return write()
        except (OSError, CronPolicyError) as error:
            self.logger.error("cannot spool the run record in %s: %s; it is lost",
                              self.spool.directory, getattr(error, "strerror", None) or error)
            return None

    def record_skip(self, record):
        if self.reachable:
            try:
                return self.store.record_skip(record)
            except DatabaseError as error:
                if error.refused:
                    # Nothing runs: the skip alone is not in the history.
                    self._keep_refused(error, "the skip's record", record=record)
                    return RunHandle(None, record)
                self._failed(error, ("cannot record the skip", "spooling it"))
        return self._spool(lambda: self.spool.record_skip(record))

    def record_start(self, record, may_spool=True):
        """A RunHandle; its id is None when the start could not be written
        (the whole run is spooled at its end).  With ``may_spool`` false the
        store's error is raised instead (a run that must not go unrecorded),
        as it always is when the database refused the start (``denied``:
        not this login's script; ``refused``: for its data): the database
        answers, so the run would go on unseen by `deploy wait`, and the
        spooled start would be refused again at every flush."""
        if self.reachable:
            try:
                return self.store.record_start(record)
            except DatabaseError as error:
                if error.denied or error.refused:
                    raise       # it must not run unseen
                if not may_spool:
                    self.reachable = False
                    raise
                self._failed(error, ("cannot record the start",
                                     "running and spooling the record"))
        return self.spool.record_start(record)

    def record_finish(self, run, end):
        """True when the end reached the database, False when it was
        spooled, None when it is in neither (said here): the database
        refused it for its data and not even its status alone could be
        written, or the spool could not take it.

        An end refused for its data (an exit code past 32 bits, say) is
        written again with its status alone, so that the run does not stay
        running in the database, unrenewed, until its lease runs out and it
        is recorded abandoned: the run's outcome is known, only a detail
        of it is not taken.  What the database refused is said."""
        if run.id is not None and self.reachable:
            try:
                self.store.record_finish(run, end)
                return True
            except DatabaseError as error:
                if not error.refused:
                    self._failed(error, ("cannot record the end of run #%s" % run.id,
                                         "spooling it"))
                else:
                    return self._finish_refused(run, end, error)
        return self._spooled(lambda: self.spool.record_finish(run, end))

    def _spooled(self, write):
        """False once ``write`` spooled an end; None when the spool could not
        take it (said): no one may then read that it is spooled."""
        done = []
        self._spool(lambda: done.append(write()))
        return False if done else None

    def _finish_refused(self, run, end, error):
        alone = RunEnd(status=end.status)
        try:
            self.store.record_finish(run, alone)
        except DatabaseError as again:
            if not again.refused:
                self.reachable = False      # lost meanwhile: its status waits in the spool
                self.logger.warning("the database refused the end of run #%s for its data "
                                    "(%s), and the database was lost before its status alone "
                                    "was written (%s); spooling the status", run.id, error,
                                    again)
                return self._spooled(lambda: self.spool.record_finish(run, alone))
            self._keep_refused(again, "the end of run #%s, even its status alone" % run.id,
                               run=run, end=end)
            self.logger.warning("run #%s stays recorded as running until its lease runs out, "
                                "then as abandoned", run.id)
            return None
        self.logger.warning("the database refused the end of run #%s for its data (%s); "
                            "recorded its status (%s) alone", run.id, error, end.status)
        return True

    def flush(self, timeout):
        """After a run that reached the database: write what earlier runs on
        this host spooled (best effort, at most ``timeout`` seconds)."""
        if not self.reachable or not spool_waits(self._spool_or_maker):
            return
        try:
            written = self.spool.flush(self.store, timeout=timeout)
            self.logger.info("wrote %d spooled run record%s", written,
                             "" if written == 1 else "s")
        except DatabaseError as error:
            self.reachable = not isinstance(error, DeadlineExceeded)
            self.logger.info("spooled run records stay spooled for now: %s", error)
        except (OSError, CronPolicyError) as error:
            # (ConfigError: rejected/ unsafe, so a refused entry stays
            # where it is.  After a run: main()'s exit code stands, the
            # run having run, and is not a gate error's "not running".)
            self.logger.warning("cannot tidy the spool %s: %s", self.spool.directory,
                                getattr(error, "strerror", None) or error)
        finally:
            for line in rejected_lines(self.spool):
                self.logger.warning("%s", line)


def rejected_lines(spool):
    """One line for each file the last flush of ``spool`` moved aside, or
    could not read."""
    return ["a spooled run record was refused (%s); moved it to %s, where it is not sent "
            "again" % (why, aside) if aside is not None else
            "a spooled run record was refused (%s); it stays in the spool" % why
            for aside, why in spool.rejected] + [
        "cannot read the spooled run record %s (%s); it stays in the spool" % (path, why)
        for path, why in getattr(spool, "unread", ())]


def spool_waits(spool):
    """Whether ``spool`` (a Spool, or a function with its ``directory``) holds
    entries; read without importing the spool module when it does not."""
    if not callable(spool):
        return bool(len(spool))
    try:
        names = os.listdir(spool.directory)
    except OSError:
        return False        # none there (or unreadable: the Spool says so when used)
    return any(name.endswith(".json") for name in names)
