"""The sizing rule: how many connections a worker keeps per upstream, and why.

One pure function, :func:`size_pools`, turns a config (completed by what the server
reported) into a :class:`PoolSizing`: the pool settings a worker uses, each with the reason
for its value, and the warnings about settings that work against each other. ``wsgi-pool
explain`` prints it; each worker logs it when it builds its pools.

| server | concurrent calls per worker | ``pool_maxsize`` |
| --- | --- | --- |
| ``sync`` | 1 | 1 |
| ``gthread`` (or ``sync`` with threads > 1) | ``threads`` | ``threads`` |
| ``gevent`` | ``worker_connections`` | ``worker_connections``, at most 100 |
| ``tornado`` | 1 | 1 |
| unknown | ``threads`` if set | ``threads``, else requests' 10 |

A fleet budget (``fleet_connections``) lowers it to each worker's share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from ._config import DEFAULT_DEADLINE, DEFAULT_HOST_POOLS, DEFAULT_POOL_TIMEOUT, PoolConfig

GEVENT_POOL_CAP: Final = 100
"""Largest per-upstream pool derived from gevent's ``worker_connections``."""

UNKNOWN_SERVER_MAXSIZE: Final = 10
"""Per-host pool size when the server's concurrency is unknown: requests' default."""

DEADLINE_SHARE_OF_WORKER_TIMEOUT: Final = 0.75
"""A derived deadline never exceeds this share of gunicorn's worker ``timeout``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSizing:
    """The pool settings a worker uses, each with the reason for its value."""

    pool_maxsize: int
    pool_connections: int
    pool_block: bool
    pool_timeout: float
    deadline: float
    reasons: Mapping[str, str]
    """Why each setting has its value, by setting name."""
    warnings: tuple[str, ...] = ()
    """Settings that work against each other, each explained in one sentence."""

    def describe(self) -> str:
        """One line: every setting, its value and why."""
        return "; ".join(
            f"{name}={getattr(self, name)!r} ({self.reasons[name]})"
            for name in (
                "pool_maxsize",
                "pool_connections",
                "pool_block",
                "pool_timeout",
                "deadline",
            )
        )


def size_pools(config: PoolConfig) -> PoolSizing:
    """The pool settings for one worker: explicit settings win, the rest follow the server.

    ``sync`` -> 1; ``gthread`` (or ``sync`` with threads > 1) -> threads; ``gevent`` ->
    ``worker_connections`` capped at :data:`GEVENT_POOL_CAP`; ``tornado`` -> 1; an unknown
    server -> its ``threads`` if given, else requests' default of 10.
    """
    if config.pool_maxsize is not None:
        maxsize, why_size = config.pool_maxsize, "set explicitly"
    else:
        maxsize, why_size = _maxsize_for_server(config)
    share = fleet_share(config)
    if share is not None and share < maxsize:
        maxsize, why_size = share, f"{fleet_reason(config)}, below {maxsize} ({why_size})"
    connections, why_connections = (
        (config.pool_connections, "set explicitly")
        if config.pool_connections is not None
        else (DEFAULT_HOST_POOLS, "default: requests' number of per-host pools")
    )
    block, why_block = (
        (config.pool_block, "set explicitly")
        if config.pool_block is not None
        else (True, "default: wait for a free connection rather than open one to throw away")
    )
    timeout, why_timeout = (
        (config.pool_timeout, "set explicitly")
        if config.pool_timeout is not None
        else (DEFAULT_POOL_TIMEOUT, "default: a bounded wait for a free connection")
    )
    deadline, why_deadline = derived_deadline(config)
    return PoolSizing(
        pool_maxsize=maxsize,
        pool_connections=connections,
        pool_block=block,
        pool_timeout=float(timeout),
        deadline=float(deadline),
        reasons=MappingProxyType(
            {
                "pool_maxsize": why_size,
                "pool_connections": why_connections,
                "pool_block": why_block,
                "pool_timeout": why_timeout,
                "deadline": why_deadline,
            }
        ),
        warnings=_conflicts(config, deadline, maxsize=maxsize, block=block),
    )


def fleet_share(config: PoolConfig) -> int | None:
    """A worker's share of the fleet budget: fleet_connections // (replicas x workers), at least 1."""
    if config.fleet_connections is None:
        return None
    return max(1, config.fleet_connections // ((config.replicas or 1) * (config.workers or 1)))


def fleet_reason(config: PoolConfig) -> str:
    """How :func:`fleet_share` came to its number, in words."""
    return (
        f"fleet budget: {config.fleet_connections} connections / ({config.replicas or 1} "
        f"replicas x {config.workers or 1} workers)"
    )


def derived_deadline(config: PoolConfig) -> tuple[float, str]:
    """The default deadline of a call, with its reason: the setting, else below the worker timeout."""
    if config.deadline is not None:
        return config.deadline, "set explicitly"
    worker_timeout = config.worker_timeout
    if worker_timeout:
        share = worker_timeout * DEADLINE_SHARE_OF_WORKER_TIMEOUT
        if share < DEFAULT_DEADLINE:
            return share, f"3/4 of the worker timeout of {worker_timeout:g} s"
        return DEFAULT_DEADLINE, f"default, below the worker timeout of {worker_timeout:g} s"
    return DEFAULT_DEADLINE, "default"


def _conflicts(
    config: PoolConfig, deadline: float, *, maxsize: int, block: bool
) -> tuple[str, ...]:
    found = []
    concurrency = _concurrency(config)
    if config.fleet_connections is not None:
        if config.workers is None:
            found.append(
                "fleet_connections is set but the number of workers is unknown (no gunicorn "
                "hooks, no WSGI_POOL_WORKERS): each worker takes the whole replica's share"
            )
        if not block:
            found.append(
                "pool_block=False with fleet_connections: a worker opens connections past its "
                "share of the fleet budget and throws them away"
            )
        share = fleet_share(config) or 1
        if share * (config.replicas or 1) * (config.workers or 1) > config.fleet_connections:
            found.append(
                f"fleet_connections={config.fleet_connections} is less than one connection per "
                f"worker ({config.replicas or 1} replicas x {config.workers or 1} workers): "
                f"each worker keeps 1, over the budget"
            )
    if not block and concurrency is not None and concurrency > maxsize:
        found.append(
            f"{concurrency} concurrent requests per worker over pool_maxsize={maxsize} with "
            f"pool_block=False: extra connections are opened and thrown away (urllib3's "
            f'"Connection pool is full, discarding connection"); set pool_block=True or '
            f"pool_maxsize>={concurrency}"
        )
    if config.worker_class == "gevent" and (not block or maxsize > GEVENT_POOL_CAP):
        found.append(
            f"gevent worker with pool_maxsize={maxsize} and pool_block={block}: up to "
            f"{concurrency or 1000} greenlets can each open a connection per upstream; cap it "
            f"(pool_block=True, pool_maxsize<={GEVENT_POOL_CAP})"
        )
    timeout = config.worker_timeout
    if timeout and deadline >= timeout:
        found.append(
            f"deadline={deadline:g} s is not below the worker timeout of {timeout:g} s: a sync "
            f"worker is killed before a slow call ends, and its client gets no clean error"
        )
    found.extend(
        f"upstreams[{origin!r}].deadline={settings.deadline:g} s is not below the worker "
        f"timeout of {timeout:g} s"
        for origin, settings in config.upstreams.items()
        if timeout and settings.deadline is not None and settings.deadline >= timeout
    )
    return tuple(found)


def _concurrency(config: PoolConfig) -> int | None:
    """Concurrent WSGI calls per worker, as the server's settings say; None if unknown."""
    kind = config.worker_class
    if kind == "gevent":
        return config.worker_connections or 1000
    if kind in {"gthread", "sync"}:
        return config.threads or 1
    if kind == "tornado":
        return 1
    return config.threads


def _maxsize_for_server(config: PoolConfig) -> tuple[int, str]:  # noqa: PLR0911  (one return per row of the sizing table)
    kind, threads = config.worker_class, config.threads
    if kind == "gevent":
        wanted = config.worker_connections or 1000
        if wanted > GEVENT_POOL_CAP:
            return (
                GEVENT_POOL_CAP,
                f"gevent worker: worker_connections={wanted} capped at {GEVENT_POOL_CAP}",
            )
        return wanted, f"gevent worker: worker_connections={wanted}"
    if kind == "gthread":
        count = threads or 1
        return count, f"gthread worker with {count} thread{'s' if count > 1 else ''}"
    if kind == "sync":
        if threads and threads > 1:
            return threads, f"sync worker with {threads} threads runs as gthread"
        return 1, "sync worker: one request at a time"
    if kind == "tornado":
        return 1, "tornado worker: one WSGI call at a time"
    if threads:
        return threads, f"server concurrency unknown; threads={threads}"
    return (
        UNKNOWN_SERVER_MAXSIZE,
        "server concurrency unknown (no gunicorn hooks, no worker_class or threads set): "
        "requests' default",
    )
