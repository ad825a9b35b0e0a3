"""Errors mapped in one place: urllib3's, http.client's and the socket's into requests', and
requests' into wsgi_pool's.

Two steps, both here:

1. :func:`requests_error` and :func:`body_error`: what requests' own ``HTTPAdapter.send``
   and ``Response.iter_content`` raise for urllib3's errors. The send path that replaces them
   (``_fast``) raises exactly these, so a caller catching requests' exceptions sees no
   difference, and a test compares the two.
2. :func:`translate`: the wsgi_pool error for a failed exchange, naming the upstream and
   what the call was doing, each also the requests exception a caller already catches
   (``_failures``). A timeout is ``DeadlineExceeded`` only when the deadline, not the
   setting, bounded that wait; a connection the watchdog cut is never taken for one the
   server closed.
"""

from __future__ import annotations

import errno
import http.client
import ssl
from collections.abc import Iterator
from typing import Final

import requests
from requests.exceptions import (
    ChunkedEncodingError,
    ConnectTimeout,
    ContentDecodingError,
    InvalidHeader,
    ProxyError,
    ReadTimeout,
    RetryError,
    SSLError,
)
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
    InvalidChunkLength,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.exceptions import InvalidHeader as _InvalidHeader
from urllib3.exceptions import ProxyError as _ProxyError
from urllib3.exceptions import SSLError as _SSLError

from ._deadline import Deadline
from ._failures import (
    DeadlineExceeded,
    UpstreamConnectionError,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamHeaderError,
    UpstreamProtocolError,
    UpstreamProxyError,
    UpstreamReadTimeout,
    UpstreamRefused,
    UpstreamReset,
    UpstreamTLSError,
    UpstreamUnreachable,
)


def requests_error(  # noqa: PLR0911  (one return per kind, in requests' order)
    exc: BaseException, request: requests.PreparedRequest | None
) -> requests.exceptions.RequestException | None:
    """The exception requests' adapter raises for urllib3's ``exc``; None where it lets ``exc`` through."""
    if isinstance(exc, ProtocolError | OSError):
        return requests.exceptions.ConnectionError(exc, request=request)
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return ConnectTimeout(exc, request=request)
        if isinstance(reason, ResponseError):
            return RetryError(exc, request=request)
        if isinstance(reason, _ProxyError):
            return ProxyError(exc, request=request)
        if isinstance(reason, _SSLError):
            return SSLError(exc, request=request)
        return requests.exceptions.ConnectionError(exc, request=request)
    if isinstance(exc, ClosedPoolError):
        return requests.exceptions.ConnectionError(exc, request=request)
    if isinstance(exc, _ProxyError):
        return ProxyError(exc)
    if isinstance(exc, _SSLError):
        return SSLError(exc, request=request)
    if isinstance(exc, ReadTimeoutError):
        return ReadTimeout(exc, request=request)
    if isinstance(exc, _InvalidHeader):
        return InvalidHeader(exc, request=request)
    return None


def body_error(exc: BaseException) -> requests.exceptions.RequestException | None:
    """The exception requests' ``iter_content`` raises for urllib3's ``exc`` while reading a body."""
    if isinstance(exc, ProtocolError):
        return ChunkedEncodingError(exc)
    if isinstance(exc, DecodeError):
        return ContentDecodingError(exc)
    if isinstance(exc, ReadTimeoutError):
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, _SSLError):
        return SSLError(exc)
    return None


_EXCHANGE_FAILURES: Final = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.InvalidHeader,
)
_RESET: Final = (
    ConnectionError,
    http.client.IncompleteRead,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)
_STALE: Final = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


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


def stale(exc: BaseException) -> bool:
    """Whether ``exc`` says the peer had closed the connection (reset, broken pipe, no answer)."""
    return any(isinstance(found, _STALE) for found in causes(exc))


def translate(
    exc: requests.exceptions.RequestException,
    *,
    upstream: str,
    deadline: Deadline | None,
    where: str,
    connect_capped: bool = False,
    read_capped: bool = False,
) -> requests.exceptions.RequestException:
    """The wsgi_pool error for ``exc`` raised by requests; ``exc`` itself if none fits.

    Only failures of the exchange are translated; a bad URL, a bad argument or an error from
    decoding the body stays requests' own. ``connect_capped`` and ``read_capped`` say that the
    deadline, not the setting, bounded that timeout: such a timeout is the deadline passing.
    """
    if isinstance(exc, UpstreamError) or not isinstance(exc, _EXCHANGE_FAILURES):
        return exc
    request = exc.request
    capped = (
        connect_capped
        if isinstance(exc, requests.exceptions.ConnectTimeout)
        else read_capped and isinstance(exc, requests.exceptions.ReadTimeout)
    )
    deadline_hit = deadline is not None and (
        deadline.expired or deadline.remaining() <= 0 or capped
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
        return UpstreamReadTimeout, f"Read timed out ({detail})"
    if isinstance(exc, requests.exceptions.ProxyError):
        return UpstreamProxyError, f"the proxy{_proxy_of(chain)} failed ({detail})"
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
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return UpstreamHeaderError, f"invalid response headers ({detail})"
    if any(
        isinstance(found, ProtocolError | _InvalidHeader | http.client.HTTPException)
        for found in chain
    ):
        return UpstreamProtocolError, f"invalid response ({detail})"
    return UpstreamConnectionError, f"connection failed ({detail})"


def _innermost(chain: list[BaseException]) -> str:
    last = chain[-1]
    return f"{type(last).__name__}: {last}" if str(last) else type(last).__name__


def _proxy_of(chain: list[BaseException]) -> str:
    """`` at scheme://host:port`` of the proxy urllib3 was connecting to, if the chain says."""
    for found in chain:
        pool = getattr(found, "pool", None) if isinstance(found, MaxRetryError) else None
        proxy = getattr(pool, "proxy", None)  # the pool is the upstream's, through its proxy
        if proxy is not None:
            return f" at {proxy.scheme}://{proxy.host}:{proxy.port}"
    return ""
