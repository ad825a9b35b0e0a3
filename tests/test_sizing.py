"""The sizing rule: pool sizes from the server's concurrency, each with its reason."""

from __future__ import annotations

import pytest

from wsgi_pool import (
    PoolConfig,
    size_pools,
)
from wsgi_pool._config import DEFAULT_HOST_POOLS, DEFAULT_POOL_TIMEOUT
from wsgi_pool._sizing import GEVENT_POOL_CAP


@pytest.mark.parametrize(
    ("config", "maxsize", "reason"),
    [
        pytest.param(
            PoolConfig(worker_class="sync"), 1, "sync worker: one request at a time", id="sync"
        ),
        pytest.param(
            PoolConfig(worker_class="sync", threads=1),
            1,
            "sync worker: one request",
            id="sync-1-thread",
        ),
        pytest.param(
            PoolConfig(worker_class="sync", threads=6),
            6,
            "sync worker with 6 threads runs as gthread",
            id="sync-threads-is-gthread",
        ),
        pytest.param(
            PoolConfig(worker_class="gthread", threads=16),
            16,
            "gthread worker with 16 threads",
            id="gthread-16",
        ),
        pytest.param(
            PoolConfig(worker_class="gthread"),
            1,
            "gthread worker with 1 thread",
            id="gthread-threads-unknown",
        ),
        pytest.param(
            PoolConfig(worker_class="gevent"),
            GEVENT_POOL_CAP,
            "worker_connections=1000 capped at 100",
            id="gevent-default-capped",
        ),
        pytest.param(
            PoolConfig(worker_class="gevent", worker_connections=5000),
            GEVENT_POOL_CAP,
            "worker_connections=5000 capped",
            id="gevent-capped",
        ),
        pytest.param(
            PoolConfig(worker_class="gevent", worker_connections=40),
            40,
            "gevent worker: worker_connections=40",
            id="gevent-under-cap",
        ),
        pytest.param(
            PoolConfig(worker_class="gevent_pywsgi", worker_connections=40),
            40,
            "gevent worker",
            id="gevent-pywsgi",
        ),
        pytest.param(
            PoolConfig(worker_class="tornado", threads=8),
            1,
            "tornado worker: one WSGI call at a time",
            id="tornado",
        ),
        pytest.param(
            PoolConfig(), 10, "server concurrency unknown (no gunicorn hooks", id="unknown-server"
        ),
        pytest.param(
            PoolConfig(threads=4),
            4,
            "server concurrency unknown; threads=4",
            id="unknown-server-threads",
        ),
        pytest.param(
            PoolConfig(worker_class="gthread", threads=16, pool_maxsize=4),
            4,
            "set explicitly",
            id="explicit-wins",
        ),
        pytest.param(
            PoolConfig(worker_class="gevent", pool_maxsize=500),
            500,
            "set explicitly",
            id="explicit-wins-gevent",
        ),
    ],
)
def test_sizing_table(config: PoolConfig, maxsize: int, reason: str) -> None:
    """The per-upstream pool size follows the worker class and threads unless set explicitly."""
    sizing = size_pools(config)
    assert sizing.pool_maxsize == maxsize
    assert reason in sizing.reasons["pool_maxsize"]
    assert sizing.pool_block is True
    assert sizing.pool_timeout == DEFAULT_POOL_TIMEOUT
    assert sizing.pool_connections == DEFAULT_HOST_POOLS


def test_explicit_pool_settings_win_and_say_so() -> None:
    """Every explicit pool setting is used as given, with 'set explicitly' as its reason."""
    config = PoolConfig(
        worker_class="gthread",
        threads=8,
        pool_maxsize=3,
        pool_connections=4,
        pool_block=False,
        pool_timeout=0.5,
        deadline=3.0,
    )
    sizing = size_pools(config)
    assert (
        sizing.pool_maxsize,
        sizing.pool_connections,
        sizing.pool_block,
        sizing.pool_timeout,
    ) == (3, 4, False, 0.5)
    assert set(sizing.reasons.values()) == {"set explicitly"}
    assert sizing.describe().startswith("pool_maxsize=3 (set explicitly); pool_connections=4")


def test_describe_names_the_server() -> None:
    """The sizing line says why: the worker class and its threads."""
    line = size_pools(PoolConfig(worker_class="gthread", threads=16)).describe()
    assert "pool_maxsize=16 (gthread worker with 16 threads)" in line
    assert "pool_timeout=5.0" in line
