"""One answer per call: interim answers are read past, and a connection whose framing is in
doubt is closed rather than handed to the next call.

A ``103 Early Hints`` or ``102 Processing`` before the final answer must never be returned
in its place: the final answer would stay on the connection and the next call (another
user's) would get it. Each case sends the interim answer on a kept connection, then checks
that this call got its own final answer and the next call on the same connection got its own.
"""

from __future__ import annotations

import functools
import http.client
from typing import Any

import pytest

import wsgi_pool
from tests.faults import FaultServer, Peer
from tests.harness import Harness

INTERIM = {
    "103": b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
    "102": b"HTTP/1.1 102 Processing\r\n\r\n",
    "100": b"HTTP/1.1 100 Continue\r\n\r\n",
    "two": b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
}


def interim_then_final(interim: bytes) -> Any:
    """Every answer: ``interim``, then a 200 whose body names the request's path."""

    def script(peer: Peer) -> None:
        while seen := peer.read_request():
            peer.send(interim)
            peer.respond(body=seen.path.encode())

    return script


@pytest.mark.parametrize("interim", list(INTERIM), ids=list(INTERIM))
def test_interim_answers_are_read_past(harness: Harness, interim: str) -> None:
    """Each call gets its own final answer, on one kept connection, call after call."""
    server = harness.serve(interim_then_final(INTERIM[interim]))
    http = harness.client()
    for number in range(3):
        response = http.get(f"{server.url}/call/{number}")
        assert (response.status_code, response.text) == (200, f"/call/{number}")
    assert server.connections == 1
    harness.assert_intact(http)


def test_interim_answers_are_read_past_on_the_standard_path_too(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With http.client's ``begin`` wrapped by a tool (the fast head reader not taken), the
    same holds: reading past interim answers is the pools' rule, not a speed-up."""
    real = http.client.HTTPResponse.begin

    @functools.wraps(real)
    def traced(self: http.client.HTTPResponse) -> None:
        real(self)

    monkeypatch.setattr(http.client.HTTPResponse, "begin", traced)
    server = harness.serve(interim_then_final(INTERIM["103"]))
    http_client = harness.client()
    assert [http_client.get(f"{server.url}/{n}").text for n in range(3)] == ["/0", "/1", "/2"]
    harness.assert_intact(http_client)


FRAMINGS = {
    "101 switching": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
    "length and chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    ),
    # RFC 9110, 8.6: a 204 never has a Content-Length; the bytes after it (here a whole
    # answer) would be the next call's if the connection were kept.
    "204 with a length": (
        b"HTTP/1.1 204 No Content\r\nContent-Length: 44\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"
    ),
    # int() reads "+4" as 4, but a length is digits only.
    "a signed length": b"HTTP/1.1 200 OK\r\nContent-Length: +4\r\n\r\nokokEVIL",
}


def framed(head: bytes) -> Any:
    def script(peer: Peer) -> None:
        while peer.read_request():
            peer.send(head)

    return script


@pytest.mark.parametrize("framing", list(FRAMINGS), ids=list(FRAMINGS))
def test_a_doubtful_framing_closes_the_connection(harness: Harness, framing: str) -> None:
    """A 101 to a plain request, both a length and chunked, a 204 with a length, a length that
    is not digits: the connection is not reused, so no call gets bytes sent after an answer."""
    server = harness.serve(framed(FRAMINGS[framing]))
    http = harness.client(retries=0)
    first = http.get(f"{server.url}/a")
    second = http.get(f"{server.url}/b")
    assert (first.status_code, first.content) == (second.status_code, second.content)
    assert b"EVIL" not in first.content + second.content
    assert server.connections == 2  # each call on a connection of its own
    assert http.pools.stats()[server.url].reused == 0
    harness.assert_intact(http)


def gzip_encoded_until_close(peer: Peer) -> None:
    """``Transfer-Encoding: gzip`` (no chunked last) with a Content-Length that lies: RFC 9112
    says read until the connection closes; the length must not frame the body."""
    if peer.read_request():
        import zlib  # noqa: PLC0415

        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        body = packer.compress(b"x" * 100) + packer.flush()
        peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n" + body)


def test_a_transfer_coding_without_chunked_is_read_to_the_close(harness: Harness) -> None:
    """The whole body arrives (not three bytes of it), and the connection is not kept."""
    server = harness.serve(gzip_encoded_until_close)
    http = harness.client(retries=0)
    response = http.get(f"{server.url}/x", stream=True)
    raw = response.raw.read()  # undecoded: the bytes as framed
    assert len(raw) > 3
    response.close()
    assert http.pools.stats()[server.url].idle == 0
    harness.assert_intact(http)


def test_the_next_user_never_gets_an_earlier_users_answer() -> None:
    """Many calls, each after a 103, from one client: every answer is the call's own."""
    with FaultServer(interim_then_final(INTERIM["103"])) as server, wsgi_pool.client() as http:
        got = [http.get(f"{server.url}/user/{n}").text for n in range(20)]
    assert got == [f"/user/{n}" for n in range(20)]
