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
logged once a minute and never fails a call (``_stats``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from ._stats import BUCKETS, CONNECTION_BUCKETS, Sink, method_name, origin_parts
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
    """One process's instruments, made on the meter ``wsgi_pool``."""

    def __init__(self, exporter: OpenTelemetryMetrics) -> None:
        from opentelemetry import metrics  # noqa: PLC0415  (opentelemetry-api is optional)

        meter = metrics.get_meter("wsgi_pool")
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
            callbacks=[exporter.open_connections],
            unit="{connection}",
            description="Number of outbound HTTP connections that are currently active or idle on the client.",
        )
        meter.create_observable_up_down_counter(
            "http.client.active_requests",
            callbacks=[exporter.active_requests],
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
        if error is not None:
            kind = type(error)
            found["error.type"] = f"{kind.__module__}.{kind.__qualname__}"
        elif status is not None and status >= 400:
            found["error.type"] = str(status)
        self._instruments.duration.record(seconds, found)

    def failed(self, error: BaseException) -> None:
        return None  # counted with the call's duration (error.type) when the call ended

    def closed(self, seconds: float) -> None:
        self._instruments.lifetime.record(seconds, self._attributes)


class OpenTelemetryMetrics(Extension):
    """One process's side of the OpenTelemetry metrics, attached to its pools.

    Mutable state: ``_pools``, set once by :meth:`start`.
    """

    def __init__(self) -> None:
        self._pools: WorkerPools | None = None
        self._instruments = _Instruments(self)

    def sink_for(self, upstream: str) -> Sink:
        return _UpstreamSink(self._instruments, upstream)

    def start(self, pools: WorkerPools) -> None:
        self._pools = pools

    def open_connections(self, options: Any) -> Iterable[Any]:
        """The observable ``http.client.open_connections``: each upstream's, now."""
        from opentelemetry.metrics import Observation  # noqa: PLC0415

        for upstream, found in self._stats():
            where = attributes(upstream)
            yield Observation(found.in_use, {**where, "http.connection.state": "active"})
            yield Observation(found.idle, {**where, "http.connection.state": "idle"})

    def active_requests(self, options: Any) -> Iterable[Any]:
        """The observable ``http.client.active_requests``: each upstream's, now."""
        from opentelemetry.metrics import Observation  # noqa: PLC0415

        for upstream, found in self._stats():
            yield Observation(found.active, attributes(upstream))

    def _stats(self) -> list[tuple[str, Any]]:
        pools = self._pools
        return [] if pools is None or pools.retired else list(pools.stats().items())
