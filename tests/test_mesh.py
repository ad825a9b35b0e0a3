"""Behind a service mesh's sidecar (``mesh=True``): the sidecar retries and balances, we
tell it our budget, and an answer an overloaded Envoy made is never retried."""

from __future__ import annotations

import pytest
import requests

import wsgi_pool
from wsgi_pool import ConfigError, PoolConfig
from wsgi_pool.testing import Upstream

MESH_HEADER = "x-envoy-upstream-rq-timeout-ms"


def test_each_try_tells_the_sidecar_the_time_left(upstream: Upstream) -> None:
    """Every call carries the milliseconds its deadline leaves; the caller's own request (an
    SDK's session may send it again) is left as it was."""
    with requests.Session() as session:
        session.mount("http://", wsgi_pool.adapter(PoolConfig(mesh=True, deadline=2.0)))
        prepared = session.prepare_request(requests.Request("GET", f"{upstream.url}/a"))
        assert session.send(prepared).status_code == 200
        assert MESH_HEADER not in prepared.headers
    sent = upstream.seen("/a")[0].headers
    assert 0 < int(sent[MESH_HEADER]) <= 2000


def test_no_header_without_mesh(upstream: Upstream) -> None:
    with wsgi_pool.client(PoolConfig()) as http:
        http.get(f"{upstream.url}/a").raise_for_status()
    assert MESH_HEADER not in {name.lower() for name in upstream.seen("/a")[0].headers}


def test_the_mesh_retries_statuses_not_us(upstream: Upstream) -> None:
    """A 503 is retried by us only without a mesh."""
    upstream.answer("/busy", status=503, body=b"busy")
    for mesh, sent in ((True, 1), (False, 3)):
        upstream.reset()
        config = PoolConfig(mesh=mesh, retries=2, backoff_factor=0.0)
        with wsgi_pool.client(config) as http:
            assert http.get(f"{upstream.url}/busy").status_code == 503
        assert len(upstream.seen("/busy")) == sent


def test_an_overloaded_envoys_answer_is_never_retried(upstream: Upstream) -> None:
    """Even without a mesh setting: a 503 with x-envoy-overloaded is the mesh shedding load."""
    upstream.answer("/shed", status=503, body=b"", headers={"x-envoy-overloaded": "true"})
    with wsgi_pool.client(PoolConfig(retries=2, backoff_factor=0.0)) as http:
        assert http.get(f"{upstream.url}/shed").status_code == 503
        assert http.pools.stats()[upstream.url].retries == 0
    assert len(upstream.seen("/shed")) == 1


def test_no_fleet_budget_in_a_mesh() -> None:
    with pytest.raises(ConfigError, match=r"fleet_connections: 64 is not used with mesh=True"):
        PoolConfig(mesh=True, fleet_connections=64)


def test_an_https_call_carries_no_sidecar_header(https_upstream: Upstream, ca_file: str) -> None:
    """The sidecar cannot read an https call's headers: only the upstream would see it."""
    with wsgi_pool.client(PoolConfig(mesh=True, ca_bundle=ca_file)) as http:
        http.get(f"{https_upstream.url}/a").raise_for_status()
    assert MESH_HEADER not in {name.lower() for name in https_upstream.seen("/a")[0].headers}
