"""The redirect policy: what a followed redirect may carry, and where it may go.

requests strips only ``Authorization``, ``Cookie`` and ``Proxy-Authorization`` when a redirect
changes host; every other header (an ``X-Api-Key``) and a 307/308 body go on to the new
origin, and each redirect body is read and decoded in full. Here, hop by hop:

- a hop to another origin (scheme, host or port) carries only the headers listed in
  ``redirect_headers``: no credentials, no cookies, no caller-set header, no request id or
  trace context (the next upstream gets its own if it is allowed to); a hop that would carry
  a request body to another origin is refused, as is one from https to http or to a scheme
  other than http(s); hooks an auth object registered (digest auth answers a 401 with the
  credentials) are dropped;
- a hop within the origin behaves as in requests (the method rewrite of 301/302/303, cookies,
  a file body rewound for a 307 or 308);
- a redirect's body is discarded unread: up to 64 KiB of raw bytes are drained so its
  connection can be reused, more than that and the connection is closed;
- at most ``max_redirects`` hops, then :class:`TooManyRedirects`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, MutableMapping
from http.cookiejar import CookieJar
from typing import Any, Final
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.auth import AuthBase
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar, merge_cookies
from requests.utils import requote_uri, rewind_body
from urllib3.exceptions import HTTPError

from ._failures import RedirectRefused

DISCARD_LIMIT: Final = 64 * 1024
"""Raw bytes of a redirect body drained to keep its connection; a larger body closes it."""

_BODY_HEADERS: Final = frozenset({"content-length", "content-type", "transfer-encoding"})
_KEEPS_BODY: Final = frozenset({307, 308})


def discard_body(response: requests.Response) -> None:
    """Release a redirect response without decoding its body; close its connection if the body is large."""
    try:
        drained = response.raw.read(DISCARD_LIMIT + 1, decode_content=False)
    except (OSError, HTTPError):  # reset, cut by the deadline, or malformed: just drop it
        drained = None
    if drained is not None and len(drained) <= DISCARD_LIMIT:
        response._content = b""
        response._content_consumed = True
    response.close()


def target_of(response: requests.Response, location: str, fragment: str) -> tuple[str, str]:
    """The absolute URL a ``Location`` points to, and the fragment carried on (RFC 9110, 10.2.2)."""
    url = urljoin(response.url, requote_uri(location))
    parts = urlsplit(url)
    if parts.fragment:
        return url, parts.fragment
    if fragment:
        return urlunsplit(parts._replace(fragment=fragment)), fragment
    return url, fragment


def shape_hop(
    prepared: requests.PreparedRequest,
    response: requests.Response,
    *,
    source: str,
    target: str,
    keep: Collection[str],
    cookies: CookieJar,
) -> None:
    """Make ``prepared`` (a copy of the last hop, its method already rewritten) fit for ``target``.

    ``source`` and ``target`` are origins; ``cookies`` is the client's jar. Raises
    :class:`RedirectRefused` for a hop the policy does not follow.
    """
    url = prepared.url or ""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in {"http", "https"}:
        raise _refused(response, source, f"refused a redirect to a {scheme or 'relative'} URL")
    if source.startswith("https:") and scheme == "http":
        raise _refused(response, source, f"refused a redirect from https to http ({target})")
    if response.status_code not in _KEEPS_BODY:
        _drop(prepared.headers, _BODY_HEADERS)
        prepared.body = None
    prepared.headers.pop("Proxy-Authorization", None)  # the proxy's: set per proxy, not per hop
    prepared.headers.pop("Cookie", None)
    if source == target:  # as requests does: the call's cookies, the redirect's, the client's
        jar = prepared._cookies or RequestsCookieJar()
        extract_cookies_to_jar(jar, response.request, response.raw)
        merge_cookies(jar, cookies)
        prepared.prepare_cookies(jar)
        return
    if prepared.body:
        raise _refused(
            response,
            source,
            f"refused a {response.status_code} redirect that would send the request body "
            f"to another origin ({target})",
        )
    kept = {*keep, *_BODY_HEADERS} if response.status_code in _KEEPS_BODY else keep
    _drop(prepared.headers, [name for name in prepared.headers if name.lower() not in kept])
    prepared._cookies = RequestsCookieJar()  # the call's cookies stay with the first origin
    prepared.hooks = {
        event: [hook for hook in hooks if not isinstance(getattr(hook, "__self__", None), AuthBase)]
        for event, hooks in prepared.hooks.items()
    }


def rewind(prepared: requests.PreparedRequest) -> None:
    """Rewind a file body that goes on to the next hop, as requests does (else the hop waits
    for a body already sent)."""
    headers = prepared.headers
    if prepared._body_position is not None and (
        "Content-Length" in headers or "Transfer-Encoding" in headers
    ):
        rewind_body(prepared)


def _drop(headers: MutableMapping[str, Any], names: Iterable[str]) -> None:
    for name in list(names):
        headers.pop(name, None)


def _refused(response: requests.Response, source: str, message: str) -> RedirectRefused:
    return RedirectRefused(message, upstream=source, request=response.request, response=response)
