"""Where two features meet: each scenario on every way a call can travel.

Transports: plain http, TLS, through an http proxy, and TLS inside TLS through an https proxy.
Scenarios, each on a connection kept from a first call:

- the deadline cuts an upload the upstream reads slowly: ``DeadlineExceeded`` at the deadline,
  and the request is never sent again (a cut is not a stale connection);
- through an https proxy (TLS in TLS), the upstream drips the head a byte at a time: the
  watchdog cuts it, twice in a row (it survives what a cut raises);
- an interim ``103`` before each answer: every call gets its own final answer;
- a ``307`` with a file body: the body is sent again, whole, to the new location.

Then connecting under the deadline, with and without the egress policy: a name whose first
addresses are black holes fails over to the next within the deadline, and a connect timeout
under a short deadline is still retried.
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trustme
import urllib3.util.connection

import wsgi_pool
from tests.faults import FaultServer, Peer, full_backlog
from tests.proxy import Proxy
from tests.support import tls_context, write_ca
from wsgi_pool import DeadlineExceeded, PoolConfig, UpstreamConnectTimeout
from wsgi_pool.testing import Upstream

DRIP = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 50 + b"\r\nContent-Length: 2\r\n\r\nok"
"""A head of about 80 bytes: dripped at 0.2 s a byte, 16 s if nothing cuts it."""


def answer_first_then(then: Callable[[Peer], None]) -> Callable[[Peer], None]:
    """A request for ``/first...`` is answered ``first``; every other one gets ``then``."""

    def script(peer: Peer) -> None:
        while seen := peer.read_request():
            if path_of(seen.path).startswith("/first"):
                peer.respond(body=b"first")
            else:
                then(peer)

    return script


def path_of(target: str) -> str:
    """The path of a request target, origin-form or the absolute-form a proxy is sent."""
    return urlsplit(target).path if "://" in target else target


def paths(server: FaultServer) -> list[str]:
    return [path_of(seen.path) for seen in server.requests()]


def reused(http: wsgi_pool.Client) -> int:
    """Requests sent on a kept connection (counted under the proxy, when there is one)."""
    return sum(counts.reused for counts in http.pools.stats().values())


UPLOAD = 20 * 1024 * 1024
"""More than the sockets' buffers hold: the client is still sending when the deadline passes."""


def read_slowly_then_answer(peer: Peer) -> None:
    """Read the body 16 KB every 50 ms (20 MB: a minute), then answer."""
    seen = peer.server.requests()[-1]
    length = int(seen.headers.get("content-length", "0"))
    if peer.read_slowly(length, 16 * 1024, 0.05) == length:
        peer.respond(body=b"uploaded")


def slow_upload(peer: Peer) -> None:
    """``/first...`` is answered at once; any other request's body is read slowly."""
    while seen := peer.read_request(body=False):
        if path_of(seen.path).startswith("/first"):
            peer.read_slowly(int(seen.headers.get("content-length", "0")), 65536, 0)
            peer.respond(body=b"first")
        else:
            read_slowly_then_answer(peer)


def drip_head(peer: Peer) -> None:
    peer.drip(DRIP, 0.2)


def interim_then_final(peer: Peer) -> None:
    seen = peer.server.requests()[-1]
    peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
    peer.respond(body=path_of(seen.path).encode())


def redirect_then_echo(peer: Peer) -> None:
    seen = peer.server.requests()[-1]
    if path_of(seen.path) == "/start":
        peer.respond("307 Temporary Redirect", b"", ("Location: /next",))
    else:
        peer.respond(body=seen.body)


class Transport:
    """How a call travels to a fault server: its URL, and the config that routes it."""

    def __init__(self, name: str, ca: trustme.CA, directory: Path) -> None:
        self.name = name
        self.ca = ca
        self.bundle = write_ca(ca, directory)
        self.servers: list[Any] = []

    def serve(self, script: Callable[[Peer], None]) -> FaultServer:
        tls = tls_context(self.ca, "127.0.0.1") if self.name in {"https", "tls in tls"} else None
        server = FaultServer(script, tls=tls).start()
        self.servers.append(server)
        return server

    def config(self, **settings: Any) -> PoolConfig:
        proxies = {}
        if self.name == "http proxy":
            proxy = Proxy().start()
            self.servers.append(proxy)
            proxies = {"http": proxy.url}
        elif self.name == "tls in tls":
            proxy = Proxy(tls=tls_context(self.ca, "127.0.0.1")).start()
            self.servers.append(proxy)
            proxies = {"https": proxy.url}
        return PoolConfig(proxies=proxies, ca_bundle=self.bundle, **settings)

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop()


TRANSPORTS = ["http", "https", "http proxy", "tls in tls"]


@pytest.fixture(params=TRANSPORTS)
def transport(
    request: pytest.FixtureRequest, ca: trustme.CA, tmp_path: Path
) -> Iterator[Transport]:
    made = Transport(request.param, ca, tmp_path)
    yield made
    made.close()


CUT: dict[str, Any] = {"deadline": 1.0, "read_timeout": 30.0, "connect_timeout": 5.0, "retries": 0}


def test_a_cut_upload_is_never_replayed(transport: Transport) -> None:
    """A PUT cut by the deadline mid-upload ends with DeadlineExceeded; the upstream saw it once
    (the cut connection is not taken for a stale one and the 20 MB are not sent again)."""
    server = transport.serve(slow_upload)
    with wsgi_pool.client(transport.config(**CUT)) as http:
        assert http.get(f"{server.url}/first").text == "first"
        with pytest.raises(DeadlineExceeded):
            http.put(f"{server.url}/upload", data=b"u" * UPLOAD)
        assert reused(http) == 1  # the upload went on the kept connection
    assert paths(server) == ["/first", "/upload"]


def test_the_watchdog_cuts_every_drip_through_tls_in_tls(ca: trustme.CA, tmp_path: Path) -> None:
    """Through an https proxy, a head dripped a byte at a time is cut at the deadline, and
    again on the next call: a cut of TLS inside TLS does not kill the watchdog. (Plain http,
    TLS and an http proxy: tests/test_deadline.py.)"""
    transport = Transport("tls in tls", ca, tmp_path)
    try:
        _cut_twice(transport, transport.serve(answer_first_then(drip_head)))
    finally:
        transport.close()


def _cut_twice(transport: Transport, server: FaultServer) -> None:
    with wsgi_pool.client(transport.config(**CUT)) as http:
        for attempt in range(2):
            assert http.get(f"{server.url}/first/{attempt}").text == "first"
            with pytest.raises(DeadlineExceeded):
                http.get(f"{server.url}/drip/{attempt}")
        assert http.pools.watchdog.cuts == 2
    assert paths(server) == ["/first/0", "/drip/0", "/first/1", "/drip/1"]


CLOSING_HEADS = {
    "length, Connection: close": b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\nConnection: close\r\n\r\n",
    "chunked, Connection: close": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n32\r\n"
    ),
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 50\r\n\r\n",
    "length and chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n"
    ),
    "until the close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
}


@pytest.mark.parametrize("stream", [False, True], ids=["content", "stream"])
@pytest.mark.parametrize("head", list(CLOSING_HEADS))
def test_a_body_that_ends_its_connection_is_cut_at_the_deadline(
    transport: Transport, head: str, stream: bool
) -> None:
    """A response that will close its connection (http.client lets go of the socket for it)
    drips its body: the call ends at its deadline, as DeadlineExceeded, never as a body cut
    short that looks whole."""

    def script(peer: Peer) -> None:
        if peer.read_request():
            peer.send(CLOSING_HEADS[head])
            peer.drip(b"x" * 50, 0.2)

    server = transport.serve(script)
    with wsgi_pool.client(transport.config(**CUT)) as http:
        # Before the fix: a 200 after the whole 10 s drip (nothing cut), or a short body.
        with pytest.raises(DeadlineExceeded, match="reading the body"):
            http.get(f"{server.url}/drip", stream=stream).content  # noqa: B018
        assert http.pools.watchdog.cuts == 1


def dripped_tunnel(peer: Peer) -> None:
    """A proxy that answers CONNECT a byte every 0.2 s (16 s in all)."""
    if peer.read_request(body=False):
        peer.drip(b"HTTP/1.1 200 Connection established\r\nX-Slow: " + b"y" * 40 + b"\r\n\r\n", 0.2)


@pytest.mark.parametrize("proxy_tls", [False, True], ids=["http proxy", "https proxy"])
def test_a_proxy_tunnel_that_drips_is_cut_at_the_deadline(
    ca: trustme.CA, tmp_path: Path, proxy_tls: bool
) -> None:
    """Setting up the tunnel (CONNECT, and the TLS inside) is part of the call: the watchdog
    holds it to the deadline, where each read would otherwise get a new connect timeout."""
    tls = tls_context(ca, "127.0.0.1") if proxy_tls else None
    with FaultServer(dripped_tunnel, tls=tls) as proxy:
        config = PoolConfig(proxies={"https": proxy.url}, ca_bundle=write_ca(ca, tmp_path), **CUT)
        with wsgi_pool.client(config) as http:
            # Before the fix: the tunnel's answer arrived whole after 16 s, nothing cut.
            with pytest.raises(DeadlineExceeded):
                http.get("https://127.0.0.1:9/x")
            assert http.pools.watchdog.cuts == 1


def test_interim_answers_on_every_transport(transport: Transport) -> None:
    """After a first call, each call with a 103 before its answer gets its own answer."""
    server = transport.serve(answer_first_then(interim_then_final))
    with wsgi_pool.client(transport.config(**CUT)) as http:
        assert http.get(f"{server.url}/first").text == "first"
        assert [http.get(f"{server.url}/{n}").text for n in range(3)] == ["/0", "/1", "/2"]


def test_a_307_sends_the_file_body_again(transport: Transport) -> None:
    """A 307 of a file upload within the origin gets the whole body again, rewound."""
    server = transport.serve(answer_first_then(redirect_then_echo))
    with wsgi_pool.client(transport.config(**CUT)) as http:
        assert http.get(f"{server.url}/first").text == "first"
        response = http.post(f"{server.url}/start", data=io.BytesIO(b"x" * 5000))
    assert (response.status_code, len(response.content)) == (200, 5000)
    assert paths(server) == ["/first", "/start", "/next"]


# -- connecting under the deadline, with and without the egress policy -----------------------


@pytest.fixture
def black_holes() -> Iterator[tuple[list[str], int]]:
    """Four loopback addresses whose accept queues are full on one port (SYNs dropped)."""
    with full_backlog() as port:
        held: list[Any] = []
        addresses = [f"127.0.0.{n}" for n in range(2, 6)]
        try:
            for address in addresses:
                held.append(_full_backlog_on(address, port))
            yield addresses, port
        finally:
            for listener, fillers in held:
                for filler in fillers:
                    filler.close()
                listener.close()


def _full_backlog_on(address: str, port: int) -> tuple[socket.socket, list[socket.socket]]:
    listener = socket.socket()
    listener.bind((address, port))
    listener.listen(0)
    fillers: list[socket.socket] = []
    while True:
        filler = socket.socket()
        filler.settimeout(0.2)
        try:
            filler.connect((address, port))
        except TimeoutError:
            filler.close()
            return listener, fillers
        fillers.append(filler)
        assert len(fillers) < 64, "the accept queue never filled"


def connect_timeouts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Each connect urllib3 makes from now on: the address and the timeout it was given."""
    seen: list[tuple[str, float]] = []
    real = urllib3.util.connection.create_connection

    def recorded(address: tuple[str, int], timeout: Any = None, *args: Any, **kwargs: Any) -> Any:
        seen.append((address[0], timeout))
        return real(address, timeout, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", recorded)
    return seen


def _resolving(monkeypatch: pytest.MonkeyPatch, name: str, addresses: list[str], port: int) -> None:
    """``name`` resolves to ``addresses``, in that order (the machine's resolver is not asked)."""
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                for address in addresses
            ]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


EGRESS = [
    pytest.param({}, id="no egress policy"),
    pytest.param({"egress_allow": ("127.0.0.0/8",)}, id="egress policy"),
]


@pytest.mark.parametrize("egress", EGRESS)
def test_dead_addresses_fail_over_within_the_deadline(
    egress: dict[str, Any],
    black_holes: tuple[list[str], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four black-holed addresses, then a live one: the call reaches it within a 3 s deadline
    (each address gets a share of what is left, not the whole connect timeout)."""
    addresses, port = black_holes
    with Upstream("127.0.0.6", port) as live:
        _resolving(monkeypatch, "several.test", [*addresses, "127.0.0.6"], port)
        config = PoolConfig(connect_timeout=5.0, deadline=3.0, retries=0, **egress)
        timeouts = connect_timeouts(monkeypatch)
        with wsgi_pool.client(config) as http:
            assert http.get(f"http://several.test:{port}/x").json()["path"] == "/x"
        assert live.stats().requests_served == 1
    # All five tried, their connect timeouts together within the deadline (before: 5 s each).
    assert [address for address, _ in timeouts] == [*addresses, "127.0.0.6"]
    assert sum(seconds for _, seconds in timeouts) <= 3.0


@pytest.mark.parametrize("egress", EGRESS)
def test_a_live_first_address_is_used_and_the_rest_never_tried(
    egress: dict[str, Any],
    black_holes: tuple[list[str], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A live address ahead of dead ones: the call goes there, and its socket keeps the whole
    read timeout (the connect's share is not left on it)."""
    addresses, port = black_holes
    with Upstream("127.0.0.6", port) as live:
        _resolving(monkeypatch, "several.test", ["127.0.0.6", *addresses], port)
        config = PoolConfig(connect_timeout=5.0, read_timeout=2.0, deadline=3.0, **egress)
        with wsgi_pool.client(config) as http:
            # The first address's share is 3 s / 5 = 0.6 s; the answer takes 1 s.
            answer = http.get(f"http://several.test:{port}/slow?delay=1.0")
            assert answer.json()["path"] == "/slow?delay=1.0"
        assert live.stats().requests_served == 1


@pytest.mark.parametrize("egress", EGRESS)
def test_a_deadline_spent_on_one_address_tries_no_other(
    egress: dict[str, Any],
    black_holes: tuple[list[str], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deadline runs out while the first of two addresses is connecting: the call ends as a
    deadline, and the live second address is never tried."""
    addresses, port = black_holes
    with Upstream("127.0.0.6", port) as live:
        _resolving(monkeypatch, "several.test", [addresses[0], "127.0.0.6"], port)
        config = PoolConfig(connect_timeout=5.0, deadline=0.2, retries=0, **egress)
        with wsgi_pool.client(config) as http, pytest.raises(DeadlineExceeded):
            http.get(f"http://several.test:{port}/x")
        assert live.stats().requests_served == 0


@pytest.mark.parametrize("egress", EGRESS)
def test_a_name_whose_addresses_are_all_dead_ends_at_the_deadline(
    egress: dict[str, Any],
    black_holes: tuple[list[str], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four black-holed addresses and a 1 s deadline: the last address gets what the deadline
    leaves, not the whole 5 s connect timeout."""
    addresses, port = black_holes
    _resolving(monkeypatch, "dead.test", addresses, port)
    config = PoolConfig(connect_timeout=5.0, deadline=1.0, retries=0, **egress)
    timeouts = connect_timeouts(monkeypatch)
    with wsgi_pool.client(config) as http, pytest.raises(DeadlineExceeded, match="connecting"):
        http.get(f"http://dead.test:{port}/x")
    # Each address's connect timeout within what the deadline left (before: the last had 5 s).
    assert [address for address, _ in timeouts] == addresses
    assert sum(seconds for _, seconds in timeouts) <= 1.0


@pytest.mark.parametrize("egress", EGRESS)
def test_a_short_deadline_still_retries_a_connect_timeout(
    egress: dict[str, Any], black_holes: tuple[list[str], int]
) -> None:
    """A deadline below read_timeout: a connect timeout is retried, and named as one."""
    addresses, port = black_holes
    config = PoolConfig(
        connect_timeout=0.2, read_timeout=10.0, deadline=5.0, backoff_factor=0.01, **egress
    )
    with wsgi_pool.client(config) as http:
        with pytest.raises(UpstreamConnectTimeout):
            http.get(f"http://{addresses[0]}:{port}/x")
        assert http.pools.stats()[f"http://{addresses[0]}:{port}"].retries == 2


def test_no_connect_limit_is_requests_none(upstream: Upstream) -> None:
    """``timeout=(None, 0.1)``: no connect limit, a 0.1 s read timeout (requests' meaning)."""
    with (
        wsgi_pool.client(PoolConfig(retries=0)) as http,
        pytest.raises(wsgi_pool.UpstreamReadTimeout),
    ):
        http.get(f"{upstream.url}/slow?delay=0.5", timeout=(None, 0.1))


def test_threads_meeting_a_cut_never_share_an_answer(ca: trustme.CA, tmp_path: Path) -> None:
    """Eight threads on four kept connections, half of them cut: every answer is its call's."""
    transport = Transport("https", ca, tmp_path)
    try:

        def script(peer: Peer) -> None:
            while seen := peer.read_request():
                if "/cut/" in seen.path:
                    peer.hold()
                    return
                peer.respond(body=seen.path.encode())

        server = transport.serve(script)
        errors: list[BaseException] = []
        with wsgi_pool.client(transport.config(**CUT, pool_maxsize=4)) as http:

            def user(number: int) -> None:
                try:
                    for round_ in range(3):
                        path = f"/{'cut' if number % 2 else 'ok'}/{number}/{round_}"
                        try:
                            got = http.get(f"{server.url}{path}").text
                        except DeadlineExceeded:
                            continue
                        assert got == path
                except BaseException as exc:  # handed to the test thread
                    errors.append(exc)

            threads = [threading.Thread(target=user, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        assert not errors, errors
    finally:
        transport.close()
