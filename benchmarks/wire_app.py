"""The app the wire benchmark serves: each request makes three GETs the way one pattern makes them.

``BENCH_PATTERN`` names the pattern (``wsgi_pool_cached``: every GET is for one URL that
the worker's HTTP cache keeps), ``BENCH_UPSTREAM`` the upstream (``http://`` or
``https://``), ``BENCH_CA`` the CA file that verifies it, ``BENCH_THREADS`` the worker's
threads (the tuned pool sizes follow it). Each outbound GET asks the upstream to echo a token
unique to the call; an answer that is not that token is counted (and the request fails with
500). ``/_stats`` answers this worker's counts; ``/_bare`` makes no outbound call.
Clients kept across requests are built at import, in the worker (no ``--preload``).
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import requests
import urllib3
from requests.adapters import HTTPAdapter

from wsgi_pool import PoolMiddleware, client_from

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PATTERN = os.environ.get("BENCH_PATTERN", "wsgi_pool")
UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:8080")
CA = os.environ.get("BENCH_CA") or None
THREADS = int(os.environ.get("BENCH_THREADS", "8"))
CALLS = 3
TIMEOUT = 10.0

_parts = urlsplit(UPSTREAM)
_HOST, _PORT, _TLS = _parts.hostname or "127.0.0.1", _parts.port or 80, _parts.scheme == "https"
_context = ssl.create_default_context(cafile=CA) if _TLS else None
_verify: Any = CA if _TLS and CA else True

_counter = itertools.count()
_lock = threading.Lock()
counts = {"requests": 0, "measured": 0, "calls": 0, "mismatches": 0, "pool_full": 0}


class _PoolFullCounter(logging.Handler):
    """Counts urllib3's "Connection pool is full, discarding connection" warnings."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Connection pool is full"):
            with _lock:
                counts["pool_full"] += 1


logging.getLogger("urllib3.connectionpool").addHandler(_PoolFullCounter(logging.WARNING))


def _http_client_get(path: str, local: threading.local) -> bytes:
    conn = getattr(local, "conn", None)
    if conn is None:
        conn = local.conn = (
            http.client.HTTPSConnection(_HOST, _PORT, timeout=TIMEOUT, context=_context)
            if _TLS
            else http.client.HTTPConnection(_HOST, _PORT, timeout=TIMEOUT)
        )
    conn.request("GET", path)
    return conn.getresponse().read()


def _getter(environ: WSGIEnvironment) -> Callable[[str], bytes]:  # noqa: PLR0911  (one per pattern)
    """How this pattern GETs ``url`` and reads the body, within one incoming request."""
    if PATTERN in {"wsgi_pool", "wsgi_pool_cached"}:
        client = client_from(environ)
        return lambda url: client.get(url).content
    if PATTERN == "requests_get":
        return lambda url: requests.get(url, timeout=TIMEOUT, verify=_verify).content
    if PATTERN == "session_per_request":
        session = requests.Session()
        environ["bench.close"] = session.close
        return lambda url: session.get(url, timeout=TIMEOUT, verify=_verify).content
    if PATTERN == "thread_local_session":
        session = getattr(_local, "session", None) or requests.Session()
        _local.session = session
        return lambda url: session.get(url, timeout=TIMEOUT, verify=_verify).content
    if PATTERN in {"module_session", "module_session_tuned"}:
        return lambda url: _shared.get(url, timeout=TIMEOUT, verify=_verify).content
    if PATTERN == "httpx_client":
        return lambda url: _shared.get(url).content
    if PATTERN == "urllib3_pool":
        return lambda url: _shared.request("GET", url, timeout=TIMEOUT).data
    if PATTERN == "http_client":
        return lambda url: _http_client_get(url[len(UPSTREAM) :], _local)
    raise ValueError(f"unknown BENCH_PATTERN {PATTERN!r}")


def _module_level() -> Any:
    """The client this pattern keeps across requests, if it keeps one; the others are never built."""
    if PATTERN in {"module_session", "module_session_tuned"}:
        session = requests.Session()
        if PATTERN == "module_session_tuned":
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=THREADS)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        return session
    if PATTERN == "httpx_client":
        return httpx.Client(
            verify=_context or True,
            timeout=TIMEOUT,
            limits=httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS),
        )
    if PATTERN == "urllib3_pool":
        return urllib3.PoolManager(num_pools=4, maxsize=THREADS, ca_certs=CA)
    return None


_local = threading.local()
_shared = _module_level()


def _answer(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _calls(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    get = _getter(environ)
    prefix = f"{os.getpid()}-{threading.get_ident()}-{next(_counter)}"
    wrong = 0
    try:
        for index in range(CALLS):
            if PATTERN == "wsgi_pool_cached":  # one URL, one answer, kept by the HTTP cache
                if get(f"{UPSTREAM}/cached") != b"cached":
                    wrong += 1
                continue
            token = f"{prefix}-{index}"
            if get(f"{UPSTREAM}/echo?id={token}") != token.encode():
                wrong += 1
    finally:
        close = environ.pop("bench.close", None)
        if close is not None:
            close()
    with _lock:
        counts["requests"] += 1
        counts["calls"] += CALLS
        counts["mismatches"] += wrong
        if "HTTP_X_BENCH" in environ:
            counts["measured"] += 1
    return _answer(start_response, "500 Wrong Answer" if wrong else "200 OK", b"ok")


def stats() -> dict[str, Any]:
    """This worker's counts and the CPU seconds its process used so far."""
    times = os.times()
    with _lock:
        return {**counts, "pid": os.getpid(), "cpu": times.user + times.system}


def _route(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/_stats":
        return _answer(start_response, "200 OK", json.dumps(stats()).encode())
    if path == "/_bare":
        with _lock:
            counts["requests"] += 1
            if "HTTP_X_BENCH" in environ:
                counts["measured"] += 1
        return _answer(start_response, "200 OK", b"ok")
    return _calls(environ, start_response)


app: Any = (
    PoolMiddleware(_route)
    if PATTERN in {"wsgi_pool", "wsgi_pool_cached", "bare_middleware"}
    else _route
)
