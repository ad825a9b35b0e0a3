"""Fast piece ``_fast.request``: a request on a kept connection is written in one send, as urllib3 writes it.

Each case makes the same call through wsgi_pool and through plain requests (the control), each
on a connection it opened with a plain GET just before, and compares the bytes the peer read.
A spy on ``request_head`` (the real function, recorded) shows which path wrote the request:
plain requests go in one piece, anything else is left to urllib3, which writes it (or refuses
it) as it always does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from urllib3.util import SKIP_HEADER

from tests.faults import FaultServer, Peer
from tests.support import tls_context, write_ca
from wsgi_pool import Client, PoolConfig
from wsgi_pool._fast import request as _transport


def _answer_all(peer: Peer) -> None:
    while peer.read_request() is not None:
        if not peer.respond():
            return


@pytest.fixture
def heads(monkeypatch: pytest.MonkeyPatch) -> list[bytes | None]:
    """What every call of ``request_head`` returned (the real function runs)."""
    made: list[bytes | None] = []
    real = _transport.request_head

    def recording(*args: Any, **kwargs: Any) -> bytes | None:
        head = real(*args, **kwargs)
        made.append(head)
        return head

    monkeypatch.setattr(_transport, "request_head", recording)
    return made


def _kwargs(**given: Any) -> Callable[[], dict[str, Any]]:
    return lambda: dict(given)


# (method, the call's arguments (made afresh per call), written in one piece)
CASES = [
    pytest.param("GET", _kwargs(), True, id="get"),
    pytest.param(
        "GET", _kwargs(params={"q": "a b"}, headers={"X-A": "b"}), True, id="query, own header"
    ),
    pytest.param("GET", _kwargs(headers={"X-C": "caf\u00e9"}), True, id="latin-1 value"),
    pytest.param("HEAD", _kwargs(), True, id="head"),
    pytest.param("OPTIONS", _kwargs(), True, id="options"),
    pytest.param("DELETE", _kwargs(), True, id="delete"),
    pytest.param("POST", _kwargs(json={"a": 1}), True, id="json body"),
    pytest.param("PUT", _kwargs(data=b"x" * 70_000), True, id="large body"),
    pytest.param("PATCH", _kwargs(data=b""), True, id="empty body"),
    pytest.param("POST", _kwargs(data={"a": "b"}), False, id="text body"),
    pytest.param("POST", lambda: {"data": iter([b"a", b"b"])}, False, id="chunked body"),
    pytest.param("TRACE", _kwargs(), False, id="uncommon method"),
    pytest.param("GET", _kwargs(headers={"Host": "other.test"}), False, id="own host"),
    pytest.param("GET", _kwargs(headers={"User-Agent": None}), False, id="no user agent"),
    pytest.param("GET", _kwargs(headers={"Accept-Encoding": None}), False, id="no accept-encoding"),
    pytest.param("GET", _kwargs(headers={"User-Agent": SKIP_HEADER}), False, id="skipped header"),
    pytest.param("GET", _kwargs(headers={"X-B": b"bytes"}), False, id="bytes value"),
    pytest.param(
        "GET", _kwargs(headers={"Transfer-Encoding": "chunked"}), False, id="own transfer-encoding"
    ),
    pytest.param("POST", _kwargs(), True, id="post, no body"),
]


@pytest.mark.parametrize(("method", "kwargs", "plain"), CASES)
def test_kept_connections_get_urllib3s_bytes(
    method: str, kwargs: Callable[[], dict[str, Any]], plain: bool, heads: list[bytes | None]
) -> None:
    """The bytes on the wire are the control's; plain requests skip urllib3's writer."""
    with FaultServer(_answer_all) as server:
        url = f"{server.url}/x"
        client = Client()
        client.get(url)
        heads.clear()
        client.request(method, url, **kwargs())
        written = [head for head in heads if head is not None]
        control = requests.Session()
        control.trust_env = False
        control.get(url)
        control.request(method, url, **kwargs())
        client.close()
        control.close()
        seen = server.requests()
    assert len(seen) == 4
    assert [s.connection for s in seen] == [0, 0, 1, 1]  # each on its kept connection
    assert seen[1].raw == seen[3].raw
    assert len(written) == plain
    if plain:  # the head is what the peer read, up to the body
        assert seen[1].raw.startswith(written[0])
        assert seen[1].raw == written[0] + seen[1].body


def test_over_tls_too(tmp_path: Path, heads: list[bytes | None]) -> None:
    """Over https the kept connection's request is written in one piece, as urllib3 writes it."""
    ca = trustme.CA()
    with FaultServer(_answer_all, tls=tls_context(ca, "127.0.0.1")) as server:
        url = f"{server.url}/x?y=1"
        bundle = write_ca(ca, tmp_path)
        client = Client(PoolConfig(ca_bundle=bundle))
        control = requests.Session()
        control.trust_env = False
        for _ in range(2):
            client.get(url)
            control.get(url, verify=bundle)
        client.close()
        control.close()
        seen = server.requests()
    ours = [s.raw for s in seen if s.connection == seen[0].connection]
    theirs = [s.raw for s in seen if s.connection != seen[0].connection]
    assert ours == theirs
    assert len(ours) == 2
    # Only the second call's request was written in one piece: the first opened the connection.
    assert len(heads) == 1
    assert heads[0] is not None


def test_a_header_http_client_cannot_encode_fails_as_it_fails(heads: list[bytes | None]) -> None:
    """A value beyond latin-1 is left to http.client, which raises as it does for requests."""
    with FaultServer(_answer_all) as server:
        url = f"{server.url}/x"
        client = Client()
        control = requests.Session()
        control.trust_env = False
        client.get(url)
        control.get(url)
        with pytest.raises(UnicodeEncodeError) as ours:
            client.get(url, headers={"X-E": "\u20ac"})
        with pytest.raises(UnicodeEncodeError) as theirs:
            control.get(url, headers={"X-E": "\u20ac"})
        client.close()
        control.close()
        assert len(server.requests()) == 2  # neither was sent
    assert str(ours.value) == str(theirs.value)
    assert heads == [None]


def test_header_names_checked_are_bounded() -> None:
    """Header names found legal are remembered up to a bound; past it they are checked each time."""
    _transport._checked_names.clear()
    base = {"User-Agent": "u", "Accept-Encoding": "gzip"}
    for index in range(_transport.MAX_NAMES + 5):
        headers = {**base, f"X-{index}": "v"}
        assert _transport.request_head("GET", "/", headers, "Host: h", None) is not None
    assert len(_transport._checked_names) == _transport.MAX_NAMES
    assert _transport.request_head("GET", "/", {**base, "Bad:Name": "v"}, "Host: h", None) is None
    assert _transport.request_head("GET", "/ x", base, "Host: h", None) is None


def test_header_blocks_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checked lines of a set of headers are remembered up to a bound, then forgotten; a
    set holding an unhashable value is checked each time (and refused)."""
    from requests.structures import CaseInsensitiveDict  # noqa: PLC0415

    _transport._blocks.clear()
    monkeypatch.setattr(_transport, "MAX_NAMES", 3)
    base = {"User-Agent": "u", "Accept-Encoding": "gzip"}
    heads = []
    for number in range(5):
        headers = CaseInsensitiveDict({**base, "X-N": str(number)})
        heads.append(_transport.request_head("GET", "/", headers, "Host: h", None))
        assert len(_transport._blocks) <= 3
    assert (
        heads[4]
        == b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nAccept-Encoding: gzip\r\nX-N: 4\r\n\r\n"
    )
    unhashable = CaseInsensitiveDict({**base, "X-L": ["v"]})
    assert _transport.request_head("GET", "/", unhashable, "Host: h", None) is None


def test_a_body_without_a_length_is_left_to_urllib3() -> None:
    """A request with a body (or a method that has one) and no Content-Length is not plain:
    urllib3 writes it (and adds the length, or chunks it)."""
    base = {"User-Agent": "u", "Accept-Encoding": "gzip"}
    assert _transport.request_head("POST", "/", base, "Host: h", None) is None
    assert _transport.request_head("GET", "/", base, "Host: h", 3) is None
    assert _transport.request_head("GET", "/", base, "Host: h", None) is not None
