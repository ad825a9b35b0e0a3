"""A misbehaving HTTP/1.1 peer on 127.0.0.1: raw sockets, one scripted handler per connection."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from wsgi_pool.testing import _Running

LIMIT = 30.0  # no socket operation of the peer waits longer than this


@dataclass
class Seen:
    """One request as the peer read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int
    at: float = field(default_factory=time.monotonic)
    raw: bytes = b""  # the request exactly as it came: head, blank line, body


class Peer:
    """One accepted connection, driven by a script."""

    def __init__(self, server: FaultServer, sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index
        self.buffer = b""
        self.handled = 0

    def read_request(self, *, body: bool = True) -> Seen | None:
        """The next request on this connection, or None when the client closed it.

        With ``body=False`` only the head is read (and recorded, with an empty body): the
        script reads the body itself, with :meth:`read_slowly`.
        """
        while b"\r\n\r\n" not in self.buffer:
            chunk = self._recv()
            if not chunk:
                return None
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if not body:
            found_body = b""
        elif headers.get("transfer-encoding") == "chunked":
            found = self._chunked_body()
            if found is None:
                return None
            found_body = found
        else:
            length = int(headers.get("content-length", "0"))
            if not self._fill(length):
                return None
            found_body, self.buffer = self.buffer[:length], self.buffer[length:]
        seen = Seen(
            method, path, headers, found_body, self.index, raw=head + b"\r\n\r\n" + found_body
        )
        with self.server.lock:
            self.server.seen.append(seen)
        self.handled += 1
        return seen

    def read_slowly(self, length: int, chunk: int, every: float) -> int:
        """Read ``length`` bytes of a body, ``chunk`` at a time, ``every`` seconds apart; how
        many came before the client closed (or the server stopped)."""
        got = min(len(self.buffer), length)
        self.buffer = self.buffer[got:]
        while got < length and not self.server.stopping.wait(every):
            try:
                data = self.sock.recv(min(chunk, length - got))
            except (OSError, ssl.SSLError):
                return got
            if not data:
                return got
            got += len(data)
        return got

    def _fill(self, length: int) -> bool:
        """Read until the buffer holds ``length`` bytes; False if the client closed first."""
        while len(self.buffer) < length:
            chunk = self._recv()
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def _chunked_body(self) -> bytes | None:
        """A chunked body as it came (sizes, data and the last chunk), or None if the client closed."""
        taken = 0
        while True:
            while b"\r\n" not in self.buffer[taken:]:
                if not self._fill(len(self.buffer) + 1):
                    return None
            end = self.buffer.index(b"\r\n", taken)
            size = int(self.buffer[taken:end], 16)
            taken = end + 2 + size + 2
            if not self._fill(taken):
                return None
            if size == 0:
                body, self.buffer = self.buffer[:taken], self.buffer[taken:]
                return body

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except (OSError, ssl.SSLError):
            return b""

    def send(self, data: bytes) -> bool:
        """Send ``data``; False once the client has gone."""
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError):
            return False
        return True

    def respond(
        self,
        status: str = "200 OK",
        body: bytes = b"ok",
        headers: tuple[str, ...] = (),
        *,
        close: bool = False,
    ) -> bool:
        head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
        if close:
            head.append("Connection: close")
        return self.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def drip(self, data: bytes, every: float) -> None:
        """Send ``data`` one byte at a time, ``every`` seconds apart, until done or the client goes."""
        for byte in data:
            if self.server.stopping.wait(every) or not self.send(bytes([byte])):
                return

    def hold(self) -> None:
        """Keep the connection open, sending nothing, until the client closes it or the server stops."""
        self.sock.settimeout(0.05)
        deadline = time.monotonic() + LIMIT
        while not self.server.stopping.is_set() and time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536):
                    return
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError):
                return

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


Script = Callable[[Peer], Any]


class FaultServer(_Running):
    """An HTTP/1.1 peer that runs ``script(peer)`` for every connection it accepts.

    Records each request it read (``seen``) and counts connections; :meth:`stop` closes the
    listener and every connection and joins every thread.
    """

    def __init__(self, script: Script, *, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.connections = 0
        self.closed = threading.Semaphore(0)  # released once per connection the script finished
        self.stopping = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> FaultServer:
        listener = socket.create_server(("127.0.0.1", 0))
        self._listener = listener
        self.port = listener.getsockname()[1]
        acceptor = threading.Thread(target=self._accept, name="fault acceptor", daemon=True)
        self._threads.append(acceptor)
        acceptor.start()
        return self

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self.stopping.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.settimeout(LIMIT)
            with self.lock:
                index = self.connections
                self.connections += 1
                self._socks.append(sock)
            worker = threading.Thread(target=self._serve, args=(sock, index), daemon=True)
            with self.lock:
                self._threads.append(worker)
            worker.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        try:
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError):
                    return
                with self.lock:
                    self._socks.append(sock)
            self.script(Peer(self, sock, index))
        finally:
            sock.close()
            self.closed.release()

    def requests(self, method: str | None = None) -> list[Seen]:
        with self.lock:
            return [seen for seen in self.seen if method is None or seen.method == method]

    def stop(self) -> None:
        self.stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            listener.close()
        close_all(self.lock, self._socks, self._threads, "fault-server")


def close_all(
    lock: threading.Lock, socks: list[socket.socket], threads: list[threading.Thread], what: str
) -> None:
    """A test server's stop: shut every socket it holds (waking its threads), wait for the
    threads, close the sockets. A thread still alive after :data:`LIMIT` fails the test."""
    with lock:
        held = list(socks)
    for sock in held:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
    with lock:
        running = list(threads)
    for thread in running:
        thread.join(LIMIT)
    assert not any(thread.is_alive() for thread in running), f"a {what} thread hung"
    for sock in held:
        sock.close()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def describe_descriptors() -> list[str]:
    """What this process's descriptors point at (to name a leak)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            found.append(f"{name}->{os.readlink(f'/proc/self/fd/{name}')}")
        except OSError:
            continue
    return found


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A loopback port whose accept queue is full: the kernel drops new SYNs, so connects time out."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        while True:  # fill the accept queue until the kernel drops our SYNs
            filler = socket.socket()
            filler.settimeout(0.2)
            try:
                filler.connect(address)
            except TimeoutError:
                filler.close()
                break
            fillers.append(filler)
            assert len(fillers) < 64, "the accept queue never filled"
        yield address[1]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
