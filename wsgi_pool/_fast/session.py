"""Fast piece: requests' ``Session.send``, less the cookie parser on responses that set no cookie.

requests runs ``extract_cookies_to_jar`` (a ``MockRequest``, a ``MockResponse`` and the
``http.cookiejar`` policy) on every response, and asks for the environment's proxies on a
direct ``send``. :func:`send` is the same sequence (adapter, elapsed time, response hooks,
kept cookies, redirects, the body) with the cookie step only for a response that sets a
cookie; the client passes its proxies in. Taken while ``seams.SESSION`` is intact (an
instrumentation that wraps ``Session.send`` gets requests' own).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import requests
from requests.cookies import extract_cookies_to_jar
from requests.hooks import dispatch_hook

from .response import sets_cookie


def send(
    session: requests.Session, request: requests.PreparedRequest, **kwargs: Any
) -> requests.Response:
    """``session.send(request, **kwargs)`` as requests' ``Session.send`` does it (``proxies`` given)."""
    given: Any = request  # typed as a PreparedRequest, it may be anything
    if isinstance(given, requests.Request):
        raise ValueError("You can only send PreparedRequests.")
    kwargs.setdefault("stream", session.stream)
    kwargs.setdefault("verify", session.verify)
    kwargs.setdefault("cert", session.cert)
    allow_redirects = kwargs.pop("allow_redirects", True)
    adapter = session.get_adapter(request.url or "")
    start = time.perf_counter()
    response: requests.Response = adapter.send(request, **kwargs)
    response.elapsed = timedelta(seconds=time.perf_counter() - start)
    try:
        if request.hooks and request.hooks.get("response"):  # else dispatch_hook changes nothing
            response = dispatch_hook("response", request.hooks, response, **kwargs)
    except BaseException:
        # A hook raised (raise_for_status): the connection goes back now, kept if the body
        # can be read as the call would have read it, else closed.
        if kwargs["stream"] or not _read_quietly(response):
            response.close()
        raise
    for earlier in response.history:  # set by a hook
        keep_cookies(session, earlier.request, earlier)
    keep_cookies(session, request, response)
    if response.is_redirect:
        if allow_redirects:
            history = [response, *session.resolve_redirects(response, request, **kwargs)]
            response = history.pop()
            response.history = history
        else:
            response._next = next(  # type: ignore[assignment]  # requests stores the request
                session.resolve_redirects(response, request, yield_requests=True, **kwargs),
                None,
            )
    if not kwargs["stream"]:
        response.content  # noqa: B018  (reads the body)
    return response


def keep_cookies(session: requests.Session, request: Any, response: requests.Response) -> None:
    """Keep in ``session``'s jar the cookies ``response`` sets, if it sets any."""
    if sets_cookie(getattr(response, "headers", None)):
        extract_cookies_to_jar(session.cookies, request, response.raw)


def _read_quietly(response: requests.Response) -> bool:
    """Read ``response``'s body (giving its connection back); False if that failed."""
    try:
        response.content  # noqa: B018
    except Exception:  # the hook's error is the one the caller sees
        return False
    return True
