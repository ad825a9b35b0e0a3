"""A fleet budget: three gunicorn replicas against one upstream hold no more than the budget."""

from __future__ import annotations

import contextlib
from typing import Any

from tests.support import CONF, ROOT, get, run_together, wait_for_sizing_lines
from wsgi_pool.testing import GunicornServer, Upstream, UpstreamStats

REPLICAS = 3
CLIENTS_PER_REPLICA = 8
REQUESTS_PER_CLIENT = 10


def _fleet_under_load(
    upstream: Upstream, env: dict[str, str]
) -> tuple[UpstreamStats, str, list[int]]:
    """Three replicas (2 gthread workers x 4 threads each) under 24 concurrent clients."""
    flags = ["-c", CONF, "-k", "gthread", "-w", "2", "--threads", "4"]
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(
                GunicornServer(
                    "tests.apps:app",
                    flags,
                    env={"UPSTREAM_URL": upstream.url, **env},
                    cwd=str(ROOT),
                )
            )
            for _ in range(REPLICAS)
        ]
        for server in servers:
            wait_for_sizing_lines(server, 2)
        upstream.reset()

        def client(server: GunicornServer) -> list[int]:
            return [get(server, "/fleet")[0] for _ in range(REQUESTS_PER_CLIENT)]

        calls: list[Any] = [
            lambda server=server: client(server)
            for server in servers
            for _ in range(CLIENTS_PER_REPLICA)
        ]
        statuses = [status for found in run_together(*calls, timeout=120) for status in found]
        stats = upstream.stats()
        logs = "".join(server.log() for server in servers)
    return stats, logs, statuses


def test_three_replicas_stay_within_the_fleet_budget(upstream: Upstream) -> None:
    """fleet_connections=6 over 3 replicas x 2 workers: one connection per worker, 6 in all."""
    env = {"WSGI_POOL_FLEET_CONNECTIONS": "6", "WSGI_POOL_REPLICAS": str(REPLICAS)}
    stats, logs, statuses = _fleet_under_load(upstream, env)
    assert statuses == [200] * (REPLICAS * CLIENTS_PER_REPLICA * REQUESTS_PER_CLIENT)
    assert logs.count("pool_maxsize=1 (fleet budget: 6 connections / (3 replicas x 2 workers)") == 6
    assert stats.connections_opened <= 6
    assert stats.max_in_flight <= 6


def test_without_a_budget_the_same_load_opens_more(upstream: Upstream) -> None:
    """The control: the same three replicas with no budget open more than 6 connections."""
    stats, _, statuses = _fleet_under_load(upstream, {})
    assert statuses == [200] * (REPLICAS * CLIENTS_PER_REPLICA * REQUESTS_PER_CLIENT)
    assert stats.connections_opened > 6
