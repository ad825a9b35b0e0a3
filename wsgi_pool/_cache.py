"""An optional HTTP cache for GET responses, per worker, bounded in memory, on CacheControl.

CacheControl decides freshness, ``ETag`` / ``Last-Modified`` revalidation, ``Vary`` and
``no-store``; it is written as a private (browser) cache. One worker's cache serves every
user of the app, so it follows a shared cache's rules on top (RFC 9111, 3 and 3.5):

- a request with ``Authorization`` or ``Cookie`` neither reads nor fills the cache;
- a response with ``Cache-Control: private`` or ``s-maxage`` (freshness for shared caches
  that CacheControl does not read), or one that sets a cookie, is not stored;
- a successful ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` drops the entry of its URL.

Bodies are stored whole, up to ``http_cache_entry_bytes`` each and ``http_cache_bytes`` in
all, least recently used dropped first. Only bodies with a ``Content-Length`` are stored:
CacheControl reads a chunked body through urllib3 internals that a stream bypasses.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import OrderedDict
from email.utils import parsedate_tz
from typing import TYPE_CHECKING, Any, Final

from ._errors import ConfigError
from ._worker import Extension

try:
    from cachecontrol.cache import BaseCache
    from cachecontrol.controller import PERMANENT_REDIRECT_STATUSES, CacheController
    from cachecontrol.filewrapper import CallbackFileWrapper
except ImportError:  # pragma: no cover  (the "cache" extra is installed where tests run)
    BaseCache = object  # type: ignore[assignment,misc]
    CacheController = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    import requests

INVALIDATING_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PERSONAL: Final = ("authorization", "cookie")


class MemoryCache(BaseCache):
    """CacheControl's storage: entries in memory, least recently used dropped past ``max_bytes``.

    Mutable state: ``_entries`` and ``_bytes``, changed only under ``_lock``.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, expires: int | datetime | None = None) -> None:
        with self._lock:
            self._drop(key)
            if len(value) > self.max_bytes:
                return
            self._entries[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def delete(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: str) -> None:
        value = self._entries.pop(key, None)
        if value is not None:
            self._bytes -= len(value)

    @property
    def size(self) -> tuple[int, int]:
        """Entries and bytes stored now."""
        with self._lock:
            return len(self._entries), self._bytes


def _storable(headers: Mapping[str, str]) -> bool:
    """Whether a shared cache may store a response with these (case-insensitive) headers."""
    if "set-cookie" in headers:
        return False
    directives = headers.get("cache-control", "").lower()
    if "private" in directives or "s-maxage" in directives:
        return False
    date = headers.get("date")
    # CacheControl asserts on a Date it cannot parse: such a response is not stored.
    return date is None or parsedate_tz(date) is not None


class _SharedController(CacheController):
    """CacheControl's controller, storing only what a shared cache may store."""

    def cache_response(
        self, request: Any, response_or_ref: Any, body: Any = None, status_codes: Any = None
    ) -> None:
        response = (
            response_or_ref() if isinstance(response_or_ref, weakref.ref) else response_or_ref
        )
        if response is not None and _storable(response.headers):
            super().cache_response(request, response, body, status_codes)


class HttpCache:
    """One worker's HTTP cache: looked up before a GET is sent, filled as responses arrive."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        if CacheController is None:  # pragma: no cover  (the "cache" extra is installed here)
            raise ConfigError(
                "http_cache_bytes: the HTTP cache needs CacheControl: pip install 'wsgi_pool[cache]'"
            )
        self.storage = MemoryCache(max_bytes)
        self.max_entry_bytes = max_entry_bytes
        self.controller = _SharedController(self.storage, cache_etags=True)

    @staticmethod
    def applies(request: requests.PreparedRequest) -> bool:
        """Whether ``request`` may read and fill the cache: a GET that carries no one's credentials."""
        headers = request.headers
        return request.method == "GET" and not any(name in headers for name in _PERSONAL)

    def lookup(self, request: requests.PreparedRequest) -> Any:
        """A fresh stored response (urllib3's) for ``request``, else None.

        With none, a stored response that can be revalidated makes ``request`` conditional
        (``If-None-Match`` / ``If-Modified-Since``).
        """
        if not self.applies(request):
            return None
        found = self.controller.cached_request(request)
        if found:
            return found
        request.headers.update(self.controller.conditional_headers(request))
        return None

    def arrived(self, request: requests.PreparedRequest, response: Any) -> tuple[Any, bool]:
        """The response to hand on (the stored one after a 304), and whether it came from the cache.

        A storable response's body is stored once it has been read in full.
        """
        if request.method in INVALIDATING_METHODS:
            if 200 <= response.status < 400:
                self.storage.delete(self.controller.cache_url(request.url or ""))
            return response, False
        if not self.applies(request):
            return response, False
        if response.status == 304:
            stored = self.controller.update_cached_response(request, response)
            response.read(decode_content=False)  # nothing, or what a 304 should not have
            response.release_conn()
            return stored, stored is not response
        if response.status in PERMANENT_REDIRECT_STATUSES:
            self.controller.cache_response(request, response)
        elif self._worth_keeping(response):
            # CacheControl's tee: the body is stored when the last of it has been read.
            response._fp = CallbackFileWrapper(
                response._fp,
                functools.partial(self.controller.cache_response, request, weakref.ref(response)),
            )
        return response, False

    def _worth_keeping(self, response: Any) -> bool:
        """Whether to tee the body: it may be stored, and it has a length within the entry limit."""
        headers = response.headers
        length = headers.get("content-length", "")
        return (
            response.status in self.controller.cacheable_status_codes
            and not response.chunked
            and length.isdigit()
            and int(length) <= self.max_entry_bytes
            and (
                "etag" in headers
                or "expires" in headers
                or "max-age" in headers.get("cache-control", "")
            )
            and _storable(headers)
        )


class CacheExtension(Extension):
    """The HTTP cache, attached to one process's pools (``http_cache_bytes``)."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        self.cache = HttpCache(max_bytes, max_entry_bytes)

    def response_cache(self) -> HttpCache:
        return self.cache
