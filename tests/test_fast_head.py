"""Fast piece ``_fast.head``: response heads read without the email parser, compared with http.client's own reading, byte for byte.

Each head is written to a real socket pair and read once by ``http.client.HTTPResponse`` and
once by ``wsgi_pool._fast.head.FastHead``; everything a caller or urllib3 reads of the result must
match, errors included.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from urllib3.exceptions import HeaderParsingError
from urllib3.util.response import assert_header_parsing

from wsgi_pool import _connection
from wsgi_pool._fast import head as _head


@contextlib.contextmanager
def _socket_with(data: bytes) -> Iterator[socket.socket]:
    reader, writer = socket.socketpair()
    with reader, writer:
        writer.sendall(data)
        writer.shutdown(socket.SHUT_WR)
        yield reader


def _outcome(cls: type[http.client.HTTPResponse], data: bytes, method: str) -> dict[str, Any]:
    with _socket_with(data) as sock:
        response = cls(sock, method=method)
        try:
            response.begin()
        except Exception as exc:  # the error is what is compared
            return {"error": (type(exc), exc.args)}
        body: object
        try:
            body = response.read()
        except Exception as exc:
            body = (type(exc), exc.args)
        msg = response.msg
        payload: Any = msg.get_payload()
        if isinstance(payload, list):  # parts the email parser found: compared by their headers
            payload = [(type(part), part.items()) for part in payload]
        try:
            assert_header_parsing(msg)
            parsing = None
        except HeaderParsingError as exc:
            parsing = str(exc)
        return {
            "fast": msg.policy is _head.VERBATIM,
            "status": response.status,
            "version": response.version,
            "reason": response.reason,
            "items": msg.items(),
            "cookies": msg.get_all("Set-Cookie"),
            "payload": payload,
            "defects": [type(defect) for defect in msg.defects],
            "parsing": parsing,
            "chunked": response.chunked,
            "length": response.length,
            "will_close": response.will_close,
            "body": body,
        }


def _same(data: bytes, method: str = "GET") -> dict[str, Any]:
    ours = _outcome(_head.FastHead, data, method)
    theirs = _outcome(http.client.HTTPResponse, data, method)
    fast = ours.pop("fast", False)
    theirs.pop("fast", None)
    assert ours == theirs, data
    return {**ours, "fast": fast}


HEADS = {
    "plain": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
    "bare newlines": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "spaces kept at the end": b"HTTP/1.1 200 OK\r\nX-A:  padded  \r\nContent-Length: 0\r\n\r\n",
    "no space after the colon": b"HTTP/1.1 200 OK\r\nX-A:b\r\nContent-Length: 0\r\n\r\n",
    "tab before the value": b"HTTP/1.1 200 OK\r\nX-A:\tb\r\nContent-Length: 0\r\n\r\n",
    "empty value": b"HTTP/1.1 200 OK\r\nX-A:\r\nContent-Length: 0\r\n\r\n",
    "two cookies": b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
    b"Content-Length: 0\r\n\r\n",
    "folded line": b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n",
    "a line that is no header": b"HTTP/1.1 200 OK\r\nX-A: 1\r\nnot a header\r\nX-B: 2\r\n"
    b"Content-Length: 0\r\n\r\n",
    "space before the colon": b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n",
    "empty name": b"HTTP/1.1 200 OK\r\n: 1\r\nContent-Length: 0\r\n\r\n",
    "a From line": b"HTTP/1.1 200 OK\r\nFrom nobody\r\nContent-Length: 0\r\n\r\n",
    "carriage return inside": b"HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\nContent-Length: 0\r\n\r\n",
    "latin-1 value": b"HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nContent-Length: 0\r\n\r\n",
    "latin-1 name": b"HTTP/1.1 200 OK\r\nX-\xe9: 1\r\nContent-Length: 0\r\n\r\n",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "chunked in capitals": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n",
    "chunked and a length": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 9\r\n\r\n0\r\n\r\n",
    "gzip transfer coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nrest",
    "empty transfer coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\nContent-Length: 0\r\n\r\n",
    "no length": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil close",
    "bad length": b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok",
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
    "length with spaces and a sign": b"HTTP/1.1 200 OK\r\nContent-Length:  +2 \r\n\r\nok",
    "length too short": b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok",
    "204": b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
    "304": b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
    "100 Continue first": b"HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "103 Early Hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
    "HTTP/1.0 keep-alive": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
    b"Content-Length: 2\r\n\r\nok",
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "keep-alive header": b"HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
    "HTTP/2 status line": b"HTTP/2 200 OK\r\n\r\n",
    "bad status": b"HTTP/1.1 abc OK\r\n\r\n",
    "no status line": b"",
    "no reason": b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    "reason with spaces": b"HTTP/1.1 404  Not  Found  \r\nContent-Length: 0\r\n\r\n",
    "no blank line": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n",
    "cut inside a line": b"HTTP/1.1 200 OK\r\nX-A: 1",
    "line too long": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 70_000 + b"\r\n\r\n",
    "too many headers": b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n",
    "multipart": b"HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=x\r\n"
    b"Content-Length: 0\r\n\r\n",
    "message": b"HTTP/1.1 200 OK\r\nContent-Type: message/rfc822\r\nContent-Length: 0\r\n\r\n",
    "two content types": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
    b"Content-Type: multipart/mixed\r\nContent-Length: 0\r\n\r\n",
    "content type in capitals": b"HTTP/1.1 200 OK\r\nContent-Type: MULTIPART/Mixed\r\n\r\n",
}


@pytest.mark.parametrize("data", HEADS.values(), ids=HEADS.keys())
def test_a_head_is_read_as_http_client_reads_it(data: bytes) -> None:
    _same(data)


def test_the_table_takes_both_paths_and_errors() -> None:
    fast = _head.parse([b"X-A: 1\r\n", b"\r\n"])
    parsed = _head.parse([b"X-A: 1\r\n", b" folded\r\n", b"\r\n"])
    assert fast.policy is _head.VERBATIM  # read without the email parser
    assert parsed.policy is not _head.VERBATIM
    assert fast.items() == [("X-A", "1")]
    assert parsed.items() == [("X-A", "1\r\n folded")]
    assert "error" in _same(HEADS["too many headers"])


def test_a_head_request_has_no_body() -> None:
    outcome = _same(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", method="HEAD")
    assert outcome["length"] == 0


def test_begin_twice_reads_nothing_more() -> None:
    with _socket_with(HEADS["plain"]) as sock:
        response = _head.FastHead(sock)
        response.begin()
        response.begin()
        assert response.read() == b"ok"


def test_with_debugging_on_http_client_reads_and_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _socket_with(HEADS["plain"]) as sock:
        response = _head.FastHead(sock, debuglevel=1)
        response.begin()
        assert response.getheader("content-type") == "text/plain"
    assert "header: Content-Type: text/plain" in capsys.readouterr().out


def test_random_heads_are_read_as_http_client_reads_them() -> None:
    rng = random.Random(20261121)  # noqa: S311  (reproducible test data, not security)
    names = ["X-A", "Set-Cookie", "Content-Length", "Transfer-Encoding", "Connection", "X\xe9"]
    names += ["Content-Type", "Keep-Alive"]
    pieces = [":", " ", "\t", "\r", "From ", "chunked", "close", "7", "-1", "a", "\xff", ""]
    pieces += ["multipart/x", "message/y", "text/html; charset=x", ";", "/"]
    separators = [":", ": ", " :", ""]
    paths = {True: 0, False: 0}
    for _ in range(1500):
        lines = []
        for _ in range(rng.randrange(6)):
            name = rng.choice([*names, "", rng.choice(pieces) + rng.choice(names)])
            value = "".join(rng.choice(pieces) for _ in range(rng.randrange(4)))
            end = rng.choice(["\r\n", "\n"])
            lines.append(f"{name}{rng.choice(separators)}{value}{end}")
        head = "".join(["HTTP/1.1 200 OK\r\n", *lines, "\r\n"]).encode("latin-1")
        outcome = _same(head + b"0123456789")
        if "error" not in outcome:
            paths[outcome["fast"]] += 1
    assert min(paths.values()) > 100, paths  # both ways of reading a block were compared


def test_connections_read_heads_with_it() -> None:
    assert _connection.Connection.response_class is _connection.Response
    assert _connection.TLSConnection.response_class is _connection.Response
    assert issubclass(_connection.Response, _head.FastHead)
