"""The response a call returns: ``requests.Response``, its body capped and its errors named.

The size cap (``max_response_bytes``) is counted on the decoded body, so a gzip bomb stops
early: a declared ``Content-Length`` over the cap fails before a byte is read
(:func:`check_head`), and a body that grows past it while read fails then, streamed or not.
An error while reading the body closes the response and is the wsgi_pool error naming the
upstream (``DeadlineExceeded`` when the call's deadline cut it). A body read whole is read
in one urllib3 read (``_fast.response.read_all``) while the seams allow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import requests
from requests.cookies import RequestsCookieJar
from urllib3.response import HTTPResponse

from ._deadline import Deadline
from ._failures import DeadlineExceeded, ResponseTooLarge
from ._fast import seams
from ._fast.response import read_all
from ._stats import Counters
from ._translate import translate


class Guard:
    """What a response's body is read under: its upstream, the call's deadline, the cap, the counters."""

    __slots__ = ("deadline", "limit", "stats", "upstream")

    def __init__(
        self, upstream: str, deadline: Deadline, limit: int | None, stats: Counters
    ) -> None:
        self.upstream = upstream
        self.deadline = deadline
        self.limit = limit
        self.stats = stats


class Response(requests.Response):
    """A response whose body is capped at ``max_response_bytes`` and whose errors name the upstream."""

    from_cache: bool = False
    """Whether the worker's HTTP cache answered (as CacheControl's adapter says it)."""

    wp_guard: Guard | None = None

    @property
    def cookies(self) -> RequestsCookieJar:
        """The cookies the response set (made on first use, like requests')."""
        jar = vars(self).get("_jar")
        if jar is None:
            jar = self._jar = RequestsCookieJar()
        return jar

    @cookies.setter
    def cookies(self, value: RequestsCookieJar) -> None:
        self._jar = value

    @property
    def content(self) -> Any:
        """requests' ``content``: the whole body, read in one go when it can be."""
        if self._content is False and self.wp_guard is not None and seams.BODY.intact():
            self._read_whole(self.wp_guard)
        return super().content

    def iter_content(self, chunk_size: int | None = 1, decode_unicode: Any = False) -> Any:
        chunks = super().iter_content(chunk_size, decode_unicode)
        guard = self.wp_guard
        return chunks if guard is None else self._guarded(chunks, guard)

    def _guarded(self, chunks: Iterator[Any], guard: Guard) -> Iterator[Any]:
        received = 0
        with self._translated(guard):
            for chunk in chunks:
                received += len(chunk)
                if guard.limit is not None and received > guard.limit:
                    raise ResponseTooLarge(
                        guard.upstream, guard.limit, received, request=self.request, response=self
                    )
                yield chunk
        self._not_cut(guard)

    def _read_whole(self, guard: Guard) -> None:
        """Read the whole body now, in one read of the raw response (else as requests reads it)."""
        raw = self.raw
        if (
            self._content_consumed
            or not isinstance(raw, HTTPResponse)  # a tool's own (vcrpy's): read as requests does
            or raw.chunked  # read as requests reads it: chunk by chunk, its errors
            or self.status_code == 0
        ):
            return
        limit = guard.limit
        known = getattr(raw, "length_remaining", None)
        if (
            limit is not None
            and known is not None
            and known <= limit
            and not raw.headers.get("content-encoding")
        ):
            limit_read = None  # the body is as long as its length says, and within the limit:
            # read it in one go (urllib3 reads a capped amount in two reads and a buffer)
        else:
            limit_read = None if limit is None else limit + 1
        with self._translated(guard):
            body = read_all(raw, limit_read)
            if limit is not None and len(body) > limit:
                raise ResponseTooLarge(
                    guard.upstream, limit, len(body), request=self.request, response=self
                )
        self._not_cut(guard)
        self._content = body
        self._content_consumed = True

    def _not_cut(self, guard: Guard) -> None:
        """A body that ended because the watchdog cut it is no body: a close-delimited one
        ends at the cut as if complete."""
        if guard.deadline.expired:
            self.close()
            error = DeadlineExceeded(
                guard.upstream, guard.deadline.seconds, "reading the body", request=self.request
            )
            guard.stats.failed(error)
            raise error

    @contextlib.contextmanager
    def _translated(self, guard: Guard) -> Iterator[None]:
        """Errors while reading the body: the response closed, the error naming the upstream."""
        try:
            yield
        except ResponseTooLarge as exc:
            self.close()
            guard.stats.failed(exc)
            raise
        except requests.exceptions.RequestException as exc:
            self.close()
            error = translate(
                exc, upstream=guard.upstream, deadline=guard.deadline, where="reading the body"
            )
            guard.stats.failed(error)
            raise error from exc


def check_head(
    response: requests.Response,
    request: requests.PreparedRequest,
    guard: Guard,
) -> requests.Response:
    """``response``, its body to be read under ``guard``; ResponseTooLarge if its declared length
    is over the cap already (the connection is then dropped unread)."""
    limit = guard.limit
    declared = response.headers.get("Content-Length", "")
    if (
        limit is not None
        and not response.is_redirect  # a redirect's body is discarded, never read
        and declared.isdigit()
        and int(declared) > limit
        and "Content-Encoding" not in response.headers
        and request.method != "HEAD"
    ):
        response.close()
        raise ResponseTooLarge(guard.upstream, limit, 0, request=request, response=response)
    response.wp_guard = guard  # type: ignore[attr-defined]  # a response from a mounted mock has none
    return response
