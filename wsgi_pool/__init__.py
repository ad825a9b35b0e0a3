"""wsgi_pool: one fork-safe, pooled HTTP client per WSGI worker, sized from the server.

Importing this package imports neither requests nor urllib3 (nor gunicorn): the names that
need them load on first use, so a ``gunicorn.conf.py`` can import the hooks in the master
before gevent patches anything.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _integrations
from ._attempt import Timings, timings
from ._config import PoolConfig, UpstreamSettings
from ._deadline import deadline
from ._errors import (
    ConfigError,
    InsecureRequestRefused,
    MissingClientError,
    RequestEnded,
    SharedStateError,
    WsgiPoolError,
)
from ._sizing import PoolSizing, size_pools

if TYPE_CHECKING:
    from ._client import Client, adapter
    from ._failures import (
        DeadlineExceeded,
        EgressDenied,
        PoolOverloaded,
        PoolTimeout,
        RedirectRefused,
        ResponseTooLarge,
        TooManyRedirects,
        UpstreamConnectionError,
        UpstreamConnectTimeout,
        UpstreamEjected,
        UpstreamError,
        UpstreamHeaderError,
        UpstreamProtocolError,
        UpstreamProxyError,
        UpstreamReadTimeout,
        UpstreamRefused,
        UpstreamReset,
        UpstreamTimeout,
        UpstreamTLSError,
        UpstreamUnreachable,
    )
    from ._middleware import ENVIRON_KEY, PoolMiddleware, client, client_from
    from ._patch import patch_requests, unpatch_requests
    from ._stats import UpstreamSnapshot
    from ._worker import WorkerPools

__version__ = "0.2.0"

__all__ = [
    "ENVIRON_KEY",
    "Client",
    "ConfigError",
    "DeadlineExceeded",
    "EgressDenied",
    "InsecureRequestRefused",
    "MissingClientError",
    "PoolConfig",
    "PoolMiddleware",
    "PoolOverloaded",
    "PoolSizing",
    "PoolTimeout",
    "RedirectRefused",
    "RequestEnded",
    "ResponseTooLarge",
    "SharedStateError",
    "Timings",
    "TooManyRedirects",
    "UpstreamConnectTimeout",
    "UpstreamConnectionError",
    "UpstreamEjected",
    "UpstreamError",
    "UpstreamHeaderError",
    "UpstreamProtocolError",
    "UpstreamProxyError",
    "UpstreamReadTimeout",
    "UpstreamRefused",
    "UpstreamReset",
    "UpstreamSettings",
    "UpstreamSnapshot",
    "UpstreamTLSError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "WorkerPools",
    "WsgiPoolError",
    "adapter",
    "client",
    "client_from",
    "deadline",
    "patch_requests",
    "size_pools",
    "timings",
    "unpatch_requests",
]

_LAZY = {
    "Client": "._client",
    "adapter": "._client",
    "patch_requests": "._patch",
    "unpatch_requests": "._patch",
    "ENVIRON_KEY": "._middleware",
    "PoolMiddleware": "._middleware",
    "client": "._middleware",
    "client_from": "._middleware",
    "DeadlineExceeded": "._failures",
    "EgressDenied": "._failures",
    "RedirectRefused": "._failures",
    "TooManyRedirects": "._failures",
    "PoolTimeout": "._failures",
    "PoolOverloaded": "._failures",
    "UpstreamEjected": "._failures",
    "ResponseTooLarge": "._failures",
    "UpstreamConnectionError": "._failures",
    "UpstreamConnectTimeout": "._failures",
    "UpstreamError": "._failures",
    "UpstreamHeaderError": "._failures",
    "UpstreamProtocolError": "._failures",
    "UpstreamProxyError": "._failures",
    "UpstreamReadTimeout": "._failures",
    "UpstreamRefused": "._failures",
    "UpstreamReset": "._failures",
    "UpstreamTimeout": "._failures",
    "UpstreamTLSError": "._failures",
    "UpstreamUnreachable": "._failures",
    "UpstreamSnapshot": "._stats",
    "WorkerPools": "._worker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wsgi_pool' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


_integrations.install()
