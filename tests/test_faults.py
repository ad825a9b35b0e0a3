"""The fault suite: the worker's client against misbehaving upstreams on 127.0.0.1.

Each scenario asserts the exact error type or the exact outcome, then that the pool is intact:
a healthy call succeeds at once, every pool slot is back, and once the clients and servers
are closed the process has no more open descriptors than before the scenario.
"""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
import requests
import trustme

import wsgi_pool
from tests.conftest import run_together, tls_context, write_ca
from tests.faults import (
    FaultServer,
    Peer,
    Script,
    describe_descriptors,
    full_backlog,
    open_descriptors,
    wait_until,
)
from tests.nginx import Nginx
from wsgi_pool import (
    Client,
    DeadlineExceeded,
    PoolConfig,
    PoolTimeout,
    ResponseTooLarge,
    UpstreamConnectTimeout,
    UpstreamProtocolError,
    UpstreamReadTimeout,
    UpstreamRefused,
    UpstreamReset,
    UpstreamSettings,
    WsgiPoolError,
)
from wsgi_pool.testing import Upstream, free_port

FAST: dict[str, Any] = {
    "connect_timeout": 2.0,
    "read_timeout": 2.0,
    "deadline": 5.0,
    "pool_timeout": 2.0,
    "backoff_factor": 0.01,
}


class Harness:
    """Fault servers and clients for one scenario, and the check that nothing was left broken."""

    def __init__(self, healthy: Upstream) -> None:
        self.healthy = healthy
        self.baseline = open_descriptors()
        self.servers: list[FaultServer] = []
        self.clients: list[Client] = []

    def serve(self, script: Script, **kwargs: Any) -> FaultServer:
        server = FaultServer(script, **kwargs).start()
        self.servers.append(server)
        return server

    def client(self, **settings: Any) -> Client:
        http = wsgi_pool.client(PoolConfig(**{**FAST, **settings}))
        self.clients.append(http)
        return http

    def assert_intact(self, http: Client) -> None:
        """A healthy call succeeds at once, every slot is back; then no descriptor is left open."""
        assert http.get(f"{self.healthy.url}/after").json()["path"] == "/after"
        pools = http.pools
        for origin, found in pools.stats().items():
            assert found.in_use == 0, f"a slot to {origin} is held"
        self.close()
        assert wait_until(lambda: open_descriptors() <= self.baseline), (
            f"{open_descriptors() - self.baseline} descriptors leaked: {describe_descriptors()}"
        )

    def close(self) -> None:
        for http in self.clients:
            http.close()
            http.pools.close()
        for server in self.servers:
            server.stop()


@pytest.fixture
def harness(upstream: Upstream) -> Iterator[Harness]:
    made = Harness(upstream)
    yield made
    made.close()


# -- scripts: one function per misbehaviour ---------------------------------------------------------


def keep_alive(peer: Peer) -> None:
    while peer.read_request():
        peer.respond()


def close_after_each(peer: Peer) -> None:
    if peer.read_request():
        peer.respond()  # no Connection: close, and yet it closes


def connection_close(peer: Peer) -> None:
    if peer.read_request():
        peer.respond(close=True)


def close_reused_after_reading(peer: Peer) -> None:
    """The first connection answers one request, reads the second and closes without answering."""
    while peer.read_request():
        if peer.index == 0 and peer.handled == 2:
            return
        peer.respond()


def once(data: bytes = b"", *, drip: bytes = b"", then: str = "close") -> Script:
    """Read one request, send ``data``, drip ``drip`` a byte per 200 ms, then close, hold or reset."""

    def script(peer: Peer) -> None:
        if not peer.read_request():
            return
        peer.send(data)
        peer.drip(drip, 0.2)
        if then == "hold":
            peer.hold()
        elif then == "reset":
            time.sleep(0.05)
            peer.reset()

    return script


OK_HEAD = b"HTTP/1.1 200 OK\r\n"
never_answer = once(then="hold")
stalled_body = once(OK_HEAD + b"Content-Length: 100\r\n\r\n0123456789", then="hold")
drip_body = once(OK_HEAD + b"Content-Length: 1000\r\n\r\n", drip=b"x" * 1000)
drip_headers = once(drip=OK_HEAD + b"X-Slow: " + b"y" * 1000 + b"\r\n\r\n")
partial_then_close = once(OK_HEAD + b"Content-Length: 1000\r\n\r\n0123456789")
reset_mid_body = once(OK_HEAD + b"Content-Length: 100000\r\n\r\n" + b"x" * 1000, then="reset")
garbage_status = once(b"SPAM SPAM SPAM\r\n\r\n")
bad_chunk_size = once(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nxx\r\n")
header_flood = once(
    OK_HEAD
    + b"Content-Length: 2\r\n"
    + b"".join(b"X-Flood-%d: %d\r\n" % (i, i) for i in range(200))
    + b"\r\nok"
)
conflicting_length = once(
    OK_HEAD + b"Content-Length: 2\r\nContent-Length: 40\r\n\r\nok", then="hold"
)
declared_too_large = once(OK_HEAD + b"Content-Length: 10485760\r\n\r\n" + b"x" * 1000, then="hold")


def _bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = bytes(1024 * 1024)
    return b"".join(packer.compress(zeros) for _ in range(64)) + packer.flush()


BOMB = _bomb()  # 64 MiB of zeros in about 64 KB


def gzip_bomb(peer: Peer) -> None:
    while seen := peer.read_request():
        if seen.path == "/ok":
            peer.respond()
            continue
        status = "302 Found" if seen.path == "/redirect" else "200 OK"
        peer.respond(status, BOMB, ("Content-Encoding: gzip", "Location: /ok"))


def status_then_ok(status: str, *headers: str, body: bytes = b"busy") -> Script:
    """The first request on the server gets ``status``; every later one 200."""

    def script(peer: Peer) -> None:
        while peer.read_request():
            first = len(peer.server.requests()) == 1
            peer.respond(status if first else "200 OK", body if first else b"ok", headers)

    return script


def always(status: str, *headers: str) -> Script:
    def script(peer: Peer) -> None:
        while peer.read_request():
            peer.respond(status, b"no", headers)

    return script


# -- keep-alive and stale connections ---------------------------------------------------------------


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


# -- the pool -------------------------------------------------------------------------------------


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


def test_a_slow_name_lookup_does_not_block_other_hosts(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one host's name lookup hangs, calls to other hosts go through."""
    resolving = threading.Event()
    release = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.test":  # the one lookup that cannot exist here: a slow DNS server
            resolving.set()
            release.wait(10)
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    http = harness.client()
    slow_result: list[int] = []
    slow = threading.Thread(
        target=lambda: slow_result.append(
            http.get(f"http://slow.test:{harness.healthy.url.rsplit(':', 1)[1]}/slow").status_code
        )
    )
    slow.start()
    try:
        assert resolving.wait(10)
        fast = [http.get(f"{harness.healthy.url}/fast").status_code for _ in range(10)]
        assert fast == [200] * 10
        assert slow.is_alive()  # still resolving while the others were served
    finally:
        release.set()
        slow.join(10)
    assert slow_result == [200]
    harness.assert_intact(http)


# -- connecting -----------------------------------------------------------------------------------


def test_connection_refused(harness: Harness) -> None:
    """Nothing listening: UpstreamRefused (a requests.ConnectionError), after the connect retries."""
    http = harness.client(retries=2)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UpstreamRefused) as caught:
        http.post(f"{url}/x", data=b"nothing was sent")
    assert isinstance(caught.value, requests.exceptions.ConnectionError)
    assert caught.value.upstream == url
    assert http.pools.stats()[url].retries == 2
    harness.assert_intact(http)


def test_full_listen_backlog_is_a_connect_timeout(harness: Harness) -> None:
    """A server whose accept queue is full: UpstreamConnectTimeout after connect_timeout."""
    with full_backlog() as port:
        http = harness.client(connect_timeout=0.3, retries=0)
        with pytest.raises(UpstreamConnectTimeout) as caught:
            http.get(f"http://127.0.0.1:{port}/")
        assert isinstance(caught.value, requests.exceptions.ConnectTimeout)
    harness.assert_intact(http)


# -- reading --------------------------------------------------------------------------------------


def test_accept_and_never_answer_is_a_read_timeout(harness: Harness) -> None:
    """A server that reads the request and says nothing: UpstreamReadTimeout, not retried."""
    server = harness.serve(never_answer)
    http = harness.client(read_timeout=0.3)
    with pytest.raises(UpstreamReadTimeout) as caught:
        http.get(f"{server.url}/x")
    assert isinstance(caught.value, requests.exceptions.ReadTimeout)
    assert len(server.requests()) == 1
    harness.assert_intact(http)


def test_stalled_body_is_a_timeout_not_a_connection_error(harness: Harness) -> None:
    """Headers, then silence mid-body: UpstreamReadTimeout (requests would say ConnectionError)."""
    server = harness.serve(stalled_body)
    http = harness.client(read_timeout=0.3)
    with pytest.raises(UpstreamReadTimeout) as caught:
        http.get(f"{server.url}/x")
    assert not isinstance(caught.value, requests.exceptions.ConnectionError)
    harness.assert_intact(http)


def test_stalled_streamed_body_is_a_timeout(harness: Harness) -> None:
    """The same stall read through iter_content of a streamed response."""
    server = harness.serve(stalled_body)
    http = harness.client(read_timeout=0.3)
    response = http.get(f"{server.url}/x", stream=True)
    with pytest.raises(UpstreamReadTimeout):
        b"".join(response.iter_content(10))
    harness.assert_intact(http)


def test_one_byte_drip_body_ends_at_the_deadline(harness: Harness) -> None:
    """A byte every 200 ms never trips the read timeout; the deadline ends the call."""
    server = harness.serve(drip_body)
    http = harness.client(read_timeout=1.0)
    with pytest.raises(DeadlineExceeded, match="deadline of 1 s exceeded while reading the body"):
        http.request("GET", f"{server.url}/drip", deadline=1.0)
    harness.assert_intact(http)


def test_one_byte_drip_headers_end_at_the_deadline(harness: Harness) -> None:
    """A status line and headers dripped a byte at a time end at the deadline too."""
    server = harness.serve(drip_headers)
    http = harness.client(read_timeout=1.0)
    with pytest.raises(DeadlineExceeded), wsgi_pool.deadline(1.0):
        http.get(f"{server.url}/drip")
    assert http.pools.watchdog.cuts == 1
    harness.assert_intact(http)


def test_drip_into_a_streamed_body_ends_at_the_deadline(harness: Harness) -> None:
    """The deadline also covers a streamed body read after the call returned."""
    server = harness.serve(drip_body)
    http = harness.client(read_timeout=1.0)
    response = http.request("GET", f"{server.url}/drip", deadline=1.0, stream=True)
    with pytest.raises(DeadlineExceeded):
        for _ in response.iter_content(100):
            pass
    harness.assert_intact(http)


def test_partial_body_then_close(harness: Harness) -> None:
    """Fewer bytes than Content-Length, then FIN: UpstreamReset (a ChunkedEncodingError too)."""
    server = harness.serve(partial_then_close)
    http = harness.client()
    with pytest.raises(UpstreamReset) as caught:
        http.get(f"{server.url}/x")
    assert isinstance(caught.value, requests.exceptions.ChunkedEncodingError)
    assert len(server.requests()) == 1  # a response had begun: never replayed
    harness.assert_intact(http)


def test_reset_mid_body(harness: Harness) -> None:
    """A TCP reset in the middle of the body: UpstreamReset."""
    server = harness.serve(reset_mid_body)
    http = harness.client()
    with pytest.raises(UpstreamReset):
        http.get(f"{server.url}/x")
    harness.assert_intact(http)


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(garbage_status, id="garbage status line"),
        pytest.param(bad_chunk_size, id="bad chunk size"),
        pytest.param(header_flood, id="header flood"),
    ],
)
def test_protocol_violations(harness: Harness, script: Script) -> None:
    """Responses that are not HTTP/1.1 raise UpstreamProtocolError naming the upstream."""
    server = harness.serve(script)
    http = harness.client()
    with pytest.raises(UpstreamProtocolError) as caught:
        http.get(f"{server.url}/x")
    assert caught.value.upstream == server.url
    assert len(server.requests()) == 1
    harness.assert_intact(http)


def test_conflicting_content_lengths_are_refused(harness: Harness) -> None:
    """Two different Content-Length values (a smuggling vector) raise UpstreamProtocolError."""
    server = harness.serve(conflicting_length)
    http = harness.client()
    with pytest.raises(UpstreamProtocolError):
        http.get(f"{server.url}/x")
    harness.assert_intact(http)


# -- limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["read at once", "streamed"])
def test_gzip_bomb_stops_at_the_limit(harness: Harness, stream: bool) -> None:
    """64 MiB of zeros in 64 KB of gzip: decoding stops just past max_response_bytes."""
    server = harness.serve(gzip_bomb)
    http = harness.client(max_response_bytes=1024 * 1024)

    def read() -> None:
        response = http.get(f"{server.url}/bomb", stream=stream)
        for _ in response.iter_content(64 * 1024):
            pass

    with pytest.raises(ResponseTooLarge) as caught:
        read()
    assert caught.value.limit == 1024 * 1024
    assert caught.value.received <= 1024 * 1024 + 64 * 1024
    harness.assert_intact(http)


def test_gzip_bomb_on_a_redirect_is_never_decoded(harness: Harness) -> None:
    """requests decodes a redirect's body in full; here it is discarded undecoded, even with no cap."""
    server = harness.serve(gzip_bomb)
    http = harness.client(max_response_bytes=None)
    tracemalloc.start()
    try:
        answer = http.get(f"{server.url}/redirect")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 200
    assert [r.status_code for r in answer.history] == [302]
    assert answer.history[0].content == b""
    assert peak < 4 * 1024 * 1024, f"{peak} bytes allocated: the 64 MiB body was decoded"
    assert [s.path for s in server.requests()] == ["/redirect", "/ok"]
    harness.assert_intact(http)


def test_declared_length_over_the_limit_fails_before_reading(harness: Harness) -> None:
    """A Content-Length above the limit is refused at the headers, nothing of the body read."""
    server = harness.serve(declared_too_large)
    http = harness.client(max_response_bytes=1024 * 1024)
    with pytest.raises(ResponseTooLarge) as caught:
        http.get(f"{server.url}/big")
    assert caught.value.received == 0
    harness.assert_intact(http)


def test_per_upstream_limit_lifts_the_cap_for_one_upstream(harness: Harness) -> None:
    """upstreams[origin].max_response_bytes wins over the config's for that origin only."""
    http = harness.client(
        max_response_bytes=1000,
        upstreams={harness.healthy.url: UpstreamSettings(max_response_bytes=10_000_000)},
    )
    assert len(http.get(f"{harness.healthy.url}/big?size=100000").content) == 100000
    harness.assert_intact(http)


# -- retries --------------------------------------------------------------------------------------


def test_retry_after_is_honoured(harness: Harness) -> None:
    """503 with Retry-After: 1, then 200: the GET succeeds, retried no sooner than asked."""
    server = harness.serve(status_then_ok("503 Service Unavailable", "Retry-After: 1"))
    http = harness.client()
    assert http.get(f"{server.url}/x").status_code == 200
    first, second = server.requests()
    assert second.at - first.at >= 1.0
    harness.assert_intact(http)


def test_retry_after_beyond_the_deadline_returns_the_response(harness: Harness) -> None:
    """A Retry-After that ends past the deadline is not waited for: the 503 is the answer."""
    server = harness.serve(status_then_ok("503 Service Unavailable", "Retry-After: 30"))
    http = harness.client()
    response = http.request("GET", f"{server.url}/x", deadline=2.0)
    assert (response.status_code, response.headers["Retry-After"]) == (503, "30")
    assert len(server.requests()) == 1
    harness.assert_intact(http)


def test_status_retries_only_for_idempotent_requests(harness: Harness) -> None:
    """429 is retried for GET and for a POST with an Idempotency-Key, not for a bare POST."""
    get_server = harness.serve(status_then_ok("429 Too Many Requests"))
    post_server = harness.serve(status_then_ok("429 Too Many Requests"))
    keyed_server = harness.serve(status_then_ok("429 Too Many Requests"))
    http = harness.client()
    assert http.get(f"{get_server.url}/x").status_code == 200
    assert http.post(f"{post_server.url}/x", data=b"1").status_code == 429
    keyed = http.post(f"{keyed_server.url}/x", data=b"1", headers={"Idempotency-Key": "a"})
    assert keyed.status_code == 200
    assert [len(s.requests()) for s in (get_server, post_server, keyed_server)] == [2, 1, 2]
    harness.assert_intact(http)


def test_retried_response_with_a_body_gives_its_connection_back(harness: Harness) -> None:
    """A 503 with a large unread body is dropped before the retry: no slot is lost."""
    server = harness.serve(status_then_ok("503 Service Unavailable", body=b"z" * 200_000))
    http = harness.client(pool_maxsize=1)
    assert http.get(f"{server.url}/x").text == "ok"
    harness.assert_intact(http)


def test_retry_budget_limits_retries_to_a_share_of_traffic(harness: Harness) -> None:
    """Against an upstream failing every call, retries add at most retry_budget of the traffic."""
    server = harness.serve(always("503 Service Unavailable"))
    http = harness.client(
        retries=3, retry_budget=0.5, retry_budget_min_per_second=0.0, backoff_factor=0.0
    )
    statuses = [http.get(f"{server.url}/{i}").status_code for i in range(20)]
    assert statuses == [503] * 20
    assert len(server.requests()) == 30  # 20 calls + 10 retries, not 20 x 4
    found = http.pools.stats()[server.url]
    assert (found.retries, found.retries_denied) == (10, 20)
    harness.assert_intact(http)


def test_retries_stop_at_the_deadline(harness: Harness) -> None:
    """Backoff never sleeps past the deadline: the last answer is returned in time."""
    server = harness.serve(always("503 Service Unavailable", "Retry-After: 1"))
    http = harness.client(retries=10)
    assert http.request("GET", f"{server.url}/x", deadline=2.5).status_code == 503
    assert 2 <= len(server.requests()) <= 3
    harness.assert_intact(http)


# -- deadlines ------------------------------------------------------------------------------------


def test_per_upstream_deadline(harness: Harness) -> None:
    """upstreams[origin].deadline applies to that origin; others keep the config's."""
    server = harness.serve(never_answer)
    http = harness.client(upstreams={server.url: {"deadline": 0.3}}, read_timeout=5.0)
    with pytest.raises(DeadlineExceeded) as caught:
        http.get(f"{server.url}/x")
    assert caught.value.deadline == 0.3
    assert isinstance(caught.value, requests.exceptions.Timeout)
    assert isinstance(caught.value, WsgiPoolError)
    assert http.pools.deadline_for(harness.healthy.url) == FAST["deadline"]
    harness.assert_intact(http)


def test_incoming_budget_bounds_outbound_calls_and_is_passed_on(harness: Harness) -> None:
    """An X-Request-Deadline budget ends outbound calls and, with propagate_deadline, goes to upstreams that get propagation."""
    server = harness.serve(never_answer)
    config = PoolConfig(
        **{**FAST, "read_timeout": 5.0},
        propagate_deadline=True,
        upstreams={harness.healthy.url: UpstreamSettings(propagate=True)},
    )
    seen: dict[str, Any] = {}

    def app(environ: Any, start_response: Any) -> list[bytes]:
        http = wsgi_pool.client_from(environ)
        seen["echo"] = http.get(f"{harness.healthy.url}/echo").json()["headers"]
        try:
            http.get(f"{server.url}/x")
        except DeadlineExceeded as exc:
            seen["error"] = exc
        start_response("200 OK", [])
        return [b""]

    environ: dict[str, Any] = {"HTTP_X_REQUEST_DEADLINE": "400"}
    setup_testing_defaults(environ)
    wsgi_pool.PoolMiddleware(app, config)(environ, lambda *a: lambda b: None)
    assert 0 < int(seen["echo"]["X-Request-Deadline"]) <= 400
    assert isinstance(seen["error"], DeadlineExceeded)
    assert ["x-request-deadline" in r.headers for r in server.requests()] == [False]
    assert seen["error"].deadline <= 0.4
    harness.clients.append(wsgi_pool.client(config))
    harness.assert_intact(harness.clients[-1])


@pytest.fixture
def tls_pair(tmp_path: Any) -> tuple[Any, str]:
    """A server TLS context for 127.0.0.1 and the file of the CA that signed it."""
    ca = trustme.CA()
    return tls_context(ca, "127.0.0.1"), write_ca(ca, tmp_path)


def test_nginx_closing_idle_connections_after_one_second(harness: Harness) -> None:
    """Against nginx with keepalive_timeout 1s, calls about 1 s apart: 60 of 60 succeed."""
    with Nginx("1s") as nginx:
        http = harness.client(retries=0)
        statuses = []
        for i in range(60):
            statuses.append(http.get(f"{nginx.url}/{i}").status_code)
            time.sleep(0.95 + (i % 5) * 0.025)  # 0.95 .. 1.05 s: on both sides of nginx's timer
        counts = http.pools.stats()[nginx.url]
        assert statuses == [200] * 60
        assert counts.opened > 1  # nginx did close idle connections under us
        print(f"nginx keepalive 1s: {counts}")
        harness.assert_intact(http)
