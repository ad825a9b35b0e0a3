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
from wsgi_pool._fast.exchange import target_of
from wsgi_pool._fast.prepare import prepared_url


def _prepared_by_requests(url: str) -> tuple[str | None, str]:
    """The URL requests prepares, and the target its adapter hands urllib3 for it."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    return prepared.url, target_of(prepared)


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
            url_made, target = _prepared_by_requests(url)
            assert found[0] == url_made, url
            assert found[1].startswith("//") or found[1] == target, url
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
        assert found[0] == _prepared_by_requests(url)[0]
        assert found[1] == _prepared_by_requests(url)[1]


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
    pytest.param(
        {},
        {"method": "POST", "data": b'{"a": 1}', "headers": {"Content-Type": "application/json"}},
        id="bytes posted with a header",
    ),
    pytest.param({}, {"headers": {"accept": "text/plain", "X-B": b"v"}}, id="header case"),
    pytest.param({}, {"headers": {b"X-Bytes-Name": "v"}}, id="header name in bytes"),
    pytest.param({}, {"method": "POST", "data": b""}, id="empty bytes"),
    pytest.param({}, {"method": "DELETE"}, id="no body, a length"),
    pytest.param({}, {"method": "HEAD"}, id="no body, no length"),
    pytest.param({}, {"method": "POST", "data": "text"}, id="text"),
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


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Bad": "a\nb"}, id="line break"),
        pytest.param({"X-Bad": ["a"]}, id="unhashable value"),
        pytest.param({"X-Bad": 1}, id="number"),
        pytest.param({"X-Bad": "a\nb", "Accept": "\n"}, id="two bad, requests' order"),
    ],
)
def test_bad_call_headers_fail_as_requests_fails(headers: dict[str, Any]) -> None:
    """A header requests refuses is refused with requests' own error, the same one first."""
    errors = []
    for session in (requests.Session(), Client()):
        with pytest.raises(requests.exceptions.InvalidHeader) as caught:
            session.prepare_request(requests.Request("GET", "http://127.0.0.1:9/", headers=headers))
        errors.append(str(caught.value))
    assert errors[0] == errors[1]


def test_header_pairs_checked_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked (name, value) pairs are remembered up to a bound; past it they are checked each time."""
    from wsgi_pool._fast import prepare  # noqa: PLC0415

    monkeypatch.setattr(prepare, "MAX_CHECKED", len(prepare._checked_pairs))
    client = Client()
    for number in range(3):
        prepared = client.prepare_request(
            requests.Request("GET", "http://127.0.0.1:9/", headers={"X-N": str(number)})
        )
        assert prepared.headers["X-N"] == str(number)
        assert ("X-N", str(number)) not in prepare._checked_pairs


def test_a_prepared_requests_cookie_jar_is_made_once_and_can_be_replaced() -> None:
    """The cookie jar requests gives every prepared request is there when asked, made once."""
    prepared: Any = Client().prepare_request(requests.Request("GET", "http://127.0.0.1:9/"))
    jar = prepared._cookies
    assert prepared._cookies is jar
    assert len(jar) == 0
    replacement = requests.cookies.RequestsCookieJar()
    prepared._cookies = replacement
    assert prepared._cookies is replacement
    assert prepared.copy()._cookies is not replacement  # requests' copy copies the jar
