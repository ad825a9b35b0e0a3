"""Connecting: a refused port, a full backlog, a slow name lookup; each named, and nothing else held up."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
import requests

import wsgi_pool
from tests.faults import full_backlog
from tests.harness import Harness
from wsgi_pool import (
    PoolConfig,
    UpstreamConnectTimeout,
    UpstreamRefused,
)
from wsgi_pool.testing import free_port


def test_connect_timeout_default_is_applied() -> None:
    """With no timeout argument, a connect to a listener whose accept queue is full ends at connect_timeout."""
    with full_backlog() as port:
        http = wsgi_pool.client(PoolConfig(connect_timeout=0.3, retries=0))
        with pytest.raises(requests.exceptions.ConnectTimeout):
            http.get(f"http://127.0.0.1:{port}/")


def test_a_slow_name_lookup_does_not_block_other_hosts(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one host's name lookup hangs, calls to other hosts go through."""
    resolving = threading.Event()
    release = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.test":  # the one lookup that cannot exist here: a slow DNS server
            resolving.set()
            release.wait(10)
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    http = harness.client()
    slow_result: list[int] = []
    slow = threading.Thread(
        target=lambda: slow_result.append(
            http.get(f"http://slow.test:{harness.healthy.url.rsplit(':', 1)[1]}/slow").status_code
        )
    )
    slow.start()
    try:
        assert resolving.wait(10)
        fast = [http.get(f"{harness.healthy.url}/fast").status_code for _ in range(10)]
        assert fast == [200] * 10
        assert slow.is_alive()  # still resolving while the others were served
    finally:
        release.set()
        slow.join(10)
    assert slow_result == [200]
    harness.assert_intact(http)


def test_connection_refused(harness: Harness) -> None:
    """Nothing listening: UpstreamRefused (a requests.ConnectionError), after the connect retries."""
    http = harness.client(retries=2)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UpstreamRefused) as caught:
        http.post(f"{url}/x", data=b"nothing was sent")
    assert isinstance(caught.value, requests.exceptions.ConnectionError)
    assert caught.value.upstream == url
    assert http.pools.stats()[url].retries == 2
    harness.assert_intact(http)


def test_full_listen_backlog_is_a_connect_timeout(harness: Harness) -> None:
    """A server whose accept queue is full: UpstreamConnectTimeout after connect_timeout."""
    with full_backlog() as port:
        http = harness.client(connect_timeout=0.3, retries=0)
        with pytest.raises(UpstreamConnectTimeout) as caught:
            http.get(f"http://127.0.0.1:{port}/")
        assert isinstance(caught.value, requests.exceptions.ConnectTimeout)
    harness.assert_intact(http)
