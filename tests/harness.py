"""The fault harness: misbehaving upstreams scripted on raw sockets, and the check that a
scenario left nothing broken (a healthy call succeeds at once, every pool slot is back, no
descriptor is left open). The ``harness`` fixture is in ``conftest.py``."""

from __future__ import annotations

import time
import zlib
from typing import Any

import wsgi_pool
from tests.faults import FaultServer, Peer, Script, describe_descriptors, open_descriptors
from tests.support import wait_until
from wsgi_pool import Client, PoolConfig
from wsgi_pool.testing import Upstream

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
