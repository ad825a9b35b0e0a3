"""Retries and replay: what a call may send again, when, and how often.

One :class:`Retries` per call, a small state machine over its tries. Each try ends one way:

- **an answer** whose status is in ``retry_statuses`` (but not one an overloaded Envoy made):
  sent again after ``Retry-After`` or a backoff, if the request may be sent twice (:func:`replay_safe`: an idempotent method or an
  ``Idempotency-Key``) and its body can be sent again;
- **no connection** (refused, unreachable, a connect timeout): nothing was sent, so any
  method is tried again, after a backoff;
- **a reused connection that failed before any answer** (reset, broken pipe, closed without
  a response: the server closed a keep-alive connection as we sent): sent once more, at once,
  on a fresh connection, if it may be sent twice, and never when the deadline cut it;
- anything else: the failure stands.

Every retry must fit the call's count (``retries``), its deadline (a delay that ends past it
is not taken) and the upstream's :class:`RetryBudget`; a replay fits the deadline only.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

import requests
from urllib3.exceptions import InvalidHeader
from urllib3.util import Retry

from ._attempt import Attempt
from ._deadline import Deadline
from ._fast.headers import STORED
from ._translate import stale

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods that may be sent twice (RFC 9110, 9.2.2); others need an ``Idempotency-Key`` header."""

OVERLOADED: Final = "x-envoy-overloaded"
"""The header an Envoy sets on an answer it made because it is overloaded: never retried."""

RETRY_BUDGET_WINDOW: Final = 10
"""Seconds of traffic a retry budget looks back on."""


def replay_safe(method: str, headers: Mapping[str, Any] | None) -> bool:
    """Whether a request may be sent twice: an idempotent method, or an ``Idempotency-Key``."""
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    if type(headers) in STORED:  # requests' own headers: looked up, not walked
        return "idempotency-key" in headers._store  # type: ignore[union-attr]
    return any(name.lower() == "idempotency-key" for name in headers or ())


def resendable(body: Any) -> bool:
    """Whether a request body can be sent again as it was (bytes or text, not a stream)."""
    return body is None or isinstance(body, bytes | str)


class RetryBudget:
    """Retries one upstream may get: a share of its recent requests, plus a floor per second.

    As in Finagle and Envoy: with an upstream failing every call, retries add at most
    ``ratio`` to the traffic it sees, instead of multiplying it by ``retries + 1``.

    Mutable state: ``_slots`` (per second of the window: ``[second, requests, retries]``),
    changed only under ``_lock``.
    """

    __slots__ = ("_lock", "_slots", "floor", "ratio")

    def __init__(self, ratio: float, per_second: float) -> None:
        self.ratio = ratio
        self.floor = per_second * RETRY_BUDGET_WINDOW
        self._lock = threading.Lock()
        self._slots = [[-1, 0, 0] for _ in range(RETRY_BUDGET_WINDOW)]

    def _slot(self, now: int) -> list[int]:
        slot = self._slots[now % RETRY_BUDGET_WINDOW]
        if slot[0] != now:
            slot[:] = [now, 0, 0]
        return slot

    def record_request(self) -> None:
        with self._lock:
            self._slot(int(time.monotonic()))[1] += 1

    def try_retry(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        with self._lock:
            now = int(time.monotonic())
            live = [slot for slot in self._slots if slot[0] > now - RETRY_BUDGET_WINDOW]
            requests_seen = sum(slot[1] for slot in live)
            retries_made = sum(slot[2] for slot in live)
            if retries_made + 1 > self.floor + self.ratio * requests_seen:
                return False
            self._slot(now)[2] += 1
            return True


_RETRY_AFTER: Final = Retry(respect_retry_after_header=True)


def retry_after(response: requests.Response) -> float | None:
    """Seconds the upstream asks us to wait (``Retry-After``: seconds or a date); None if it does not say."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(_RETRY_AFTER.parse_retry_after(value), 0.0)
    except InvalidHeader:
        return None


class Retries:
    """One call's retries and its replay, as the tries go.

    Mutable state (one call, one thread): ``left``, ``made`` and ``replayed``.
    """

    __slots__ = ("backoff_factor", "backoff_max", "left", "made", "replayed", "safe", "statuses")

    def __init__(
        self,
        retries: int,
        *,
        safe: bool,
        statuses: frozenset[int],
        backoff_factor: float,
        backoff_max: float,
    ) -> None:
        self.left = retries
        self.made = 0
        self.replayed = False
        self.safe = safe
        """The request may be sent twice: a safe method (or a key) and a body that can be resent."""
        self.statuses = statuses
        self.backoff_factor = backoff_factor
        self.backoff_max = backoff_max

    @classmethod
    def for_request(
        cls,
        request: requests.PreparedRequest,
        retries: int,
        *,
        statuses: frozenset[int],
        backoff_factor: float,
        backoff_max: float,
    ) -> Retries:
        safe = replay_safe(request.method or "GET", request.headers) and resendable(request.body)
        return cls(
            retries,
            safe=safe,
            statuses=statuses,
            backoff_factor=backoff_factor,
            backoff_max=backoff_max,
        )

    def may_replay(self, failure: BaseException, attempt: Attempt, deadline: Deadline) -> bool:
        """Whether a failed try is a stale keep-alive connection worth one replay, now.

        Only a request that may be sent twice, that failed on a reused connection before any
        answer, with the peer closing it, not cut by the deadline and with time left; once.
        """
        if (
            self.replayed
            or not self.safe
            or not attempt.reused
            or attempt.answered
            or deadline.expired
            or deadline.remaining() <= 0
            or not stale(failure)
        ):
            return False
        self.replayed = True
        return True

    def wants_status_retry(self, response: requests.Response) -> bool:
        """Whether an answer's status asks for a retry, and the request may be sent again.

        Never an answer an Envoy marked ``x-envoy-overloaded``: the mesh shed it, and a retry
        would add to the load it sheds."""
        return (
            self.safe
            and response.status_code in self.statuses
            and OVERLOADED not in response.headers
        )

    def delay(self, response: requests.Response) -> float:
        """How long to wait before retrying an answer: its ``Retry-After``, else a backoff."""
        asked = retry_after(response)
        return self.backoff() if asked is None else asked

    def backoff(self) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        ceiling = min(self.backoff_max, self.backoff_factor * 2.0**self.made)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311  (jitter, not security)

    def fits(self, delay: float, deadline: Deadline) -> bool:
        """Whether another retry after ``delay`` fits the count and the deadline (not the budget)."""
        return self.left > 0 and delay < deadline.remaining()

    def took(self) -> None:
        """A retry is being made."""
        self.left -= 1
        self.made += 1
