"""Prometheus metrics: in one process, and summed over real gunicorn workers in multiprocess mode."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import wsgi_pool
from tests.faults import FaultServer, Peer
from tests.support import CONF, ROOT, run_together, wait_for_sizing_lines, wait_until
from wsgi_pool import ConfigError, PoolConfig, PoolMiddleware, UpstreamUnreachable
from wsgi_pool.testing import GunicornServer, Upstream, free_port


def _call(app: Any, path: str, accept: str | None = None) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": ""}
    if accept is not None:
        environ["HTTP_ACCEPT"] = accept
    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


DURATION_LABELS = (
    "http_request_method",
    "server_address",
    "server_port",
    "url_scheme",
    "http_response_status_code",
    "error_type",
)


def _calls(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], url: str) -> float:
    """Calls to ``url``'s upstream in a parsed exposition, every method, status and error."""
    port = url.rsplit(":", 1)[1]
    return sum(
        value
        for (name, labels), value in metrics.items()
        if name == "http_client_request_duration_seconds_count"
        and dict(labels)["server_port"] == port
    )


def _open(url: str, state: str) -> float:
    """The http_client_open_connections gauge of ``url``'s upstream in this process."""
    return _value(
        "http_client_open_connections",
        http_connection_state=state,
        server_address="127.0.0.1",
        server_port=url.rsplit(":", 1)[1],
        url_scheme="http",
    )


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_one_process_exposes_its_calls(upstream: Upstream) -> None:
    """Three calls and a refused one show in the exposition the middleware serves at metrics_path."""
    port = free_port()
    refused = f"http://127.0.0.1:{port}"

    def view(environ: Any, start_response: Any) -> Iterable[bytes]:
        http = wsgi_pool.client_from(environ)
        for _ in range(3):
            http.get(f"{upstream.url}/x")
        with pytest.raises(UpstreamUnreachable):
            http.get(f"{refused}/")
        start_response("200 OK", [])
        return [b"done"]

    app = PoolMiddleware(view, PoolConfig(metrics_path="/metrics", retries=0))
    assert _call(app, "/")[2] == b"done"
    status, headers, body = _call(app, "/metrics")
    assert status.startswith("200")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    up_port = str(upstream.url.rsplit(":", 1)[1])
    duration = {  # this test's upstreams only: the registry holds earlier tests' too
        tuple(s.labels[name] for name in DURATION_LABELS): s.value
        for s in families["http_client_request_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels["server_port"] in {up_port, str(port)}
    }
    assert duration == {
        ("GET", "127.0.0.1", up_port, "http", "200", ""): 3,
        ("GET", "127.0.0.1", str(port), "http", "", "wsgi_pool.UpstreamRefused"): 1,
    }
    assert _value("wsgi_pool_connections_opened_total", upstream=upstream.url) == 1
    assert _value("wsgi_pool_connections_reused_total", upstream=upstream.url) == 2
    assert _value("wsgi_pool_errors_total", upstream=refused, kind="UpstreamRefused") == 1
    origin = {"server_address": "127.0.0.1", "server_port": up_port, "url_scheme": "http"}
    assert _value("http_client_open_connections", http_connection_state="idle", **origin) == 1
    assert _value("http_client_open_connections", http_connection_state="active", **origin) == 0
    assert _value("http_client_active_requests", **origin) == 0
    assert headers["Content-Type"].startswith("text/plain")
    _, openmetrics, _ = _call(app, "/metrics", accept="application/openmetrics-text")
    assert openmetrics["Content-Type"].startswith("application/openmetrics-text")


def test_metrics_path_must_be_a_path() -> None:
    """A metrics_path that does not start with '/' is refused, naming the setting."""
    with pytest.raises(ConfigError, match="metrics_path"):
        PoolConfig(metrics_path="metrics")
    assert PoolConfig.from_env({"WSGI_POOL_PROMETHEUS": "1"}).prometheus is True


def _metrics(server: GunicornServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _one_request(server: GunicornServer) -> int:
    """A GET of / on a new connection (so the two workers share the load); the worker's pid."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.request("GET", "/?tag=m", headers={"Connection": "close"})
        response = connection.getresponse()
        body = json.loads(response.read())
        assert response.status == 200
        assert body["answers"] == ["m", "m", "m"]
        return int(body["pid"])
    finally:
        connection.close()


def test_two_workers_metrics_add_up_and_a_dead_workers_gauges_leave(
    upstream: Upstream, tmp_path: Path
) -> None:
    """gunicorn -w 2 under load: the exposition sums both workers; child_exit drops a dead one's gauges."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {
        "UPSTREAM_URL": upstream.url,
        "WSGI_POOL_METRICS_PATH": "/metrics",
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    flags = ["-c", CONF, "-k", "gthread", "-w", "2", "--threads", "4"]
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        wait_for_sizing_lines(server, 2)
        pids: set[int] = set()
        for _ in range(10):  # until both workers served (new connections are shared out)
            pids.update(run_together(*[lambda: _one_request(server)] * 8))
            if len(pids) == 2:
                break
        counted = {int(p.stem.rsplit("_", 1)[1]) for p in directory.glob("counter_*.db")}
        assert len(pids) == 2, "one worker served every request"
        assert counted == pids  # each worker wrote its own counts
        metrics = _metrics(server)
        key = (("upstream", upstream.url),)
        calls = _calls(metrics, upstream.url)
        opened = metrics[("wsgi_pool_connections_opened_total", key)]
        reused = metrics[("wsgi_pool_connections_reused_total", key)]
        made = upstream.stats().requests_served
        assert calls == made  # every call the upstream answered, summed over both workers
        assert opened == upstream.stats().connections_opened
        assert opened + reused == made
        assert not [name for name, _ in metrics if name == "wsgi_pool_errors_total"]
        gauges = {pid: directory / f"gauge_livesum_{pid}.db" for pid in pids}
        assert any(path.exists() for path in gauges.values())
        victim = next(pid for pid, path in gauges.items() if path.exists())
        os.kill(victim, signal.SIGTERM)
        deadline = time.monotonic() + 20
        counters = directory / f"counter_{victim}.db"
        # child_exit drops the gauges first, then archives counters and histograms (more of
        # them since the call histogram gained labels): wait for the whole of it.
        while (gauges[victim].exists() or counters.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not gauges[victim].exists(), "child_exit left the dead worker's gauges"
        assert not counters.exists()  # moved into the archive
        assert (directory / "counter_archive.db").exists()
        wait_for_sizing_lines(server, 3)  # the replacement worker is up
        after = _metrics(server)
        assert _calls(after, upstream.url) == calls  # counts stay


def test_waits_closes_and_body_errors_reach_the_metrics(upstream: Upstream) -> None:
    """A wait that timed out, one that got a slot, and a body over the limit are in the metrics."""
    config = PoolConfig(prometheus=True, pool_maxsize=1, pool_timeout=0.2, retries=0)
    http = wsgi_pool.client(config)
    name = upstream.url
    before = {
        metric: _value(metric, upstream=name)
        for metric in ("wsgi_pool_pool_waits_total", "wsgi_pool_pool_wait_timeouts_total")
    }
    held = http.get(f"{upstream.url}/x", stream=True)
    with pytest.raises(wsgi_pool.PoolTimeout):
        http.get(f"{upstream.url}/y")
    held.close()  # unread: the connection is discarded
    slow = f"{upstream.url}/x?delay=0.1"
    run_together(lambda: http.get(slow), lambda: http.get(slow))

    def truncated(peer: Peer) -> None:
        peer.read_request()
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")

    with FaultServer(truncated) as server:
        with pytest.raises(wsgi_pool.UpstreamError):
            http.get(f"{server.url}/x").content  # noqa: B018
        assert _value("wsgi_pool_errors_total", upstream=server.url, kind="UpstreamReset") == 1
    assert (
        _value("wsgi_pool_pool_waits_total", upstream=name) - before["wsgi_pool_pool_waits_total"]
        == 2
    )
    assert (
        _value("wsgi_pool_pool_wait_timeouts_total", upstream=name)
        - before["wsgi_pool_pool_wait_timeouts_total"]
        == 1
    )
    assert _value("wsgi_pool_pool_wait_seconds_total", upstream=name) >= 0.2
    assert _value("wsgi_pool_connections_closed_total", upstream=name, reason="discarded") >= 1
    assert _value("wsgi_pool_errors_total", upstream=name, kind="PoolTimeout") == 1


def test_each_worker_refreshes_its_gauges(upstream: Upstream) -> None:
    """A worker's gauges follow its pools without a scrape, and stop following once it closes."""
    from wsgi_pool.prometheus import Exporter  # noqa: PLC0415

    http = wsgi_pool.client(PoolConfig(prometheus=True))
    http.get(f"{upstream.url}/x")
    exporter = Exporter(every=0.01)
    exporter.start(http.pools)
    try:
        assert wait_until(lambda: _open(upstream.url, "idle") == 1)
    finally:
        exporter.close()
    assert _open(upstream.url, "active") == 0


def test_multiprocess_mode_reads_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, the exposition is every process's files, not this one's."""
    from wsgi_pool.prometheus import registry  # noqa: PLC0415

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    found = registry()
    assert found is not REGISTRY
    assert list(found.collect()) == []  # no process wrote a file yet


def test_child_exit_removes_a_dead_workers_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """child_exit deletes the reaped worker's live gauge files, and only with the directory set."""
    from wsgi_pool import gunicorn as hooks  # noqa: PLC0415

    class Worker:
        pid = 4242

    gauge = tmp_path / "gauge_livesum_4242.db"
    gauge.write_bytes(b"")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    hooks.child_exit(None, Worker())
    assert gauge.exists()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    hooks.child_exit(None, Worker())
    assert not gauge.exists()


WORKER = """
import os, sys
from prometheus_client import Counter, Histogram
Counter("jobs", "Jobs.", ["upstream"]).labels("u").inc(int(sys.argv[1]))
Histogram("took", "Time.", ["upstream"]).labels("u").observe(float(sys.argv[1]) / 10)
print(os.getpid())
"""


def _exposition(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the multiprocess files of ``directory`` add up to, rounded (the order of
    additions changes the last bits of a float sum)."""
    from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415

    from wsgi_pool._multiproc import collector  # noqa: PLC0415

    found = CollectorRegistry()
    collector(found, str(directory))
    text = generate_latest(found).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): round(sample.value, 9)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_dead_workers_counts_move_to_one_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers that came and went: their counters and histograms end in one file per kind (not
    one per worker that ever ran), and every sum is what it was."""
    from wsgi_pool import gunicorn as hooks  # noqa: PLC0415

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    pids = [
        int(
            subprocess.run(
                [sys.executable, "-c", WORKER, str(number)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
        )
        for number in (1, 2, 3)
    ]
    before = _exposition(tmp_path)
    assert before[("jobs_total", (("upstream", "u"),))] == 6.0
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for pid in pids:
        worker = type("Worker", (), {"pid": pid})
        hooks.child_exit(None, worker())
    assert _exposition(tmp_path) == before
    assert sorted(path.name for path in tmp_path.glob("*.db")) == [
        "counter_archive.db",
        "histogram_archive.db",
    ]


def test_a_file_retired_while_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's file that vanishes between the listing and the read (retired by the master)
    does not fail the scrape: the directory is read again."""
    from prometheus_client import CollectorRegistry, multiprocess  # noqa: PLC0415

    from wsgi_pool._multiproc import READ_TRIES, collector  # noqa: PLC0415

    real = multiprocess.MultiProcessCollector._read_metrics
    failures = [FileNotFoundError("counter_1.db")] * (READ_TRIES - 1)

    def vanishing(files: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(files)

    monkeypatch.setattr(
        multiprocess.MultiProcessCollector, "_read_metrics", staticmethod(vanishing)
    )
    found = CollectorRegistry()
    collector(found, str(tmp_path))
    assert list(found.collect()) == []
    failures.extend([FileNotFoundError("again")] * READ_TRIES)
    with pytest.raises(FileNotFoundError):
        list(found.collect())


def test_a_failed_gauge_refresh_is_logged_and_the_next_one_runs(
    upstream: Upstream, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error while refreshing the gauges is logged; the refreshing thread goes on."""
    from wsgi_pool import prometheus  # noqa: PLC0415

    failures = [RuntimeError("once")]
    real = prometheus.refresh_gauges

    def flaky(pools: Any) -> None:
        if failures:
            raise failures.pop()
        real(pools)

    monkeypatch.setattr(prometheus, "refresh_gauges", flaky)
    http = wsgi_pool.client(PoolConfig(prometheus=True))
    http.get(f"{upstream.url}/x")
    exporter = prometheus.Exporter(every=0.01)
    exporter.start(http.pools)
    try:
        assert wait_until(lambda: _open(upstream.url, "idle") == 1)
    finally:
        exporter.close()
    assert any(
        "refreshing wsgi_pool's Prometheus gauges failed" in r.getMessage() for r in caplog.records
    )


def test_an_exporter_never_started_closes_at_once() -> None:
    """Pools closing before their exporter started (a failed start): close stops it, no wait."""
    from wsgi_pool.prometheus import Exporter  # noqa: PLC0415

    exporter = Exporter(every=60.0)
    exporter.close()
    assert exporter._stop.is_set()
    assert exporter._thread is None


def test_call_and_connection_metrics_follow_opentelemetrys_conventions(
    upstream: Upstream,
) -> None:
    """Each call is labelled with its method (an unknown one as _OTHER), status and error type
    (a 4xx or 5xx status when the call answered); each connection closed is timed."""
    origin = {
        "server_address": "127.0.0.1",
        "server_port": upstream.url.rsplit(":", 1)[1],
        "url_scheme": "http",
    }

    def calls(method: str, status: str, error: str) -> float:
        return _value(
            "http_client_request_duration_seconds_count",
            http_request_method=method,
            http_response_status_code=status,
            error_type=error,
            **origin,
        )

    before = {
        "get": calls("GET", "200", ""),
        "brew": calls("_OTHER", "501", "501"),
        "missing": calls("GET", "404", "404"),
        "closed": _value("http_client_connection_duration_seconds_count", **origin),
    }
    config = PoolConfig(prometheus=True, max_requests_per_connection=1)
    with wsgi_pool.client(config) as http:
        http.get(f"{upstream.url}/a")
        http.request("BREW", f"{upstream.url}/pot")
        http.get(f"{upstream.url}/missing?status=404")
    assert calls("GET", "200", "") - before["get"] == 1
    assert calls("_OTHER", "501", "501") - before["brew"] == 1  # http.server: unsupported
    assert calls("GET", "404", "404") - before["missing"] == 1
    closed = _value("http_client_connection_duration_seconds_count", **origin)
    assert closed - before["closed"] == 3  # one connection per call, each closed as it came back


def test_a_missing_multiprocess_directory_stops_the_start(tmp_path: Path) -> None:
    from wsgi_pool import _integrations  # noqa: PLC0415

    config = PoolConfig(metrics_path="/metrics", workers=2)
    missing = str(tmp_path / "nowhere")
    with pytest.raises(
        ConfigError, match=r"PROMETHEUS_MULTIPROC_DIR='.*nowhere' is not a writable"
    ):
        _integrations.check(config, {"PROMETHEUS_MULTIPROC_DIR": missing})
    assert _integrations.check(config, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}) == []
    (warning,) = _integrations.check(config, {})
    assert warning.startswith("Prometheus metrics with 2 workers and no PROMETHEUS_MULTIPROC_DIR")
    assert _integrations.check(PoolConfig(metrics_path="/metrics", workers=1), {}) == []
    assert _integrations.check(PoolConfig(), {}) == []


def test_several_workers_without_the_directory_are_warned_of_at_start(tmp_path: Path) -> None:
    """gunicorn -w 2 with metrics and no PROMETHEUS_MULTIPROC_DIR: a warning in its default log."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("from wsgi_pool.gunicorn import on_starting  # noqa: F401\n")
    env = {"WSGI_POOL_METRICS_PATH": "/metrics", "PROMETHEUS_MULTIPROC_DIR": ""}
    flags = ["-c", str(conf), "-w", "2"]
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        server.stop()
    assert "counters jump between workers" in server.log()
