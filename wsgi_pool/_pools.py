"""One process's pools: urllib3 pools behind a requests adapter, shared by every client.

What requests leaves out is added here, each at the level where it can be done right:

- **the pools** (urllib3): a bounded wait for a free connection (requests never passes a
  pool timeout), capped by the call's deadline; client-side idle expiry; one transparent
  replay of a request that failed on a *reused* connection, when replaying is safe; each
  connection paired with the deadline of the call it carries, for the watchdog.
- **the connections** (urllib3): the egress policy, judged on each address a host resolves
  to, before connecting to it.
- **the adapter** (requests): per-attempt timeouts capped by the deadline; retries with
  backoff, jitter and ``Retry-After``, within a per-upstream retry budget; every failure
  turned into a wsgi_pool error naming the upstream; a cap on the decoded response body;
  TLS verification against the upstream's CA, never off unless the config allows it; the
  request id and trace context, to the upstreams allowed to see them. It is frozen: a
  handler cannot change or close what every request of the worker shares.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import http.client
import ipaddress
import logging
import os
import random
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.utils import select_proxy
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection, _ResponseOptions
from urllib3.exceptions import (
    EmptyPoolError,
    InvalidHeader,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.util import Retry, Timeout, parse_url

from . import _deadline, _head, _transport
from ._config import DEADLINE_HEADER, PoolConfig, UpstreamSettings, normalize_origin, size_pools
from ._deadline import Deadline, Watchdog
from ._egress import EgressPolicy
from ._errors import InsecureRequestRefused, SharedStateError
from ._failures import (
    DeadlineExceeded,
    EgressDenied,
    PoolTimeout,
    ResponseTooLarge,
    UpstreamConnectTimeout,
    UpstreamUnreachable,
    pool_closed,
    translate,
)
from ._stats import Registry, Sink, Snapshot, UpstreamStats

if TYPE_CHECKING:
    from urllib3._base_connection import BaseHTTPConnection, BaseHTTPSConnection
    from urllib3.response import BaseHTTPResponse

    from ._cache import HttpCache
    from .prometheus import Exporter

    _ConnectionBase = HTTPConnection  # what the mixin below is mixed into
else:
    _ConnectionBase = object

logger = logging.getLogger("wsgi_pool")

# A body up to this size goes out in the same send as the head; a larger one is not copied.
_ONE_SEND: Final = 64 * 1024

# http.client's connection states, as it names them.
_IDLE: Final[str] = http.client._CS_IDLE  # type: ignore[attr-defined]
_SENT: Final[str] = http.client._CS_REQ_SENT  # type: ignore[attr-defined]

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods that may be sent twice (RFC 9110, 9.2.2); others need an ``Idempotency-Key`` header."""

RETRY_BUDGET_WINDOW: Final = 10
"""Seconds of traffic a retry budget looks back on."""

_POOL_CLOSED_RETRIES: Final = 3
_STALE: Final = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def replay_safe(method: str, headers: Mapping[str, Any] | None) -> bool:
    """Whether a request may be sent again: an idempotent method, or an ``Idempotency-Key``."""
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    return any(name.lower() == "idempotency-key" for name in headers or ())


# -- connections and pools (urllib3) ----------------------------------------------------------


class _Pooled(_ConnectionBase):
    """What wsgi_pool keeps on a pooled connection, and its connect under the egress policy."""

    wp_deadline: Deadline | None = None
    wp_idle_since: float = 0.0
    wp_host_line: str | None = None  # the Host header http.client wrote on this connection
    wp_sent: bool = False  # a request went out on it since it was taken from the pool
    egress: EgressPolicy | None = None  # set by _pool_classes
    response_class = _head.RESPONSE_CLASS  # heads read without the email parser

    def _new_conn(self) -> socket.socket:
        return _connect_checked(self, super()._new_conn)

    def putrequest(
        self, method: str, url: str, skip_host: bool = False, skip_accept_encoding: bool = False
    ) -> None:
        super().putrequest(
            method, url, skip_host=skip_host, skip_accept_encoding=skip_accept_encoding
        )
        conn: Any = self  # http.client's own attributes, untyped
        if not skip_host and url.startswith("/") and conn._tunnel_host is None:
            line = conn._buffer[1]  # just after the request line
            if line.startswith(b"Host: "):  # pragma: no branch  (what http.client writes)
                self.wp_host_line = line.decode("latin-1")

    def request(  # type: ignore[override]  # urllib3's signature
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        chunked: bool = False,
        preload_content: bool = True,
        decode_content: bool = True,
        enforce_content_length: bool = True,
    ) -> None:
        """urllib3's ``request``; a plain one on an open connection written in one send."""
        conn: Any = self  # http.client's own attributes, untyped
        sock = conn.sock
        head = None
        if (
            sock is not None
            and headers is not None
            and not chunked
            and (body is None or type(body) is bytes)
            and self.wp_host_line is not None
            and conn._HTTPConnection__state == _IDLE
            and not conn.debuglevel
        ):
            head = _transport.request_head(
                method, url, headers, self.wp_host_line, None if body is None else len(body)
            )
        if head is None:
            super().request(
                method,
                url,
                body,
                headers,
                chunked=chunked,
                preload_content=preload_content,
                decode_content=decode_content,
                enforce_content_length=enforce_content_length,
            )
            return
        # What putrequest, putheader, endheaders and send leave behind, as they leave it.
        sock.settimeout(conn.timeout)
        conn._response_options = _ResponseOptions(
            request_method=method,
            request_url=url,
            preload_content=preload_content,
            decode_content=decode_content,
            enforce_content_length=enforce_content_length,
        )
        conn._method = method
        conn._HTTPConnection__state = _SENT
        parts = (head, body) if body and len(body) > _ONE_SEND else (head + (body or b""),)
        for data in parts:
            sys.audit("http.client.send", self, data)
            sock.sendall(data)


class _Connection(_Pooled, HTTPConnection):
    pass


class _HTTPSConnection(_Pooled, HTTPSConnection):
    pass


class _Refused(Exception):
    """The egress policy refused every address of a host. Not an OSError, so urllib3 lets it through."""

    def __init__(self, host: str, refused: list[tuple[str, str]]) -> None:
        super().__init__(host)
        self.host = host
        self.refused = refused


def _connect_checked(conn: _Pooled, connect: Callable[[], socket.socket]) -> socket.socket:
    """Connect to the first address of the host the egress policy allows, trying each in turn."""
    policy = conn.egress
    if policy is None:
        return connect()
    host = conn._dns_host
    try:
        found = socket.getaddrinfo(host.strip("[]"), conn.port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    allowed: list[str] = []
    refused: list[tuple[str, str]] = []
    for *_, sockaddr in found:
        address = str(sockaddr[0])
        why = policy.refuses(address)
        if why is not None:
            refused.append((address, why))
        elif address not in allowed:
            allowed.append(address)
    if not allowed:
        raise _Refused(conn.host, refused)
    try:
        for address in allowed[:-1]:
            conn._dns_host = address
            with contextlib.suppress(NewConnectionError):
                return connect()
        conn._dns_host = allowed[-1]
        return connect()
    finally:
        conn._dns_host = host


class _HTTPPool(HTTPConnectionPool):
    """urllib3's pool, with the wait, idle expiry, stale replay and deadline pairing above."""

    ConnectionCls: type[BaseHTTPConnection] | type[BaseHTTPSConnection] = _Connection
    wp_checked: tuple[Any, Any] | None = None  # the verify and cert requests checked it for
    pool_wait: float = 0.0
    idle_timeout: float = 0.0
    watchdog: Watchdog  # set by _pool_classes
    registry: Registry  # set by _pool_classes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = self.registry.for_upstream(pool_origin(self.scheme, self.host, self.port))

    def _get_conn(self, timeout: float | None = None) -> BaseHTTPConnection:
        wait = self.pool_wait if timeout is None else timeout
        deadline = _deadline.current()
        remaining = None if deadline is None else deadline.remaining()
        short = remaining is not None and remaining < wait
        if remaining is not None and short:
            wait = max(remaining, 0.0)
        queue = self.pool
        if self.block and queue is not None and queue.empty():  # no free slot: a wait
            conn = self._waited_for(wait, short=short)
        else:
            conn = self._taken(wait, short=short)
        if (
            conn.sock is not None  # type: ignore[attr-defined]
            and time.monotonic() - conn.wp_idle_since > self.idle_timeout  # type: ignore[attr-defined]
        ):
            conn.close()  # idle too long: the server may be closing it right now
            self.stats.add("idle_expired")
        return conn

    def _waited_for(self, wait: float, *, short: bool) -> BaseHTTPConnection:
        stats = self.stats
        stats.add("waiting")
        started = time.monotonic()
        got = False
        try:
            conn = self._taken(wait, short=short)
            got = True
            return conn
        finally:
            stats.add("waiting", -1)
            stats.waited(time.monotonic() - started, got=got)

    def _taken(self, wait: float, *, short: bool) -> BaseHTTPConnection:
        try:
            return super()._get_conn(wait)
        except EmptyPoolError as exc:
            if short:  # the deadline, not pool_timeout, ended the wait
                raise _DeadlineWhileWaiting(self, str(exc)) from None
            raise

    def _put_conn(self, conn: BaseHTTPConnection | None) -> None:
        if conn is not None:
            self.watchdog.disarm(conn)  # type: ignore[arg-type]
            conn.wp_idle_since = time.monotonic()  # type: ignore[attr-defined]
            sent, conn.wp_sent = conn.wp_sent, False  # type: ignore[attr-defined]
            if sent and (
                conn.sock is None  # type: ignore[attr-defined]
                or (not self.block and self.pool is not None and self.pool.full())
            ):
                self.stats.add("discarded")  # closed after use, or no room to keep it
        super()._put_conn(conn)

    def discard(self, conn: BaseHTTPConnection) -> None:
        """Close ``conn`` after a failed try and give its slot back."""
        if conn.sock is not None:  # type: ignore[attr-defined]
            self.stats.add("discarded")
        conn.close()
        conn.wp_sent = False  # type: ignore[attr-defined]
        self._put_conn(None)

    def _make_request(
        self,
        conn: BaseHTTPConnection,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> BaseHTTPResponse:
        deadline = _deadline.current()
        if deadline is not None:  # pragma: no branch  (the adapter binds one for every call)
            self.watchdog.arm(deadline, conn)  # type: ignore[arg-type]
        reused = conn.sock is not None  # type: ignore[attr-defined]
        self.stats.sent(reused=reused)
        conn.wp_sent = True  # type: ignore[attr-defined]
        try:
            return super()._make_request(conn, method, url, body, headers, *args, **kwargs)
        except _STALE:
            # A reused connection the server closed as we sent (a keep-alive race): replay
            # once on a new connection, if sending the request twice is safe.
            if not reused or not replay_safe(method, headers) or not _resendable(body):
                raise
            conn.close()
            self.stats.add("replays")
            self.stats.sent(reused=False)
            logger.debug(
                "replaying %s %s on a new connection: the reused one was closed", method, url
            )
            return super()._make_request(conn, method, url, body, headers, *args, **kwargs)


class _HTTPSPool(_HTTPPool, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _DeadlineWhileWaiting(EmptyPoolError):
    """The deadline, not ``pool_timeout``, ended the wait for a free connection."""


def _resendable(body: Any) -> bool:
    return body is None or isinstance(body, bytes | str)


def _pool_classes(
    wait: float,
    idle_timeout: float,
    watchdog: Watchdog,
    egress: EgressPolicy | None,
    registry: Registry,
) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes bound to one process's settings, watchdog, egress policy and stats."""
    settings = {
        "pool_wait": wait,
        "idle_timeout": idle_timeout,
        "watchdog": watchdog,
        "registry": registry,
    }
    plain = type("HTTPConnection", (_Connection,), {"egress": egress})
    tls = type("HTTPSConnection", (_HTTPSConnection,), {"egress": egress})
    return {
        "http": type("HTTPConnectionPool", (_HTTPPool,), {**settings, "ConnectionCls": plain}),
        "https": type("HTTPSConnectionPool", (_HTTPSPool,), {**settings, "ConnectionCls": tls}),
    }


# -- retry budget -------------------------------------------------------------------------------


class RetryBudget:
    """Retries one upstream may get: a share of its recent requests, plus a floor per second.

    As in Finagle and Envoy: with an upstream failing every call, retries add at most
    ``ratio`` to the traffic it sees, instead of multiplying it by ``retries + 1``.

    Mutable state: ``_slots`` (per second of the window: ``[second, requests, retries]``),
    changed only under ``_lock``.
    """

    __slots__ = ("_lock", "_slots", "floor", "ratio")

    def __init__(self, ratio: float, per_second: float) -> None:
        self.ratio = ratio
        self.floor = per_second * RETRY_BUDGET_WINDOW
        self._lock = threading.Lock()
        self._slots = [[-1, 0, 0] for _ in range(RETRY_BUDGET_WINDOW)]

    def _slot(self, now: int) -> list[int]:
        slot = self._slots[now % RETRY_BUDGET_WINDOW]
        if slot[0] != now:
            slot[:] = [now, 0, 0]
        return slot

    def record_request(self) -> None:
        with self._lock:
            self._slot(int(time.monotonic()))[1] += 1

    def try_retry(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        with self._lock:
            now = int(time.monotonic())
            live = [slot for slot in self._slots if slot[0] > now - RETRY_BUDGET_WINDOW]
            requests_seen = sum(slot[1] for slot in live)
            retries_made = sum(slot[2] for slot in live)
            if retries_made + 1 > self.floor + self.ratio * requests_seen:
                return False
            self._slot(now)[2] += 1
            return True


# -- the adapter (requests) -----------------------------------------------------------------------


class _ReadOnly:
    """Attributes fixed once ``_frozen`` is set: every request of the worker shares the object."""

    _frozen = False

    def __setattr__(self, name: str, value: Any) -> None:
        self._check_writable(name)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        self._check_writable(name)
        super().__delattr__(name)

    def _check_writable(self, name: str) -> None:
        if self._frozen:
            raise SharedStateError(
                f"{type(self).__name__} is shared by every request of the worker and is "
                f"read-only (changing {name!r}): mount an adapter or set headers on your own "
                f"client, or change the PoolConfig"
            )


class SharedAdapter(_ReadOnly, HTTPAdapter):
    """The one requests adapter of a worker: its pools, deadlines, retries and limits.

    Read-only once built: setting an attribute or calling :meth:`close` raises
    :class:`SharedStateError`. The worker closes it with :meth:`shutdown`.
    """

    def __init__(self, config: PoolConfig, watchdog: Watchdog) -> None:
        self.pool_config = config
        self.sizing = size_pools(config)
        self.stats = Registry(sink_for=_sink_factory(config))
        self._pool_classes = _pool_classes(
            self.sizing.pool_timeout,
            config.idle_timeout,
            watchdog,
            EgressPolicy.from_config(config),
            self.stats,
        )
        # Per upstream (origin): effective settings, at most MAX_SETTINGS kept (the rest are
        # worked out per call), and a retry budget per counted upstream (bounded by the stats'
        # registry). A dict assignment is atomic; two threads racing on a new upstream build
        # equal settings, and setdefault keeps one budget.
        self._settings: dict[str, UpstreamSettings] = {}
        self._budgets: dict[str, RetryBudget] = {}
        self._finder = _transport.PoolFinder(self)
        self.http_cache: HttpCache | None = None
        if config.http_cache_bytes is not None:
            from ._cache import HttpCache  # noqa: PLC0415  (CacheControl loads only when used)

            self.http_cache = HttpCache(config.http_cache_bytes, config.http_cache_entry_bytes)
        super().__init__(
            pool_connections=self.sizing.pool_connections,
            pool_maxsize=self.sizing.pool_maxsize,
            pool_block=self.sizing.pool_block,
            max_retries=0,
        )
        self._frozen = True

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        new = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if new and not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = self._pool_classes
        return manager

    def close(self) -> None:
        """Refused: the shared pools close when the worker exits (:meth:`WorkerPools.close`)."""
        raise SharedStateError(
            "the worker's shared adapter closes when the worker exits, not from a handler; "
            "close your own client (or the response) instead"
        )

    def shutdown(self) -> None:
        """Close every pool's idle connections, then forget the pools.

        urllib3 2 closes a pool it drops only when the pool is garbage-collected; a response
        still referenced would keep its pool's idle connections open past worker exit.
        """
        for manager in self._managers():
            for pool in live_pools(manager):
                pool.close()
        super().close()  # what requests' close() does: forget the pools

    def _managers(self) -> list[Any]:
        return [self.poolmanager, *self.proxy_manager.values()]

    def forget_closed_pools(self) -> None:
        """Remove closed pools from the pool managers, so the next call to their upstream gets a new one."""
        for manager in self._managers():
            for key in manager.pools.keys():  # noqa: SIM118  (urllib3's container refuses iteration)
                found = manager.pools.get(key)
                if found is not None and found.pool is None:
                    with contextlib.suppress(KeyError):  # another thread removed it first
                        del manager.pools[key]

    def settings_for(self, origin: str) -> UpstreamSettings:
        """The settings that apply to calls to ``origin`` (``scheme://host:port``)."""
        found = self._settings.get(origin)
        if found is None:
            found = self.pool_config.for_upstream(origin)
            if len(self._settings) < MAX_SETTINGS:
                self._settings[origin] = found
        return found

    def deadline_for(self, origin: str) -> float:
        return self.settings_for(origin).deadline or self.sizing.deadline

    def budget_for(self, stats: UpstreamStats) -> RetryBudget:
        """The retry budget of the upstream ``stats`` counts."""
        found = self._budgets.get(stats.upstream)
        if found is None:
            config = self.pool_config
            found = self._budgets.setdefault(
                stats.upstream,
                RetryBudget(config.retry_budget, config.retry_budget_min_per_second),
            )
        return found

    def send(  # noqa: PLR0917  (requests' HTTPAdapter.send signature)
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        if self.http_cache is not None:
            stored = self.http_cache.lookup(request)
            if stored is not None:
                return self._response(request, stored, from_cache=True)
        origin = origin_of(request.url or "")
        deadline = _deadline.current()
        token = None
        if deadline is None:  # used without a Client's request(): the call is this send
            deadline = Deadline(self.deadline_for(origin))
            token = _deadline.bind(deadline)
        try:
            call = _Call(self, request, origin, deadline, timeout)
            return call.run(
                stream=stream, verify=call.verification(verify), cert=cert, proxies=proxies
            )
        finally:
            if token is not None:
                _deadline.unbind(token)

    def attempt(
        self,
        request: requests.PreparedRequest,
        *,
        stream: bool,
        timeout: Any,
        verify: Any,
        cert: Any,
        proxies: Any,
    ) -> requests.Response:
        """One try, no retries: straight to the urllib3 pool, or through requests' adapter to a proxy."""
        if proxies and select_proxy(request.url or "", proxies) is not None:
            return super().send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        pool = self._finder.pool_for(request, verify, cert)
        return self.build_response(
            request, _transport.send(pool, request, timeout, self.max_retries)
        )

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        """requests' response for urllib3's ``resp``, through the HTTP cache if there is one."""
        from_cache = False
        if self.http_cache is not None:
            resp, from_cache = self.http_cache.arrived(req, resp)
        return self._response(req, resp, from_cache=from_cache)

    def _response(
        self, req: requests.PreparedRequest, resp: Any, *, from_cache: bool
    ) -> requests.Response:
        """requests' response for urllib3's ``resp``; the cookie parser runs only if a cookie is set.

        The fields are those ``requests.Response()`` starts with and ``HTTPAdapter.build_response``
        sets (a test compares them), set at once; the cookie jar is made on first use.
        """
        response = _Response.__new__(_Response)
        headers = _transport.headers_of(resp)
        vars(response).update(
            _content=False,
            _content_consumed=False,
            _next=None,
            status_code=resp.status,
            headers=headers,
            raw=resp,
            url=req.url.decode("utf-8") if isinstance(req.url, bytes) else req.url,
            encoding=_transport.encoding_of(headers.get("content-type")),
            history=[],
            reason=resp.reason,
            elapsed=_NO_TIME,
            request=req,
            connection=self,
            from_cache=from_cache,
        )
        if _transport.sets_cookie(headers):
            extract_cookies_to_jar(response.cookies, req, resp)
        return response


_NO_TIME: Final = datetime.timedelta(0)


class _Call:
    """One call through the adapter: its attempts, retries and errors."""

    def __init__(
        self,
        adapter: SharedAdapter,
        request: requests.PreparedRequest,
        origin: str,
        deadline: Deadline,
        timeout: Any,
    ) -> None:
        self.adapter = adapter
        self.request = request
        self.origin = origin
        self.deadline = deadline
        self.settings = adapter.settings_for(origin)
        self.connect, self.read = _per_op(timeout, self.settings)
        self.stats = adapter.stats.for_upstream(origin)
        self.budget = adapter.budget_for(self.stats)
        self.retries_left = self.settings.retries or 0
        self.retried = 0

    def verification(self, verify: Any) -> Any:
        """What verifies the upstream: the caller's CA, else the upstream's, the config's, certifi's."""
        if verify is True:
            return self.settings.ca_bundle or True
        if not verify and not self.adapter.pool_config.allow_unverified:
            raise InsecureRequestRefused(
                f"{self.origin}: verify=False refused: TLS verification stays on unless the "
                f"config sets allow_unverified=True; give this upstream its CA with "
                f"UpstreamSettings(ca_bundle=...) instead"
            )
        return verify

    def run(self, **kwargs: Any) -> requests.Response:
        """The call, counted: its time to the response (or the error), and the error's kind."""
        started = time.monotonic()
        error: Exception | None = None
        try:
            return self._run(**kwargs)
        except Exception as exc:
            error = exc
            self._warn_of(exc)
            raise
        finally:
            self.stats.ended(time.monotonic() - started, error)

    def _run(self, **kwargs: Any) -> requests.Response:
        config = self.adapter.pool_config
        propagate = self.settings.propagate
        if propagate:
            trace = getattr(self.request, TRACE_ATTRIBUTE, None)
            if trace is not None:
                trace.apply(self.request.headers, config.request_id_header)
        self.budget.record_request()
        closed_pool_retries = 0
        while True:
            remaining = self.deadline.remaining()
            if remaining <= 0:
                raise DeadlineExceeded(
                    self.origin,
                    self.deadline.seconds,
                    "retrying" if self.retried else "starting",
                    request=self.request,
                )
            if propagate and config.propagate_deadline:
                self.request.headers[DEADLINE_HEADER] = str(max(int(remaining * 1000), 1))
            capped = remaining < self.connect or remaining < self.read
            timeout = Timeout(connect=min(self.connect, remaining), read=min(self.read, remaining))
            try:
                response = self.adapter.attempt(self.request, timeout=timeout, **kwargs)
            except _Refused as refused:
                raise EgressDenied(
                    self.origin, refused.host, refused.refused, request=self.request
                ) from None
            except _DeadlineWhileWaiting:
                raise DeadlineExceeded(
                    self.origin,
                    self.deadline.seconds,
                    _WAITING,
                    request=self.request,
                ) from None
            except EmptyPoolError as exc:
                raise PoolTimeout(
                    upstream=self.origin,
                    pool_maxsize=self.adapter.sizing.pool_maxsize,
                    waited=self.adapter.sizing.pool_timeout,
                    request=self.request,
                ) from exc
            except requests.exceptions.RequestException as exc:
                if pool_closed(exc) and closed_pool_retries < _POOL_CLOSED_RETRIES:
                    # The pool was closed as we took it (the pools closing at worker exit, or
                    # a closed pool left cached): nothing was sent. Drop it; a new one is made.
                    closed_pool_retries += 1
                    self.adapter.forget_closed_pools()
                    continue
                connecting = isinstance(exc, requests.exceptions.ConnectTimeout)
                error = translate(
                    exc,
                    upstream=self.origin,
                    deadline=self.deadline,
                    where="connecting" if connecting else "waiting for the response",
                    timeout_was_deadline=capped,
                )
                if isinstance(
                    error, UpstreamUnreachable | UpstreamConnectTimeout
                ) and self._may_retry(self._backoff(), f"{type(error).__name__}"):
                    continue  # nothing was sent: any method may be retried
                raise error from exc
            if self._should_retry(response):
                continue
            return self._checked(response, kwargs.get("stream", False))

    def _should_retry(self, response: requests.Response) -> bool:
        request = self.request
        if response.status_code not in self.adapter.pool_config.retry_statuses or not replay_safe(
            request.method or "GET", request.headers
        ):
            return False
        if request.body is not None and not _resendable(request.body):
            return False
        delay = _retry_after(response)
        if delay is None:
            delay = self._backoff()
        if not self._may_retry(delay, f"status {response.status_code}"):
            return False
        response.close()
        return True

    def _may_retry(self, delay: float, why: str) -> bool:
        """Whether a retry after ``delay`` seconds fits the count, the deadline and the budget; sleeps if so."""
        if self.retries_left <= 0 or delay >= self.deadline.remaining():
            return False
        if not self.budget.try_retry():
            self.stats.add("retries_denied")
            self._warn(
                "retry budget",
                f"retry budget exhausted: {why} not retried (the budget allows "
                f"{self.adapter.pool_config.retry_budget:.0%} of calls as retries)",
            )
            return False
        self.retries_left -= 1
        self.retried += 1
        self.stats.add("retries")
        logger.debug(
            "retrying %s %s after %s in %.3f s", self.request.method, self.origin, why, delay
        )
        if delay > 0:
            time.sleep(delay)
        return True

    def _warn_of(self, error: Exception) -> None:
        if isinstance(error, PoolTimeout) or (
            isinstance(error, DeadlineExceeded) and error.where == _WAITING
        ):
            self._warn("pool wait", str(error))

    def _warn(self, what: str, message: str) -> None:
        """A warning an operator must act on, at most one per upstream and kind every few seconds."""
        held = self.stats.may_warn(what, time.monotonic())
        if held is None:
            return
        trace = getattr(self.request, TRACE_ATTRIBUTE, None)
        request_id = None if trace is None else trace.request_id
        more = f" ({held} more like it not logged)" if held else ""
        logger.warning(
            "%s [request_id=%s]%s",
            message,
            request_id or "-",
            more,
            extra={"request_id": request_id, "upstream": self.origin},
        )

    def _backoff(self) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        config = self.adapter.pool_config
        ceiling = min(config.backoff_max, config.backoff_factor * 2.0**self.retried)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311  (jitter, not security)

    def _checked(self, response: requests.Response, stream: bool) -> requests.Response:
        limit = self.settings.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if (
            limit is not None
            and not response.is_redirect  # a redirect's body is discarded, never read
            and declared.isdigit()
            and int(declared) > limit
            and "Content-Encoding" not in response.headers
            and self.request.method != "HEAD"
        ):
            response.close()
            raise ResponseTooLarge(self.origin, limit, 0, request=self.request, response=response)
        response.wp_guard = _Guard(self.origin, self.deadline, limit, self.stats)  # type: ignore[attr-defined]
        return response


_WAITING: Final = "waiting for a free connection"

MAX_SETTINGS: Final = 1024
"""Upstreams whose effective settings an adapter keeps worked out."""

TRACE_ATTRIBUTE: Final = "wsgi_pool_propagation"
"""The attribute of a ``PreparedRequest`` that holds the calling request's :class:`Propagation`."""

_RETRY_AFTER: Final = Retry(respect_retry_after_header=True)


def _retry_after(response: requests.Response) -> float | None:
    """Seconds the upstream asks us to wait (``Retry-After``: seconds or a date); None if it does not say."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(_RETRY_AFTER.parse_retry_after(value), 0.0)
    except InvalidHeader:
        return None


def _per_op(timeout: Any, settings: UpstreamSettings) -> tuple[float, float]:
    """Connect and read timeouts from the caller's ``timeout`` (as requests takes it), else the settings."""
    connect: Any = settings.connect_timeout
    read: Any = settings.read_timeout
    if isinstance(timeout, Timeout):
        connect, read = timeout.connect_timeout, timeout.read_timeout
    elif isinstance(timeout, tuple):
        connect, read = timeout
    elif timeout is not None:
        connect = read = timeout
    never = float("inf")
    return (
        float(connect) if isinstance(connect, int | float) else never,
        float(read) if isinstance(read, int | float) else never,
    )


# -- the response body ---------------------------------------------------------------------------


class _Guard:
    __slots__ = ("deadline", "limit", "stats", "upstream")

    def __init__(
        self, upstream: str, deadline: Deadline, limit: int | None, stats: UpstreamStats
    ) -> None:
        self.upstream = upstream
        self.deadline = deadline
        self.limit = limit
        self.stats = stats


class _Response(requests.Response):
    """A response whose body is capped at ``max_response_bytes`` and whose errors name the upstream."""

    from_cache: bool = False
    """Whether the worker's HTTP cache answered (as CacheControl's adapter says it)."""

    @property
    def cookies(self) -> RequestsCookieJar:
        """The cookies the response set (made on first use, like requests')."""
        jar = vars(self).get("_jar")
        if jar is None:
            jar = self._jar = RequestsCookieJar()
        return jar

    @cookies.setter
    def cookies(self, value: RequestsCookieJar) -> None:
        self._jar = value

    wp_guard: _Guard | None = None

    def iter_content(self, chunk_size: int | None = 1, decode_unicode: Any = False) -> Any:
        chunks = super().iter_content(chunk_size, decode_unicode)
        guard = self.wp_guard
        return chunks if guard is None else self._guarded(chunks, guard)

    def _guarded(self, chunks: Iterator[Any], guard: _Guard) -> Iterator[Any]:
        received = 0
        with self._translated(guard):
            for chunk in chunks:
                received += len(chunk)
                if guard.limit is not None and received > guard.limit:
                    raise ResponseTooLarge(
                        guard.upstream, guard.limit, received, request=self.request, response=self
                    )
                yield chunk

    def read_body(self) -> None:
        """Read the whole body now, as requests' ``content`` does, in one read of the raw response."""
        guard = self.wp_guard
        if (
            guard is None
            or self._content is not False
            or self._content_consumed
            or self.raw is None
            or self.raw.chunked  # read as requests reads it: chunk by chunk, its errors
            or self.status_code == 0
        ):
            self.content  # noqa: B018  (requests' own answer: the body read, None, or its error)
            return
        limit = guard.limit
        raw = self.raw
        known = getattr(raw, "length_remaining", None)
        if (
            limit is not None
            and known is not None
            and known <= limit
            and not raw.headers.get("content-encoding")
        ):
            limit_read = None  # the body is as long as its length says, and within the limit:
            # read it in one go (urllib3 reads a capped amount in two reads and a buffer)
        else:
            limit_read = None if limit is None else limit + 1
        with self._translated(guard):
            body = _transport.read_all(raw, limit_read)
            if limit is not None and len(body) > limit:
                raise ResponseTooLarge(
                    guard.upstream, limit, len(body), request=self.request, response=self
                )
        self._content = body
        self._content_consumed = True

    @contextlib.contextmanager
    def _translated(self, guard: _Guard) -> Iterator[None]:
        """Errors while reading the body: the response closed, the error naming the upstream."""
        try:
            yield
        except ResponseTooLarge as exc:
            self.close()
            guard.stats.failed(exc)
            raise
        except requests.exceptions.RequestException as exc:
            self.close()
            error = translate(
                exc, upstream=guard.upstream, deadline=guard.deadline, where="reading the body"
            )
            guard.stats.failed(error)
            raise error from exc


def live_pools(manager: Any) -> list[HTTPConnectionPool]:
    """The pools a urllib3 pool manager holds now; one evicted meanwhile is skipped."""
    return list(filter(None, [manager.pools.get(key) for key in manager.pools.keys()]))  # noqa: SIM118  (urllib3's container refuses iteration)


def read_body(response: requests.Response) -> None:
    """Read a response's body now, as requests does for a call that does not stream it."""
    if isinstance(response, _Response):
        response.read_body()
    else:  # from an adapter the client mounted
        response.content  # noqa: B018  (reads the body)


def pool_origin(scheme: str, host: str | None, port: int | None) -> str:
    """The upstream a urllib3 pool connects to, named as :func:`origin_of` names it."""
    host = host or ""
    authority = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return _origin(scheme, f"{authority}:{port}" if port is not None else authority)


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``, default ports filled in: how upstreams are named.

    On every call's path: only the part before the path is looked at, and its parsing is cached.
    """
    scheme, authority = _transport.authority_of(url)
    return _origin(scheme, authority.rpartition("@")[2])


@functools.lru_cache(maxsize=1024)
def _origin(scheme: str, authority: str) -> str:
    try:
        parts = parse_url(f"{scheme}://{authority}")
        return normalize_origin(f"{parts.scheme}://{parts.netloc}")
    except (LocationParseError, ValueError):  # not a URL requests will send: it says so itself
        return f"{scheme.lower()}://{authority.lower()}"


class WorkerPools(_ReadOnly):
    """The pools of one process, built after fork; every client of the process shares them.

    Read-only after construction except for the urllib3 pools inside ``adapter`` and the
    counters, which are thread-safe. ``pid`` is the process that built them: no other
    process may use them.
    """

    def __init__(self, config: PoolConfig, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.config = config
        self.watchdog = Watchdog()
        self.adapter = SharedAdapter(config, self.watchdog)
        self.sizing = self.adapter.sizing
        self.proxies, self.no_proxy = _proxy_settings(config)
        self.metrics: Exporter | None = None
        """The Prometheus side (``config.prometheus`` or ``config.metrics_path``), else None."""
        if config.prometheus or config.metrics_path:
            from .prometheus import Exporter  # noqa: PLC0415  (prometheus_client is optional)

            self.metrics = Exporter(self)
        self._frozen = True

    def bypasses_proxy(self, host: str | None) -> bool:
        """Whether ``host`` matches the NO_PROXY list read at start (``trust_env``)."""
        return bool(host) and any(_matches(entry, host or "") for entry in self.no_proxy)

    def deadline_for(self, url: str) -> float:
        """The deadline, in seconds, of a call to ``url`` (its upstream's setting, else the config's)."""
        return self.adapter.deadline_for(origin_of(url))

    def close(self) -> None:
        """Close every idle pooled connection and stop the watchdog; connections in use close when returned."""
        self.adapter.shutdown()
        self.watchdog.close()
        if self.metrics is not None:
            self.metrics.close()

    def stats(self) -> dict[str, Snapshot]:
        """Per upstream (``scheme://host:port``): what its calls and connections did, and the
        connections in use and idle now. Upstreams past the registry's bound are under ``"other"``."""
        gauges: dict[str, list[int]] = {}
        for manager in self.adapter._managers():
            for pool in live_pools(manager):
                queue, stats = pool.pool, getattr(pool, "stats", None)
                if queue is None or stats is None:  # closed, or not ours (a SOCKS proxy's)
                    continue
                with queue.mutex:  # other threads take and return connections meanwhile
                    slots = list(queue.queue)
                found = gauges.setdefault(stats.upstream, [0, 0])
                found[0] += max(self.sizing.pool_maxsize - len(slots), 0)
                found[1] += sum(1 for conn in slots if conn is not None and conn.sock is not None)
        return {
            stats.upstream: stats.snapshot(*gauges.get(stats.upstream, [0, 0]))
            for stats in self.adapter.stats.all()
        }

    def __repr__(self) -> str:
        upstreams = ", ".join(
            f"{name}: Requests: {found.in_use} active, {found.waiting} waiting | "
            f"Connections: {found.in_use} in use, {found.idle} idle, {found.opened} opened"
            for name, found in self.stats().items()
        )
        return (
            f"<WorkerPools pid={self.pid} pool_maxsize={self.sizing.pool_maxsize} "
            f"pool_block={self.sizing.pool_block} [{upstreams}]>"
        )


def _sink_factory(config: PoolConfig) -> Callable[[str], Sink] | None:
    """Where upstream events go besides the counters: Prometheus if the config asks for it."""
    if not (config.prometheus or config.metrics_path):
        return None
    from .prometheus import sink_for  # noqa: PLC0415  (prometheus_client is optional)

    return sink_for


def _proxy_settings(config: PoolConfig) -> tuple[Mapping[str, str], tuple[str, ...]]:
    """The proxies every client of these pools uses, and the NO_PROXY entries; read once."""
    proxies: dict[str, str] = {}
    no_proxy: tuple[str, ...] = ()
    if config.trust_env:
        found = urllib.request.getproxies_environment()
        no_proxy = tuple(
            entry.strip().lower() for entry in found.pop("no", "").split(",") if entry.strip()
        )
        proxies.update({scheme: url for scheme, url in found.items() if url})
    proxies.update(config.proxies)
    return MappingProxyType(proxies), no_proxy


def _matches(entry: str, host: str) -> bool:
    """Whether a NO_PROXY entry (``*``, a domain suffix, an address or a network) covers ``host``."""
    host = host.strip("[]").lower()
    if entry == "*":
        return True
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        domain = entry.lstrip(".")
        return host == domain or host.endswith("." + domain)
