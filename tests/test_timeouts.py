"""Per-operation timeouts: requests' meaning of ``timeout``, the settings' defaults, and a stalled upstream."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from urllib3.util import Timeout

import wsgi_pool
from tests.harness import Harness, never_answer, stalled_body
from wsgi_pool import (
    DeadlineExceeded,
    PoolConfig,
    UpstreamReadTimeout,
)
from wsgi_pool.testing import Upstream


def test_default_timeouts_apply_when_the_caller_gives_none(upstream: Upstream) -> None:
    """With no timeout argument the config's read timeout applies; an explicit timeout wins."""
    http = wsgi_pool.client(PoolConfig(read_timeout=0.2))
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(f"{upstream.url}/slow?delay=1")
    assert http.get(f"{upstream.url}/slow?delay=0.4", timeout=5).status_code == 200
    settings = http._call_policy().settings_for(upstream.url)
    assert (settings.connect_timeout, settings.read_timeout) == (5.0, 0.2)


@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param((2, 0.2), id="tuple"),
        pytest.param(Timeout(connect=2, read=0.2), id="urllib3 Timeout"),
        pytest.param(Timeout(total=0.2), id="urllib3 Timeout with a total"),
        pytest.param(0.2, id="number"),
    ],
)
def test_caller_timeouts_are_per_operation(upstream: Upstream, timeout: Any) -> None:
    """A timeout given as requests takes it bounds each read; the deadline still bounds the call."""
    http = wsgi_pool.client()
    with pytest.raises(wsgi_pool.UpstreamReadTimeout):
        http.get(f"{upstream.url}/slow?delay=1", timeout=timeout)


def test_a_urllib3_total_that_is_not_reached_lets_the_call_through(upstream: Upstream) -> None:
    """``Timeout(total=2)`` as requests passes it on: a call of 0.3 s answers."""
    http = wsgi_pool.client()
    total: Any = Timeout(total=2.0)  # requests passes a urllib3 Timeout on (its stubs say less)
    assert http.get(f"{upstream.url}/slow?delay=0.3", timeout=total).status_code == 200


def test_no_timeout_at_all_is_still_bounded_by_the_deadline(upstream: Upstream) -> None:
    """timeout=(None, None) means no per-read limit; the deadline ends the call."""
    http = wsgi_pool.client(PoolConfig(deadline=0.3))
    with pytest.raises(DeadlineExceeded):
        http.get(f"{upstream.url}/slow?delay=2", timeout=(None, None))


def test_accept_and_never_answer_is_a_read_timeout(harness: Harness) -> None:
    """A server that reads the request and says nothing: UpstreamReadTimeout, not retried."""
    server = harness.serve(never_answer)
    http = harness.client(read_timeout=0.3)
    with pytest.raises(UpstreamReadTimeout) as caught:
        http.get(f"{server.url}/x")
    assert isinstance(caught.value, requests.exceptions.ReadTimeout)
    assert "Read timed out" in str(caught.value)  # as requests' message says
    assert len(server.requests()) == 1
    harness.assert_intact(http)


def test_stalled_body_is_a_timeout_not_a_connection_error(harness: Harness) -> None:
    """Headers, then silence mid-body: UpstreamReadTimeout (requests would say ConnectionError)."""
    server = harness.serve(stalled_body)
    http = harness.client(read_timeout=0.3)
    with pytest.raises(UpstreamReadTimeout) as caught:
        http.get(f"{server.url}/x")
    assert not isinstance(caught.value, requests.exceptions.ConnectionError)
    harness.assert_intact(http)


def test_stalled_streamed_body_is_a_timeout(harness: Harness) -> None:
    """The same stall read through iter_content of a streamed response."""
    server = harness.serve(stalled_body)
    http = harness.client(read_timeout=0.3)
    response = http.get(f"{server.url}/x", stream=True)
    with pytest.raises(UpstreamReadTimeout):
        b"".join(response.iter_content(10))
    harness.assert_intact(http)


BAD_TIMEOUTS: list[Any] = [
    pytest.param("5", id="text"),
    pytest.param(True, id="bool"),
    pytest.param(0, id="zero"),
    pytest.param(-1, id="negative"),
    pytest.param((1, 2, 3), id="three"),
    pytest.param((None, "x"), id="text in a tuple"),
    pytest.param([1, 2], id="list"),
]


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
def test_a_bad_timeout_is_requests_valueerror(timeout: Any) -> None:
    """Each timeout requests refuses is refused with requests' own ValueError and message."""
    url = "http://127.0.0.1:9/never-sent"
    with pytest.raises(ValueError) as theirs:  # noqa: PT011  (the message is compared below)
        requests.get(url, timeout=timeout)
    with wsgi_pool.client() as http, pytest.raises(ValueError) as ours:  # noqa: PT011
        http.get(url, timeout=timeout)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param(Timeout(connect=2.0, read=3.0), id="urllib3 Timeout"),
        pytest.param((2, 3.0), id="tuple"),
        pytest.param(3, id="int"),
    ],
)
def test_good_timeouts_are_taken_as_requests_takes_them(timeout: Any, upstream: Upstream) -> None:
    """urllib3's Timeout, a tuple and a number all work, as they do with requests."""
    with wsgi_pool.client() as http:
        assert http.get(f"{upstream.url}/x", timeout=timeout).status_code == 200
