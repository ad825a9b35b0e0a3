"""Waiting for a free connection: bounded by pool_timeout and the deadline, named when it ends, never holding a slot."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
import urllib3

import wsgi_pool
from tests.harness import FAST, Harness, keep_alive
from tests.support import run_together, wait_until
from wsgi_pool import (
    DeadlineExceeded,
    PoolConfig,
    PoolTimeout,
    WsgiPoolError,
)
from wsgi_pool._adapter import live_pools
from wsgi_pool.testing import Upstream


def test_many_threads_share_pools_up_to_maxsize(upstream: Upstream) -> None:
    """Concurrent calls never open more connections than pool_maxsize, and none is discarded."""
    config = PoolConfig(pool_maxsize=4)

    def call() -> str:
        return str(wsgi_pool.client(config).get(f"{upstream.url}/c?delay=0.05").json()["method"])

    assert run_together(*[call] * 12) == ["GET"] * 12
    assert upstream.stats().connections_opened <= 4
    assert upstream.stats().max_in_flight <= 4


def test_pool_wait_is_bounded_and_names_upstream_and_size(upstream: Upstream) -> None:
    """When every connection is busy, a call waits pool_timeout, then raises PoolTimeout (a requests.Timeout)."""
    http = wsgi_pool.client(PoolConfig(pool_maxsize=1, pool_timeout=0.2))
    held = http.get(f"{upstream.url}/big?size=2000000", stream=True)
    with pytest.raises(PoolTimeout) as caught:
        http.get(f"{upstream.url}/second")
    error = caught.value
    assert isinstance(error, requests.exceptions.Timeout)
    assert isinstance(error, WsgiPoolError)
    assert error.upstream == upstream.url
    assert (error.pool_maxsize, error.waited) == (1, 0.2)
    assert str(error) == (
        f"{upstream.url}: no free connection after waiting 0.2 s: all pool_maxsize=1 connections "
        "are in use (raise pool_maxsize or pool_timeout, or close streamed responses)"
    )
    assert error.request is not None
    held.close()
    assert http.get(f"{upstream.url}/after").status_code == 200


def test_pool_exhaustion_waits_at_most_pool_timeout(harness: Harness) -> None:
    """With every connection held, a call raises PoolTimeout; releasing one makes calls work again."""
    http = harness.client(pool_maxsize=1, pool_timeout=0.3)
    held = http.get(f"{harness.healthy.url}/big?size=4000000", stream=True)
    with pytest.raises(PoolTimeout):
        http.get(f"{harness.healthy.url}/blocked")
    held.close()
    harness.assert_intact(http)


def test_pool_wait_counts_against_the_deadline(harness: Harness) -> None:
    """A deadline shorter than pool_timeout ends the wait for a connection: DeadlineExceeded."""
    http = harness.client(pool_maxsize=1, pool_timeout=30.0)
    held = http.get(f"{harness.healthy.url}/big?size=4000000", stream=True)
    with pytest.raises(DeadlineExceeded, match="waiting for a free connection"):
        http.request("GET", f"{harness.healthy.url}/blocked", deadline=0.3)
    held.close()
    harness.assert_intact(http)


def test_a_leaked_stream_is_given_back_by_close(harness: Harness) -> None:
    """A streamed response dropped unread holds its slot until the client is closed."""
    http = harness.client(pool_maxsize=1, pool_timeout=0.2)
    leaker = wsgi_pool.client(PoolConfig(**{**FAST, "pool_maxsize": 1, "pool_timeout": 0.2}))
    leaker.get(f"{harness.healthy.url}/big?size=4000000", stream=True)  # dropped, unread
    with pytest.raises(PoolTimeout):
        http.get(f"{harness.healthy.url}/blocked")
    leaker.close()
    harness.assert_intact(http)


def test_many_threads_over_a_small_pool(harness: Harness) -> None:
    """24 threads share 3 connections: every call succeeds, never more than 3 in flight."""
    http = harness.client(pool_maxsize=3, pool_timeout=10.0)
    url = f"{harness.healthy.url}/slow?delay=0.02"
    results = run_together(*[lambda: [http.get(url).status_code for _ in range(5)]] * 24)
    assert results == [[200] * 5] * 24
    stats = harness.healthy.stats()
    assert stats.connections_opened <= 3
    assert stats.max_in_flight <= 3
    harness.assert_intact(http)


def test_many_upstreams_over_few_host_pools(harness: Harness) -> None:
    """Eight upstreams through two cached host pools: evictions under load raise no ClosedPoolError."""
    servers = [harness.serve(keep_alive) for _ in range(8)]
    http = harness.client(pool_connections=2, pool_maxsize=2)

    def sweep(offset: int) -> list[int]:
        order = servers[offset:] + servers[:offset]
        return [http.get(f"{server.url}/x").status_code for server in order * 3]

    results = run_together(*[lambda i=i: sweep(i % 8) for i in range(12)])
    assert results == [[200] * 24] * 12
    harness.assert_intact(http)


def test_a_closed_pool_left_in_the_manager_is_replaced(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """A pool closed under a call (the pools closing at worker exit) is dropped and the call goes on."""
    http = wsgi_pool.client()
    http.get(upstream.url)
    http.get(second_upstream.url)
    for pool in live_pools(http.pools.adapter.poolmanager):
        if pool.port == int(upstream.url.rsplit(":", 1)[1]):
            pool.close()  # closed, but still cached by the pool manager
    assert http.get(upstream.url).status_code == 200
    second_port = int(second_upstream.url.rsplit(":", 1)[1])
    kept = [
        p.num_requests for p in live_pools(http.pools.adapter.poolmanager) if p.port == second_port
    ]
    assert kept == [1]  # the open pool was kept


def _pool_of(client: wsgi_pool.Client, url: str) -> Any:
    manager = client.pools.adapter.poolmanager
    return manager.connection_from_url(url)


def test_a_connection_put_back_wakes_a_caller_waiting_on_the_queue(upstream: Upstream) -> None:
    """Connections go back into urllib3's queue directly; a caller waiting on the queue itself
    (urllib3's own get, as a tool may call it) is woken as urllib3's put would wake it."""
    with wsgi_pool.client() as http:
        http.get(f"{upstream.url}/warm")
        pool = _pool_of(http, upstream.url)
        conn = pool._get_conn()
        taken = [pool.pool.get(block=False) for _ in range(pool.pool.qsize())]
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(pool.pool.get(timeout=10)))
        waiter.start()
        assert wait_until(lambda: len(pool.pool.not_empty._waiters) == 1)
        pool._put_conn(conn)
        waiter.join(timeout=10)
        assert got == [conn]
        for item in [*taken, got[0]]:
            pool.pool.put(item, block=False)


def test_a_connection_put_back_into_a_full_queue_is_closed_as_urllib3_closes_it(
    upstream: Upstream,
) -> None:
    """With no room in the queue (a tool put one back twice), urllib3's own put decides."""
    with wsgi_pool.client() as http:
        http.get(f"{upstream.url}/warm")
        pool = _pool_of(http, upstream.url)
        conn = pool._get_conn()
        pool.pool.put(None, block=False)  # the room it left, taken
        with pytest.raises(urllib3.exceptions.FullPoolError):
            pool._put_conn(conn)
        assert conn.sock is None
