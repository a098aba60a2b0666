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
run (another database), or is silent for SILENCE seconds is left for good,
and the watcher watches the database itself (the direct path), as it does
with no relay configured.  A lease counts as renewed only when the relay
says so, from the moment the script sent the word it renewed.

Messages are JSON objects, one per line, in both directions:

    script -> relay   {"watch": RUN_ID, "key": RUN_KEY, "name": ..., "host": ...,
                       "needs": [...], "ignore": false, "safe": false,
                       "slot": [NAME, SLOT] or null, "ttl": SECONDS}
                      {"alive": SEQ, "safe": true}
    relay -> script   {"tick": VERSION}   {"renewed": SEQ}   {"lost": REASON}
                      {"unknown": REASON}  {"verdict": null or {...}}  {"bye": REASON}
"""

import json

from cronpolicy.policy import Verdict

#: The relay ticks this often; a script that hears nothing for SILENCE
#: seconds (a stalled relay, a cut without FIN) watches for itself.
TICK = 0.25
SILENCE = 1.0
#: The longest line either side accepts (a verdict's reason included).
MAX_LINE = 65536
#: The verdict fields that travel (the estimate stays behind: a stop has none to give).
VERDICT_FIELDS = ("code", "reason", "policy_id", "window_id", "interruptible", "block")


class RelayGone(Exception):
    """The relay closed, stalled or said something this side cannot use."""


def parse_address(text):
    """(host, port) of HOST:PORT ("[::1]:7447" for IPv6); ValueError if not."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("HOST:PORT, like 127.0.0.1:7447 or [::1]:7447, not %r" % text)
    return host, int(port)


def verdict_message(verdict):
    """What travels of a stop verdict (None: no stop)."""
    if verdict is None:
        return None
    return {field: getattr(verdict, field) for field in VERDICT_FIELDS}


def verdict_from(message):
    """The stop Verdict a relay sent (None: no stop); ValueError if it is no verdict."""
    if message is None:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("reason"), str):
        raise ValueError("not a verdict: %r" % (message,))
    fields = {field: message.get(field) for field in VERDICT_FIELDS}
    return Verdict(run=False, estimate=None, max_concurrent=None, forced=False,
                   interruptible=bool(fields.pop("interruptible")), **fields)


class LineChannel:
    """JSON lines over a non-blocking socket: whole lines out, whole lines in."""

    def __init__(self, sock):
        self.sock = sock
        self._pending = b""

    def fileno(self):
        return self.sock.fileno()

    def send(self, message):
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
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
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_LINE:
            raise RelayGone("the relay sent a line longer than %d bytes" % MAX_LINE)
        messages = []
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                raise RelayGone("the relay sent something that is not JSON") from None
            if not isinstance(message, dict) or len(message) != 1:
                raise RelayGone("the relay sent a message of no known shape")
            messages.append(message)
        return messages

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connect(address, timeout):
    """A LineChannel to the relay at ``address`` (HOST:PORT); RelayGone if none."""
    import socket       # here: the config's check of the address needs none
    try:
        host, port = parse_address(address)
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, ValueError) as error:
        raise RelayGone("cannot reach the relay at %s: %s" % (address, error)) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return LineChannel(sock)
