"""The pools: urllib3's connection pools, with a bounded wait, idle expiry and the watchdog.

What a urllib3 pool does not do, added here where it can be done right:

- **a bounded wait** for a free connection (requests never passes a pool timeout), cut short
  by the call's deadline; waits are counted, and one the deadline ended is told apart;
- **one bound per upstream** (:class:`Slots`): ``pool_maxsize`` connections in use to an
  upstream, counted across every urllib3 pool made for it, so one evicted by
  ``pool_connections`` while its connections are in use does not let a new one exceed it;
- **client-side idle expiry**: a connection idle longer than ``idle_timeout`` is closed when
  taken, not reused (the server may be closing it right now);
- **the watchdog**: while a connection carries a call (its proxy tunnel's set-up included),
  the process's watchdog holds it with the call's deadline (found on each use: a stopped one
  is replaced);
- **what a try did** (``_attempt``): whether its request went out on a reused connection and
  whether an answer came back, for the call's replay rule; a replay gets a fresh connection;
- the pool's statistics: connections opened, reused, discarded, idle-expired.

The send itself is urllib3's ``urlopen``, or the fast path's :meth:`Exchange.send` while the
seams it skips are intact. New connections are the process's connection classes, unless a
tool replaced urllib3's (vcrpy): then theirs, so the tool sees every connection.
"""

from __future__ import annotations

import collections
import gc
import math
import random
import select
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import urllib3.connectionpool
import urllib3.util.wait
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection
from urllib3.exceptions import EmptyPoolError
from urllib3.util.connection import is_connection_dropped

from . import _attempt, _deadline
from ._connection import Pooled, connection_classes
from ._egress import EgressPolicy
from ._fast import seams, whole
from ._fast.exchange import Exchange
from ._fast.whole import WholeResponse
from ._origins import pool_origin
from ._outliers import Outliers
from ._stats import Counters, Registry

if TYPE_CHECKING:
    from urllib3._base_connection import BaseHTTPConnection
    from urllib3.response import BaseHTTPResponse


_URLLIB3_POOLS: Final = {
    "http": urllib3.connectionpool.HTTPConnectionPool,
    "https": urllib3.connectionpool.HTTPSConnectionPool,
}


_EMPTY: Final = object()
_IS_CONNECTED: Final = HTTPConnection.is_connected


class DeadlineWhileWaiting(EmptyPoolError):
    """The deadline, not ``pool_timeout``, ended the wait for a free connection."""


class Shed(EmptyPoolError):
    """``max_pending`` calls already wait for a connection to the upstream: this one does not."""


AGE_JITTER: Final = 0.1
"""Each connection's ``max_connection_age`` is shortened by up to this fraction, at random."""

KEEP_ALIVE_MARGIN: Final = 1.0
"""Seconds a connection is given up before the idle timeout its server announces
(``Keep-Alive: timeout=N``), at most half of it: the server's clock starts before ours."""


class Slots:
    """The connections one upstream may have in use in one process's pools (``pool_maxsize``).

    Shared by every urllib3 pool made for the upstream: a pool evicted while its connections
    are in use keeps holding their slots until they come back. Mutable state: ``in_use``,
    ``waiting`` and ``unread``, changed only under ``_lock``; a slot given back wakes one
    waiter (``_freed``) only if a call waits.
    """

    __slots__ = ("__weakref__", "_freed", "_lock", "in_use", "size", "unread", "waiting")

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_use = 0
        self.waiting = 0  # calls waiting for a slot
        self.unread = 0  # of those in use: responses that may be dropped with the body unread
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    def take(self, wait: float) -> bool:
        """Take a slot, waiting at most ``wait`` seconds; False if none came free."""
        with self._lock:
            if self.in_use < self.size:
                self.in_use += 1
                return True
            if wait <= 0:
                return False
            ends = time.monotonic() + wait
            while True:
                self._freed.wait(wait)
                if self.in_use < self.size:
                    self.in_use += 1
                    return True
                wait = ends - time.monotonic()
                if wait <= 0:
                    return False

    def wait_begins(self, limit: int | None) -> bool:
        """One more call waits for a slot, unless ``limit`` calls already do (False)."""
        with self._lock:
            if limit is not None and self.waiting >= limit:
                return False
            self.waiting += 1
            return True

    def wait_ends(self) -> None:
        with self._lock:
            self.waiting -= 1

    def note_unread(self, change: int) -> None:
        with self._lock:
            self.unread += change

    def give(self) -> None:
        """Give a slot back; nothing if none is out (a tool put back a connection it took from
        the queue itself, as vcrpy does when a cassette ends)."""
        with self._lock:
            if self.in_use == 0:
                return
            self.in_use -= 1
            if self.waiting:
                self._freed.notify()


class HTTPPool(Exchange, HTTPConnectionPool):
    """urllib3's pool, with the wait, idle expiry, watchdog and try record above."""

    wp_checked: tuple[Any, Any] | None = None  # the verify and cert requests checked it for
    wp_connection_class: type[Any]  # set per process by pool_classes, as are the five below
    pool_wait: float = 0.0
    idle_timeout: float = 0.0
    max_age: float | None = None
    max_requests: int | None = None
    max_pending: int | None = None
    lifetime_for: Callable[[str], tuple[float, float | None]]
    outliers: Outliers | None = None
    registry: Registry
    slots_for: Callable[[str], Slots]
    stats: Counters
    slots: Slots | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        origin = pool_origin(self.scheme, self.host, self.port)
        self.stats = self.registry.for_upstream(origin)
        self.slots = type(self).slots_for(origin) if self.block else None
        self.idle_timeout, self.max_age = type(self).lifetime_for(origin)

    def _new_conn(self) -> BaseHTTPConnection:
        conn = super()._new_conn()
        conn.wp_stats = self.stats  # type: ignore[attr-defined]  # its ejections are counted there
        return conn

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
        slots = self.slots
        if slots is None:  # pool_block=False: no bound, urllib3 opens and discards extra ones
            conn = super()._get_conn(wait)
        else:
            if _dropped_pending:
                release_dropped()
            if not slots.take(0):  # no free slot: a wait, counted
                self._wait_for_slot(slots, wait, short=short)
            # A slot is ours, so the queue has a place for us. Should this fail (the pool was
            # closed meanwhile), urllib3's caller gives the slot back with _put_conn(None).
            conn = self._queued(wait)
            conn.wp_out = True  # it holds a slot until it comes back
            conn.wp_lease = getattr(conn, "wp_lease", 0) + 1
        if getattr(conn, "sock", None) is not None:
            attempt = _attempt.current()
            now = time.monotonic()
            if attempt is not None and attempt.fresh:
                conn.close()  # a replay: never on a connection older than the failed try
            elif now - getattr(conn, "wp_idle_since", 0.0) > min(
                self.idle_timeout, getattr(conn, "wp_idle_limit", math.inf)
            ):
                conn.close()  # idle too long: the server may be closing it right now
                self.stats.add("idle_expired")
            elif self._retired(conn, now):
                conn.close()  # too old (it aged while idle): a new one, perhaps elsewhere
                self.stats.add("retired")
            elif self.outliers is not None and self._address_ejected(conn):
                conn.close()  # its address is ejected: a new one, elsewhere or failing at once
                self.stats.add("discarded")
        # Kept: open before this call took it (a tunnel through a proxy opens after this).
        conn.wp_kept = getattr(conn, "sock", None) is not None  # type: ignore[attr-defined]
        return conn

    def _queued(self, wait: float) -> Any:
        """urllib3's ``_get_conn`` for a caller holding a slot, whose item in the queue is
        there: taken without the queue's conditions (nothing waits on them here)."""
        queue: Any = self.pool
        # gevent's queue (monkey-patched) has no mutex: urllib3's own way there.
        if queue is None or not hasattr(queue, "mutex") or not seams.POOL.intact():
            return super()._get_conn(wait)
        with queue.mutex:
            items = queue.queue
            conn: Any = items.pop() if items else _EMPTY
        if conn is _EMPTY:  # pragma: no cover  (a slot holder always finds its item)
            return super()._get_conn(wait)
        if conn is not None and dropped(conn):
            conn.close()  # as urllib3: closed by the server while idle
        return conn or self._new_conn()

    def _wait_for_slot(self, slots: Slots, wait: float, *, short: bool) -> None:
        stats = self.stats
        if not slots.wait_begins(self.max_pending):
            stats.add("shed")
            raise Shed(self, "Too many calls wait for a connection (max_pending).")
        stats.add("waiting")
        started = time.monotonic()
        got = False
        try:
            # In slices: a response dropped unread meanwhile (noted by its finalizer, which
            # cannot wake anyone) or held in a reference cycle gives its connection back here.
            got = slots.take(min(wait, WAIT_SLICE))
            while not got:
                left = wait - (time.monotonic() - started)
                if (_dropped_pending and release_dropped()) or (
                    slots.unread and _collect_for_dropped(left)
                ):
                    got = slots.take(0)  # unless another caller was quicker
                    continue
                if left <= 0:
                    break
                got = slots.take(min(left, WAIT_SLICE))
        finally:
            slots.wait_ends()
            stats.add("waiting", -1)
            waited = time.monotonic() - started
            stats.waited(waited, got=got)
            attempt = _attempt.current()
            if attempt is not None:
                attempt.waited = waited
        if not got:
            message = "Pool reached maximum size and no more connections are allowed."
            if short:  # the deadline, not pool_timeout, ended the wait
                raise DeadlineWhileWaiting(self, message)
            raise EmptyPoolError(self, message)

    def _put_conn(self, conn: Any) -> None:
        # A connection gives back the slot it took; None is urllib3 giving back the slot of one
        # it discarded. A connection that took none (a tool moved it out of the queue and back)
        # gives nothing.
        slots = self.slots
        if slots is not None and (conn is None or getattr(conn, "wp_out", False)):
            slots.give()
            if conn is not None:
                conn.wp_out = False
                if getattr(conn, "wp_unread", False):
                    _read(conn, slots)
        if conn is not None:
            _deadline.watchdog().disarm(conn)
            conn.wp_idle_since = now = time.monotonic()
            sent = getattr(conn, "wp_sent", False)
            conn.wp_sent = False
            open_ = getattr(conn, "sock", None) is not None
            if open_ and self._retired(conn, now):
                conn.close()  # past its age or its requests: closed now, between calls
                self.stats.add("retired")
                sent = open_ = False
            if sent and (
                not open_ or (not self.block and self.pool is not None and self.pool.full())
            ):
                self.stats.add("discarded")  # closed after use, or no room to keep it
        queue: Any = self.pool
        if slots is not None and hasattr(queue, "mutex") and seams.POOL.intact():
            # urllib3's put(block=False) into a queue with room, without its conditions'
            # Python-level notify unless a caller waits on them (urllib3's own _get_conn).
            with queue.mutex:
                if len(queue.queue) < queue.maxsize:
                    queue.queue.append(conn)
                    queue.unfinished_tasks += 1
                    if getattr(queue.not_empty, "_waiters", True):
                        queue.not_empty.notify()
                    return
        super()._put_conn(conn)

    def _answered(self, conn: Any, response: Any, *, reused: bool, sending: float) -> None:
        """What an answer tells of ``conn``: its requests, age and keep-alive hint, and of its
        address (a 5xx, for the outliers)."""
        if reused:
            conn.wp_requests = getattr(conn, "wp_requests", 0) + 1
        else:  # a new socket: its age and its server's keep-alive hint start afresh
            conn.wp_requests = 1
            age = self.max_age
            conn.wp_retire_at = (
                math.inf if age is None else sending + age * (1 - AGE_JITTER * random.random())  # noqa: S311  (jitter)
            )
            conn.wp_idle_limit = math.inf
        found = response.wp_headers if type(response) is WholeResponse else response.headers
        hint = found.get("keep-alive")
        if hint is not None:
            conn.wp_idle_limit = keep_alive_limit(hint)
        address = getattr(conn, "wp_address", None)
        if self.outliers is not None and self.outliers.answers is not None and address is not None:
            ejected = self.outliers.answered(address, conn.port, response.status)
            if ejected is not None:
                conn.ejected(address, ejected, "5xx answers")

    def _address_ejected(self, conn: Any) -> bool:
        """Whether ``conn`` reached an address the outliers have ejected (a tool's own
        connection, which names no address, never has)."""
        address = getattr(conn, "wp_address", None)
        outliers: Any = self.outliers  # asked only while there are outliers to eject
        return address is not None and bool(outliers.ejected(address, conn.port))

    def _retired(self, conn: Any, now: float) -> bool:
        """Whether ``conn`` is past ``max_connection_age`` or ``max_requests_per_connection``."""
        if now > getattr(conn, "wp_retire_at", math.inf):
            return True
        limit = self.max_requests
        return limit is not None and getattr(conn, "wp_requests", 0) >= limit

    def _prepare_proxy(self, conn: Any) -> None:
        # urlopen connects through a proxy's tunnel (CONNECT, the proxy's TLS, the upstream's)
        # before _make_request: the call's deadline holds here too.
        deadline = _deadline.current()
        if deadline is not None:  # pragma: no branch  (the adapter binds one for every call)
            _deadline.watchdog().arm(deadline, conn)
        try:
            super()._prepare_proxy(conn)
        except BaseException:
            _deadline.watchdog().disarm(conn)
            raise

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
            _deadline.watchdog().arm(deadline, conn)
        reused = getattr(conn, "wp_kept", False) and getattr(conn, "sock", None) is not None
        attempt = _attempt.current()
        if attempt is not None:
            attempt.reused = reused
        self.stats.sent(reused=reused)
        conn.wp_sent = True
        opening = getattr(conn, "sock", None) is None  # connected (and TLS) inside this send
        sending = time.monotonic()
        response: BaseHTTPResponse
        try:
            limit = attempt.whole if attempt is not None and reused else 0
            if (
                kwargs.pop("wp_whole", False)
                and limit
                and isinstance(conn, Pooled)  # the pools' own: nothing a tool put in its place
                and seams.WHOLE.intact()
            ):
                response = whole.make_request(
                    self, conn, method, url, body, headers, limit=limit, **kwargs
                )
            else:
                response = super()._make_request(conn, method, url, body, headers, *args, **kwargs)
        except BaseException:
            # The caller (urlopen, or Exchange) closes it and gives its slot back empty.
            _deadline.watchdog().disarm(conn)
            if getattr(conn, "sock", None) is not None:
                self.stats.add("discarded")
            conn.wp_sent = False
            raise
        self._answered(conn, response, reused=reused, sending=sending)
        if attempt is not None:
            attempt.answered = True
            # From the request going out to the head: a connection opened in this send (not a
            # proxy's tunnel, opened before) is set aside.
            setup = (attempt.connect or 0.0) + (attempt.tls or 0.0) if opening else 0.0
            attempt.first_byte = max(time.monotonic() - sending - setup, 0.0)
            if attempt.unread and self.slots is not None:
                # A body the caller may drop unread (streamed, or a response hook raised before
                # requests read it) would hold its slot for good: noted when it is freed.
                conn.wp_unread = True
                self.slots.note_unread(1)
                weakref.finalize(
                    response,
                    _note_dropped,
                    (weakref.ref(self), self.slots, conn, getattr(conn, "wp_lease", 0)),
                )
        return response


def dropped(conn: Any) -> bool:
    """urllib3's ``is_connection_dropped``: no socket, or one with something to read (the
    server's close, or bytes nobody asked for) while idle. Where urllib3 found ``poll``
    working (it looks on its first use), one ``poll`` of the socket without its helpers;
    else urllib3's own."""
    sock: Any = getattr(conn, "sock", _EMPTY)
    if (
        sock is _EMPTY
        or urllib3.util.wait.wait_for_socket is not urllib3.util.wait.poll_wait_for_socket
        or type(conn).is_connected is not _IS_CONNECTED
    ):
        return is_connection_dropped(conn)
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def keep_alive_limit(hint: str) -> float:
    """Seconds a connection may idle after an answer with ``Keep-Alive: hint``: the server's
    ``timeout=N`` less :data:`KEEP_ALIVE_MARGIN`, but never less than half of N; no limit
    without one (or with one of more than six digits)."""
    for part in hint.split(","):
        name, _, value = part.partition("=")
        if name.strip().lower() == "timeout":
            text = value.strip()
            if text.isascii() and text.isdigit() and len(text) <= 6:  # int() refuses 5,000 digits
                seconds = int(text)
                return max(seconds - KEEP_ALIVE_MARGIN, seconds / 2)
    return math.inf


# Responses freed with their body unread: (pool, its slots, connection, lease). A finalizer
# only appends here (it may run in any thread, the watchdog's included, inside any lock); the
# connections are released by the next thread that takes one from a pool, outside every lock.
# The slots are held: the pool may be gone (evicted, the response its last holder) while the
# upstream's other pools still count the slot.
_Dropped = tuple[weakref.ref["HTTPPool"], Slots, Any, int]
_dropped_pending: collections.deque[_Dropped] = collections.deque()


def _note_dropped(dropped: _Dropped) -> None:
    """A response's finalizer: its connection queued, and counted for the collection that
    freed it, whichever thread then releases the connection."""
    _dropped_pending.append(dropped)
    _collect.freed += 1


WAIT_SLICE: Final = 0.05
"""Seconds a wait for a connection lasts before it looks again for dropped responses."""
COLLECT_EVERY: Final = 1.0
"""Seconds after a garbage collection that freed no connection before a wait asks again
(doubling after each such one, up to :data:`COLLECT_MAX`)."""
COLLECT_MAX: Final = 8.0


def release_dropped() -> int:
    """Give back the connections of responses freed unread: each (if still out on its lease,
    never given back) is closed and its slot given back, as urllib3 does for a discarded one.
    How many came back."""
    released = 0
    while True:
        try:
            pool_ref, slots, conn, lease = _dropped_pending.popleft()
        except IndexError:  # none left (another thread may have taken the last)
            return released
        if not getattr(conn, "wp_out", False) or conn.wp_lease != lease:
            continue  # given back meanwhile (and perhaps taken again)
        released += 1
        conn.close()
        _deadline.watchdog().disarm(conn)
        conn.wp_out = False
        _read(conn, slots)
        pool = pool_ref()
        if pool is None:  # the pool is gone: only the upstream's count is left to right
            slots.give()
            continue
        pool.stats.add("discarded")
        # None, as urllib3 gives back a discarded connection: its slot and its place in the
        # queue. The connection object stays with its dying response (whose __del__ may yet
        # close it: it must not be one another call is using).
        pool._put_conn(None)


def _read(conn: Any, slots: Slots) -> None:
    """``conn`` is back: its response, one that might have been dropped unread, no longer is."""
    conn.wp_unread = False
    slots.note_unread(-1)


def _collect_for_dropped(left: float) -> bool:
    """While a call waits for a connection: free responses dropped in reference cycles (an
    ``except ... as e: err = e``); whether any connection came back.

    A full collection costs time on a large heap, so it is claimed by one waiter at a time,
    skipped when the wait has less than twice the last one's duration left, and after one that
    freed nothing (the pool is merely busy) not tried again for 1 s, then 2, 4, 8 s."""
    now = time.monotonic()
    if now < _collect.next or left < 2 * _collect.took:
        return False
    _collect.next = now + _collect.backoff  # claimed: other waiters skip it meanwhile
    freed = _collect.freed
    gc.collect()
    _collect.took = time.monotonic() - now
    # Fruitful if it freed a dropped response, even one another waiter released first: a
    # finalizer runs Python code, which lets other threads in before this one releases it.
    if release_dropped() > 0 or _collect.freed != freed:
        _collect.backoff = COLLECT_EVERY
        _collect.next = 0.0
        return True
    _collect.backoff = min(_collect.backoff * 2, COLLECT_MAX)
    return False


class _Collections:
    """When waits may next collect garbage, how long to back off, what the last one took.
    Changed by waiting threads without a lock: a race costs at most one extra collection."""

    __slots__ = ("backoff", "freed", "next", "took")

    def __init__(self) -> None:
        self.next = 0.0
        self.backoff = COLLECT_EVERY
        self.took = 0.0
        self.freed = 0  # responses freed unread so far (counted by their finalizers)


_collect = _Collections()


class HTTPSPool(HTTPPool, HTTPSConnectionPool):  # type: ignore[override, misc]  # ConnectionCls, _new_conn: above
    pass


def pool_classes(
    *,
    wait: float,
    lifetime_for: Callable[[str], tuple[float, float | None]],
    max_requests: int | None,
    max_pending: int | None,
    egress: EgressPolicy | None,
    outliers: Outliers | None,
    registry: Registry,
    slots_for: Callable[[str], Slots],
    made: weakref.WeakSet[Any],
) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes bound to one process's settings (``lifetime_for`` gives an
    upstream's idle timeout and connection age), egress policy, ejected addresses, stats and
    slots; the connections they make are added to ``made``."""
    plain, tls = connection_classes(egress, made, outliers)
    settings = {
        "pool_wait": wait,
        "lifetime_for": staticmethod(lifetime_for),
        "max_requests": max_requests,
        "max_pending": max_pending,
        "outliers": outliers,
        "registry": registry,
        "slots_for": staticmethod(slots_for),
    }
    return {
        "http": type("HTTPConnectionPool", (HTTPPool,), {**settings, "wp_connection_class": plain}),
        "https": type(
            "HTTPSConnectionPool", (HTTPSPool,), {**settings, "wp_connection_class": tls}
        ),
    }
