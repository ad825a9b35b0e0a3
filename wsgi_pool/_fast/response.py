"""Fast piece: requests' response for urllib3's, built directly, and its body read in one go.

requests' ``HTTPAdapter.build_response`` builds a ``Response`` field by field, copies the
headers through ``CaseInsensitiveDict``'s per-item methods and runs the cookie parser over
every response; ``Response.content`` reads the body through ``iter_content`` in chunks.
:func:`build` sets the same fields at once (a test compares them with what
``requests.Response()`` starts with and ``build_response`` sets), parses cookies only from a
response that sets one, and :func:`read_all` reads a body in one urllib3 read with the errors
``iter_content`` raises. Taken while ``seams.RESPONSE`` (the build) and ``seams.BODY`` (the
read) are intact.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import requests
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from wsgi_pool._fast.headers import QuickHeaders, stored
from wsgi_pool._fast.whole import WholeResponse
from wsgi_pool._translate import body_error

_R = TypeVar("_R", bound=requests.Response)
_NO_TIME: Final = datetime.timedelta(0)


def build(
    cls: type[_R], request: requests.PreparedRequest, resp: Any, connection: Any, **more: Any
) -> _R:
    """A ``cls`` (a ``requests.Response``) for urllib3's ``resp``, as ``build_response`` makes it.

    ``more`` sets further attributes of ``cls``'s own. The cookie jar is left to ``cls`` to
    make on first use unless the response sets a cookie.
    """
    response = cls.__new__(cls)
    whole = type(resp) is WholeResponse  # read whole: its headers made, its body read
    headers = resp.wp_headers if whole else headers_of(resp)
    vars(response).update(
        _content=resp.wp_body if whole else False,
        _content_consumed=whole,
        _next=None,
        status_code=resp.status,
        headers=headers,
        raw=resp,
        url=request.url.decode("utf-8") if isinstance(request.url, bytes) else request.url,
        encoding=encoding_of(headers.get("content-type")),
        history=[],
        reason=resp.reason,
        elapsed=_NO_TIME,
        request=request,
        connection=connection,
        **more,
    )
    if not whole and sets_cookie(headers):  # an answer read whole sets none
        extract_cookies_to_jar(response.cookies, request, resp)
    return response


def headers_of(resp: Any) -> QuickHeaders:
    """``CaseInsensitiveDict(resp.headers)``: urllib3's headers, repeated ones joined, as requests copies them."""
    return stored({name.lower(): (name, value) for name, value in resp.headers.itermerged()})


@functools.lru_cache(maxsize=64)
def encoding_of(content_type: str | None) -> str | None:
    """requests' ``get_encoding_from_headers`` for a response with this Content-Type."""
    if content_type is None:
        return None
    return get_encoding_from_headers(CaseInsensitiveDict({"content-type": content_type}))


def sets_cookie(headers: Mapping[str, Any] | None) -> bool:
    """Whether a response with these (case-insensitive) headers sets a cookie."""
    if type(headers) is QuickHeaders:
        store = headers._store
        return "set-cookie" in store or "set-cookie2" in store
    return headers is not None and ("set-cookie" in headers or "set-cookie2" in headers)


def read_all(raw: Any, amt: int | None) -> bytes:
    """The decoded body of urllib3's ``raw`` (at most ``amt`` bytes), with requests' errors for a failed read.

    One read where requests' ``content`` iterates ``raw.stream()``; the errors are those its
    ``iter_content`` raises.
    """
    try:
        body: bytes = raw.read(amt=amt, decode_content=True)
    except Exception as exc:
        error = body_error(exc)
        if error is None:
            raise
        raise error from exc
    return body
