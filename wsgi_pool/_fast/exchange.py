"""Fast piece: one try through a urllib3 pool without ``urlopen``, as requests' adapter sends it.

requests' ``HTTPAdapter.send`` turns a prepared request into a target and calls the pool's
``urlopen``, which for a try urllib3 may not retry (the shared adapter's ``max_retries`` is
``Retry(0, read=False)`` and cannot be changed; retries are made above, a try at a time)
does little more than take a connection, send, and give the connection back on failure.
:meth:`Exchange.exchange` does that directly, with urllib3's error wrapping and requests'
exceptions, and is taken while ``seams.ADAPTER`` and ``seams.URLOPEN`` are intact.
``tests/test_fast_exchange.py`` compares targets, errors and responses with requests' own.
"""

from __future__ import annotations

import re
import sys
from http.client import HTTPException
from typing import TYPE_CHECKING, Any, Final

import requests
from urllib3 import HTTPConnectionPool
from urllib3.connection import BaseSSLError
from urllib3.exceptions import (
    EmptyPoolError,
    ProtocolError,
)
from urllib3.exceptions import ProxyError as _ProxyError
from urllib3.exceptions import SSLError as _SSLError
from urllib3.exceptions import TimeoutError as _TimeoutError
from urllib3.util.ssl_match_hostname import CertificateError
from urllib3.util.url import _encode_target

from wsgi_pool._fast.whole import WholeResponse
from wsgi_pool._origins import authority_of
from wsgi_pool._translate import requests_error

if TYPE_CHECKING:
    _Base = HTTPConnectionPool  # what the mixin below is mixed into
else:
    _Base = object

# A path (and query) that requests' prepare_url and urllib3's parse_url leave exactly as
# they are: only characters that are never percent-encoded or decoded, no "%", no fragment,
# no empty query. Dot segments are checked apart ("/." in the path).
PLAIN_TARGET: Final = re.compile(
    r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*(?:\?[A-Za-z0-9\-._~!$&'()*+,;=:@/?]+)?"
)

# What urllib3's urlopen catches from a try (and hands to its Retry).
_EXCHANGE_ERRORS: Final = (
    _TimeoutError,
    HTTPException,
    OSError,
    ProtocolError,
    BaseSSLError,
    _SSLError,
    CertificateError,
    _ProxyError,
)


def plain_target(url: str) -> str | None:
    """The request target of a prepared ``url`` when urllib3 and requests leave it as written.

    None when the authority is not followed by a path (a query, a fragment, nothing), or the
    path and query are not plain.
    """
    scheme, authority = authority_of(url)
    target = url[len(scheme) + 3 + len(authority) :]
    if PLAIN_TARGET.fullmatch(target) and not target.startswith("//"):
        return target
    return None


def target_of(request: requests.PreparedRequest) -> str:
    """The request target requests' adapter hands urllib3 for a direct (not proxied) request."""
    known = getattr(request, "wp_target", None)  # worked out when prepared (_fast.prepare)
    if known is not None and known[0] is request.url:
        return known[1]  # type: ignore[no-any-return]
    target = plain_target(request.url or "")
    if target is not None:
        return target  # what requests and urllib3 would make of it: itself
    target = request.path_url
    if target.startswith("//"):  # not a scheme-relative target (requests does the same)
        target = "/" + target.lstrip("/")
    return _encode_target(target)


class Exchange(_Base):
    """Mixed into the pools: :meth:`send`, requests' adapter's send as one try without urlopen."""

    def send(
        self, request: requests.PreparedRequest, timeout: Any, retries: Any, *, whole: bool = False
    ) -> Any:
        """``request`` through this pool, as requests' adapter sends it; urllib3's unread response
        (or, ``whole`` allowing, a ``_fast.whole.WholeResponse`` whose connection is back).

        Errors are requests' own, as its adapter raises them.
        """
        body = request.body
        try:
            return self.exchange(
                request.method or "GET",
                target_of(request),
                body=body,
                headers=request.headers,
                timeout=timeout,
                retries=retries,
                chunked=not (body is None or "Content-Length" in request.headers),
                whole=whole,
            )
        except Exception as exc:
            error = requests_error(exc, request)
            if error is None:
                raise
            raise error from exc

    def exchange(
        self,
        method: str,
        target: str,
        *,
        body: Any,
        headers: Any,
        timeout: Any,
        retries: Any,
        chunked: bool,
        whole: bool = False,
    ) -> Any:
        """urllib3's ``urlopen`` for a try it never retries (``retries.total == 0``) or redirects.

        What urlopen adds to the pool's ``_get_conn`` / ``_make_request`` / ``_put_conn`` for
        a direct request: the errors it wraps before its ``Retry`` sees them, and the
        connection closed and its slot given back when the try fails. The caller's response
        returns the connection when its body is read or it is closed, as with
        ``release_conn=False``.
        """
        conn = None
        done = False
        try:
            conn = self._get_conn()
            response = self._make_request(
                conn,
                method,
                target,
                timeout=timeout,
                body=body,
                headers=headers,
                chunked=chunked,
                retries=retries,
                response_conn=conn,
                preload_content=False,
                decode_content=False,
                wp_whole=whole,  # type: ignore[call-arg]  # the pools' own _make_request
            )
            done = True
            if type(response) is WholeResponse:  # read whole: the connection goes back now
                response._connection = None  # what urllib3's release_conn does, directly
                self._put_conn(conn)
            return response
        except EmptyPoolError:
            done = True
            raise
        except _EXCHANGE_ERRORS as exc:
            error: Exception = exc
            if isinstance(exc, BaseSSLError | CertificateError):
                error = _SSLError(exc)
            elif isinstance(exc, OSError | HTTPException):
                error = ProtocolError("Connection aborted.", exc)
            # Raises: with no retries left, urllib3 says which error it was (MaxRetryError or
            # the error itself), as urlopen would.
            retries.increment(
                method, target, error=error, _pool=self, _stacktrace=sys.exc_info()[2]
            )
            raise  # pragma: no cover  (unreachable: a Retry with total=0 never allows another try)
        finally:
            if not done:
                if conn is not None:
                    conn.close()  # as urlopen: closed, its slot given back empty
                self._put_conn(None)
