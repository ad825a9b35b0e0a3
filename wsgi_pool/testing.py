"""A real HTTP/1.1 upstream on loopback for your tests and the demo: it counts what it sees.

    from wsgi_pool.testing import Upstream

    with Upstream() as upstream:
        ...  # call upstream.url from your app
        assert upstream.stats().connections_opened <= 4

Every answer is JSON that echoes the request: ``method``, ``path``, ``tag`` (the ``X-Tag``
header), ``caller`` (the ``X-Caller-Pid`` header), ``connection`` (which TCP connection
carried it), ``cookie`` (the ``Cookie`` header) and ``headers``. Query parameters shape the
answer: ``delay=0.2`` waits before answering, ``set_cookie=name=value`` sets a cookie,
``size=N`` answers with N bytes instead of JSON, ``status=N`` answers with that status,
``location=URL`` adds a ``Location`` header (with ``status=302``: a redirect),
``cache_control=VALUE`` a ``Cache-Control`` header, and ``etag=TAG`` an ``ETag`` header (a
request whose ``If-None-Match`` matches it gets ``304 Not Modified`` and no body);
``close=1`` ends the connection after the answer (``Connection: close``).

For testing an app, :meth:`Upstream.answer` gives a path a canned answer (a status, a JSON
or other body, headers) in place of the echo, and :meth:`Upstream.seen` lists the requests
received (method, path, headers, body): what the app sent.

The server records, per TCP connection, the caller process ids it saw: a connection that
carried requests from two processes is a socket shared across a fork
(:meth:`Upstream.shared_connections`).

pytest fixtures built on these are in ``wsgi_pool.pytest_plugin``.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import http.server
import json
import json as _json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, urlsplit

__all__ = ["GunicornServer", "Seen", "Upstream", "UpstreamStats"]


@dataclass(frozen=True, slots=True)
class Seen:
    """A request an :class:`Upstream` received: what a test asserts was sent."""

    method: str
    path: str
    """The request target as sent: the path and the query string."""
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, decoded as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Answer:
    """A canned answer (see :meth:`Upstream.answer`)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


MAX_SEEN: Final = 10_000
"""Requests an Upstream keeps for :meth:`Upstream.seen`; past that the oldest are dropped."""


@dataclass(frozen=True, slots=True)
class UpstreamStats:
    """What an :class:`Upstream` saw since it started or was last reset."""

    connections_opened: int
    requests_served: int
    max_in_flight: int
    """The most requests received and not yet answered at one time (a request stops counting
    as its answer starts to leave, so a client that reads it and sends its next one at once is
    never counted twice)."""
    open_connections: int


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes; without TCP_NODELAY the second waits for the
        # client's delayed ACK (~40 ms) on every reused keep-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection_id = self.server.connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        return None

    _counted = False  # this request is counted in flight

    def end_headers(self) -> None:
        self._uncount()  # the answer starts to leave: no longer in flight
        super().end_headers()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.server.request_finished()

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(length) if length else b""
        caller = self.headers.get("X-Caller-Pid")
        self.server.request_started(self.connection_id, caller)
        self._counted = True
        seen = Seen(self.command, self.path, dict(self.headers.items()), body_in)
        canned = self.server.record(seen, parts.path)
        try:
            if canned is not None:
                self._send(canned.status, canned.body, canned.headers)
                return
            if "delay" in query:
                time.sleep(float(query["delay"]))
            status = int(query.get("status", "200"))
            etag = f'"{query["etag"]}"' if "etag" in query else None
            if etag is not None and self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            if "size" in query:
                body = b"x" * int(query["size"])
                content_type = "application/octet-stream"
            else:
                body = json.dumps(
                    {
                        "method": self.command,
                        "path": self.path,
                        "tag": self.headers.get("X-Tag"),
                        "caller": caller,
                        "connection": self.connection_id,
                        "cookie": self.headers.get("Cookie"),
                        "headers": dict(self.headers.items()),
                        "body_length": len(body_in),
                    }
                ).encode()
                content_type = "application/json"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if "set_cookie" in query:
                self.send_header("Set-Cookie", query["set_cookie"] + "; Path=/")
            if "location" in query:
                self.send_header("Location", query["location"])
            if "cache_control" in query:
                self.send_header("Cache-Control", query["cache_control"])
            if "close" in query:  # this answer ends the connection
                self.send_header("Connection", "close")
                self.close_connection = True
            if etag is not None:
                self.send_header("ETag", etag)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        finally:
            self._uncount()  # if it failed before its answer left

    def _send(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _answer


class _Server(http.server.ThreadingHTTPServer):
    """Mutable state (``_open``, ``_callers``, and the counters) is guarded by ``_lock``."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], tls: ssl.SSLContext | None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.tls = tls
        super().__init__(address, _Handler)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._callers: dict[int, set[str]] = {}
        self._next_id = 0
        self.answers: dict[str, Answer] = {}
        self.seen: collections.deque[Seen] = collections.deque(maxlen=MAX_SEEN)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.connections_opened = 0
            self.requests_served = 0
            self.in_flight = 0
            self.max_in_flight = 0
            self.seen.clear()

    def record(self, seen: Seen, path: str) -> Answer | None:
        """Keep ``seen``; the canned answer for ``path``, if there is one."""
        with self._lock:
            self.seen.append(seen)
            return self.answers.get(path)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is not None:  # the handshake happens on the first read, in the handler's thread
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or refused our certificate is not the server's error."""
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            super().handle_error(request, client_address)

    def connection_opened(self, sock: socket.socket) -> int:
        with self._lock:
            self._next_id += 1
            self.connections_opened += 1
            self._open.add(sock)
            return self._next_id

    def connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def request_started(self, connection_id: int, caller: str | None) -> None:
        with self._lock:
            self.requests_served += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if caller is not None:
                self._callers.setdefault(connection_id, set()).add(caller)

    def request_finished(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def stats(self) -> UpstreamStats:
        with self._lock:
            return UpstreamStats(
                connections_opened=self.connections_opened,
                requests_served=self.requests_served,
                max_in_flight=self.max_in_flight,
                open_connections=len(self._open),
            )

    def shared_connections(self) -> dict[int, set[str]]:
        with self._lock:
            return {cid: set(pids) for cid, pids in self._callers.items() if len(pids) > 1}

    def drop_connections(self) -> None:
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)


_Self = TypeVar("_Self", bound="_Running")


class _Running(abc.ABC):
    """``with`` support for a test server: start on enter, stop on exit."""

    @abc.abstractmethod
    def start(self: _Self) -> _Self: ...

    @abc.abstractmethod
    def stop(self) -> object: ...

    def __enter__(self: _Self) -> _Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Upstream(_Running):
    """A threaded HTTP/1.1 server with keep-alive on ``host`` (default 127.0.0.1), any free port.

    With ``tls`` (a server-side ``ssl.SSLContext``) it speaks HTTPS and its URL is https.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
    ) -> None:
        self._server = _Server((host, port), tls)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        bound_port = self._server.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.url = (
            f"{scheme}://[{host}]:{bound_port}"
            if ":" in host
            else f"{scheme}://{host}:{bound_port}"
        )

    def start(self) -> Upstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection, and wait for the server thread."""
        serving = self._thread.is_alive()
        if serving:
            self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        if serving:
            self._thread.join(timeout=10)

    def stats(self) -> UpstreamStats:
        """Connections opened, requests served, the most requests in flight at once, open connections."""
        return self._server.stats()

    def reset(self) -> None:
        """Zero the counters and forget the requests seen. Open connections stay open; which
        processes used them, and the canned answers, are kept."""
        self._server.reset()

    def answer(
        self,
        path: str,
        *,
        status: int = 200,
        json: Any = None,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """From now on, requests for ``path`` (any method, any query string) get this answer
        instead of the echo: ``json`` (serialized, with its content type) or ``body``."""
        if json is not None:
            body = _json.dumps(json)
            headers = {"Content-Type": "application/json", **(headers or {})}
        data = body.encode() if isinstance(body, str) else body
        canned = Answer(status, data, tuple((headers or {}).items()))
        with self._server._lock:
            self._server.answers[path] = canned

    def seen(self, path: str | None = None) -> list[Seen]:
        """The requests received since start or :meth:`reset`, oldest first (only those for
        ``path``, query string aside, if given)."""
        with self._server._lock:
            found = list(self._server.seen)
        return [s for s in found if path is None or urlsplit(s.path).path == path]

    def shared_connections(self) -> dict[int, set[str]]:
        """Connections that carried requests from more than one caller process id."""
        return self._server.shared_connections()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class GunicornServer(_Running):
    """gunicorn serving ``app`` in a subprocess on a free loopback port; stopped by :meth:`stop`.

    ``args`` are gunicorn command-line flags (``"-k", "gthread", "--threads", "4"``);
    ``env`` is added to this process's environment. The combined output is kept in a file
    that :meth:`log` reads; :meth:`stop` keeps what it held and removes the file.
    """

    def __init__(
        self,
        app: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.app = app
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.host = host
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False)  # noqa: SIM115  (closed in stop)
        self._final_log: str | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The server's command line: gunicorn's (a subclass may serve with another server)."""
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{self.host}:{self.port}",
            *self.args,
            self.app,
        ]

    def start(self, ready_within: float = 30.0) -> GunicornServer:
        """Start gunicorn and wait until it accepts connections (or exits, or the time runs out)."""
        command = self.command()
        self.process = subprocess.Popen(  # noqa: S603  (a fixed command with our own arguments)
            command,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a forced stop reaches the workers too
        )
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"gunicorn did not accept connections within {ready_within} s:\n{self.log()}"
        )

    def stop(self, within: float = 30.0) -> int | None:
        """SIGTERM (a graceful shutdown); SIGKILL to master and workers after ``within``; the exit code."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=within)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            code = self.process.returncode
        if self._final_log is None:
            self._final_log = self.log()
            self._log.close()
            os.unlink(self._log.name)
        return code

    def log(self) -> str:
        """Everything gunicorn and its workers printed so far (all of it, once stopped)."""
        if self._final_log is not None:
            return self._final_log
        with open(self._log.name, encoding="utf-8", errors="replace") as log:
            return log.read()
