"""``wsgi_pool.patch_requests()``: ``requests.get`` & co. through this process's pools, undone cleanly."""
# ruff: noqa: S113  (calls without a timeout are the point: once patched, the config gives them one)

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests
import requests.api
import responses

import wsgi_pool
from tests.support import CONF, ROOT, get, run_together, wait_for_sizing_lines
from wsgi_pool import PoolConfig
from wsgi_pool.testing import GunicornServer, Upstream

REQUESTS_OWN = requests.api.request


@pytest.fixture
def patched() -> Iterator[None]:
    wsgi_pool.patch_requests(PoolConfig(read_timeout=0.3, retries=0))
    yield
    wsgi_pool.unpatch_requests()


@pytest.mark.usefixtures("patched")
def test_module_level_calls_go_through_the_pools(upstream: Upstream) -> None:
    """Five requests.get, a post and a requests.request: one pooled connection, counted in the
    process's statistics, with the config's read timeout; no cookie kept between calls."""
    assert requests.get(f"{upstream.url}/login?set_cookie=sid=1").status_code == 200
    seen = [requests.get(f"{upstream.url}/{n}").json() for n in range(4)]
    assert [answer["cookie"] for answer in seen] == [None] * 4
    assert requests.post(f"{upstream.url}/p", json={"a": 1}).json()["method"] == "POST"
    assert requests.request("DELETE", f"{upstream.url}/d").json()["method"] == "DELETE"
    assert upstream.stats().connections_opened == 1
    counts = wsgi_pool.client().pools.stats()[upstream.url]
    assert counts.calls == 7
    with pytest.raises(wsgi_pool.UpstreamReadTimeout):
        requests.get(f"{upstream.url}/slow?delay=1")


@pytest.mark.usefixtures("patched")
def test_a_streamed_module_level_call_reads_after_it_returns(upstream: Upstream) -> None:
    response = requests.get(f"{upstream.url}/big?size=100000", stream=True)
    assert sum(len(chunk) for chunk in response.iter_content(8192)) == 100000
    response.close()


@pytest.mark.usefixtures("patched")
def test_a_mock_still_intercepts_patched_calls(upstream: Upstream) -> None:
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{upstream.url}/mocked", body="mocked")
        assert requests.get(f"{upstream.url}/mocked").text == "mocked"
    assert upstream.stats().connections_opened == 0


def test_unpatching_gives_requests_its_own_function_back(upstream: Upstream) -> None:
    wsgi_pool.patch_requests()
    wsgi_pool.patch_requests()  # again: still one layer over requests' own
    assert requests.api.request.__wrapped__ is REQUESTS_OWN  # type: ignore[attr-defined]
    wsgi_pool.unpatch_requests()
    assert requests.api.request is REQUESTS_OWN
    assert requests.request is REQUESTS_OWN
    wsgi_pool.unpatch_requests()  # not patched: nothing to do
    assert requests.api.request is REQUESTS_OWN
    # requests' own again: a session (and a connection) per call.
    for number in range(3):
        assert requests.get(f"{upstream.url}/{number}").status_code == 200
    assert upstream.stats().connections_opened == 3


def test_unpatching_leaves_a_later_replacement_in_place(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    wsgi_pool.patch_requests()
    ours = requests.api.request

    def someone_elses(method: str, url: str, **kwargs: object) -> requests.Response:
        return ours(method, url, **kwargs)  # type: ignore[arg-type]

    for owner in (requests.api, requests):  # either of the two names requests exports
        monkeypatch.setattr(owner, "request", someone_elses)
        with caplog.at_level(logging.WARNING, logger="wsgi_pool"):
            wsgi_pool.unpatch_requests()
        assert owner.request is someone_elses
        assert "replaced after patch_requests()" in caplog.text
        monkeypatch.undo()
    wsgi_pool.unpatch_requests()
    assert requests.api.request is REQUESTS_OWN
    assert requests.request is REQUESTS_OWN


def test_under_gunicorn_every_worker_pools_its_module_level_calls(upstream: Upstream) -> None:
    """The app's module patches at import, in the master (--preload): 80 requests to two
    workers of 4 threads, each making one requests.get: no connection used by two processes,
    at most 8 connections (requests' own: one per call)."""
    env = {"UPSTREAM_URL": upstream.url, "PATCH_REQUESTS": "1"}
    flags = ["-c", CONF, "--preload", "-k", "gthread", "-w", "2", "--threads", "4"]
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        wait_for_sizing_lines(server, 2)
        calls = [lambda: get(server, "/plain-requests")] * 8
        answers = [answer for _ in range(10) for answer in run_together(*calls, timeout=60)]
        server.stop()
    assert [status for status, _ in answers] == [200] * 80
    assert upstream.stats().requests_served == 80
    assert upstream.shared_connections() == {}
    assert upstream.stats().connections_opened <= 8
