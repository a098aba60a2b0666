"""`cronpolicy relay`: one database connection for many running scripts.

Each running script normally holds a connection (LISTEN) or polls on one
(behind a pooler): 50,000 running scripts were 50,000 server connections,
or 50,000 to 60,000 transactions a second.  A relay serves them instead
(scripts with ``relay = HOST:PORT``; their side is cronpolicy.relayed):

* it holds one connection, LISTENs for policy changes and, on each (at
  most every REREAD_AT_MOST_EVERY), when a covering window is due, and at
  least every RESYNC_INTERVAL, reads the policy once and sends each script
  whose stop verdict changed the new one (policy.stop_verdict, the rule
  registry's, as a script watching for itself would work it out);
* every poll_interval it renews the leases of the runs it heard from since
  the last renewal, all in one statement (cronpolicy.renew_relayed, schema
  patch 0020), each as of when its script last spoke, and reads the
  policy's version along, so a lost notification costs at most one poll;
  a script that says it became safe (or not) is renewed within RUSH;
* it ticks every TICK while its database answers and its last read of
  the policy and its last renewal passed: a script that hears no tick for relayed.SILENCE
  (renewals do not count) watches the database itself, as does one whose
  relay closes, goes away or does not know its run.

One thread, one selector: a statement that stalls stops the ticks too, so
the scripts leave a relay that cannot reach its database within a second.
The relay keeps nothing that matters: kill it and the scripts carry on
directly; start it again and new runs use it.
"""

import logging
import os
import selectors
import signal
import socket
import time

from cronpolicy import config, policy, relayed
from cronpolicy.errors import CronPolicyError, DatabaseError, UsageError
from cronpolicy.store.postgresql import PostgresStore
from cronpolicy.watcher import REREAD_AT_MOST_EVERY, RESYNC_INTERVAL

LOG = logging.getLogger("cronpolicy.relay")
TICK = relayed.TICK
#: A change of is_safe_to_interrupt() is renewed this soon (not a poll later).
RUSH = 0.1
#: What one script may have waiting to be sent before the relay lets it go.
MAX_BACKLOG = 256 * 1024
#: How long a script may take to say which run it is.
HELLO_WITHIN = 5.0
#: Out of descriptors, the relay stops accepting for this long.
ACCEPT_PAUSE = 1.0


class RelayStore(PostgresStore):
    """The relay's connection: held whatever the server's load (it is one
    for many scripts), and the batch renewal."""

    #: While serving, a statement is tried once: the relay's loop tries
    #: again at its next poll, and answers its scripts and signals in
    #: between, where retrying for decision_timeout stopped it for as long.
    serving = False

    def _become_scarce(self):
        pass

    def _retrying(self, query, parameters, doing, only_when_full=False, idempotent=False):
        if not self.serving:
            return super()._retrying(query, parameters, doing, only_when_full, idempotent)
        return self._execute(query, parameters, doing, idempotent=idempotent)

    def renew_relayed(self, runs):
        """[(id, known, renewed)] for ``runs`` (Scripts), and the policy's version.
        Each lease is renewed as of its script's last word, its age taken
        as the statement is sent: ages taken before a connection is made
        lengthened every lease by the time connecting took."""
        fixed = {
            "ids": [run.id for run in runs], "keys": [run.key for run in runs],
            "safe": [run.safe for run in runs],
            "slot_names": [run.slot[0] if run.slot else None for run in runs],
            "slots": [run.slot[1] if run.slot else None for run in runs],
            "ttls": [run.ttl for run in runs]}

        def parameters():
            now = time.monotonic()
            return dict(fixed, ages=[now - run.heard_at for run in runs])
        rows = self._execute("renew_relayed", parameters,
                             "renew the leases of relayed runs (a relay's login needs the "
                             "role cronpolicy_relay)", idempotent=True)
        version = rows[0]["version"] if rows else None
        return [(row["id"], row["known"], row["renewed"]) for row in rows], version


class Script:
    """One connected script: its run, what it last said and what it was told."""

    def __init__(self, sock, address):
        self.sock = sock
        self.address = address
        self.incoming = b""
        self.outgoing = b""
        self.id = None              # the run, once it said which
        self.connected_at = time.monotonic()
        self.heard_at = self.connected_at
        self.sequence = None        # the last word not yet renewed
        self.told = ()              # the verdict last sent (its reason), () before any
        self.known = False          # its run was found (by id and key) in this database

    def hello(self, message):
        """Take the script's first word; ValueError if it is not one."""
        run_id, key = message.get("watch"), message.get("key")
        # What the batch renewal sends the database must be what it takes:
        # one value it refuses fails the statement, and so every script's
        # renewal, at every poll while this script stays connected.
        if (not isinstance(run_id, int) or isinstance(run_id, bool)
                or not 1 <= run_id <= relayed.MAX_RUN_ID or not relayed.storable(key)):
            raise ValueError("the first word must name the run and its key")
        slot = message.get("slot")
        if slot is not None and not (
                isinstance(slot, list) and len(slot) == 2 and relayed.storable(slot[0])
                and isinstance(slot[1], int) and not isinstance(slot[1], bool)
                and 0 <= slot[1] <= relayed.MAX_SLOT):
            raise ValueError("slot must be [NAME, NUMBER]")
        needs = message.get("needs") or []
        if not (isinstance(needs, list) and all(relayed.storable(each) for each in needs)):
            raise ValueError("needs must be a list of service names")
        name, host = message.get("name"), message.get("host")
        if not relayed.storable(name) or not relayed.storable(host):
            raise ValueError("name and host must be text")
        ttl = message.get("ttl", config.DEFAULT_LEASE_TTL)
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not 1 <= ttl <= 3600:
            raise ValueError("ttl must be seconds, from 1 to 3600")
        self.id, self.key, self.name, self.host = run_id, key, name, host
        self.needs, self.slot, self.ttl = tuple(needs), slot, float(ttl)
        self.ignore = bool(message.get("ignore"))
        self.safe = bool(message.get("safe"))
        self.sequence = 0

    def alive(self, message):
        sequence = message.get("alive")
        if not isinstance(sequence, int) or isinstance(sequence, bool):
            raise ValueError("alive must carry a number")
        self.sequence = sequence
        self.heard_at = time.monotonic()
        changed = bool(message.get("safe")) != self.safe
        self.safe = bool(message.get("safe"))
        return changed


class Relay:
    """The server: accept scripts, keep their leases and tell them their verdicts."""

    def __init__(self, settings, listener, store):
        self.settings = settings
        self.listener = listener
        self.store = store
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, None)
        self.scripts = {}           # socket -> Script
        self.inputs = None
        self.lines = {}         # verdict lines of the last read (see _tell_verdict)
        self.version = None
        self.answered_at = None     # when the database last answered (monotonic)
        self.unread = True          # the last read of the policy failed (or none yet)
        self.unrenewed = False      # the last renewal of leases failed
        self.database_fd = None
        self.next_read = 0.0        # when to read the policy whole
        self.last_read = 0.0
        self.next_renewal = 0.0
        self.stopping = None        # why it stops, once asked to
        self.accepting_at = None    # when to accept again, while paused
        # Written to once stopping: it ends the loop's select and any wait
        # for the database at once (the store's waits watch it too).
        self.wake_reader, self.wake_writer = os.pipe()     # (not inherited: PEP 446)
        os.set_blocking(self.wake_writer, False)
        self.selector.register(self.wake_reader, selectors.EVENT_READ, "wake")
        store.wake = self.wake_reader
        store.serving = True

    # The loop ---------------------------------------------------------------------

    def serve(self):
        """Serve until ``stop()``; then say goodbye to every script."""
        next_tick = 0.0
        while self.stopping is None:
            now = time.monotonic()
            if now >= self.next_read:
                self._read_policy()
            if now >= self.next_renewal:
                self._renew()
            if time.monotonic() >= next_tick:
                self._tick()
                next_tick = time.monotonic() + TICK
            self._watch_database()
            if self.accepting_at is not None and time.monotonic() >= self.accepting_at:
                self.accepting_at = None
                self.selector.register(self.listener, selectors.EVENT_READ, None)
            deadline = min(next_tick, self.next_read, self.next_renewal,
                           self.accepting_at or next_tick)
            for key, _ in self.selector.select(max(0.0, deadline - time.monotonic())):
                if key.data is None:
                    self._accept()
                elif key.data == "wake":
                    break
                elif key.data == "database":
                    self._notified()
                else:
                    self._readable(key.fileobj)
        for sock in list(self.scripts):
            self._send(sock, {"bye": self.stopping})
            self._drop(sock, None)
        self.store.close()
        # (A signal after this writes nowhere: the number may be reused.)
        writer, self.wake_writer = self.wake_writer, None
        for descriptor in (self.wake_reader, writer):
            os.close(descriptor)

    def stop(self, why):
        """Stop serving (a signal handler's call: it may come during a wait
        for the database, which then ends at once)."""
        self.stopping = why
        if self.wake_writer is None:
            return      # served already
        try:
            os.write(self.wake_writer, b"!")
        except OSError:
            pass        # full: it is readable already

    def _guarded(self, what, work):
        try:
            result = work()
        except CronPolicyError as error:
            if self.stopping is not None:
                return None         # the wait was cut short: nothing to say
            if self.answered_at is not None:
                LOG.warning("cannot %s (will retry): %s", what, error)
            self.answered_at = None     # no ticks until it answers again
            self._forget_database()     # a new connection LISTENs anew
            return None
        if self.answered_at is None:
            LOG.info("the policy database answers")
        self.answered_at = time.monotonic()
        return result

    def _tick(self):
        if (self.unread or self.unrenewed or self.answered_at is None
                or time.monotonic() - self.answered_at > max(
                    2 * self.settings.poll_interval, 1.0)):
            tick = None     # silent: the scripts watch for themselves
        else:
            tick = relayed.encode({"tick": self.version})     # once for all
        for sock, script in list(self.scripts.items()):
            if script.id is not None:
                if tick is not None:
                    self._send_bytes(sock, script, tick)
            elif time.monotonic() - script.connected_at > HELLO_WITHIN:
                # (silent or not: each holds a descriptor)
                self._drop(sock, "said nothing for %gs" % HELLO_WITHIN)

    def _watch_database(self):
        """LISTEN on the current connection (again after a reconnect)."""
        self._guarded("listen for policy changes", self.store.listen)
        fd = self.store.fileno()
        if fd == self.database_fd:
            return
        self._forget_database()
        self.database_fd = fd
        if fd is not None:
            self.selector.register(fd, selectors.EVENT_READ, "database")
            self.next_read = 0.0        # notifications may have been missed meanwhile

    def _notified(self):
        if self._guarded("read policy notifications", self.store.take_notifications):
            self.next_read = min(self.next_read, self.last_read + REREAD_AT_MOST_EVERY)
        if self.store.fileno() is None:
            self._forget_database()

    def _forget_database(self):
        """Stop watching the connection's descriptor: the next connection
        may get the same number, and the selector must not hold it then."""
        if self.database_fd is not None:
            try:
                self.selector.unregister(self.database_fd)
            except (KeyError, ValueError):
                pass
            self.database_fd = None

    # The policy -------------------------------------------------------------------

    def _read_policy(self):
        self.last_read = time.monotonic()
        inputs = self._guarded("read the policy", lambda: self.store.load_inputs("", 1))
        if inputs is None:
            # Renewals may still pass, but the verdicts it sends are stale:
            # no ticks until a read passes (the scripts watch for themselves).
            self.unread = True
            self.next_read = time.monotonic() + self.settings.poll_interval
            return
        self.unread = False
        self.inputs = inputs
        self.lines = {}         # each verdict's line, encoded once for all who get it
        self.next_read = time.monotonic() + RESYNC_INTERVAL
        told = 0
        for sock, script in list(self.scripts.items()):
            if script.known:
                told += self._tell_verdict(sock, script)
        if told:
            LOG.info("told %d of %d scripts a new verdict, %.0f ms after reading the policy",
                     told, len(self.scripts), 1000 * (time.monotonic() - self.last_read))

    def _tell_verdict(self, sock, script):
        """Send the script its verdict if it changed (True); keep the next
        read no later than the next window that covers it begins."""
        inputs = self.inputs
        if inputs is None or self.unread:
            return False    # told after the next read that passes (it tells what changed)
        stop = policy.stop_verdict(inputs, script.name, script.host, script.ignore,
                                   script.needs)
        said = None if stop is None else stop.reason
        changed = said != script.told
        if changed:
            script.told = said
            message = relayed.verdict_message(stop)
            key = None if message is None else tuple(message.values())
            line = self.lines.get(key)
            if line is None:
                line = self.lines[key] = relayed.encode({"verdict": message})
            self._send_bytes(sock, script, line)
        if not inputs.windows:
            return changed      # no window can begin
        upcoming = policy.next_window_start(inputs, script.name, script.host, script.needs)
        if upcoming is not None:
            until = max(0.0, (upcoming - inputs.now).total_seconds())
            self.next_read = min(self.next_read, self.last_read + until + 0.01)
        return changed

    # Leases -----------------------------------------------------------------------

    def _renew(self):
        now = time.monotonic()
        due = [script for script in self.scripts.values()
               if script.id is not None and script.sequence is not None]
        self.next_renewal = now + self.settings.poll_interval
        if not due:
            version = self._guarded("read the policy's version", self.store.policy_version)
            self._moved(version)
            return
        answer = self._guarded("renew %d leases" % len(due),
                               lambda: self.store.renew_relayed(due))
        # Reads may still pass, but leases it cannot renew run out: no
        # ticks until a renewal passes (the scripts renew their own).
        self.unrenewed = answer is None
        if answer is None:
            return      # the words stay unrenewed: the next poll tries again
        rows, version = answer
        # One row for each script, in order: two connections may name one
        # run id (another database's run, or anyone's guess) with their own keys.
        if len(rows) != len(due) or any(row[0] != script.id for row, script in zip(rows, due)):
            LOG.warning("the renewal of %d leases answered for other runs: not used", len(due))
            return
        for script, (_, known, renewed) in zip(due, rows):
            sock, sequence = script.sock, script.sequence
            script.sequence = None
            if sock not in self.scripts:
                continue        # let go of meanwhile
            if not known:
                # (Which database is not said: anyone may connect and ask.)
                self._send(sock, {"unknown": "no such run with that key in the relay's database"})
                self._drop(sock, None)
                continue
            if renewed:
                self._send(sock, {"renewed": sequence})
            else:
                self._send(sock, {"lost": "its lease ran out, or its fleet-wide slot "
                                          "went to another run"})
            if not script.known:
                # Its verdict only now: that of another database's policy
                # would stop a script that is no run here.
                script.known = True
                self._tell_verdict(sock, script)
        self._moved(version)

    def _moved(self, version):
        if version is None:
            return
        if version != self.version:
            if self.version is not None or self.inputs is None:
                self.next_read = min(self.next_read, self.last_read + REREAD_AT_MOST_EVERY)
            self.version = version

    # Scripts ----------------------------------------------------------------------

    def _accept(self):
        try:
            sock, address = self.listener.accept()
        except BlockingIOError:
            return
        except OSError as error:
            # Out of descriptors: the scripts waiting watch for themselves
            # (their connect times out); stop asking for a while rather
            # than spin on a listener that stays readable.
            LOG.warning("cannot accept scripts for %gs: %s", ACCEPT_PAUSE, error)
            self.selector.unregister(self.listener)
            self.accepting_at = time.monotonic() + ACCEPT_PAUSE
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.scripts[sock] = Script(sock, address)
        self.selector.register(sock, selectors.EVENT_READ, "script")

    def _readable(self, sock):
        script = self.scripts.get(sock)
        if script is None:
            return
        try:
            data = sock.recv(relayed.MAX_LINE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock, None)      # the script ended, or its host is gone
            return
        try:
            lines, script.incoming = relayed.split_lines(script.incoming, data)
            for line in lines:
                self._heard(sock, script, line)
        except ValueError as error:
            self._send(sock, {"bye": "cannot read that: %s" % error})
            self._drop(sock, "sent what a script does not: %s" % error)

    def _heard(self, sock, script, line):
        message = relayed.decode(line)
        if script.id is None:
            script.hello(message)
            script.heard_at = time.monotonic()
            # Is the run known here?  Soon, with the others that arrive
            # meanwhile; its verdict once it is.
            self.next_renewal = min(self.next_renewal, time.monotonic() + RUSH)
        elif "alive" in message:
            if script.alive(message):
                self.next_renewal = min(self.next_renewal, time.monotonic() + RUSH)
        else:
            raise ValueError("expected an alive word")

    def _send(self, sock, message):
        script = self.scripts.get(sock)
        if script is not None:
            self._send_bytes(sock, script, relayed.encode(message))

    def _send_bytes(self, sock, script, data):
        script.outgoing += data
        try:
            sent = sock.send(script.outgoing)
            script.outgoing = script.outgoing[sent:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(sock, None)
            return
        if len(script.outgoing) > MAX_BACKLOG:
            self._drop(sock, "reads nothing of what it is sent")

    def _drop(self, sock, why):
        script = self.scripts.pop(sock, None)
        if why and script is not None:
            LOG.warning("let go of %s (run #%s): %s", script.address, script.id, why)
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()


def listen_on(address):
    """A listening socket on HOST:PORT; UsageError, one line, if it cannot be had."""
    try:
        host, port = relayed.parse_address(address)
    except ValueError as error:
        raise UsageError("--listen: %s" % error) from None
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1024)
    except OSError as error:
        raise UsageError("cannot listen on %s: %s" % (address, error.strerror or error)) from None
    listener.setblocking(False)
    return listener


def more_descriptors():
    """Raise the soft limit on open files to the hard one: a socket per script."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def add_arguments(parsers):
    """The parser of relay (see cli.CommandParsers)."""
    sub = parsers.add("relay", "cmd_relay")
    sub.add_argument("--listen", default="127.0.0.1:7447", metavar="HOST:PORT",
                     help="where scripts connect (default 127.0.0.1:7447; scripts name it "
                          "with relay = HOST:PORT)")


def cmd_relay(args, settings):
    from cronpolicy import exitcodes
    if settings.backend != config.POSTGRESQL:
        raise UsageError("a relay serves a PostgreSQL database; %s is SQLite, whose scripts "
                         "read the file themselves" % settings.masked_dsn)
    # The database first: a relay that cannot serve says so now, not in a log.
    store = RelayStore(settings.dsn, settings.connect_timeout, settings.decision_timeout,
                       application_name="cronpolicy relay", source=settings.dsn_source,
                       network=settings.network, lease_ttl=settings.lease_ttl)
    store.load_inputs("", 1)
    store.renew_relayed([])         # may this login renew leases?
    listener = listen_on(args.listen)
    relay = Relay(settings, listener, store)
    limit = more_descriptors()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _: relay.stop(
            "the relay was stopped (%s)" % signal.Signals(number).name))
    logging.basicConfig(level=logging.INFO, format="cronpolicy relay: %(message)s")
    host, port = listener.getsockname()[:2]
    LOG.info("serving on %s for %s (up to about %d scripts; pid %d)",
             "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port),
             settings.masked_dsn, max(0, limit - 20), os.getpid())
    try:
        relay.serve()
    finally:
        listener.close()
    LOG.info("stopped")
    return exitcodes.OK
