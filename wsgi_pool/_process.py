"""Which pools belong to this process: built on first use after fork, never shared across a fork.

A process's pools are found by its process id, checked on every access: against a page of
memory the kernel empties in a forked child (``MADV_WIPEONFORK``), so that the check makes
no system call, or by asking the system where there is no such page. A forked child
(gunicorn worker, ``os.fork``, uWSGI with or without ``py-call-osafterfork``) finds no pools
under its own id and builds fresh ones. What it inherited is moved aside and kept, never
used, never shut down and never closed as a pool: the parent may still be using those
sockets, and a lock inside them may have been held by a parent thread at the moment of the
fork. Only the child's copies of the socket descriptors are closed, so a long-lived child
does not keep the parent's connections open at the upstream.

Extensions (Prometheus, OpenTelemetry, the HTTP cache) are attached to each process's pools
by the factories registered here (:func:`register`); the package registers its own, so this
module imports none of them.
"""

from __future__ import annotations

import functools
import importlib
import logging
import mmap
import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from . import _deadline
from ._config import PoolConfig
from ._policy import Policy
from ._servers import ServerReport, uwsgi_report

if TYPE_CHECKING:
    from ._pool import Slots
    from ._worker import Extension, ExtensionFactory, WorkerPools

logger = logging.getLogger("wsgi_pool")

getpid: Callable[[], int] = os.getpid
"""The process-id source (tests replace it to fake a fork)."""


_LINUX_WIPEONFORK: Final = 18


def _fork_mark() -> tuple[memoryview | None, Callable[[], int]]:
    """A page of memory the kernel empties in every forked child (``MADV_WIPEONFORK``, Linux
    4.14 and later), holding this process's id, and what reads it: no system call. In a
    child forked by any means (Python's fork hooks or none: uWSGI without
    ``py-call-osafterfork``, a C extension's fork) it reads 0. Where the kernel cannot mark
    the page, the process id is asked of the system every time."""
    # Python 3.11's mmap does not name the advice: Linux's value, but on PA-RISC.
    advice: int | None = getattr(mmap, "MADV_WIPEONFORK", None)
    if advice is None and sys.platform == "linux" and not os.uname().machine.startswith("parisc"):
        advice = _LINUX_WIPEONFORK
    if advice is None:
        return None, os.getpid
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        page.madvise(advice)
    except (AttributeError, OSError, ValueError):  # no such advice here (before Linux 4.14)
        return None, os.getpid
    view = memoryview(page).cast("q")
    view[0] = os.getpid()
    return view, functools.partial(view.__getitem__, 0)


_mark, marked_pid = _fork_mark()
"""``marked_pid()``: this process's id while no fork happened since it was marked, else 0 (or
the process id itself, asked of the system, where there is no mark). Asked on every call:
the fork check. A process id remembered from Python's fork hooks alone would be wrong in a
child forked without them, which would then use its parent's connections."""


def _marked(pid: int) -> None:
    """Mark the page with ``pid``, the process id the system just gave."""
    if _mark is not None:
        _mark[0] = pid


MAX_POOL_SETS: Final = 8
"""Sets of pools one process keeps (one per pool shape, ``PoolConfig.pool_shape``); past that
the least recently built is closed (its connections in use close when they come back)."""

BUILT_IN_MASTER: Final = (
    "pools built in the gunicorn master (a call at import under preload_app?): no worker uses "
    "them, each builds its own after fork; make outbound calls in handlers or after "
    "post_worker_init"
)

GUNICORN_HOOKS: Final = ("on_starting", "post_fork", "post_worker_init")
"""The gunicorn hooks a worker can tell ran (the rest run at exit, or in the master)."""

MAX_POLICIES: Final = 256
"""Configs whose call settings are kept worked out; past that the memory starts again."""


class _ProcessPools:
    """The pools one process built, one set per pool shape, oldest first.

    Mutable state: ``by_shape``, changed only under ``lock``; read without it.
    """

    __slots__ = ("by_shape", "lock", "pid", "slots")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.lock = threading.Lock()
        self.by_shape: OrderedDict[tuple[object, ...], WorkerPools] = OrderedDict()
        # The upstreams' slots (pool_maxsize), shared by every set: one retired while its
        # connections are in use keeps holding their slots against the set that replaces it.
        self.slots: weakref.WeakValueDictionary[tuple[str, int], Slots] = (
            weakref.WeakValueDictionary()
        )


# Module state. ``_by_pid`` holds at most one entry, this process's; ``dict.setdefault`` makes
# its creation atomic without a lock a fork could have left held. ``_inherited`` keeps what a
# child inherited alive (so no finalizer closes it) and out of reach. ``_server`` is what the
# gunicorn hooks reported about this worker's concurrency; ``_env_default`` caches the
# ``WSGI_POOL_*`` settings, read once per process; ``_completed`` maps a config (None: the
# default) to itself completed by ``_server``, and is emptied whenever ``_server`` changes.
# ``_factories`` are the extension factories, registered at import; ``_policies`` the call
# settings of each effective config, emptied with ``_completed``.
_by_pid: dict[int, _ProcessPools] = {}
_inherited: list[_ProcessPools] = []
_server: ServerReport | None = None
_env_default: PoolConfig | None = None
_completed: dict[PoolConfig | None, PoolConfig] = {}
_master: int | None = None  # the gunicorn master's process id (on_starting), if known
_adopted: PoolConfig | None = None  # the config the app gave in code (the last), if any
_hooks_ran: set[str] = set()  # the gunicorn hooks that ran here (or in the master, before fork)
_hooks_checked: int | None = None  # the process that checked them on its first request
_factories: list[ExtensionFactory] = []
_policies: dict[PoolConfig, Policy] = {}


def register(factory: ExtensionFactory) -> None:
    """Attach what ``factory`` makes (an ``Extension``, or None) to every pools built from now on."""
    if factory not in _factories:
        _factories.append(factory)


def _this_process() -> _ProcessPools:
    pid = getpid()
    _marked(pid)
    found = _by_pid.get(pid)
    if found is not None:
        return found
    found = _by_pid.setdefault(pid, _ProcessPools(pid))
    _set_aside_foreign(pid)
    return found


def _set_aside_foreign(pid: int) -> None:
    foreign = [
        found for other in list(_by_pid) if other != pid and (found := _by_pid.pop(other, None))
    ]
    _inherited.extend(foreign)  # None popped: another thread set it aside first
    # Every set of pools made in another process, the registered ones and a caller's own:
    # retired (a client that cached them looks again) and this process's copies of their
    # sockets released (the upstream sees the parent's connections, not ours). No pools exist
    # before their module is imported, and it is not imported here (a fork may be under way).
    worker = sys.modules.get(f"{__package__}._worker")
    if worker is not None:
        worker.release_inherited(pid)


def _after_fork_in_child() -> None:
    global _mark, marked_pid
    if _mark is not None and _mark[0] not in {0, os.getpid()}:
        # A kernel that took the advice, yet left the parent's mark: ask the system each time.
        _mark, marked_pid = None, os.getpid
    _set_aside_foreign(getpid())


os.register_at_fork(after_in_child=_after_fork_in_child)


def record_server(server: ServerReport | None) -> None:
    """Remember what the server reported about this process's concurrency (gunicorn hooks)."""
    global _server
    _server = server
    _forget_policies()


def hook_ran(name: str) -> None:
    """One of the gunicorn hooks ran in this process (the master's are inherited by fork)."""
    _hooks_ran.add(name)


def server_known() -> bool:
    """Whether the gunicorn hooks reported this worker's concurrency."""
    return _server is not None


def check_hooks(environ: Mapping[str, object]) -> None:
    """On a process's first request: under gunicorn (its ``gunicorn.socket`` in the environ),
    a warning if the hooks that size the pools did not run (missing from the configuration,
    or replaced by hooks of the user's own that do not call them)."""
    global _hooks_checked
    pid = getpid()
    if _hooks_checked == pid:
        return
    _hooks_checked = pid
    if "gunicorn.socket" not in environ and "gunicorn.sock" not in environ:  # gevent_pywsgi's
        return
    missing = [name for name in GUNICORN_HOOKS if name not in _hooks_ran]
    if missing:  # in gunicorn's own log, formatted as its lines are
        logging.getLogger("gunicorn.error").warning(
            "wsgi_pool: worker %d serves requests but these gunicorn hooks of wsgi_pool did not "
            "run: %s. The pools are sized %s. Import them in gunicorn.conf.py (from "
            "wsgi_pool.gunicorn import ...), or call them from hooks of your own with the same "
            "names: a hook defined after the import replaces ours",
            pid,
            ", ".join(missing),
            "from gunicorn's settings"
            if _server is not None
            else "without gunicorn's concurrency (requests' default pool_maxsize=10)",
        )


def record_master(pid: int | None) -> None:
    """Remember the gunicorn master's process id: pools built there are never used by a worker."""
    global _master
    _master = pid


def _server_here() -> ServerReport | None:
    """What the server says of this process's concurrency: gunicorn's hooks, else uWSGI's options."""
    if _server is not None:
        return _server
    try:
        uwsgi = importlib.import_module("uwsgi")  # importable only inside uWSGI
    except ImportError:
        return None
    return uwsgi_report(uwsgi.opt)


def default_config() -> PoolConfig:
    """The settings of this process: those the app gave in code (:func:`adopt`), else the
    ``WSGI_POOL_*`` variables."""
    return env_config() if _adopted is None else _adopted


def own_config(config: PoolConfig | None) -> PoolConfig | None:
    """What a middleware given ``config`` (None: none of its own) calls with: None means the
    process's settings, which are the ``WSGI_POOL_*`` variables unless an app gave others in
    code; then the variables, explicitly."""
    if config is None and _adopted is not None:
        return env_config()
    return config


def env_config() -> PoolConfig:
    """The ``WSGI_POOL_*`` settings of this process, read once: what a middleware given no
    config of its own uses, whatever another app gave in code."""
    global _env_default
    if _env_default is None:
        _env_default = PoolConfig.from_env()
    return _env_default


def adopt(config: PoolConfig) -> None:
    """The app gave ``config`` in code (``PoolMiddleware(app, config)``, Flask's or Django's
    ``WSGI_POOL``): it becomes the process's settings, so ``wsgi_pool.client()`` and
    ``wsgi_pool.adapter()`` use the same pools as the requests. A second, different one is
    warned of (calls through each keep their own settings)."""
    global _adopted
    if _adopted is not None and _adopted != config:
        logger.warning(
            "wsgi_pool: two different configs given in code in one process; "
            "wsgi_pool.client() and wsgi_pool.adapter() use the last"
        )
    _adopted = config
    _forget_policies()


def forget_adopted() -> None:
    """Back to the ``WSGI_POOL_*`` settings, read again (tests)."""
    global _env_default, _adopted
    _adopted = None
    _env_default = None
    _forget_policies()


def effective(config: PoolConfig | None) -> PoolConfig:
    """``config`` (None: the ``WSGI_POOL_*`` settings) completed by what the server reported."""
    found = _completed.get(config)
    if found is None:
        found = (default_config() if config is None else config).completed_by(_server_here())
        _completed[config] = found
    return found


def _forget_policies() -> None:
    global _last_policy, _generation
    _generation += 1
    _completed.clear()
    _policies.clear()
    _last_policy = None


# The last config asked for and its policy: a process mostly asks for one, and a config's hash
# covers every field. Kept only if no forgetting happened while it was worked out.
_last_policy: tuple[PoolConfig | None, Policy] | None = None
_generation = 0


def policy(config: PoolConfig | None) -> Policy:
    """The call settings of ``config`` (None: the ``WSGI_POOL_*`` settings), completed by the server."""
    global _last_policy
    last = _last_policy  # read once: another thread may replace it meanwhile
    if last is not None and last[0] is config:
        return last[1]
    generation = _generation
    settings = effective(config)
    found = _policies.get(settings)
    if found is None:
        if len(_policies) >= MAX_POLICIES:
            _policies.clear()
        found = _policies.setdefault(settings, Policy(settings))
    if generation == _generation:
        _last_policy = (config, found)
    return found


def worker_pools(
    config: PoolConfig | None = None, *, say: Callable[..., None] | None = None
) -> WorkerPools:
    """This process's pools for ``config`` (default: the ``WSGI_POOL_*`` settings), built on first use.

    Configs that shape pools alike share them (each call keeps its own settings); at most
    :data:`MAX_POOL_SETS` sets are kept, the least recently built closed first. ``say`` logs
    their sizing if they are built now (default: the ``wsgi_pool`` logger, at INFO).
    """
    settings = effective(config)
    shape = settings.pool_shape()
    process = _this_process()
    pools = process.by_shape.get(shape)
    if pools is None:
        retired = None
        with process.lock:
            pools = process.by_shape.get(shape)
            if pools is None:  # pragma: no branch  (else: another thread built them meanwhile)
                pools = _build(settings, process, say or logger.info)
                process.by_shape[shape] = pools
                if len(process.by_shape) > MAX_POOL_SETS:
                    retired = process.by_shape.popitem(last=False)[1]
        if retired is not None:
            logger.warning(
                "pid %d: more than %d different pool settings in one process (a PoolConfig "
                "made per call?): the oldest pools are closed; pass per-call settings in one "
                "config's upstreams, or vary only per-call settings (they share pools)",
                process.pid,
                MAX_POOL_SETS,
            )
            retired.close()
    return pools


def _build(settings: PoolConfig, process: _ProcessPools, say: Callable[..., None]) -> WorkerPools:
    from ._worker import WorkerPools  # noqa: PLC0415  (requests loads here, after fork)

    pid = process.pid
    extensions = [found for make in _factories if (found := _extension(make, settings))]
    pools = WorkerPools(
        settings, pid=pid, extensions=extensions, slots=process.slots, registered=True
    )
    say("pools for pid %d: %s", pid, pools.sizing.describe())
    for warning in pools.sizing.warnings:
        logger.warning("pid %d: %s", pid, warning)
    if pid == _master:
        logger.warning("pid %d: %s", pid, BUILT_IN_MASTER)
    return pools


def _extension(make: ExtensionFactory, settings: PoolConfig) -> Extension | None:
    """What ``make`` attaches to pools built from ``settings``; a failure is logged, never raised."""
    try:
        return make(settings)
    except Exception:
        logger.exception(
            "wsgi_pool: an extension could not be attached; the pools go on without it"
        )
        return None


def current(cached: WorkerPools | None, config: PoolConfig | None) -> WorkerPools:
    """``cached`` if this process built it and uses it still, else this process's pools for
    ``config``: the fork check."""
    if cached is not None and cached.pid == marked_pid() and not cached.retired:
        return cached
    return worker_pools(config)


def close_process_pools() -> int:
    """Close the pools this process built (never inherited ones) and stop its watchdog; returns
    how many sets were closed."""
    process = _by_pid.get(getpid())
    if process is None:
        return 0
    with process.lock:
        closing = list(process.by_shape.values())
        process.by_shape.clear()
    for pools in closing:
        pools.close()
    _deadline.close_watchdog()
    return len(closing)


def built_here() -> list[WorkerPools]:
    """The pools this process built, without building any."""
    process = _by_pid.get(getpid())
    return list(process.by_shape.values()) if process is not None else []
