"""The pools: urllib3's connection pools, with a bounded wait, idle expiry and the watchdog.

What a urllib3 pool does not do, added here where it can be done right:

- **a bounded wait** for a free connection (requests never passes a pool timeout), cut short
  by the call's deadline; waits are counted, and one the deadline ended is told apart;
- **client-side idle expiry**: a connection idle longer than ``idle_timeout`` is closed when
  taken, not reused (the server may be closing it right now);
- **the watchdog**: while a connection carries a call, the process's watchdog holds it with
  the call's deadline;
- **what a try did** (``_attempt``): whether its request went out on a reused connection and
  whether an answer came back, for the call's replay rule; a replay gets a fresh connection;
- the pool's statistics: connections opened, reused, discarded, idle-expired.

The send itself is urllib3's ``urlopen``, or the fast path's :meth:`Exchange.send` while the
seams it skips are intact. New connections are the process's connection classes, unless a
tool replaced urllib3's (vcrpy): then theirs, so the tool sees every connection.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import urllib3.connectionpool
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import EmptyPoolError

from . import _attempt, _deadline
from ._connection import connection_classes
from ._deadline import Watchdog
from ._egress import EgressPolicy
from ._fast import seams
from ._fast.exchange import Exchange
from ._origins import pool_origin
from ._stats import Counters, Registry

if TYPE_CHECKING:
    from urllib3._base_connection import BaseHTTPConnection
    from urllib3.response import BaseHTTPResponse


_URLLIB3_POOLS: Final = {
    "http": urllib3.connectionpool.HTTPConnectionPool,
    "https": urllib3.connectionpool.HTTPSConnectionPool,
}


class DeadlineWhileWaiting(EmptyPoolError):
    """The deadline, not ``pool_timeout``, ended the wait for a free connection."""


class HTTPPool(Exchange, HTTPConnectionPool):
    """urllib3's pool, with the wait, idle expiry, watchdog and try record above."""

    wp_checked: tuple[Any, Any] | None = None  # the verify and cert requests checked it for
    wp_connection_class: type[Any]  # set per process by pool_classes, as are the four below
    pool_wait: float = 0.0
    idle_timeout: float = 0.0
    watchdog: Watchdog
    registry: Registry
    stats: Counters

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = self.registry.for_upstream(pool_origin(self.scheme, self.host, self.port))

    @property
    def ConnectionCls(self) -> Any:  # type: ignore[override]  # urllib3's is a class attribute
        """The class of new connections: the process's own, or urllib3's if a tool replaced it."""
        if seams.CONNECTION_CLASSES.intact():
            return self.wp_connection_class
        return vars(_URLLIB3_POOLS[self.scheme])["ConnectionCls"]

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
        if getattr(conn, "sock", None) is not None:
            attempt = _attempt.current()
            if attempt is not None and attempt.fresh:
                conn.close()  # a replay: never on a connection older than the failed try
            elif time.monotonic() - getattr(conn, "wp_idle_since", 0.0) > self.idle_timeout:
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
                raise DeadlineWhileWaiting(self, str(exc)) from None
            raise

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            self.watchdog.disarm(conn)
            conn.wp_idle_since = time.monotonic()
            sent = getattr(conn, "wp_sent", False)
            conn.wp_sent = False
            if sent and (
                getattr(conn, "sock", None) is None
                or (not self.block and self.pool is not None and self.pool.full())
            ):
                self.stats.add("discarded")  # closed after use, or no room to keep it
        super()._put_conn(conn)

    def _make_request(
        self,
        conn: Any,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> BaseHTTPResponse:
        deadline = _deadline.current()
        if deadline is not None:  # pragma: no branch  (the adapter binds one for every call)
            self.watchdog.arm(deadline, conn)
        reused = getattr(conn, "sock", None) is not None
        attempt = _attempt.current()
        if attempt is not None:
            attempt.reused = reused
        self.stats.sent(reused=reused)
        conn.wp_sent = True
        try:
            response = super()._make_request(conn, method, url, body, headers, *args, **kwargs)
        except BaseException:
            # The caller (urlopen, or Exchange) closes it and gives its slot back empty.
            self.watchdog.disarm(conn)
            if getattr(conn, "sock", None) is not None:
                self.stats.add("discarded")
            conn.wp_sent = False
            raise
        if attempt is not None:
            attempt.answered = True
        return response


class HTTPSPool(HTTPPool, HTTPSConnectionPool):  # type: ignore[override]  # ConnectionCls: above
    pass


def pool_classes(
    wait: float,
    idle_timeout: float,
    watchdog: Watchdog,
    egress: EgressPolicy | None,
    registry: Registry,
) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes bound to one process's settings, watchdog, egress policy and stats."""
    plain, tls = connection_classes(egress)
    settings = {
        "pool_wait": wait,
        "idle_timeout": idle_timeout,
        "watchdog": watchdog,
        "registry": registry,
    }
    return {
        "http": type("HTTPConnectionPool", (HTTPPool,), {**settings, "wp_connection_class": plain}),
        "https": type(
            "HTTPSConnectionPool", (HTTPSPool,), {**settings, "wp_connection_class": tls}
        ),
    }
