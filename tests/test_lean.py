"""The lean send path answers as requests' own path does.

Each test puts the same input through wsgi_pool and through plain requests (the control) and
compares what comes out: the prepared request, the urllib3 pool, the response's fields, the
exception raised.
"""

from __future__ import annotations

import pickle
import random
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import trustme
import urllib3.exceptions as u3
from requests.adapters import HTTPAdapter
from urllib3.util.url import _encode_target

import wsgi_pool
from tests.faults import FaultServer, Peer
from wsgi_pool import Client, PoolConfig
from wsgi_pool._transport import (
    MAX_KEYS,
    PoolFinder,
    _plain_target,
    prepared_url,
    requests_error,
)
from wsgi_pool.testing import Upstream

from .conftest import tls_context, write_ca


def _prepared_by_requests(url: str) -> str | None:
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    return prepared.url


def test_quick_urls_are_requests_urls() -> None:
    """For 20,000 random URLs, every one prepared quickly is exactly what requests makes of it."""
    rng = random.Random(5)  # noqa: S311  (reproducible test data, not security)
    alphabet = "aZ09-._~!$&'()*+,;=:@/?#%[] \\\u00e9\t"
    hosts = [
        "127.0.0.1",
        "EXAMPLE.com",
        "[::1]",
        "[::1]:81",
        "u:p@h",
        "h:8080",
        "h:80",
        "h.",
        "h:0",
    ]
    quick = 0
    for _ in range(20_000):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        url = rng.choice(["http://", "https://", "HTTP://"]) + rng.choice(hosts)
        url += ("/" + tail) if rng.random() < 0.7 else tail
        found = prepared_url(url)
        if found is not None:
            quick += 1
            assert found == _prepared_by_requests(url), url
    assert quick > 2_000  # the quick path is the common one, not a corner


@pytest.mark.parametrize(
    ("url", "quick"),
    [
        pytest.param("http://127.0.0.1:8080/items/42?id=7&x=y", True, id="plain"),
        pytest.param("https://Example.COM", True, id="no path, host case"),
        pytest.param("http://u:p@h:80/a//b", True, id="credentials, default port"),
        pytest.param("http://h/a/../b", False, id="dot segment"),
        pytest.param("http://h/%41", False, id="percent"),
        pytest.param("http://h/x#f", False, id="fragment"),
        pytest.param("http://h/x?", False, id="empty query"),
        pytest.param("HTTP://h/", False, id="upper-case scheme"),
        pytest.param("http://h/\u00e9", False, id="non-ascii path"),
        pytest.param("http://h:99999/", False, id="bad port"),
        pytest.param("ftp://h/", False, id="other scheme"),
    ],
)
def test_which_urls_are_quick(url: str, quick: bool) -> None:
    """Plain http(s) URLs are prepared quickly; anything requests would change is left to it."""
    found = prepared_url(url)
    assert (found is not None) == quick
    if found is not None:
        assert found == _prepared_by_requests(url)


def _hook(response: requests.Response, **kwargs: Any) -> None:
    return None


CASES: list[Any] = [
    pytest.param({}, {}, id="plain"),
    pytest.param({}, {"params": {"a": "1", "b": None}}, id="params dict"),
    pytest.param({}, {"params": "a=1&b=2"}, id="params string"),
    pytest.param({}, {"params": [("a", "1"), ("a", "2")]}, id="params list"),
    pytest.param({}, {"headers": {"X-One": "1", "User-Agent": None}}, id="call headers"),
    pytest.param({"headers": {"X-Client": "c"}}, {}, id="client header set"),
    pytest.param({"drop": "Accept"}, {}, id="client header deleted"),
    pytest.param({"params": {"p": "1"}}, {"params": {"q": "2"}}, id="client params"),
    pytest.param({}, {"auth": ("user", "secret")}, id="call auth"),
    pytest.param({"auth": ("user", "secret")}, {}, id="client auth"),
    pytest.param({}, {"url": "http://u:p@127.0.0.1:9/x"}, id="url credentials"),
    pytest.param({}, {"method": "post", "json": {"a": [1, 2]}}, id="json"),
    pytest.param({}, {"method": "POST", "data": {"a": "1"}}, id="form"),
    pytest.param({}, {"method": "PUT", "data": b"raw"}, id="bytes"),
    pytest.param({}, {"cookies": {"c": "1"}}, id="call cookies"),
    pytest.param({"cookie": ("k", "v")}, {}, id="client cookie"),
    pytest.param({}, {"hooks": {"response": _hook}}, id="call hook"),
    pytest.param({}, {"url": "http://127.0.0.1:9/\u00e9 x"}, id="url quoted"),
    pytest.param({"hook": _hook}, {}, id="client hook"),
    pytest.param({"hook": _hook}, {"hooks": {"response": [_hook]}}, id="client and call hooks"),
    pytest.param({}, {"method": b"get", "url": b"http://127.0.0.1:9/b"}, id="bytes"),
]


def _configure(session: requests.Session, setup: dict[str, Any]) -> None:
    session.headers.update(setup.get("headers", {}))
    if "drop" in setup:
        del session.headers[setup["drop"]]
    session.params = setup.get("params", {})
    session.auth = setup.get("auth")
    if "cookie" in setup:
        session.cookies.set(*setup["cookie"])
    if "hook" in setup:
        session.hooks["response"].append(setup["hook"])


@pytest.mark.parametrize(("setup", "call"), CASES)
def test_prepared_requests_are_requests_own(setup: dict[str, Any], call: dict[str, Any]) -> None:
    """A client prepares each call exactly as a requests.Session with the same settings does."""
    control = requests.Session()
    control.trust_env = False
    client = Client()
    _configure(control, setup)
    _configure(client, setup)
    arguments = {"method": "GET", "url": "http://127.0.0.1:9/x?y=1", **call}
    ours = client.prepare_request(requests.Request(**arguments))
    theirs = control.prepare_request(requests.Request(**arguments))
    assert (ours.method, ours.url, ours.body, ours.hooks) == (
        theirs.method,
        theirs.url,
        theirs.body,
        theirs.hooks,
    )
    assert list(ours.headers.items()) == list(theirs.headers.items())


class _Sent(Exception):
    """What a session's ``send`` was given, raised so that nothing goes out."""


class _Stopped:
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        raise _Sent(request, kwargs)


class _StoppedSession(_Stopped, requests.Session):
    pass


class _StoppedClient(_Stopped, Client):
    pass


class _OwnPreparation(_StoppedClient):
    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        prepared = super().prepare_request(request)
        prepared.headers["X-Prepared-By"] = "subclass"
        return prepared


def _sent(session: requests.Session, arguments: dict[str, Any]) -> tuple[Any, ...]:
    with pytest.raises(_Sent) as caught:
        session.request(**arguments, timeout=3, stream=True)
    prepared, kwargs = caught.value.args
    return (
        prepared.method,
        prepared.url,
        prepared.body,
        prepared.hooks,
        list(prepared.headers.items()),
        {key: value for key, value in kwargs.items() if key != "proxies"},
        dict(kwargs["proxies"]),
    )


@pytest.mark.parametrize(("setup", "call"), CASES)
def test_calls_send_what_requests_sends(setup: dict[str, Any], call: dict[str, Any]) -> None:
    """``request()`` hands ``send`` the prepared request and settings a requests.Session hands it."""
    control = _StoppedSession()
    control.trust_env = False
    client = _StoppedClient()
    _configure(control, setup)
    _configure(client, setup)
    arguments = {"method": "GET", "url": "http://127.0.0.1:9/x?y=1", **call}
    assert _sent(client, arguments) == _sent(control, arguments)


def test_a_subclass_preparation_is_used() -> None:
    """A client whose class overrides ``prepare_request`` gets its requests prepared by it."""
    sent = _sent(_OwnPreparation(), {"method": "GET", "url": "http://127.0.0.1:9/"})
    assert ("X-Prepared-By", "subclass") in sent[4]


def test_unchanged_default_headers_are_copies() -> None:
    """Two calls of an unchanged client get equal headers, never the same object; replaced ones are used."""
    replaced = Client()
    replaced.headers = requests.structures.CaseInsensitiveDict({"X-Only": "1"})
    prepared = replaced.prepare_request(requests.Request("GET", "http://127.0.0.1:9/"))
    assert dict(prepared.headers) == {"X-Only": "1"}
    client = Client()
    first = client.prepare_request(requests.Request("GET", "http://127.0.0.1:9/"))
    second = client.prepare_request(requests.Request("GET", "http://127.0.0.1:9/"))
    assert first.headers == second.headers == requests.utils.default_headers()
    first.headers["X-Mine"] = "1"
    assert "X-Mine" not in second.headers
    assert not client.headers.changed  # type: ignore[attr-defined]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


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
    client = Client()
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

    with Client() as client:
        response = client.get(f"{upstream.url}/x", hooks={"response": hook})
        assert (response.status_code, seen, response.history) == (200, [200], [earlier])
        assert client.cookies.get("h") == "1"


def test_send_refuses_an_unprepared_request() -> None:
    """``send`` of a Request, not a PreparedRequest, is requests' ValueError."""
    with Client() as client, pytest.raises(ValueError, match="PreparedRequests"):
        client.send(requests.Request("GET", "http://127.0.0.1:9/"))  # type: ignore[arg-type]


def test_pools_are_the_ones_requests_chooses(upstream: Upstream) -> None:
    """For each URL and verify setting, the pool found is the one requests' adapter picks."""
    pools = wsgi_pool.client(PoolConfig(allow_unverified=True)).pools
    adapter = pools.adapter
    finder = PoolFinder(adapter)
    port = upstream.url.rsplit(":", 1)[1]
    for url in (
        f"http://127.0.0.1:{port}/x",
        f"HTTP://127.0.0.1:{port}/x",
        f"http://user@127.0.0.1:{port}/x",
        f"https://127.0.0.1:{port}/x",
        f"http://[::1]:{port}/",
        "http://localhost/",
    ):
        request = requests.Request("GET", url).prepare()
        for verify in (True, False):
            expected = adapter.get_connection_with_tls_context(request, verify, None, None)
            assert finder.pool_for(request, verify, None) is expected, (url, verify)
            assert finder.pool_for(request, verify, None) is expected  # and when remembered


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999/", "http:///x"], ids=["bad port", "no host"]
)
def test_unusable_urls_raise_requests_error(url: str) -> None:
    """A prepared URL requests' adapter cannot use raises the same InvalidURL through the finder."""
    request = requests.Request("GET", "http://127.0.0.1:9/").prepare()
    request.url = url
    with pytest.raises(requests.exceptions.InvalidURL):
        HTTPAdapter().send(request)
    with pytest.raises(requests.exceptions.InvalidURL):
        PoolFinder(wsgi_pool.client().pools.adapter).pool_for(request, True, None)


def test_remembered_keys_are_bounded(upstream: Upstream) -> None:
    """Past MAX_KEYS remembered pool keys the memory starts again; an unhashable verify is found afresh."""
    finder = PoolFinder(wsgi_pool.client().pools.adapter)
    request = requests.Request("GET", f"{upstream.url}/x").prepare()
    for number in range(MAX_KEYS + 1):
        finder.pool_for(request, f"/ca-{number}.pem", None)
    assert len(finder._keys) == 1
    with Client() as client:
        unhashable: Any = ["unhashable"]
        assert client.get(f"{upstream.url}/x", verify=unhashable).status_code == 200


class _Raising:
    """A pool whose ``urlopen`` raises one urllib3 exception: the way to reach every branch of the mapping."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def urlopen(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


class _Adapter(HTTPAdapter):
    def __init__(self, pool: _Raising) -> None:
        super().__init__()
        self.pool = pool

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        return self.pool


def _reason(reason: Exception) -> Exception:
    return u3.MaxRetryError(None, "/", reason)  # type: ignore[arg-type]


ERRORS: list[Callable[[], Exception]] = [
    lambda: u3.ProtocolError("aborted"),
    ConnectionResetError,
    lambda: _reason(u3.ConnectTimeoutError("connect")),
    lambda: _reason(u3.NewConnectionError(None, "refused")),  # type: ignore[arg-type]
    lambda: _reason(u3.ResponseError("too many 500")),
    lambda: _reason(u3.ProxyError("proxy", OSError())),
    lambda: _reason(u3.SSLError("bad cert")),
    lambda: _reason(u3.NameResolutionError("h", None, OSError())),  # type: ignore[arg-type]
    lambda: u3.ClosedPoolError(None, "closed"),  # type: ignore[arg-type]
    lambda: u3.ProxyError("proxy", OSError()),
    lambda: u3.SSLError("bad cert"),
    lambda: u3.ReadTimeoutError(None, "/", "read"),  # type: ignore[arg-type]
    lambda: u3.InvalidHeader("bad"),
    lambda: u3.EmptyPoolError(None, "empty"),  # type: ignore[arg-type]
    lambda: u3.LocationValueError("where"),
]


@pytest.mark.parametrize("make", ERRORS, ids=lambda make: type(make()).__name__)
def test_urllib3_errors_become_requests_own(make: Callable[[], Exception]) -> None:
    """Each urllib3 failure maps to the exception requests' adapter raises, or passes through as it does."""
    request = requests.Request("GET", "http://127.0.0.1:9/").prepare()
    error = make()
    with pytest.raises(Exception) as theirs:  # noqa: PT011  (any type: it is compared below)
        _Adapter(_Raising(error)).send(request)
    ours = requests_error(error, request)
    if theirs.value is error:
        assert ours is None
    else:
        assert type(ours) is type(theirs.value)
        assert ours is not None
        assert ours.args[0] is error


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


def _target_by_requests(url: str) -> str:
    prepared = requests.PreparedRequest()
    prepared.url = url
    target = prepared.path_url
    if target.startswith("//"):
        target = "/" + target.lstrip("/")
    return str(_encode_target(target))


def test_quick_targets_are_urllib3_targets() -> None:
    """For 20,000 random URLs, every target taken as written is what requests and urllib3 send."""
    rng = random.Random(7)  # noqa: S311  (reproducible test data, not security)
    alphabet = "aZ09-._~!$&'()*+,;=:@/?#%[] \u00e9\t"
    quick = 0
    for _ in range(20_000):
        head = rng.choice(["http://", "https://", "", "http:/"])
        middle = "".join(rng.choice("h?#:@/") for _ in range(rng.randint(0, 3)))
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        url = head + "h" + middle + tail
        found = _plain_target(url)
        try:
            expected = _target_by_requests(url)
        except ValueError:  # urlsplit refuses it: such a URL never gets here (no pool for it)
            continue
        if found is not None:
            quick += 1
            assert found == expected, url
    assert quick > 500  # taken as written often, and checked each time


@pytest.mark.parametrize(
    "url",
    ["h/x", "http://h", "http://h?q=/x", "http://h#f/x", "http://h//x", "http://h/a b"],
)
def test_targets_left_to_urllib3(url: str) -> None:
    """No scheme, no path, a query or fragment before the path, ``//``, a space: urllib3 decides."""
    assert _plain_target(url) is None


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
