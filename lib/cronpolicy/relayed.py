"""A running script's side of a relay (``relay = HOST:PORT``; the server is
cronpolicy.tooling.relay).

Through a relay a running script holds no database connection: the relay
holds one for many scripts, LISTENs for policy changes, tells each script
its stop verdict, and renews all their leases in one statement per poll.
The script says it is alive (and whether it is safe to interrupt) over one
TCP connection; the relay answers with ticks (several a second), the
renewals and the verdicts.

The script trusts the relay no further than it hears it: a relay that
closes the connection, says something it cannot read, does not know the
run (another database), or sends neither tick nor verdict for SILENCE
seconds (renewals do not count: a relay that cannot read the policy stops
ticking, and may still renew) is left, and the watcher watches the
database itself (the direct path), as it does with no relay configured,
until the relay serves it again: it tries again REJOIN_FIRST seconds
later, then twice as long each time up to REJOIN_MOST (a relay restarted
takes back the runs it served; one that keeps failing costs a connection
attempt every few minutes).  A lease counts as renewed only when the relay
says so, from the moment the script sent the word it renewed.

Messages are JSON objects, one per line, in both directions:

    script -> relay   {"watch": RUN_ID, "key": RUN_KEY, "name": ..., "host": ...,
                       "needs": [...], "ignore": false, "safe": false,
                       "slot": [NAME, SLOT] or null, "ttl": SECONDS}
                      {"alive": SEQ, "safe": true}
    relay -> script   {"tick": VERSION}   {"renewed": SEQ}   {"lost": REASON}
                      {"unknown": REASON}  {"verdict": null or {...}}  {"bye": REASON}
"""

import _thread
import time

# json and the policy's Verdict are imported where used: the config's check
# of the address (parse_address) imports this module on every start, SQLite's
# too, whose start path keeps json out (test_fast_path).

#: The relay ticks this often while it reads its database; a script that
#: hears no tick for SILENCE seconds (a stalled relay, a cut without FIN, a
#: relay that cannot read the policy) watches for itself.
TICK = 0.25
SILENCE = 1.0
#: A script that left its relay tries it again this much later, then twice
#: as long each time, up to REJOIN_MOST; a relay that served it for
#: REJOIN_MOST or longer is tried again REJOIN_FIRST after it fails.
REJOIN_FIRST = 5.0
REJOIN_MOST = 300.0
#: The longest line either side accepts (a verdict's reason included).
MAX_LINE = 65536
#: The verdict fields that travel (the estimate stays behind: a stop has none to give).
VERDICT_FIELDS = ("code", "reason", "policy_id", "window_id", "interruptible", "block")


#: What the database's columns take: a run id is a bigint, a slot an integer.
MAX_RUN_ID = 2**63 - 1
MAX_SLOT = 2**31 - 1


def decode(line):
    """The JSON object on ``line`` (bytes); ValueError if it is none.  JSON
    nested deeper than the stack is no object either (json raises
    RecursionError for it, which is no ValueError)."""
    import json
    try:
        message = json.loads(line)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


def encode(message):
    """``message`` as one line of the protocol (bytes, newline included)."""
    import json
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def split_lines(pending, data):
    """(whole lines, what is left of a line) once ``data`` arrived after
    ``pending``; ValueError when what is left is longer than MAX_LINE."""
    lines = (pending + data).split(b"\n")
    pending = lines.pop()
    if len(pending) > MAX_LINE:
        raise ValueError("a line longer than %d bytes" % MAX_LINE)
    return lines, pending


def storable(text):
    """Whether ``text`` is text a database column takes: a str with no NUL
    and no lone surrogate (JSON's \\u0000 and \\ud800 decode to both)."""
    if not isinstance(text, str) or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class RelayGone(Exception):
    """The relay closed, stalled or said something this side cannot use."""


def parse_address(text):
    """(host, port) of HOST:PORT ("[::1]:7447" for IPv6); ValueError if not."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = text.rpartition(":")
    # ASCII digits: str.isdigit() takes '²' (which int() refuses) and '٣' (3).
    if not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise ValueError("HOST:PORT, like 127.0.0.1:7447 or [::1]:7447, not %r" % text)
    return host, int(port)


def verdict_message(verdict):
    """What travels of a stop verdict (None: no stop)."""
    if verdict is None:
        return None
    return {field: getattr(verdict, field) for field in VERDICT_FIELDS}


def _whole(value, low=-2**31, high=2**31 - 1):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def verdict_from(message):
    """The stop Verdict a relay sent (None: no stop); ValueError if it is no
    verdict.  Its fields end up in the run's record (stop_reason,
    stop_decision, stop_policy_id, ...): each must be what its column takes."""
    if message is None:
        return None
    if not isinstance(message, dict):
        raise ValueError("not a verdict: %r" % (message,))
    fields = {field: message.get(field) for field in VERDICT_FIELDS}
    if not (storable(fields["reason"]) and storable(fields["code"])
            and all(fields[each] is None or _whole(fields[each])
                    for each in ("policy_id", "window_id"))
            and (fields["block"] is None or storable(fields["block"]))
            and isinstance(fields["interruptible"], (bool, type(None)))):
        raise ValueError("not a verdict: %r" % (message,))
    from cronpolicy.policy import Verdict
    return Verdict(run=False, estimate=None, max_concurrent=None, forced=False,
                   interruptible=bool(fields.pop("interruptible")), **fields)


def _checked(message):
    """``message`` if each kind this side reads carries what it should; ValueError if not."""
    if len(message) != 1:
        raise ValueError("a message of no known shape")
    [(kind, value)] = message.items()
    if kind == "renewed" and not _whole(value, 0, 2**63):
        raise ValueError("renewed must carry a word's number")
    if kind in ("lost", "unknown", "bye") and not storable(value):
        raise ValueError("%s must carry text" % kind)
    if kind == "verdict":
        verdict_from(value)
    return message


class LineChannel:
    """JSON lines over a non-blocking socket: whole lines out, whole lines in."""

    def __init__(self, sock):
        self.sock = sock
        self._pending = b""

    def fileno(self):
        return self.sock.fileno()

    def send(self, message):
        data = encode(message)
        try:
            self.sock.settimeout(SILENCE)
            self.sock.sendall(data)
        except OSError as error:
            raise RelayGone("cannot write to the relay: %s" % error) from None
        finally:
            self.sock.setblocking(False)

    def receive(self):
        """The messages that have arrived whole (maybe none); RelayGone at EOF."""
        try:
            data = self.sock.recv(MAX_LINE)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError as error:
            raise RelayGone("the relay's connection failed: %s" % error) from None
        if not data:
            raise RelayGone("the relay closed the connection")
        try:
            lines, self._pending = split_lines(self._pending, data)
        except ValueError as error:
            raise RelayGone("the relay sent %s" % error) from None
        messages = []
        for line in lines:
            try:
                messages.append(_checked(decode(line)))
            except ValueError as error:
                raise RelayGone("the relay sent what no relay sends (%s)"
                                % str(error)[:200]) from None
        return messages

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Connector:
    """Connects to the relay on a thread of its own: finding its host may
    wait on DNS, and a host that is down answers no SYN for
    connect_timeout, longer than a lease may be.  Meanwhile the watcher
    watches the database itself; ``wake`` is called once it is done."""

    def __init__(self, address, timeout, wake, after=0.0):
        self.address, self.timeout, self.wake = address, timeout, wake
        self.after = after      # seconds to wait first (trying the relay again)
        self.done = False
        self._result = None         # the socket, or the RelayGone
        self._abandoned = False
        self._lock = _thread.allocate_lock()

    def start(self):
        _thread.start_new_thread(self._connect, ())
        return self

    def _connect(self):
        import socket       # here: the config's check of the address needs none
        if self.after > 0:
            time.sleep(self.after)
            with self._lock:
                if self._abandoned:
                    return      # the run ended meanwhile
        try:
            host, port = parse_address(self.address)
            result = socket.create_connection((host, port), timeout=self.timeout)
            result.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            result.setblocking(False)
        except (OSError, ValueError, UnicodeError) as error:
            result = RelayGone("cannot reach the relay at %s: %s" % (self.address, error))
        except Exception as error:      # whatever DNS raises, the script carries on
            result = RelayGone("cannot reach the relay at %s: %s" % (self.address, error))
        with self._lock:
            self._result, self.done = result, True
            abandoned = self._abandoned
        if abandoned and not isinstance(result, RelayGone):
            result.close()
        else:
            self.wake()

    def take(self):
        """The LineChannel (once ``done``); RelayGone if there is none."""
        if isinstance(self._result, RelayGone):
            raise self._result
        return LineChannel(self._result)

    def abandon(self):
        """The run ended first: the connection, when it comes, is closed."""
        with self._lock:
            self._abandoned = True
            result = self._result if self.done else None
        if result is not None and not isinstance(result, RelayGone):
            result.close()


class RelayedWatch:
    """The watcher's loop while a relay serves it: say it is alive (and
    whether it is safe), take the relay's renewals and verdicts, and leave
    (RelayGone) when the relay goes quiet or says what no relay says.  It
    reads and writes the RunWatcher's state (the lease, the stop) as its
    own _loop does."""

    def __init__(self, watcher, channel):
        self.watcher, self.channel = watcher, channel
        self.sent = {0: time.monotonic()}   # words not yet renewed: when each was sent

    def run(self):
        """Until the run ends (True); RelayGone when the relay cannot be used."""
        watcher, channel = self.watcher, self.channel
        settings = watcher.settings
        safe = watcher.interruption.safe_now()
        sequence = 0
        channel.send({"watch": watcher.run.id, "key": watcher.run.record.spool_id,
                      "name": watcher.name, "host": watcher.host, "needs": list(watcher.needs),
                      "ignore": bool(watcher.ignore_policy), "safe": safe,
                      "slot": watcher.store.held_slot, "ttl": settings.lease_ttl})
        heard = time.monotonic()
        gap = min(watcher.first_heartbeat, settings.heartbeat_interval)
        next_alive = heard + gap
        while not watcher.stopping:
            messages = channel.receive()
            now = time.monotonic()
            # Ticks and verdicts say the relay reads the policy; renewals do
            # not (they pass while its reads of the policy fail).  (Verdicts
            # count: telling thousands of scripts a stop delays the ticks.)
            if any("tick" in message or "verdict" in message for message in messages):
                heard = now
            for message in messages:
                self._said(message)
            if now - heard > SILENCE:
                raise RelayGone("it sent no tick for %gs" % (now - heard))
            safe_now = watcher.interruption.safe_now()
            if safe_now and watcher.stop_requested:
                watcher.interruption.request_interrupt()
            if now >= next_alive or safe_now != safe:
                sequence += 1
                self.sent[sequence] = now
                channel.send({"alive": sequence, "safe": safe_now})
                safe = safe_now
                gap = min(gap * 2, settings.heartbeat_interval)
                next_alive = now + gap
            lease_until = watcher.lease_until
            if watcher.lease_standing and now >= lease_until:
                watcher.lose_lease("the relay did not renew its lease for %gs"
                                   % settings.lease_ttl)
            deadline = min(next_alive, heard + SILENCE + 0.01, lease_until)
            watcher.sleep_until(deadline, channel.fileno())
        return True

    def _said(self, message):
        watcher = self.watcher
        if "renewed" in message:
            sequence = message["renewed"]
            if sequence in self.sent:
                watcher.lease_renewed_from(self.sent[sequence])
                for older in [each for each in self.sent if each <= sequence]:
                    del self.sent[older]
        elif "verdict" in message:
            try:
                stop = verdict_from(message["verdict"])
            except (TypeError, ValueError) as error:
                raise RelayGone("it sent %s" % error) from None
            watcher.set_stop(stop)
        elif "lost" in message:
            if watcher.lease_standing:
                watcher.lose_lease(str(message["lost"]))
        elif "unknown" in message:
            raise RelayGone("it does not know run #%s (%s)"
                            % (watcher.run.id, message["unknown"]))
        elif "bye" in message:
            raise RelayGone("it is going away (%s)" % message["bye"])
        # ticks (and kinds a newer relay may send) only say it is alive
