"""OpenTelemetry metrics: the HTTP client semantic conventions' names, attributes and buckets,
read back through the SDK's in-memory reader."""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import wsgi_pool
from tests.support import wait_until
from wsgi_pool import ConfigError, PoolConfig, UpstreamRefused
from wsgi_pool._stats import BUCKETS
from wsgi_pool.testing import Upstream, free_port

_READER = InMemoryMetricReader()


@pytest.fixture(scope="module")
def reader() -> InMemoryMetricReader:
    """The process's meter provider, read in memory (set once: OpenTelemetry refuses a second)."""
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    return _READER


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            if scope.scope.name != "wsgi_pool":
                continue
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def test_calls_and_connections_are_measured_by_the_conventions(
    reader: InMemoryMetricReader, upstream: Upstream
) -> None:
    port = int(upstream.url.rsplit(":", 1)[1])
    refused = free_port()
    config = PoolConfig(opentelemetry=True, retries=0, max_requests_per_connection=1)
    with wsgi_pool.client(config) as http:
        http.get(f"{upstream.url}/a")
        http.get(f"{upstream.url}/missing?status=404")
        with pytest.raises(UpstreamRefused):
            http.get(f"http://127.0.0.1:{refused}/")
        found = points(reader)
    where = {"server.address": "127.0.0.1", "server.port": port, "url.scheme": "http"}
    durations = {
        tuple(sorted(point.attributes.items())): point
        for point in found["http.client.request.duration"]
    }
    ok = tuple(
        sorted({**where, "http.request.method": "GET", "http.response.status_code": 200}.items())
    )
    missing = tuple(
        sorted(
            {
                **where,
                "http.request.method": "GET",
                "http.response.status_code": 404,
                "error.type": "404",
            }.items()
        )
    )
    failed = tuple(
        sorted(
            {
                "server.address": "127.0.0.1",
                "server.port": refused,
                "url.scheme": "http",
                "http.request.method": "GET",
                "error.type": "wsgi_pool.UpstreamRefused",
            }.items()
        )
    )
    assert durations[ok].count == 1
    assert durations[missing].count == 1
    assert durations[failed].count == 1
    assert tuple(durations[ok].explicit_bounds) == BUCKETS
    lifetimes = [p for p in found["http.client.connection.duration"] if dict(p.attributes) == where]
    assert sum(p.count for p in lifetimes) == 2  # one connection per call, closed as it came back
    open_now = {
        p.attributes["http.connection.state"]: p.value
        for p in found["http.client.open_connections"]
        if p.attributes["server.port"] == port
    }
    assert open_now == {"active": 0, "idle": 0}
    active = [p.value for p in found["http.client.active_requests"] if dict(p.attributes) == where]
    assert active == [0]
    closed = [
        p.value
        for p in found["wsgi_pool.connections.closed"]
        if p.attributes["wsgi_pool.close_reason"] == "retired"
        and p.attributes["server.port"] == port
    ]
    assert closed == [2]


def test_waits_and_retries_are_counted(reader: InMemoryMetricReader, upstream: Upstream) -> None:
    upstream.answer("/busy", status=503, body=b"")
    config = PoolConfig(opentelemetry=True, retries=1, backoff_factor=0.0)
    with wsgi_pool.client(config) as http:
        http.get(f"{upstream.url}/busy")
        found = points(reader)
    port = int(upstream.url.rsplit(":", 1)[1])
    assert sum(p.value for p in found["wsgi_pool.retries"] if p.attributes["server.port"] == port)


def test_missing_api_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without(name: str, *args: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ModuleNotFoundError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without)
    with pytest.raises(ConfigError, match=r"opentelemetry=True needs the opentelemetry\.metrics"):
        wsgi_pool.PoolMiddleware(lambda e, s: [], PoolConfig(opentelemetry=True))


def test_every_set_of_pools_is_observed(reader: InMemoryMetricReader, upstream: Upstream) -> None:
    """Two sets of pools (two pool sizes) holding a connection each: the gauges count both."""
    port = int(upstream.url.rsplit(":", 1)[1])
    clients = [
        wsgi_pool.client(PoolConfig(opentelemetry=True, pool_maxsize=size)) for size in (4, 7)
    ]
    held = [http.get(f"{upstream.url}/s?size=10", stream=True) for http in clients]
    assert clients[0].pools is not clients[1].pools
    found = points(reader)
    active = [
        p.value
        for p in found["http.client.open_connections"]
        if p.attributes["server.port"] == port and p.attributes["http.connection.state"] == "active"
    ]
    assert active == [2]
    for response in held:
        response.close()
    for http in clients:
        http.close()


def test_waits_the_other_upstream_and_stale_pools(
    reader: InMemoryMetricReader, upstream: Upstream
) -> None:
    """A wait for a connection is measured; the upstreams past the bound have no port; pools
    retired (or of another process) are not observed; a body's failure is counted with its
    call, not twice."""
    from wsgi_pool import _otel  # noqa: PLC0415

    assert _otel.attributes("other") == {"server.address": "other", "url.scheme": ""}
    config = PoolConfig(opentelemetry=True, pool_maxsize=1)
    with wsgi_pool.client(config) as http:
        held = http.get(f"{upstream.url}/s?size=10", stream=True)
        waiter = threading.Thread(target=lambda: http.get(f"{upstream.url}/w"))
        waiter.start()
        assert wait_until(lambda: http.pools.stats()[upstream.url].waiting == 1)
        held.close()
        waiter.join(10)
        port = int(upstream.url.rsplit(":", 1)[1])
        waits = [
            p.count
            for p in points(reader)["wsgi_pool.connection.wait_time"]
            if p.attributes["server.port"] == port
        ]
        assert waits == [1]
        exporter = http.pools.extension(_otel.OpenTelemetryMetrics)
        assert exporter is not None
        exporter.sink_for(upstream.url).failed(RuntimeError("read"))
        http.pools.retire()
        assert upstream.url not in _otel._gauges()


def test_instruments_are_made_once_per_meter_provider(
    reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsgi_pool import _otel  # noqa: PLC0415

    other = (object(), object())  # another provider's, made earlier
    monkeypatch.setattr(_otel, "_made", [other])
    first = _otel._instruments()
    assert _otel._instruments() is first
    assert _otel._made[0] is other
    assert len(_otel._made) == 2
