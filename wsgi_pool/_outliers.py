"""Outlier ejection: an address that keeps failing is skipped for a while, in one process.

As Envoy's outlier detection, per address and port (what a connection reaches, whatever name
led there; never a proxy's): ``eject_after_failures`` consecutive failed connects (or, if
set, ``eject_after_5xx`` consecutive 5xx answers) eject it for ``ejection_time``, as much
again for each further ejection without a success in between, up to ``max_ejection_time``.
New connections skip an ejected address, so a name with several addresses keeps using the
healthy ones, and a kept connection to one is closed when taken. When an ejection ends, the
next connect to the address is its probe (others skip it meanwhile): a success brings it back
(for 5xx, an answer below 500), a failure ejects it again at once, for longer.

When every address of a host is ejected they are all tried (a simpler form of Envoy's panic
threshold, below which it balances over every host, ejected or not):
behind one address (a Kubernetes ClusterIP, a load balancer) a streak of failures may come
from one bad replica among many. With ``fail_fast_when_ejected`` a connect then fails at once
(:class:`Ejected`) instead, if one of them failed slowly (a timeout, or 5xx answers): a
refused connect costs nothing to try again, and a restarting server refuses for a moment.

State is per process (each gunicorn worker learns on its own), bounded in size, and changed
only under a lock; a process with no failures skips the lock entirely.
"""

from __future__ import annotations

import threading
import time
from typing import Final

MAX_TRACKED: Final = 1024
"""Addresses with failures remembered per process; past that the oldest is forgotten."""


class Ejected(Exception):
    """Every address of ``host`` is ejected. Not an OSError, so urllib3 lets it through."""

    def __init__(self, host: str, port: int, ejected: list[tuple[str, float]]) -> None:
        super().__init__(host)
        self.host = host
        self.port = port
        self.ejected = ejected
        """Each address with the seconds until it may be probed."""


class _Address:
    """One address's record. ``ejections`` counts ejections since it last worked."""

    __slots__ = ("cause", "ejections", "errors", "failures", "probing", "until")

    def __init__(self) -> None:
        self.failures = 0  # consecutive failed connects
        self.errors = 0  # consecutive 5xx answers
        self.ejections = 0
        self.until = 0.0  # while ejected (ejections > 0): when it may be probed
        self.probing = False  # a connect (or, for 5xx, a request) is probing it
        self.cause = ""  # why it is ejected: TIMEOUT, REFUSED or ANSWERS


TIMEOUT: Final = "timeout"
REFUSED: Final = "refused"
ANSWERS: Final = "5xx"


class Outliers:
    """The ejected addresses of one process's pools, and the failures that lead there.

    Mutable state: ``_addresses``, changed only under ``_lock`` (read without it only to see
    whether it is empty, or one record's fields: a stale read costs one connect).
    """

    __slots__ = ("_addresses", "_lock", "answers", "base", "fail_fast", "failures", "longest")

    def __init__(
        self,
        *,
        failures: int | None,
        answers: int | None,
        base: float,
        longest: float,
        fail_fast: bool = False,
    ) -> None:
        self.failures = failures
        self.answers = answers
        self.base = base
        self.longest = longest
        self.fail_fast = fail_fast
        self._lock = threading.Lock()
        self._addresses: dict[tuple[str, int], _Address] = {}

    def admit(self, host: str, port: int, addresses: list[str]) -> list[str]:
        """The addresses a new connection may try, in order: those not ejected, and those whose
        ejection ended (this connect is their probe). When every one is ejected: all of them
        (as Envoy does below its panic threshold), unless ``fail_fast`` and one of them failed slowly (timed
        out, or answered 5xx): then :class:`Ejected`. Refused connects cost nothing to try."""
        if not self._addresses:
            return addresses
        now = time.monotonic()
        allowed: list[str] = []
        ejected: list[tuple[str, float]] = []
        slow = False
        with self._lock:
            for address in addresses:
                found = self._addresses.get((address, port))
                if found is None or found.ejections == 0:
                    allowed.append(address)
                elif found.until <= now:
                    found.until = now + self.base  # the probe: others skip it while it runs
                    found.probing = True
                    allowed.append(address)
                else:
                    ejected.append((address, found.until - now))
                    slow = slow or found.cause != REFUSED
        if allowed:
            return allowed
        if self.fail_fast and slow:
            raise Ejected(host, port, ejected)
        return addresses

    def ejected(self, address: str | None, port: int) -> bool:
        """Whether ``address`` is ejected now: a kept connection to it is not used either."""
        if not self._addresses or address is None:
            return False
        found = self._addresses.get((address, port))
        return found is not None and found.ejections > 0 and found.until > time.monotonic()

    def connected(self, address: str, port: int) -> None:
        """A connect to ``address`` succeeded: its failed connects are forgotten, and an
        ejection for them ended (one for 5xx answers ends with an answer below 500)."""
        if not self._addresses:
            return
        with self._lock:
            found = self._addresses.get((address, port))
            if found is None:
                return
            found.failures = 0
            if found.cause != ANSWERS:
                self._forgive(found)
            self._forget(address, port, found)

    def connect_failed(self, address: str, port: int, *, timed_out: bool) -> float | None:
        """A connect to ``address`` failed (``timed_out``, or refused or unreachable at once);
        the seconds it is now ejected for, if it is."""
        if self.failures is None:
            return None
        with self._lock:
            found = self._record(address, port)
            if found.ejections and not found.probing and found.until > time.monotonic():
                return None  # a connect begun before the address was ejected: already counted
            found.failures += 1
            if found.failures < self.failures and not found.probing:
                return None
            return self._eject(found, TIMEOUT if timed_out else REFUSED)  # a streak, or a probe

    def answered(self, address: str | None, port: int, status: int) -> float | None:
        """``address`` answered ``status``; the seconds it is now ejected for, if a 5xx streak
        (or a 5xx probe) did it. None for an address not known (a tool's own connection)."""
        if self.answers is None or address is None:
            return None
        if status < 500:
            if self._addresses:
                with self._lock:
                    found = self._addresses.get((address, port))
                    if found is not None:
                        found.errors = 0
                        if found.cause == ANSWERS:
                            self._forgive(found)
                        self._forget(address, port, found)
            return None
        with self._lock:
            found = self._record(address, port)
            if found.ejections and found.cause == ANSWERS:
                if found.probing:
                    return self._eject(found, ANSWERS)  # the probe answered 5xx: longer
                return None  # answers to requests sent before the ejection
            found.errors += 1
            if found.errors < self.answers:
                return None
            return self._eject(found, ANSWERS)

    def _record(self, address: str, port: int) -> _Address:
        key = (address, port)
        found = self._addresses.get(key)
        if found is None:
            if len(self._addresses) >= MAX_TRACKED:
                del self._addresses[next(iter(self._addresses))]
            found = self._addresses[key] = _Address()
        return found

    def _forgive(self, found: _Address) -> None:
        found.ejections = 0
        found.probing = False
        found.cause = ""

    def _forget(self, address: str, port: int, found: _Address) -> None:
        if found.ejections == 0 and found.failures == 0 and found.errors == 0:
            del self._addresses[(address, port)]

    def _eject(self, found: _Address, cause: str) -> float:
        found.ejections += 1
        found.failures = found.errors = 0
        found.probing = False
        found.cause = cause
        seconds = min(self.base * found.ejections, self.longest)
        found.until = time.monotonic() + seconds
        return seconds
