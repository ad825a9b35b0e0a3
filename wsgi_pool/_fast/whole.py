"""Fast piece: a plain answer read whole in one socket read, with no http.client or urllib3 reader.

For an answer on a kept connection, urllib3's ``_make_request`` has http.client make a
response object with a new buffered reader over the socket and read the head line by line;
urllib3 copies the headers into an ``HTTPHeaderDict`` and wraps the lot in its
``HTTPResponse``, through which requests then reads the body. :func:`make_request` does what
``_make_request`` does for a kept connection, and reads the answer with one ``recv`` (and,
for a body sent after its head, what of it is there already: nothing is waited for past the
head). When that holds a plain answer whole (an ``HTTP/1.1`` status line with a final status
that has a body, header lines the email parser takes as they are, one ``Content-Length`` of
digits, no transfer or content coding, no cookie, the body complete and within the call's
limit), the
answer is a :class:`WholeResponse`: urllib3's ``HTTPResponse``, its body read, its
connection ready to go back, whose requests response is built with its content set
(``_fast.response.build``). Its urllib3 headers and ``_original_response`` are made only if
something asks for them. Any other answer is read by http.client and urllib3 as
always: the bytes already received are handed to the pools' response class
(:func:`taken_over`), which reads them before the socket (and meets there a failure of the
socket met after them).

Taken while ``seams.WHOLE`` is intact; ``tests/test_fast_whole.py`` compares both ways on a
table of answers, and on random ones.
"""

from __future__ import annotations

import errno
import http.client
import io
import re
from typing import Any, Final

from requests.structures import CaseInsensitiveDict
from urllib3._collections import HTTPHeaderDict
from urllib3.connection import BaseSSLError
from urllib3.connectionpool import log as _log
from urllib3.response import BytesQueueBuffer, HTTPResponse
from urllib3.util.wait import wait_for_read

from .headers import stored

FIRST_READ: Final = 65536
"""Bytes asked of the socket by one read."""

SMALL_BODY: Final = 64 * 1024
"""A request body this long or shorter goes out with its head in one send (``_fast.request``)."""

MAX_WHOLE: Final = 1 << 20
"""The longest body read whole; a longer one is read the standard way."""

MAX_HEADERS: Final = 100
"""http.client refuses more header lines than this (its own errors are raised on that path)."""

_STATUS: Final = re.compile(r"HTTP/1\.1 ([2-5][0-9][0-9])(?: ([!-~](?:[ -~]*[!-~])?))?")
"""A status line http.client splits and strips to exactly these parts."""
_LINE: Final = re.compile(r"\r\n([!-9;-~]+):[ \t]*([^\r\n]*)")
"""A header line the email parser takes as one ``name:value`` (see ``_fast.head``): its name,
and its value as the parser leaves it."""
_NO_BODY: Final = frozenset({204, 304})
_UNPLAIN: Final = frozenset(
    {"content-encoding", "transfer-encoding", "set-cookie", "set-cookie2"}
)  # a decoder, another framing, or a cookie jar: read the standard way

handed: dict[Any, tuple[bytes, BaseException | None]] = {}
"""Bytes read from a socket that turned out not to hold a plain answer: the pools' response
class takes them (:func:`taken_over`) before it reads the socket. Keyed by the socket; one
thread uses a socket at a time."""


class _Spent(io.BytesIO):
    """The body of an answer read whole, as urllib3 sees it once read: closed, nothing left."""


_SPENT: Final = _Spent()
_SPENT.close()


class WholeResponse(HTTPResponse):
    """urllib3's response for an answer read whole: body read, connection free to go back.

    ``wp_headers`` are requests' headers of it and ``wp_body`` its body. urllib3's own
    ``headers`` and ``_original_response`` are made from the head on first use.
    """

    wp_pairs: list[tuple[str, str]]
    wp_headers: CaseInsensitiveDict[str]
    wp_body: bytes
    wp_head: bytes
    wp_method: str

    @property  # urllib3's is an attribute
    def headers(self) -> HTTPHeaderDict:
        found: HTTPHeaderDict | None = vars(self).get("_wp_headers")
        if found is None:
            found = self._wp_headers = HTTPHeaderDict(self.wp_pairs)
        return found

    @headers.setter
    def headers(self, value: HTTPHeaderDict) -> None:
        self._wp_headers = value

    @property  # urllib3's is an attribute
    def _original_response(self) -> http.client.HTTPResponse:
        found: http.client.HTTPResponse | None = vars(self).get("_wp_original")
        if found is None:
            found = self._wp_original = _original(self.wp_head, self.wp_method)
        return found

    @_original_response.setter
    def _original_response(self, value: http.client.HTTPResponse) -> None:
        self._wp_original = value

    @property
    def _decoded_buffer(self) -> BytesQueueBuffer:
        found: BytesQueueBuffer | None = vars(self).get("_wp_buffer")
        if found is None:
            found = self._wp_buffer = BytesQueueBuffer()
        return found

    @_decoded_buffer.setter
    def _decoded_buffer(self, value: BytesQueueBuffer) -> None:
        self._wp_buffer = value


def _template() -> dict[str, Any]:
    """The attributes urllib3 gives a response (``preload_content=False``), less the lazy ones."""
    made = HTTPResponse(body=b"", preload_content=False, decode_content=False)
    found = dict(vars(made))
    for lazy in ("headers", "_original_response", "_decoded_buffer"):
        found.pop(lazy)
    made.close()
    return found


_TEMPLATE: Final = _template()


class _Replay:
    """A socket whose one file is a head already read (for http.client to parse again)."""

    def __init__(self, head: bytes) -> None:
        self._head = head

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self._head)


def _original(head: bytes, method: str) -> http.client.HTTPResponse:
    """The http.client response urllib3 would keep for a head: parsed by http.client itself."""
    original = http.client.HTTPResponse(_Replay(head), method=method)  # type: ignore[arg-type]
    original.begin()
    original.close()  # its body was read (into the WholeResponse)
    return original


class _Answer:
    """A plain answer found in the bytes received."""

    __slots__ = ("body", "close", "head", "headers", "pairs", "reason", "status")

    def __init__(  # noqa: PLR0917
        self,
        status: int,
        reason: str,
        pairs: list[tuple[str, str]],
        headers: CaseInsensitiveDict[str],
        head: bytes,
        body: bytes,
        close: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.pairs = pairs
        self.headers = headers
        self.head = head
        self.body = body
        self.close = close


def plain_answer(data: bytes, method: str, limit: int) -> _Answer | int | None:
    """The plain answer ``data`` holds whole (its body at most ``limit`` bytes); or, for a
    plain head whose body is not all there yet, how many bytes are missing; else None."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or method == "HEAD":
        return None
    head = _plain_head(data[:end].decode("iso-8859-1"))
    if head is None:
        return None
    status, reason, pairs, store = head
    size = _length(store, limit)
    if size is None:
        return None
    body = data[end + 4 :]
    if len(body) < size:
        return size - len(body)  # the rest is on its way (a head and body sent apart)
    # http.client closes after an answer whose (first) Connection header says so; bytes past
    # the body are no answer to anything, and the connection is closed rather than reused.
    close = len(body) > size or ("connection" in store and _says_close(store, pairs))
    return _Answer(status, reason, pairs, stored(store), data[: end + 4], body[:size], close)


def _says_close(store: dict[str, tuple[str, str]], pairs: list[tuple[str, str]]) -> bool:
    """http.client's ``_check_close`` for HTTP/1.1: the first Connection header has "close"."""
    if len(store) == len(pairs):  # each name once: the store holds the one Connection header
        return "close" in store["connection"][1].lower()
    for name, value in pairs:
        if name.lower() == "connection":
            return "close" in value.lower()
    return False  # pragma: no cover  (asked only when there is one)


_Head = tuple[int, str, list[tuple[str, str]], dict[str, tuple[str, str]]]


def _plain_head(text: str) -> _Head | None:
    """A head's final status with a body, its reason, header pairs and their store, when
    http.client and the email parser would read them exactly so; else None."""
    first = text.find("\r\n")
    found = _STATUS.fullmatch(text if first < 0 else text[:first])
    if found is None:
        return None
    status = int(found[1])
    if status in _NO_BODY:
        return None
    block = "" if first < 0 else text[first:]
    pairs: list[tuple[str, str]] = _LINE.findall(block)
    lines = len(pairs)
    # Each line a match, and no CR or LF but the CRLF each match begins with (a value stops
    # at one): as many of each as lines.
    if block.count("\n") != lines or block.count("\r") != lines:
        return None
    if lines >= MAX_HEADERS:
        return None
    store = {name.lower(): (name, value) for name, value in pairs}
    if len(store) < len(pairs):  # a name repeated
        store = _joined(pairs)
    if not _UNPLAIN.isdisjoint(store):
        return None
    return status, found[2] or "", pairs, store


def _length(store: dict[str, tuple[str, str]], limit: int) -> int | None:
    """The body's length: one ``Content-Length`` of digits, at most ``limit``; else None."""
    found = store.get("content-length")
    if found is None:
        return None
    length = found[1]
    # Digits only (a repeated one is joined with ", ": urllib3 checks that they agree).
    if not (length.isascii() and length.isdigit()):
        return None
    size = int(length)
    return None if size > limit else size


def _joined(pairs: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """A store of ``pairs`` with repeated names joined, as urllib3 joins them (the first
    name's spelling, the values in order)."""
    store: dict[str, tuple[str, str]] = {}
    for name, value in pairs:
        lower = name.lower()
        found = store.get(lower)
        store[lower] = (name, value) if found is None else (found[0], f"{found[1]}, {value}")
    return store


def make_request(  # noqa: PLR0917  (urllib3's _make_request)
    pool: Any,
    conn: Any,
    method: str,
    url: str,
    body: Any,
    headers: Any,
    *,
    limit: int,
    timeout: Any,
    retries: Any,
    chunked: bool = False,
    response_conn: Any = None,
    preload_content: bool = True,
    decode_content: bool = True,
    enforce_content_length: bool = True,
) -> HTTPResponse:
    """urllib3's ``_make_request`` on ``conn``, a kept connection; a plain answer read whole.

    The request goes out as urllib3 sends it (``conn.request``); the answer is read with one
    ``recv`` and is a :class:`WholeResponse` when plain (see :func:`plain_answer`), else
    urllib3's response read from those bytes and the socket. Errors are urllib3's.
    """
    pool.num_requests += 1
    # The call's Timeout (_call.checked_timeout) has no total: its two timeouts are as given.
    # urllib3 sends within the connect timeout. A request that goes out in one send of at most
    # 64 KiB never waits on the peer (the socket's buffer takes it): it is sent within the read
    # timeout, so the socket's timeout is not changed twice per call (two system calls).
    read_timeout = timeout._read
    small = body is None or (type(body) is bytes and len(body) <= SMALL_BODY)
    conn.timeout = read_timeout if small else timeout._connect
    # urllib3's _validate_conn (seams.WHOLE holds it unpatched): on a kept connection it only
    # warns when an https one is not verified; that one goes through it.
    if pool.scheme == "https" and not (conn.is_verified or conn.proxy_is_verified):
        pool._validate_conn(conn)
    try:
        conn.request(
            method,
            url,
            body=body,
            headers=headers,
            chunked=chunked,
            preload_content=preload_content,
            decode_content=decode_content,
            enforce_content_length=enforce_content_length,
        )
    except BrokenPipeError:  # as urllib3: the server may have answered before it closed
        pass
    except OSError as exc:
        if exc.errno not in {errno.EPROTOTYPE, errno.ECONNRESET}:
            raise
    # (urllib3 refuses a read timeout of 0 here: the call's is positive, cut to the time left.)
    conn.timeout = read_timeout
    answer = _read_answer(pool, conn, method, url, read_timeout, limit)
    if answer is None:
        return _standard_response(pool, conn, url, read_timeout, retries, response_conn)
    _log.debug(  # urllib3's own line for each response, in its logger
        '%s://%s:%s "%s %s %s" %s %s',
        pool.scheme,
        pool.host,
        pool.port,
        method,
        url,
        getattr(conn, "_http_vsn_str", "HTTP/?"),
        answer.status,
        len(answer.body),  # the length still to read when urllib3 logs it: all of it
    )
    # What http.client's getresponse leaves on the connection after a response it read whole.
    conn._response_options = None
    conn._HTTPConnection__state = _IDLE
    conn._HTTPConnection__response = None
    if answer.close:
        conn.close()
    response = WholeResponse.__new__(WholeResponse)
    vars(response).update(
        _TEMPLATE,
        status=answer.status,
        version=11,
        version_string=getattr(conn, "_http_vsn_str", "HTTP/?"),
        reason=answer.reason,
        decode_content=decode_content,
        enforce_content_length=enforce_content_length,
        _request_url=url,
        _retries=retries,
        _fp=_SPENT,
        _fp_bytes_read=len(answer.body),
        length_remaining=0,
        _pool=pool,
        _connection=response_conn,
        wp_pairs=answer.pairs,
        wp_headers=answer.headers,
        wp_body=answer.body,
        wp_head=answer.head,
        wp_method=method,
    )
    return response


_IDLE: Final[str] = http.client._CS_IDLE  # type: ignore[attr-defined]


def _read_answer(  # noqa: PLR0917
    pool: Any, conn: Any, method: str, url: str, read_timeout: Any, limit: int
) -> _Answer | None:
    """One read of the socket: the plain answer it holds whole, else None (the bytes read are
    handed to the connection's response, which reads them first)."""
    sock = conn.sock
    if sock is None or conn.debuglevel or conn._response_options is None:
        return None  # closed (the server answered and closed), printing, or nothing sent
    try:
        if sock.gettimeout() != read_timeout:
            sock.settimeout(read_timeout)
        data = sock.recv(FIRST_READ)
    except (BaseSSLError, OSError) as exc:
        pool._raise_timeout(err=exc, url=url, timeout_value=read_timeout)
        raise
    found = plain_answer(data, method, limit)
    failure = None
    if isinstance(found, int):  # a plain head, its body still coming: the rest read here
        data, failure = _rest(sock, data, found)
        found = None if failure is not None else plain_answer(data, method, limit)
    if not isinstance(found, _Answer):
        # The standard reader reads what was received, meets the socket's failure where it
        # happened (no second wait), then reads on from the socket.
        handed[sock] = (data, failure)
        return None
    return found


def _rest(sock: Any, data: bytes, missing: int) -> tuple[bytes, BaseException | None]:
    """``data`` and the ``missing`` bytes that follow it if they are there already, or as many
    as were there (the rest is the standard reader's to wait for: the call's head is in, and
    its ``elapsed`` and first-byte time end there, as requests' do), or as many as came before
    the socket failed (and the failure) or the server closed it."""
    chunks = [data]
    while missing > 0:
        if not _received(sock):
            return b"".join(chunks), None
        try:
            more = sock.recv(min(missing, FIRST_READ))
        except (BaseSSLError, OSError) as exc:
            return b"".join(chunks), exc
        if not more:  # closed early: the standard reader finds the body cut short
            return b"".join(chunks), None
        chunks.append(more)
        missing -= len(more)
    return b"".join(chunks), None


def _standard_response(  # noqa: PLR0917
    pool: Any, conn: Any, url: str, read_timeout: Any, retries: Any, response_conn: Any
) -> HTTPResponse:
    """The rest of urllib3's ``_make_request``: its response, read from the bytes handed over
    (if any) and the socket."""
    sock = conn.sock
    try:
        response: HTTPResponse = conn.getresponse()
    except (BaseSSLError, OSError) as exc:
        pool._raise_timeout(err=exc, url=url, timeout_value=read_timeout)
        raise
    finally:
        handed.pop(sock, None)  # taken by the response; never left for another
    response.retries = retries
    response._connection = response_conn  # as urllib3 sets it
    response._pool = pool
    return response


def _received(sock: Any) -> bool:
    """Whether ``sock`` has bytes to read now (decrypted ones TLS holds, or the socket's)."""
    pending = getattr(sock, "pending", None)
    return bool(pending is not None and pending()) or wait_for_read(sock, timeout=0.0)


class _Received(io.RawIOBase):
    """A socket's reader that gives the bytes already received first, then the socket's
    failure met after them (once), if there was one, then the socket."""

    def __init__(self, received: bytes, rest: Any, failure: BaseException | None) -> None:
        super().__init__()
        self._received = received
        self._rest = rest
        self._failure = failure

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        received = self._received
        if received:
            size = min(len(buffer), len(received))
            buffer[:size] = received[:size]
            self._received = received[size:]
            return size
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        return self._rest.readinto1(buffer)  # type: ignore[no-any-return]  # one socket read at most

    def close(self) -> None:
        self._rest.close()  # (closing twice closes nothing twice)
        super().close()


def taken_over(sock: Any, fp: Any) -> Any:
    """The reader an http.client response of ``sock`` reads: ``fp``, or one that gives first
    the bytes :func:`make_request` received from ``sock``."""
    found = handed.pop(sock, None)
    if found is None:
        return fp
    received, failure = found
    return io.BufferedReader(_Received(received, fp, failure))
