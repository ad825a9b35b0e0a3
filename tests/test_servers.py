"""Worker classes beyond gthread, under real gunicorn: gevent (200 greenlets over a pool of 10) and tornado."""

from __future__ import annotations

from wsgi_pool.testing import GunicornServer, Upstream

from .conftest import ROOT, run_together
from .test_gunicorn import CONF, get, wait_for_sizing_lines


def test_gevent_200_greenlets_share_a_pool_of_10(upstream: Upstream) -> None:
    """-k gevent, 200 concurrent requests each holding an upstream call: all answered, 10 connections."""
    env = {"UPSTREAM_URL": upstream.url, "WSGI_POOL_POOL_MAXSIZE": "10"}
    flags = ["-c", CONF, "-k", "gevent", "-w", "1", "--worker-connections", "200"]
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        (sizing,) = wait_for_sizing_lines(server, 1)
        upstream.reset()
        statuses = run_together(*[lambda: get(server, "/fleet")[0]] * 200, timeout=120)
        stats = upstream.stats()
    assert "pool_maxsize=10 (set explicitly)" in sizing[1]
    assert statuses == [200] * 200
    assert stats.requests_served == 200
    assert stats.connections_opened <= 10
    assert stats.max_in_flight <= 10


def test_gevent_is_sized_from_worker_connections_with_a_cap(upstream: Upstream) -> None:
    """Without settings, a gevent worker's pool follows worker_connections, capped at 100."""
    flags = ["-c", CONF, "-k", "gevent", "-w", "1", "--worker-connections", "500"]
    with GunicornServer(
        "tests.apps:app", flags, env={"UPSTREAM_URL": upstream.url}, cwd=str(ROOT)
    ) as server:
        (sizing,) = wait_for_sizing_lines(server, 1)
        status, _ = get(server, "/?tag=g")
    assert status == 200
    assert "pool_maxsize=100 (gevent worker: worker_connections=500 capped at 100)" in sizing[1]


def test_tornado_worker_keeps_one_connection(upstream: Upstream) -> None:
    """-k tornado runs one WSGI call at a time: one connection per upstream, reused."""
    flags = ["-c", CONF, "-k", "tornado", "-w", "1"]
    with GunicornServer(
        "tests.apps:app", flags, env={"UPSTREAM_URL": upstream.url}, cwd=str(ROOT)
    ) as server:
        (sizing,) = wait_for_sizing_lines(server, 1)
        answers = [get(server, f"/?tag=t{i}")[0] for i in range(5)]
    assert answers == [200] * 5
    assert "pool_maxsize=1 (tornado worker: one WSGI call at a time)" in sizing[1]
    assert upstream.stats().connections_opened == 1
