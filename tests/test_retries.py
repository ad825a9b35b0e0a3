"""Retries: only where replay is safe, after Retry-After or a backoff, within the count, the deadline and the retry budget."""

from __future__ import annotations

import io

import wsgi_pool
from tests.faults import FaultServer, Peer
from tests.harness import Harness, always, status_then_ok
from wsgi_pool import (
    PoolConfig,
)
from wsgi_pool._retry import RetryBudget


def test_retry_after_is_honoured(harness: Harness) -> None:
    """503 with Retry-After: 1, then 200: the GET succeeds, retried no sooner than asked."""
    server = harness.serve(status_then_ok("503 Service Unavailable", "Retry-After: 1"))
    http = harness.client()
    assert http.get(f"{server.url}/x").status_code == 200
    first, second = server.requests()
    assert second.at - first.at >= 1.0
    harness.assert_intact(http)


def test_retry_after_beyond_the_deadline_returns_the_response(harness: Harness) -> None:
    """A Retry-After that ends past the deadline is not waited for: the 503 is the answer."""
    server = harness.serve(status_then_ok("503 Service Unavailable", "Retry-After: 30"))
    http = harness.client()
    response = http.request("GET", f"{server.url}/x", deadline=2.0)
    assert (response.status_code, response.headers["Retry-After"]) == (503, "30")
    assert len(server.requests()) == 1
    harness.assert_intact(http)


def test_status_retries_only_for_idempotent_requests(harness: Harness) -> None:
    """429 is retried for GET and for a POST with an Idempotency-Key, not for a bare POST."""
    get_server = harness.serve(status_then_ok("429 Too Many Requests"))
    post_server = harness.serve(status_then_ok("429 Too Many Requests"))
    keyed_server = harness.serve(status_then_ok("429 Too Many Requests"))
    http = harness.client()
    assert http.get(f"{get_server.url}/x").status_code == 200
    assert http.post(f"{post_server.url}/x", data=b"1").status_code == 429
    keyed = http.post(f"{keyed_server.url}/x", data=b"1", headers={"Idempotency-Key": "a"})
    assert keyed.status_code == 200
    assert [len(s.requests()) for s in (get_server, post_server, keyed_server)] == [2, 1, 2]
    harness.assert_intact(http)


def test_retried_response_with_a_body_gives_its_connection_back(harness: Harness) -> None:
    """A 503 with a large unread body is dropped before the retry: no slot is lost."""
    server = harness.serve(status_then_ok("503 Service Unavailable", body=b"z" * 200_000))
    http = harness.client(pool_maxsize=1)
    assert http.get(f"{server.url}/x").text == "ok"
    harness.assert_intact(http)


def test_retry_budget_limits_retries_to_a_share_of_traffic(harness: Harness) -> None:
    """Against an upstream failing every call, retries add at most retry_budget of the traffic."""
    server = harness.serve(always("503 Service Unavailable"))
    http = harness.client(
        retries=3, retry_budget=0.5, retry_budget_min_per_second=0.0, backoff_factor=0.0
    )
    statuses = [http.get(f"{server.url}/{i}").status_code for i in range(20)]
    assert statuses == [503] * 20
    assert len(server.requests()) == 30  # 20 calls + 10 retries, not 20 x 4
    found = http.pools.stats()[server.url]
    assert (found.retries, found.retries_denied) == (10, 20)
    harness.assert_intact(http)


def _always_503(peer: Peer) -> None:
    while peer.read_request():
        peer.respond("503 Service Unavailable", b"no", ("Retry-After: soon",))


def test_unreadable_retry_after_falls_back_to_backoff_and_streamed_bodies_are_not_retried() -> None:
    """'Retry-After: soon' is ignored (backoff applies); a body that cannot be re-sent is not retried."""
    with FaultServer(_always_503) as server:
        http = wsgi_pool.client(PoolConfig(retries=2, backoff_factor=0.01))
        assert http.get(f"{server.url}/a").status_code == 503
        assert len(server.requests()) == 3
        assert http.put(f"{server.url}/b", data=io.BytesIO(b"x")).status_code == 503
        assert len(server.requests()) == 4
        http.close()
        http.pools.close()


def test_retry_budget_allows_a_floor_and_a_share() -> None:
    """With no traffic, the floor allows retries; the share grows with the requests recorded."""
    budget = RetryBudget(ratio=0.5, per_second=0.1)  # floor: 1 retry per 10 s window
    assert budget.try_retry()
    assert not budget.try_retry()
    for _ in range(4):
        budget.record_request()
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]


def test_an_idempotency_key_makes_a_request_replay_safe_whatever_its_headers() -> None:
    """An ``Idempotency-Key`` (any case) makes a POST safe to send twice, in requests' headers
    and in a plain dict a tool set."""
    from requests.structures import CaseInsensitiveDict  # noqa: PLC0415

    from wsgi_pool._fast.headers import QuickHeaders  # noqa: PLC0415
    from wsgi_pool._retry import replay_safe  # noqa: PLC0415

    for kind in (dict, CaseInsensitiveDict, QuickHeaders):
        assert replay_safe("POST", kind({"idempotency-KEY": "k"}))
        assert not replay_safe("POST", kind({"X-Other": "k"}))
    assert replay_safe("get", None)
    assert not replay_safe("POST", None)
