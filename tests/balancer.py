"""A per-connection round-robin TCP balancer, as a Kubernetes Service's kube-proxy balances:
each new connection goes to the next backend, and stays there for its life.

It listens on 127.0.0.1; backends can be added while it runs. :meth:`Balancer.stop` closes
the listener and every connection it carries.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from types import TracebackType


class Balancer:
    """Connections to :attr:`url` spread over ``backends`` ((host, port) pairs), one by one."""

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self._backends = list(backends)
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Balancer:
        self._accepting.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def add(self, backend: tuple[str, int]) -> None:
        """A new backend: new connections are spread over it too."""
        with self._lock:
            self._backends.append(backend)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener closed: stop
                return
            with self._lock:
                backend = self._backends[next(self._turn) % len(self._backends)]
            try:
                upstream = socket.create_connection(backend, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=_pipe, args=(source, sink), daemon=True)
                self._threads.append(thread)
                thread.start()

    def stop(self) -> None:
        """Close the listener and every connection; wait for the threads."""
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._accepting.is_alive():
            self._accepting.join(10)
        for thread in self._threads:
            thread.join(10)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
