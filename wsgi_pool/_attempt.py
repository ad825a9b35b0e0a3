"""What one try of a call did on the wire: written by the pool, read by the retry rules.

The call opens an :class:`Attempt` for each try and binds it for the try's duration; the pool
notes on it whether the request went out on a reused connection and whether a response
head came back. That is what decides whether a failed try may be replayed: a request that
failed on a *reused* connection before any answer most likely met a keep-alive connection
the server had just closed (and a replay of a safe request is then harmless). A replay asks
the pool for a ``fresh`` connection.

This module imports nothing from requests or urllib3.
"""

from __future__ import annotations

import contextvars


class Attempt:
    """One try: what the call asked of the pool, and what the pool saw."""

    __slots__ = ("answered", "fresh", "reused", "unread")

    def __init__(self, *, fresh: bool = False, unread: bool = False) -> None:
        self.fresh = fresh
        """Asked by the call: the try must not go out on a connection opened before it."""
        self.unread = unread
        """Said by the call: the response may be dropped with its body unread (streamed, or
        response hooks run before the body is read)."""
        self.reused: bool | None = None
        """Set by the pool: the request went out on a connection already open (None: not sent)."""
        self.answered = False
        """Set by the pool: a response head came back."""


_current: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "wsgi_pool.attempt", default=None
)


def current() -> Attempt | None:
    """The try running in this thread (or greenlet), if a call opened one."""
    return _current.get()


def bind(attempt: Attempt) -> contextvars.Token[Attempt | None]:
    return _current.set(attempt)


def unbind(token: contextvars.Token[Attempt | None]) -> None:
    _current.reset(token)
