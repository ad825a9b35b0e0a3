"""Proxies: read once from the config (and the environment with trust_env), NO_PROXY honoured, never from a request."""

from __future__ import annotations

import pytest
import requests

import wsgi_pool
from wsgi_pool import (
    PoolConfig,
)
from wsgi_pool.testing import Upstream, free_port


def test_requests_never_read_the_environment_by_default(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trust_env is off: HTTP_PROXY and NO_PROXY of the process are not read at all."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    answer = wsgi_pool.client().get(f"{upstream.url}/direct").json()
    assert answer["path"] == "/direct"


def test_config_proxies_route_calls(upstream: Upstream, second_upstream: Upstream) -> None:
    """Proxies from the config are used; the proxy sees the absolute-form request."""
    http = wsgi_pool.client(PoolConfig(proxies={"http": second_upstream.url}))
    answer = http.get(f"{upstream.url}/via-proxy").json()
    assert answer["path"] == f"{upstream.url}/via-proxy"
    assert upstream.stats().requests_served == 0
    assert second_upstream.stats().requests_served == 1


def test_a_direct_send_uses_the_config_proxies(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """Client.send() on a prepared request routes through the config's proxies, as request() does."""
    http = wsgi_pool.client(PoolConfig(proxies={"http": second_upstream.url}))
    prepared = http.prepare_request(requests.Request("GET", f"{upstream.url}/sent"))
    assert http.send(prepared).json()["path"] == f"{upstream.url}/sent"
    assert second_upstream.stats().requests_served == 1


def test_trust_env_reads_proxies_once_and_honours_no_proxy(
    upstream: Upstream, second_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With trust_env, HTTP_PROXY and NO_PROXY are read once when the pools are built."""
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", second_upstream.url)
    monkeypatch.setenv("no_proxy", "internal.example, 10.0.0.0/8")
    http = wsgi_pool.client(PoolConfig(trust_env=True))
    assert http.get(f"{upstream.url}/a").json()["path"] == f"{upstream.url}/a"
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    assert http.get(f"{upstream.url}/b").json()["path"] == f"{upstream.url}/b"
    pools = http.pools
    assert pools.no_proxy == ("internal.example", "10.0.0.0/8")
    assert pools.bypasses_proxy("api.internal.example")
    assert pools.bypasses_proxy("internal.example")
    assert pools.bypasses_proxy("10.1.2.3")
    assert not pools.bypasses_proxy("127.0.0.1")
    assert not pools.bypasses_proxy("notinternal.example")
    assert not pools.bypasses_proxy(None)


def test_no_proxy_entry_skips_the_proxy(
    upstream: Upstream, second_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host matching NO_PROXY is called directly; '*' matches every host."""
    monkeypatch.setenv("http_proxy", second_upstream.url)
    monkeypatch.setenv("no_proxy", "127.0.0.0/8")
    http = wsgi_pool.client(PoolConfig(trust_env=True))
    assert http.get(f"{upstream.url}/direct").json()["path"] == "/direct"
    assert second_upstream.stats().requests_served == 0
    monkeypatch.setenv("no_proxy", "*")
    star = wsgi_pool.client(PoolConfig(trust_env=True, idle_timeout=3.5))  # pools of their own
    assert star.pools.bypasses_proxy("[::1]")


def test_a_tunnel_whose_proxy_fails_names_the_proxy() -> None:
    """An https upstream through a proxy nothing listens on: the error names the proxy, not the
    upstream the tunnel was for."""
    proxy = f"http://127.0.0.1:{free_port()}"
    http = wsgi_pool.client(PoolConfig(proxies={"https": proxy}, retries=0))
    with pytest.raises(wsgi_pool.UpstreamProxyError, match=f"the proxy at {proxy} failed"):
        http.get("https://127.0.0.1:9/x")


def test_a_proxy_that_fails_is_a_proxy_error_naming_it(upstream: Upstream) -> None:
    """Nothing listens at the proxy: UpstreamProxyError, requests' ProxyError, naming the proxy;
    the upstream is never reached."""
    proxy = f"http://127.0.0.1:{free_port()}"
    http = wsgi_pool.client(PoolConfig(proxies={"http": proxy}, retries=0))
    with pytest.raises(wsgi_pool.UpstreamProxyError) as caught:
        http.get(f"{upstream.url}/x")
    assert isinstance(caught.value, requests.exceptions.ProxyError)
    assert f"the proxy at {proxy} failed" in str(caught.value)
    assert caught.value.upstream == upstream.url
    assert upstream.stats().requests_served == 0


def test_a_proxy_error_urllib3_raises_itself_is_a_proxy_error() -> None:
    """urllib3's ProxyError raised without a retry around it (the pool unnamed): still
    UpstreamProxyError, and requests' ProxyError."""
    from urllib3.exceptions import ProxyError  # noqa: PLC0415

    from wsgi_pool._translate import requests_error, translate  # noqa: PLC0415

    raised = requests_error(ProxyError("Unable to connect to proxy", OSError("refused")), None)
    assert raised is not None
    error = translate(raised, upstream="http://target:80", deadline=None, where="connecting")
    assert isinstance(error, wsgi_pool.UpstreamProxyError)
    assert isinstance(error, requests.exceptions.ProxyError)
    assert "the proxy failed" in str(error)
