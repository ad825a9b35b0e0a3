"""Fast piece ``_fast.whole``: an answer read whole is the answer urllib3 and requests would give.

Each case sends the same answer, byte for byte, to a call that may read it whole and to one
that may not (a tool's wrapper on urllib3's ``getresponse``, which the whole read skips), on a
kept connection, and compares everything a caller can see: requests' fields, urllib3's raw
response, http.client's message, the errors, and what the next call on the connection gets.
A table says which answers are read whole; every other one is read the standard way from the
bytes already received. Random header blocks compare the parser with http.client's.
"""

from __future__ import annotations

import copy
import functools
import http.client
import io
import pickle
import random
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
import requests
import urllib3.connection
from requests.structures import CaseInsensitiveDict
from urllib3._collections import HTTPHeaderDict
from urllib3.response import HTTPResponse

import wsgi_pool
from tests.faults import Peer
from tests.harness import Harness, close_reused_after_reading
from tests.support import tls_context
from wsgi_pool import PoolConfig
from wsgi_pool._fast import whole
from wsgi_pool._fast.headers import QuickHeaders, stored
from wsgi_pool._fast.whole import WholeResponse, plain_answer
from wsgi_pool.testing import Upstream


def answer(status: str, *headers: str, body: bytes = b"", length: bool = True) -> bytes:
    """An answer's bytes: status line, headers (a Content-Length of the body unless told not)."""
    lines = [f"HTTP/1.1 {status}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


JSON = b'{"items": [1, 2, 3], "name": "w\\u00e9"}'

# Answers read whole: (answer, the connection stays open after it).
WHOLE: dict[str, tuple[bytes, bool]] = {
    "json": (answer("200 OK", "Content-Type: application/json", body=JSON), True),
    "text with charset": (
        answer("404 Not Found", "Content-Type: text/plain; charset=latin-1", body=b"nope \xe9"),
        True,
    ),
    "repeated header": (answer("200 OK", "X-A: 1", "Server: s", "x-a: 2", body=b"r"), True),
    "padding kept as http.client keeps it": (
        answer("200 OK", "X-Pad: \t  v  ", "X-Empty:", "X-Tab:\tt", body=b"p"),
        True,
    ),
    "empty body": (answer("200 OK", body=b""), True),
    "reason with spaces": (answer("418 I'm a teapot", body=b"t"), True),
    "no reason": (answer("200", body=b"n"), True),
    "leading zeros": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0003\r\n\r\nabc",
        True,
    ),
    "redirect": (answer("302 Found", "Location: /elsewhere", body=b"moved"), True),
    "server error": (answer("500 Internal Server Error", body=b"boom"), True),
    "keep-alive hint": (answer("200 OK", "Keep-Alive: timeout=5, max=100", body=b"k"), True),
    "connection close": (answer("200 OK", "Connection: close", body=b"c"), False),
    "bytes after the body": (answer("200 OK", body=b"abc") + b"XYZ", False),
}

# Answers read whole or not, as their bytes arrive (only what is there already is read).
EITHER: dict[str, tuple[bytes, bool]] = {
    "body beyond the first read": (answer("200 OK", body=b"x" * 200_000), True),
}

# Answers read the standard way, from the bytes received and the socket.
STANDARD: dict[str, tuple[bytes, bool]] = {
    "chunked": (
        answer("200 OK", "Transfer-Encoding: chunked", length=False) + b"3\r\nabc\r\n0\r\n\r\n",
        True,
    ),
    "gzip": (
        answer(
            "200 OK",
            "Content-Encoding: gzip",
            body=b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff\xcbH\xcd\xc9\xc9\x07\x00\x86\xa6\x106\x05\x00\x00\x00",
        ),
        True,
    ),
    "sets a cookie": (answer("200 OK", "Set-Cookie: s=1; Path=/", body=b"c"), True),
    "HTTP/1.0": (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    "no length": (answer("200 OK", length=False) + b"until close", False),
    "204": (b"HTTP/1.1 204 No Content\r\n\r\n", True),
    "304": (b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", True),
    "early hints first": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + answer("200 OK", body=b"final"),
        True,
    ),
    "folded header": (
        b"HTTP/1.1 200 OK\r\nX-F: a\r\n b\r\nContent-Length: 1\r\n\r\nf",
        True,
    ),
    "bare LF": (b"HTTP/1.1 200 OK\nContent-Length: 1\n\nl", True),
    # A bare CR or LF inside a value ends the line for the email parser: the line after it
    # (here a Connection: close) is a header of its own.
    "bare CR in a value": (
        b"HTTP/1.1 200 OK\r\nX-A: a\rConnection: close\r\nContent-Length: 1\r\n\r\nc",
        False,
    ),
    "bare LF in a value": (
        b"HTTP/1.1 200 OK\r\nX-A: a\nConnection: close\r\nContent-Length: 1\r\n\r\nl",
        False,
    ),
    "two equal lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nd",
        True,
    ),
    "two spaces before the reason": (answer("200  OK", body=b"s"), True),
    "a space in a name": (answer("200 OK", "Bad Name: x", body=b"b"), True),
    "body over a mebibyte": (answer("200 OK", body=b"x" * (whole.MAX_WHOLE + 1)), True),
}


def canned(answers: dict[str, tuple[bytes, bool]]) -> Any:
    """Every request to ``/case/<name>`` gets that answer (then the connection closes if the
    answer is one that ends it); any other path a plain answer naming it."""

    def script(peer: Peer) -> None:
        while seen := peer.read_request():
            name = unquote(seen.path.removeprefix("/case/"))
            if name in answers:
                data, kept = answers[name]
                peer.send(data)
                if not kept:
                    return
            else:
                peer.respond(body=seen.path.encode())

    return script


def _standard_only() -> Any:
    """A tool's wrapper on urllib3's getresponse: the whole read is not taken under it."""
    real = urllib3.connection.HTTPConnection.getresponse

    @functools.wraps(real)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        return real(self, *args, **kwargs)

    return wrapped


def _view(response: requests.Response) -> dict[str, Any]:
    """Everything a caller can see of a response (its body read)."""
    raw = response.raw
    original = raw._original_response
    return {
        "status": response.status_code,
        "reason": response.reason,
        "url": response.url,
        "encoding": response.encoding,
        "headers": list(response.headers.items()),
        "content": response.content,
        "text": response.text,
        "ok": response.ok,
        "is_redirect": response.is_redirect,
        "links": response.links,
        "cookies": dict(response.cookies),
        "history": [(earlier.status_code, earlier.url) for earlier in response.history],
        "elapsed": response.elapsed.total_seconds() > 0,
        "raw is urllib3's": isinstance(raw, HTTPResponse),
        "raw.status": raw.status,
        "raw.reason": raw.reason,
        "raw.version": (raw.version, raw.version_string),
        "raw.headers": list(raw.headers.items()),
        "raw.url": raw.url,
        "raw.retries": repr(raw.retries),
        "raw.connection": raw.connection,
        "raw.tell": raw.tell(),
        "raw.length_remaining": raw.length_remaining,
        "raw.chunked": raw.chunked,
        "raw.read": raw.read(),
        "raw.data": raw.data,
        "raw.closed": raw.closed,
        "raw.msg": raw.msg,
        "original": (original.status, original.reason, original.version),
        "original.msg": list(original.msg.items()),
        "original.closed": original.isclosed(),
    }


def _outcome(http: wsgi_pool.Client, url: str, **kwargs: Any) -> tuple[Any, str, type[Any]]:
    """The call's view (or its error's type and message), what the next call on the
    connection got, and the class of urllib3's response (None: an error)."""
    kind: type[Any] = type(None)
    try:
        response = http.request(kwargs.pop("method", "GET"), url, **kwargs)
        kind = type(response.raw)
        result: Any = _view(response)
    except Exception as exc:  # the error is what is compared
        result = (type(exc).__name__, str(exc).replace(url, "URL"))
    after = http.get(url.rsplit("/case/", 1)[0] + "/after").text
    return result, after, kind


def _both_ways(
    harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
    answers: dict[str, tuple[bytes, bool]],
    name: str,
    settings: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[tuple[Any, str], tuple[Any, str], type[Any]]:
    """The same call on a kept connection, read whole where allowed and the standard way;
    each one's view and next answer, and the class of the first one's raw response."""
    server = harness.serve(canned(answers))
    outcomes = []
    for standard in (False, True):
        http = harness.client(**(settings or {}))
        if standard:
            monkeypatch.setattr(urllib3.connection.HTTPConnection, "getresponse", _standard_only())
        http.get(f"{server.url}/warm")  # a kept connection: the whole read is for those
        outcomes.append(_outcome(http, f"{server.url}/case/{name}", **kwargs))
        monkeypatch.undo()
    (fast, fast_after, kind), (standard_view, standard_after, standard_kind) = outcomes
    assert standard_kind is not WholeResponse  # the wrapper is respected
    return (fast, fast_after), (standard_view, standard_after), kind


@pytest.mark.parametrize("name", list(WHOLE), ids=list(WHOLE))
def test_plain_answers_are_read_whole_as_urllib3_reads_them(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A plain answer read whole gives the caller exactly what the standard way gives."""
    fast, standard, kind = _both_ways(harness, monkeypatch, WHOLE, name)
    assert kind is WholeResponse
    assert fast == standard
    assert fast[1] == "/after"  # the next call on the connection got its own answer
    harness.assert_intact(harness.clients[0])


@pytest.mark.parametrize("name", list(EITHER), ids=list(EITHER))
def test_answers_arriving_in_parts_are_the_same_either_way(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """An answer whose body comes in several reads: what is there is read, the standard
    reader reads the rest; the caller sees the same."""
    fast, standard, _ = _both_ways(harness, monkeypatch, EITHER, name)
    assert fast == standard
    assert fast[1] == "/after"


@pytest.mark.parametrize("name", list(STANDARD), ids=list(STANDARD))
def test_other_answers_are_read_the_standard_way(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Any other answer is read by http.client and urllib3 from the bytes received: the same
    response (or error), and the next call gets its own answer."""
    fast, standard, kind = _both_ways(harness, monkeypatch, STANDARD, name)
    assert kind is not WholeResponse
    assert fast == standard
    assert fast[1] == "/after"
    harness.assert_intact(harness.clients[0])


def test_a_head_request_is_read_the_standard_way(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer to HEAD has no body whatever its length says: http.client knows it."""
    answers = {"head": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", True)}
    fast, standard, kind = _both_ways(harness, monkeypatch, answers, "head", method="HEAD")
    assert kind is not WholeResponse
    assert fast == standard
    assert fast[1] == "/after"


def test_a_body_over_the_cap_is_refused_unread_either_way(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A declared length over ``max_response_bytes`` is never read whole: the cap refuses it
    before a byte of the body is read, either way."""
    answers = {"big": (answer("200 OK", body=b"x" * 100), True)}
    fast, standard, _ = _both_ways(
        harness, monkeypatch, answers, "big", settings={"max_response_bytes": 50}
    )
    assert fast == standard
    assert fast[0][0] == "ResponseTooLarge"


def test_more_than_a_hundred_headers_fail_as_http_client_fails(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head of more than 100 header lines is read the standard way, and refused there."""
    many = tuple(f"X-{number}: {number}" for number in range(101))
    answers = {"many": (answer("200 OK", *many, body=b"m"), False)}
    fast, standard, _ = _both_ways(harness, monkeypatch, answers, "many")
    assert fast == standard
    assert fast[0][0] == "UpstreamProtocolError"


@pytest.mark.parametrize(
    ("how", "kwargs"),
    [
        pytest.param("stream", {"stream": True}, id="streamed"),
        pytest.param("hook", {"hooks": {"response": [lambda r, **kw: None]}}, id="response hook"),
    ],
)
def test_a_body_the_caller_reads_later_is_never_read_whole(
    harness: Harness, how: str, kwargs: dict[str, Any]
) -> None:
    """A streamed body, or one a response hook sees first, stays on the socket until read."""
    server = harness.serve(canned(WHOLE))
    http = harness.client()
    http.get(f"{server.url}/warm")
    response = http.get(f"{server.url}/case/json", **kwargs)
    assert type(response.raw) is not WholeResponse
    assert response.content == JSON
    harness.assert_intact(http)


def test_answers_over_tls_are_read_whole(harness: Harness, ca: Any, ca_file: str) -> None:
    """Over TLS, an answer sent in one piece is read whole from the TLS socket; one whose body
    comes later (http.server writes the head first) is read the standard way, the same."""
    server = harness.serve(canned(WHOLE), tls=tls_context(ca, "127.0.0.1"))
    http = harness.client(ca_bundle=ca_file)
    http.get(f"{server.url}/warm")
    response = http.get(f"{server.url}/case/json")
    assert type(response.raw) is WholeResponse
    assert response.content == JSON
    harness.assert_intact(http)


def test_a_body_not_there_yet_is_left_to_the_standard_reader(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body sent after its head (http.server, gunicorn) is not waited for: the call's head
    is in (its ``elapsed`` ends there, as requests' does), and the standard reader reads the
    rest. Here the server sends the body only once the client has looked for it."""
    looked = threading.Event()
    real = whole._received

    def received(sock: Any) -> bool:
        found = real(sock)
        looked.set()
        return found

    def head_then_body(peer: Peer) -> None:
        while seen := peer.read_request():
            body = seen.path.encode()
            peer.send(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            if seen.path.startswith("/late"):
                looked.wait(10)
            peer.send(body)

    server = harness.serve(head_then_body)
    http = harness.client()
    http.get(f"{server.url}/warm")
    monkeypatch.setattr(whole, "_received", received)
    response = http.get(f"{server.url}/late")
    assert looked.is_set()
    assert type(response.raw) is not WholeResponse
    assert response.text == "/late"
    harness.assert_intact(http)


@pytest.mark.parametrize(
    ("read_timeout", "deadline", "error"),
    [
        pytest.param(0.3, None, "UpstreamReadTimeout", id="the read timeout"),
        pytest.param(5.0, 0.3, "DeadlineExceeded", id="the deadline (the watchdog's cut)"),
    ],
)
def test_a_late_answer_times_out_as_on_the_standard_path(
    harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
    read_timeout: float,
    deadline: float | None,
    error: str,
) -> None:
    """No answer within the read timeout, or the call's deadline: the same error either way,
    the connection dropped."""

    def late(peer: Peer) -> None:
        while seen := peer.read_request():
            if seen.path.startswith("/case/"):
                peer.hold()
                return
            peer.respond(body=seen.path.encode())

    results = []
    for standard in (False, True):
        server = harness.serve(late)
        http = harness.client(read_timeout=read_timeout)
        if standard:
            monkeypatch.setattr(urllib3.connection.HTTPConnection, "getresponse", _standard_only())
        http.get(f"{server.url}/warm")
        with pytest.raises(wsgi_pool.UpstreamError) as caught:
            http.request("GET", f"{server.url}/case/late", deadline=deadline)
        results.append((type(caught.value).__name__, str(caught.value).replace(server.url, "U")))
        monkeypatch.undo()
    assert results[0] == results[1]
    assert results[0][0] == error
    harness.assert_intact(harness.clients[0])


def _cut(then: str, head_read: threading.Event) -> Any:
    """A head and the start of a 100-byte body, then (once the client has read the head) a
    stall, a close or a reset."""

    def script(peer: Peer) -> None:
        while seen := peer.read_request():
            if not seen.path.startswith("/case/"):
                peer.respond(body=seen.path.encode())
                continue
            peer.send(
                answer("200 OK", length=False).replace(b"\r\n\r\n", b"\r\n")
                + b"Content-Length: 100\r\n\r\n"
                + b"x" * 10
            )
            head_read.wait(10)
            if then == "stall":
                peer.hold()
            elif then == "reset":
                peer.reset()
            return

    return script


def _counted(function: Any, calls: list[int]) -> Any:
    @functools.wraps(function)
    def counted(*args: Any) -> Any:
        calls.append(1)
        return function(*args)

    return counted


@pytest.mark.parametrize("then", ["stall", "close", "reset"])
def test_a_body_cut_short_fails_as_on_the_standard_path(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    """The body stops coming after the head (its start received in the same read): the call
    fails as on the standard path, with the same error (that the failure is met without a
    second wait is the next test's)."""
    from wsgi_pool._connection import Response  # noqa: PLC0415

    results = []
    real_begin = Response.begin
    for standard in (False, True):
        head_read = threading.Event()

        def begin(self: Any, head_read: threading.Event = head_read) -> None:
            real_begin(self)
            head_read.set()  # the head is read (from the bytes handed over, or the socket)

        server = harness.serve(_cut(then, head_read))
        http = harness.client(read_timeout=0.5)
        if standard:
            monkeypatch.setattr(urllib3.connection.HTTPConnection, "getresponse", _standard_only())
        http.get(f"{server.url}/warm")
        rests: list[int] = []
        monkeypatch.setattr(whole, "_rest", _counted(whole._rest, rests))
        monkeypatch.setattr(Response, "begin", begin)
        with pytest.raises(wsgi_pool.UpstreamError) as caught:
            http.get(f"{server.url}/case/cut")
        assert rests == ([] if standard else [1])  # the whole read met the cut, not the standard
        results.append((type(caught.value).__name__, str(caught.value).replace(server.url, "U")))
        monkeypatch.undo()
    assert results[0] == results[1]


# -- the parser against http.client's, on random heads ---------------------------------------


class _Replay:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.data)


def _by_http_client(data: bytes) -> tuple[int, str, list[tuple[str, str]], bool]:
    response = http.client.HTTPResponse(_Replay(data), method="GET")  # type: ignore[arg-type]
    response.begin()
    return response.status, response.reason, response.msg.items(), bool(response.will_close)


def _random_head(rng: random.Random) -> bytes:
    names = ["Content-Type", "X-A", "x-a", "Server", "ETag", "Vary", "Connection", "Age"]
    alphabet = "aZ09 \t;=,/:\"'()é!~"
    lines = []
    for _ in range(rng.randint(0, 8)):
        name = rng.choice(names)
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        lines.append(f"{name}:{rng.choice(['', ' ', '  ', chr(9)])}{value}")
    body = b"b" * rng.randint(0, 20)
    lines.append(f"Content-Length: {len(body)}")
    rng.shuffle(lines)
    status = rng.choice(["200 OK", "201 Created", "404 Not Found", "503 Busy now", "299"])
    return ("\r\n".join([f"HTTP/1.1 {status}", *lines]) + "\r\n\r\n").encode("latin-1") + body


def test_random_heads_parse_as_http_client_and_urllib3_parse_them() -> None:
    """For 3,000 random plain heads: status, reason, header pairs (and requests' and urllib3's
    views of them), the closing and the body are http.client's and urllib3's."""
    rng = random.Random(17)  # noqa: S311  (reproducible test data, not security)
    for _ in range(3_000):
        data = _random_head(rng)
        found = plain_answer(data, "GET", 1 << 20)
        assert isinstance(found, whole._Answer), data
        status, reason, items, closes = _by_http_client(data)
        assert (found.status, found.reason, found.close) == (status, reason, closes), data
        assert found.pairs == items, data
        merged = HTTPHeaderDict(items)
        assert list(found.headers.items()) == list(CaseInsensitiveDict(merged).items()), data
        assert list(HTTPHeaderDict(found.pairs).items()) == list(merged.items()), data
        assert found.body == data.partition(b"\r\n\r\n")[2]


def test_quick_headers_answer_as_requests_headers() -> None:
    """``in`` and ``get`` answer as requests' CaseInsensitiveDict does, absent names included."""
    pairs = [("Content-Type", "a/b"), ("X-Empty", ""), ("location", "/x")]
    quick, theirs = QuickHeaders(pairs), CaseInsensitiveDict(pairs)
    for name in ["content-type", "CONTENT-TYPE", "x-empty", "Location", "absent", ""]:
        assert (name in quick) == (name in theirs)
        assert quick.get(name) == theirs.get(name)
        assert quick.get(name, "d") == theirs.get(name, "d")
    others: list[Any] = [1, None]
    for other in others:
        with pytest.raises(AttributeError):
            other in theirs  # noqa: B015  (what requests raises for a name that is no str)
        with pytest.raises(AttributeError):
            other in quick  # noqa: B015


def test_headers_on_a_plain_store_behave_as_requests_headers() -> None:
    """Headers made from a store (a plain dict, where requests keeps an OrderedDict) give the
    same answers as requests' own through every change and copy."""
    pairs = [("Content-Type", "a/b"), ("X-Two", "2"), ("location", "/x")]
    quick = stored({name.lower(): (name, value) for name, value in pairs})
    theirs: CaseInsensitiveDict[str] = CaseInsensitiveDict(pairs)
    for headers in (quick, theirs):
        headers["x-two"] = "3"  # replaced: the new spelling, the old place
        headers["New"] = "n"
        del headers["CONTENT-TYPE"]
    assert list(quick) == list(theirs) == ["x-two", "location", "New"]
    assert list(quick.items()) == list(theirs.items())
    assert list(quick.lower_items()) == list(theirs.lower_items())
    assert quick == theirs
    assert (repr(quick), len(quick)) == (repr(theirs), len(theirs))
    pickled = pickle.loads(pickle.dumps(quick))  # noqa: S301  (its own bytes)
    for made in (quick.copy(), copy.deepcopy(quick), pickled):
        assert made == theirs
        assert list(made) == list(theirs)
    quick.copy()["Other"] = "o"
    assert "Other" not in quick


@pytest.fixture
def handed_empty() -> Iterator[None]:
    yield
    assert not whole.handed  # every handed-over read was taken


def test_nothing_handed_over_is_left_behind(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, handed_empty: None
) -> None:
    for name in ("chunked", "early hints first", "body over a mebibyte"):
        _both_ways(harness, monkeypatch, STANDARD, name)


def test_urllib3s_view_of_an_answer_read_whole_can_be_replaced(harness: Harness) -> None:
    """The parts of urllib3's response made on first use can be set, as urllib3's own can."""
    server = harness.serve(canned(WHOLE))
    with harness.client() as http:
        http.get(f"{server.url}/warm")
        raw = http.get(f"{server.url}/case/json").raw
        assert type(raw) is WholeResponse
        assert raw.headers["Content-Type"] == "application/json"
        raw.headers = HTTPHeaderDict({"X-Set": "1"})
        assert dict(raw.headers) == {"X-Set": "1"}
        original = raw._original_response
        assert original.status == 200
        raw._original_response = None  # type: ignore[assignment]  # as a caller may set it
        assert vars(raw)["_wp_original"] is None
        buffer = raw._decoded_buffer
        assert len(buffer) == 0
        raw._decoded_buffer = buffer
        assert raw._decoded_buffer is buffer


def test_a_request_http_client_prints_is_read_the_standard_way(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With http.client's debug printing on, http.client writes and reads as it prints."""
    with wsgi_pool.client() as client:
        client.get(f"{upstream.url}/warm")
        monkeypatch.setattr(http.client.HTTPConnection, "debuglevel", 1)
        response = client.get(f"{upstream.url}/printed")
        assert type(response.raw) is not WholeResponse
        assert response.json()["path"] == "/printed"
    printed = capsys.readouterr().out
    assert "send: b'GET /printed HTTP/1.1" in printed
    assert "reply: 'HTTP/1.0 200 OK" in printed or "reply: 'HTTP/1.1 200 OK" in printed


def _reset_second(peer: Peer) -> None:
    """The first connection answers one request, reads the second and resets (an RST)."""
    while peer.read_request():
        if peer.index == 0 and peer.handled == 2:
            peer.reset()
            return
        peer.respond()


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(close_reused_after_reading, id="closed: the read finds its end"),
        pytest.param(_reset_second, id="reset: the read meets the reset"),
    ],
)
def test_a_kept_connection_lost_before_the_answer_is_replayed(
    harness: Harness, script: Any
) -> None:
    """The server closed or reset the kept connection after reading the request: the
    standard way names the failure, and the safe request is replayed once on a new one."""
    server = harness.serve(script)
    http = harness.client()
    assert http.get(f"{server.url}/1").text == "ok"
    assert http.get(f"{server.url}/2").text == "ok"
    assert server.connections == 2
    assert http.pools.stats()[server.url].replays == 1
    harness.assert_intact(http)


@pytest.mark.parametrize(
    ("error", "read"),
    [
        pytest.param(BrokenPipeError(32, "Broken pipe"), True, id="broken pipe: read on"),
        pytest.param(ConnectionResetError(104, "reset"), True, id="reset: read on"),
        pytest.param(PermissionError(13, "denied"), False, id="any other: raised"),
    ],
)
def test_a_failed_send_is_handled_as_urllib3_handles_it(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, error: OSError, read: bool
) -> None:
    """As urllib3's ``_make_request``: a broken pipe or a reset while sending still reads the
    answer (the server may have answered and closed); any other error fails the try."""
    from wsgi_pool._fast.request import OneSend  # noqa: PLC0415

    real = OneSend.request

    def failing(self: Any, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)  # the request went out; then the send reports a failure
        raise error

    with wsgi_pool.client(PoolConfig(retries=0)) as http:
        http.get(f"{upstream.url}/warm")
        monkeypatch.setattr(OneSend, "request", failing)
        if read:
            assert http.get(f"{upstream.url}/after-failure").json()["path"] == "/after-failure"
        else:
            with pytest.raises(requests.exceptions.ConnectionError):
                http.get(f"{upstream.url}/after-failure")


def test_bytes_handed_over_for_another_socket_are_left_for_it() -> None:
    """A response of one socket never takes what was received from another."""
    mine, theirs = object(), object()
    reader = io.BytesIO(b"")
    whole.handed[theirs] = (b"HTTP/1.1 200 OK\r\n", None)
    try:
        assert whole.taken_over(mine, reader) is reader
        assert theirs in whole.handed
    finally:
        whole.handed.pop(theirs, None)


def test_only_the_first_connection_header_counts(harness: Harness) -> None:
    """As http.client: an answer whose first Connection header keeps the connection (a later
    one saying close) keeps it."""
    answers = {
        "two": (answer("200 OK", "Connection: keep-alive", "Connection: close", body=b"t"), True)
    }
    server = harness.serve(canned(answers))
    http = harness.client()
    http.get(f"{server.url}/warm")
    response = http.get(f"{server.url}/case/two")
    assert type(response.raw) is WholeResponse
    assert http.get(f"{server.url}/after").text == "/after"
    assert server.connections == 1
    harness.assert_intact(http)


def test_urllib3_logs_an_answer_read_whole_as_its_own(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """urllib3's debug line for each answer is written for one read whole too, the same."""
    server = harness.serve(canned(WHOLE))
    with harness.client() as client:
        client.get(f"{server.url}/warm")
        with caplog.at_level("DEBUG", logger="urllib3.connectionpool"):
            response = client.get(f"{server.url}/case/json")
        assert type(response.raw) is WholeResponse
    port = server.url.rsplit(":", 1)[1]
    expected = f'http://127.0.0.1:{port} "GET /case/json HTTP/1.1" 200 {len(JSON)}'
    assert expected in caplog.messages


@pytest.mark.parametrize(
    ("size", "timeout"),
    [
        pytest.param(10, 4.0, id="a small body: the read timeout"),
        pytest.param(whole.SMALL_BODY + 1, 0.5, id="a large body: urllib3's connect timeout"),
    ],
)
def test_the_timeout_a_request_is_sent_within(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, size: int, timeout: float
) -> None:
    """On a kept connection a small request goes out within the read timeout (the socket's
    timeout is set once for send and read); a larger body within urllib3's connect timeout, as
    the standard path sends every one."""
    from wsgi_pool._fast.request import OneSend  # noqa: PLC0415

    sent_within: list[float] = []
    real = OneSend.request

    def request(self: Any, *args: Any, **kwargs: Any) -> None:
        sent_within.append(self.timeout)
        real(self, *args, **kwargs)

    server = harness.serve(canned({}))
    for standard in (False, True):
        http = harness.client(connect_timeout=0.5, read_timeout=4.0)
        if standard:
            monkeypatch.setattr(urllib3.connection.HTTPConnection, "getresponse", _standard_only())
        http.get(f"{server.url}/warm")
        monkeypatch.setattr(OneSend, "request", request)
        assert http.post(f"{server.url}/upload", data=b"x" * size).text == "/upload"
        monkeypatch.undo()
    assert sent_within == [timeout, 0.5]
    harness.assert_intact(harness.clients[0])


def test_a_client_setting_set_to_none_reads_none() -> None:
    """requests' container settings keep what they are set to, None included."""
    client = wsgi_pool.Client()
    assert client.proxies == {}
    assert client.params == {}
    client.proxies = None
    client.hooks = None
    client.params = None
    assert (client.proxies, client.hooks, client.params) == (None, None, None)


class _FailingSocket:
    """A socket that has bytes to read (as TLS says, ``pending``) and then fails reading them."""

    def __init__(self, failure: OSError) -> None:
        self.failure = failure

    def pending(self) -> int:
        return 1

    def recv(self, size: int) -> bytes:
        raise self.failure


def test_a_socket_failure_after_the_head_is_met_where_it_happened() -> None:
    """The socket fails while the rest of a body is read: what was received is handed over
    with the failure, and the standard reader meets it after those bytes, without waiting."""
    failure = ConnectionResetError(104, "reset")
    received, met = whole._rest(_FailingSocket(failure), b"HTTP/1.1 200 OK\r\n\r\nab", 5)
    assert (received, met) == (b"HTTP/1.1 200 OK\r\n\r\nab", failure)
    sock = object()
    whole.handed[sock] = (b"abc", failure)
    reader = whole.taken_over(sock, io.BufferedReader(io.BytesIO(b"never read")))
    try:
        assert reader.read(3) == b"abc"
        with pytest.raises(ConnectionResetError):
            reader.read(1)
        assert reader.read(4) == b"neve"  # then the socket, as it would have been read
    finally:
        reader.close()
    assert sock not in whole.handed


class _EndingSocket:
    """A socket with bytes to read (as TLS says, ``pending``): some of a body, then its end."""

    def __init__(self, *reads: bytes) -> None:
        self.reads = list(reads)

    def pending(self) -> int:
        return 1

    def recv(self, size: int) -> bytes:
        return self.reads.pop(0)


def test_a_body_the_server_ends_early_is_handed_over_as_received() -> None:
    """The rest of a body is read while there; the server closing before its end hands over
    what came, with no failure (the standard reader finds the body cut short)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab"
    assert whole._rest(_EndingSocket(b"cd", b""), head, 4) == (head + b"cd", None)
    assert whole._rest(_EndingSocket(b"cdef"), head, 4) == (head + b"cdef", None)
