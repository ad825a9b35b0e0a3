"""Prometheus metrics of the worker's pools, right under gunicorn's many processes.

Limitations first:

- It needs ``prometheus_client`` (``pip install 'wsgi_pool[prometheus]'``).
- Under gunicorn with more than one worker, every worker keeps its own numbers; only
  prometheus_client's multiprocess mode adds them up. That mode needs an empty directory
  per server start in ``PROMETHEUS_MULTIPROC_DIR`` (set before gunicorn starts, never
  shared by two servers) and the ``child_exit`` hook below, or the gauges of dead workers
  stay in the sum. Histograms and counters of dead workers stay in the sum, as they should.
- Counters and the histogram change as calls happen. The gauges (connections in use, idle,
  calls waiting) are read from the pools by a thread in each worker once a second, and by
  the worker that answers a scrape: another worker's gauges can be a second old.
- Labels are bounded: ``upstream`` is ``scheme://host:port`` (never a path), at most
  :data:`wsgi_pool._stats.MAX_UPSTREAMS` of them per worker, the rest under ``"other"``
  (``server_address`` ``other``); ``kind`` and ``error_type`` are exception class names (or
  a 4xx/5xx status); an unknown method is ``_OTHER``.

Steps:

1. ``pip install 'wsgi_pool[prometheus]'``.
2. Turn it on: ``WSGI_POOL_METRICS_PATH=/metrics`` (the middleware answers that path with
   the exposition) or ``WSGI_POOL_PROMETHEUS=1`` (metrics kept; serve them yourself with
   prometheus_client as usual, they are in its default registry or the multiprocess files).
3. With several workers: ``export PROMETHEUS_MULTIPROC_DIR=/run/myapp/metrics`` (emptied
   before each start: ``rm -rf "$PROMETHEUS_MULTIPROC_DIR"/*``).
4. In ``gunicorn.conf.py``, next to the other hooks::

       from wsgi_pool.gunicorn import child_exit  # noqa: F401

The metrics. Named after OpenTelemetry's HTTP client conventions, labelled
``server_address``, ``server_port`` and ``url_scheme``: ``http_client_request_duration_seconds``
(histogram, OpenTelemetry's buckets; also ``http_request_method``,
``http_response_status_code`` and ``error_type``), ``http_client_connection_duration_seconds``
(histogram), the gauges ``http_client_open_connections`` (``http_connection_state``:
``active``, ``idle``) and ``http_client_active_requests``. The pools' own, labelled
``upstream`` (``scheme://host:port``): ``wsgi_pool_connections_opened_total``,
``wsgi_pool_connections_reused_total``, ``wsgi_pool_connections_closed_total`` (``reason``:
``idle_expired``, ``discarded``, ``retired``), ``wsgi_pool_pool_waits_total``,
``wsgi_pool_pool_wait_seconds_total``, ``wsgi_pool_pool_wait_timeouts_total``,
``wsgi_pool_retries_total``, ``wsgi_pool_retries_denied_total``, ``wsgi_pool_replays_total``,
``wsgi_pool_ejections_total``, ``wsgi_pool_calls_shed_total``, ``wsgi_pool_errors_total``
(``kind``), and the gauge ``wsgi_pool_calls_waiting``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from ._multiproc import collector
from ._stats import BUCKETS, CONNECTION_BUCKETS, Sink, error_type, method_name, origin_parts
from ._worker import Extension

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ._worker import WorkerPools

__all__ = ["registry"]

logger = logging.getLogger("wsgi_pool")

MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
GAUGE_EVERY: Final = 1.0
"""Seconds between two refreshes of a worker's gauges."""

_COUNTERS: Final = {
    # Counters counter -> (metric name, help)
    "opened": ("connections_opened", "Connections opened to the upstream (replays included)."),
    "reused": ("connections_reused", "Requests sent on a connection that was already open."),
    "waits": ("pool_waits", "Calls that found no free connection and waited for one."),
    "wait_seconds": ("pool_wait_seconds", "Time calls spent waiting for a free connection."),
    "wait_timeouts": (
        "pool_wait_timeouts",
        "Waits for a free connection that ended without one (pool_timeout or the deadline).",
    ),
    "retries": ("retries", "Retries made (a status, or a connection that could not be made)."),
    "retries_denied": ("retries_denied", "Retries the retry budget refused."),
    "replays": ("replays", "Requests sent again after a reused connection turned out closed."),
    "ejections": (
        "ejections",
        "Times an address of the upstream was ejected after failing (outlier ejection).",
    ),
    "shed": ("calls_shed", "Calls failed at once because max_pending calls already waited."),
}
_CLOSED: Final = {"idle_expired", "discarded", "retired"}


_ORIGIN: Final = ["server_address", "server_port", "url_scheme"]
"""The labels that name an upstream in the metrics named after OpenTelemetry's conventions."""


class _Metrics:
    """The process's metric objects, made once (prometheus_client refuses a name twice)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # noqa: PLC0415  (optional)

        self.duration = Histogram(
            "http_client_request_duration_seconds",
            "Duration of outbound calls, from the call to the response's head or its error "
            "(OpenTelemetry's http.client.request.duration; retries and redirects included).",
            ["http_request_method", *_ORIGIN, "http_response_status_code", "error_type"],
            buckets=BUCKETS,
        )
        self.lifetime = Histogram(
            "http_client_connection_duration_seconds",
            "How long connections to the upstream were open "
            "(OpenTelemetry's http.client.connection.duration).",
            _ORIGIN,
            buckets=CONNECTION_BUCKETS,
        )
        self.open = Gauge(
            "http_client_open_connections",
            "Connections to the upstream now: active (carrying a call) or idle in the pool "
            "(OpenTelemetry's http.client.open_connections).",
            ["http_connection_state", *_ORIGIN],
            multiprocess_mode="livesum",
        )
        self.active = Gauge(
            "http_client_active_requests",
            "Calls to the upstream in flight now (OpenTelemetry's http.client.active_requests).",
            _ORIGIN,
            multiprocess_mode="livesum",
        )
        self.counters = {
            name: Counter(f"wsgi_pool_{metric}", doc, ["upstream"])
            for name, (metric, doc) in _COUNTERS.items()
        }
        self.closed = Counter(
            "wsgi_pool_connections_closed",
            "Connections closed by the pools: idle past idle_timeout, discarded after use, or "
            "retired past max_connection_age.",
            ["upstream", "reason"],
        )
        self.errors = Counter(
            "wsgi_pool_errors", "Calls that ended in an error, by its kind.", ["upstream", "kind"]
        )
        self.waiting = Gauge(
            "wsgi_pool_calls_waiting",
            "Calls waiting for a free connection now.",
            ["upstream"],
            multiprocess_mode="livesum",
        )


_metrics: _Metrics | None = None
_metrics_lock = threading.Lock()


def _the_metrics() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _metrics_lock:
            if _metrics is None:  # pragma: no branch  (else: another thread made them)
                _metrics = _Metrics()
    return _metrics


def origin_labels(upstream: str) -> tuple[str, str, str]:
    """``server_address``, ``server_port`` and ``url_scheme`` of an upstream."""
    scheme, address, port = origin_parts(upstream)
    return address, "" if port is None else str(port), scheme


class _UpstreamSink:
    """Where one upstream's events go in prometheus_client: its labelled children, made once."""

    __slots__ = ("_counters", "_durations", "_errors", "_labels", "_lifetime", "_upstream")

    def __init__(self, upstream: str) -> None:
        metrics = _the_metrics()
        self._upstream = upstream
        self._labels = origin_labels(upstream)
        self._durations: dict[tuple[str, int | None, str], Any] = {}
        self._lifetime = metrics.lifetime.labels(*self._labels)
        self._counters: dict[str, Any] = {
            name: counter.labels(upstream) for name, counter in metrics.counters.items()
        }
        self._counters.update(
            {reason: metrics.closed.labels(upstream, reason) for reason in _CLOSED}
        )
        self._errors = metrics.errors

    def add(self, name: str, count: float) -> None:
        counter = self._counters.get(name)
        if counter is not None and count > 0:
            counter.inc(count)

    def ended(
        self, seconds: float, error: BaseException | None, method: str, status: int | None
    ) -> None:
        kind = error_type(error, status)
        key = (method_name(method), status, kind)
        child = self._durations.get(key)
        if child is None:
            child = self._durations[key] = _the_metrics().duration.labels(
                key[0], *self._labels, "" if status is None else str(status), kind
            )
        child.observe(seconds)
        if error is not None:
            self.failed(error)

    def failed(self, error: BaseException) -> None:
        self._errors.labels(self._upstream, type(error).__name__).inc()

    def closed(self, seconds: float) -> None:
        self._lifetime.observe(seconds)


def refresh_gauges(pools: WorkerPools) -> None:
    """Set this process's gauges from its pools now."""
    metrics = _the_metrics()
    for upstream, found in pools.stats().items():
        labels = origin_labels(upstream)
        metrics.open.labels("active", *labels).set(found.in_use)
        metrics.open.labels("idle", *labels).set(found.idle)
        metrics.active.labels(*labels).set(found.active)
        metrics.waiting.labels(upstream).set(found.waiting)


def registry() -> Any:
    """The registry to expose: every worker's files in multiprocess mode, else this process's."""
    from prometheus_client import REGISTRY, CollectorRegistry  # noqa: PLC0415

    if os.environ.get(MULTIPROCESS_ENV):
        found = CollectorRegistry()
        collector(found)
        return found
    return REGISTRY


class Exporter(Extension):
    """One process's side of the export, attached to its pools: each upstream's events turned
    into metrics, its gauges refreshed every ``every`` seconds by a daemon thread (stopped by
    :meth:`close`), and the endpoint's WSGI app (:meth:`serve`).

    Mutable state: ``_app`` (made on first scrape; a race makes two equal ones), ``_pools``
    and ``_thread`` (set once by :meth:`start`).
    """

    def __init__(self, every: float = GAUGE_EVERY) -> None:
        _the_metrics()  # prometheus_client is imported now, when the pools are built
        self._every = every
        self._app: WSGIApplication | None = None
        self._pools: WorkerPools | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sink_for(self, upstream: str) -> Sink:
        """The sink that turns one upstream's events into this process's Prometheus metrics."""
        return _UpstreamSink(upstream)

    def start(self, pools: WorkerPools) -> None:
        self._pools = pools
        self._thread = threading.Thread(target=self._refresh, name="wsgi_pool gauges", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(self._every):
            try:
                refresh_gauges(self._pools)  # type: ignore[arg-type]  # set before the thread starts
            except Exception:  # the next refresh may well work: keep the thread alive
                logger.exception("refreshing wsgi_pool's Prometheus gauges failed")

    def close(self) -> None:
        """Stop refreshing the gauges."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def serve(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The exposition (text or OpenMetrics, as the scraper asks), this worker's gauges fresh."""
        if self._app is None:
            from prometheus_client import make_wsgi_app  # noqa: PLC0415

            self._app = make_wsgi_app(registry())
        if self._pools is not None:  # pragma: no branch  (started with the pools)
            refresh_gauges(self._pools)
        return self._app(environ, start_response)
