"""Fast piece: a request prepared without a ``requests.Request``, as ``Session.prepare_request`` would.

requests prepares every call by building a ``Request``, merging the session's settings into
it and running each ``PreparedRequest.prepare_*`` step, cookie jar included. For a call with
no cookies (none given, none kept) the result is the same without the ``Request``, the cookie
steps or a second parse of a plain URL: :func:`prepare` runs requests' own ``prepare_*``
steps for the rest, and reuses requests' validated default headers when neither the call
nor the client changed them. Taken while ``seams.PREPARE`` is intact;
``tests/test_fast_prepare.py`` compares what is sent with what a ``requests.Session`` sends.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, MutableMapping
from http.cookiejar import CookieJar
from typing import Any, Final

import requests
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity, default_headers

from .exchange import PLAIN_TARGET
from .headers import stored


def merge_setting(
    call_setting: Any,
    client_setting: Any,
    dict_class: Callable[[Any], MutableMapping[Any, Any]] = OrderedDict,
) -> Any:
    """requests' ``merge_setting``: the call's setting over the client's, None values removed."""
    if client_setting is None:
        return call_setting
    if call_setting is None:
        return client_setting
    if not (_is_mapping(client_setting) and _is_mapping(call_setting)):
        return call_setting
    merged = dict_class(client_setting.items())
    merged.update(call_setting.items())
    for key in [key for key, value in merged.items() if value is None]:
        del merged[key]
    return merged


class Prepared(requests.PreparedRequest):
    """requests' prepared request, whose cookie jar (empty: a call without cookies) is made
    on first use, as ``prepare_cookies`` would have made it."""

    wp_target: tuple[str, str] | None = None
    """The URL as prepared, and its request target (as long as the URL is that one)."""
    _wp_cookies: CookieJar | None

    @property  # requests' is an attribute
    def _cookies(self) -> CookieJar:
        jar: CookieJar | None = vars(self).get("_wp_cookies")
        if jar is None:
            jar = self._wp_cookies = RequestsCookieJar()
        return jar

    @_cookies.setter
    def _cookies(self, value: CookieJar | None) -> None:
        self._wp_cookies = value


def _is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, the usual types told without the ABC machinery."""
    return type(value) in _MAPPINGS or isinstance(value, Mapping)


class Headers(CaseInsensitiveDict[Any]):
    """A client's headers: it notes the first change, so unchanged defaults are checked only once."""

    changed = False

    @classmethod
    def defaults(cls) -> Headers:
        """requests' default headers, unchanged."""
        headers = cls(default_headers())
        headers.changed = False
        return headers

    def __setitem__(self, key: str, value: Any) -> None:
        self.changed = True
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.changed = True
        super().__delitem__(key)


def _checked_defaults() -> CaseInsensitiveDict[Any]:
    prepared = requests.PreparedRequest()
    prepared.prepare_headers(default_headers())
    return prepared.headers


_NO_LENGTH: Final = ("GET", "HEAD")
"""Methods prepare_content_length gives no length when there is no body."""

_MAPPINGS: Final = frozenset({dict, OrderedDict, CaseInsensitiveDict, Headers})

_CHECKED_DEFAULTS: Final = _checked_defaults()
"""requests' default headers as ``PreparedRequest.prepare_headers`` leaves them (validated)."""


def prepare(  # noqa: PLR0917  (a Request's fields)
    method: Any,
    url: Any,
    params: Any,
    headers: Any,
    data: Any,
    files: Any,
    json: Any,
    auth: Any,
    *,
    own_params: Any,
    own_headers: CaseInsensitiveDict[Any] | None,
    own_auth: Any,
) -> requests.PreparedRequest:
    """``prepare_request``'s work for a call without cookies, less its hooks.

    ``own_*`` are the client's settings (``own_headers`` None: requests' defaults, unchanged).
    """
    prepared = Prepared()
    if type(method) is str:
        prepared.method = method.upper()  # what prepare_method makes of a str
    else:
        prepared.prepare_method(method)
    params = merge_setting(params, own_params) or None if params or own_params else None
    quick = prepared_url(url) if params is None and isinstance(url, str) else None
    if quick is None:
        prepared.prepare_url(url, params)
    else:
        prepared.url, target = quick
        if not target.startswith("//"):  # requests sends "//x" as "/x": worked out later
            prepared.wp_target = (prepared.url, target)
    defaults = own_headers is None or (isinstance(own_headers, Headers) and not own_headers.changed)
    if defaults and not headers:
        # What prepare_headers makes of the defaults: a copy of them, store to store.
        prepared.headers = stored(dict(_CHECKED_DEFAULTS._store))
    elif defaults and type(headers) is dict and (merged := _over_defaults(headers)) is not None:
        prepared.headers = stored(merged)
    else:
        mine = Headers.defaults() if own_headers is None else own_headers
        prepared.prepare_headers(merge_setting(headers, mine, CaseInsensitiveDict))
    if data or files or json is not None or prepared.method not in _NO_LENGTH:
        _prepare_body(prepared, data, files, json)
    auth = own_auth if auth is None else merge_setting(auth, own_auth)
    if auth is not None or "@" in (prepared.url or ""):
        prepared.prepare_auth(auth, prepared.url or "")
    return prepared


def _prepare_body(prepared: requests.PreparedRequest, data: Any, files: Any, json: Any) -> None:
    """``prepare_body``'s work, done directly for no body and for bytes."""
    if files or json is not None or (data and type(data) is not bytes):
        prepared.prepare_body(data, files, json)
    elif data:  # bytes: the body, their length its length
        prepared.body = data
        prepared.headers["Content-Length"] = str(len(data))
    else:  # no body: a Content-Length of 0 where one is expected
        prepared.prepare_content_length(None)


def _over_defaults(headers: dict[Any, Any]) -> dict[str, tuple[str, Any]] | None:
    """The store ``prepare_headers`` makes of requests' default headers merged with a call's
    (str names; a None value removes one), each header checked as it checks them, in the same
    order (a pair checked once is remembered); None if a name is no str (requests decides)."""
    merged = dict(_CHECKED_DEFAULTS._store)
    for name, value in headers.items():
        if type(name) is not str:
            return None
        lower = name.lower()
        if value is None:
            merged.pop(lower, None)
        else:
            merged[lower] = (name, value)
    for pair in merged.values():
        try:
            known = pair in _checked_pairs
        except TypeError:  # an unhashable value: requests refuses it
            known = False
        if not known:
            check_header_validity(pair)
            if len(_checked_pairs) < MAX_CHECKED:
                _checked_pairs.add(pair)
    return merged


MAX_CHECKED: Final = 1024
"""Header (name, value) pairs remembered as checked; past that, checked each time."""

_checked_pairs: set[tuple[str, Any]] = set(_CHECKED_DEFAULTS._store.values())


# A scheme and authority with nothing that could end the authority early.
_PLAIN_ORIGIN: Final = re.compile(r"https?://[A-Za-z0-9\-._~!$&'()*+,;=:@\[\]]+")


def prepared_url(url: str) -> tuple[str, str] | None:
    """What ``PreparedRequest.prepare_url(url, None)`` makes of ``url``, when that is quick to
    know, and its path and query.

    For an http(s) URL whose path and query are plain (see ``PLAIN_TARGET``), the answer is
    requests' own for the scheme and authority (remembered per authority) followed by the
    path and query unchanged. None for any other URL: requests prepares it.
    """
    slash = url.find("/", 8)
    head, target = (url, "/") if slash == -1 else (url[:slash], url[slash:])
    if not _PLAIN_ORIGIN.fullmatch(head):
        return None
    if slash != -1 and (not PLAIN_TARGET.fullmatch(target) or "/." in target.partition("?")[0]):
        return None
    try:
        return _prepared_origin(head) + target, target
    except (requests.exceptions.RequestException, ValueError):
        return None  # requests raises its own error, naming the whole URL


@functools.lru_cache(maxsize=256)
def _prepared_origin(head: str) -> str:
    prepared = requests.PreparedRequest()
    prepared.prepare_url(head, None)
    return (prepared.url or "/")[:-1]  # prepare_url gives "scheme://authority/"
