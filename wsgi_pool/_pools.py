"""One process's pools: urllib3 pools behind a requests adapter, shared by every client.

requests' ``HTTPAdapter`` with ``pool_block=True`` never passes a pool timeout, so a
caller waits forever for a free connection, and a forced timeout surfaces as urllib3's
``EmptyPoolError``. Here the pools substitute the configured wait, and the adapter turns
the error into :class:`PoolTimeout`, a ``requests.Timeout`` that names the upstream.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import urllib.request
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import EmptyPoolError
from urllib3.util import Timeout, parse_url

from ._config import PoolConfig, PoolSizing, size_pools
from ._errors import WsgiPoolError

if TYPE_CHECKING:
    from urllib3._base_connection import BaseHTTPConnection

logger = logging.getLogger("wsgi_pool")


class PoolTimeout(WsgiPoolError, requests.exceptions.Timeout):
    """No pooled connection to an upstream became free within ``pool_timeout``."""

    def __init__(
        self, upstream: str, pool_maxsize: int, waited: float, request: Any = None
    ) -> None:
        self.upstream = upstream
        self.pool_maxsize = pool_maxsize
        self.waited = waited
        super().__init__(
            f"no free connection to {upstream} after waiting {waited:g} s: all "
            f"pool_maxsize={pool_maxsize} connections are in use (raise pool_maxsize or "
            f"pool_timeout, or close streamed responses)",
            request=request,
        )


class _HTTPPool(HTTPConnectionPool):
    pool_wait: float | None = None

    def _get_conn(self, timeout: float | None = None) -> BaseHTTPConnection:
        return super()._get_conn(self.pool_wait if timeout is None else timeout)


class _HTTPSPool(HTTPSConnectionPool):
    pool_wait: float | None = None

    def _get_conn(self, timeout: float | None = None) -> BaseHTTPConnection:
        return super()._get_conn(self.pool_wait if timeout is None else timeout)


def _pool_classes(wait: float) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes whose callers wait at most ``wait`` seconds for a connection."""
    return {
        "http": type("HTTPConnectionPool", (_HTTPPool,), {"pool_wait": wait}),
        "https": type("HTTPSConnectionPool", (_HTTPSPool,), {"pool_wait": wait}),
    }


class SharedAdapter(HTTPAdapter):
    """The one requests adapter of a worker: its pools, default timeouts and bounded wait."""

    def __init__(self, sizing: PoolSizing, timeout: Timeout) -> None:
        self.sizing = sizing
        self.default_timeout = timeout
        self._pool_classes = _pool_classes(sizing.pool_timeout)
        super().__init__(
            pool_connections=sizing.pool_connections,
            pool_maxsize=sizing.pool_maxsize,
            pool_block=sizing.pool_block,
            max_retries=0,
        )

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        new = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if new and not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = self._pool_classes
        return manager

    def send(  # noqa: PLR0917  (requests' HTTPAdapter.send signature)
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        # requests accepts a urllib3 Timeout here, though its annotation does not say so.
        chosen: Any = self.default_timeout if timeout is None else timeout
        try:
            return super().send(
                request,
                stream=stream,
                timeout=chosen,
                verify=verify,
                cert=cert,
                proxies=proxies,
            )
        except EmptyPoolError as exc:
            raise PoolTimeout(
                upstream=_origin(request.url or ""),
                pool_maxsize=self.sizing.pool_maxsize,
                waited=self.sizing.pool_timeout,
                request=request,
            ) from exc


def _origin(url: str) -> str:
    parts = parse_url(url)
    return f"{parts.scheme}://{parts.netloc}"


class WorkerPools:
    """The pools of one process, built after fork; every client of the process shares them.

    Immutable after construction except for the urllib3 pools inside ``adapter``, which
    are thread-safe. ``pid`` is the process that built them: no other process may use them.
    """

    def __init__(self, config: PoolConfig, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.config = config
        self.sizing = size_pools(config)
        self.proxies, self.no_proxy = _proxy_settings(config)
        self.adapter = SharedAdapter(
            self.sizing, Timeout(connect=config.connect_timeout, read=config.read_timeout)
        )

    def bypasses_proxy(self, host: str | None) -> bool:
        """Whether ``host`` matches the NO_PROXY list read at start (``trust_env``)."""
        return bool(host) and any(_matches(entry, host or "") for entry in self.no_proxy)

    def close(self) -> None:
        """Close every idle pooled connection; connections in use are closed when returned."""
        self.adapter.close()

    def upstreams(self) -> dict[str, dict[str, int]]:
        """Per upstream: connections idle in the pool and opened so far."""
        manager = self.adapter.poolmanager
        found: dict[str, dict[str, int]] = {}
        # Read without the pools' locks: a snapshot for statistics. A pool evicted meanwhile is None.
        for pool in filter(None, [manager.pools.get(key) for key in manager.pools.keys()]):  # noqa: SIM118  (urllib3's container refuses iteration)
            slots = list(pool.pool.queue) if pool.pool is not None else []
            found[f"{pool.scheme}://{pool.host}:{pool.port}"] = {
                "idle": sum(1 for conn in slots if conn is not None),
                "free_slots": len(slots),
                "opened": pool.num_connections,
                "requests": pool.num_requests,
            }
        return found

    def __repr__(self) -> str:
        upstreams = ", ".join(
            f"{name}: {counts['opened']} opened, {counts['idle']} idle, "
            f"{self.sizing.pool_maxsize - counts['free_slots']} in use"
            for name, counts in self.upstreams().items()
        )
        return (
            f"<WorkerPools pid={self.pid} pool_maxsize={self.sizing.pool_maxsize} "
            f"pool_block={self.sizing.pool_block} [{upstreams}]>"
        )


def _proxy_settings(config: PoolConfig) -> tuple[Mapping[str, str], tuple[str, ...]]:
    """The proxies every client of these pools uses, and the NO_PROXY entries; read once."""
    proxies: dict[str, str] = {}
    no_proxy: tuple[str, ...] = ()
    if config.trust_env:
        found = urllib.request.getproxies_environment()
        no_proxy = tuple(
            entry.strip().lower() for entry in found.pop("no", "").split(",") if entry.strip()
        )
        proxies.update({scheme: url for scheme, url in found.items() if url})
    proxies.update(config.proxies)
    return MappingProxyType(proxies), no_proxy


def _matches(entry: str, host: str) -> bool:
    """Whether a NO_PROXY entry (``*``, a domain suffix, an address or a network) covers ``host``."""
    host = host.strip("[]").lower()
    if entry == "*":
        return True
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        domain = entry.lstrip(".")
        return host == domain or host.endswith("." + domain)
