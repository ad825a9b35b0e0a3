"""Kept connections: reused while healthy, expired when idle, replayed once when the server closed one under a safe request."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import trustme

from tests.faults import Peer
from tests.harness import (
    FAST,
    Harness,
    close_after_each,
    close_reused_after_reading,
    connection_close,
    keep_alive,
)
from tests.nginx import Nginx
from tests.support import tls_context, write_ca
from wsgi_pool import (
    Client,
    PoolConfig,
    UpstreamReset,
    WorkerPools,
)
from wsgi_pool._retry import replay_safe
from wsgi_pool._worker import Extension


def test_keep_alive_reuses_one_connection(harness: Harness) -> None:
    """Sequential calls to a keep-alive server share one connection."""
    server = harness.serve(keep_alive)
    http = harness.client()
    assert [http.get(f"{server.url}/{i}").text for i in range(5)] == ["ok"] * 5
    assert server.connections == 1
    harness.assert_intact(http)


def test_server_closing_after_each_response_without_saying_so(harness: Harness) -> None:
    """A server that closes after every response (no Connection: close) costs no GET an error."""
    server = harness.serve(close_after_each)
    http = harness.client()
    assert [http.get(f"{server.url}/{i}").status_code for i in range(10)] == [200] * 10
    assert len(server.requests()) == 10
    harness.assert_intact(http)


def test_a_closed_idle_connection_is_detected_before_a_post(harness: Harness) -> None:
    """When the server has closed an idle connection, a POST goes out on a new one, not replayed."""
    server = harness.serve(close_after_each)
    http = harness.client()
    for i in range(3):
        assert http.post(f"{server.url}/{i}", data=b"x").status_code == 200
        assert server.closed.acquire(timeout=10)  # the server closed it before the next call
    assert [seen.connection for seen in server.requests("POST")] == [0, 1, 2]
    assert http.pools.stats()[server.url].replays == 0
    harness.assert_intact(http)


def test_get_failing_on_a_reused_connection_is_replayed_once(harness: Harness) -> None:
    """A GET the server read and dropped on a reused connection is replayed on a new one."""
    server = harness.serve(close_reused_after_reading)
    http = harness.client(retries=0)
    assert http.get(f"{server.url}/one").status_code == 200
    assert http.get(f"{server.url}/two").status_code == 200
    assert [(s.path, s.connection) for s in server.requests()] == [
        ("/one", 0),
        ("/two", 0),
        ("/two", 1),
    ]
    assert http.pools.stats()[server.url].replays == 1
    harness.assert_intact(http)


def test_post_failing_on_a_reused_connection_is_not_replayed(harness: Harness) -> None:
    """A POST the server may have received is never sent twice: the caller gets UpstreamReset."""
    server = harness.serve(close_reused_after_reading)
    http = harness.client()
    assert http.post(f"{server.url}/one", data=b"1").status_code == 200
    with pytest.raises(UpstreamReset) as caught:
        http.post(f"{server.url}/two", data=b"2")
    assert isinstance(caught.value, requests.exceptions.ConnectionError)
    assert caught.value.upstream == server.url
    assert [s.path for s in server.requests("POST")] == ["/one", "/two"]
    assert http.pools.stats()[server.url].replays == 0
    harness.assert_intact(http)


def test_post_with_an_idempotency_key_is_replayed(harness: Harness) -> None:
    """An Idempotency-Key header makes a POST safe to replay."""
    server = harness.serve(close_reused_after_reading)
    http = harness.client()
    http.post(f"{server.url}/one", data=b"1")
    response = http.post(f"{server.url}/two", data=b"2", headers={"Idempotency-Key": "k-2"})
    assert response.status_code == 200
    assert [s.body for s in server.requests("POST")] == [b"1", b"2", b"2"]
    harness.assert_intact(http)


class _ReturnsOnReplay(Extension):
    """A statistics sink that, when a replay is counted (between the failed try and the
    replay), reads a held response: another thread's connection back on top of the idle ones."""

    def __init__(self) -> None:
        self.held: requests.Response | None = None

    def sink_for(self, upstream: str) -> _ReturnsOnReplay:
        return self

    def add(self, name: str, count: float) -> None:
        if name == "replays" and self.held is not None:
            assert self.held.content == b"ok"

    def ended(
        self, seconds: float, error: BaseException | None, method: str, status: int | None
    ) -> None:
        pass

    def failed(self, error: BaseException) -> None:
        pass

    def closed(self, seconds: float) -> None:
        pass


def _second_connection_closes_when_reused(peer: Peer) -> None:
    while peer.read_request():
        if peer.index == 1 and peer.handled == 2:
            return
        peer.respond()


def test_a_replay_never_takes_another_connection_older_than_the_failed_try(
    harness: Harness,
) -> None:
    """The replay goes out on a new connection, not on an idle one opened before the failed
    try (which may be just as stale): that one, returned meanwhile, is closed."""
    server = harness.serve(_second_connection_closes_when_reused)
    returns = _ReturnsOnReplay()
    pools = WorkerPools(PoolConfig(**{**FAST, "retries": 0}), extensions=[returns])
    with Client(pools=pools) as http:
        assert http.get(f"{server.url}/one").status_code == 200  # connection 0, then idle
        returns.held = http.get(f"{server.url}/held", stream=True)  # connection 0, in use
        assert http.get(f"{server.url}/two").status_code == 200  # connection 1, then idle
        # Connection 1 fails /three; connection 0 comes back during the failure; the replay
        # closes it and opens connection 2.
        assert http.get(f"{server.url}/three").status_code == 200
        assert [(s.path, s.connection) for s in server.requests()] == [
            ("/one", 0),
            ("/held", 0),
            ("/two", 1),
            ("/three", 1),
            ("/three", 2),
        ]
        assert http.pools.stats()[server.url].replays == 1
        assert server.closed.acquire(timeout=10)
        assert server.closed.acquire(timeout=10)  # both: 1 by the server, 0 by the replay
    pools.close()


@pytest.fixture
def tls_pair(tmp_path: Any) -> tuple[Any, str]:
    """A server TLS context for 127.0.0.1 and the file of the CA that signed it."""
    ca = trustme.CA()
    return tls_context(ca, "127.0.0.1"), write_ca(ca, tmp_path)


def test_tls_connection_closed_under_a_get_is_replayed(
    harness: Harness, tls_pair: tuple[Any, str]
) -> None:
    """The stale-connection replay works the same over TLS."""
    server_context, ca_file = tls_pair
    server = harness.serve(close_reused_after_reading, tls=server_context)
    http = harness.client(retries=0)
    assert http.get(f"{server.url}/one", verify=ca_file).status_code == 200
    assert http.get(f"{server.url}/two", verify=ca_file).status_code == 200
    assert len(server.requests()) == 3
    assert http.pools.stats()[server.url].replays == 1
    harness.assert_intact(http)


def test_connection_close_on_every_response(harness: Harness) -> None:
    """Connection: close is honoured: one connection per call, no replays, no errors."""
    server = harness.serve(connection_close)
    http = harness.client()
    assert [http.get(f"{server.url}/{i}").text for i in range(5)] == ["ok"] * 5
    assert server.connections == 5
    assert http.pools.stats()[server.url].replays == 0
    harness.assert_intact(http)


def test_idle_connections_expire_on_the_client_side(harness: Harness) -> None:
    """A connection idle longer than idle_timeout is closed and replaced, not reused."""
    server = harness.serve(keep_alive)
    http = harness.client(idle_timeout=0.2)
    http.get(f"{server.url}/a")
    http.get(f"{server.url}/b")
    assert server.connections == 1
    time.sleep(0.4)
    http.get(f"{server.url}/c")
    assert server.connections == 2
    assert http.pools.stats()[server.url].idle_expired == 1
    harness.assert_intact(http)


def test_nginx_closing_idle_connections_as_calls_arrive(harness: Harness) -> None:
    """Against nginx closing idle connections after 100 ms, calls about 100 ms apart: 60 of 60
    succeed with no retries, on both sides of nginx's timer (what a 1 s timer with calls 1 s
    apart shows, ten times faster: the race is the same, only its scale differs)."""
    with Nginx("100ms") as nginx:
        http = harness.client(retries=0)
        statuses = []
        for i in range(60):
            statuses.append(http.get(f"{nginx.url}/{i}").status_code)
            time.sleep(0.095 + (i % 5) * 0.0025)  # the idle time: 95 .. 105 ms
        counts = http.pools.stats()[nginx.url]
        assert statuses == [200] * 60
        assert counts.opened > 1  # nginx did close idle connections under us
        harness.assert_intact(http)


def test_replay_safety() -> None:
    """Idempotent methods and an Idempotency-Key (any case) are safe to send twice; POST is not."""
    assert replay_safe("get", None)
    assert replay_safe("POST", {"idempotency-key": "1"})
    assert not replay_safe("POST", {"Content-Type": "x"})
    assert not replay_safe("PATCH", None)
