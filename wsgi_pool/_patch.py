"""Opt-in: ``requests.get(...)`` and the other module-level functions through this process's pools.

An app that calls ``requests.get``, ``requests.post``, ... ``requests.request`` everywhere can
adopt wsgi_pool without touching its call sites: one call at start-up (in ``gunicorn.conf.py``,
or where the app is made) and each of those calls goes through the pools of the process it
runs in, with the config's timeouts, deadline, retries, egress policy and statistics, and no
cookie kept from one call to the next (as with ``requests.get``)::

    import wsgi_pool

    wsgi_pool.patch_requests()      # requests.get & co. now use this process's pools
    ...
    wsgi_pool.unpatch_requests()    # back to requests' own, one new session per call

What changes: the function ``requests.request`` (``requests.api.request``), which ``requests.get``
and the others call. What does not: ``requests.Session()`` objects, an SDK's own session
included (mount ``wsgi_pool.adapter()`` on those), and requests' reading of the environment
(``HTTP_PROXY``, ``REQUESTS_CA_BUNDLE``, ``.netrc``), which wsgi_pool's clients never do.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import requests
import requests.api

from ._client import Client
from ._config import PoolConfig

logger = logging.getLogger("wsgi_pool")

_lock = threading.Lock()
_original: Callable[..., requests.Response] | None = None  # requests' own, while ours is in place


def patch_requests(config: PoolConfig | None = None) -> None:
    """Send ``requests.get``, ``requests.post``, ... ``requests.request`` through this process's
    pools under ``config`` (default: the ``WSGI_POOL_*`` settings). Safe in the gunicorn master:
    each call finds the pools of the process it runs in. Calling it again changes the config."""
    global _original

    def request(method: str | bytes, url: str | bytes, **kwargs: Any) -> requests.Response:
        """requests' ``request``, through wsgi_pool's pools (``wsgi_pool.patch_requests()``)."""
        return Client(config).request(method, url, **kwargs)

    with _lock:
        if _original is None:
            _original = requests.api.request
        request.__wrapped__ = _original  # type: ignore[attr-defined]
        requests.api.request = request
        requests.request = request


def unpatch_requests() -> None:
    """Undo :func:`patch_requests`: requests' own ``request`` again. A no-op if not patched; if
    something has replaced ``requests.request`` since, it is left in place (and logged)."""
    global _original
    with _lock:
        original = _original
        if original is None:
            return
        replaced = [
            name
            for name, found in (
                ("requests.api.request", requests.api.request),
                ("requests.request", requests.request),
            )
            if not _wraps(found, original)
        ]
        if replaced:
            logger.warning(
                "wsgi_pool.unpatch_requests(): %s replaced after patch_requests(); left as "
                "it is (nothing undone)",
                " and ".join(replaced),
            )
            return
        requests.api.request = original
        requests.request = original
        _original = None


def _wraps(function: object, original: object) -> bool:
    """Whether ``function`` is the one :func:`patch_requests` put over ``original``."""
    return getattr(function, "__wrapped__", None) is original
