"""Silent peer death: an upstream host that vanishes without a FIN or RST costs each call at
most its deadline, and its dead connections are replaced when a host answers there again.

A real host: a network namespace with its own address (``tests/netns.py``), its packets
dropped with iptables while its server is killed, as when a machine or pod disappears.
"""

from __future__ import annotations

import pytest

import wsgi_pool
from tests.netns import Host
from tests.support import run_together
from wsgi_pool import DeadlineExceeded, PoolConfig, UpstreamConnectTimeout


def test_a_vanished_host_costs_the_deadline_and_its_connections_are_replaced() -> None:
    """Three kept connections; the host vanishes: a call ends at its deadline (its connect
    attempts too). A new host answers at the address: every call succeeds again, the dead
    connections replaced without a retry (the server's RST shows them closed)."""
    config = PoolConfig(deadline=1.5, read_timeout=30.0, connect_timeout=5.0, retries=0)
    with Host() as host, wsgi_pool.client(config) as http:
        warm = run_together(*[lambda: http.get(f"{host.url}/warm").status_code] * 3)
        assert warm == [200] * 3
        assert http.pools.stats()[host.url].idle == 3
        host.drop()
        host.kill_server()  # its FINs go nowhere: the pool still holds three "open" connections
        with pytest.raises(DeadlineExceeded):
            http.get(f"{host.url}/lost")
        host.start_server()
        host.restore()
        answers = [http.get(f"{host.url}/back/{n}").json()["path"] for n in range(4)]
        assert answers == [f"/back/{n}" for n in range(4)]
        counts = http.pools.stats()[host.url]
        assert counts.retries == 0
        assert counts.opened >= 4  # three at first, then new ones for the dead


def test_a_host_that_never_answers_a_connect_costs_the_deadline() -> None:
    """Connecting to a vanished host: each call ends at the deadline (a connect timeout within it)."""
    config = PoolConfig(deadline=1.0, connect_timeout=5.0, retries=0)
    with Host() as host, wsgi_pool.client(config) as http:
        host.drop()
        with pytest.raises(DeadlineExceeded):
            http.get(f"{host.url}/never")
        shorter = PoolConfig(deadline=5.0, connect_timeout=0.3, retries=0)
        with wsgi_pool.client(shorter) as other, pytest.raises(UpstreamConnectTimeout):
            other.get(f"{host.url}/never")
