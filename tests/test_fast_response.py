"""Fast piece ``_fast.response`` (and ``_fast.session``): responses are requests' own, field by field.

Each test makes the same call through a client and through a plain requests.Session (the
control) and compares the response: its fields, history, cookies, hooks and errors.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import trustme

from tests.faults import FaultServer, Peer
from tests.support import tls_context, write_ca
from wsgi_pool import Client, PoolConfig
from wsgi_pool._fast.response import read_all
from wsgi_pool.testing import Upstream


def _fields(response: requests.Response) -> tuple[Any, ...]:
    body = response.json() if response.headers.get("Content-Type") == "application/json" else None
    return (
        response.status_code,
        response.reason,
        response.url,
        response.encoding,
        response.headers.get("Content-Type"),
        response.headers.get("Set-Cookie"),
        dict(response.cookies),
        [r.status_code for r in response.history],
        None if body is None else body["path"],
        response.elapsed.total_seconds() > 0,
    )


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("", id="plain"),
        pytest.param("set_cookie=s%3D1", id="sets a cookie"),
        pytest.param("status=404", id="404"),
        pytest.param("status=302&location=%2Fy%3Fz%3D1", id="redirect"),
    ],
)
def test_responses_carry_requests_fields(upstream: Upstream, query: str) -> None:
    """Status, reason, URL, encoding, headers, cookies, history and timing are requests' own."""
    control = requests.Session()
    control.trust_env = False
    client = Client(keep_cookies=True)
    url = f"{upstream.url}/x?{query}"
    assert _fields(client.get(url)) == _fields(control.get(url))
    assert dict(client.cookies) == dict(control.cookies)
    client.close()
    control.close()


def test_a_path_starting_with_two_slashes_is_not_a_host(upstream: Upstream) -> None:
    """``http://host//x`` asks for ``/x`` (requests' rule: never a scheme-relative target)."""
    with Client() as client, requests.Session() as control:
        url = f"{upstream.url}//x"
        assert client.get(url).json()["path"] == control.get(url).json()["path"] == "/x"


def test_not_following_a_redirect_leaves_the_next_request(upstream: Upstream) -> None:
    """With allow_redirects=False the response's ``next`` is the request requests would send."""
    url = f"{upstream.url}/r?status=302&location={quote('/y?z=1', safe='')}"
    with Client() as client, requests.Session() as control:
        ours, theirs = (
            client.get(url, allow_redirects=False),
            control.get(url, allow_redirects=False),
        )
        assert ours.next is not None
        assert theirs.next is not None
        assert (ours.status_code, ours.next.url) == (theirs.status_code, theirs.next.url)
        assert client.get(f"{upstream.url}/x", allow_redirects=False).next is None


def test_hooks_see_every_response_and_their_history(upstream: Upstream) -> None:
    """A response hook runs once per response; cookies of a history it sets are kept, as requests keeps them."""
    earlier = requests.get(f"{upstream.url}/x?set_cookie=h%3D1", timeout=10)
    seen: list[int] = []

    def hook(response: requests.Response, **kwargs: Any) -> requests.Response:
        seen.append(response.status_code)
        response.history = [earlier]
        return response

    with Client(keep_cookies=True) as client:
        response = client.get(f"{upstream.url}/x", hooks={"response": hook})
        assert (response.status_code, seen, response.history) == (200, [200], [earlier])
        assert client.cookies.get("h") == "1"


def _bad_gzip(peer: Peer) -> None:
    while peer.read_request():
        peer.respond(body=b"not gzip at all", headers=("Content-Encoding: gzip",))


def _garbage_inside_tls(peer: Peer) -> None:
    """Headers and half the body over TLS, then bytes outside any TLS record."""
    while peer.read_request():
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf ")
        socket.socket.send(peer.sock, b"\x17\x03\x03\x00\x05garbage")
        return


def _body_error(make_client: Callable[[], requests.Session], url: str) -> type[Exception]:
    with make_client() as session, pytest.raises(requests.exceptions.RequestException) as caught:
        session.get(url)
    return type(caught.value)


def test_body_errors_are_requests_own() -> None:
    """A body that cannot be decoded raises requests' ContentDecodingError, as requests does."""

    def control() -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        return session

    with FaultServer(_bad_gzip) as server:
        url = f"{server.url}/x"
        assert _body_error(Client, url) is _body_error(control, url)
        assert _body_error(Client, url) is requests.exceptions.ContentDecodingError


def test_broken_tls_in_the_body_is_an_ssl_error(tmp_path: Path) -> None:
    """Bytes that are no TLS record, half-way through a body, raise requests' SSLError."""
    ca = trustme.CA()
    with FaultServer(_garbage_inside_tls, tls=tls_context(ca, "127.0.0.1")) as server:
        config = PoolConfig(ca_bundle=write_ca(ca, tmp_path), retries=0)
        with pytest.raises(requests.exceptions.SSLError):
            Client(config).get(f"{server.url}/x")


def _garbage_for_a_response(peer: Peer) -> None:
    """Bytes outside any TLS record where the response should be."""
    while peer.read_request():
        socket.socket.send(peer.sock, b"\x17\x03\x03\x00\x05garbage")
        return


def test_broken_tls_instead_of_a_response_is_an_ssl_error(tmp_path: Path) -> None:
    """TLS that breaks while the response is awaited raises requests' SSLError, as requests does."""
    ca = trustme.CA()
    bundle = write_ca(ca, tmp_path)
    with FaultServer(_garbage_for_a_response, tls=tls_context(ca, "127.0.0.1")) as server:
        url = f"{server.url}/x"
        config = PoolConfig(ca_bundle=bundle, retries=0)

        def control() -> requests.Session:
            session = requests.Session()
            session.trust_env = False
            session.verify = bundle
            return session

        ours = _body_error(lambda: Client(config), url)
        theirs = _body_error(control, url)
    assert theirs is requests.exceptions.SSLError
    assert issubclass(ours, theirs)  # wsgi_pool's own, naming the upstream


def test_cookie_jars_can_be_replaced_and_responses_pickled(upstream: Upstream) -> None:
    """``client.cookies = jar`` is requests' idiom; a pickled response comes back whole."""
    client = Client()
    jar = requests.cookies.RequestsCookieJar()
    jar.set("k", "v")
    client.cookies = jar
    response = client.get(f"{upstream.url}/x?set_cookie=s%3D1")
    assert client.cookies is jar
    assert response.json()["headers"]["Cookie"] == "k=v"
    assert dict(jar) == {"k": "v", "s": "1"}
    again = pickle.loads(pickle.dumps(response))  # noqa: S301  (our own bytes)
    assert (again.status_code, again.content, dict(again.cookies)) == (
        200,
        response.content,
        {"s": "1"},
    )
    client.close()


def test_built_responses_have_every_field_requests_starts_with(upstream: Upstream) -> None:
    """The response is built without ``Response.__init__``: it still has all that sets."""
    client = Client()
    response = client.get(f"{upstream.url}/x")
    assert set(vars(requests.Response())) - {"cookies"} <= set(vars(response))
    assert response.cookies is response.cookies  # made once, on first use
    client.close()


def test_a_body_error_requests_does_not_name_is_raised_as_it_is() -> None:
    """An error reading the body that requests' ``iter_content`` lets through, the fast read
    lets through too, unchanged."""

    class Broken:
        def read(self, amt: int | None = None, decode_content: bool = True) -> bytes:
            raise LookupError("not a body error")

    with pytest.raises(LookupError, match="not a body error"):
        read_all(Broken(), None)
