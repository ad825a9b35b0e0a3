"""The incoming request's id and W3C trace context: validated strictly, then passed on as they are.

Only a value that passes its grammar is ever forwarded; anything else (too long, control
characters, non-ASCII, a malformed ``traceparent``) is replaced by a fresh value and logged,
never escaped or trimmed into something forwardable. A request with no id gets a fresh one.
Which upstreams get these headers is the config's ``propagate`` (default: none).

- ``X-Request-ID`` (the name is configurable): 1 to 128 characters of ``A-Z a-z 0-9 . _ : + / = @ -``.
- ``traceparent`` (W3C Trace Context level 1): ``00-<32 hex>-<16 hex>-<2 hex>``, lower case,
  ids not all zero; a later version is read as version 00 and sent on as one.
- ``tracestate``: at most 32 ``key=value`` members, 512 characters, each key and value as the
  W3C grammar says; sent only with the ``traceparent`` it came with.

When the caller (or OpenTelemetry's instrumentation of requests) already set ``traceparent``
on a call, neither trace header is touched: one trace context per call, never two.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import random
import re
import threading
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger("wsgi_pool")

MAX_HEADER: Final = 512
"""Longest ``traceparent`` read (a later version may add fields) and longest ``tracestate`` kept."""
MAX_TRACESTATE_MEMBERS: Final = 32

_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:+/=@-]{1,128}")
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_TRACESTATE_KEY: Final = re.compile(
    r"[a-z][a-z0-9_*/-]{0,255}|[a-z0-9][a-z0-9_*/-]{0,240}@[a-z][a-z0-9_*/-]{0,13}"
)
_TRACESTATE_VALUE: Final = re.compile(
    r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_ZERO_TRACE: Final = "0" * 32
_ZERO_PARENT: Final = "0" * 16


class Propagation:
    """What one incoming request passes on to the upstreams allowed to see it. Immutable.

    The request id is read when the request arrives. The trace context is read (or made)
    when a call first needs it, so a request that calls no upstream allowed to see it pays
    nothing for it; a rejected one is logged then.
    """

    __slots__ = ("_raw", "_trace", "request_id")

    def __init__(self, request_id: str, traceparent: str, tracestate: str | None = None) -> None:
        self.request_id = request_id
        self._trace: tuple[str, str | None] | None = (traceparent, tracestate)
        self._raw: tuple[object, object] = (None, None)

    @property
    def traceparent(self) -> str:
        """The incoming ``traceparent`` if valid, else a fresh one (the same for every call)."""
        return self._context()[0]

    @property
    def tracestate(self) -> str | None:
        """The incoming ``tracestate``, if valid and it came with a valid ``traceparent``."""
        return self._context()[1]

    def _context(self) -> tuple[str, str | None]:
        trace = self._trace
        if trace is None:
            with _first_use:  # every call of the request sends the same context
                trace = self._trace
                if trace is None:  # pragma: no branch  (another thread got there first)
                    trace = self._trace = _trace_context(*self._raw, self.request_id)
        return trace

    def apply(self, headers: MutableMapping[str, Any], request_id_header: str) -> None:
        """Add these headers to an outbound call's, keeping any the caller set itself."""
        if request_id_header not in headers:
            headers[request_id_header] = self.request_id
        if "traceparent" not in headers:
            traceparent, tracestate = self._context()
            headers["traceparent"] = traceparent
            if tracestate is not None:
                headers["tracestate"] = tracestate

    def __repr__(self) -> str:
        return f"<Propagation request_id={self.request_id!r} traceparent={self.traceparent!r}>"


_first_use: Final = threading.Lock()


def new_request_id() -> str:
    """A fresh request id: 128 random bits in hex (as a uuid4's hex, without its cost)."""
    return f"{_random_bits(128):032x}"


def new_traceparent() -> str:
    """A fresh, sampled-off ``traceparent`` with random (never all-zero) trace and parent ids."""
    return f"00-{_random_bits(128):032x}-{_random_bits(64):016x}-00"


def _random_bits(bits: int) -> int:
    # Ids, not secrets: unique, never all zero, as OpenTelemetry's own id generator makes them.
    # random reseeds itself in every forked child, so workers never repeat each other.
    return random.getrandbits(bits) or 1


def from_environ(environ: WSGIEnvironment, request_id_header: str) -> Propagation:
    """The validated id of an incoming request (a fresh one where needed), and its trace headers."""
    return from_key(environ, environ_key(request_id_header), request_id_header)


def from_key(environ: WSGIEnvironment, key: str, request_id_header: str) -> Propagation:
    """:func:`from_environ`, the id read under ``key``: ``environ_key(request_id_header)``."""
    raw_id = environ.get(key)
    request_id = check_request_id(raw_id)
    if request_id is None:
        request_id = new_request_id()
        if raw_id is not None:
            _rejected(request_id_header, raw_id, request_id)
    # The request id, and the incoming trace headers as they came (checked on first use).
    made = Propagation.__new__(Propagation)
    made.request_id = request_id
    made._trace = None
    made._raw = (environ.get("HTTP_TRACEPARENT"), environ.get("HTTP_TRACESTATE"))
    return made


def _trace_context(
    raw_parent: object, raw_state: object, request_id: str
) -> tuple[str, str | None]:
    """The valid incoming trace context, else a fresh ``traceparent``; a rejected header is logged."""
    traceparent = check_traceparent(raw_parent)
    if traceparent is None:
        if raw_parent is not None:
            _rejected("traceparent", raw_parent, request_id)
        return new_traceparent(), None
    tracestate = check_tracestate(raw_state)
    if tracestate is None and raw_state is not None:
        _rejected("tracestate", raw_state, request_id)
    return traceparent, tracestate


@functools.lru_cache(maxsize=64)
def environ_key(header: str) -> str:
    """The WSGI environ key of an incoming request header: ``X-Request-ID`` -> ``HTTP_X_REQUEST_ID``."""
    return "HTTP_" + header.upper().replace("-", "_")


@functools.lru_cache(maxsize=64)
def environ_keys(headers: tuple[str, ...]) -> tuple[str, ...]:
    """:func:`environ_key` of each header, worked out once per tuple of headers."""
    return tuple(environ_key(header) for header in headers)


def _rejected(header: str, value: object, request_id: str) -> None:
    shown = ascii(value[:64] if isinstance(value, str) else value)
    logger.warning(
        "request_id=%s: incoming %s header rejected (%s); not forwarded",
        request_id,
        header,
        f"{len(value)} characters, starting {shown}" if isinstance(value, str) else shown,
    )


def check_request_id(value: object) -> str | None:
    """``value`` if it is a valid request id, else None."""
    if isinstance(value, str) and _REQUEST_ID.fullmatch(value):
        return value
    return None


def check_traceparent(value: object) -> str | None:
    """``value`` as a version-00 ``traceparent`` if it is a valid one, else None."""
    if not isinstance(value, str) or len(value) > MAX_HEADER:
        return None
    text = value.strip(" \t")
    found = _TRACEPARENT.match(text)
    if found is None:
        return None
    version, trace_id, parent_id, flags = found.groups()
    rest = text[found.end() :]
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if rest and (version == "00" or not rest.startswith("-")):
        return None
    return f"00-{trace_id}-{parent_id}-{flags}"


def check_tracestate(value: object) -> str | None:
    """``value`` normalised (members trimmed, empty ones dropped) if it is a valid ``tracestate``."""
    if not isinstance(value, str) or len(value) > MAX_HEADER:
        return None
    members = [member.strip(" \t") for member in value.split(",")]
    members = [member for member in members if member]
    if not members or len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    keys = set()
    for member in members:
        key, sep, state = member.partition("=")
        if not sep or not _TRACESTATE_KEY.fullmatch(key) or not _TRACESTATE_VALUE.fullmatch(state):
            return None
        if key in keys:
            return None
        keys.add(key)
    return ",".join(members)


# -- the request being served ---------------------------------------------------------------------

_serving: contextvars.ContextVar[Propagation | None] = contextvars.ContextVar(
    "wsgi_pool.incoming", default=None
)


# The context variable's own methods, called directly on every call's path (no Python frame).
current: Final = _serving.get
"""``current()``: the incoming request's, while its app runs in this thread (or greenlet), or
a request-scoped client sends: what the call passes on (an SDK's session and
``wsgi_pool.client()`` too)."""
serve: Final = _serving.set
"""``serve(propagation)``: :func:`current` is ``propagation`` until :func:`stop_serving` with
the token returned."""
stop_serving: Final = _serving.reset
