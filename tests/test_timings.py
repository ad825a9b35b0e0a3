"""``response.timings``: where a call's time went, phase by phase (Go's httptrace, OkHttp's
EventListener)."""

from __future__ import annotations

import threading

import wsgi_pool
from tests.support import wait_until
from wsgi_pool import PoolConfig, Timings, timings
from wsgi_pool.testing import Upstream


def test_a_new_tls_connection_then_a_reused_one(https_upstream: Upstream, ca_file: str) -> None:
    with wsgi_pool.client(PoolConfig(ca_bundle=ca_file)) as http:
        response = http.get(f"{https_upstream.url}/a?delay=0.1")
        first = timings(response)
        second = timings(http.get(f"{https_upstream.url}/b"))
    assert first is response.timings  # type: ignore[attr-defined]  # set by the pools
    assert isinstance(first, Timings)
    assert isinstance(second, Timings)
    assert first.waited is None
    assert (first.connect or 0) > 0
    assert (first.tls or 0) > 0
    assert (first.first_byte or 0) >= 0.1  # the upstream's delay
    assert (first.reused, first.tries) == (False, 1)
    assert (second.connect, second.tls, second.reused) == (None, None, True)


def test_plain_http_has_no_tls_and_retries_are_counted(upstream: Upstream) -> None:
    upstream.answer("/busy", status=503, body=b"")
    with wsgi_pool.client(PoolConfig(retries=2, backoff_factor=0.0)) as http:
        plain = timings(http.get(f"{upstream.url}/a"))
        retried = timings(http.get(f"{upstream.url}/busy"))
    assert plain is not None
    assert plain.tls is None
    assert plain.connect is not None
    assert retried is not None
    assert retried.tries == 3


def test_a_wait_for_a_connection_is_timed(upstream: Upstream) -> None:
    """pool_maxsize=1: a call that finds the connection held (a stream, then closed unread:
    the connection is dropped) waits for it, and says so."""
    with wsgi_pool.client(PoolConfig(pool_maxsize=1)) as http:
        held = http.get(f"{upstream.url}/s?size=10", stream=True)
        found: list[Timings | None] = []
        waiter = threading.Thread(
            target=lambda: found.append(timings(http.get(f"{upstream.url}/w")))
        )
        waiter.start()
        assert wait_until(lambda: http.pools.stats()[upstream.url].waiting == 1)
        held.close()
        waiter.join(10)
    assert found[0] is not None
    assert (found[0].waited or 0) > 0


def test_a_response_from_elsewhere_has_none() -> None:
    assert timings(object()) is None


def test_a_mocked_call_has_no_timings(upstream: Upstream) -> None:
    """responses answers in place of the pools: nothing was measured, so nothing is told."""
    import responses  # noqa: PLC0415

    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{upstream.url}/mocked", body=b"ok")
        with wsgi_pool.client() as http:
            answer = http.get(f"{upstream.url}/mocked")
    assert answer.content == b"ok"
    assert timings(answer) is None


def test_a_wait_outside_a_call_is_bounded_too(upstream: Upstream) -> None:
    """The pool used directly, with no call around it (no try to note the wait on)."""
    import pytest  # noqa: PLC0415
    from urllib3.exceptions import EmptyPoolError  # noqa: PLC0415

    from wsgi_pool._adapter import live_pools  # noqa: PLC0415

    with wsgi_pool.client(PoolConfig(pool_maxsize=1)) as http:
        http.get(f"{upstream.url}/a")
        (pool,) = live_pools(http.pools.adapter.poolmanager)
        conn = pool._get_conn()
        with pytest.raises(EmptyPoolError):
            pool._get_conn(timeout=0.05)
        pool._put_conn(conn)


def test_through_a_proxys_tunnel(https_upstream: Upstream, ca_file: str) -> None:
    """The tunnel (connect, CONNECT, TLS) opens before the request is sent: the phases are
    all measured, and the first byte is counted from the send, not from the tunnel."""
    from tests.proxy import Proxy  # noqa: PLC0415

    with Proxy() as proxy, wsgi_pool.client(PoolConfig(ca_bundle=ca_file)) as http:
        spent = timings(http.get(f"{https_upstream.url}/a?delay=0.1", proxies={"https": proxy.url}))
        assert proxy.tunnels == 1
    assert spent is not None
    assert (spent.connect or 0) > 0
    assert (spent.tls or 0) > 0
    assert (spent.first_byte or 0) >= 0.1  # the upstream's delay, whatever the tunnel took
    assert spent.reused is False
