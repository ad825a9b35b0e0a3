"""What one try of a call did on the wire: written by the pool, read by the retry rules.

The call opens an :class:`Attempt` for each try and binds it for the try's duration; the pool
notes on it whether the request went out on a reused connection and whether a response
head came back. That is what decides whether a failed try may be replayed: a request that
failed on a *reused* connection before any answer most likely met a keep-alive connection
the server had just closed (and a replay of a safe request is then harmless). A replay asks
the pool for a ``fresh`` connection. The pool and the connection also note how long each
phase took (:class:`Timings`), which the call hands its caller with the response.

This module imports nothing from requests or urllib3.
"""

from __future__ import annotations

import contextvars
from typing import Final, NamedTuple


class Timings(NamedTuple):
    """Where one call's time went, as ``response.timings`` (its last try's phases): what Go's
    ``httptrace`` and OkHttp's ``EventListener`` tell. Seconds; None for a phase that did not
    happen (no wait, a reused connection, plain http). A named tuple: made on every call, it
    costs little."""

    waited: float | None
    """Waiting for a free pooled connection."""
    connect: float | None
    """Opening the TCP connection (every address tried)."""
    tls: float | None
    """The TLS handshake."""
    first_byte: float | None
    """From sending the request to the response's head."""
    reused: bool
    """The request went out on a connection already open."""
    tries: int
    """Tries the call made (retries and a replay included)."""


def timings(response: object) -> Timings | None:
    """Where the call that returned ``response`` spent its time; None for a response that did
    not come through the pools (a mock's, the HTTP cache's). Also ``response.timings``."""
    found = getattr(response, "timings", None)
    return found if isinstance(found, Timings) else None


class Attempt:
    """One try: what the call asked of the pool, and what the pool saw."""

    __slots__ = (
        "answered",
        "connect",
        "first_byte",
        "fresh",
        "reused",
        "tls",
        "unread",
        "waited",
        "whole",
    )

    def __init__(self, *, fresh: bool = False, unread: bool = False, whole: int = 0) -> None:
        self.fresh = fresh
        """Asked by the call: the try must not go out on a connection opened before it."""
        self.unread = unread
        """Said by the call: the response may be dropped with its body unread (streamed, or
        response hooks run before the body is read)."""
        self.whole = whole
        """Said by the call: the longest body the pool may read with the head, at once (0: none)."""
        self.reused: bool | None = None
        """Set by the pool: the request went out on a connection already open (None: not sent)."""
        self.answered = False
        """Set by the pool: a response head came back."""
        self.waited: float | None = None
        self.connect: float | None = None
        self.tls: float | None = None
        self.first_byte: float | None = None
        """Set by the pool and the connection: each phase's seconds (see :class:`Timings`)."""

    def timings(self, tries: int) -> Timings:
        """This try's phases, the call's ``tries`` with them."""
        return Timings(
            waited=self.waited,
            connect=self.connect,
            tls=self.tls,
            first_byte=self.first_byte,
            reused=bool(self.reused),
            tries=tries,
        )


_current: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "wsgi_pool.attempt", default=None
)


# The context variable's own methods, called directly on every call's path (no Python frame).
current: Final = _current.get
"""``current()``: the try running in this thread (or greenlet), if a call opened one."""
bind: Final = _current.set
"""``bind(attempt)``: ``attempt`` runs in this context; the token for :func:`unbind`."""
unbind: Final = _current.reset
"""``unbind(token)``: the try bound with ``token`` is over."""
