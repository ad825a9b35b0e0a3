"""The errors of a call to an upstream.

Each is a :class:`~wsgi_pool.WsgiPoolError` and the requests exception a caller already
catches, and names the upstream (``scheme://host:port``)::

    UpstreamError                     requests.RequestException
    ├── UpstreamTimeout               requests.Timeout
    │   ├── PoolTimeout               no pooled connection became free in time
    │   │   └── PoolOverloaded        max_pending calls already waited: shed at once
    │   ├── DeadlineExceeded          the call's total deadline passed
    │   ├── UpstreamConnectTimeout    requests.ConnectTimeout
    │   └── UpstreamReadTimeout       requests.ReadTimeout: no byte for read_timeout (headers or body)
    ├── UpstreamConnectionError       requests.ConnectionError
    │   ├── UpstreamUnreachable       no connection: name resolution, routing
    │   │   ├── UpstreamRefused       the port refused the connection
    │   │   └── UpstreamEjected       every address kept failing and is ejected: failed at once
    │   ├── UpstreamReset             closed or reset before the response was complete (also a
    │   │                             requests.ChunkedEncodingError, as requests raises mid-body)
    │   ├── UpstreamProtocolError     not valid HTTP/1.1 (also a requests.ChunkedEncodingError)
    │   ├── UpstreamTLSError          requests.SSLError: no insecure fallback, ever
    │   └── EgressDenied              the egress policy refused every address of the host
    ├── ResponseTooLarge              the body passed max_response_bytes
    └── RedirectRefused               a redirect the policy does not follow (https to http,
        │                             a body to another origin, a scheme other than http(s))
        └── TooManyRedirects          requests.TooManyRedirects: more than max_redirects

How urllib3's, requests' and the socket's errors become these is ``_translate``'s business.
"""

from __future__ import annotations

from typing import Any

import requests

from ._errors import WsgiPoolError, public


@public
class UpstreamError(WsgiPoolError, requests.exceptions.RequestException):
    """A call to an upstream failed; ``upstream`` names it as ``scheme://host:port``."""

    def __init__(
        self, message: str, *, upstream: str, request: Any = None, response: Any = None
    ) -> None:
        self.upstream = upstream
        super().__init__(f"{upstream}: {message}", request=request, response=response)


@public
class UpstreamTimeout(UpstreamError, requests.exceptions.Timeout):
    """A call to an upstream ran out of time."""


@public
class PoolTimeout(UpstreamTimeout):
    """No pooled connection to an upstream became free within ``pool_timeout``."""

    def __init__(
        self, upstream: str, pool_maxsize: int, waited: float, request: Any = None
    ) -> None:
        self.pool_maxsize = pool_maxsize
        self.waited = waited
        super().__init__(
            f"no free connection after waiting {waited:g} s: all pool_maxsize={pool_maxsize} "
            f"connections are in use (raise pool_maxsize or pool_timeout, or close streamed "
            f"responses)",
            upstream=upstream,
            request=request,
        )


@public
class PoolOverloaded(PoolTimeout):
    """``max_pending`` calls already wait for a connection to the upstream: this one failed at
    once (load shedding) instead of queueing behind them. Nothing was sent."""

    def __init__(
        self, upstream: str, max_pending: int, pool_maxsize: int, request: Any = None
    ) -> None:
        self.max_pending = max_pending
        self.pool_maxsize = pool_maxsize
        self.waited = 0.0
        UpstreamTimeout.__init__(
            self,
            f"shed: max_pending={max_pending} calls already wait for one of its "
            f"pool_maxsize={pool_maxsize} connections (the upstream is slow or the pool too "
            f"small: raise max_pending or pool_maxsize, or lower the load)",
            upstream=upstream,
            request=request,
        )


@public
class DeadlineExceeded(UpstreamTimeout):
    """The call's total deadline passed: waiting, connecting, retrying or reading included."""

    def __init__(self, upstream: str, deadline: float, where: str, request: Any = None) -> None:
        self.deadline = deadline
        self.where = where
        """What the call was doing when the deadline passed (``"waiting for a free connection"``...)."""
        super().__init__(
            f"deadline of {deadline:g} s exceeded while {where}", upstream=upstream, request=request
        )


@public
class UpstreamConnectTimeout(UpstreamTimeout, requests.exceptions.ConnectTimeout):
    """No connection was established within ``connect_timeout``."""


@public
class UpstreamReadTimeout(UpstreamTimeout, requests.exceptions.ReadTimeout):
    """The upstream sent nothing for ``read_timeout``: before the headers or within the body."""


@public
class UpstreamConnectionError(UpstreamError, requests.exceptions.ConnectionError):
    """The connection to an upstream failed."""


@public
class UpstreamUnreachable(UpstreamConnectionError):
    """No connection could be made: nothing was sent."""


@public
class UpstreamRefused(UpstreamUnreachable):
    """The upstream's port refused the connection: nothing listens there."""


@public
class UpstreamEjected(UpstreamUnreachable):
    """Every address of the upstream's host failed repeatedly and is ejected (outlier
    ejection): the call failed at once, nothing was sent. It is probed again when the first
    ejection ends (``retry_in``, seconds); ``addresses`` lists each with its time left."""

    def __init__(
        self, upstream: str, host: str, ejected: list[tuple[str, float]], request: Any = None
    ) -> None:
        self.host = host
        self.addresses = tuple(ejected)
        self.retry_in = min((left for _, left in ejected), default=0.0)
        listed = ", ".join(f"{address} for {left:.1f} s" for address, left in ejected)
        super().__init__(
            f"every address of {host!r} is ejected after repeated failures ({listed}): failing "
            f"at once until a probe succeeds (eject_after_failures, ejection_time)",
            upstream=upstream,
            request=request,
        )


@public
class UpstreamReset(UpstreamConnectionError, requests.exceptions.ChunkedEncodingError):
    """The upstream closed or reset the connection before the response was complete."""


@public
class UpstreamProtocolError(UpstreamConnectionError, requests.exceptions.ChunkedEncodingError):
    """The upstream's response is not valid HTTP/1.1 (status line, headers, framing)."""


@public
class UpstreamHeaderError(UpstreamProtocolError, requests.exceptions.InvalidHeader):
    """The response's headers contradict themselves (conflicting ``Content-Length`` values)."""


@public
class UpstreamProxyError(UpstreamConnectionError, requests.exceptions.ProxyError):
    """The proxy failed the call: it could not be reached, or it refused the tunnel."""


@public
class UpstreamTLSError(UpstreamConnectionError, requests.exceptions.SSLError):
    """The TLS handshake or the encrypted stream failed."""


@public
class EgressDenied(UpstreamConnectionError):
    """The egress policy refused every address the upstream's host resolved to: nothing was sent.

    ``addresses`` lists what was refused, each with the rule that refused it.
    """

    def __init__(
        self, upstream: str, host: str, refused: list[tuple[str, str]], request: Any = None
    ) -> None:
        self.host = host
        self.addresses = tuple(refused)
        reasons = ", ".join(f"{address} ({rule})" for address, rule in refused)
        super().__init__(
            f"egress policy refused {host!r}: {reasons or 'it resolved to no address'}",
            upstream=upstream,
            request=request,
        )


@public
class RedirectRefused(UpstreamError):
    """The upstream redirected somewhere the redirect policy does not follow."""


@public
class TooManyRedirects(RedirectRefused, requests.exceptions.TooManyRedirects):
    """More redirects than ``max_redirects``."""


@public
class ResponseTooLarge(UpstreamError):
    """The response body (decoded) passed ``max_response_bytes``; the connection was dropped."""

    def __init__(
        self, upstream: str, limit: int, received: int, request: Any = None, response: Any = None
    ) -> None:
        self.limit = limit
        self.received = received
        super().__init__(
            f"response body larger than max_response_bytes={limit} (stopped after {received} bytes)",
            upstream=upstream,
            request=request,
            response=response,
        )
