"""gunicorn server hooks: import them into any ``gunicorn.conf.py``.

    # gunicorn.conf.py
    from wsgi_pool.gunicorn import on_starting, post_fork, post_worker_init, worker_exit  # noqa: F401

- ``on_starting`` (master): validates the ``WSGI_POOL_*`` settings, so a bad value stops
  gunicorn before any worker starts.
- ``post_fork`` (worker, before gevent patches and before the app loads): records the
  worker's concurrency and sets aside pools inherited from the master. Imports no requests.
- ``post_worker_init`` (worker, after patching and app load): builds the worker's pools and
  logs the sizing decision once.
- ``worker_exit`` (the worker, and sometimes the master on its behalf): closes the pools of
  the worker's own process; does nothing in any other process.

Each is a plain function with the exact arity gunicorn checks. If your configuration
already defines one of these hooks, call ours from yours.
"""

from __future__ import annotations

import os
from typing import Any

from . import _process
from ._config import PoolConfig

__all__ = ["on_starting", "post_fork", "post_worker_init", "worker_exit"]


def on_starting(server: Any) -> None:
    """Master, before anything: reject a bad setting at start-up."""
    PoolConfig.from_gunicorn(server.cfg)


def post_fork(server: Any, worker: Any) -> None:
    """Worker, right after fork: record its concurrency; inherited pools are never used."""
    _process.record_server(PoolConfig.from_gunicorn(worker.cfg))


def post_worker_init(worker: Any) -> None:
    """Worker, after the app loaded and gevent patched: build the pools, log the sizing."""
    _process.worker_pools()


def worker_exit(server: Any, worker: Any) -> None:
    """Close the worker's pools, only in the worker's own process."""
    if getattr(worker, "pid", None) == os.getpid():
        _process.close_process_pools()
