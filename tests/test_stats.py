"""Per-upstream statistics of a worker's pools: what calls and connections did, read back exactly."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import pytest
import requests

import wsgi_pool
from tests.faults import FaultServer, Peer
from tests.support import run_together
from wsgi_pool import PoolConfig, PoolTimeout, ResponseTooLarge, UpstreamUnreachable, _process
from wsgi_pool._stats import BUCKETS, OTHER, WARN_EVERY, Counters, Registry
from wsgi_pool.testing import Upstream, free_port


def test_calls_on_one_connection_are_counted(upstream: Upstream) -> None:
    """Five calls on one kept connection: one opened, four reused, five timed, none in use after."""
    http = wsgi_pool.client()
    for _ in range(5):
        assert http.get(f"{upstream.url}/x").status_code == 200
    found = http.pools.stats()[upstream.url]
    assert (found.calls, found.opened, found.reused) == (5, 1, 4)
    assert (found.in_use, found.idle, found.waiting) == (0, 1, 0)
    assert sum(found.buckets) == 5
    assert len(found.buckets) == len(BUCKETS) + 1
    assert found.seconds > 0
    assert dict(found.errors) == {}
    assert upstream.stats().connections_opened == found.opened
    json.dumps(found.as_dict())  # plain values only


def test_a_connection_the_upstream_closes_is_discarded(upstream: Upstream) -> None:
    """An answer with ``Connection: close`` leaves a discarded connection, and the next call opens one."""
    http = wsgi_pool.client()
    http.get(f"{upstream.url}/x?close=1")
    http.get(f"{upstream.url}/x")
    found = http.pools.stats()[upstream.url]
    assert (found.opened, found.reused, found.discarded) == (2, 0, 1)
    assert upstream.stats().connections_opened == 2


def test_errors_are_counted_by_kind(upstream: Upstream) -> None:
    """A refused connection and a body over the limit are counted under their exception's name."""
    port = free_port()
    http = wsgi_pool.client(PoolConfig(retries=0, max_response_bytes=10))
    with pytest.raises(UpstreamUnreachable):
        http.get(f"http://127.0.0.1:{port}/")
    with pytest.raises(ResponseTooLarge):
        http.get(f"{upstream.url}/x?size=100", stream=True).content  # noqa: B018
    stats = http.pools.stats()
    assert dict(stats[f"http://127.0.0.1:{port}"].errors) == {"UpstreamRefused": 1}
    assert stats[f"http://127.0.0.1:{port}"].calls == 1
    assert dict(stats[upstream.url].errors) == {"ResponseTooLarge": 1}


def test_waits_for_a_connection_are_counted_and_a_timeout_warned(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """With one slot held, a second call waits and times out: counted, warned once with its request id."""
    config = PoolConfig(pool_maxsize=1, pool_timeout=0.2, retries=0)
    holder = wsgi_pool.client(config)
    held = holder.get(f"{upstream.url}/x", stream=True)
    caplog.set_level(logging.WARNING, logger="wsgi_pool")
    app_calls = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        for _ in range(2):
            with pytest.raises(PoolTimeout):
                wsgi_pool.client_from(environ).get(f"{upstream.url}/y")
            app_calls.append(1)
        return [b""]

    start_response: Any = lambda *args: None  # noqa: E731
    wsgi_pool.PoolMiddleware(app, config)(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X_REQUEST_ID": "req-42"},
        start_response,
    )
    assert len(app_calls) == 2
    found = holder.pools.stats()[upstream.url]
    assert (found.waits, found.wait_timeouts, found.in_use) == (2, 2, 1)
    assert found.wait_seconds >= 0.4
    assert dict(found.errors) == {"PoolTimeout": 2}
    warnings = [r for r in caplog.records if "no free connection" in r.getMessage()]
    assert len(warnings) == 1  # the second within WARN_EVERY is held back
    assert "[request_id=req-42]" in warnings[0].getMessage()
    assert warnings[0].request_id == "req-42"  # type: ignore[attr-defined]
    held.close()
    assert holder.pools.stats()[upstream.url].in_use == 0


def test_a_wait_that_gets_a_connection_is_counted(upstream: Upstream) -> None:
    """Two calls over one slot at once: one of them waits, then gets the connection."""
    http = wsgi_pool.client(PoolConfig(pool_maxsize=1))
    url = f"{upstream.url}/x?delay=0.2"
    assert run_together(lambda: http.get(url).status_code, lambda: http.get(url).status_code) == [
        200,
        200,
    ]
    found = http.pools.stats()[upstream.url]
    assert (found.waits, found.wait_timeouts, found.calls, found.opened) == (1, 0, 2, 1)
    assert found.wait_seconds > 0.1


def test_held_back_warnings_are_counted_in_the_next() -> None:
    """Warnings of one kind within WARN_EVERY are held back, and the next one says how many."""
    stats = Counters("http://a:80")
    assert stats.may_warn("pool wait", 100.0) == 0
    assert stats.may_warn("pool wait", 101.0) is None
    assert stats.may_warn("pool wait", 102.0) is None
    assert stats.may_warn("retry budget", 102.0) == 0  # another kind has its own clock
    assert stats.may_warn("pool wait", 100.0 + WARN_EVERY) == 2


def test_upstreams_past_the_bound_are_counted_together() -> None:
    """A registry bounded at two upstreams counts a third and a fourth under 'other'."""
    registry = Registry(limit=2)
    names = [registry.for_upstream(f"http://h{i}:80").upstream for i in range(4)]
    assert names == ["http://h0:80", "http://h1:80", OTHER, OTHER]
    assert registry.for_upstream("http://h3:80") is registry.for_upstream("http://h2:80")
    assert [s.upstream for s in registry.all()] == ["http://h0:80", "http://h1:80", OTHER]


def test_the_repr_shows_live_state(upstream: Upstream) -> None:
    """The pools' repr shows, per upstream, active and waiting calls and the connections."""
    http = wsgi_pool.client()
    response = http.get(f"{upstream.url}/x", stream=True)
    assert (
        f"{upstream.url}: Requests: 1 active, 0 waiting | Connections: 1 in use, 0 idle, 1 opened"
        in repr(http.pools)
    )
    response.content  # noqa: B018  (read to the end: the connection goes back idle)
    assert (
        f"{upstream.url}: Requests: 0 active, 0 waiting | Connections: 0 in use, 1 idle, 1 opened"
        in repr(http.pools)
    )


def test_pools_built_in_the_gunicorn_master_are_warned_about(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """Pools built in the process on_starting ran in (the master) are logged as a warning."""
    caplog.set_level(logging.WARNING, logger="wsgi_pool")
    wsgi_pool.client().get(f"{upstream.url}/x")
    assert not [r for r in caplog.records if "gunicorn master" in r.getMessage()]
    _process.close_process_pools()
    _process.record_master(os.getpid())
    wsgi_pool.client().get(f"{upstream.url}/x")
    assert [r for r in caplog.records if "gunicorn master" in r.getMessage()]


def test_counting_is_thread_safe(upstream: Upstream) -> None:
    """Eight threads making 25 calls each: every call and every connection counted."""
    http = wsgi_pool.client(PoolConfig(pool_maxsize=8))
    session_errors: list[BaseException] = []

    def calls() -> None:
        for _ in range(25):
            try:
                http.get(f"{upstream.url}/x")
            except requests.RequestException as exc:  # pragma: no cover  (reported below)
                session_errors.append(exc)

    run_together(*[calls] * 8)
    found = http.pools.stats()[upstream.url]
    assert session_errors == []
    assert found.calls == 200
    assert found.opened + found.reused == 200
    assert found.opened == upstream.stats().connections_opened


def test_a_connection_with_no_room_in_a_non_blocking_pool_is_discarded(upstream: Upstream) -> None:
    """pool_block=False over one slot: two calls at once open two, and one goes when they end."""
    http = wsgi_pool.client(PoolConfig(pool_maxsize=1, pool_block=False))
    url = f"{upstream.url}/x?delay=0.2"
    run_together(lambda: http.get(url), lambda: http.get(url))
    found = http.pools.stats()[upstream.url]
    assert (found.opened, found.discarded, found.waits, found.idle) == (2, 1, 0, 1)


def test_settings_past_the_bound_are_worked_out_per_call(
    upstream: Upstream, second_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_SETTINGS upstreams, settings are not kept, and are still right."""
    from wsgi_pool import _policy  # noqa: PLC0415

    monkeypatch.setattr(_policy, "MAX_SETTINGS", 1)
    http = wsgi_pool.client(PoolConfig(read_timeout=3.0))
    http.get(f"{upstream.url}/x")
    http.get(f"{second_upstream.url}/x")
    policy = http._call_policy()
    assert list(policy._settings) == [upstream.url]
    assert policy.settings_for(second_upstream.url).read_timeout == 3.0


def test_a_retry_the_budget_refuses_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    """A failing upstream with no retry budget left: one warning, the rest counted, not logged."""

    def unavailable(peer: Peer) -> None:
        while peer.read_request():
            peer.respond("503 Service Unavailable", b"no")

    caplog.set_level(logging.WARNING, logger="wsgi_pool")
    config = PoolConfig(
        retries=2, retry_budget=0.0, retry_budget_min_per_second=0.0, backoff_factor=0.0
    )
    with FaultServer(unavailable) as server:
        http = wsgi_pool.client(config)
        assert [http.get(f"{server.url}/{i}").status_code for i in range(3)] == [503] * 3
        assert len(server.requests()) == 3  # no retry went out
        assert http.pools.stats()[server.url].retries_denied == 3
    warnings = [r for r in caplog.records if "retry budget exhausted" in r.getMessage()]
    assert len(warnings) == 1
    assert "status 503 not retried" in warnings[0].getMessage()
    assert "[request_id=-]" in warnings[0].getMessage()  # a call outside a request has none


def test_closed_pools_are_left_out_of_the_gauges(upstream: Upstream) -> None:
    """A pool closed but still held by the pool manager counts no connection in use or idle."""
    from wsgi_pool._adapter import live_pools  # noqa: PLC0415

    http = wsgi_pool.client()
    http.get(f"{upstream.url}/x")
    for pool in live_pools(http.pools.adapter.poolmanager):
        pool.close()
    found = http.pools.stats()[upstream.url]
    assert (found.calls, found.in_use, found.idle) == (1, 0, 0)


@pytest.mark.parametrize(
    ("upstream", "parts"),
    [
        ("https://api.internal:443", ("https", "api.internal", 443)),
        ("http://[::1]:8080", ("http", "::1", 8080)),
        ("other", ("", "other", None)),
        ("http://host-without-port", ("http", "host-without-port", None)),
    ],
)
def test_an_upstream_in_opentelemetrys_terms(
    upstream: str, parts: tuple[str, str, int | None]
) -> None:
    from wsgi_pool._stats import origin_parts  # noqa: PLC0415

    assert origin_parts(upstream) == parts
