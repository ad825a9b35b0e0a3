"""Fast piece ``_fast.exchange`` (and ``_fast.pools``): a try goes where, and fails as, requests' adapter's would.

The pool is the one requests' adapter picks, the request target is the one requests and
urllib3 send, and each urllib3 failure becomes the exception requests' adapter raises.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import requests
import urllib3.exceptions as u3
from requests.adapters import HTTPAdapter
from urllib3.util.url import _encode_target

import wsgi_pool
from wsgi_pool import Client, PoolConfig
from wsgi_pool._fast.exchange import plain_target
from wsgi_pool._fast.pools import MAX_KEYS, PoolKeys
from wsgi_pool._translate import requests_error
from wsgi_pool.testing import Upstream


def test_pools_are_the_ones_requests_chooses(upstream: Upstream) -> None:
    """For each URL and verify setting, the pool found is the one requests' adapter picks."""
    pools = wsgi_pool.client(PoolConfig(allow_unverified=True)).pools
    adapter = pools.adapter
    keys = PoolKeys()
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
            found = keys.pool_for(adapter.poolmanager, request, verify, None)
            assert found is expected, (url, verify)
            remembered = keys.pool_for(adapter.poolmanager, request, verify, None)
            assert remembered is expected


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
        PoolKeys().pool_for(wsgi_pool.client().pools.adapter.poolmanager, request, True, None)


def test_remembered_keys_are_bounded(upstream: Upstream) -> None:
    """Past MAX_KEYS remembered pool keys the memory starts again; an unhashable verify is found afresh."""
    keys = PoolKeys()
    manager = wsgi_pool.client().pools.adapter.poolmanager
    request = requests.Request("GET", f"{upstream.url}/x").prepare()
    for number in range(MAX_KEYS + 1):
        keys.pool_for(manager, request, f"/ca-{number}.pem", None)
    assert len(keys) == 1
    unhashable: Any = ["unhashable"]
    assert keys.pool_for(manager, request, unhashable, None).port == request_port(request)
    assert len(keys) == 1  # not remembered
    with Client() as client:  # over plain http a verify setting is never looked at
        assert client.get(f"{upstream.url}/x", verify=unhashable).status_code == 200


def request_port(request: requests.PreparedRequest) -> int:
    return int((request.url or "").rsplit(":", 1)[1].split("/")[0])


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
        found = plain_target(url)
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
    assert plain_target(url) is None


def test_remembered_routes_are_bounded(
    upstream: Upstream, second_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings, counters and budget found per upstream are kept up to a bound; past it
    the memory starts again, and each call still gets its own upstream's."""
    from wsgi_pool import _adapter  # noqa: PLC0415

    monkeypatch.setattr(_adapter, "MAX_ROUTES", 1)
    with Client() as client:
        for url in (upstream.url, second_upstream.url, upstream.url):
            assert client.get(f"{url}/r").json()["path"] == "/r"
        routes = client.pools.adapter._routes
        assert len(routes) == 1
        ((_, origin),) = routes
        assert origin == upstream.url
        assert client.pools.stats()[second_upstream.url].calls == 1


def test_a_policy_worked_out_while_settings_change_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A policy worked out while the process's settings were being replaced (the server's
    report came in meanwhile) is used for that call, not remembered for the next."""
    from wsgi_pool import _process  # noqa: PLC0415

    real = _process.effective

    def racing(config: Any) -> Any:
        _process._forget_policies()  # the settings change while this one is worked out
        return real(config)

    monkeypatch.setattr(_process, "effective", racing)
    first = _process.policy(None)
    assert _process._last_policy is None
    monkeypatch.undo()
    assert _process.policy(None).config == first.config
    assert _process._last_policy is not None
