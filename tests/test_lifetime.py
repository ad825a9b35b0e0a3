"""A connection's lifetime: its age, its requests, its server's keep-alive hint.

A connection past ``max_connection_age`` or ``max_requests_per_connection`` is closed when it
comes back to the pool, never under a call; one that aged while idle is closed when taken.
A server's ``Keep-Alive: timeout=N`` shortens the idle time its connections are kept.
"""

from __future__ import annotations

import math
import time

import pytest

import wsgi_pool
from tests.support import run_together
from wsgi_pool import PoolConfig, UpstreamSettings
from wsgi_pool._adapter import live_pools
from wsgi_pool._pool import AGE_JITTER, keep_alive_limit
from wsgi_pool.testing import Upstream


def connections(answers: list[dict[str, object]]) -> list[object]:
    return [answer["connection"] for answer in answers]


def test_a_connection_past_its_age_is_closed_when_it_comes_back(upstream: Upstream) -> None:
    """A 0.3 s age: calls within it share one connection; a call that runs past the age ends
    on that connection (never cut), which is closed as it comes back: the next call opens
    another. None of it is counted as discarded."""
    config = PoolConfig(max_connection_age=0.3)
    with wsgi_pool.client(config) as http:
        first = [http.get(f"{upstream.url}/a").json() for _ in range(3)]
        slow = http.get(f"{upstream.url}/b?delay=0.35").json()
        assert http.pools.stats()[upstream.url].retired == 1
        after = http.get(f"{upstream.url}/c").json()
        counts = http.pools.stats()[upstream.url]
    assert len(set(connections([*first, slow]))) == 1
    assert after["connection"] != slow["connection"]
    assert (counts.opened, counts.retired, counts.discarded) == (2, 1, 0)


def test_a_connection_that_aged_while_idle_is_closed_when_taken(upstream: Upstream) -> None:
    with wsgi_pool.client(PoolConfig(max_connection_age=0.2, idle_timeout=10.0)) as http:
        before = http.get(f"{upstream.url}/a").json()
        time.sleep(0.25)
        after = http.get(f"{upstream.url}/b").json()
        counts = http.pools.stats()[upstream.url]
    assert after["connection"] != before["connection"]
    assert (counts.opened, counts.retired, counts.idle_expired) == (2, 1, 0)


def test_a_call_in_flight_is_never_cut_by_the_age(upstream: Upstream) -> None:
    """A streamed body read slowly past the connection's age arrives whole; the connection
    closes when the body is done (counted as retired), and the next call opens a new one."""
    config = PoolConfig(max_connection_age=0.2)
    with wsgi_pool.client(config) as http:
        response = http.get(f"{upstream.url}/big?size=200000", stream=True)
        chunks = []
        for chunk in response.iter_content(50000):
            chunks.append(chunk)
            time.sleep(0.1)
        response.close()
        counts = http.pools.stats()[upstream.url]
        assert sum(map(len, chunks)) == 200000
        assert counts.retired == 1
        assert counts.idle == 0
        http.get(f"{upstream.url}/next").raise_for_status()
        assert http.pools.stats()[upstream.url].opened == 2


def test_max_requests_per_connection(upstream: Upstream) -> None:
    """Three requests per connection: seven calls open three connections, two retired."""
    with wsgi_pool.client(PoolConfig(max_requests_per_connection=3)) as http:
        answers = [http.get(f"{upstream.url}/{n}").json() for n in range(7)]
        counts = http.pools.stats()[upstream.url]
    ids = connections(answers)
    assert ids[0:3] == [ids[0]] * 3
    assert ids[3:6] == [ids[3]] * 3
    assert len({ids[0], ids[3], ids[6]}) == 3
    assert (counts.opened, counts.reused, counts.retired) == (3, 4, 2)


def test_ages_are_jittered_below_the_setting(upstream: Upstream) -> None:
    """Eight connections opened together get eight different ends, each within the last 10%
    of the age: they do not all close at once."""
    config = PoolConfig(max_connection_age=100.0, pool_maxsize=8)
    with wsgi_pool.client(config) as http:
        opened = time.monotonic()
        run_together(*[lambda: http.get(f"{upstream.url}/slow?delay=0.2").status_code] * 8)
        (pool,) = live_pools(http.pools.adapter.poolmanager)
        assert pool.pool is not None
        ends = [conn.wp_retire_at - opened for conn in list(pool.pool.queue) if conn is not None]
    assert len(ends) == 8
    assert len(set(ends)) == 8
    assert all(100 * (1 - AGE_JITTER) <= end <= 100 + 1 for end in ends)


def test_no_age_keeps_a_connection_for_good(upstream: Upstream) -> None:
    with wsgi_pool.client(PoolConfig(max_connection_age=None)) as http:
        answers = [http.get(f"{upstream.url}/{n}").json() for n in range(3)]
        assert len(set(connections(answers))) == 1
        assert http.pools.stats()[upstream.url].retired == 0


def test_the_age_is_per_upstream_too(upstream: Upstream, second_upstream: Upstream) -> None:
    """An upstream's own age wins: its connections rotate, the other's stay."""
    config = PoolConfig(
        max_connection_age=None,
        upstreams={upstream.url: UpstreamSettings(max_connection_age=0.1)},
    )
    with wsgi_pool.client(config) as http:
        for _ in range(3):
            http.get(f"{upstream.url}/x").raise_for_status()
            http.get(f"{second_upstream.url}/x").raise_for_status()
            time.sleep(0.12)
        stats = http.pools.stats()
    assert stats[upstream.url].opened == 3
    assert stats[second_upstream.url].opened == 1


@pytest.mark.parametrize(
    ("hint", "limit"),
    [
        ("timeout=5, max=100", 4.0),
        ("timeout=5", 4.0),
        ("max=100, Timeout = 2", 1.0),
        ("timeout=1", 0.5),
        ("timeout=0", 0.0),
        ("max=100", math.inf),
        ("timeout=abc", math.inf),
        ("timeout=-3", math.inf),
        ("", math.inf),
    ],
)
def test_keep_alive_hint(hint: str, limit: float) -> None:
    """``Keep-Alive: timeout=N``: idle for at most N - 1 s (at most half of N); else no limit."""
    assert keep_alive_limit(hint) == limit


def test_a_servers_keep_alive_hint_shortens_the_idle_time(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """An upstream that says ``Keep-Alive: timeout=1`` has its connections kept idle 0.5 s at
    most (idle_timeout says 4 s): after 0.7 s idle, the next call opens a new one. One that
    says nothing keeps its connection."""
    upstream.answer("/ka", body=b"ok", headers={"Keep-Alive": "timeout=1"})
    with wsgi_pool.client(PoolConfig(idle_timeout=4.0)) as http:
        for server in (upstream, second_upstream):
            http.get(f"{server.url}/ka").raise_for_status()
        time.sleep(0.7)
        for server in (upstream, second_upstream):
            http.get(f"{server.url}/ka").raise_for_status()
        stats = http.pools.stats()
    assert (stats[upstream.url].opened, stats[upstream.url].idle_expired) == (2, 1)
    assert (stats[second_upstream.url].opened, stats[second_upstream.url].reused) == (1, 1)


def test_an_upstreams_own_idle_timeout(upstream: Upstream) -> None:
    """An upstream behind gunicorn (keep-alive 2 s, no hint) gets its own idle timeout."""
    config = PoolConfig(upstreams={upstream.url: UpstreamSettings(idle_timeout=0.2)})
    with wsgi_pool.client(config) as http:
        http.get(f"{upstream.url}/a").raise_for_status()
        time.sleep(0.3)
        http.get(f"{upstream.url}/b").raise_for_status()
        counts = http.pools.stats()[upstream.url]
    assert (counts.opened, counts.idle_expired) == (2, 1)


def test_lifetimes_shape_the_pools() -> None:
    """Configs that differ in an upstream's lifetime do not share pools; in its deadline, they do."""
    base = PoolConfig()
    aged = PoolConfig(upstreams={"http://a.test": UpstreamSettings(max_connection_age=5.0)})
    late = PoolConfig(upstreams={"http://a.test": UpstreamSettings(deadline=5.0)})
    assert aged.pool_shape() != base.pool_shape()
    assert late.pool_shape() == base.pool_shape()
