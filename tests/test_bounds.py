"""Every bound holds under churn: pool_maxsize per upstream across evicted pools, the sets of
pools a process keeps whatever configs callers build, and the watchdog's memory."""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable

import pytest
import requests
from urllib3.exceptions import InsecureRequestWarning

import wsgi_pool
from tests.faults import FaultServer, Peer
from tests.support import wait_until
from wsgi_pool import PoolConfig, _deadline, _pool, _process
from wsgi_pool.testing import Upstream


def two_in_flight_then_two_more(
    upstream: Upstream, config: PoolConfig, between: Callable[[], object]
) -> None:
    """Two slow calls to ``upstream`` in flight, ``between()``, then two more calls, each with a
    client of ``config``: all answered, never more than 2 (``pool_maxsize``) in flight."""
    results: list[int] = []

    def call(delay: float) -> None:
        with wsgi_pool.client(config) as http:
            results.append(http.get(f"{upstream.url}/slow?delay={delay}").status_code)

    first = [threading.Thread(target=call, args=(1.0,)) for _ in range(2)]
    for thread in first:
        thread.start()
    assert wait_until(lambda: upstream.stats().max_in_flight == 2)
    between()
    later = [threading.Thread(target=call, args=(0.1,)) for _ in range(2)]
    for thread in later:
        thread.start()
    for thread in [*first, *later]:
        thread.join(30)
    assert results == [200] * 4
    assert upstream.stats().max_in_flight == 2
    assert wsgi_pool.client(config).pools.stats()[upstream.url].in_use == 0  # every slot back


def test_an_evicted_pools_connections_still_count(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """pool_connections=1, pool_maxsize=2: two slow calls to one upstream, a call to another
    (which evicts the first one's pool), then two more to the first: never more than 2 in flight."""
    config = PoolConfig(pool_connections=1, pool_maxsize=2, pool_timeout=10.0, deadline=15.0)

    def evict() -> None:
        assert wsgi_pool.client(config).get(f"{second_upstream.url}/evicts").status_code == 200

    two_in_flight_then_two_more(upstream, config, evict)


def test_a_retired_sets_connections_still_count(upstream: Upstream) -> None:
    """pool_maxsize=2: two slow calls in flight, then enough other pool shapes to retire their
    set, then two more calls of the first config (a new set): never more than 2 in flight."""
    config = PoolConfig(pool_maxsize=2, pool_timeout=10.0, deadline=15.0, retries=0)

    def retire() -> None:
        retired = wsgi_pool.client(config).pools
        for number in range(_process.MAX_POOL_SETS):
            wsgi_pool.client(PoolConfig(pool_maxsize=2, idle_timeout=1.0 + number)).pools  # noqa: B018
        assert retired.retired

    two_in_flight_then_two_more(upstream, config, retire)


def test_streams_an_sdk_drops_unread_give_their_connections_back(upstream: Upstream) -> None:
    """An SDK's session over wsgi_pool.adapter() drops two unread streamed responses with
    pool_maxsize=2: once they are gone, their connections are closed and the slots given
    back (as requests' own pools would go on), so later calls are not refused."""
    config = PoolConfig(pool_maxsize=2, pool_timeout=0.5, retries=0)
    with requests.Session() as session:
        session.mount("http://", wsgi_pool.adapter(config))
        for number in range(2):
            response = session.get(f"{upstream.url}/stream/{number}?size=100000", stream=True)
            assert response.status_code == 200
            del response  # dropped unread
        gc.collect()
        assert session.get(f"{upstream.url}/later").status_code == 200
        assert session.get(f"{upstream.url}/later").status_code == 200
    counts = wsgi_pool.client(config).pools.stats()[upstream.url]
    assert (counts.in_use, counts.discarded) == (0, 2)


def _raise_for_status(response: requests.Response, *args: object, **kwargs: object) -> None:
    response.raise_for_status()


@pytest.mark.parametrize("stream", [False, True], ids=["content", "stream"])
@pytest.mark.parametrize("via", ["client", "sdk session"])
def test_a_response_hook_that_raises_gives_the_connection_back(
    upstream: Upstream, via: str, stream: bool
) -> None:
    """``raise_for_status`` as a response hook raises before the body is read: with
    pool_maxsize=2, four failed calls, then calls that succeed (the slots came back)."""
    config = PoolConfig(pool_maxsize=2, pool_timeout=0.5, retries=0)
    session: requests.Session = wsgi_pool.client(config) if via == "client" else requests.Session()
    session.mount("http://", wsgi_pool.adapter(config))
    session.hooks["response"].append(_raise_for_status)
    with session:
        for number in range(4):
            with pytest.raises(requests.HTTPError):
                session.get(f"{upstream.url}/{number}?status=500", stream=stream)
        assert session.get(f"{upstream.url}/ok").status_code == 200
    assert wsgi_pool.client(config).pools.stats()[upstream.url].in_use == 0


def test_a_hook_error_stays_the_error_when_the_body_cannot_be_read() -> None:
    """The hook raises on a 500 whose body is cut short: the caller sees the hook's HTTPError
    (not the read's), and the broken connection is closed, not kept."""

    def cut_500(peer: Peer) -> None:
        if peer.read_request():
            peer.send(b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\npartial")
            peer.reset()

    with FaultServer(cut_500) as server, wsgi_pool.client(PoolConfig(retries=0)) as http:
        http.hooks["response"].append(_raise_for_status)
        with pytest.raises(requests.HTTPError):
            http.get(f"{server.url}/x")
        assert http.pools.stats()[server.url].idle == 0


def test_a_stream_dropped_after_its_pool_was_evicted_gives_its_slot_back(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """pool_connections=1, pool_maxsize=2: a stream from A is opened, a call to B evicts A's
    pool (the stream is then its last holder), a call to A makes a new pool; the stream is
    dropped unread. A's two slots are both free again: two streams can be open at once."""
    config = PoolConfig(pool_connections=1, pool_maxsize=2, pool_timeout=1.0)
    with requests.Session() as session:
        session.mount("http://", wsgi_pool.adapter(config))
        dropped = session.get(f"{upstream.url}/download?size=500000", stream=True)
        assert session.get(f"{second_upstream.url}/other").status_code == 200
        assert session.get(f"{upstream.url}/meta").status_code == 200
        del dropped
        gc.collect()
        first = session.get(f"{upstream.url}/s1?size=100000", stream=True)
        second = session.get(f"{upstream.url}/s2?size=100000", stream=True)
        assert (first.status_code, second.status_code) == (200, 200)
        first.close()
        second.close()
    assert wsgi_pool.client(config).pools.stats()[upstream.url].in_use == 0


def test_a_caller_already_waiting_gets_the_connection_of_a_dropped_stream(
    upstream: Upstream,
) -> None:
    """pool_maxsize=1: a stream is held, a call starts waiting for the connection, then the
    stream is dropped unread: the waiting call gets the connection (its finalizer cannot wake
    anyone; the wait looks again)."""
    config = PoolConfig(pool_maxsize=1, pool_timeout=5.0)
    with requests.Session() as session:
        session.mount("http://", wsgi_pool.adapter(config))
        held = {"stream": session.get(f"{upstream.url}/s?size=300000", stream=True)}
        answers: list[int] = []
        waiter = threading.Thread(
            target=lambda: answers.append(session.get(f"{upstream.url}/w").status_code)
        )
        waiter.start()
        counts = wsgi_pool.client(config).pools.stats
        assert wait_until(lambda: counts()[upstream.url].waiting == 1)
        del held["stream"]  # dropped unread
        waiter.join(10)
    assert answers == [200]
    assert wsgi_pool.client(config).pools.stats()[upstream.url].wait_timeouts == 0


def test_a_connection_given_back_for_a_dropped_response_is_never_closed_by_it(
    upstream: Upstream,
) -> None:
    """pool_maxsize=1, collection left to the pools: one thread drops streamed responses in
    reference cycles while three others wait and call. Every call answers: a connection given
    back for a collected response is a fresh place in the pool, never the object the dying
    response may still close."""
    config = PoolConfig(pool_maxsize=1, pool_timeout=5.0, retries=0)
    errors: list[BaseException] = []
    with requests.Session() as session:
        session.mount("http://", wsgi_pool.adapter(config))
        session.get(f"{upstream.url}/warm").raise_for_status()

        def holder() -> None:
            for _ in range(6):
                response = session.get(f"{upstream.url}/s?size=300000", stream=True)
                cycle: list[object] = [response]
                cycle.append(cycle)
                del response, cycle
                time.sleep(0.1)

        def waiter() -> None:
            try:
                for _ in range(3):
                    session.get(f"{upstream.url}/w").raise_for_status()
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)

        gc.disable()  # a quiet allocator: only the pools' own collection frees the cycles
        try:
            threads = [threading.Thread(target=holder)] + [
                threading.Thread(target=waiter) for _ in range(3)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        finally:
            gc.enable()
    assert errors == []


def test_waits_that_find_no_dropped_response_back_off_their_collections(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pool_maxsize=1 and a stream held open (not dropped): a 2.5 s wait for the connection
    asks the collector once, then backs off (1 s, then 2 s), instead of collecting again and
    again; a short wait does not collect at all once one collection has cost more than half
    of what it has left."""
    gc.collect()
    _pool.release_dropped()  # nothing left over from earlier tests to make a collection pay
    collections: list[float] = []

    class CountingGc:
        @staticmethod
        def collect(*args: int) -> int:
            collections.append(time.monotonic())
            return gc.collect(*args)

    monkeypatch.setattr(_pool, "gc", CountingGc)
    config = PoolConfig(pool_maxsize=1, pool_timeout=2.5, retries=0)
    with requests.Session() as session:
        session.mount("http://", wsgi_pool.adapter(config))
        held = session.get(f"{upstream.url}/held?size=300000", stream=True)
        with pytest.raises(wsgi_pool.PoolTimeout):
            session.get(f"{upstream.url}/waits")
        assert len(collections) == 2  # at the start, and 1 s later; the next would be at 3 s
        _pool._collect.took = 10.0  # as if a collection cost 10 s: a 2.5 s wait cannot afford it
        _pool._collect.next = 0.0
        with pytest.raises(wsgi_pool.PoolTimeout):
            session.get(f"{upstream.url}/waits-again")
        assert len(collections) == 2
        held.close()


def test_streams_dropped_in_reference_cycles_give_their_connections_back(
    upstream: Upstream,
) -> None:
    """The common ``except HTTPError as e: kept = e`` pattern holds each unread streamed
    response in a cycle only the garbage collector frees: with pool_maxsize=2, five such calls
    in a row all get a connection (a wait for one asks the collector first)."""
    config = PoolConfig(pool_maxsize=2, pool_timeout=2.0, retries=0)
    with requests.Session() as session:
        session.mount("http://", wsgi_pool.adapter(config))

        def fetch(number: int) -> str:
            response = session.get(f"{upstream.url}/{number}?status=503", stream=True)
            try:
                response.raise_for_status()
            except requests.HTTPError as exc:
                kept = exc  # frame -> kept -> traceback -> frame: a cycle
                return str(kept)[:3]
            return "ok"  # pragma: no cover  (the upstream always answers 503)

        assert [fetch(number) for number in range(5)] == ["503"] * 5


def test_a_response_freed_in_the_watchdogs_thread_never_blocks_it(upstream: Upstream) -> None:
    """A dropped response's finalizer may run in any thread, the watchdog's included while it
    holds its lock: it only notes the connection, so the watchdog goes on and later calls
    finish (they hung: the finalizer took the watchdog's lock again)."""
    config = PoolConfig(pool_maxsize=4, pool_timeout=2.0, retries=0)
    with requests.Session() as session:
        session.mount("http://", wsgi_pool.adapter(config))
        session.get(f"{upstream.url}/warm")
        watchdog = _deadline.watchdog()

        class Idle:
            sock = None

        watchdog.arm(_deadline.Deadline(0.3), Idle())  # the watchdog wakes in 0.3 s

        class Holder:
            response: object = None

        threshold = gc.get_threshold()
        gc.disable()
        try:
            held = Holder()
            held.response = session.get(f"{upstream.url}/stream", stream=True)
            held.response.holder = held  # type: ignore[attr-defined]  # a cycle
            del held
            gc.set_threshold(1)  # the next allocation in any thread collects: the watchdog's
            gc.enable()
            assert wait_until(lambda: len(_pool._dropped_pending) > 0, timeout=3)  # collected
        finally:
            gc.set_threshold(*threshold)
            gc.enable()
        answers: list[int] = []
        thread = threading.Thread(
            target=lambda: answers.append(session.get(f"{upstream.url}/after").status_code),
            daemon=True,
        )
        thread.start()
        thread.join(10)
        assert answers == [200]


def test_configs_made_per_call_share_one_set_of_pools(upstream: Upstream) -> None:
    """300 calls, each with its own PoolConfig (per-call settings differ): one set of pools,
    one connection, no thread per config."""
    base = PoolConfig(retries=0)
    threads = 0
    for number in range(300):
        config = dataclasses.replace(base, read_timeout=5.0 + number / 1000)
        with wsgi_pool.client(config) as http:
            assert http.get(f"{upstream.url}/{number}").status_code == 200
            assert http.config.read_timeout == config.read_timeout  # its own settings apply
        threads = threads or threading.active_count()  # after the first: watchdog, upstream
    assert len(_process.built_here()) == 1
    assert upstream.stats().connections_opened == 1
    assert threading.active_count() == threads


def test_pools_of_distinct_shapes_are_bounded_and_reclaimed(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """Twenty configs that shape pools differently: at most MAX_POOL_SETS sets are kept, the
    oldest closed (its connection with it), and the operator is told."""
    for number in range(20):
        config = PoolConfig(idle_timeout=2.0 + number / 100)
        with wsgi_pool.client(config) as http:
            assert http.get(f"{upstream.url}/{number}").status_code == 200
    assert len(_process.built_here()) == _process.MAX_POOL_SETS
    assert wait_until(lambda: upstream.stats().open_connections == _process.MAX_POOL_SETS)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("different pool settings in one process" in r.getMessage() for r in warned)


def test_the_watchdog_holds_only_calls_in_flight(upstream: Upstream) -> None:
    """Four slow calls in flight: four armed; after 200 quick calls: none."""
    http = wsgi_pool.client()
    for number in range(200):
        http.get(f"{upstream.url}/{number}")
    watchdog = http.pools.watchdog
    assert watchdog.pending == 0
    threads = [
        threading.Thread(target=http.get, args=(f"{upstream.url}/slow?delay=0.5",))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: watchdog.pending == 4)
    for thread in threads:
        thread.join(10)
    assert watchdog.pending == 0


def test_pools_of_one_upstream_are_counted_once(https_upstream: Upstream, ca_file: str) -> None:
    """Two pools to one upstream (TLS verified, and not): the connections in use are those of
    the upstream's one set of slots, not counted once per pool."""
    http = wsgi_pool.client(PoolConfig(allow_unverified=True))
    url = f"{https_upstream.url}/held"
    verified = http.get(url, stream=True, verify=ca_file)
    with pytest.warns(InsecureRequestWarning):
        unverified = http.get(url, stream=True, verify=False)
    pools = http.pools
    assert len(wsgi_pool._adapter.live_pools(pools.adapter.poolmanager)) == 2
    assert pools.stats()[https_upstream.url].in_use == 2
    verified.close()
    unverified.close()
    assert pools.stats()[https_upstream.url].in_use == 0
