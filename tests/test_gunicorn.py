"""Real gunicorn in a subprocess, serving apps that call a real upstream on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from examples.demo import Phase, drive, main
from tests.support import CONF, ROOT, get, run_together, wait_for_sizing_lines
from wsgi_pool.testing import GunicornServer, Upstream


def test_preload_never_shares_an_upstream_socket_between_processes(upstream: Upstream) -> None:
    """--preload -k gthread -w 2 --threads 4, master warmed a pool at import: answers right, no socket shared."""
    env = {"UPSTREAM_URL": upstream.url, "WARM_IN_MASTER": "1"}
    flags = ["-c", CONF, "--preload", "-k", "gthread", "-w", "2", "--threads", "4"]
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        lines = wait_for_sizing_lines(server, 3)
        assert upstream.stats().connections_opened == 1, "the master used its pool before forking"
        upstream.reset()
        phase = Phase(name="preload", route="/")
        drive(server.url, phase, total=400, clients=8, calls=3)
        stats = upstream.stats()
        server.stop()
        log = server.log()
    assert (phase.requests, phase.errors, phase.wrong_answers) == (400, 0, 0)
    assert stats.requests_served == 1200
    assert upstream.shared_connections() == {}
    assert stats.connections_opened <= 2 * 4
    pids = [pid for pid, _ in lines]
    assert len(pids) == len(set(pids)) == 3, "master and each worker log their sizing once"
    worker_lines = [text for _, text in lines if "gthread worker with 4 threads" in text]
    assert len(worker_lines) == 2
    assert "Connection pool is full" not in log
    # on_starting runs after a preloaded app was imported: it says what that import built.
    assert "pools built in the gunicorn master (a call at import under preload_app?)" in log


def test_sixteen_threads_never_overflow_the_pool(upstream: Upstream) -> None:
    """--threads 16 with 16 concurrent slow calls: at most 16 connections, no 'Connection pool is full'."""
    env = {"UPSTREAM_URL": upstream.url}
    flags = ["-c", CONF, "-k", "gthread", "-w", "1", "--threads", "16"]
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        wait_for_sizing_lines(server, 1)
        calls: list[Callable[[], tuple[int, bytes]]] = [lambda: get(server, "/slow")] * 16
        assert [status for status, _ in run_together(*calls, timeout=60)] == [200] * 16
        pooled = upstream.stats()
        log_after_pooled = server.log()
        upstream.reset()
        # Control: the same load through a module-level requests.Session (pool of 10) is caught.
        assert [
            status
            for status, _ in run_together(*[lambda: get(server, "/session-slow")] * 16, timeout=60)
        ] == [200] * 16
        session = upstream.stats()
        server.stop()
        log_after_session = server.log()
    assert pooled.max_in_flight > 10, "the load really exceeded requests' default pool of 10"
    assert pooled.connections_opened <= 16
    assert "Connection pool is full" not in log_after_pooled
    assert "pool_maxsize=16 (gthread worker with 16 threads)" in log_after_pooled
    assert session.max_in_flight > 10
    assert "Connection pool is full, discarding connection" in log_after_session


@pytest.mark.parametrize(
    "app", ["examples.plain_wsgi:app", "examples.flask_app:app", "examples.django_app:application"]
)
def test_examples_serve_under_gunicorn(upstream: Upstream, app: str) -> None:
    """Each example, served by gunicorn with deploy/gunicorn.conf.py, calls the upstream through the environ client."""
    env = {"UPSTREAM_URL": upstream.url, "UPSTREAM_CALLS": "3"}
    flags = ["-c", CONF, "-w", "1", "--threads", "2"]
    with GunicornServer(app, flags, env=env, cwd=str(ROOT)) as server:
        status, body = get(server, "/?tag=t1")
        again = get(server, "/?tag=t2")
    assert status == 200
    assert json.loads(body)["answers"] == ["t1", "t1", "t1"]
    assert json.loads(again[1])["answers"] == ["t2", "t2", "t2"]
    assert upstream.stats().connections_opened == 1


def test_a_bad_setting_stops_gunicorn_at_start_up(upstream: Upstream) -> None:
    """WSGI_POOL_POOL_MAXSIZE=0 stops gunicorn before it serves, naming the setting and the value."""
    env = {"UPSTREAM_URL": upstream.url, "WSGI_POOL_POOL_MAXSIZE": "0"}
    server = GunicornServer(
        "examples.plain_wsgi:app", ["-c", CONF, "-w", "1"], env=env, cwd=str(ROOT)
    )
    try:
        with pytest.raises(RuntimeError, match="gunicorn exited with") as caught:
            server.start()
    finally:
        code = server.stop()
    assert code not in (0, None)
    assert "pool_maxsize: expected a whole number >= 1, got 0" in str(caught.value)


def test_the_demo_reports_pooling_against_requests_get(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first command, with a small load: every answer right, connections reused."""
    figures = tmp_path / "demo.json"
    assert main(["--requests", "200", "--clients", "8", "--json", str(figures)]) == 0
    report = capsys.readouterr().out
    assert "upstream TCP connections opened" in report
    pooled, naive = json.loads(figures.read_text())["phases"]
    assert pooled["requests"] == naive["requests"] == 200
    assert pooled["outbound_calls"] == naive["outbound_calls"] == 600
    assert pooled["wrong_answers"] == pooled["errors"] == pooled["shared_connections"] == 0
    assert pooled["upstream_connections"] <= 2 * 8
    assert naive["upstream_connections"] == 600
    assert len(json.loads(figures.read_text())["sizing"]) == 2
    # Prometheus, both workers summed: every pooled call, the 8 warm-up requests' included.
    metrics = json.loads(figures.read_text())["metrics"]
    counted = [
        line for line in metrics if line.startswith("http_client_request_duration_seconds_count")
    ]
    assert len(counted) == 1
    assert 'http_response_status_code="200"' in counted[0]
    assert float(counted[0].rsplit(" ", 1)[1]) == (200 + 8) * 3
    assert "Prometheus, GET /metrics" in report
