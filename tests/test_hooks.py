"""The gunicorn hooks called in-process with gunicorn's own Config and Worker objects."""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from gunicorn.config import Config
from gunicorn.workers.base import Worker

import wsgi_pool
from wsgi_pool import ConfigError, _process
from wsgi_pool import gunicorn as hooks
from wsgi_pool._adapter import live_pools
from wsgi_pool.testing import Upstream


class Log:
    """gunicorn's log, as far as the hooks use it: what it was told at INFO."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def info(self, message: str, *args: object) -> None:
        self.said.append(message % args)


@pytest.fixture
def worker() -> Iterator[Worker]:
    """A gunicorn Worker for this process, configured as gthread with 6 threads."""
    cfg = Config()
    cfg.set("worker_class", "gthread")
    cfg.set("threads", 6)
    made = Worker(age=1, ppid=os.getppid(), sockets=[], app=None, timeout=30, cfg=cfg, log=Log())
    made.pid = os.getpid()
    yield made
    made.tmp.close()


def test_hooks_have_gunicorns_exact_arity() -> None:
    """gunicorn validates hook arity: child_exit 2, on_starting 1, post_fork 2, post_worker_init 1, worker_abort 1, worker_exit 2."""
    cfg = Config()
    for name in hooks.__all__:
        cfg.set(name, getattr(hooks, name))  # gunicorn's validator rejects a wrong arity
        assert cfg.settings[name].get() is getattr(hooks, name)
    with pytest.raises(TypeError):
        cfg.set("post_fork", hooks.post_worker_init)
    assert [len(inspect.signature(getattr(hooks, n)).parameters) for n in hooks.__all__] == [
        2,
        1,
        2,
        1,
        1,
        2,
    ]


def test_post_fork_records_concurrency_and_post_worker_init_builds_pools(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    """After the hooks, the worker's pools are sized from gunicorn's cfg and the decision is
    logged once, in gunicorn's own log (shown by default), not in wsgi_pool's."""
    with caplog.at_level(logging.INFO, logger="wsgi_pool"):
        hooks.post_fork(None, worker)
        hooks.post_worker_init(worker)
    pools = wsgi_pool.client().pools
    assert pools.sizing.pool_maxsize == 6
    assert pools.config.worker_class == "gthread"
    assert [r.getMessage() for r in caplog.records if r.name == "wsgi_pool"] == []
    assert worker.log.said == [f"wsgi_pool: pools for pid {os.getpid()}: {pools.sizing.describe()}"]
    assert "pool_maxsize=6 (gthread worker with 6 threads)" in worker.log.said[0]


def test_post_worker_init_alone_sizes_the_pools(worker: Worker) -> None:
    """A post_fork of the user's own replaced ours: post_worker_init records the concurrency."""
    hooks.post_worker_init(worker)
    assert wsgi_pool.client().pools.sizing.pool_maxsize == 6


def test_pools_built_at_import_are_said_in_gunicorns_log_too(worker: Worker) -> None:
    hooks.post_fork(None, worker)
    built = wsgi_pool.client().pools  # a call while the app is imported
    hooks.post_worker_init(worker)
    assert wsgi_pool.client().pools is built
    assert worker.log.said == [f"wsgi_pool: pools for pid {os.getpid()}: {built.sizing.describe()}"]


def test_an_explicit_config_is_completed_by_gunicorn_not_by_the_environment(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """post_fork records only gunicorn's concurrency: WSGI_POOL_* shapes the default config, not an explicit one."""
    monkeypatch.setenv("WSGI_POOL_THREADS", "3")
    hooks.post_fork(None, worker)
    explicit = wsgi_pool.client(wsgi_pool.PoolConfig(read_timeout=2.0)).pools
    assert (explicit.config.threads, explicit.sizing.pool_maxsize) == (6, 6)
    default = wsgi_pool.client().pools
    assert (default.config.threads, default.sizing.pool_maxsize) == (3, 3)


def test_worker_exit_closes_pools_only_in_the_workers_own_process(
    worker: Worker, upstream: Upstream
) -> None:
    """worker_exit run for another process (the master's ESRCH branch) leaves this process's pools open."""
    http = wsgi_pool.client()
    http.get(f"{upstream.url}/x")
    pools = http.pools
    worker.pid = os.getpid() + 1
    hooks.worker_exit(None, worker)
    assert pools.stats()[upstream.url].idle == 1
    worker.pid = os.getpid()
    hooks.worker_exit(None, worker)
    assert pools.stats()[upstream.url].idle == 0
    assert live_pools(pools.adapter.poolmanager) == []
    assert not _process._by_pid[os.getpid()].by_shape


def test_on_starting_rejects_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad WSGI_POOL_* value stops gunicorn in the master, naming the variable and the value."""

    class Server:
        cfg = Config()

    monkeypatch.setenv("WSGI_POOL_POOL_TIMEOUT", "-1")
    with pytest.raises(
        ConfigError, match=r"pool_timeout: expected a finite number of seconds > 0, got -1.0"
    ):
        hooks.on_starting(Server())
    monkeypatch.delenv("WSGI_POOL_POOL_TIMEOUT")
    hooks.on_starting(Server())


def test_importing_the_hooks_imports_no_http_library() -> None:
    """The config file runs in the master before gevent patches: importing the hooks loads no requests/urllib3."""
    code = (
        "import sys, wsgi_pool, wsgi_pool.gunicorn\n"
        "wsgi_pool.PoolConfig.from_env()\n"
        "print(sorted(m for m in ('requests', 'urllib3', 'gunicorn') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_lazy_names_resolve_and_unknown_names_do_not() -> None:
    """Every name in __all__ resolves; an unknown attribute is an AttributeError."""
    for name in wsgi_pool.__all__:
        assert getattr(wsgi_pool, name) is not None
    assert set(wsgi_pool.__all__) <= set(dir(wsgi_pool))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        wsgi_pool.nope  # noqa: B018


def test_worker_abort_logs_the_pools_and_builds_none(
    worker: Worker, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """worker_abort logs each pool set of the process with its upstreams; with none built, nothing."""
    caplog.set_level(logging.WARNING, logger="wsgi_pool")
    hooks.worker_abort(worker)
    assert caplog.messages == []
    assert _process.built_here() == []
    wsgi_pool.client().get(upstream.url)
    hooks.worker_abort(worker)
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith(
        f"worker {os.getpid()} aborted (timeout?) with <WorkerPools"
    )
    assert upstream.url in caplog.messages[0]


def test_post_fork_records_the_worker_timeout_for_the_deadline(worker: Worker) -> None:
    """gunicorn's timeout reaches the sizing: the derived deadline stays below it."""
    worker.cfg.set("timeout", 8)
    hooks.post_fork(None, worker)
    assert _process.worker_pools().sizing.deadline == 6.0
