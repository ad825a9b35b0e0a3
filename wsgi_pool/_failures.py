"""The errors of a call to an upstream, and how requests' and urllib3's are turned into them.

Each is a :class:`~wsgi_pool.WsgiPoolError` and the requests exception a caller already
catches, and names the upstream (``scheme://host:port``)::

    UpstreamError                     requests.RequestException
    ├── UpstreamTimeout               requests.Timeout
    │   ├── PoolTimeout               no pooled connection became free in time
    │   ├── DeadlineExceeded          the call's total deadline passed
    │   ├── UpstreamConnectTimeout    requests.ConnectTimeout
    │   └── UpstreamReadTimeout       requests.ReadTimeout: no byte for read_timeout (headers or body)
    ├── UpstreamConnectionError       requests.ConnectionError
    │   ├── UpstreamUnreachable       no connection: name resolution, routing
    │   │   └── UpstreamRefused       the port refused the connection
    │   ├── UpstreamReset             closed or reset before the response was complete (also a
    │   │                             requests.ChunkedEncodingError, as requests raises mid-body)
    │   ├── UpstreamProtocolError     not valid HTTP/1.1 (also a requests.ChunkedEncodingError)
    │   ├── UpstreamTLSError          requests.SSLError: no insecure fallback, ever
    │   └── EgressDenied              the egress policy refused every address of the host
    ├── ResponseTooLarge              the body passed max_response_bytes
    └── RedirectRefused               a redirect the policy does not follow (https to http,
        │                             a body to another origin, a scheme other than http(s))
        └── TooManyRedirects          requests.TooManyRedirects: more than max_redirects
"""

from __future__ import annotations

import errno
import http.client
import ssl
from collections.abc import Iterator
from typing import Any

import requests
from urllib3.exceptions import (
    ClosedPoolError,
    InvalidChunkLength,
    InvalidHeader,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from ._deadline import Deadline
from ._errors import WsgiPoolError


class UpstreamError(WsgiPoolError, requests.exceptions.RequestException):
    """A call to an upstream failed; ``upstream`` names it as ``scheme://host:port``."""

    def __init__(
        self, message: str, *, upstream: str, request: Any = None, response: Any = None
    ) -> None:
        self.upstream = upstream
        super().__init__(f"{upstream}: {message}", request=request, response=response)


class UpstreamTimeout(UpstreamError, requests.exceptions.Timeout):
    """A call to an upstream ran out of time."""


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


class DeadlineExceeded(UpstreamTimeout):
    """The call's total deadline passed: waiting, connecting, retrying or reading included."""

    def __init__(self, upstream: str, deadline: float, where: str, request: Any = None) -> None:
        self.deadline = deadline
        self.where = where
        """What the call was doing when the deadline passed (``"waiting for a free connection"``...)."""
        super().__init__(
            f"deadline of {deadline:g} s exceeded while {where}", upstream=upstream, request=request
        )


class UpstreamConnectTimeout(UpstreamTimeout, requests.exceptions.ConnectTimeout):
    """No connection was established within ``connect_timeout``."""


class UpstreamReadTimeout(UpstreamTimeout, requests.exceptions.ReadTimeout):
    """The upstream sent nothing for ``read_timeout``: before the headers or within the body."""


class UpstreamConnectionError(UpstreamError, requests.exceptions.ConnectionError):
    """The connection to an upstream failed."""


class UpstreamUnreachable(UpstreamConnectionError):
    """No connection could be made: nothing was sent."""


class UpstreamRefused(UpstreamUnreachable):
    """The upstream's port refused the connection: nothing listens there."""


class UpstreamReset(UpstreamConnectionError, requests.exceptions.ChunkedEncodingError):
    """The upstream closed or reset the connection before the response was complete."""


class UpstreamProtocolError(UpstreamConnectionError, requests.exceptions.ChunkedEncodingError):
    """The upstream's response is not valid HTTP/1.1 (status line, headers, framing)."""


class UpstreamTLSError(UpstreamConnectionError, requests.exceptions.SSLError):
    """The TLS handshake or the encrypted stream failed."""


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


class RedirectRefused(UpstreamError):
    """The upstream redirected somewhere the redirect policy does not follow."""


class TooManyRedirects(RedirectRefused, requests.exceptions.TooManyRedirects):
    """More redirects than ``max_redirects``."""


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


_EXCHANGE_FAILURES = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.InvalidHeader,
)
_RESET = (ConnectionError, http.client.IncompleteRead, ssl.SSLEOFError, ssl.SSLZeroReturnError)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests' and urllib3's arguments, reasons and chained errors."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        found = pending.pop(0)
        if id(found) in seen:
            continue
        seen.add(id(found))
        yield found
        if isinstance(found, MaxRetryError) and found.reason is not None:
            pending.append(found.reason)
        pending.extend(arg for arg in found.args if isinstance(arg, BaseException))
        pending.extend(filter(None, (found.__cause__, found.__context__)))


def pool_closed(exc: BaseException) -> bool:
    """Whether the pool was closed under the call (evicted by another thread): nothing was sent."""
    return any(isinstance(found, ClosedPoolError) for found in causes(exc))


def translate(
    exc: requests.exceptions.RequestException,
    *,
    upstream: str,
    deadline: Deadline | None,
    where: str,
    timeout_was_deadline: bool = False,
) -> requests.exceptions.RequestException:
    """The wsgi_pool error for ``exc`` raised by requests; ``exc`` itself if none fits.

    Only failures of the exchange are translated; a bad URL, a bad argument or an error from
    decoding the body stays requests' own.
    """
    if isinstance(exc, UpstreamError) or not isinstance(exc, _EXCHANGE_FAILURES):
        return exc
    request = exc.request
    deadline_hit = deadline is not None and (
        deadline.expired
        or deadline.remaining() <= 0
        or (timeout_was_deadline and isinstance(exc, requests.exceptions.Timeout))
    )
    if deadline_hit and deadline is not None:
        return DeadlineExceeded(upstream, deadline.seconds, where, request=request)
    chain = list(causes(exc))
    kind, message = _classify(exc, chain)
    return kind(message, upstream=upstream, request=request)


def _classify(  # noqa: PLR0911  (one return per kind of failure)
    exc: requests.exceptions.RequestException, chain: list[BaseException]
) -> tuple[type[UpstreamError], str]:
    detail = _innermost(chain)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return UpstreamConnectTimeout, f"connect timed out ({detail})"
    if isinstance(exc, requests.exceptions.ReadTimeout) or any(
        isinstance(found, ReadTimeoutError) for found in chain
    ):
        return UpstreamReadTimeout, f"read timed out ({detail})"
    if isinstance(exc, requests.exceptions.SSLError):
        return UpstreamTLSError, f"TLS failed ({detail})"
    if any(isinstance(found, NameResolutionError) for found in chain):
        return UpstreamUnreachable, f"name resolution failed ({detail})"
    if any(isinstance(found, ConnectionRefusedError) for found in chain) or any(
        isinstance(found, OSError) and found.errno == errno.ECONNREFUSED for found in chain
    ):
        return UpstreamRefused, "connection refused"
    if any(isinstance(found, NewConnectionError) for found in chain):
        return UpstreamUnreachable, f"cannot connect ({detail})"
    if any(isinstance(found, InvalidChunkLength) for found in chain):
        return UpstreamProtocolError, f"invalid chunked encoding ({detail})"
    if any(isinstance(found, _RESET) for found in chain):
        return UpstreamReset, f"connection closed before the response was complete ({detail})"
    if any(
        isinstance(found, ProtocolError | InvalidHeader | http.client.HTTPException)
        for found in chain
    ):
        return UpstreamProtocolError, f"invalid response ({detail})"
    return UpstreamConnectionError, f"connection failed ({detail})"


def _innermost(chain: list[BaseException]) -> str:
    last = chain[-1]
    return f"{type(last).__name__}: {last}" if str(last) else type(last).__name__
