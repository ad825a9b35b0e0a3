"""Fast piece: the urllib3 pool of a request, its key worked out once per upstream.

requests' ``HTTPAdapter.send`` does on every call what a worker's pools need done once: it
parses the URL again to find the pool (``get_connection_with_tls_context``), builds the
pool's key, and checks on disk that the CA bundle exists and sets it on the pool
(``cert_verify``). :class:`PoolKeys` remembers the key per scheme, authority, ``verify`` and
``cert``, and checks a pool once. The pool is the one requests would choose (a test
compares them); it is taken while ``seams.ADAPTER`` is intact.
"""

from __future__ import annotations

from typing import Any, Final

import requests
from requests.adapters import HTTPAdapter, _urllib3_request_context
from requests.exceptions import InvalidURL
from urllib3 import HTTPConnectionPool, PoolManager
from urllib3.exceptions import LocationValueError

from wsgi_pool._origins import DEFAULT_PORTS, authority_of

MAX_KEYS: Final = 1024
"""Pool keys remembered; past that the memory starts again (a bound, never reached in practice)."""

_Entry = tuple[Any, dict[str, Any]]


class PoolKeys:
    """The pool requests' adapter would use for a request, its key computed once per upstream.

    Mutable state: ``_keys`` (``(scheme, authority, verify, cert)`` to the urllib3 pool key
    and context), changed by single dict operations, atomic under the GIL; two threads racing
    on a new upstream compute equal entries.
    """

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: dict[tuple[Any, ...], _Entry] = {}

    def pool_for(
        self, manager: PoolManager, request: requests.PreparedRequest, verify: Any, cert: Any
    ) -> HTTPConnectionPool:
        """The pool of ``manager`` requests would use for ``request``, checked for ``verify`` and ``cert`` once."""
        url = request.url or ""
        try:
            memo = (*authority_of(url), verify, cert)
            entry = self._keys.get(memo)
        except TypeError:  # an unhashable verify or cert: found afresh each time
            memo, entry = None, None
        if entry is None:
            entry = _entry(manager, request, verify, cert)
            if memo is not None:
                if len(self._keys) >= MAX_KEYS:
                    self._keys.clear()
                self._keys[memo] = entry
        # A copy: urllib3 takes the scheme, host and port out of it when it makes a new pool.
        pool: Any = manager.connection_from_pool_key(entry[0], request_context=dict(entry[1]))
        if pool.wp_checked != (verify, cert):
            # requests checks that the CA bundle and client certificate exist, and sets them
            # on the pool, on every call; once per pool is enough: the pool's key holds them.
            HTTPAdapter.cert_verify(None, pool, url, verify, cert)  # type: ignore[arg-type]  # needs no adapter
            pool.wp_checked = (verify, cert)
        return pool  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self._keys)


def _entry(
    manager: PoolManager, request: requests.PreparedRequest, verify: Any, cert: Any
) -> _Entry:
    """What ``PoolManager.connection_from_host`` would compute for requests' host and pool settings."""
    try:
        host, pool_kwargs = _urllib3_request_context(request, verify, cert, manager)
    except ValueError as exc:
        raise InvalidURL(exc, request=request) from exc
    if not host["host"]:
        raise InvalidURL(LocationValueError("No host specified."), request=request)
    scheme = (host["scheme"] or "http").lower()
    context = {**manager.connection_pool_kw, **pool_kwargs}
    context.update(scheme=scheme, host=host["host"], port=host["port"] or DEFAULT_PORTS[scheme])
    # http or https: the client's get_adapter sends nothing else here.
    return manager.key_fn_by_scheme[scheme](context), context
