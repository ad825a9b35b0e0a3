"""The deadline: how long a whole call may take, where its budget comes from, and who enforces it.

A read timeout bounds each read, not the call: a server that sends a byte every 200 ms keeps
a call alive forever. So each call gets a :class:`Deadline`, the sooner of

- its own (``request(..., deadline=)``, else its upstream's, else the config's),
- every enclosing :func:`deadline` block, and
- the incoming request's budget (:func:`incoming_budget`: ``X-Request-Deadline`` and the like).

Every wait of the call is capped by the time it has left (:func:`attempt_timeouts` for
connect and each read; the pool wait and the backoff read :func:`current`), and while a
connection carries the call the process's :class:`Watchdog` holds it: when the deadline
passes with the connection still in use, the watchdog shuts the socket down, the blocked
read returns at once, and the call knows it was cut (``Deadline.expired``), never mistaking
the cut for a connection the server closed.

This module imports nothing from requests or urllib3.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final, Protocol

from ._checks import seconds as check_seconds
from ._propagation import environ_keys

logger = logging.getLogger("wsgi_pool")

TICK: Final = 0.05
"""The watchdog waits at least this long between two looks: a cut comes at most this late."""


class Deadline:
    """The moment (``time.monotonic()``) one call must end by; ``seconds`` is its length."""

    __slots__ = ("at", "expired", "seconds")

    def __init__(self, seconds: float, *, at: float | None = None) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds if at is None else at
        self.expired = False
        """Set by the watchdog when it cut this call's connection."""

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def __repr__(self) -> str:
        return f"<Deadline {self.seconds:g} s, {self.remaining():.3f} s left>"


# -- the call's deadline, and the blocks around it --------------------------------------------

_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "wsgi_pool.deadline", default=None
)
_block_ends: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "wsgi_pool.block_deadline", default=None
)


# The context variable's own methods, called directly on every call's path (no Python frame).
current: Final = _current.get
"""``current()``: the deadline of the call running in this thread (or greenlet), if any."""
bind: Final = _current.set
"""``bind(deadline)``: the call running in this context has ``deadline``; a token for :func:`unbind`."""
unbind: Final = _current.reset
"""``unbind(token)``: back to the deadline before ``bind`` gave ``token``."""


def start_call(seconds: float, not_after: float | None) -> Deadline:
    """A call's deadline: ``seconds`` from now, or sooner if a block or ``not_after`` ends first."""
    block = _block_ends.get()
    if block is not None and (not_after is None or block < not_after):
        not_after = block
    now = time.monotonic()
    if not_after is not None and not_after < now + seconds:
        return Deadline(max(not_after - now, 0.0), at=not_after)
    return Deadline(seconds, at=now + seconds)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every call in the block ends within ``seconds`` of entering it (blocks nest: the sooner wins).

        with wsgi_pool.deadline(2.0):
            user = http.get(f"{USERS}/42").json()
            cart = http.get(f"{CARTS}/{user['cart']}").json()

    It only shortens: each call also keeps its own deadline and the incoming request's budget.
    """
    check_seconds("deadline", seconds)
    with until(time.monotonic() + seconds):
        yield


@contextlib.contextmanager
def until(ends: float | None) -> Iterator[None]:
    """Every call in the block ends by ``ends`` (a ``time.monotonic()`` instant), or sooner if
    an outer block ends first; ``None`` changes nothing."""
    token = enter_block(ends)
    try:
        yield
    finally:
        leave_block(token)


def enter_block(ends: float | None) -> contextvars.Token[float | None] | None:
    """Start a block whose calls end by ``ends`` (None: nothing changes); the token for
    :func:`leave_block`. The middleware holds the incoming request's budget this way while the
    app runs, so an SDK's own session is bounded too."""
    if ends is None:
        return None
    outer = _block_ends.get()
    return _block_ends.set(ends if outer is None else min(outer, ends))


def leave_block(token: contextvars.Token[float | None] | None) -> None:
    if token is not None:
        _block_ends.reset(token)


# -- the incoming budget ------------------------------------------------------------------------

MAX_BUDGET_MS: Final = 3_600_000
"""An incoming budget above an hour is ignored (as a malformed one is): it cannot shorten anything."""


def incoming_budget(environ: Mapping[str, Any], headers: tuple[str, ...]) -> float | None:
    """When the incoming request's budget ends (``time.monotonic()``), from the first valid header.

    ``headers`` names the budget headers, first match wins. A budget is whole milliseconds,
    1 to one hour, as Envoy's ``x-envoy-expected-rq-timeout-ms``, or an ISO-8601 instant with
    its time zone, at most an hour ahead, as talisker sends ``X-Request-Deadline`` (an instant
    already past leaves no time; it relies on the two hosts' clocks agreeing). Anything else
    is ignored: a budget only ever shortens the deadline of outbound calls, so a caller cannot
    lengthen them.
    """
    for key in environ_keys(headers):
        value = environ.get(key)
        if not isinstance(value, str):
            continue
        text = value.strip()
        if len(text) <= 8 and text.isascii() and text.isdigit() and 0 < int(text) <= MAX_BUDGET_MS:
            return time.monotonic() + int(text) / 1000
        left = _until_instant(text)
        if left is not None:
            return time.monotonic() + left
    return None


_INSTANT: Final = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(Z|z|[+-]\d{2}:\d{2})", re.ASCII
)


def _until_instant(text: str) -> float | None:
    """Seconds from now to the ISO-8601 instant ``text`` (at least 0), or None if it is not one
    (no time zone, not a date, more than an hour ahead)."""
    match = _INSTANT.fullmatch(text)
    if match is None:
        return None
    stamp, fraction, zone = match.groups()
    fraction = (fraction or "").ljust(6, "0")
    zone = "+00:00" if zone in {"Z", "z"} else zone
    try:
        instant = datetime.datetime.fromisoformat(f"{stamp}.{fraction}{zone}")
    except ValueError:  # a month 13, an hour 25
        return None
    left = instant.timestamp() - time.time()
    if left > MAX_BUDGET_MS / 1000:
        return None
    return max(left, 0.0)


# -- one try's timeouts -------------------------------------------------------------------------

_NEVER: Final = math.inf


def attempt_timeouts(
    connect: float, read: float, remaining: float
) -> tuple[float, float, bool, bool]:
    """One try's connect and read timeouts within the ``remaining`` seconds of the deadline,
    and whether each was cut down to the deadline (a timeout then means the deadline passed)."""
    return (
        min(connect, remaining),
        min(read, remaining),
        remaining < connect,
        remaining < read,
    )


# -- the watchdog -------------------------------------------------------------------------------


class Tracked(Protocol):
    """A connection the watchdog can cut: urllib3's, whose socket may be TLS in TLS."""

    @property
    def sock(self) -> Any: ...


class Watchdog:
    """One thread per process that cuts connections whose call outlived its deadline.

    Mutable state, all under ``_cond``: ``_armed`` (each connection carrying a call, to that
    call's deadline), ``_next`` (when the thread wakes next), ``_thread`` and ``_stopped``.
    Cutting under the lock means a deadline never cuts a connection that has meanwhile gone
    back to the pool and carries another call. Memory is proportional to the calls in flight.
    The thread survives whatever a cut raises, and a new one starts if it ever stops.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # taken directly on the calls' path (a C-level lock)
        self._cond = threading.Condition(self._lock)
        self._armed: dict[Tracked, Deadline] = {}
        self._next = _NEVER
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.cuts = 0

    def arm(self, deadline: Deadline, conn: Tracked) -> None:
        """``conn`` carries ``deadline``'s call from now until :meth:`disarm`."""
        with self._lock:
            if self._stopped:
                return
            self._armed[conn] = deadline
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="wsgi_pool deadline watchdog", daemon=True
                )
                self._thread.start()
            elif deadline.at < self._next:
                self._cond.notify()

    def disarm(self, conn: Tracked) -> None:
        """``conn`` carries no call any more (it is back in the pool, or closed)."""
        with self._lock:
            self._armed.pop(conn, None)

    def _run(self) -> None:
        try:
            with self._cond:
                while not self._stopped:
                    try:
                        self._look()
                    except Exception:  # never let one bad connection end the enforcing
                        logger.exception("wsgi_pool: the deadline watchdog failed; it goes on")
                        self._next = time.monotonic() + TICK
                    if self._next == _NEVER:
                        self._cond.wait()
                    else:
                        self._cond.wait(max(self._next - time.monotonic(), TICK))
        finally:
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None  # the next arm() starts another

    def _look(self) -> None:
        """Cut what is past its deadline; note when the next one is due. Under the lock."""
        now = time.monotonic()
        soonest = _NEVER
        failed = None
        for conn, deadline in list(self._armed.items()):
            if deadline.at <= now:
                del self._armed[conn]
                try:
                    self._cut(deadline, conn)
                except Exception as exc:  # the others are cut all the same
                    failed = exc
            elif deadline.at < soonest:
                soonest = deadline.at
        self._next = soonest
        if failed is not None:
            raise failed

    def _cut(self, deadline: Deadline, conn: Tracked) -> None:
        deadline.expired = True
        sock = os_socket(conn.sock)
        if sock is None:
            # http.client let go of it for a response that closes the connection (and reads on
            # from the socket), or it is still connecting: the socket the pools last saw.
            sock = getattr(conn, "wp_socket", None)
        if sock is None:
            return
        self.cuts += 1
        # The OS socket's own shutdown, also under TLS (and TLS in TLS): the reader blocked in
        # another thread wakes with end-of-file; the TLS objects are left alone. OSError: its
        # owner closed it meanwhile, nothing to cut.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop the thread; deadlines armed later are not enforced on the wire."""
        with self._cond:
            self._stopped = True
            self._armed.clear()
            thread, self._thread = self._thread, None
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def pending(self) -> int:
        """Connections carrying a call now (for statistics and tests)."""
        return len(self._armed)


def os_socket(sock: Any) -> socket.socket | None:
    """The OS socket under ``sock``: itself (an SSLSocket is one), or the one under urllib3's
    TLS-in-TLS transport."""
    for _ in range(4):  # a proxy's TLS inside another: at most a few layers
        if sock is None or isinstance(sock, socket.socket):
            return sock
        sock = getattr(sock, "socket", None)
    return None


_watchdog: Watchdog | None = None
_watchdog_lock = threading.Lock()


def watchdog() -> Watchdog:
    """This process's watchdog, made on first use (a forked child makes its own)."""
    global _watchdog
    found = _watchdog
    if found is None:
        with _watchdog_lock:
            found = _watchdog
            if found is None:  # pragma: no branch  (else: another thread made it meanwhile)
                found = _watchdog = Watchdog()
    return found


def close_watchdog() -> None:
    """Stop this process's watchdog (at worker exit); the next call makes a new one."""
    global _watchdog
    with _watchdog_lock:
        found, _watchdog = _watchdog, None
    if found is not None:
        found.close()


def _forget_after_fork() -> None:
    # The parent's thread does not exist here, and its lock may have been held at the fork.
    global _watchdog, _watchdog_lock
    _watchdog = None
    _watchdog_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
