"""Nothing crosses between requests, and the process environment is never read per call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
import requests
import trustme
from requests.adapters import HTTPAdapter

import wsgi_pool
from tests.support import tls_upstream, write_ca
from wsgi_pool import Client, PoolConfig, PoolMiddleware, SharedStateError
from wsgi_pool._adapter import ReadOnly as _ReadOnly
from wsgi_pool.testing import Upstream, free_port


def serve_once(middleware: PoolMiddleware, **environ: Any) -> None:
    """One in-process WSGI request through ``middleware``."""
    setup_testing_defaults(environ)
    body = middleware(environ, lambda *args: lambda data: None)
    getattr(body, "close", lambda: None)()


def test_a_handler_cannot_change_or_close_the_shared_adapter(upstream: Upstream) -> None:
    """The adapter every request shares refuses new attributes and close(); the pools keep serving."""
    http = wsgi_pool.client()
    mounted = http.get_adapter(f"{upstream.url}/x")
    assert mounted is wsgi_pool.adapter()
    shared = http.pools.adapter
    attempts: list[Callable[[], object]] = [
        lambda: setattr(mounted, "config", PoolConfig()),
        lambda: setattr(mounted, "max_retries", 5),
        lambda: setattr(shared, "max_retries", 5),
        lambda: setattr(shared, "poolmanager", None),
        lambda: delattr(shared, "proxy_manager"),
        shared.close,
        lambda: setattr(http.pools, "config", PoolConfig()),
        lambda: setattr(http.pools, "proxies", {"http": "http://evil:1"}),
    ]
    for attempt in attempts:
        with pytest.raises(SharedStateError) as caught:
            attempt()
        assert isinstance(caught.value, AttributeError)
    with pytest.raises(TypeError):
        http.pools.proxies["http"] = "http://evil:1"  # type: ignore[index]
    assert wsgi_pool.client().get(f"{upstream.url}/still").json()["path"] == "/still"


def test_read_only_starts_when_frozen() -> None:
    """Before it is frozen a shared object is built normally; after, no attribute can change."""

    class Shared(_ReadOnly):
        pass

    made = Shared()
    made.value = 1
    del made.value  # type: ignore[attr-defined]
    made._frozen = True
    with pytest.raises(SharedStateError, match="changing 'value'"):
        made.value = 2


def test_what_a_handler_sets_on_its_client_stays_in_its_request(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """Headers, auth, params, hooks, proxies and mounts set in one request are gone in the next."""
    seen: list[dict[str, Any]] = []
    hooked: list[str] = []
    mounted = HTTPAdapter()

    def first(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        http = wsgi_pool.client_from(environ)
        http.headers["X-Api-Key"] = "alice-key"
        http.auth = ("alice", "pw")
        http.params = {"user": "alice"}
        http.hooks["response"].append(lambda r, *a, **k: hooked.append(r.url))
        http.proxies["http"] = second_upstream.url
        http.mount(f"{upstream.url}/mounted", mounted)
        http.cookies.set("sid", "alice")
        seen.append(http.get(f"{upstream.url}/mine").json())
        start_response("200 OK", [])
        return [b""]

    def second(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        http = wsgi_pool.client_from(environ)
        assert http.get_adapter(f"{upstream.url}/mounted/x") is wsgi_pool.adapter()
        seen.append(http.get(f"{upstream.url}/mounted/theirs").json())
        start_response("200 OK", [])
        return [b""]

    serve_once(PoolMiddleware(first))
    serve_once(PoolMiddleware(second))
    mine, theirs = seen
    assert mine["path"] == f"{upstream.url}/mine?user=alice"  # through the "proxy"
    assert mine["headers"]["X-Api-Key"] == "alice-key"
    assert mine["cookie"] == "sid=alice"
    assert theirs["path"] == "/mounted/theirs"
    assert not {"X-Api-Key", "Authorization", "Cookie"} & set(theirs["headers"])
    assert hooked == [f"{upstream.url}/mine?user=alice"]
    assert second_upstream.stats().requests_served == 1
    assert len(mounted.poolmanager.pools) == 0


def test_trust_env_cannot_be_turned_on_for_a_client() -> None:
    """A client never reads the environment per call; asking it to raises, turning it off is a no-op."""
    http = Client()
    assert http.trust_env is False
    http.trust_env = False
    with pytest.raises(SharedStateError, match=r"PoolConfig\(trust_env=True\)"):
        http.trust_env = True
    assert http.trust_env is False


@pytest.fixture
def netrc_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home directory whose .netrc has credentials for 127.0.0.1, also named by NETRC."""
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(netrc))
    return tmp_path


@pytest.mark.parametrize("trust_env", [False, True], ids=["default", "trust_env"])
def test_netrc_credentials_are_never_sent(
    upstream: Upstream, netrc_home: Path, trust_env: bool
) -> None:
    """requests would add .netrc credentials per call; a client never reads .netrc, even with trust_env."""
    with requests.Session() as session:  # the control: requests reads it
        assert "Authorization" in session.get(f"{upstream.url}/x", timeout=5).json()["headers"]
    answer = wsgi_pool.client(PoolConfig(trust_env=trust_env)).get(f"{upstream.url}/x").json()
    assert "Authorization" not in answer["headers"]


def test_ca_bundle_variables_are_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and SSL_CERT_FILE do not change what is trusted; the config does."""
    ca = trustme.CA()
    ca_file = write_ca(ca, tmp_path)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, ca_file)
    with tls_upstream(ca, "127.0.0.1") as server:
        with requests.Session() as session:  # the control: requests trusts the variable
            assert session.get(f"{server.url}/x", timeout=5).status_code == 200
        for trust_env in (False, True):
            with pytest.raises(requests.exceptions.SSLError):
                wsgi_pool.client(PoolConfig(trust_env=trust_env)).get(f"{server.url}/x")
        trusted = wsgi_pool.client(PoolConfig(ca_bundle=ca_file))
        assert trusted.get(f"{server.url}/x").status_code == 200


def test_httpoxy_proxy_variable_is_ignored_in_a_cgi_process(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With trust_env in a CGI process (REQUEST_METHOD set), HTTP_PROXY may come from a request: it is ignored."""
    for name in ("http_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    http = wsgi_pool.client(PoolConfig(trust_env=True))
    assert http.pools.proxies == {}
    assert http.get(f"{upstream.url}/direct").json()["path"] == "/direct"
