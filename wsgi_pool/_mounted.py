"""A transport adapter any ``requests.Session`` can mount: each send goes through this process's pools.

SDKs own their ``requests.Session`` (cookie-auth database clients, payment and chat SDKs,
``google-auth``'s ``AuthorizedSession``). Mounting :class:`ProcessAdapter` on one
(``session.mount("https://", wsgi_pool.adapter())``) gives its calls the process's pools and
their policies while its cookies, headers and auth stay the session's own. It is made and
mounted anywhere, at import and in the gunicorn master under ``--preload`` included: it
holds no connection, and finds the pools of the process it runs in on each send, so no
connection is ever used by two processes.
"""

from __future__ import annotations

from typing import Any

import requests
import requests.adapters

from . import _process
from ._adapter import ReadOnly
from ._config import PoolConfig
from ._worker import WorkerPools


class ProcessAdapter(ReadOnly, requests.adapters.BaseAdapter):
    """A transport adapter any ``requests.Session`` can mount: every send goes through the pools
    of the process it runs in, with their policies (``wsgi_pool.adapter()``).

    Safe to make and mount anywhere, the gunicorn master under ``--preload`` included: it
    holds no connection, and finds this process's pools on each send. ``close()`` closes
    nothing (the pools close with the worker). Read-only: clients of one config share it.
    """

    def __init__(self, config: PoolConfig | None = None, pools: WorkerPools | None = None) -> None:
        super().__init__()
        self.config = config
        self._pools = pools  # a caller's own pools (Client(pools=...)), while in their process
        self._frozen = True

    @property
    def pools(self) -> WorkerPools:
        """This process's pools, as this adapter sends through them now."""
        pools = _process.current(self._pools, self.config)
        if pools is not self._pools:
            object.__setattr__(self, "_pools", pools)
        return pools

    def send(  # noqa: PLR0917  (requests' adapter signature)
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        return self.pools.adapter.call(
            request,
            _process.policy(self.config),
            stream=stream,
            timeout=timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )

    def close(self) -> None:
        """Nothing to close: the process's pools close when the worker exits."""

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_frozen", False)
        self.__init__(state["config"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<wsgi_pool.ProcessAdapter config={'default' if self.config is None else 'own'}>"
