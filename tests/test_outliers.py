"""Outlier ejection: an address that keeps failing is skipped, and an upstream whose every
address is ejected fails at once until a probe succeeds.

The state machine on its own first (:class:`Outliers`, a fake clock), then through the
pools against real loopback ports: one that refuses, one that answers 503.
(Replicas behind one name, black-holed: ``test_resilience.py``.)
"""

from __future__ import annotations

import logging
import threading
import types

import pytest
import requests

import wsgi_pool
from tests.proxy import Proxy
from wsgi_pool import (
    ConfigError,
    PoolConfig,
    UpstreamConnectionError,
    UpstreamEjected,
    UpstreamProxyError,
    UpstreamRefused,
    UpstreamUnreachable,
    _outliers,
)
from wsgi_pool._outliers import Ejected, Outliers
from wsgi_pool.testing import Upstream, free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    found = Clock()
    monkeypatch.setattr("wsgi_pool._outliers.time", types.SimpleNamespace(monotonic=found))
    return found


def outliers(
    failures: int | None = 3, answers: int | None = None, *, fail_fast: bool = True
) -> Outliers:
    return Outliers(
        failures=failures, answers=answers, base=10.0, longest=25.0, fail_fast=fail_fast
    )


def timed_out(found: Outliers, address: str, port: int = 80) -> float | None:
    return found.connect_failed(address, port, timed_out=True)


def test_a_streak_of_failed_connects_ejects(clock: Clock) -> None:
    found = outliers()
    assert found.admit("h", 80, ["a", "b"]) == ["a", "b"]
    assert [timed_out(found, "a") for _ in range(2)] == [None, None]
    assert timed_out(found, "a") == 10.0
    assert found.admit("h", 80, ["a", "b"]) == ["b"]
    assert found.admit("h", 443, ["a"]) == ["a"]  # another port: another address


def test_a_success_breaks_the_streak(clock: Clock) -> None:
    found = outliers()
    timed_out(found, "a")
    timed_out(found, "a")
    found.connected("b", 80)  # another address's success: a's streak goes on
    found.connected("a", 80)
    assert timed_out(found, "a") is None
    assert timed_out(found, "a") is None
    assert found.admit("h", 80, ["a"]) == ["a"]


def test_every_address_timed_out_fails_at_once_with_their_times(clock: Clock) -> None:
    found = outliers(failures=1)
    timed_out(found, "a")
    clock.now += 4
    found.connect_failed("b", 80, timed_out=False)
    with pytest.raises(Ejected) as raised:
        found.admit("h", 80, ["a", "b"])
    assert raised.value.ejected == [("a", 6.0), ("b", 10.0)]
    assert (raised.value.host, raised.value.port) == ("h", 80)


def test_every_address_ejected_is_tried_unless_fail_fast(clock: Clock) -> None:
    """As Envoy's panic threshold: with no address left, all are tried; and refused connects
    never fail fast (a restarting server refuses for a moment, and a refusal costs nothing)."""
    panic = outliers(failures=1, fail_fast=False)
    timed_out(panic, "a")
    assert panic.admit("h", 80, ["a"]) == ["a"]
    refused = outliers(failures=1)
    refused.connect_failed("a", 80, timed_out=False)
    assert refused.admit("h", 80, ["a"]) == ["a"]


def test_one_probe_when_an_ejection_ends_then_longer_each_time(clock: Clock) -> None:
    """When the ejection ends one connect probes (others skip the address meanwhile); a failed
    probe ejects again at once for twice as long, up to the longest; a success ends it."""
    found = outliers(failures=2)
    timed_out(found, "a")
    assert timed_out(found, "a") == 10.0
    clock.now += 10
    assert found.admit("h", 80, ["a"]) == ["a"]  # the probe
    with pytest.raises(Ejected):
        found.admit("h", 80, ["a"])  # while it runs
    assert timed_out(found, "a") == 20.0  # one failure suffices
    clock.now += 20
    found.admit("h", 80, ["a"])
    assert timed_out(found, "a") == 25.0  # the longest
    clock.now += 25
    found.admit("h", 80, ["a"])
    found.connected("a", 80)
    assert found.admit("h", 80, ["a"]) == ["a"]
    assert timed_out(found, "a") is None  # a new streak from zero


def test_connects_begun_before_the_ejection_do_not_lengthen_it(clock: Clock) -> None:
    """Several threads connecting to a dead address when it is ejected: their failures, which
    arrive after the ejection, do not eject it again."""
    found = outliers(failures=1)
    assert timed_out(found, "a") == 10.0
    assert timed_out(found, "a") is None
    assert timed_out(found, "a") is None
    clock.now += 10
    found.admit("h", 80, ["a"])
    assert timed_out(found, "a") == 20.0


def test_5xx_answers_eject_only_when_asked(clock: Clock) -> None:
    off = outliers()
    assert [off.answered("a", 80, 503) for _ in range(5)] == [None] * 5
    assert off.admit("h", 80, ["a"]) == ["a"]
    on = outliers(answers=2)
    on.answered("a", 80, 500)
    on.answered("a", 80, 200)  # an answer below 500 breaks the streak
    assert on.answered("a", 80, 502) is None
    assert on.answered("a", 80, 504) == 10.0
    assert on.answered("a", 80, 500) is None  # an answer to a request sent before
    assert on.admit("h", 80, ["a", "b"]) == ["b"]
    on.answered("b", 80, 200)  # nothing recorded for a healthy address
    assert on.admit("h", 80, ["b"]) == ["b"]
    assert on.answered(None, 80, 500) is None  # a tool's own connection: no address known


def test_a_5xx_ejection_ends_with_an_answer_not_a_connect(clock: Clock) -> None:
    """The probe's connect succeeding proves nothing about its answers: a 5xx probe ejects
    again, for longer; an answer below 500 ends it."""
    found = outliers(answers=1)
    assert found.answered("a", 80, 503) == 10.0
    clock.now += 10
    assert found.admit("h", 80, ["a"]) == ["a"]
    found.connected("a", 80)
    assert found.ejected("a", 80)
    assert found.answered("a", 80, 503) == 20.0
    clock.now += 20
    found.admit("h", 80, ["a"])
    found.connected("a", 80)
    assert found.answered("a", 80, 200) is None
    assert not found.ejected("a", 80)
    assert found.admit("h", 80, ["a"]) == ["a"]


def test_a_connect_does_not_clear_a_5xx_streak(clock: Clock) -> None:
    found = outliers(answers=2)
    found.answered("a", 80, 503)
    found.connected("a", 80)
    assert found.answered("a", 80, 503) == 10.0


def test_connect_failures_not_counted_when_ejection_is_off(clock: Clock) -> None:
    found = outliers(failures=None, answers=1)
    assert [timed_out(found, "a") for _ in range(5)] == [None] * 5
    assert found.admit("h", 80, ["a"]) == ["a"]


def test_what_is_remembered_is_bounded(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_outliers, "MAX_TRACKED", 3)
    found = outliers(failures=1)
    for address in "abcd":
        timed_out(found, address)
    assert found.admit("h", 80, ["a", "b", "c", "d"]) == ["a"]  # the oldest forgotten


def test_a_refusing_port_is_ejected_and_still_tried(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listens: three refused connects (one call and its two retries) eject the only
    address, counted and logged once; yet the next calls still try it (and are refused, at
    no cost), even with fail_fast_when_ejected: a restarting server is back at once."""
    url = f"http://127.0.0.1:{free_port()}"
    config = PoolConfig(eject_after_failures=3, backoff_factor=0.0, fail_fast_when_ejected=True)
    with caplog.at_level(logging.WARNING, "wsgi_pool"), wsgi_pool.client(config) as http:
        for _ in range(3):
            with pytest.raises(UpstreamRefused):
                http.get(f"{url}/a")
        counts = http.pools.stats()[url]
    assert counts.ejections >= 1
    assert dict(counts.errors) == {"UpstreamRefused": 3}
    assert next(r.getMessage() for r in caplog.records if "ejected" in r.getMessage()) == (
        f"127.0.0.1:{url.rsplit(':', 1)[1]} ejected for 10 s after failed connects "
        f"(host 127.0.0.1): new connections skip it"
    )


def test_5xx_answers_eject_and_fail_fast_until_a_probe_answers(upstream: Upstream) -> None:
    """eject_after_5xx=2 with fail_fast_when_ejected: two 500s come back (each the caller's to
    see), then calls fail at once with UpstreamEjected, a ConnectionError naming the address;
    once the upstream answers 200 again, the probe after the ejection brings it back."""
    upstream.answer("/down", status=500, body=b"no")
    config = PoolConfig(
        eject_after_5xx=2,
        retries=0,
        fail_fast_when_ejected=True,
        ejection_time=0.2,
        max_ejection_time=1.0,
    )
    with wsgi_pool.client(config) as http:
        assert http.get(f"{upstream.url}/up").status_code == 200
        assert [http.get(f"{upstream.url}/down").status_code for _ in range(2)] == [500, 500]
        with pytest.raises(UpstreamEjected) as raised:
            http.get(f"{upstream.url}/up")
        error = raised.value
        assert isinstance(error, UpstreamUnreachable | requests.ConnectionError)
        assert isinstance(error, UpstreamConnectionError)
        assert (error.host, error.upstream) == ("127.0.0.1", upstream.url)
        assert [address for address, _ in error.addresses] == ["127.0.0.1"]
        assert 0 < error.retry_in <= 0.2
        assert "ejected after repeated failures" in str(error)
        threading.Event().wait(0.25)
        assert [http.get(f"{upstream.url}/up").status_code for _ in range(3)] == [200] * 3
        counts = http.pools.stats()[upstream.url]
    assert counts.ejections == 1
    assert counts.errors == {"UpstreamEjected": 1}


def test_5xx_ejection_without_fail_fast_still_calls(upstream: Upstream) -> None:
    upstream.answer("/down", status=500, body=b"no")
    with wsgi_pool.client(PoolConfig(eject_after_5xx=1, retries=0)) as http:
        assert [http.get(f"{upstream.url}/down").status_code for _ in range(3)] == [500] * 3
        assert http.pools.stats()[upstream.url].ejections >= 1


def test_a_proxys_address_is_never_ejected(upstream: Upstream) -> None:
    """Through a proxy, the connection reaches the proxy: neither an upstream's 5xx answers
    nor the proxy's own failures eject it (another upstream behind it is not shut out, and a
    proxy that is down stays an UpstreamProxyError)."""
    upstream.answer("/down", status=500, body=b"no")
    config = PoolConfig(
        eject_after_5xx=1, eject_after_failures=1, retries=0, fail_fast_when_ejected=True
    )
    with Proxy() as proxy, wsgi_pool.client(config) as http:
        proxies = {"http": proxy.url}
        for _ in range(3):
            assert http.get(f"{upstream.url}/down", proxies=proxies).status_code == 500
        assert http.get(f"{upstream.url}/up", proxies=proxies).status_code == 200
        down = {"http": f"http://127.0.0.1:{free_port()}"}
        for _ in range(3):
            with pytest.raises(UpstreamProxyError):
                http.get(f"{upstream.url}/up", proxies=down)
        assert http.pools.stats()[upstream.url].ejections == 0


def test_ejection_off(upstream: Upstream) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with wsgi_pool.client(PoolConfig(eject_after_failures=None, retries=0)) as http:
        for _ in range(4):
            with pytest.raises(UpstreamRefused):
                http.get(f"{url}/a")
        http.get(f"{upstream.url}/b").raise_for_status()
        assert http.pools.adapter.outliers is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"eject_after_failures": 0}, "eject_after_failures: expected a whole number >= 1"),
        ({"ejection_time": 0}, "ejection_time: expected a finite number of seconds > 0"),
        (
            {"ejection_time": 30.0, "max_ejection_time": 10.0},
            "max_ejection_time: 10.0 is below ejection_time=30.0",
        ),
        ({"ejection_time": None}, "ejection_time: expected a finite number of seconds > 0"),
        ({"max_ejection_time": None}, "max_ejection_time: expected a finite number"),
        ({"max_pending": 4, "pool_block": False}, "max_pending: 4 has no effect with pool_block"),
    ],
)
def test_bad_ejection_settings_stop_the_start(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PoolConfig(**settings)  # type: ignore[arg-type]
