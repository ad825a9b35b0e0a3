"""Fast piece: a response head read without the email parser, as ``http.client`` would read it.

``http.client`` hands every response's header block to the ``email`` package's feed parser,
and urllib3 then reads each value back through the email policy: about 17 µs per response,
most of a pooled GET's client-side cost after the socket calls. A block whose lines are all
plain ``name:value`` lines (a name of the characters the email parser takes, no folded or
``\\r``-split lines) is turned into the same ``HTTPMessage`` directly, with ``set_raw`` and
the value as the email parser leaves it. Any other block goes to the email parser, as
``http.client`` sends it. The framing (status, version, chunked, length, whether the
connection closes) follows ``http.client.HTTPResponse.begin``; ``tests/test_fast_head.py``
compares the two on a table of heads and on random ones.

It replaces ``HTTPResponse.begin``: the pools' response class (``_connection``) takes it
while ``seams.HEAD`` is intact, and http.client's own otherwise.
"""

from __future__ import annotations

import email.parser
import http.client
import re
from email._policybase import Compat32  # where compat32 lives (email.policy imports far more)
from typing import Any, Final

_read_lines: Any = getattr(http.client, "_read_headers", None)
"""http.client's own header-block reader (its line and count limits, its errors)."""

AVAILABLE: Final = callable(_read_lines)
"""False on a Python whose http.client reads heads differently: its own response class is used."""

_PLAIN_LINE: Final = re.compile(r"[!-9;-~]+:[^\r\n]*\r?\n\Z")
"""A header line the email parser would take as one header and nothing else."""


class _Verbatim(Compat32):
    """compat32, whose values are returned as stored: a latin-1 decoded value has no surrogates,
    so compat32's check for them returns it unchanged."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


VERBATIM: Final = _Verbatim()
_NESTED: Final = frozenset(("multipart", "message"))


def parse(lines: list[bytes]) -> http.client.HTTPMessage:
    """The ``HTTPMessage`` ``http.client.parse_headers`` makes of a header block's lines."""
    message = http.client.HTTPMessage(policy=VERBATIM)
    for raw in lines[:-1]:  # the last one ends the block
        line = raw.decode("iso-8859-1")
        if _PLAIN_LINE.match(line) is None:
            return _email_parsed(lines)
        name, _, value = line.partition(":")
        message.set_raw(name, value.lstrip(" \t").rstrip("\r\n"))
    if message.get_content_maintype() in _NESTED:  # the email parser looks for parts in the body
        return _email_parsed(lines)
    message.set_payload("")  # what the email parser leaves after an empty body
    return message


def _email_parsed(lines: list[bytes]) -> http.client.HTTPMessage:
    text = b"".join(lines).decode("iso-8859-1")
    return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)


class FastHead(http.client.HTTPResponse):
    """``http.client``'s response, its head read by :func:`parse` when :data:`AVAILABLE`."""

    def begin(self) -> None:
        this: Any = self  # http.client's own attributes, untyped (headers is None until begun)
        if this.headers is not None or this.debuglevel > 0 or not AVAILABLE:
            http.client.HTTPResponse.begin(self)  # begun already (it returns), or printing
            return
        version, status, reason = this._read_status()
        while status == http.client.CONTINUE:  # a 100 Continue's head is read and dropped
            _read_lines(self.fp)
            version, status, reason = this._read_status()
        self.code = self.status = status
        self.reason = reason.strip()
        if version in {"HTTP/1.0", "HTTP/0.9"}:
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = parse(_read_lines(self.fp))
        encoding = self.msg.get("transfer-encoding")
        this.chunked = encoding is not None and encoding.lower() == "chunked"
        if this.chunked:
            this.chunk_left = None
        self.will_close = this._check_close()
        this.length = None if this.chunked else _length(self.msg.get("content-length"))
        if status in {204, 304} or 100 <= status < 200 or this._method == "HEAD":
            this.length = 0
        if this.length is None and not this.chunked:
            self.will_close = True


def _length(value: str | None) -> int | None:
    """A Content-Length as http.client takes it: an int, None when absent, bad or negative."""
    try:
        length = int(value) if value else None
    except ValueError:
        return None
    return None if length is None or length < 0 else length
