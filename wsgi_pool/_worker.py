"""One process's pools: the shared adapter, its statistics and extensions, built after fork.

A :class:`WorkerPools` is what every client of a process shares: the sizing worked out from
its config, the :class:`~wsgi_pool._adapter.SharedAdapter` (pools, calls, policies), the
proxies read once, the per-upstream statistics, and the optional extensions attached to
them (Prometheus, the HTTP cache, OpenTelemetry: each an :class:`Extension`, given by the
process registry; this module imports none of them). It is read-only once built; ``pid``
is the process that built it, and no other process may use it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from . import _deadline
from ._adapter import ReadOnly, ResponseCache, SharedAdapter, live_pools
from ._config import PoolConfig
from ._origins import origin_of
from ._proxies import bypasses, proxy_settings
from ._sizing import size_pools
from ._stats import Registry, Sink, UpstreamSnapshot

if TYPE_CHECKING:
    from ._deadline import Watchdog
    from ._pool import Slots

logger = logging.getLogger("wsgi_pool")

_E = TypeVar("_E", bound="Extension")


class Extension:
    """An optional integration attached to one process's pools; each hook may be left as it is.

    The process registry asks each registered factory for one when it builds pools
    (``_process.register``): Prometheus, OpenTelemetry and the HTTP cache are extensions.
    A failing ``sink_for``, ``start`` or ``close`` is logged and never fails a call.
    """

    def sink_for(self, upstream: str) -> Sink | None:
        """Where this upstream's events go besides the counters (None: nowhere)."""
        return None

    def response_cache(self) -> ResponseCache | None:
        """A cache the adapter consults before each try (None: none)."""
        return None

    def start(self, pools: WorkerPools) -> None:
        """The pools are built: start whatever runs beside them (a gauge thread)."""

    def close(self) -> None:
        """The pools are closing: stop it."""


ExtensionFactory = Callable[[PoolConfig], "Extension | None"]


class WorkerPools(ReadOnly):
    """The pools of one process, built after fork; every client of the process shares them.

    Read-only after construction except for the urllib3 pools inside ``adapter`` and the
    counters, which are thread-safe. ``pid`` is the process that built them: no other
    process may use them.
    """

    def __init__(
        self,
        config: PoolConfig,
        pid: int | None = None,
        *,
        extensions: Sequence[Extension] = (),
        slots: weakref.WeakValueDictionary[tuple[str, int], Slots] | None = None,
        registered: bool = False,
    ) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.registered = registered
        """Built by the process's registry for a config (not a caller's own)."""
        self.config = config
        self.sizing = size_pools(config)
        self.extensions = tuple(extensions)
        caches = [cache for e in self.extensions if (cache := e.response_cache()) is not None]
        self.adapter = SharedAdapter(
            config,
            self.sizing,
            stats=Registry(sink_for=[e.sink_for for e in self.extensions]),
            cache=caches[0] if caches else None,
            slots=slots,
        )
        self.proxies, self.no_proxy = proxy_settings(config)
        self.retired = False
        """Closed, or inherited across a fork: no client uses them any more (see ``_process``)."""
        _every.add(self)
        self._frozen = True
        for extension in self.extensions:
            with _logged(f"starting {type(extension).__name__}"):
                extension.start(self)

    @property
    def watchdog(self) -> Watchdog:
        """This process's deadline watchdog (one per process, whichever pools a call uses)."""
        return _deadline.watchdog()

    def retire(self) -> None:
        """No client may take these pools any more; the next call finds (or builds) others."""
        object.__setattr__(self, "retired", True)

    def release_copies(self) -> int:
        """In a process forked from the one that built them: close this process's copies of
        their sockets, leaving the connections to the parent; how many were closed."""
        if self.pid == os.getpid():
            return 0  # not a copy: these are this process's own
        return self.adapter.release_copies()

    def extension(self, kind: type[_E]) -> _E | None:
        """The attached extension of class ``kind``, if any."""
        return next((e for e in self.extensions if isinstance(e, kind)), None)

    def bypasses_proxy(self, host: str | None) -> bool:
        """Whether ``host`` matches the NO_PROXY list read at start (``trust_env``)."""
        return bypasses(self.no_proxy, host)

    def deadline_for(self, url: str) -> float:
        """The deadline, in seconds, of a call to ``url`` under these pools' own config."""
        return self.adapter.policy.deadline_for(origin_of(url))

    def close(self) -> None:
        """Close every idle pooled connection and the extensions; connections in use close when returned."""
        self.retire()
        self.adapter.shutdown()
        for extension in self.extensions:
            with _logged(f"closing {type(extension).__name__}"):
                extension.close()

    def stats(self) -> dict[str, UpstreamSnapshot]:
        """Per upstream (``scheme://host:port``): what its calls and connections did, and the
        connections in use and idle now. Upstreams past the registry's bound are under ``"other"``."""
        gauges: dict[str, list[int]] = {}
        counted: set[int] = set()
        for manager in self.adapter.managers():
            for pool in live_pools(manager):
                queue, stats = pool.pool, getattr(pool, "stats", None)
                if queue is None or stats is None:  # closed, or not ours (a SOCKS proxy's)
                    continue
                # Other threads take and return connections meanwhile: read under the queue's
                # lock. gevent's queue has none, and needs none (no switch while copying).
                with getattr(queue, "mutex", None) or contextlib.nullcontext():
                    kept = list(queue.queue)
                found = gauges.setdefault(stats.upstream, [0, 0])
                slots = getattr(pool, "slots", None)
                if slots is None:  # not bounded (pool_block=False): what this pool lent out
                    found[0] += max(self.sizing.pool_maxsize - len(kept), 0)
                elif id(slots) not in counted:  # every pool of the upstream, evicted ones too
                    counted.add(id(slots))
                    found[0] += slots.in_use
                found[1] += sum(1 for conn in kept if conn is not None and conn.sock is not None)
        return {
            stats.upstream: stats.snapshot(*gauges.get(stats.upstream, [0, 0]))
            for stats in self.adapter.stats.all()
        }

    def __repr__(self) -> str:
        upstreams = ", ".join(
            f"{name}: Requests: {found.in_use} active, {found.waiting} waiting | "
            f"Connections: {found.in_use} in use, {found.idle} idle, {found.opened} opened"
            for name, found in self.stats().items()
        )
        return (
            f"<WorkerPools pid={self.pid} pool_maxsize={self.sizing.pool_maxsize} "
            f"pool_block={self.sizing.pool_block} [{upstreams}]>"
        )


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    """An extension's failure is logged, never raised: metrics must not stop the pools."""
    try:
        yield
    except Exception:
        logger.exception("wsgi_pool: %s failed", what)


# Every WorkerPools of this process, registered or a caller's own (``_process`` releases the
# inherited ones in a forked child).
_every: weakref.WeakSet[WorkerPools] = weakref.WeakSet()


def release_inherited(pid: int) -> None:
    """In process ``pid``, forked from the one that made them: every set of pools retired (no
    lock: a fork may hold it) and this process's copies of their sockets closed."""
    for pools in list(_every):
        if pools.pid != pid:
            pools.retire()
            with _logged("releasing inherited pools"):  # one set's failure stops no other
                pools.release_copies()
