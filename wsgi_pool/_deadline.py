"""Deadlines: how long a whole call may take, and the watchdog that enforces it on the wire.

A read timeout bounds each read, not the call: a server that sends a byte every 200 ms
keeps a call alive forever. Each call gets a :class:`Deadline`; every wait is capped by the
time it has left (pool wait, connect, each read, backoff), and while a connection carries
the call, the process's :class:`Watchdog` holds it. When the deadline passes with the
connection still checked out, the watchdog shuts the socket down: the blocked read returns
at once, and the error the caller sees is turned into ``DeadlineExceeded``.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import socket
import threading
import time
from typing import Final, Protocol

TICK: Final = 0.05
"""The watchdog wakes at most this often: a cut comes at most this late after a deadline."""


class Deadline:
    """The moment (``time.monotonic()``) one call must end by; ``seconds`` is its length."""

    __slots__ = ("at", "conn", "expired", "seconds", "watched")

    def __init__(self, seconds: float, *, at: float | None = None) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds if at is None else at
        self.expired = False
        """Set by the watchdog when it cut this call's connection."""
        self.conn: Tracked | None = None
        """The connection carrying the call now; guarded by the watchdog's lock."""
        self.watched = False

    def remaining(self) -> float:
        return self.at - time.monotonic()

    @classmethod
    def start(cls, seconds: float, *, not_after: float | None = None) -> Deadline:
        """A deadline ``seconds`` from now, or at ``not_after`` (a caller's budget) if that is sooner."""
        now = time.monotonic()
        if not_after is not None and not_after < now + seconds:
            return cls(max(not_after - now, 0.0), at=not_after)
        return cls(seconds, at=now + seconds)

    def __repr__(self) -> str:
        return f"<Deadline {self.seconds:g} s, {self.remaining():.3f} s left>"


class Tracked(Protocol):
    """A connection the watchdog can cut: urllib3's, with the deadline it carries now."""

    sock: socket.socket | None
    wp_deadline: Deadline | None


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "wsgi_pool.deadline", default=None
)


def current() -> Deadline | None:
    """The deadline of the call running in this thread (or greenlet), if any."""
    return _current.get()


def bind(deadline: Deadline | None) -> contextvars.Token[Deadline | None]:
    return _current.set(deadline)


def unbind(token: contextvars.Token[Deadline | None]) -> None:
    _current.reset(token)


class Watchdog:
    """One thread per process that cuts connections whose call outlived its deadline.

    Mutable state, all under ``_cond``: ``_heap`` (deadlines by time, each pushed once),
    ``_thread``, ``_stopped``, and the pairing of a connection with the deadline it carries
    (``conn.wp_deadline`` / ``deadline.conn``). Pairing under the lock means a deadline never
    cuts a connection that has meanwhile gone back to the pool and carries another call.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.cuts = 0

    def arm(self, deadline: Deadline, conn: Tracked) -> None:
        """``conn`` carries ``deadline``'s call from now until :meth:`disarm`."""
        with self._cond:
            if self._stopped:
                return
            previous = conn.wp_deadline
            if previous is not None:
                previous.conn = None
            conn.wp_deadline = deadline
            deadline.conn = conn
            if not deadline.watched:
                deadline.watched = True
                heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="wsgi_pool deadline watchdog", daemon=True
                    )
                    self._thread.start()
                elif self._heap[0][2] is deadline:
                    self._cond.notify()

    def disarm(self, conn: Tracked) -> None:
        """``conn`` carries no call any more (it is back in the pool, or closed)."""
        with self._cond:
            deadline = conn.wp_deadline
            if deadline is not None:
                deadline.conn = None
                conn.wp_deadline = None

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(max(wait, TICK))
                    continue
                _, _, deadline = heapq.heappop(self._heap)
                conn = deadline.conn
                if conn is not None and conn.wp_deadline is deadline:
                    self._cut(deadline, conn)

    def _cut(self, deadline: Deadline, conn: Tracked) -> None:
        # Under the lock: the connection cannot change hands between the check and the cut.
        deadline.expired = True
        sock = conn.sock
        if sock is not None:
            self.cuts += 1
            # socket.socket's own shutdown, also for an SSLSocket: the reader blocked in
            # another thread wakes with end-of-file; the TLS object is left alone. OSError:
            # its owner closed it meanwhile, nothing to cut.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop the thread; deadlines armed later are not enforced on the wire."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            thread, self._thread = self._thread, None
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def pending(self) -> int:
        """Deadlines still in the heap (for statistics and tests)."""
        return len(self._heap)
