"""OpenTelemetry metrics of the pools, named and labelled by the HTTP client semantic conventions.

Turned on by ``opentelemetry=True`` (``WSGI_POOL_OPENTELEMETRY=1``); needs
``opentelemetry-api`` (``pip install 'wsgi_pool[otel]'``). The app sets up the SDK as usual (a
``MeterProvider`` with its exporter, in each worker after fork); without one the API's
no-op meter records nothing. The instruments, on the meter ``wsgi_pool``:

- ``http.client.request.duration`` (histogram, s; the conventions' buckets): each call, from
  the call to its response's head or its error, retries and redirects included; attributes
  ``http.request.method`` (``_OTHER`` for an unknown one), ``server.address``,
  ``server.port``, ``url.scheme``, ``http.response.status_code`` (when an answer came) and
  ``error.type`` (the exception's class, or a 4xx/5xx status);
- ``http.client.connection.duration`` (histogram, s): how long each connection was open;
- ``http.client.open_connections`` (observable up-down counter; ``http.connection.state``
  ``active`` or ``idle``) and ``http.client.active_requests`` (observable up-down counter):
  read from the pools when the reader collects;
- ``wsgi_pool.connection.wait_time`` (histogram, s): each wait for a free connection;
- the counters ``wsgi_pool.retries``, ``wsgi_pool.retries_denied``, ``wsgi_pool.replays``,
  ``wsgi_pool.ejections``, ``wsgi_pool.calls_shed``, ``wsgi_pool.wait_timeouts`` and
  ``wsgi_pool.connections.closed`` (``wsgi_pool.close_reason``: ``idle_expired``,
  ``discarded``, ``retired``).

An upstream past the statistics' bound is ``server.address`` ``other``. A failing meter is
logged once a minute and never fails a call (``_stats``). The instruments are made once per
meter provider; the gauges are read from every live set of pools of the process that
collects (a second set of pools, or a forked child, is counted too), summed per upstream.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from ._stats import BUCKETS, CONNECTION_BUCKETS, Sink, error_type, method_name, origin_parts
from ._worker import Extension

if TYPE_CHECKING:
    from ._worker import WorkerPools

WAIT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the connection-wait histogram."""

_COUNTED: Final = {
    "retries": ("wsgi_pool.retries", "{retry}", "Retries made (a status, or a failed connect)."),
    "retries_denied": (
        "wsgi_pool.retries_denied",
        "{retry}",
        "Retries the retry budget refused.",
    ),
    "replays": (
        "wsgi_pool.replays",
        "{request}",
        "Requests sent again after a reused connection turned out closed.",
    ),
    "ejections": (
        "wsgi_pool.ejections",
        "{ejection}",
        "Times an address of the upstream was ejected after failing.",
    ),
    "shed": (
        "wsgi_pool.calls_shed",
        "{request}",
        "Calls failed at once because max_pending calls already waited.",
    ),
    "wait_timeouts": (
        "wsgi_pool.wait_timeouts",
        "{request}",
        "Waits for a free connection that ended without one.",
    ),
}
_CLOSED: Final = ("idle_expired", "discarded", "retired")


def attributes(upstream: str) -> dict[str, Any]:
    """``server.address``, ``server.port`` and ``url.scheme`` of an upstream."""
    scheme, address, port = origin_parts(upstream)
    found: dict[str, Any] = {"server.address": address, "url.scheme": scheme}
    if port is not None:
        found["server.port"] = port
    return found


class _Instruments:
    """The instruments on the meter ``wsgi_pool`` of one meter provider, made once: a provider
    keeps the first instrument of a name (and its callbacks), so a second set of pools, or a
    forked child, shares these; the observable ones read every live exporter of the process
    that collects (:data:`_live`)."""

    def __init__(self, meter: Any) -> None:
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=BUCKETS,
        )
        self.lifetime = meter.create_histogram(
            "http.client.connection.duration",
            unit="s",
            description="The duration of the successfully established outbound HTTP connections.",
            explicit_bucket_boundaries_advisory=CONNECTION_BUCKETS,
        )
        self.wait = meter.create_histogram(
            "wsgi_pool.connection.wait_time",
            unit="s",
            description="Time a call waited for a free pooled connection.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        self.counters = {
            name: meter.create_counter(metric, unit=unit, description=doc)
            for name, (metric, unit, doc) in _COUNTED.items()
        }
        self.closed = meter.create_counter(
            "wsgi_pool.connections.closed",
            unit="{connection}",
            description="Connections closed by the pools: idle, discarded after use, or retired.",
        )
        meter.create_observable_up_down_counter(
            "http.client.open_connections",
            callbacks=[_open_connections],
            unit="{connection}",
            description="Number of outbound HTTP connections that are currently active or idle on the client.",
        )
        meter.create_observable_up_down_counter(
            "http.client.active_requests",
            callbacks=[_active_requests],
            unit="{request}",
            description="Number of active HTTP requests.",
        )


class _UpstreamSink:
    """One upstream's events turned into measurements with its attributes."""

    __slots__ = ("_attributes", "_instruments")

    def __init__(self, instruments: _Instruments, upstream: str) -> None:
        self._instruments = instruments
        self._attributes = attributes(upstream)

    def add(self, name: str, count: float) -> None:
        if count <= 0:
            return
        instruments = self._instruments
        counter = instruments.counters.get(name)
        if counter is not None:
            counter.add(count, self._attributes)
        elif name == "wait_seconds":
            instruments.wait.record(count, self._attributes)
        elif name in _CLOSED:
            instruments.closed.add(count, {**self._attributes, "wsgi_pool.close_reason": name})

    def ended(
        self, seconds: float, error: BaseException | None, method: str, status: int | None
    ) -> None:
        found = {**self._attributes, "http.request.method": method_name(method)}
        if status is not None:
            found["http.response.status_code"] = status
        kind = error_type(error, status)
        if kind:
            found["error.type"] = kind
        self._instruments.duration.record(seconds, found)

    def failed(self, error: BaseException) -> None:
        return None  # counted with the call's duration (error.type) when the call ended

    def closed(self, seconds: float) -> None:
        self._instruments.lifetime.record(seconds, self._attributes)


class OpenTelemetryMetrics(Extension):
    """One set of pools' side of the OpenTelemetry metrics: its upstreams' sinks, and its
    pools' gauges, observed with those of the process's other sets."""

    def __init__(self) -> None:
        self._instruments = _instruments()
        self.pools: WorkerPools | None = None
        """Set once by :meth:`start`."""

    def sink_for(self, upstream: str) -> Sink:
        return _UpstreamSink(self._instruments, upstream)

    def start(self, pools: WorkerPools) -> None:
        self.pools = pools
        _live.add(self)

    def close(self) -> None:
        _live.discard(self)


# The instruments of each meter provider (by identity; the provider is kept alive with them),
# and the exporters whose pools the observable instruments read.
_made: list[tuple[Any, _Instruments]] = []
_made_lock = threading.Lock()
_live: weakref.WeakSet[OpenTelemetryMetrics] = weakref.WeakSet()


def _instruments() -> _Instruments:
    from opentelemetry import metrics  # noqa: PLC0415  (opentelemetry-api is optional)

    provider = metrics.get_meter_provider()
    with _made_lock:
        for known, found in _made:
            if known is provider:
                return found
        found = _Instruments(provider.get_meter("wsgi_pool"))
        _made.append((provider, found))
        return found


def _gauges() -> dict[str, list[int]]:
    """Per upstream, now, over this process's live pools: [active, idle, active calls]."""
    pid = os.getpid()
    totals: dict[str, list[int]] = {}
    for exporter in list(_live):
        pools = exporter.pools
        if pools is None or pools.pid != pid or pools.retired:
            continue
        for upstream, found in pools.stats().items():
            total = totals.setdefault(upstream, [0, 0, 0])
            total[0] += found.in_use
            total[1] += found.idle
            total[2] += found.active
    return totals


def _open_connections(options: Any) -> Iterable[Any]:
    """The observable ``http.client.open_connections``: each upstream's, now."""
    from opentelemetry.metrics import Observation  # noqa: PLC0415

    for upstream, (active, idle, _) in _gauges().items():
        where = attributes(upstream)
        yield Observation(active, {**where, "http.connection.state": "active"})
        yield Observation(idle, {**where, "http.connection.state": "idle"})


def _active_requests(options: Any) -> Iterable[Any]:
    """The observable ``http.client.active_requests``: each upstream's, now."""
    from opentelemetry.metrics import Observation  # noqa: PLC0415

    for upstream, (_, _, calls) in _gauges().items():
        yield Observation(calls, attributes(upstream))
