"""The lean send path: a prepared request through the worker's urllib3 pool, a ``requests.Response`` back.

requests' ``HTTPAdapter.send`` does on every call what a worker's pools need done once: it
parses the URL again to find the pool, builds the pool's key, checks on disk that the CA
bundle exists and sets it on the pool, and runs the cookie parser over every response.
Here the key is computed once per upstream (and ``verify``/``cert``), the pool is checked
once, and cookies are parsed only from a response that sets one. What reaches urllib3 and
what the caller gets back (the response's fields, the exceptions) are what requests'
adapter gives: the tests compare the two.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping
from http.client import HTTPException
from typing import TYPE_CHECKING, Any, Final

import requests
from requests.exceptions import (
    ChunkedEncodingError,
    ConnectTimeout,
    ContentDecodingError,
    InvalidHeader,
    InvalidURL,
    ProxyError,
    ReadTimeout,
    RetryError,
    SSLError,
)
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.connection import BaseSSLError
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
    EmptyPoolError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.exceptions import InvalidHeader as _InvalidHeader
from urllib3.exceptions import ProxyError as _ProxyError
from urllib3.exceptions import SSLError as _SSLError
from urllib3.exceptions import TimeoutError as _TimeoutError
from urllib3.util import SKIP_HEADER
from urllib3.util.ssl_match_hostname import CertificateError
from urllib3.util.url import _encode_target

if TYPE_CHECKING:
    from requests.adapters import HTTPAdapter
    from urllib3 import HTTPConnectionPool

MAX_KEYS: Final = 1024
"""Pool keys remembered per worker; past that the memory starts again (a bound, never reached in practice)."""

_PoolEntry = tuple[Any, dict[str, Any]]
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


# A scheme and authority with nothing that could end the authority early; and a path (and
# query) that requests' prepare_url and urllib3's parse_url leave exactly as they
# are: only characters that are never percent-encoded or decoded, no "%", no fragment, no empty
# query. Dot segments are checked apart ("/." in the path).
_PLAIN_TARGET: Final = re.compile(
    r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*(?:\?[A-Za-z0-9\-._~!$&'()*+,;=:@/?]+)?"
)


_PLAIN_ORIGIN: Final = re.compile(r"https?://[A-Za-z0-9\-._~!$&'()*+,;=:@\[\]]+")


def prepared_url(url: str) -> str | None:
    """What ``PreparedRequest.prepare_url(url, None)`` makes of ``url``, when that is quick to know.

    For an http(s) URL whose path and query are plain (see ``_PLAIN_TARGET``), the answer is
    requests' own for the scheme and authority (remembered per authority) followed by the
    path and query unchanged. None for any other URL: requests prepares it.
    """
    slash = url.find("/", 8)
    head, target = (url, "/") if slash == -1 else (url[:slash], url[slash:])
    if not _PLAIN_ORIGIN.fullmatch(head):
        return None
    if slash != -1 and (not _PLAIN_TARGET.fullmatch(target) or "/." in target.partition("?")[0]):
        return None
    try:
        return _prepared_origin(head) + target
    except (requests.exceptions.RequestException, ValueError):
        return None  # requests raises its own error, naming the whole URL


@functools.lru_cache(maxsize=256)
def _prepared_origin(head: str) -> str:
    prepared = requests.PreparedRequest()
    prepared.prepare_url(head, None)
    return (prepared.url or "/")[:-1]  # prepare_url gives "scheme://authority/"


def authority_of(url: str) -> tuple[str, str]:
    """The scheme and authority of ``url``, as written: ``("https", "user@host:8443")``."""
    scheme, _, rest = url.partition("://")
    end = len(rest)
    for mark in "/?#":
        found = rest.find(mark, 0, end)
        if found != -1:
            end = found
    return scheme, rest[:end]


class PoolFinder:
    """The urllib3 pool of a request: requests' choice, its key computed once per upstream.

    Mutable state: ``_keys`` (``(scheme, authority, verify, cert)`` to the urllib3 pool key and
    context), changed by single dict operations, atomic under the GIL; two threads racing on a
    new upstream compute equal entries.
    """

    __slots__ = ("_adapter", "_keys")

    def __init__(self, adapter: HTTPAdapter) -> None:
        self._adapter = adapter
        self._keys: dict[tuple[Any, ...], _PoolEntry] = {}

    def pool_for(
        self, request: requests.PreparedRequest, verify: Any, cert: Any
    ) -> HTTPConnectionPool:
        """The pool requests' adapter would use for ``request``, checked for ``verify`` and ``cert`` once."""
        url = request.url or ""
        try:
            memo = (*authority_of(url), verify, cert)
            entry = self._keys.get(memo)
        except TypeError:  # an unhashable verify or cert: found afresh each time
            memo, entry = None, None
        if entry is None:
            entry = self._entry(request, verify, cert)
            if memo is not None:
                if len(self._keys) >= MAX_KEYS:
                    self._keys.clear()
                self._keys[memo] = entry
        manager = self._adapter.poolmanager
        # A copy: urllib3 takes the scheme, host and port out of it when it makes a new pool.
        pool: Any = manager.connection_from_pool_key(entry[0], request_context=dict(entry[1]))
        if pool.wp_checked != (verify, cert):
            # requests checks that the CA bundle and client certificate exist, and sets them
            # on the pool, on every call; once per pool is enough: the pool's key holds them.
            self._adapter.cert_verify(pool, url, verify, cert)
            pool.wp_checked = (verify, cert)
        return pool  # type: ignore[no-any-return]

    def _entry(self, request: requests.PreparedRequest, verify: Any, cert: Any) -> _PoolEntry:
        """What ``PoolManager.connection_from_host`` would compute for requests' host and pool settings."""
        manager = self._adapter.poolmanager
        try:
            host, pool_kwargs = self._adapter.build_connection_pool_key_attributes(
                request, verify, cert
            )
        except ValueError as exc:
            raise InvalidURL(exc, request=request) from exc
        if not host["host"]:
            raise InvalidURL(LocationValueError("No host specified."), request=request)
        scheme = (host["scheme"] or "http").lower()
        context = {**manager.connection_pool_kw, **pool_kwargs}
        context.update(
            scheme=scheme, host=host["host"], port=host["port"] or _DEFAULT_PORTS[scheme]
        )
        # http or https: the client's get_adapter sends nothing else here.
        return manager.key_fn_by_scheme[scheme](context), context


def headers_of(resp: Any) -> CaseInsensitiveDict[str]:
    """``CaseInsensitiveDict(resp.headers)``: urllib3's headers, repeated ones joined, as requests copies them."""
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    store = headers._store  # what CaseInsensitiveDict.__setitem__ fills, filled directly
    for name, value in resp.headers.itermerged():
        store[name.lower()] = (name, value)
    return headers


@functools.lru_cache(maxsize=64)
def encoding_of(content_type: str | None) -> str | None:
    """requests' ``get_encoding_from_headers`` for a response with this Content-Type."""
    if content_type is None:
        return None
    return get_encoding_from_headers(CaseInsensitiveDict({"content-type": content_type}))


def sets_cookie(headers: Mapping[str, Any] | None) -> bool:
    """Whether a response with these (case-insensitive) headers sets a cookie."""
    return headers is not None and ("set-cookie" in headers or "set-cookie2" in headers)


def send(
    pool: HTTPConnectionPool,
    request: requests.PreparedRequest,
    timeout: Any,
    retries: Any,
) -> Any:
    """``request`` through ``pool``, as requests' adapter sends it; urllib3's unread response."""
    url = request.url or ""
    target = _plain_target(url)
    if target is None:
        target = request.path_url
        if target.startswith("//"):  # not a scheme-relative target (requests does the same)
            target = "/" + target.lstrip("/")
        target = _encode_target(target)
    body = request.body
    chunked = not (body is None or "Content-Length" in request.headers)
    try:
        return exchange(
            pool,
            request.method or "GET",
            target,
            body=body,
            headers=request.headers,
            timeout=timeout,
            retries=retries,
            chunked=chunked,
        )
    except Exception as exc:
        error = requests_error(exc, request)
        if error is None:
            raise
        raise error from exc


def _plain_target(url: str) -> str | None:
    """The request target of a prepared ``url`` when urllib3 and requests leave it as written.

    None when the authority is not followed by a path (a query, a fragment, nothing), or the
    path and query are not plain.
    """
    scheme, authority = authority_of(url)
    target = url[len(scheme) + 3 + len(authority) :]
    if _PLAIN_TARGET.fullmatch(target) and not target.startswith("//"):
        return target
    return None


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


def exchange(
    pool: Any,
    method: str,
    target: str,
    *,
    body: Any,
    headers: Any,
    timeout: Any,
    retries: Any,
    chunked: bool,
) -> Any:
    """urllib3's ``urlopen`` for a try urllib3 never retries (``retries.total == 0``) or redirects.

    The shared adapter's ``max_retries`` is requests' ``Retry(0, read=False)`` and cannot be
    changed: its own retries (``_Call``) are made above this, one try at a time.

    What urlopen adds to the pool's ``_get_conn`` / ``_make_request`` / ``_put_conn`` for a
    direct (not proxied) request: the errors it wraps before its ``Retry`` sees them, and the
    connection closed and its slot given back when the try fails. The caller's response
    returns the connection when its body is read or it is closed, as with
    ``release_conn=False``.
    """
    conn = None
    done = False
    try:
        conn = pool._get_conn()
        response = pool._make_request(
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
        )
        done = True
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
        # Raises: with no retries left, urllib3 says which error it was (MaxRetryError or the
        # error itself), as urlopen would.
        retries.increment(method, target, error=error, _pool=pool, _stacktrace=sys.exc_info()[2])
        raise  # pragma: no cover  (unreachable: a Retry with total=0 never allows another try)
    finally:
        if not done:
            if conn is not None:
                pool.discard(conn)  # closed, its slot given back
            else:
                pool._put_conn(None)


# -- writing the request ------------------------------------------------------------------------

_PLAIN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_NO_BODY_EXPECTED: Final = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})  # urllib3 adds no length
_UNSAFE_TARGET: Final = re.compile(r"[\x00-\x20\x7f]")
_LEGAL_NAME: Final = re.compile(r"[^:\s][^:\r\n]*")
_checked_names: dict[str, str] = {}  # a header name found legal, to its lower case


def request_head(
    method: str, target: str, headers: Mapping[str, Any], host_line: str, body_length: int | None
) -> bytes | None:
    """The bytes urllib3 writes before the body of a plain request, in one piece; None if not plain.

    Plain: a common method, a printable ASCII target, text header names and values with no line
    break, a User-Agent and an Accept-Encoding but no Host, and a Content-Length where urllib3
    would add one. For such a request, http.client (through urllib3) writes the request line,
    ``host_line`` (the Host header it wrote on this connection before), then the headers as
    given. Anything else returns None, and urllib3 writes the request (and raises its errors).
    """
    if method not in _PLAIN_METHODS or not target.isascii() or _UNSAFE_TARGET.search(target):
        return None
    lines = [f"{method} {target} HTTP/1.1", host_line]
    seen = set()
    for name, value in headers.items():
        lower = _checked_names.get(name)
        if lower is None:
            if not isinstance(name, str) or not name.isascii() or not _LEGAL_NAME.fullmatch(name):
                return None
            lower = name.lower()
            if len(_checked_names) < MAX_KEYS:
                _checked_names[name] = lower
        if not isinstance(value, str) or "\r" in value or "\n" in value or value == SKIP_HEADER:
            return None
        seen.add(lower)
        lines.append(f"{name}: {value}")
    if (
        "host" in seen
        or "transfer-encoding" in seen
        or "user-agent" not in seen
        or "accept-encoding" not in seen
        or (
            "content-length" not in seen
            and (body_length is not None or method not in _NO_BODY_EXPECTED)
        )
    ):
        return None
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        return None


def read_all(raw: Any, amt: int | None) -> bytes:
    """The decoded body of urllib3's ``raw`` (at most ``amt`` bytes), with requests' errors for a failed read.

    One read where requests' ``content`` iterates ``raw.stream()``; the errors are those its
    ``iter_content`` raises.
    """
    try:
        body: bytes = raw.read(amt=amt, decode_content=True)
    except ProtocolError as exc:
        raise ChunkedEncodingError(exc) from exc
    except DecodeError as exc:
        raise ContentDecodingError(exc) from exc
    except ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except _SSLError as exc:
        raise SSLError(exc) from exc
    return body


def requests_error(  # noqa: PLR0911  (one return per kind, in requests' order)
    exc: Exception, request: requests.PreparedRequest
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
