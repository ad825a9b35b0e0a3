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
from collections.abc import Mapping
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
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
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
    path = request.path_url
    if path.startswith("//"):  # not a scheme-relative target (requests does the same)
        path = "/" + path.lstrip("/")
    try:
        return pool.urlopen(
            method=request.method or "GET",
            url=path,
            body=request.body,  # type: ignore[arg-type]
            headers=request.headers,  # type: ignore[arg-type]
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
            retries=retries,
            timeout=timeout,
            chunked=not (request.body is None or "Content-Length" in request.headers),
        )
    except Exception as exc:
        error = requests_error(exc, request)
        if error is None:
            raise
        raise error from exc


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
