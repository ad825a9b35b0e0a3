"""Outlier ejection: an address that keeps failing is skipped for a while, in one process.

As Envoy's outlier detection, per address and port (what a connection reaches, whatever name
led there): ``eject_after_failures`` consecutive failed connects (or, if set,
``eject_after_5xx`` consecutive 5xx answers) eject it for ``ejection_time``, as much again
for each further ejection without a success in between, up to ``max_ejection_time``. New
connections skip an ejected address, so a name with several addresses keeps using the
healthy ones. When an ejection ends, the next connect to the address is its probe (others
skip it meanwhile): a success brings it back, a failure ejects it again at once, for longer.
When every address of a host is ejected, a connect fails at once (:class:`Ejected`) instead
of costing its timeout against a dead host. A kept connection to an ejected address is closed
when taken, not used.

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
    """One address's record. ``ejections`` counts ejections since its last success."""

    __slots__ = ("ejections", "errors", "failures", "probing", "until")

    def __init__(self) -> None:
        self.failures = 0  # consecutive failed connects
        self.errors = 0  # consecutive 5xx answers
        self.ejections = 0
        self.until = 0.0  # while ejected (ejections > 0): when it may be probed
        self.probing = False  # a connect is probing it


class Outliers:
    """The ejected addresses of one process's pools, and the failures that lead there.

    Mutable state: ``_addresses``, changed only under ``_lock`` (read without it only to see
    whether it is empty).
    """

    __slots__ = ("_addresses", "_lock", "answers", "base", "failures", "longest")

    def __init__(
        self, *, failures: int | None, answers: int | None, base: float, longest: float
    ) -> None:
        self.failures = failures
        self.answers = answers
        self.base = base
        self.longest = longest
        self._lock = threading.Lock()
        self._addresses: dict[tuple[str, int], _Address] = {}

    def admit(self, host: str, port: int, addresses: list[str]) -> list[str]:
        """The addresses a new connection may try, in order: those not ejected, and those whose
        ejection ended (this connect is their probe). Raises :class:`Ejected` if none."""
        if not self._addresses:
            return addresses
        now = time.monotonic()
        allowed: list[str] = []
        ejected: list[tuple[str, float]] = []
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
        if not allowed:
            raise Ejected(host, port, ejected)
        return allowed

    def ejected(self, address: str | None, port: int) -> bool:
        """Whether ``address`` is ejected now: a kept connection to it is not used either."""
        if not self._addresses or address is None:
            return False
        found = self._addresses.get((address, port))
        return found is not None and found.ejections > 0 and found.until > time.monotonic()

    def connected(self, address: str, port: int) -> None:
        """A connect to ``address`` succeeded: its failures are forgotten, an ejection ended."""
        if not self._addresses:
            return
        with self._lock:
            found = self._addresses.get((address, port))
            if found is not None:
                found.failures = found.ejections = 0
                found.probing = False
                if found.errors == 0:
                    del self._addresses[(address, port)]

    def connect_failed(self, address: str, port: int) -> float | None:
        """A connect to ``address`` failed; the seconds it is now ejected for, if it is."""
        if self.failures is None:
            return None
        with self._lock:
            found = self._record(address, port)
            if found.ejections and not found.probing and found.until > time.monotonic():
                return None  # a connect begun before the address was ejected: already counted
            found.failures += 1
            if found.failures < self.failures and found.ejections == 0:
                return None
            return self._eject(found)  # the streak, or a probe that failed

    def answered(self, address: str | None, port: int, status: int) -> float | None:
        """``address`` answered ``status``; the seconds it is now ejected for, if a 5xx streak
        did it. None for an address not known (a tool's own connection)."""
        if self.answers is None or address is None:
            return None
        if status < 500:
            if self._addresses:
                with self._lock:
                    found = self._addresses.get((address, port))
                    if found is not None:
                        found.errors = 0
            return None
        with self._lock:
            found = self._record(address, port)
            found.errors += 1
            if found.errors < self.answers:
                return None
            return self._eject(found)

    def _record(self, address: str, port: int) -> _Address:
        key = (address, port)
        found = self._addresses.get(key)
        if found is None:
            if len(self._addresses) >= MAX_TRACKED:
                del self._addresses[next(iter(self._addresses))]
            found = self._addresses[key] = _Address()
        return found

    def _eject(self, found: _Address) -> float:
        found.ejections += 1
        found.failures = found.errors = 0
        found.probing = False
        seconds = min(self.base * found.ejections, self.longest)
        found.until = time.monotonic() + seconds
        return seconds
