"""gunicorn server hooks: import them into any ``gunicorn.conf.py``.

    # gunicorn.conf.py
    from wsgi_pool.gunicorn import (  # noqa: F401
        child_exit, on_starting, post_fork, post_worker_init, worker_abort, worker_exit,
    )

- ``on_starting`` (master): validates the ``WSGI_POOL_*`` settings (and that the optional
  packages they need are installed), so a bad value stops gunicorn before any worker starts, and notes the master's process id (pools built in the
  master are logged as a warning: no worker ever uses them).
- ``post_fork`` (worker, before gevent patches and before the app loads): records the
  worker's concurrency as gunicorn reports it. Imports no requests. (Pools inherited from
  the master were already set aside by the at-fork hook and the process-id check.)
- ``post_worker_init`` (worker, after patching and app load): builds the worker's pools and
  logs the sizing decision once.
- ``worker_abort`` (worker, on SIGABRT: gunicorn's timeout): logs what the worker's pools
  were doing, which upstreams had calls in flight. It closes nothing: it runs as a signal
  handler in the middle of the stuck call, and the process exits right after; the next
  worker builds fresh pools.
- ``worker_exit`` (the worker, and sometimes the master on its behalf): closes the pools of
  the worker's own process; does nothing in any other process.
- ``child_exit`` (master, after a worker is reaped): with ``PROMETHEUS_MULTIPROC_DIR`` set,
  takes the dead worker's gauges out of the Prometheus sums (prometheus_client's
  ``mark_process_dead``) and moves its counters into one archive file per kind, so the
  directory does not grow with every recycled worker. Imports no requests.

Each is a plain function with the exact arity gunicorn checks. A hook of your own with the
same name, defined after the import, replaces ours: call ours from it instead::

    from wsgi_pool import gunicorn as wsgi_pool_hooks

    def post_fork(server, worker):
        wsgi_pool_hooks.post_fork(server, worker)
        ...  # your own

A worker in which any of ``on_starting``, ``post_fork`` and ``post_worker_init`` did not run
logs a warning on its first request; ``wsgi-pool explain`` checks the configuration's hooks
the same way.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from typing import Any

from . import _integrations, _process
from ._config import PoolConfig
from ._errors import ConfigError
from ._servers import gunicorn_report

logger = logging.getLogger("wsgi_pool")

__all__ = [
    "child_exit",
    "on_starting",
    "post_fork",
    "post_worker_init",
    "worker_abort",
    "worker_exit",
]


class StartupError(ConfigError, RuntimeError):
    """A bad setting found by ``on_starting``: gunicorn prints a RuntimeError as one line
    (``Error: ...``) and exits, instead of a traceback."""


def on_starting(server: Any) -> None:
    """Master, before anything: reject a bad setting at start-up, in one line."""
    _process.hook_ran("on_starting")
    try:
        warnings = _integrations.check(PoolConfig.from_gunicorn(server.cfg))
    except ConfigError as exc:
        raise StartupError(f"wsgi_pool: {exc}") from None
    for warning in warnings:
        logger.warning("wsgi_pool: %s", warning)
    if _process.built_here():  # preload_app: the app was imported, and called out, already
        logger.warning("wsgi_pool: %s", _process.BUILT_IN_MASTER)
    _process.record_master(os.getpid())


def post_fork(server: Any, worker: Any) -> None:
    """Worker, right after fork: record what gunicorn says of its concurrency (nothing else)."""
    _process.hook_ran("post_fork")
    _process.record_server(gunicorn_report(worker.cfg))


def post_worker_init(worker: Any) -> None:
    """Worker, after the app loaded and gevent patched: build the pools, and say how they are
    sized in gunicorn's own log. Records the concurrency too, if ``post_fork`` did not."""
    _process.hook_ran("post_worker_init")
    if not _process.server_known():
        _process.record_server(gunicorn_report(worker.cfg))
    built_before = bool(_process.built_here())
    pools = _process.worker_pools(say=functools.partial(_say, worker.log))
    if built_before:  # at the app's import: said then, where gunicorn's log did not show it
        _say(worker.log, "pools for pid %d: %s", pools.pid, pools.sizing.describe())


def _say(log: Any, message: str, *args: object) -> None:
    log.info("wsgi_pool: " + message, *args)


def worker_abort(worker: Any) -> None:
    """Worker, on SIGABRT (a timeout): log the pools' state; the process exits next."""
    for pools in _process.built_here():
        logger.warning("worker %d aborted (timeout?) with %r", pools.pid, pools)


def worker_exit(server: Any, worker: Any) -> None:
    """Close the worker's pools, only in the worker's own process."""
    if getattr(worker, "pid", None) == os.getpid():
        _process.close_process_pools()


def child_exit(server: Any, worker: Any) -> None:
    """Master, after a worker is reaped: its gauges leave the Prometheus multiprocess sums, and
    its counters move into the archive files (the sums stay; the files do not pile up)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and importlib.util.find_spec("prometheus_client") is not None:
        from ._multiproc import retire_worker  # noqa: PLC0415  (optional, master only)

        retire_worker(worker.pid, directory)
