"""The request-scoped client: the requests API over the process's pools, sharing nothing else."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import requests
from requests.adapters import HTTPAdapter

import wsgi_pool
from wsgi_pool import (
    Client,
    PoolConfig,
)
from wsgi_pool.testing import Upstream


def test_calls_reuse_one_pooled_connection(upstream: Upstream) -> None:
    """Sequential calls from many clients of one process share one keep-alive connection."""
    for number in range(5):
        response = wsgi_pool.client().get(
            f"{upstream.url}/n/{number}", headers={"X-Tag": str(number)}
        )
        assert isinstance(response, requests.Response)
        assert response.json()["tag"] == str(number)
    assert upstream.stats().connections_opened == 1
    assert upstream.stats().requests_served == 5


def test_every_requests_verb_goes_through_the_pool(upstream: Upstream) -> None:
    """request/get/post/put/patch/delete/head/options all work and return requests.Response."""
    http = wsgi_pool.client()
    url = f"{upstream.url}/verbs"
    assert http.request("GET", url).json()["method"] == "GET"
    assert http.get(url, params={"a": "1"}).json()["path"] == "/verbs?a=1"
    assert http.post(url, json={"x": 1}).json()["body_length"] == len(json.dumps({"x": 1}))
    assert http.put(url, data=b"abc").json()["method"] == "PUT"
    assert http.patch(url, data="z").json()["method"] == "PATCH"
    assert http.delete(url).json()["method"] == "DELETE"
    assert http.options(url).json()["method"] == "OPTIONS"
    head = http.head(url)
    assert (head.status_code, head.content) == (200, b"")
    assert upstream.stats().connections_opened == 1


def test_close_releases_streamed_responses(upstream: Upstream) -> None:
    """close() gives back the connection of a streamed response nobody read; the pools stay open."""
    config = PoolConfig(pool_maxsize=1, pool_timeout=0.2)
    with wsgi_pool.client(config) as http:
        http.get(f"{upstream.url}/big?size=2000000", stream=True)
        assert http.pools.stats()[upstream.url].in_use == 1
    assert http.pools.stats()[upstream.url].in_use == 0
    assert wsgi_pool.client(config).get(f"{upstream.url}/next").status_code == 200


def test_module_level_client_keeps_no_cookies(upstream: Upstream) -> None:
    """wsgi_pool.client() never stores an upstream's Set-Cookie; explicit cookies= still go out."""
    http = wsgi_pool.client()
    http.get(f"{upstream.url}/login?set_cookie=sid=alice")
    assert http.get(f"{upstream.url}/whoami").json()["cookie"] is None
    assert http.get(f"{upstream.url}/whoami", cookies={"sid": "bob"}).json()["cookie"] == "sid=bob"
    assert len(http.cookies) == 0


def test_released_streams_are_not_kept(upstream: Upstream) -> None:
    """A long-lived client keeps only the streamed responses that still hold a connection."""
    http = wsgi_pool.client()
    for number in range(5):
        http.get(f"{upstream.url}/s/{number}", stream=True).close()
    open_stream = http.get(f"{upstream.url}/s/last?size=2000000", stream=True)
    assert http._streams == [open_stream]
    http.close()
    assert http._streams is None


def test_handler_mounts_and_headers_stay_local(upstream: Upstream) -> None:
    """A mounted adapter and changed headers affect only that client, and close() closes the mount."""
    mine = Client()
    other = Client()
    mounted = HTTPAdapter()
    mine.mount(f"{upstream.url}/private", mounted)
    assert mine.get_adapter(f"{upstream.url}/public") is wsgi_pool.adapter()
    mine.headers["X-Secret"] = "s3cret"
    assert mine.get_adapter(f"{upstream.url}/private/x") is mounted
    assert other.get_adapter(f"{upstream.url}/private/x") is wsgi_pool.adapter()
    assert other.get(f"{upstream.url}/x").json()["headers"].get("X-Secret") is None
    assert mine.get(f"{upstream.url}/private/x").json()["headers"]["X-Secret"] == "s3cret"
    assert len(mounted.poolmanager.pools) == 1
    mine.close()
    assert len(mounted.poolmanager.pools) == 0


def test_unknown_scheme_is_invalid_schema() -> None:
    """A URL no adapter serves raises requests' InvalidSchema, as a Session would."""
    with pytest.raises(requests.exceptions.InvalidSchema):
        Client().get("ftp://127.0.0.1/file")


def test_repr_shows_the_pools(upstream: Upstream) -> None:
    """The client's repr shows the process's pools and their live state."""
    http = wsgi_pool.client(PoolConfig(pool_maxsize=2))
    http.get(f"{upstream.url}/x")
    text = repr(http)
    assert text.startswith(
        f"<wsgi_pool.Client over <WorkerPools pid={os.getpid()} pool_maxsize=2 pool_block=True ["
    )
    assert (
        f"{upstream.url}: Requests: 0 active, 0 waiting | "
        f"Connections: 0 in use, 1 idle, 1 opened]>>"
    ) in text


def test_a_client_of_pools_of_ones_own_sends_through_them(upstream: Upstream) -> None:
    """``Client(pools=...)`` with pools the caller built: the calls go through those pools, under
    their config; the process builds no pools of its own."""
    own = wsgi_pool.WorkerPools(PoolConfig(pool_maxsize=3, deadline=7.0))
    with Client(pools=own) as http:
        assert http.get(f"{upstream.url}/own").json()["path"] == "/own"
        assert http.config.deadline == 7.0
        assert http.pools is own
    assert own.stats()[upstream.url].calls == 1
    assert wsgi_pool._process.built_here() == []
    own.close()


def test_the_adapters_are_mounted_as_in_requests() -> None:
    """``client.adapters`` has requests' two prefixes (code that reads
    ``session.adapters["https://"]`` finds the adapter that sends)."""
    with wsgi_pool.client() as http:
        assert list(http.adapters) == ["https://", "http://"]
        assert http.adapters["https://"] is http.get_adapter("https://example.test/")
        assert http.adapters["http://"] is wsgi_pool.adapter()


def test_a_client_of_this_processs_pools_for_a_config_keeps_that_config(
    upstream: Upstream,
) -> None:
    """``Client(pools=P)`` where P are this process's pools for a config with a 0.5 s deadline:
    the calls go through P under that config."""
    config = PoolConfig(deadline=0.5, retries=0)
    shared = wsgi_pool.client(config).pools
    with Client(pools=shared) as http:
        assert http.pools is shared
        assert http.config.deadline == 0.5
        with pytest.raises(wsgi_pool.DeadlineExceeded):
            http.get(f"{upstream.url}/slow?delay=1.5")
    assert shared.stats()[upstream.url].calls == 1


def test_the_pools_serve_a_tool_driving_urllib3_itself(upstream: Upstream) -> None:
    """A tool that drives the adapter's urllib3 pool manager itself (no call around it) gets its
    answer, and the connection goes back to the pool."""
    pools = wsgi_pool.client().pools
    answer = pools.adapter.poolmanager.request("GET", f"{upstream.url}/direct")
    assert answer.status == 200
    assert json.loads(answer.data)["path"] == "/direct"
    found = pools.stats()[upstream.url]
    assert (found.in_use, found.idle) == (0, 1)


def test_clients_adapters_and_configs_pickle(upstream: Upstream) -> None:
    """A pickled client comes back usable, with its config, headers and cookies (requests'
    attributes); the mountable adapter and a config with upstreams and proxies round-trip."""
    config = PoolConfig(
        deadline=3.0,
        upstreams={upstream.url: wsgi_pool.UpstreamSettings(read_timeout=2.0)},
        proxies={"https": "http://proxy.internal:3128"},
    )
    again = pickle.loads(pickle.dumps(config))  # noqa: S301  (our own bytes)
    assert again == config
    assert again.for_upstream(upstream.url).read_timeout == 2.0
    http = Client(PoolConfig(deadline=3.0), keep_cookies=True)
    http.headers["X-Tag"] = "a"
    http.cookies.set("session", "s1")
    copy = pickle.loads(pickle.dumps(http))  # noqa: S301
    assert copy.config.deadline == 3.0
    echoed = copy.get(f"{upstream.url}/echo").json()
    assert (echoed["tag"], echoed["cookie"]) == ("a", "session=s1")
    mounted = pickle.loads(pickle.dumps(wsgi_pool.adapter(PoolConfig(deadline=3.0))))  # noqa: S301
    assert repr(mounted) == "<wsgi_pool.ProcessAdapter config=own>"
    assert repr(wsgi_pool.adapter()) == "<wsgi_pool.ProcessAdapter config=default>"
    session = requests.Session()
    session.mount("http://", mounted)
    assert session.get(f"{upstream.url}/mounted").json()["path"] == "/mounted"
    mounted.close()  # closes nothing: the pools are the process's
    assert session.get(f"{upstream.url}/again").json()["path"] == "/again"
