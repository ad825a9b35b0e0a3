"""The deadline: every call ends by it, whatever the upstream does, and a budget only ever shortens it."""

from __future__ import annotations

import datetime
import logging
import re
import socket
import time
from collections.abc import Callable
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
import requests

import wsgi_pool
from tests.harness import FAST, Harness, always, drip_body, drip_headers, never_answer
from tests.support import wait_until
from wsgi_pool import (
    ConfigError,
    DeadlineExceeded,
    PoolConfig,
    UpstreamSettings,
    WorkerPools,
    WsgiPoolError,
    _process,
    size_pools,
)
from wsgi_pool._deadline import Deadline, Watchdog, incoming_budget
from wsgi_pool.testing import Upstream


def test_one_byte_drip_body_ends_at_the_deadline(harness: Harness) -> None:
    """A byte every 200 ms never trips the read timeout; the deadline ends the call."""
    server = harness.serve(drip_body)
    http = harness.client(read_timeout=1.0)
    with pytest.raises(DeadlineExceeded, match="deadline of 1 s exceeded while reading the body"):
        http.request("GET", f"{server.url}/drip", deadline=1.0)
    harness.assert_intact(http)


def test_one_byte_drip_headers_end_at_the_deadline(harness: Harness) -> None:
    """A status line and headers dripped a byte at a time end at the deadline too."""
    server = harness.serve(drip_headers)
    http = harness.client(read_timeout=1.0)
    with pytest.raises(DeadlineExceeded), wsgi_pool.deadline(1.0):
        http.get(f"{server.url}/drip")
    assert http.pools.watchdog.cuts == 1
    harness.assert_intact(http)


def test_drip_into_a_streamed_body_ends_at_the_deadline(harness: Harness) -> None:
    """The deadline also covers a streamed body read after the call returned."""
    server = harness.serve(drip_body)
    http = harness.client(read_timeout=1.0)
    response = http.request("GET", f"{server.url}/drip", deadline=1.0, stream=True)
    with pytest.raises(DeadlineExceeded):
        for _ in response.iter_content(100):
            pass
    harness.assert_intact(http)


def test_retries_stop_at_the_deadline(harness: Harness) -> None:
    """Backoff never sleeps past the deadline: the last answer is returned in time."""
    server = harness.serve(always("503 Service Unavailable", "Retry-After: 1"))
    http = harness.client(retries=10)
    assert http.request("GET", f"{server.url}/x", deadline=2.5).status_code == 503
    assert 2 <= len(server.requests()) <= 3
    harness.assert_intact(http)


def test_per_upstream_deadline(harness: Harness) -> None:
    """upstreams[origin].deadline applies to that origin; others keep the config's."""
    server = harness.serve(never_answer)
    http = harness.client(upstreams={server.url: {"deadline": 0.3}}, read_timeout=5.0)
    with pytest.raises(DeadlineExceeded) as caught:
        http.get(f"{server.url}/x")
    assert caught.value.deadline == 0.3
    assert isinstance(caught.value, requests.exceptions.Timeout)
    assert isinstance(caught.value, WsgiPoolError)
    assert http.pools.deadline_for(harness.healthy.url) == FAST["deadline"]
    harness.assert_intact(http)


def test_incoming_budget_bounds_outbound_calls_and_is_passed_on(harness: Harness) -> None:
    """An X-Request-Deadline budget ends outbound calls and, with propagate_deadline, goes to upstreams that get propagation."""
    server = harness.serve(never_answer)
    config = PoolConfig(
        **{**FAST, "read_timeout": 5.0},
        propagate_deadline=True,
        upstreams={harness.healthy.url: UpstreamSettings(propagate=True)},
    )
    seen: dict[str, Any] = {}

    def app(environ: Any, start_response: Any) -> list[bytes]:
        http = wsgi_pool.client_from(environ)
        seen["echo"] = http.get(f"{harness.healthy.url}/echo").json()["headers"]
        try:
            http.get(f"{server.url}/x")
        except DeadlineExceeded as exc:
            seen["error"] = exc
        start_response("200 OK", [])
        return [b""]

    environ: dict[str, Any] = {"HTTP_X_REQUEST_DEADLINE": "400"}
    setup_testing_defaults(environ)
    wsgi_pool.PoolMiddleware(app, config)(environ, lambda *a: lambda b: None)
    assert 0 < int(seen["echo"]["X-Request-Deadline"]) <= 400
    assert isinstance(seen["error"], DeadlineExceeded)
    assert ["x-request-deadline" in r.headers for r in server.requests()] == [False]
    assert seen["error"].deadline <= 0.4
    harness.clients.append(wsgi_pool.client(config))
    harness.assert_intact(harness.clients[-1])


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


class _Breaking:
    """A connection whose socket cannot even be looked at."""

    @property
    def sock(self) -> socket.socket:
        raise TypeError("not a socket")


def test_the_watchdog_survives_a_cut_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    """A cut that raises is logged; the watchdog goes on and cuts the next connection due."""
    left, right = socket.socketpair()
    try:

        class Conn:
            sock = left

        watchdog = Watchdog()
        first, second = Deadline(0.05), Deadline(0.2)
        watchdog.arm(first, _Breaking())
        watchdog.arm(second, Conn())
        assert wait_until(lambda: second.expired)
        assert first.expired
        assert watchdog.cuts == 1
        assert left.recv(1) == b""  # shut down: a reader blocked on it would wake
        assert "the deadline watchdog failed" in caplog.text
        watchdog.close()
    finally:
        left.close()
        right.close()


def test_a_stopped_watchdog_thread_is_started_again() -> None:
    """Whatever ends the watchdog's thread, the next armed call starts a new one and is cut."""
    watchdog = Watchdog()

    class Conn:
        sock = None

    watchdog.arm(Deadline(60), Conn())
    first = watchdog._thread
    assert first is not None
    with watchdog._cond:  # the thread ends as if something had stopped it
        watchdog._stopped = True
        watchdog._cond.notify()
    first.join(5)
    assert watchdog._thread is None
    watchdog._stopped = False
    deadline = Deadline(0.05)
    watchdog.arm(deadline, Conn())
    assert watchdog._thread is not first
    assert wait_until(lambda: deadline.expired)
    watchdog.close()


def test_the_os_socket_under_layers_of_tls() -> None:
    """The watchdog finds the OS socket under a TLS-in-TLS transport, and gives up past a few layers."""
    from wsgi_pool._deadline import os_socket  # noqa: PLC0415

    class Layer:
        def __init__(self, inner: Any) -> None:
            self.socket = inner

    left, right = socket.socketpair()
    try:
        assert os_socket(Layer(Layer(left))) is left
        assert os_socket(None) is None
        assert os_socket(Layer(Layer(Layer(Layer(Layer(left)))))) is None
    finally:
        left.close()
        right.close()


def test_a_connect_outside_a_call_keeps_its_whole_timeout() -> None:
    """With no call's deadline bound (a pool used directly), an address gets the connect timeout."""
    from wsgi_pool._connection import _share  # noqa: PLC0415

    assert _share(5.0, 3) == 5.0
    token = wsgi_pool._deadline.bind(Deadline(3.0))
    try:
        assert _share(5.0, 3) == pytest.approx(1.0, abs=0.05)
        assert _share(None, 2) == pytest.approx(1.5, abs=0.05)
    finally:
        wsgi_pool._deadline.unbind(token)


def test_a_callers_own_pools_get_a_running_watchdog_after_the_worker_stopped_one(
    upstream: Upstream,
) -> None:
    """close_process_pools() (the worker_exit hook) stops the process's watchdog; pools a
    caller made still cut their calls at the deadline (a new watchdog starts)."""
    own = WorkerPools(PoolConfig(deadline=0.5, retries=0))
    with wsgi_pool.Client(pools=own) as http:
        assert http.get(f"{upstream.url}/warm").status_code == 200
        _process.close_process_pools()
        with pytest.raises(DeadlineExceeded):
            http.get(f"{upstream.url}/slow?delay=3")
        assert own.watchdog.cuts == 1  # cut on the wire (before: a stopped watchdog, a 200)
    own.close()


def _instant(seconds_from_now: float, *, zone: str = "Z", digits: int = 6) -> str:
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=seconds_from_now
    )
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = map(int, zone[1:].split(":"))
        moment = moment.astimezone(
            datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))
        )
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}"[:digits]
    return f"{stamp}{'.' + fraction if digits else ''}{zone}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(lambda: _instant(2.0), 2.0, id="talisker's form, Z"),
        pytest.param(lambda: _instant(2.0, digits=3), 2.0, id="milliseconds"),
        pytest.param(lambda: _instant(2.0, digits=0), 2.0, id="whole seconds"),
        pytest.param(lambda: _instant(2.0, zone="+05:30"), 2.0, id="an offset"),
        pytest.param(lambda: _instant(2.0, zone="-08:00"), 2.0, id="a negative offset"),
        pytest.param(lambda: _instant(2.0).replace("Z", "z"), 2.0, id="lower-case z"),
        pytest.param(lambda: _instant(-5.0), 0.0, id="already past: no time left"),
        pytest.param(lambda: _instant(2.0).removesuffix("Z"), None, id="no time zone"),
        pytest.param(lambda: _instant(3605.0), None, id="over an hour ahead"),
        pytest.param(lambda: "2026-13-01T00:00:00Z", None, id="month 13"),
        pytest.param(lambda: _instant(2.0).replace("T", " "), None, id="a space, not T"),
        pytest.param(lambda: _instant(2.0) + "x", None, id="trailing text"),
        pytest.param(
            lambda: "\uff12\uff10\uff12\uff16-12-02T10:00:00Z", None, id="non-ascii digits"
        ),
    ],
)
def test_incoming_deadline_as_an_iso_8601_instant(
    value: Callable[[], str], expected: float | None
) -> None:
    """talisker's X-Request-Deadline is an instant: the budget is the time until it (the
    instant's own rounding allowed below); one without a time zone, or past an hour, is
    ignored."""
    environ = {"HTTP_X_REQUEST_DEADLINE": value()}
    before = time.monotonic()
    found = incoming_budget(environ, PoolConfig().deadline_headers)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert before + expected - 1.0 <= found <= time.monotonic() + expected + 0.01


def test_an_instant_deadline_bounds_outbound_calls(harness: Harness) -> None:
    """A request whose instant deadline is 0.4 s ahead: a call that never gets an answer ends
    with DeadlineExceeded within that budget."""
    server = harness.serve(never_answer)
    seen: dict[str, Any] = {}

    def app(environ: Any, start_response: Any) -> list[bytes]:
        try:
            wsgi_pool.client_from(environ).get(f"{server.url}/x")
        except DeadlineExceeded as exc:
            seen["error"] = exc
        start_response("200 OK", [])
        return [b""]

    environ: dict[str, Any] = {"HTTP_X_REQUEST_DEADLINE": _instant(0.4)}
    setup_testing_defaults(environ)
    config = PoolConfig(**{**FAST, "read_timeout": 5.0})
    wsgi_pool.PoolMiddleware(app, config)(environ, lambda *a: lambda b: None)
    assert isinstance(seen["error"], DeadlineExceeded)
    assert seen["error"].deadline <= 0.4


def test_a_block_until_no_moment_changes_nothing() -> None:
    """``until(None)`` (an incoming request with no budget) leaves every deadline as it was."""
    from wsgi_pool import _deadline  # noqa: PLC0415

    with _deadline.until(None):
        assert _deadline._block_ends.get() is None
        with _deadline.until(123.0), _deadline.until(None):
            assert _deadline._block_ends.get() == 123.0
    assert _deadline._block_ends.get() is None
