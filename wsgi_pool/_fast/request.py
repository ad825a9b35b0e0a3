"""Fast piece: a plain request's head and body written in one send, as http.client writes them.

For a request on an open keep-alive connection, http.client (through urllib3) builds the
head line by line (``putrequest``, ``putheader``, ``endheaders``) and sends head and body
apart. :class:`OneSend` builds the same bytes at once and sends them together, when the
request is plain (:func:`request_head` says which are) and ``seams.REQUEST_WRITE`` finds
http.client's and urllib3's writers unpatched; otherwise urllib3 and http.client write the
request as they always do. ``tests/test_fast_request.py`` compares the bytes on the wire.
"""

from __future__ import annotations

import http.client
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from urllib3.connection import HTTPConnection, _ResponseOptions
from urllib3.util import SKIP_HEADER

from . import seams
from .headers import STORED

if TYPE_CHECKING:
    _Base = HTTPConnection  # what the mixin below is mixed into
else:
    _Base = object

MAX_NAMES: Final = 1024
"""Header names remembered as checked; past that the memory starts again."""

# A body up to this size goes out in the same send as the head; a larger one is not copied.
_ONE_SEND: Final = 64 * 1024

# http.client's connection states, as it names them.
_IDLE: Final[str] = http.client._CS_IDLE  # type: ignore[attr-defined]
_SENT: Final[str] = http.client._CS_REQ_SENT  # type: ignore[attr-defined]


class OneSend(_Base):
    """Mixed into the pools' connections: plain requests on a kept connection in one send."""

    wp_host_line: str | None = None  # the Host header http.client wrote on this connection

    def putrequest(
        self, method: str, url: str, skip_host: bool = False, skip_accept_encoding: bool = False
    ) -> None:
        super().putrequest(
            method, url, skip_host=skip_host, skip_accept_encoding=skip_accept_encoding
        )
        conn: Any = self  # http.client's own attributes, untyped
        if not skip_host and url.startswith("/") and conn._tunnel_host is None:
            line = conn._buffer[1]  # just after the request line
            if line.startswith(b"Host: "):  # pragma: no branch  (what http.client writes)
                self.wp_host_line = line.decode("latin-1")

    def request(  # type: ignore[override]  # urllib3's signature
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        chunked: bool = False,
        preload_content: bool = True,
        decode_content: bool = True,
        enforce_content_length: bool = True,
    ) -> None:
        """urllib3's ``request``; a plain one on an open connection written in one send."""
        conn: Any = self  # http.client's own attributes, untyped
        sock = conn.sock
        head = None
        if (
            sock is not None
            and headers is not None
            and not chunked
            and (body is None or type(body) is bytes)
            and self.wp_host_line is not None
            and conn._HTTPConnection__state == _IDLE
            and not conn.debuglevel
            and seams.REQUEST_WRITE.intact()
        ):
            head = request_head(
                method, url, headers, self.wp_host_line, None if body is None else len(body)
            )
        if head is None:
            super().request(
                method,
                url,
                body,
                headers,
                chunked=chunked,
                preload_content=preload_content,
                decode_content=decode_content,
                enforce_content_length=enforce_content_length,
            )
            return
        # What putrequest, putheader, endheaders and send leave behind, as they leave it
        # (the socket's timeout set as urllib3 sets it; no system call when it is that already).
        if sock.gettimeout() != conn.timeout:
            sock.settimeout(conn.timeout)
        conn._response_options = _ResponseOptions(
            request_method=method,
            request_url=url,
            preload_content=preload_content,
            decode_content=decode_content,
            enforce_content_length=enforce_content_length,
        )
        conn._method = method
        conn._HTTPConnection__state = _SENT
        parts = (head, body) if body and len(body) > _ONE_SEND else (head + (body or b""),)
        for data in parts:
            sys.audit("http.client.send", self, data)
            sock.sendall(data)


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
    if type(headers) in STORED:
        # The same headers (requests' defaults, a client's own) come again and again: their
        # lines, checked once, are remembered by the headers' (name, value) pairs.
        pairs = tuple(headers._store.values())  # type: ignore[attr-defined]
        try:
            block = _blocks[pairs]
        except KeyError:
            block = _blocks[pairs] = _header_block(pairs)
            if len(_blocks) > MAX_NAMES:
                _blocks.clear()
        except TypeError:  # a value set after preparing that is no str (refused below)
            block = _header_block(pairs)
    else:
        block = _header_block(headers.items())
    if block is None:
        return None
    lines, seen = block
    if "content-length" not in seen and (
        body_length is not None or method not in _NO_BODY_EXPECTED
    ):
        return None
    try:
        return f"{method} {target} HTTP/1.1\r\n{host_line}\r\n{lines}\r\n".encode("latin-1")
    except UnicodeEncodeError:
        return None


_blocks: dict[tuple[tuple[Any, Any], ...], tuple[str, frozenset[str]] | None] = {}
"""Header lines checked (or refused: None), by the headers' (name, value) pairs."""


def _header_block(pairs: Any) -> tuple[str, frozenset[str]] | None:
    """The lines of plain headers, each ending in CRLF, and their lower-case names; None if not plain."""
    lines = []
    seen = set()
    for name, value in pairs:
        lower = _checked_names.get(name)
        if lower is None:
            if not isinstance(name, str) or not name.isascii() or not _LEGAL_NAME.fullmatch(name):
                return None
            lower = name.lower()
            if len(_checked_names) < MAX_NAMES:
                _checked_names[name] = lower
        if not isinstance(value, str) or "\r" in value or "\n" in value or value == SKIP_HEADER:
            return None
        seen.add(lower)
        lines.append(f"{name}: {value}\r\n")
    if (
        "host" in seen
        or "transfer-encoding" in seen
        or "user-agent" not in seen
        or "accept-encoding" not in seen
    ):
        return None
    return "".join(lines), frozenset(seen)
