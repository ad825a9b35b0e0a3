"""Fast piece ``_fast.prepare``: a call is prepared exactly as a ``requests.Session`` prepares it.

Each test puts the same input through a client and through a plain requests.Session (the
control) and compares the prepared request, and what ``send`` is handed.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import requests

from wsgi_pool import Client
from wsgi_pool._fast.prepare import prepared_url


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
    client = Client(keep_cookies=True)
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
    client = _StoppedClient(keep_cookies=True)
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


def test_send_refuses_an_unprepared_request() -> None:
    """``send`` of a Request, not a PreparedRequest, is requests' ValueError."""
    with Client() as client, pytest.raises(ValueError, match="PreparedRequests"):
        client.send(requests.Request("GET", "http://127.0.0.1:9/"))  # type: ignore[arg-type]
