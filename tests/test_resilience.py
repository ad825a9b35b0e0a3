"""Deadlines, retries, budgets and error translation, unit by unit (the fault suite runs them end to end)."""

from __future__ import annotations

import io
import logging
import re
import socket
import time
from typing import Any

import pytest
import requests
from urllib3 import HTTPConnectionPool
from urllib3.connection import HTTPConnection
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError
from urllib3.util import Timeout

import wsgi_pool
from tests.faults import FaultServer, Peer
from wsgi_pool import (
    ConfigError,
    DeadlineExceeded,
    PoolConfig,
    UpstreamConnectionError,
    UpstreamSettings,
    UpstreamUnreachable,
    size_pools,
)
from wsgi_pool._adapter import live_pools
from wsgi_pool._deadline import Deadline, Watchdog, incoming_budget
from wsgi_pool._origins import normalize_origin, origin_of
from wsgi_pool._retry import RetryBudget, replay_safe
from wsgi_pool._translate import translate
from wsgi_pool.testing import Upstream


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"retries": -1}, "retries: expected a whole number >= 0", id="retries"),
        pytest.param(
            {"retry_statuses": "503"}, "retry_statuses: expected status codes", id="statuses text"
        ),
        pytest.param(
            {"retry_statuses": {99}}, "retry_statuses: 99 is not an HTTP status", id="status"
        ),
        pytest.param(
            {"deadline_headers": "X-A"},
            "deadline_headers: expected header names",
            id="headers text",
        ),
        pytest.param(
            {"deadline_headers": ("X A",)}, "deadline_headers: 'X A' is not a header", id="header"
        ),
        pytest.param(
            {"retry_budget": 1.5}, "retry_budget: expected a fraction from 0 to 1", id="budget"
        ),
        pytest.param(
            {"backoff_factor": -1},
            "backoff_factor: expected a finite number of seconds >= 0",
            id="backoff",
        ),
        pytest.param(
            {"deadline": 0}, "deadline: expected a finite number of seconds > 0", id="deadline"
        ),
        pytest.param(
            {"max_response_bytes": 0},
            "max_response_bytes: expected a whole number >= 1",
            id="limit",
        ),
        pytest.param(
            {"upstreams": []}, "upstreams: expected a mapping of origin", id="upstreams list"
        ),
        pytest.param({"upstreams": {1: {}}}, "upstreams: 1 is not an origin", id="origin type"),
        pytest.param(
            {"upstreams": {"ftp://x": {}}}, "upstreams: 'ftp://x' is not an origin", id="scheme"
        ),
        pytest.param({"upstreams": {"https://x:99999": {}}}, "is not an origin", id="port"),
        pytest.param({"upstreams": {"https://x/api": {}}}, "remove the path", id="path"),
        pytest.param(
            {"upstreams": {"https://x": 5}}, "expected UpstreamSettings or a mapping", id="value"
        ),
        pytest.param(
            {"upstreams": {"https://x": {"speed": 1}}}, "upstreams['https://x']: ", id="field"
        ),
        pytest.param(
            {"upstreams": {"https://x": {"deadline": -1}}},
            "upstreams['https://x']: deadline",
            id="bad",
        ),
    ],
)
def test_bad_resilience_settings_name_setting_and_value(
    settings: dict[str, Any], message: str
) -> None:
    """Each new setting is validated at construction, with the setting named."""
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        PoolConfig(**settings)


def test_upstreams_from_the_environment_must_be_a_json_object() -> None:
    """WSGI_POOL_UPSTREAMS is JSON; a list is refused with the variable named."""
    with pytest.raises(ConfigError, match="WSGI_POOL_UPSTREAMS="):
        PoolConfig.from_env({"WSGI_POOL_UPSTREAMS": "[1]"})


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
    ("config", "deadline", "reason"),
    [
        pytest.param(PoolConfig(), 20.0, "default", id="no server"),
        pytest.param(
            PoolConfig(worker_timeout=10),
            7.5,
            "3/4 of the worker timeout of 10 s",
            id="short timeout",
        ),
        pytest.param(
            PoolConfig(worker_timeout=60),
            20.0,
            "default, below the worker timeout of 60 s",
            id="long",
        ),
        pytest.param(PoolConfig(worker_timeout=0), 20.0, "default", id="timeout off"),
        pytest.param(
            PoolConfig(worker_timeout=10, deadline=3), 3.0, "set explicitly", id="explicit"
        ),
    ],
)
def test_the_default_deadline_stays_below_the_worker_timeout(
    config: PoolConfig, deadline: float, reason: str
) -> None:
    """size_pools derives the deadline and says why."""
    sizing = size_pools(config)
    assert (sizing.deadline, sizing.reasons["deadline"]) == (deadline, reason)
    assert sizing.warnings == ()


def test_deadlines_above_the_worker_timeout_are_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An explicit deadline (or an upstream's) not below the worker timeout is logged as a warning."""
    config = PoolConfig(
        worker_timeout=10,
        deadline=12,
        upstreams={
            "http://a": UpstreamSettings(deadline=30),
            "http://b": UpstreamSettings(retries=0),
        },
    )
    assert size_pools(config).warnings == (
        "deadline=12 s is not below the worker timeout of 10 s: a sync worker is killed before a "
        "slow call ends, and its client gets no clean error",
        "upstreams['http://a:80'].deadline=30 s is not below the worker timeout of 10 s",
    )
    caplog.set_level(logging.WARNING, logger="wsgi_pool")
    wsgi_pool.client(config).pools  # noqa: B018  (building the pools logs)
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]


def test_per_call_deadline_is_validated(upstream: Upstream) -> None:
    """A bad deadline argument is refused before anything is sent."""
    http = wsgi_pool.client()
    with pytest.raises(ConfigError, match="deadline"):
        http.request("GET", upstream.url, deadline=-1)
    with pytest.raises(ConfigError, match="deadline"), wsgi_pool.deadline(float("nan")):
        pass
    assert upstream.stats().requests_served == 0


def test_a_block_deadline_already_spent_fails_before_sending(upstream: Upstream) -> None:
    """Inside a deadline block whose time is up, a call raises DeadlineExceeded and sends nothing."""
    http = wsgi_pool.client()
    with wsgi_pool.deadline(0.01):
        time.sleep(0.05)
        with pytest.raises(DeadlineExceeded, match="while starting"):
            http.get(upstream.url)
    assert upstream.stats().requests_served == 0


def test_block_deadlines_nest_and_the_sooner_wins(upstream: Upstream) -> None:
    """An inner block cannot lengthen an outer one."""
    http = wsgi_pool.client()
    with wsgi_pool.deadline(0.3), wsgi_pool.deadline(30), pytest.raises(DeadlineExceeded) as caught:
        http.get(f"{upstream.url}/slow?delay=2")
    assert caught.value.deadline <= 0.3


def test_the_adapter_alone_applies_the_default_deadline(upstream: Upstream) -> None:
    """adapter.send outside a client's call still gets a deadline, per upstream."""
    http = wsgi_pool.client(PoolConfig(upstreams={upstream.url: UpstreamSettings(deadline=0.3)}))
    prepared = requests.Request("GET", f"{upstream.url}/slow?delay=2").prepare()
    with pytest.raises(DeadlineExceeded):
        http.pools.adapter.send(prepared)
    assert (
        http.pools.adapter.send(requests.Request("GET", upstream.url).prepare()).status_code == 200
    )


@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param((2, 0.2), id="tuple"),
        pytest.param(Timeout(connect=2, read=0.2), id="urllib3 Timeout"),
        pytest.param(0.2, id="number"),
    ],
)
def test_caller_timeouts_are_per_operation(upstream: Upstream, timeout: Any) -> None:
    """A timeout given as requests takes it bounds each read; the deadline still bounds the call."""
    http = wsgi_pool.client()
    with pytest.raises(wsgi_pool.UpstreamReadTimeout):
        http.get(f"{upstream.url}/slow?delay=1", timeout=timeout)


def test_no_timeout_at_all_is_still_bounded_by_the_deadline(upstream: Upstream) -> None:
    """timeout=(None, None) means no per-read limit; the deadline ends the call."""
    http = wsgi_pool.client(PoolConfig(deadline=0.3))
    with pytest.raises(DeadlineExceeded):
        http.get(f"{upstream.url}/slow?delay=2", timeout=(None, None))


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


def test_a_closed_pool_left_in_the_manager_is_replaced(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """A pool closed under a call (the pools closing at worker exit) is dropped and the call goes on."""
    http = wsgi_pool.client()
    http.get(upstream.url)
    http.get(second_upstream.url)
    for pool in live_pools(http.pools.adapter.poolmanager):
        if pool.port == int(upstream.url.rsplit(":", 1)[1]):
            pool.close()  # closed, but still cached by the pool manager
    assert http.get(upstream.url).status_code == 200
    second_port = int(second_upstream.url.rsplit(":", 1)[1])
    kept = [
        p.num_requests for p in live_pools(http.pools.adapter.poolmanager) if p.port == second_port
    ]
    assert kept == [1]  # the open pool was kept


def test_retry_budget_allows_a_floor_and_a_share() -> None:
    """With no traffic, the floor allows retries; the share grows with the requests recorded."""
    budget = RetryBudget(ratio=0.5, per_second=0.1)  # floor: 1 retry per 10 s window
    assert budget.try_retry()
    assert not budget.try_retry()
    for _ in range(4):
        budget.record_request()
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]


def test_replay_safety() -> None:
    """Idempotent methods and an Idempotency-Key (any case) are safe to send twice; POST is not."""
    assert replay_safe("get", None)
    assert replay_safe("POST", {"idempotency-key": "1"})
    assert not replay_safe("POST", {"Content-Type": "x"})
    assert not replay_safe("PATCH", None)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, None, id="absent"),
        pytest.param({"HTTP_X_REQUEST_DEADLINE": "abc"}, None, id="not a number"),
        pytest.param({"HTTP_X_REQUEST_DEADLINE": "0"}, None, id="zero"),
        pytest.param({"HTTP_X_REQUEST_DEADLINE": "-5"}, None, id="negative"),
        pytest.param({"HTTP_X_REQUEST_DEADLINE": "3600001"}, None, id="over an hour"),
        pytest.param({"HTTP_X_REQUEST_DEADLINE": "١٢"}, None, id="non-ascii digits"),
        pytest.param({"HTTP_X_REQUEST_DEADLINE": " 250 "}, 0.25, id="padded"),
        pytest.param(
            {"HTTP_X_REQUEST_DEADLINE": "x", "HTTP_X_ENVOY_EXPECTED_RQ_TIMEOUT_MS": "1500"},
            1.5,
            id="second header",
        ),
    ],
)
def test_incoming_budget_is_validated(environ: dict[str, str], expected: float | None) -> None:
    """Only whole milliseconds from 1 to an hour count; anything else is ignored."""
    headers = PoolConfig().deadline_headers
    before = time.monotonic()
    found = incoming_budget(environ, headers)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert before + expected <= found <= time.monotonic() + expected


def test_deadline_and_watchdog_bookkeeping() -> None:
    """A stopped watchdog arms nothing; re-arming a connection moves it; cutting a closed one is harmless."""

    class Conn:
        sock: socket.socket | None = None

    first, second = Deadline(60), Deadline(60)
    assert re.fullmatch(r"<Deadline 60 s, (59|60)\.\d{3} s left>", repr(first))
    watchdog = Watchdog()
    conn = Conn()
    watchdog.disarm(conn)  # nothing armed: nothing to do
    watchdog.arm(first, conn)
    watchdog.arm(second, conn)
    assert watchdog._armed == {conn: second}
    assert watchdog.pending == 1
    watchdog._cut(second, conn)  # no socket: marked expired, nothing cut
    assert second.expired
    assert watchdog.cuts == 0
    watchdog.close()
    third = Deadline(1)
    watchdog.arm(third, conn)
    assert watchdog.pending == 0


def test_translate_names_what_failed() -> None:
    """Name resolution and other connect failures become UpstreamUnreachable; the rest a connection error."""
    pool = HTTPConnectionPool("example.invalid")
    conn = HTTPConnection("example.invalid")
    resolution = requests.exceptions.ConnectionError(
        MaxRetryError(
            pool, "/", NameResolutionError("example.invalid", conn, socket.gaierror("no"))
        )
    )
    unreachable = requests.exceptions.ConnectionError(
        MaxRetryError(pool, "/", NewConnectionError(conn, "Network is unreachable"))
    )
    other = requests.exceptions.ConnectionError("something else")
    found = [
        translate(exc, upstream="http://example.invalid:80", deadline=None, where="x")
        for exc in (resolution, unreachable, other)
    ]
    assert [type(error) for error in found] == [
        UpstreamUnreachable,
        UpstreamUnreachable,
        UpstreamConnectionError,
    ]
    assert "name resolution failed" in str(found[0])
    assert translate(found[2], upstream="-", deadline=None, where="x") is found[2]
    decoding = requests.exceptions.ContentDecodingError("bad gzip")
    assert translate(decoding, upstream="-", deadline=Deadline(0), where="x") is decoding


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
