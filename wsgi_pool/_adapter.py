"""The transport adapter: one requests ``HTTPAdapter`` per process, shared by every client and session.

It owns the urllib3 pool managers (built with the process's pool classes) and turns each
``send`` into a :class:`~wsgi_pool._call.Call`, handing it the call's settings (per
upstream), the upstream's retry budget and counters. Each try (:meth:`SharedAdapter.attempt`)
goes one of three ways:

- to a proxy: requests' own ``HTTPAdapter.send`` (its proxy managers use the same pool classes);
- when a tool patched a seam the fast path skips (``responses`` patches ``HTTPAdapter.send``,
  OpenTelemetry urllib3's ``urlopen``): requests' own ``HTTPAdapter.send``, patched or not;
- otherwise the fast path: the pool found by ``_fast.pools``, the try made by the pool's
  ``send`` (``_fast.exchange``), the response built by ``_fast.response``.

It is shared, so it is read-only once built: setting an attribute or calling ``close()``
raises :class:`SharedStateError`; the process closes it with :meth:`SharedAdapter.shutdown`.
An optional response cache (``_cache``, given by the process) answers before a try.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Final, Protocol

import requests
from requests.adapters import HTTPAdapter
from requests.utils import select_proxy
from urllib3 import HTTPConnectionPool

from . import _deadline, _propagation
from ._call import Call
from ._config import PoolConfig, UpstreamSettings
from ._connection import release_copies
from ._egress import EgressPolicy
from ._errors import SharedStateError
from ._fast import seams
from ._fast.pools import PoolKeys
from ._fast.response import build
from ._fast.whole import WholeResponse
from ._origins import origin_of
from ._outliers import Outliers
from ._policy import Policy
from ._pool import Slots, pool_classes
from ._response import Response
from ._retry import RetryBudget
from ._sizing import PoolSizing
from ._stats import Counters, Registry

MAX_ROUTES: Final = 1024
"""(policy, upstream) pairs whose settings, counters and budget are kept found; past that the
memory starts again."""

_Route = tuple[UpstreamSettings, Counters, RetryBudget]


class ResponseCache(Protocol):
    """A cache the adapter consults: before a try, and with each response that arrives."""

    def lookup(self, request: requests.PreparedRequest) -> Any: ...

    def arrived(self, request: requests.PreparedRequest, response: Any) -> tuple[Any, bool]: ...


class ReadOnly:
    """Attributes fixed once ``_frozen`` is set: every request of the process shares the object."""

    _frozen = False

    def __setattr__(self, name: str, value: Any) -> None:
        self._check_writable(name)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        self._check_writable(name)
        super().__delattr__(name)

    def _check_writable(self, name: str) -> None:
        if self._frozen:
            raise SharedStateError(
                f"{type(self).__name__} is shared by every request of the worker and is "
                f"read-only (changing {name!r}): mount an adapter or set headers on your own "
                f"client, or change the PoolConfig"
            )


def live_pools(manager: Any) -> list[HTTPConnectionPool]:
    """The pools a urllib3 pool manager holds now; one evicted meanwhile is skipped."""
    return list(filter(None, [manager.pools.get(key) for key in manager.pools.keys()]))  # noqa: SIM118  (urllib3's container refuses iteration)


def lifetime_for(config: PoolConfig) -> Any:
    """An upstream's connection lifetime under ``config``: (idle timeout, age or None)."""

    def lifetime(origin: str) -> tuple[float, float | None]:
        settings = config.for_upstream(origin)
        return settings.idle_timeout or config.idle_timeout, settings.max_connection_age

    return lifetime


class SharedAdapter(ReadOnly, HTTPAdapter):
    """The one requests adapter of a process's pools: its calls, their policies, its pools.

    Read-only once built: setting an attribute or calling :meth:`close` raises
    :class:`SharedStateError`. The process closes it with :meth:`shutdown`.
    """

    def __init__(
        self,
        config: PoolConfig,
        sizing: PoolSizing,
        *,
        stats: Registry,
        cache: ResponseCache | None = None,
        slots: weakref.WeakValueDictionary[tuple[str, int], Slots] | None = None,
    ) -> None:
        self.pool_config = config
        self.policy = Policy(config)
        """The call settings of calls sent through :meth:`send` (a client passes its own)."""
        self.sizing = sizing
        self.stats = stats
        self.http_cache = cache
        # Per upstream: a retry budget per counted upstream and retry setting (bounded by the
        # stats' registry), and the slots of the upstreams with a pool or a connection out
        # (they go with the last; shared with the process's other sets of pools, retired ones
        # included, when it passes its own). setdefault keeps one of two racing threads' objects.
        self._budgets: dict[tuple[str, float, float], RetryBudget] = {}
        self._slots = weakref.WeakValueDictionary() if slots is None else slots
        self._keys = PoolKeys()
        self._routes: dict[tuple[Policy, str], _Route] = {}
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self.outliers = (
            None
            if config.eject_after_failures is None and config.eject_after_5xx is None
            else Outliers(
                failures=config.eject_after_failures,
                answers=config.eject_after_5xx,
                base=config.ejection_time,
                longest=config.max_ejection_time,
                fail_fast=config.fail_fast_when_ejected,
            )
        )
        self._pool_classes = pool_classes(
            wait=sizing.pool_timeout,
            lifetime_for=lifetime_for(config),
            max_requests=config.max_requests_per_connection,
            max_pending=config.max_pending,
            egress=EgressPolicy.from_config(config),
            outliers=self.outliers,
            registry=stats,
            slots_for=self._slots_for,
            made=self._connections,
        )
        super().__init__(
            pool_connections=sizing.pool_connections,
            pool_maxsize=sizing.pool_maxsize,
            pool_block=sizing.pool_block,
            max_retries=0,
        )
        self._frozen = True

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

    def close(self) -> None:
        """Refused: the shared pools close when the worker exits."""
        raise SharedStateError(
            "the worker's shared adapter closes when the worker exits, not from a handler; "
            "close your own client (or the response) instead"
        )

    def shutdown(self) -> None:
        """Close every pool's idle connections, then forget the pools.

        urllib3 2 closes a pool it drops only when the pool is garbage-collected; a response
        still referenced would keep its pool's idle connections open past worker exit.
        """
        for manager in self.managers():
            for pool in live_pools(manager):
                pool.close()
        super().close()  # what requests' close() does: forget the pools

    def release_copies(self) -> int:
        """In a forked child: close the child's copies of every connection's socket (see
        ``_connection.release_copies``); how many were closed."""
        return release_copies(self._connections)

    def managers(self) -> list[Any]:
        """The urllib3 pool managers: the direct one, and one per proxy."""
        return [self.poolmanager, *self.proxy_manager.values()]

    def forget_closed_pools(self) -> None:
        """Remove closed pools from the pool managers, so the next call to their upstream gets a new one."""
        for manager in self.managers():
            for key in manager.pools.keys():  # noqa: SIM118  (urllib3's container refuses iteration)
                found = manager.pools.get(key)
                if found is not None and found.pool is None:
                    with contextlib.suppress(KeyError):  # another thread removed it first
                        del manager.pools[key]

    def _slots_for(self, origin: str) -> Slots:
        """The slots of ``origin``: one object for every urllib3 pool made for it."""
        key = (origin, self.sizing.pool_maxsize)
        found = self._slots.get(key)
        if found is None:
            found = self._slots.setdefault(key, Slots(self.sizing.pool_maxsize))
        return found

    def _route(self, policy: Policy, origin: str) -> _Route:
        """What calls to ``origin`` under ``policy`` use: its settings, counters and retry
        budget (found once per policy and upstream)."""
        key = (policy, origin)
        found = self._routes.get(key)
        if found is None:
            stats = self.stats.for_upstream(origin)
            found = (policy.settings_for(origin), stats, self.budget_for(stats, policy.config))
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()
            self._routes[key] = found
        return found

    def budget_for(self, stats: Counters, config: PoolConfig) -> RetryBudget:
        """The retry budget of the upstream ``stats`` counts, for ``config``'s retry settings."""
        key = (stats.upstream, config.retry_budget, config.retry_budget_min_per_second)
        found = self._budgets.get(key)
        if found is None:
            found = self._budgets.setdefault(
                key, RetryBudget(config.retry_budget, config.retry_budget_min_per_second)
            )
        return found

    def send(  # noqa: PLR0917  (requests' HTTPAdapter.send signature)
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """A call under the pools' own policy (see :meth:`call`)."""
        return self.call(
            request,
            self.policy,
            stream=stream,
            timeout=timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )

    def call(
        self,
        request: requests.PreparedRequest,
        policy: Policy,
        *,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """A call under ``policy``: tries under the deadline, retries and replay, errors named,
        the size capped."""
        # The seams judged once for the call, unless the client's request() or send() did
        # for this send of this request.
        held = None if seams.spend(request) else seams.hold(request)
        token = None
        try:
            if self.http_cache is not None:
                stored = self.http_cache.lookup(request)
                if stored is not None:
                    return self._built(request, stored, from_cache=True)
            origin = origin_of(request.url or "")
            deadline = _deadline.current()
            if deadline is None:  # used without a client's request(): the call is this send,
                # within any wsgi_pool.deadline() block and the request's budget
                deadline = _deadline.start_call(policy.deadline_for(origin), None)
                token = _deadline.bind(deadline)
            # The id and trace context of the request being served (a request-scoped client's
            # own send sets them too): a context variable, so one request object sent by
            # several threads at once carries each thread's own.
            trace = _propagation.current()
            if origin.startswith("http://") and not (
                proxies and select_proxy(request.url or "", proxies)
            ):
                # No TLS on the way: a caller's CA bundle or client certificate (an SDK's
                # session reads REQUESTS_CA_BUNDLE) verifies nothing here, and must not give
                # the upstream a second pool; verify=False is no risk either.
                verify, cert = True, None
            settings, stats, budget = self._route(policy, origin)
            call = Call(
                self,
                request,
                origin=origin,
                deadline=deadline,
                timeout=timeout,
                settings=settings,
                config=policy.config,
                sizing=self.sizing,
                budget=budget,
                stats=stats,
                trace=trace,
            )
            return call.run(
                stream=stream, verify=call.verification(verify), cert=cert, proxies=proxies
            )
        finally:
            if token is not None:
                _deadline.unbind(token)
            if held is not None:
                seams.release(held)

    def attempt(
        self,
        request: requests.PreparedRequest,
        *,
        stream: bool,
        timeout: Any,
        verify: Any,
        cert: Any,
        proxies: Any,
    ) -> requests.Response:
        """One try, no retries: the fast path, or requests' own send (a proxy, a patched seam)."""
        if (proxies and select_proxy(request.url or "", proxies) is not None) or not (
            seams.TRY.intact()
        ):
            return HTTPAdapter.send(
                self,
                request,
                stream=stream,
                timeout=timeout,
                verify=verify,
                cert=cert,
                proxies=proxies,
            )
        pool: Any = self._keys.pool_for(self.poolmanager, request, verify, cert)
        answer = pool.send(request, timeout, self.max_retries, whole=self.http_cache is None)
        return self.build_response(request, answer)

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        """requests' response for urllib3's ``resp``, through the HTTP cache if there is one."""
        from_cache = False
        if self.http_cache is not None:
            resp, from_cache = self.http_cache.arrived(req, resp)
        return self._built(req, resp, from_cache=from_cache)

    def _built(self, req: requests.PreparedRequest, resp: Any, *, from_cache: bool) -> Response:
        # An answer read whole was read so because seams.WHOLE (RESPONSE among them) held.
        if type(resp) is WholeResponse or seams.RESPONSE.intact():
            return build(Response, req, resp, self, from_cache=from_cache)
        response = HTTPAdapter.build_response(self, req, resp)  # a tool's, or requests'
        if type(response) is requests.Response:
            response.__class__ = Response  # the body capped and its errors named all the same
            response.from_cache = from_cache  # type: ignore[attr-defined]
        return response  # type: ignore[return-value]
