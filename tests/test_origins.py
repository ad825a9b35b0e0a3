"""Upstreams are named ``scheme://host:port`` alike, whether written in the config, called or pooled."""

from __future__ import annotations

import random
import re

import pytest
import requests

import wsgi_pool
from wsgi_pool import (
    PoolConfig,
    UpstreamSettings,
    _origins,
)
from wsgi_pool._origins import authority_of, normalize_origin, origin_of, pool_origin


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        pytest.param("HTTPS://Api.Internal", "https://api.internal:443", id="default port"),
        pytest.param("http://svc:8080/", "http://svc:8080", id="explicit port"),
        pytest.param("http://[::1]:9000", "http://[::1]:9000", id="ipv6"),
    ],
)
def test_origins_are_normalized(text: str, origin: str) -> None:
    """Upstreams are named scheme://host:port, lower case, default ports filled in."""
    assert normalize_origin(text) == origin
    assert (
        PoolConfig(upstreams={text: UpstreamSettings(retries=0)}).for_upstream(origin).retries == 0
    )


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        pytest.param(
            "http://127.0.0.1:8080/a?b#c", "http://127.0.0.1:8080", id="path query fragment"
        ),
        pytest.param(
            "HTTPS://user:pw@Api.Internal/x", "https://api.internal:443", id="credentials dropped"
        ),
        pytest.param("http://[::1]:9", "http://[::1]:9", id="ipv6"),
        pytest.param("https://h?q=1", "https://h:443", id="query right after host"),
    ],
)
def test_calls_are_named_by_origin(url: str, origin: str) -> None:
    """Each call's upstream is its scheme://host:port, whatever follows the host."""
    assert origin_of(url) == origin


def test_a_url_with_a_bad_port_gets_requests_own_error() -> None:
    """Naming the upstream never preempts requests' InvalidURL for a URL it will refuse."""
    with pytest.raises(requests.exceptions.InvalidURL):
        wsgi_pool.client().get("http://127.0.0.1:port/")


@pytest.mark.parametrize(
    ("scheme", "host", "port", "url"),
    [
        pytest.param("http", "127.0.0.1", 8080, "http://127.0.0.1:8080/x", id="ipv4"),
        pytest.param("http", "::1", 8080, "http://[::1]:8080/x", id="ipv6"),
        pytest.param("https", "api.example", 443, "https://API.example/x", id="default port"),
        pytest.param("http", "api.example", None, "http://api.example/", id="no port"),
    ],
)
def test_pools_and_calls_name_an_upstream_alike(
    scheme: str, host: str, port: int | None, url: str
) -> None:
    """The name a pool's counts go under is the name a call's counts go under."""
    assert pool_origin(scheme, host, port) == origin_of(url)


def test_authority_of_splits_as_the_pattern_it_replaced() -> None:
    """The scheme is all before the first ``://``, the authority all after it up to a ``/``,
    ``?`` or ``#``: compared with that rule written as a regular expression, on random text."""
    rule = re.compile(r"(.*?)://([^/?#]*)", re.DOTALL)
    pieces = ["http", "https", "://", ":", "/", "?", "#", "@", "h", "[::1]", "\n", "", "x:/"]
    chance = random.Random(17)  # noqa: S311  (reproducible test data, not security)
    for _ in range(5000):
        url = "".join(chance.choice(pieces) for _ in range(chance.randrange(8)))
        found = rule.match(url)
        assert authority_of(url) == ((url, "") if found is None else (found[1], found[2])), url


def test_the_remembered_origin_is_the_urls_own() -> None:
    """The last URL's origin is remembered: asking of another URL in between, or of one that
    differs only after the host, gives each its own."""
    first, second = "http://a.example/x", "https://b.example:8443/y"
    assert origin_of(first) == "http://a.example:80"
    assert origin_of(first) == "http://a.example:80"
    assert origin_of(second) == "https://b.example:8443"
    assert origin_of(first + "?q") == "http://a.example:80"
    assert origin_of("".join(["https://b.example:8443", "/y"])) == "https://b.example:8443"


def test_no_url_is_named_by_what_was_asked_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty URL gets the same name in a fresh process as after other URLs were named."""
    monkeypatch.setattr(_origins, "_last_origin", (None, ""))
    fresh = origin_of("")
    origin_of("http://a.example/x")
    assert origin_of("") == fresh == "://"
