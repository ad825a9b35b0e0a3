"""Optional parts never fail a call: a failing metrics sink, extension or gauge refresh is
logged and the call goes on; a missing optional package stops the server at start, not a call."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import pytest

import wsgi_pool
from wsgi_pool import ConfigError, PoolConfig, _integrations, _process, _stats
from wsgi_pool._stats import Counters, Registry
from wsgi_pool._worker import Extension
from wsgi_pool.testing import Upstream


class _Failing:
    """A sink whose every event raises."""

    def add(self, name: str, count: float) -> None:
        raise RuntimeError("sink down")

    def ended(
        self, seconds: float, error: BaseException | None, method: str, status: int | None
    ) -> None:
        raise RuntimeError("sink down")

    def failed(self, error: BaseException) -> None:
        raise RuntimeError("sink down")

    def closed(self, seconds: float) -> None:
        raise RuntimeError("sink down")


def test_a_failing_sink_is_logged_once_a_minute_and_counting_goes_on(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every event of a broken sink raises; the counters still count, and it is logged once."""
    monkeypatch.setattr(_stats, "_last_sink_error", -_stats.SINK_ERROR_EVERY)
    counters = Counters("http://a:80", [_Failing()])
    counters.add("retries")
    counters.sent(reused=True)
    counters.waited(0.1, got=True)
    counters.started()
    counters.ended(0.2, None)
    counters.failed(RuntimeError("x"))
    counters.closed(3.0)
    snapshot = counters.snapshot()
    assert (snapshot.retries, snapshot.reused, snapshot.waits, snapshot.calls) == (1, 1, 1, 1)
    assert caplog.text.count("a metrics sink failed") == 1


def test_a_sink_that_cannot_be_made_leaves_the_counters(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A sink factory that raises gives no sink for that upstream; its counters work."""
    monkeypatch.setattr(_stats, "_last_sink_error", -_stats.SINK_ERROR_EVERY)

    def broken(upstream: str) -> Any:
        raise RuntimeError("no sink")

    registry = Registry(sink_for=[broken])
    counters = registry.for_upstream("http://a:80")
    counters.add("retries")
    assert counters.sinks == ()
    assert counters.snapshot().retries == 1
    assert "a metrics sink failed" in caplog.text


class _Broken(Extension):
    def sink_for(self, upstream: str) -> Any:
        return _Failing()

    def start(self, pools: Any) -> None:
        raise RuntimeError("cannot start")

    def close(self) -> None:
        raise RuntimeError("cannot close")


def test_a_broken_extension_never_fails_a_call(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An extension that fails to start, to count and to close: logged; calls answer."""
    monkeypatch.setattr(_stats, "_last_sink_error", -_stats.SINK_ERROR_EVERY)
    monkeypatch.setattr(_process, "_factories", [lambda config: _Broken()])
    with wsgi_pool.client() as http:
        assert http.get(f"{upstream.url}/x").status_code == 200
        assert http.pools.extension(_Broken) is not None
        http.pools.close()
    assert "starting _Broken failed" in caplog.text
    assert "closing _Broken failed" in caplog.text
    assert "a metrics sink failed" in caplog.text


def test_an_extension_that_cannot_be_made_is_left_out(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A factory that raises attaches nothing; the pools are built and calls answer."""

    def broken(config: PoolConfig) -> Extension:
        raise RuntimeError("no extension")

    monkeypatch.setattr(_process, "_factories", [broken])
    with wsgi_pool.client() as http:
        assert http.get(f"{upstream.url}/x").status_code == 200
        assert http.pools.extensions == ()
    assert "an extension could not be attached" in caplog.text


def test_factories_are_registered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installing the integrations twice (a reload) attaches each once."""
    monkeypatch.setattr(_process, "_factories", [])
    _integrations.install()
    _integrations.install()
    assert len(_process._factories) == 3  # the HTTP cache, Prometheus, OpenTelemetry


@pytest.mark.parametrize(
    ("settings", "package", "extra"),
    [
        pytest.param({"metrics_path": "/metrics"}, "prometheus_client", "prometheus", id="metrics"),
        pytest.param({"prometheus": True}, "prometheus_client", "prometheus", id="prometheus"),
        pytest.param({"http_cache_bytes": 1000}, "cachecontrol", "cache", id="cache"),
    ],
)
def test_a_missing_optional_package_stops_the_start(
    settings: dict[str, Any], package: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setting that needs it, the package and the fix, in one line, where the server starts."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )
    with pytest.raises(ConfigError) as caught:
        _integrations.check(PoolConfig(**settings))
    message = str(caught.value)
    assert "\n" not in message
    assert package in message
    assert f"pip install 'wsgi_pool[{extra}]'" in message
    with pytest.raises(ConfigError, match=package):
        wsgi_pool.PoolMiddleware(lambda e, s: [], PoolConfig(**settings))


def test_every_optional_package_found_passes() -> None:
    """With the extras installed (as here), turning each integration on passes the check."""
    _integrations.check(PoolConfig(metrics_path="/metrics", http_cache_bytes=1000))


def test_a_warning_logged_for_a_failing_sink_names_no_secret(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The containment log is one line at ERROR with the sink's traceback, no request data."""
    monkeypatch.setattr(_stats, "_last_sink_error", -_stats.SINK_ERROR_EVERY)
    with caplog.at_level(logging.ERROR, logger="wsgi_pool"):
        Counters("http://a:80", [_Failing()]).add("retries")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
