"""What a worker's pools did, per upstream: counters kept on the call path at the cost of a lock.

One :class:`Counters` per upstream (``scheme://host:port``) per worker process. The
pools, the adapter and the send path add to it as things happen; readers take a
:meth:`Counters.snapshot`. The number of upstreams tracked is bounded: past
:data:`MAX_UPSTREAMS`, calls to further upstreams are counted together under
:data:`OTHER` (an app that calls arbitrary hosts, webhooks say, stays bounded in memory
and in metric labels).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol

logger = logging.getLogger("wsgi_pool")

MAX_UPSTREAMS: Final = 200
"""Upstreams counted one by one per worker; the rest are counted together as :data:`OTHER`."""

OTHER: Final = "other"
"""The name under which upstreams past :data:`MAX_UPSTREAMS` are counted."""

WARN_EVERY: Final = 10.0
"""Seconds between two warnings of one kind about one upstream; those in between are counted."""

SINK_ERROR_EVERY: Final = 60.0
"""Seconds between two logged failures of a sink (metrics): a failing exporter never fails a call."""

BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""Upper bounds (seconds) of the call-duration histogram, OpenTelemetry's advice for
``http.client.request.duration``; a last bucket takes the rest."""

CONNECTION_BUCKETS: Final = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
"""Upper bounds (seconds) of the connection-lifetime histogram, OpenTelemetry's advice for
``http.client.connection.duration``."""


class Sink(Protocol):
    """Where an upstream's events go as well (Prometheus, OpenTelemetry): counters by name,
    each call's end (its method, and its status if an answer came), failures, connections
    closed (how long they were open)."""

    def add(self, name: str, count: float) -> None: ...

    def ended(
        self, seconds: float, error: BaseException | None, method: str, status: int | None
    ) -> None: ...

    def failed(self, error: BaseException) -> None: ...

    def closed(self, seconds: float) -> None: ...


def origin_parts(upstream: str) -> tuple[str, str, int | None]:
    """``"https://[::1]:8443"`` -> ``("https", "::1", 8443)``: the scheme, ``server.address``
    and ``server.port`` of an upstream as the counters name it (:data:`OTHER`: no port)."""
    scheme, _, authority = upstream.partition("://")
    if not authority:
        return "", upstream, None
    host, _, port = authority.rpartition(":")
    if not port.isdigit():
        return scheme, authority.strip("[]"), None
    return scheme, host.strip("[]"), int(port)


KNOWN_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)


def error_type(error: BaseException | None, status: int | None) -> str:
    """OpenTelemetry's ``error.type`` of a call: the exception's class, else a 4xx or 5xx
    status, else "" (it succeeded)."""
    if error is not None:
        kind = type(error)
        return f"{kind.__module__}.{kind.__qualname__}"
    if status is not None and status >= 400:
        return str(status)
    return ""


def method_name(method: str | None) -> str:
    """``http.request.method`` as OpenTelemetry names it: a known method, else ``_OTHER``
    (bounded: a caller's own verbs do not grow the metrics)."""
    upper = (method or "GET").upper()
    return upper if upper in KNOWN_METHODS else "_OTHER"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamSnapshot:
    """One upstream's counts at one moment, in one worker."""

    upstream: str
    calls: int = 0
    """Calls that ended (a response, or an error)."""
    opened: int = 0
    """Connections opened (replays included)."""
    reused: int = 0
    """Requests sent on a connection that was already open."""
    idle_expired: int = 0
    """Connections closed because they sat idle past ``idle_timeout``."""
    discarded: int = 0
    """Connections closed after use instead of kept: an error, the upstream closing, a full pool."""
    retired: int = 0
    """Connections closed between calls past ``max_connection_age`` or ``max_requests_per_connection``."""
    ejections: int = 0
    """Times an address of the upstream was ejected (failed connects, or 5xx answers if set)."""
    shed: int = 0
    """Calls failed at once because ``max_pending`` calls already waited (``PoolOverloaded``)."""
    waits: int = 0
    """Times a call found no free connection and waited for one."""
    wait_seconds: float = 0.0
    """Total time spent waiting for a free connection."""
    wait_timeouts: int = 0
    """Waits for a free connection that ended without one (``pool_timeout`` or the deadline)."""
    retries: int = 0
    """Retries made (a status, or a connection that could not be made)."""
    retries_denied: int = 0
    """Retries the retry budget refused."""
    replays: int = 0
    """Requests sent again on a new connection after a reused one turned out closed."""
    errors: MappingProxyType[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Calls that ended in an error, by the error's class name."""
    buckets: tuple[int, ...] = (0,) * (len(BUCKETS) + 1)
    """Calls per response-time bucket (not cumulative): ``BUCKETS`` then the rest."""
    seconds: float = 0.0
    """Total response time of the calls counted in ``buckets``."""
    waiting: int = 0
    """Calls waiting for a free connection now."""
    active: int = 0
    """Calls in flight now (from the call to its response's head, or its error)."""
    in_use: int = 0
    """Connections taken by calls now (read from the pools)."""
    idle: int = 0
    """Open connections waiting in the pools now (read from the pools)."""

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as plain JSON-ready values."""
        return {
            name: dict(value) if isinstance(value, MappingProxyType) else value
            for name, value in ((name, getattr(self, name)) for name in self.__slots__)
        }


class Counters:
    """One upstream's counters in one worker.

    Mutable state: every counter below, changed only under ``lock``.
    """

    __slots__ = (
        "active",
        "buckets",
        "calls",
        "discarded",
        "ejections",
        "errors",
        "idle_expired",
        "lock",
        "opened",
        "replays",
        "retired",
        "retries",
        "retries_denied",
        "reused",
        "seconds",
        "shed",
        "sinks",
        "upstream",
        "wait_seconds",
        "wait_timeouts",
        "waiting",
        "waits",
        "warned",
    )

    def __init__(self, upstream: str, sinks: Sequence[Sink] = ()) -> None:
        self.upstream = upstream
        self.sinks = tuple(sinks)
        self.lock = threading.Lock()
        self.calls = self.opened = self.reused = self.idle_expired = self.discarded = 0
        self.waits = self.wait_timeouts = self.retries = self.retries_denied = self.replays = 0
        self.waiting = self.retired = self.ejections = self.shed = self.active = 0
        self.warned: dict[str, tuple[float, int]] = {}  # per warning: when last logged, held back
        self.wait_seconds = self.seconds = 0.0
        self.errors: dict[str, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)

    def add(self, name: str, count: int = 1) -> None:
        """Add ``count`` to the counter ``name``."""
        with self.lock:
            setattr(self, name, getattr(self, name) + count)
        for sink in self.sinks:
            _tell(sink.add, name, count)

    def sent(self, *, reused: bool) -> None:
        """A request went out on a reused connection, or on one just opened."""
        with self.lock:
            if reused:
                self.reused += 1
            else:
                self.opened += 1
        for sink in self.sinks:
            _tell(sink.add, "reused" if reused else "opened", 1)

    def waited(self, seconds: float, *, got: bool) -> None:
        """A call waited ``seconds`` for a free connection, and got one or not."""
        with self.lock:
            self.waits += 1
            self.wait_seconds += seconds
            if not got:
                self.wait_timeouts += 1
        for sink in self.sinks:
            _tell(sink.add, "waits", 1)
            _tell(sink.add, "wait_seconds", seconds)
            _tell(sink.add, "wait_timeouts", 0 if got else 1)

    def ended(
        self,
        seconds: float,
        error: BaseException | None,
        method: str = "GET",
        status: int | None = None,
    ) -> None:
        """A call (``method``) ended after ``seconds``: an answer (``status``), or ``error``."""
        index = bisect.bisect_left(BUCKETS, seconds)
        with self.lock:
            self.active -= 1
            self.calls += 1
            self.seconds += seconds
            self.buckets[index] += 1
            if error is not None:
                kind = type(error).__name__
                self.errors[kind] = self.errors.get(kind, 0) + 1
        for sink in self.sinks:
            _tell(sink.ended, seconds, error, method, status)

    def started(self) -> None:
        """A call began (it ends with :meth:`ended`)."""
        with self.lock:
            self.active += 1

    def closed(self, seconds: float) -> None:
        """A connection the pools opened closed after ``seconds`` open."""
        for sink in self.sinks:
            _tell(sink.closed, seconds)

    def failed(self, error: BaseException) -> None:
        """A call that had its response failed later (reading the body): counted by kind."""
        kind = type(error).__name__
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
        for sink in self.sinks:
            _tell(sink.failed, error)

    def may_warn(self, what: str, now: float) -> int | None:
        """None if a warning about ``what`` was logged in the last :data:`WARN_EVERY` seconds
        (it is counted as held back); else how many were held back since the last one."""
        with self.lock:
            last, held = self.warned.get(what, (-WARN_EVERY, 0))
            if now - last < WARN_EVERY:
                self.warned[what] = (last, held + 1)
                return None
            self.warned[what] = (now, 0)
            return held

    def snapshot(self, in_use: int = 0, idle: int = 0) -> UpstreamSnapshot:
        """The counts now, with the pools' ``in_use`` and ``idle`` connections."""
        with self.lock:
            return UpstreamSnapshot(
                upstream=self.upstream,
                calls=self.calls,
                opened=self.opened,
                reused=self.reused,
                idle_expired=self.idle_expired,
                discarded=self.discarded,
                retired=self.retired,
                ejections=self.ejections,
                shed=self.shed,
                waits=self.waits,
                wait_seconds=self.wait_seconds,
                wait_timeouts=self.wait_timeouts,
                retries=self.retries,
                retries_denied=self.retries_denied,
                replays=self.replays,
                errors=MappingProxyType(dict(self.errors)),
                buckets=tuple(self.buckets),
                seconds=self.seconds,
                waiting=self.waiting,
                active=self.active,
                in_use=in_use,
                idle=idle,
            )


class Registry:
    """A worker's :class:`Counters`, one per upstream, at most ``limit`` (then :data:`OTHER`).

    Mutable state: ``_by_upstream``, added to only under ``_lock``; read without it.
    """

    def __init__(
        self,
        limit: int = MAX_UPSTREAMS,
        sink_for: Sequence[Callable[[str], Sink | None]] = (),
    ) -> None:
        self._limit = limit
        self._sink_for = tuple(sink_for)
        self._lock = threading.Lock()
        self._by_upstream: dict[str, Counters] = {}

    def for_upstream(self, upstream: str) -> Counters:
        """The stats of ``upstream`` (``scheme://host:port``), or of :data:`OTHER` past the limit."""
        found = self._by_upstream.get(upstream)
        if found is not None:
            return found
        with self._lock:
            found = self._by_upstream.get(upstream)
            if found is None:  # pragma: no branch  (else: another thread added it meanwhile)
                if len(self._by_upstream) >= self._limit:
                    upstream = OTHER
                found = self._by_upstream.get(upstream)
                if found is None:
                    sinks = [sink for make in self._sink_for if (sink := _made(make, upstream))]
                    found = self._by_upstream[upstream] = Counters(upstream, sinks)
        return found

    def all(self) -> list[Counters]:
        """Every upstream's stats, in the order they were first used."""
        return list(self._by_upstream.values())


_last_sink_error = -SINK_ERROR_EVERY


def _tell(event: Callable[..., None], *args: Any) -> None:
    """Hand an event to a sink; a sink that fails is logged (once a minute), never raised."""
    try:
        event(*args)
    except Exception:
        _sink_failed()


def _made(make: Callable[[str], Sink | None], upstream: str) -> Sink | None:
    try:
        return make(upstream)
    except Exception:
        _sink_failed()
        return None


def _sink_failed() -> None:
    global _last_sink_error
    now = time.monotonic()
    if now - _last_sink_error >= SINK_ERROR_EVERY:
        _last_sink_error = now
        logger.exception(
            "wsgi_pool: a metrics sink failed; the call goes on (further failures within "
            "%g s are not logged)",
            SINK_ERROR_EVERY,
        )
