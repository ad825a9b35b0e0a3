"""The pools' connections and the response they read: connect under the policies, one answer per request.

urllib3's connections with three things added:

- **connecting** (:meth:`Pooled._new_conn`): the host is resolved once and each address is
  judged by the egress policy before anything connects to it; the allowed addresses are
  tried in turn, each within a share of the time the call has left (as Go's dialer shares a
  deadline among a name's addresses), so a name with several dead addresses fails over
  within the deadline rather than costing a connect timeout each;
- **one answer per request** (:class:`Response`): informational answers (``1xx`` but ``101``,
  such as ``103 Early Hints``) are read past, never returned in place of the final one; and
  a head whose framing is in doubt (``101``, a ``Transfer-Encoding`` with a
  ``Content-Length``, or one that does not end in ``chunked``, a ``204`` with a
  ``Content-Length``, a length that is not digits) closes the connection after the response
  instead of keeping it;
- the fast path's request writer and head reader (``_fast.request``, ``_fast.head``), each
  taken only while the seams it skips are intact.

Every connection a process's pools made is known (weakly), so that a forked child can
close its copies of their sockets (:func:`release_copies`) without touching the parent's.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import math
import os
import socket
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from . import _attempt, _deadline
from ._deadline import os_socket
from ._egress import EgressPolicy
from ._fast import seams, whole
from ._fast.head import FastHead
from ._fast.request import OneSend
from ._outliers import Outliers
from ._stats import Counters

logger = logging.getLogger("wsgi_pool")

if TYPE_CHECKING:
    _Base = HTTPConnection  # what the mixin below is mixed into
else:
    _Base = object

SHARE_FLOOR: Final = 0.25
"""Seconds each address of a name gets at least (unless the deadline leaves less): long enough
for a handshake across a continent, short enough that a one-second deadline tries four."""

_read_headers: Callable[[Any], object] = getattr(
    http.client, "_read_headers", http.client.parse_headers
)


class Response(FastHead):
    """http.client's response for the pools' connections: the final answer, and its framing checked."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        if whole.handed:  # bytes already received from this socket are read first
            self.fp = whole.taken_over(sock, self.fp)

    def begin(self) -> None:
        if seams.HEAD.intact():
            FastHead.begin(self)
        else:
            http.client.HTTPResponse.begin(self)
        if self.status == http.client.SWITCHING_PROTOCOLS or self._framing_in_doubt():
            self.will_close = True

    def _read_status(self) -> tuple[str, int, str]:
        """The status line of the final answer: informational ones (1xx but 101) are read past."""
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]  # untyped
            if not 100 <= status < 200 or status == http.client.SWITCHING_PROTOCOLS:
                return version, status, reason
            _read_headers(self.fp)  # the interim answer's head, dropped

    def _framing_in_doubt(self) -> bool:
        """RFC 9112, 6.3: a Transfer-Encoding wins over a Content-Length (both: a request
        smuggler's favourite, the connection is not reused), and one that does not end in
        chunked is read until the connection closes."""
        encoding = self.msg.get("transfer-encoding")
        length = self.msg.get("content-length")
        if encoding is not None:
            if encoding.rpartition(",")[2].strip().lower() != "chunked":
                this: Any = self
                this.length = None
                return True
            return length is not None
        if length is None:
            return False
        if self.status == http.client.NO_CONTENT:
            return True  # RFC 9110, 8.6: never on a 204; a body after it would be the next answer
        # Digits only: "+4" or "4x" are no length, whatever int() makes of them.
        return not all(part.strip().isdigit() for part in length.split(","))


class Refused(Exception):
    """The egress policy refused every address of a host. Not an OSError, so urllib3 lets it through."""

    def __init__(self, host: str, refused: list[tuple[str, str]]) -> None:
        super().__init__(host)
        self.host = host
        self.refused = refused


class Pooled(_Base):
    """What the pools keep on a connection, and its connect under the egress policy and deadline."""

    wp_idle_since: float = 0.0
    wp_sent: bool = False  # a request went out on it since it was taken from the pool
    wp_kept: bool = False  # it was open when taken from the pool
    wp_out: bool = False  # it holds one of the upstream's slots (taken from the pool, not yet back)
    wp_lease: int = 0  # how many times it was taken from the pool (a dropped response names one)
    wp_socket: socket.socket | None = None  # the OS socket it carries, for the watchdog to cut
    wp_unread: bool = False  # its response may be dropped with the body unread (see _pool)
    wp_address: str | None = None  # the address its socket reached, if not a proxy's
    wp_retire_at: float = math.inf  # when it is too old to be kept (max_connection_age)
    wp_opened_at: float = 0.0  # when its socket connected (0: not open)
    wp_requests: int = 0  # requests sent on its socket
    wp_idle_limit: float = math.inf  # the server's keep-alive hint, less a margin
    wp_stats: Counters  # its upstream's counters (set by the pool that makes it)
    # Set per process by connection_classes, as are the two below.
    egress: EgressPolicy | None = None
    outliers: Outliers | None = None
    made: weakref.WeakSet[Any]
    response_class = Response

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.made.add(self)

    def _new_conn(self) -> socket.socket:
        started = time.monotonic()
        try:
            return self._open()
        finally:
            attempt = _attempt.current()
            if attempt is not None:
                attempt.connect = time.monotonic() - started

    def _open(self) -> socket.socket:
        conn: Any = self  # urllib3's own attributes
        host = conn._dns_host
        addresses = self._addresses(host)
        # A proxy's address is not the upstream's: its failures are the proxy's to report.
        outliers = None if getattr(self, "proxy", None) is not None else self.outliers
        if outliers is not None:
            addresses = outliers.admit(host, self.port, addresses)
        *earlier, last = addresses
        timeout = self.timeout
        try:
            for index, address in enumerate(earlier):
                # An address before the last gets a share of what the deadline leaves.
                conn._dns_host = address
                self.timeout = _share(timeout, len(earlier) + 1 - index)
                try:
                    sock: socket.socket = super()._new_conn()
                except (ConnectTimeoutError, NewConnectionError) as exc:
                    self._failed(outliers, address, exc, timeout)
                    if _spent():
                        raise
                    continue
                sock.settimeout(timeout)
                return self._connected(outliers, sock, address)
            conn._dns_host = last
            # The last address: all the deadline leaves (the earlier ones took their shares).
            self.timeout = _share(timeout, 1) if earlier else timeout
            try:
                sock = super()._new_conn()
            except (ConnectTimeoutError, NewConnectionError) as exc:
                self._failed(outliers, last, exc, timeout)
                raise
            return self._connected(outliers, sock, last)
        finally:
            conn._dns_host = host
            self.timeout = timeout

    def _connected(
        self, outliers: Outliers | None, sock: socket.socket, address: str
    ) -> socket.socket:
        self.wp_socket = sock
        self.wp_opened_at = time.monotonic()
        if outliers is not None:
            outliers.connected(address, self.port)
            self.wp_address = address  # its answers are counted against it (eject_after_5xx)
        return sock

    def _failed(self, outliers: Outliers | None, address: str, error: Exception, full: Any) -> None:
        """A connect to ``address`` failed: counted against it unless the deadline cut it short
        (it has passed, or left this address less than ``full``, the try's connect timeout,
        and less than :data:`SHARE_FLOOR`)."""
        # urllib3's NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError.
        timed_out = not isinstance(error, NewConnectionError)
        given = self.timeout
        if (
            outliers is None
            or _spent()
            or (
                timed_out
                and isinstance(given, int | float)
                and isinstance(full, int | float)
                and given < min(full, SHARE_FLOOR)
            )
        ):
            return
        ejected = outliers.connect_failed(address, self.port, timed_out=timed_out)
        if ejected is not None:
            self.ejected(address, ejected, "timed-out connects" if timed_out else "failed connects")

    def ejected(self, address: str, seconds: float, why: str) -> None:
        """``address`` was ejected for ``seconds``: counted and logged."""
        self.wp_stats.add("ejections")
        logger.warning(
            "%s:%s ejected for %g s after %s (host %s): new connections skip it",
            address,
            self.port,
            seconds,
            why,
            self.host,
        )

    def close(self) -> None:
        """Closed: how long it was open goes to its upstream's statistics (the connection's
        lifetime metric)."""
        opened, self.wp_opened_at = self.wp_opened_at, 0.0
        super().close()
        stats = getattr(self, "wp_stats", None)
        if opened and stats is not None:
            stats.closed(time.monotonic() - opened)

    def connect(self) -> None:
        started = time.monotonic()
        super().connect()
        attempt = _attempt.current()
        if attempt is not None and isinstance(self, HTTPSConnection):
            attempt.tls = max(time.monotonic() - started - (attempt.connect or 0.0), 0.0)
        # TLS made a new socket object of the one _new_conn returned: the watchdog's is this.
        self.wp_socket = os_socket(self.sock)

    def _addresses(self, host: str) -> list[str]:
        """The addresses to try for ``host``, in the resolver's order, those the policy refuses left out."""
        try:
            found = socket.getaddrinfo(
                host.strip("[]"), self.port, allowed_gai_family(), socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        allowed: list[str] = []
        refused: list[tuple[str, str]] = []
        for *_, sockaddr in found:
            address = str(sockaddr[0])
            why = None if self.egress is None else self.egress.refuses(address)
            if why is not None:
                refused.append((address, why))
            elif address not in allowed:
                allowed.append(address)
        if not allowed:
            raise Refused(self.host, refused)
        return allowed


def _share(timeout: Any, left: int) -> float | None:
    """One address's connect timeout: at most ``timeout``, and a fair share of the deadline's rest."""
    deadline = _deadline.current()
    if deadline is None:
        return timeout  # type: ignore[no-any-return]
    remaining = max(deadline.remaining(), 0.0)
    share = max(remaining / left, min(SHARE_FLOOR, remaining))
    return share if timeout is None else min(timeout, share)


def _spent() -> bool:
    deadline = _deadline.current()
    return deadline is not None and deadline.at <= time.monotonic()


class Connection(Pooled, OneSend, HTTPConnection):
    pass


class TLSConnection(Pooled, OneSend, HTTPSConnection):
    pass


def connection_classes(
    egress: EgressPolicy | None, made: weakref.WeakSet[Any], outliers: Outliers | None = None
) -> tuple[type[Connection], type[TLSConnection]]:
    """The connection classes of one process's pools, bound to its egress policy and ejected
    addresses; each connection they make is added to ``made``."""
    settings = {"egress": egress, "made": made, "outliers": outliers}
    plain = type("HTTPConnection", (Connection,), settings)
    tls = type("HTTPSConnection", (TLSConnection,), settings)
    return plain, tls


def release_copies(made: weakref.WeakSet[Any]) -> int:
    """In a forked child: close the child's copies of these connections' sockets; how many.

    Only this process's descriptor is closed (detached from its socket object first, so
    nothing closes it twice): the connection stays open for the parent, which still holds
    its own, and no TLS close or shutdown reaches the upstream.
    """
    released = 0
    for conn in list(made):
        # A response that closes its connection holds the socket http.client let go of.
        sock = os_socket(getattr(conn, "sock", None)) or getattr(conn, "wp_socket", None)
        if sock is None or sock.fileno() == -1:
            continue
        with contextlib.suppress(OSError):
            os.close(sock.detach())
            released += 1
    return released
