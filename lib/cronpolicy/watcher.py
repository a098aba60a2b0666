"""While main() runs: keep the run's row alive and hear about stop requests.

A RunWatcher is one daemon thread per running script.  It

* renews the run's lease (and its fleet-wide slot's) with a heartbeat that
  also says what ``is_safe_to_interrupt()`` currently answers, every
  ``heartbeat_interval`` (sooner at first: FIRST_HEARTBEAT) and at once
  when that answer changes.  When the
  lease cannot be renewed before it runs out (``lease_ttl``), or the slot
  went to another run, the fleet no longer counts this run as running: it
  takes that as a stop request (``lease-lost``) and stops at its next safe
  point;
* learns of stop requests: on PostgreSQL it LISTENs on the channel that
  triggers on the policy tables notify, so a DBA's plain UPDATE arrives
  within milliseconds; on SQLite, and with ``watch = poll`` (behind a pooler
  in transaction mode), it reads the policy's version (one small row that
  moves with every change a listener would hear of) every
  ``poll_interval``, and the policy itself only when that moved, and then
  holds no connection between reads (``store.release()``).  Either way it
  also re-reads when a covering window is due to begin, and at least every
  RESYNC_INTERVAL.  What counts as a stop request is ``policy.stop_verdict``;
* while a stop is requested, asks the script every ``SAFE_POLL`` seconds
  whether it is safe to interrupt and, when it says so, has the main thread
  interrupted (see cronpolicy.interruption).

It sleeps in select() on the database's descriptor and a self-pipe (or, with
no descriptor to watch, on a lock that a wake releases): no busy
loop.  It never raises into the script; database trouble is logged and
retried.  A run whose start could not be written (the database out of
reach, or too slow, at that moment) keeps trying to write it, with its real
start time, each time it would re-read the policy: once it lands the run
holds a lease like any other, so the fleet sees it and it hears stop
requests.  Until then it has no lease to lose.  Given no store at all, the
watcher only sees a deferred SIGTERM through to a safe point.
"""

import _thread
import os
import time

from cronpolicy import config
from cronpolicy.errors import CronPolicyError, DatabaseError
from cronpolicy.policy import lease_lost, next_window_start, stop_verdict

#: While a stop is requested, how often the script is asked whether it is safe.
SAFE_POLL = 0.1

#: The first heartbeat comes this long into the run, the next ones twice as
#: far apart each time, up to heartbeat_interval (1s, 2s, 4s, then every 5s):
#: a run that dies is recorded as abandoned at its last heartbeat, and a short
#: one killed at 3s showed 0s; its recorded length now falls short of the
#: real one by at most half (in its first seconds) or a heartbeat_interval.
FIRST_HEARTBEAT = 1.0

#: Even with notifications, re-read the policy at least this often.
RESYNC_INTERVAL = 60.0

#: However many notifications arrive, re-read the policy at most this often
#: (anyone may NOTIFY the channel; a flood must not become a flood of reads).
REREAD_AT_MOST_EVERY = 0.1


class RunWatcher:

    def __init__(self, store, run, name, host, settings, interruption, logger=None,
                 ignore_policy=False, leased_from=None, inputs=None, needs=()):
        """``store`` None: the run started without the database;
        ``ignore_policy``: the run was forced past the policy, which
        therefore does not stop it either; ``leased_from``: time.monotonic()
        no later than the start of the run's first lease; ``inputs``: what
        the decision read, with the store already listening (or polling):
        the first re-read is then due when a re-read would be, not at once."""
        self.store = store
        self.run = run
        self.name = name
        self.host = host
        self.ignore_policy = ignore_policy
        self.needs = tuple(needs or ())     # the services the script declares it needs
        self.settings = settings
        self.interruption = interruption
        if logger is None:
            import logging
            logger = logging.getLogger(name)
        self.logger = logger
        #: The policy's stop verdict for this run now (or lease-lost), or None.
        self.stop = None
        self._lease_stop = None     # once the lease is lost, it stays lost
        self._lease_until = (time.monotonic() if leased_from is None
                             else leased_from) + settings.lease_ttl
        self._stopping = False
        # Held while no wake is pending (wake() releases it); the self-pipe,
        # for sleeping in select() with the database, is made when needed.
        # (_thread, not threading: the start path of a script that imports
        # no threading itself should not load it for one watcher.)
        self._wake = _thread.allocate_lock()
        self._wake.acquire()
        self._wake_read = self._wake_write = None
        self._done = _thread.allocate_lock()
        self._db_trouble = False
        self._said = set()      # what _guarded said failed, until it works again
        self._recovered = False
        self._rejoin_after = None       # seconds until the relay's next try (None: the first)
        # The decision's own read does not count against the limit on
        # re-reads (REREAD_AT_MOST_EVERY): a stop asked for as main() begins
        # is read at once, not up to 100 ms later (issue 32.2); a flood
        # still gets one read at once and then one per REREAD_AT_MOST_EVERY.
        self._last_read = 0.0
        self._first_check = 0.0         # re-read the policy at once
        # Polling: the policy's version as of the last whole read (None: read
        # it whole next time), and when to read it whole whatever the version.
        self._read_version = None
        self._reread_by = 0.0
        if inputs is not None and run.id is not None:
            self._first_check = self._next_check(inputs)

    def start(self):
        if self.store is not None and self.store.fileno() is not None:
            self._make_pipe()       # before any signal handler may want it
        self._done.acquire()
        _thread.start_new_thread(self._run, ())
        return self

    def _make_pipe(self):
        if self._wake_read is None:
            read, write = os.pipe()
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            self._wake_read, self._wake_write = read, write

    def wake(self):
        """Make the thread look again now (safe to call from a signal handler)."""
        try:
            self._wake.release()
        except RuntimeError:
            pass  # a wake is pending already
        if self._wake_write is not None:
            try:
                os.write(self._wake_write, b"!")
            except (BlockingIOError, OSError):
                pass  # a full pipe already means "wake up"

    def stop_watching(self):
        """Stop the thread.  It may be in the middle of a statement: wait for
        that (each is bounded by decision_timeout) rather than share the
        connection with the main thread's next one."""
        self._stopping = True
        self.wake()
        if self._done.acquire(timeout=self.settings.decision_timeout + 1.0):
            self._done.release()
            if self._wake_read is not None:
                os.close(self._wake_read)
                os.close(self._wake_write)
                self._wake_read = self._wake_write = None

    @property
    def stop_requested(self):
        return self.interruption.stop is not None

    # The thread ----------------------------------------------------------------

    def _run(self):
        try:
            if self.store is None:
                self._offline_loop()
                return
            # Watch the database until the relay's connection is made (if
            # one is configured), then through the relay, and the database
            # again should the relay fail, until it serves the run again.
            connector = self._relay_connector()
            while True:
                self._loop(connector)
                if connector is None:
                    break
                if self._stopping:
                    connector.abandon()     # the run ended before the relay answered
                    break
                if self._follow_relay(connector):
                    break
                connector = self._relay_connector(self._next_rejoin())
        except Exception:  # never let the watcher take the job down
            self.logger.exception("cronpolicy watcher stopped unexpectedly")
        finally:
            self._done.release()

    def _guarded(self, what, work):
        try:
            result = work()
        except CronPolicyError as error:
            if not self._db_trouble and what not in self._said:
                self.logger.warning("cannot %s (will retry): %s", what, error)
                self._said.add(what)
            self._db_trouble = True
            return None
        # What was said failing is said again only once it has worked: a
        # database that answers reads but refuses writes (turned read-only,
        # a standby) cleared the trouble at every read, and every heartbeat
        # warned anew.
        said = what in self._said
        self._said.discard(what)
        if (self._db_trouble or said) and not self._said:
            self.logger.info("policy database reachable again")
        if self._db_trouble:
            self._db_trouble = False
            self._recovered = True   # notifications may have been missed meanwhile
        return result

    def _loop(self, connector=None):
        """Watch the database until the run ends, or ``connector`` (a
        relayed.Connector) is done."""
        settings = self.settings
        self._guarded("listen for policy changes", self.store.listen)
        next_check = self._first_check
        gap = min(FIRST_HEARTBEAT, settings.heartbeat_interval)
        next_heartbeat = time.monotonic() + gap
        last_safe = False       # as the start record says
        while not self._stopping:
            if connector is not None and connector.done:
                self._first_check = next_check
                return
            if self._recovered:
                self._recovered = False
                next_check = 0.0
            if time.monotonic() >= next_check:
                next_check = self._evaluate()
            now = time.monotonic()
            safe = self.interruption.safe_now()
            if safe and self.stop_requested:
                self.interruption.request_interrupt()
            if now >= next_heartbeat or safe != last_safe:
                self._renew(safe)
                last_safe = safe
                gap = min(gap * 2, settings.heartbeat_interval)
                next_heartbeat = now + gap
            if (self._lease_stop is None and self.run.id is not None
                    and time.monotonic() >= self._lease_until):
                self._lose_lease("could not renew its lease for %gs" % settings.lease_ttl)
            # A notification may already have been read off the socket along
            # with the reply to a heartbeat or a read: then the socket will
            # not become readable for it, so look before sleeping too.
            if self.store.fileno() is not None and self._guarded(
                    "read policy notifications", self.store.take_notifications):
                next_check = self._soon(next_check)
            deadline = min(next_check, next_heartbeat,
                           self._lease_until if self.run.id is not None else next_check)
            if self.stop_requested:
                deadline = min(deadline, now + SAFE_POLL)
            self.store.release()
            database = self.store.fileno()
            if database is None and not self._db_trouble:
                # Nothing to LISTEN on (any more: connections became
                # scarce, or the server went away): poll meanwhile.
                next_check = min(next_check, self._last_read + settings.poll_interval)
            readable = self._sleep(deadline - time.monotonic(), database)
            if database is not None and database in readable:
                if self._guarded("read policy notifications", self.store.take_notifications):
                    next_check = self._soon(next_check)

    def _renew(self, safe):
        if self.run.id is None:
            return      # no row yet, so no lease: _evaluate writes the start first
        sent = time.monotonic()
        if sent >= self._lease_until and self._lease_stop is None:
            # Late (a paused process, a slow network): the lease may have run
            # out in between, whatever the renewal below will say.
            self._lose_lease("its lease ran out before it could be renewed")
        renewed = self._guarded("renew the run's lease",
                                lambda: self.store.heartbeat(self.run, safe))
        if renewed:
            self._lease_until = sent + self.settings.lease_ttl
        elif renewed is False and self._lease_stop is None:
            self._lose_lease("its lease ran out, or its fleet-wide slot went to another run")

    def _lose_lease(self, why):
        self._lease_stop = lease_lost("lease lost: %s" % why)
        self.logger.warning("the fleet no longer counts this run as running (%s); stopping "
                            "at the next safe point", self._lease_stop.reason)
        self.stop = self._lease_stop

    def _record_late_start(self):
        """Write the start that could not be written when the run began;
        True once it is in the database (its key makes it one row with a
        late copy of the first attempt, and with the spooled record)."""
        if self._lease_stop is not None:
            return False        # refused for its data (below), or no lease to hold
        sent = time.monotonic()
        refused = []

        def write():
            try:
                return self.store.record_start(self.run.record)
            except DatabaseError as error:
                if not error.refused:
                    raise
                refused.append(error)       # the database answers: no trouble to retry
                return None
        handle = self._guarded("record the start", write)
        if refused:
            # Never written, so never seen by the fleet (deploy wait) nor
            # stopped by a deploy: it stops as a run whose lease is lost.
            self._lease_stop = lease_lost("the database refused its start record for its "
                                          "data (%s)" % refused[0])
            self.logger.warning("the fleet cannot see this run: %s; stopping at the next "
                                "safe point", self._lease_stop.reason)
            self.stop = self._lease_stop
            return False
        if handle is None:
            return False
        self.run = handle
        self._lease_until = sent + self.settings.lease_ttl
        self.logger.info("recorded the start late, as run #%s: the fleet now sees this run",
                         handle.id)
        return True

    def _soon(self, next_check):
        """When to re-read after a change was announced: now, unless the
        last read was under REREAD_AT_MOST_EVERY ago."""
        return min(next_check, self._last_read + REREAD_AT_MOST_EVERY)

    def _sleep(self, timeout, database=None):
        """Wait for a wake, the database or ``timeout``; return what is readable."""
        timeout = max(0.0, timeout)
        if self._wake.acquire(blocking=False):
            return []                           # woken meanwhile
        if database is None:
            self._wake.acquire(timeout=timeout)  # held again once woken
            return []
        import select       # here: a no-op main() never sleeps
        if self._wake_read is None:
            self._make_pipe()
            if self._wake.acquire(blocking=False):
                return []       # woken while the pipe was being made
        try:
            readable, _, _ = select.select([self._wake_read, database], [], [], timeout)
        except (OSError, ValueError):
            time.sleep(SAFE_POLL)
            return []
        if self._wake_read in readable:
            try:
                while os.read(self._wake_read, 64):
                    pass
            except BlockingIOError:
                pass
        self._wake.acquire(blocking=False)      # the wake the pipe carried, if any
        return readable

    def _offline_loop(self):
        while not self._stopping:
            if self.stop_requested and self.interruption.safe_now():
                self.interruption.request_interrupt()
            self._sleep(SAFE_POLL if self.stop_requested else 3600.0)

    def _polling(self):
        return (self.settings.watch == config.WATCH_POLL or self.store is None
                or self.store.fileno() is None)

    def _next_check(self, inputs, interval=None):
        """When to look again after reading ``inputs``: at the next window
        start, else after ``interval`` (default: a poll interval when
        polling, else RESYNC_INTERVAL)."""
        if interval is None:
            interval = (self.settings.poll_interval if self._polling() or self._db_trouble
                        else RESYNC_INTERVAL)
        fallback = time.monotonic() + interval
        upcoming = next_window_start(inputs, self.name, self.host, self.needs)
        if upcoming is not None:
            until = (upcoming - inputs.now).total_seconds()
            return min(fallback, time.monotonic() + max(0.0, until) + 0.01)
        return fallback

    def _unmoved(self):
        """Polling: whether the policy's version is the one of the last whole
        read (and no whole read is due): then there is nothing to re-read.
        Read before the policy, so a change committed in between moves it
        past what the whole read records: seen again at the next poll."""
        if not self._polling():
            return False
        version = self._guarded("read the policy's version", self.store.policy_version)
        unmoved = (version is not None and version == self._read_version
                   and time.monotonic() < self._reread_by)
        self._read_version = version
        return unmoved

    def _evaluate(self):
        """Re-read the policy; return when to do it next (monotonic seconds)."""
        settings = self.settings
        self._last_read = time.monotonic()
        if self.run.id is None and not self._record_late_start():
            return time.monotonic() + min(settings.heartbeat_interval, settings.poll_interval * 5)
        if self._unmoved():
            return min(time.monotonic() + settings.poll_interval, self._reread_by)
        inputs = self._guarded("re-read the policy",
                               lambda: self.store.load_inputs(self.name, 1))
        if inputs is None:
            self._read_version = None
            return time.monotonic() + min(settings.heartbeat_interval, settings.poll_interval * 5)
        self._reread_by = self._next_check(inputs, RESYNC_INTERVAL)
        stop = self._lease_stop or stop_verdict(inputs, self.name, self.host,
                                                self.ignore_policy, self.needs)
        self._set_stop(stop)
        return self._next_check(inputs)

    def _set_stop(self, stop):
        if (stop and stop.reason) != (self.stop and self.stop.reason):
            if stop is not None:
                self.logger.info("stop requested: %s", stop.reason)
            else:
                self.logger.info("stop request withdrawn")
        self.stop = stop

    # Through a relay (cronpolicy.relayed) -----------------------------------------------

    def _relay_connector(self, after=0.0):
        """A relayed.Connector under way (connecting ``after`` seconds from
        now), or None: no relay for this run."""
        if (self.settings.relay is None or self.run.id is None
                or self.store.backend != config.POSTGRESQL):
            return None
        from cronpolicy import relayed
        return relayed.Connector(self.settings.relay, self.settings.connect_timeout,
                                 self.wake, after).start()

    def _next_rejoin(self):
        """Seconds until the relay is tried again: REJOIN_FIRST, then twice as
        long after each try that did not last (relayed's docstring)."""
        from cronpolicy import relayed
        after = self._rejoin_after or relayed.REJOIN_FIRST
        self._rejoin_after = min(2 * after, relayed.REJOIN_MOST)
        return after

    def _follow_relay(self, connector):
        """Watch through the relay until the run ends (True), or until the
        relay cannot be used (False: then watch the database directly).
        A relay that cannot be reached is a warning the first time, and
        said quietly when trying it again (``connector.after``) fails."""
        from cronpolicy import relayed
        trying_again = connector.after > 0
        try:
            channel = connector.take()
        except relayed.RelayGone as error:
            (self.logger.info if trying_again else self.logger.warning)(
                "%s; watching the policy database directly", error)
            return False
        if trying_again:
            self.logger.info("relay %s serves this run again", self.settings.relay)
        holding = self.store.hold_connection
        self.store.hold_connection = False      # the relay holds one for many scripts
        self.store.release()
        began = time.monotonic()
        try:
            return relayed.RelayedWatch(self, channel).run()
        except relayed.RelayGone as error:
            self.logger.warning("relay %s: %s; watching the policy database directly",
                                self.settings.relay, error)
            self._first_check = 0.0     # and read the policy at once
            if time.monotonic() - began >= relayed.REJOIN_MOST:
                self._rejoin_after = None   # it served long: try it again soon
            return False
        finally:
            channel.close()
            self.store.hold_connection = holding

    # What RelayedWatch reads and writes of the run's state.
    first_heartbeat = FIRST_HEARTBEAT

    @property
    def stopping(self):
        return self._stopping

    @property
    def lease_until(self):
        return self._lease_until

    @property
    def lease_standing(self):
        return self._lease_stop is None

    def lose_lease(self, why):
        self._lose_lease(why)

    def lease_renewed_from(self, sent):
        """A renewal of the word sent at ``sent`` (monotonic) came back."""
        self._lease_until = max(self._lease_until, sent + self.settings.lease_ttl)

    def set_stop(self, stop):
        """The relay's verdict (a lost lease stays lost)."""
        self._set_stop(self._lease_stop or stop)

    def sleep_until(self, deadline, descriptor):
        if self.stop_requested:
            deadline = min(deadline, time.monotonic() + SAFE_POLL)
        self._sleep(deadline - time.monotonic(), descriptor)
