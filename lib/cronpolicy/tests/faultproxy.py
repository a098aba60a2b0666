"""A TCP proxy between scripts and PostgreSQL that can misbehave on demand.

Modes for new connections: ``pass`` (forward), ``refuse`` (reset at once),
``stall`` (accept and never answer: a blackholed server); ``delay``
(seconds) holds each new connection that long before it is forwarded
(a slow network or a busy server's accept).  ``cut()`` drops
every connection in flight (RST, as a dead peer's kernel would);
``freeze()`` makes every connection in flight half-open: bytes go in and
nothing comes out, and nobody hears of it (packets dropped, no FIN).  It
touches nothing on the server itself.
"""

import socket
import struct
import threading
import time


class FaultProxy:

    def __init__(self, upstream_host, upstream_port):
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.refused = 0            # connections reset by mode "refuse", so far
        self.delay = 0.0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(512)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open = []
        self._frozen = set()        # sockets whose traffic is dropped
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                self.refused += 1
                continue
            if self.mode == "stall":
                with self._lock:
                    self._open.append(client)
                continue
            if self.delay:
                time.sleep(self.delay)
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.extend([client, server])
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source, target):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if source not in self._frozen:
                    target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        """Drop every open connection, as a network failure would."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            except OSError:
                pass

    def freeze(self):
        """Make every connection in flight half-open, for good."""
        with self._lock:
            self._frozen.update(self._open)

    def close(self):
        self._closed = True
        self._listener.close()
        self.cut()
