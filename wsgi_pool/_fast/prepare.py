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
from typing import Any, Final

import requests
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from requests.utils import default_headers

from .exchange import PLAIN_TARGET


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
    if not (isinstance(client_setting, Mapping) and isinstance(call_setting, Mapping)):
        return call_setting
    merged = dict_class(client_setting.items())
    merged.update(call_setting.items())
    for key in [key for key, value in merged.items() if value is None]:
        del merged[key]
    return merged


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
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    params = merge_setting(params, own_params) or None
    quick = prepared_url(url) if params is None and isinstance(url, str) else None
    if quick is None:
        prepared.prepare_url(url, params)
    else:
        prepared.url = quick
    if not headers and (
        own_headers is None or (isinstance(own_headers, Headers) and not own_headers.changed)
    ):
        # What prepare_headers makes of the defaults: a copy of them, store to store.
        merged: CaseInsensitiveDict[Any] = CaseInsensitiveDict()
        merged._store = _CHECKED_DEFAULTS._store.copy()
        prepared.headers = merged
    else:
        mine = Headers.defaults() if own_headers is None else own_headers
        prepared.prepare_headers(merge_setting(headers, mine, CaseInsensitiveDict))
    prepared._cookies = RequestsCookieJar()
    prepared.prepare_body(data, files, json)
    auth = merge_setting(auth, own_auth)
    if auth is not None or "@" in (prepared.url or ""):
        prepared.prepare_auth(auth, prepared.url or "")
    return prepared


# A scheme and authority with nothing that could end the authority early.
_PLAIN_ORIGIN: Final = re.compile(r"https?://[A-Za-z0-9\-._~!$&'()*+,;=:@\[\]]+")


def prepared_url(url: str) -> str | None:
    """What ``PreparedRequest.prepare_url(url, None)`` makes of ``url``, when that is quick to know.

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
        return _prepared_origin(head) + target
    except (requests.exceptions.RequestException, ValueError):
        return None  # requests raises its own error, naming the whole URL


@functools.lru_cache(maxsize=256)
def _prepared_origin(head: str) -> str:
    prepared = requests.PreparedRequest()
    prepared.prepare_url(head, None)
    return (prepared.url or "/")[:-1]  # prepare_url gives "scheme://authority/"
