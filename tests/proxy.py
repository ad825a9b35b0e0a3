"""A forward proxy on 127.0.0.1 for the tests, plain or over TLS (an ``https://`` proxy).

``CONNECT host:port`` opens a tunnel (TLS to the upstream inside TLS to the proxy: urllib3's
TLS-in-TLS); any other request is relayed as it came to the host its absolute URL names,
and the connection is then piped both ways. It counts the tunnels and relays it opened.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from urllib.parse import urlsplit

from tests.faults import LIMIT, close_all
from wsgi_pool.testing import _Running


class Proxy(_Running):
    """A forward proxy; ``tls`` (a server context) makes it an ``https://`` proxy."""

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.lock = threading.Lock()
        self.tunnels = 0
        self.relays = 0
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Proxy:
        self._spawn(self._accept)
        return self

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self.lock:
            self._threads.append(thread)
        thread.start()

    def _keep(self, sock: socket.socket) -> None:
        with self.lock:
            self._socks.append(sock)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.settimeout(LIMIT)
            self._keep(sock)
            self._spawn(self._serve, sock)

    def _serve(self, client: socket.socket) -> None:
        try:
            if self.tls is not None:
                client = self.tls.wrap_socket(client, server_side=True)
                self._keep(client)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=LIMIT)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                rest = head.split(b"\r\n\r\n", 1)[1]
                with self.lock:
                    self.tunnels += 1
            else:
                parts = urlsplit(target)
                upstream = socket.create_connection(
                    (parts.hostname or "", parts.port or 80), timeout=LIMIT
                )
                rest = head
                with self.lock:
                    self.relays += 1
            self._keep(upstream)
            if rest:
                upstream.sendall(rest)
            _pump(client, upstream)
        except (OSError, ssl.SSLError, ValueError):
            return

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        close_all(self.lock, self._socks, self._threads, "proxy")


def _pump(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes, in this one thread (a TLS socket must
    not be read and written by two threads at once)."""
    ends = {client: upstream, upstream: client}
    while True:
        ready: list[socket.socket] = [
            s for s in ends if isinstance(s, ssl.SSLSocket) and s.pending()
        ]
        if not ready:
            ready, _, _ = select.select(list(ends), [], [], LIMIT)
        if not ready:
            return
        for source in ready:
            data = source.recv(65536)
            if not data:
                return
            ends[source].sendall(data)
