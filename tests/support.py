"""Helpers the test files share: waiting for a condition, threads started together, TLS
servers, in-process WSGI calls and real gunicorn. Fixtures are in ``conftest.py``."""

from __future__ import annotations

import http.client
import re
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import trustme

from wsgi_pool.testing import GunicornServer, Upstream

ROOT = Path(__file__).resolve().parent.parent
CONF = str(ROOT / "deploy" / "gunicorn.conf.py")
SIZING = re.compile(r"wsgi_pool: pools for pid (\d+): (.*)")


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``check`` until it holds or ``timeout`` passes; returns its last value."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            return check()
        time.sleep(0.01)
    return True


def run_together(*calls: Callable[[], Any], timeout: float = 30.0) -> list[Any]:
    """Start one thread per call at the same moment, join them all, re-raise the first error."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout)
            results[index] = call()
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    if errors:
        raise errors[0]
    return results


def tls_context(ca: trustme.CA, *names: str, **validity: Any) -> ssl.SSLContext:
    """A server TLS context with a certificate ``ca`` issued for ``names`` (``not_after=...``).

    It sends no TLS 1.3 session tickets: a ticket left unread on an idle connection makes
    urllib3 take the connection for one the server closed (a tunnel's inner TLS most of all),
    and the tests that need a kept connection would not get one.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.num_tickets = 0
    ca.issue_cert(*names, **validity).configure_cert(context)
    return context


def tls_upstream(ca: trustme.CA, *names: str, **validity: Any) -> Upstream:
    """An HTTPS :class:`Upstream`, not started, with a certificate ``ca`` issued for ``names``."""
    return Upstream(tls=tls_context(ca, *names, **validity))


def write_ca(ca: trustme.CA, directory: Path, name: str = "ca.pem") -> str:
    """Write ``ca``'s certificate into ``directory``; the file's path."""
    path = directory / name
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def wsgi_call(app: Any, **extra: Any) -> tuple[str, bytes, Any]:
    """Call a WSGI app in-process; returns status, body, and the iterable (closed, as servers do)."""
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(extra)
    seen: list[str] = []
    result = app(environ, lambda status, headers, exc_info=None: seen.append(status))
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return seen[0], body, result


def wait_for_sizing_lines(
    server: GunicornServer, count: int, within: float = 30.0
) -> list[tuple[str, str]]:
    """The 'pools for pid' lines, once at least ``count`` have been logged."""
    deadline = time.monotonic() + within
    while True:
        found = SIZING.findall(server.log())
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def get(
    server: GunicornServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """GET ``path`` from a gunicorn (or other) server in a subprocess; status and body."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
