"""One call through the shared adapter: its tries under the policies, until an answer or an error.

The policies meet here, in this order, on every try:

1. **the deadline** (``_deadline``): no try starts past it; each try's connect and read
   timeouts are cut to what is left, and a timeout so cut is ``DeadlineExceeded``;
2. **propagation**: the request id, trace context and remaining budget, to upstreams allowed;
   behind a mesh's sidecar (``mesh``), the remaining budget to the sidecar, on every call;
3. **the try** itself, through the :class:`Transport` (the adapter, below which the pools,
   the watchdog and the egress policy act), recorded in an ``Attempt``;
4. **retries and replay** (``_retry``): a stale keep-alive connection replayed once, a
   connect failure or a retryable status retried within the count, deadline and budget;
5. **errors** translated once (``_translate``), naming the upstream;
6. **the size cap** (``_response.check_head``) on the answer;
7. **statistics**: the call's time and outcome, counted once.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Final, Protocol

import requests
from urllib3.exceptions import EmptyPoolError
from urllib3.util import Timeout

from . import _attempt
from ._attempt import Attempt
from ._config import DEADLINE_HEADER, PoolConfig, UpstreamSettings
from ._connection import Refused
from ._deadline import Deadline, attempt_timeouts
from ._errors import InsecureRequestRefused
from ._failures import (
    DeadlineExceeded,
    EgressDenied,
    PoolOverloaded,
    PoolTimeout,
    UpstreamConnectTimeout,
    UpstreamEjected,
    UpstreamUnreachable,
)
from ._fast import whole as whole_module
from ._outliers import Ejected
from ._pool import DeadlineWhileWaiting, Shed
from ._propagation import Propagation
from ._response import Guard, check_head
from ._retry import Retries, RetryBudget
from ._sizing import PoolSizing
from ._stats import Counters
from ._translate import pool_closed, translate

logger = logging.getLogger("wsgi_pool")

MESH_TIMEOUT_HEADER: Final = "x-envoy-upstream-rq-timeout-ms"
"""What a call tells an Envoy sidecar (``mesh``): the milliseconds its try may take there."""

WAITING: Final = "waiting for a free connection"
"""What a call was doing when the deadline ended its wait for a connection."""

_POOL_CLOSED_RETRIES: Final = 3
_AGAIN: Final = "again"
_FRESH: Final = "fresh"
_NEVER: Final = math.inf


class Transport(Protocol):
    """What a call needs from the adapter above it: one try, and closed pools forgotten."""

    def attempt(
        self,
        request: requests.PreparedRequest,
        *,
        stream: bool,
        timeout: Any,
        verify: Any,
        cert: Any,
        proxies: Any,
    ) -> requests.Response: ...

    def forget_closed_pools(self) -> None: ...


def operation_timeouts(timeout: Any, connect: float, read: float) -> tuple[float, float]:
    """Connect and read timeouts from a caller's ``timeout``, as requests reads it; inf: no limit.

    ``connect`` and ``read`` are the settings', used when ``timeout`` is None. A tuple is
    ``(connect, read)``, a number both, urllib3's ``Timeout`` its two; ``None`` in them means
    no limit (the deadline still bounds the call). A bad one raises requests' ValueError.
    """
    if timeout is None:
        return connect, read
    if type(timeout) in {int, float} and timeout > 0:
        return float(timeout), float(timeout)
    if isinstance(timeout, tuple):
        try:
            first, second = timeout
            checked = Timeout(connect=first, read=second)
        except ValueError:
            raise ValueError(
                f"Invalid timeout {timeout}. Pass a (connect, read) timeout tuple, or a single "
                f"float to set both timeouts to the same value."
            ) from None
    elif isinstance(timeout, Timeout):
        # With a total, urllib3 works the read timeout out from a started clock: a clone's.
        checked = timeout.clone()
        checked.start_connect()
    else:
        checked = Timeout(connect=timeout, read=timeout)
    return _seconds(checked.connect_timeout), _seconds(checked.read_timeout)


def checked_timeout(connect: float, read: float) -> Timeout:
    """urllib3's ``Timeout(connect=connect, read=read)`` for two numbers checked already
    (positive, or inf), made without checking them again."""
    made = Timeout.__new__(Timeout)
    made._connect, made._read, made.total, made._start_connect = connect, read, None, None
    return made


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else _NEVER


class Call:
    """One call: its tries, retries and replay, its errors and its counting."""

    def __init__(
        self,
        transport: Transport,
        request: requests.PreparedRequest,
        *,
        origin: str,
        deadline: Deadline,
        timeout: Any,
        settings: UpstreamSettings,
        config: PoolConfig,
        sizing: PoolSizing,
        budget: RetryBudget,
        stats: Counters,
        trace: Propagation | None = None,
    ) -> None:
        self.transport = transport
        self.request = request
        self.trace = trace
        """The incoming request's id and trace context this call passes on (if allowed)."""
        self.origin = origin
        self.deadline = deadline
        self.settings = settings
        self.config = config
        self.sizing = sizing
        self.budget = budget
        self.stats = stats
        self.connect, self.read = operation_timeouts(
            timeout, settings.connect_timeout or _NEVER, settings.read_timeout or _NEVER
        )
        self.closed_pools = 0
        self.retries = Retries.for_request(
            request,
            settings.retries or 0,
            statuses=frozenset() if config.mesh else config.retry_statuses,
            backoff_factor=config.backoff_factor,
            backoff_max=config.backoff_max,
        )

    def verification(self, verify: Any) -> Any:
        """What verifies the upstream: the caller's CA, else the upstream's, the config's, certifi's."""
        if verify is True:
            return self.settings.ca_bundle or True
        if not verify and not self.config.allow_unverified:
            raise InsecureRequestRefused(
                f"{self.origin}: verify=False refused: TLS verification stays on unless the "
                f"config sets allow_unverified=True; give this upstream its CA with "
                f"UpstreamSettings(ca_bundle=...) instead"
            )
        return verify

    def run(self, **kwargs: Any) -> requests.Response:
        """The call, counted: its time to the response (or the error), and the error's kind."""
        started = time.monotonic()
        error: Exception | None = None
        status = None
        self.stats.started()
        try:
            response = self._tries(kwargs)
            status = response.status_code
            return response
        except Exception as exc:
            error = exc
            self._warn_of(exc)
            raise
        finally:
            self.stats.ended(
                time.monotonic() - started, error, self.request.method or "GET", status
            )

    def _tries(self, kwargs: dict[str, Any]) -> requests.Response:
        request = self.request
        propagate = self.settings.propagate
        # Only a plain-http call's headers reach the sidecar (it cannot read an https one's).
        mesh = self.config.mesh and self.origin.startswith("http:")
        if propagate or mesh:
            # The headers go on a copy: the caller's request (an SDK may send one again, in
            # another request or none) never keeps this request's id or budget.
            request = self.request = request.copy()
            if propagate and self.trace is not None:
                self.trace.apply(request.headers, self.config.request_id_header)
        self.budget.record_request()
        fresh = False
        tries = 0
        unread = bool(kwargs.get("stream") or (request.hooks or {}).get("response"))
        # A body read with the head (the answer read whole): never one the caller streams or
        # a hook sees first, never one over the cap (that one fails unread, in check_head).
        cap = self.settings.max_response_bytes
        whole = 0 if unread else min(cap or whole_module.MAX_WHOLE, whole_module.MAX_WHOLE)
        while True:
            remaining = self.deadline.remaining()
            if remaining <= 0:
                raise DeadlineExceeded(
                    self.origin,
                    self.deadline.seconds,
                    "retrying" if self.retries.made else "starting",
                    request=request,
                )
            if propagate and self.config.propagate_deadline:
                request.headers[DEADLINE_HEADER] = str(max(int(remaining * 1000), 1))
            if mesh:  # the sidecar's own timeout for this try: never past our deadline
                request.headers[MESH_TIMEOUT_HEADER] = str(max(int(remaining * 1000), 1))
            connect, read, connect_capped, read_capped = attempt_timeouts(
                self.connect, self.read, remaining
            )
            attempt = Attempt(fresh=fresh, unread=unread, whole=whole)
            token = _attempt.bind(attempt)
            try:
                response = self.transport.attempt(
                    request, timeout=checked_timeout(connect, read), **kwargs
                )
            except Exception as exc:
                tries += 1
                fresh = self._failed(exc, attempt, connect_capped, read_capped) == _FRESH
                continue
            finally:
                _attempt.unbind(token)
            fresh = False
            tries += 1
            if response.status_code in self.retries.statuses and self._should_retry(response):
                continue
            if attempt.reused is not None:  # it went through the pools (not a mock, the cache)
                response.timings = attempt.timings(tries)  # type: ignore[attr-defined]  # ours
            limit = self.settings.max_response_bytes
            return check_head(
                response, request, Guard(self.origin, self.deadline, limit, self.stats)
            )

    def _failed(
        self, exc: Exception, attempt: Attempt, connect_capped: bool, read_capped: bool
    ) -> str:
        """After a failed try: ``_AGAIN`` or ``_FRESH`` (a replay) to try again, else the error raised."""
        request = self.request
        if isinstance(exc, Refused):
            raise EgressDenied(self.origin, exc.host, exc.refused, request=request) from None
        if isinstance(exc, Ejected):
            raise UpstreamEjected(self.origin, exc.host, exc.ejected, request=request) from None
        if isinstance(exc, Shed):
            raise PoolOverloaded(
                self.origin,
                self.config.max_pending or 0,
                self.sizing.pool_maxsize,
                request=request,
            ) from None
        if isinstance(exc, DeadlineWhileWaiting):
            raise DeadlineExceeded(
                self.origin, self.deadline.seconds, WAITING, request=request
            ) from None
        if isinstance(exc, EmptyPoolError):
            raise PoolTimeout(
                upstream=self.origin,
                pool_maxsize=self.sizing.pool_maxsize,
                waited=self.sizing.pool_timeout,
                request=request,
            ) from exc
        if not isinstance(exc, requests.exceptions.RequestException):
            raise exc
        if pool_closed(exc) and self.closed_pools < _POOL_CLOSED_RETRIES:
            # The pool was closed as we took it (the pools closing at worker exit, or a
            # closed pool left cached): nothing was sent. Drop it; a new one is made.
            self.closed_pools += 1
            self.transport.forget_closed_pools()
            return _AGAIN
        if self.retries.may_replay(exc, attempt, self.deadline):
            self.stats.add("replays")
            logger.debug(
                "replaying %s %s on a new connection: the reused one was closed",
                request.method,
                request.url,
            )
            return _FRESH
        error = translate(
            exc,
            upstream=self.origin,
            deadline=self.deadline,
            where="connecting"
            if isinstance(exc, requests.exceptions.ConnectTimeout)
            else "waiting for the response",
            connect_capped=connect_capped,
            read_capped=read_capped,
        )
        if isinstance(error, UpstreamUnreachable | UpstreamConnectTimeout) and self._may_retry(
            self.retries.backoff(), type(error).__name__
        ):
            return _AGAIN  # nothing was sent: any method may be retried
        raise error from exc

    def _should_retry(self, response: requests.Response) -> bool:
        if not self.retries.wants_status_retry(response):
            return False
        if not self._may_retry(self.retries.delay(response), f"status {response.status_code}"):
            return False
        response.close()
        return True

    def _may_retry(self, delay: float, why: str) -> bool:
        """Whether a retry after ``delay`` seconds fits the count, the deadline and the budget; sleeps if so."""
        if not self.retries.fits(delay, self.deadline):
            return False
        if not self.budget.try_retry():
            self.stats.add("retries_denied")
            self._warn(
                "retry budget",
                f"retry budget exhausted: {why} not retried (the budget allows "
                f"{self.config.retry_budget:.0%} of calls as retries)",
            )
            return False
        self.retries.took()
        self.stats.add("retries")
        logger.debug(
            "retrying %s %s after %s in %.3f s", self.request.method, self.origin, why, delay
        )
        if delay > 0:
            time.sleep(delay)
        return True

    def _warn_of(self, error: Exception) -> None:
        if isinstance(error, PoolTimeout) or (
            isinstance(error, DeadlineExceeded) and error.where == WAITING
        ):
            self._warn("pool wait", str(error))

    def _warn(self, what: str, message: str) -> None:
        """A warning an operator must act on, at most one per upstream and kind every few seconds."""
        held = self.stats.may_warn(what, time.monotonic())
        if held is None:
            return
        request_id = None if self.trace is None else self.trace.request_id
        more = f" ({held} more like it not logged)" if held else ""
        logger.warning(
            "%s [request_id=%s]%s",
            message,
            request_id or "-",
            more,
            extra={"request_id": request_id, "upstream": self.origin},
        )
