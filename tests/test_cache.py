"""The optional HTTP cache: fresh GETs answered from memory, stale ones revalidated, a shared cache's rules.

Every test runs against a real loopback upstream and counts what it served.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
import requests

from tests.faults import FaultServer, Peer
from wsgi_pool import Client, ConfigError, PoolConfig
from wsgi_pool._cache import MemoryCache, _storable
from wsgi_pool.testing import Upstream

CACHED = PoolConfig(http_cache_bytes=1 << 20, http_cache_entry_bytes=4096)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


def _twice(url: str, config: PoolConfig = CACHED, **kwargs: Any) -> list[requests.Response]:
    client = Client(config)
    try:
        return [client.get(url, **kwargs) for _ in range(2)]
    finally:
        client.close()


def test_a_fresh_response_is_answered_from_memory(upstream: Upstream) -> None:
    """max-age=60: the second GET never reaches the upstream and reads as the first."""
    first, second = _twice(f"{upstream.url}/x?cache_control=max-age%3D60")
    assert upstream.stats().requests_served == 1
    assert (first.from_cache, second.from_cache) == (False, True)  # type: ignore[attr-defined]
    assert second.json() == first.json()
    assert (second.status_code, second.headers["Cache-Control"]) == (200, "max-age=60")
    assert isinstance(second, requests.Response)


def test_a_stale_response_with_an_etag_is_revalidated(upstream: Upstream) -> None:
    """no-cache and an ETag: the second GET asks If-None-Match, gets 304, answers the stored body."""
    first, second = _twice(f"{upstream.url}/x?etag=v1&cache_control=no-cache")
    assert upstream.stats().requests_served == 2
    assert second.from_cache  # type: ignore[attr-defined]
    assert second.status_code == 200
    assert second.json() == first.json()
    assert second.request.headers["If-None-Match"] == '"v1"'


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        pytest.param("cache_control=max-age%3D60", {"Authorization": "Bearer a"}, id="auth"),
        pytest.param("cache_control=max-age%3D60", {"Cookie": "s=1"}, id="cookie"),
        pytest.param("cache_control=private,max-age%3D60", {}, id="private"),
        pytest.param("cache_control=s-maxage%3D60", {}, id="s-maxage"),
        pytest.param("cache_control=max-age%3D60&set_cookie=s%3D1", {}, id="sets a cookie"),
        pytest.param("cache_control=no-store", {}, id="no-store"),
        pytest.param("cache_control=max-age%3D60&size=5000", {}, id="over the entry limit"),
        pytest.param("cache_control=max-age%3D60&status=404", {}, id="404"),
        pytest.param("", {}, id="no cache headers"),
    ],
)
def test_what_a_shared_cache_must_not_keep_is_not_kept(
    upstream: Upstream, query: str, headers: dict[str, str]
) -> None:
    """Personal requests, private or cookie-setting responses and the rest go to the upstream each time."""
    first, second = _twice(f"{upstream.url}/x?{query}", headers=headers)
    assert upstream.stats().requests_served == 2
    assert not first.from_cache  # type: ignore[attr-defined]
    assert not second.from_cache  # type: ignore[attr-defined]


def test_a_change_drops_the_stored_response(upstream: Upstream) -> None:
    """A successful POST to the URL drops its entry: the next GET goes to the upstream."""
    url = f"{upstream.url}/x?cache_control=max-age%3D60"
    client = Client(CACHED)
    client.get(url)
    assert client.get(url).from_cache  # type: ignore[attr-defined]
    client.post(url, data=b"new")
    again = client.get(url)
    client.close()
    assert not again.from_cache  # type: ignore[attr-defined]
    assert upstream.stats().requests_served == 3


def test_a_streamed_body_is_stored_once_read(upstream: Upstream) -> None:
    """stream=True: the body is stored when the caller has read all of it."""
    url = f"{upstream.url}/x?cache_control=max-age%3D60&size=3000"
    client = Client(CACHED)
    streamed = client.get(url, stream=True)
    assert b"".join(streamed.iter_content(1000)) == b"x" * 3000
    again = client.get(url)
    client.close()
    assert again.from_cache  # type: ignore[attr-defined]
    assert again.content == b"x" * 3000
    assert upstream.stats().requests_served == 1


def test_a_permanent_redirect_is_stored(upstream: Upstream) -> None:
    """301 is kept (as CacheControl keeps it): the second call follows it without asking again."""
    url = f"{upstream.url}/old?status=301&location=%2Fnew&cache_control=max-age%3D60"
    first, second = _twice(url)
    assert [r.status_code for r in second.history] == [301]
    assert second.history[0].from_cache  # type: ignore[attr-defined]
    assert upstream.stats().requests_served == 3  # /old, /new, /new: the 301 once
    assert first.json()["path"] == second.json()["path"] == "/new"


def test_off_unless_configured(upstream: Upstream) -> None:
    """With no http_cache_bytes there is no cache: every GET is sent."""
    first, second = _twice(f"{upstream.url}/x?cache_control=max-age%3D60", PoolConfig())
    assert upstream.stats().requests_served == 2
    assert not second.from_cache  # type: ignore[attr-defined]
    assert Client().pools.adapter.http_cache is None
    assert first.json()["path"] == second.json()["path"]


def test_memory_is_bounded_least_recently_used_first() -> None:
    """Past max_bytes the least recently used entries go; one larger than all is never kept."""
    cache = MemoryCache(max_bytes=10)
    cache.set("a", b"1234")
    cache.set("b", b"1234")
    assert cache.get("a") == b"1234"  # a is now the most recently used
    cache.set("c", b"1234")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"1234", None, b"1234")
    assert cache.size == (2, 8)
    cache.set("a", b"12")  # replaced, not added
    assert cache.size == (2, 6)
    cache.set("big", b"x" * 11)
    assert cache.get("big") is None
    cache.delete("c")
    cache.delete("missing")
    assert cache.size == (1, 2)


@pytest.mark.parametrize(
    ("headers", "storable"),
    [
        ({}, True),
        ({"date": "Sat, 21 Nov 2026 10:00:00 GMT"}, True),
        ({"date": "not a date"}, False),
        ({"cache-control": "Private"}, False),
        ({"set-cookie": "a=b"}, False),
    ],
)
def test_shared_cache_rules(headers: dict[str, str], storable: bool) -> None:
    """What a shared cache may store; a Date CacheControl cannot parse is not stored."""
    assert _storable(requests.structures.CaseInsensitiveDict(headers)) is storable


def test_cache_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sizes are whole numbers >= 1, from the code or the environment."""
    with pytest.raises(ConfigError, match="http_cache_bytes"):
        PoolConfig(http_cache_bytes=0)
    with pytest.raises(ConfigError, match="http_cache_entry_bytes"):
        PoolConfig(http_cache_entry_bytes=0)
    monkeypatch.setenv("WSGI_POOL_HTTP_CACHE_BYTES", "8388608")
    assert PoolConfig.from_env().http_cache_bytes == 8 * 1024 * 1024


def _fresh_gets_refused_posts(peer: Peer) -> None:
    while (seen := peer.read_request()) is not None:
        if seen.method == "POST":
            answered = peer.respond("500 Internal Server Error", b"no")
        else:
            date = f"Date: {formatdate(usegmt=True)}"
            answered = peer.respond(headers=("Cache-Control: max-age=60", date))
        if not answered:
            return


def test_a_failed_change_keeps_the_stored_response() -> None:
    """A POST the upstream refuses (500) changed nothing: the URL's stored response stays."""
    with FaultServer(_fresh_gets_refused_posts) as server:
        url = f"{server.url}/x"
        client = Client(CACHED)
        client.get(url)
        assert client.post(url, data=b"x").status_code == 500
        kept = client.get(url)
        client.close()
        assert [seen.method for seen in server.requests()] == ["GET", "POST"]
    assert kept.from_cache  # type: ignore[attr-defined]


def test_a_permanent_redirect_that_sets_a_cookie_is_not_stored(upstream: Upstream) -> None:
    """Even a 301 (which CacheControl always keeps) is not kept when it sets a cookie."""
    url = f"{upstream.url}/old?status=301&location=%2Fnew&set_cookie=s%3D1"
    _, second = _twice(url)
    assert not second.history[0].from_cache  # type: ignore[attr-defined]
    assert upstream.stats().requests_served == 4
