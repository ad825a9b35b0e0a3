"""A broken response fails its call with a named error, and the pool stays intact."""

from __future__ import annotations

import socket

import pytest
import requests
from urllib3 import HTTPConnectionPool
from urllib3.connection import HTTPConnection
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from tests.faults import Script
from tests.harness import (
    Harness,
    bad_chunk_size,
    conflicting_length,
    garbage_status,
    header_flood,
    partial_then_close,
    reset_mid_body,
)
from wsgi_pool import (
    UpstreamConnectionError,
    UpstreamHeaderError,
    UpstreamProtocolError,
    UpstreamReset,
    UpstreamUnreachable,
)
from wsgi_pool._deadline import Deadline
from wsgi_pool._translate import translate


def test_partial_body_then_close(harness: Harness) -> None:
    """Fewer bytes than Content-Length, then FIN: UpstreamReset (a ChunkedEncodingError too)."""
    server = harness.serve(partial_then_close)
    http = harness.client()
    with pytest.raises(UpstreamReset) as caught:
        http.get(f"{server.url}/x")
    assert isinstance(caught.value, requests.exceptions.ChunkedEncodingError)
    assert len(server.requests()) == 1  # a response had begun: never replayed
    harness.assert_intact(http)


def test_reset_mid_body(harness: Harness) -> None:
    """A TCP reset in the middle of the body: UpstreamReset."""
    server = harness.serve(reset_mid_body)
    http = harness.client()
    with pytest.raises(UpstreamReset):
        http.get(f"{server.url}/x")
    harness.assert_intact(http)


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(garbage_status, id="garbage status line"),
        pytest.param(bad_chunk_size, id="bad chunk size"),
        pytest.param(header_flood, id="header flood"),
    ],
)
def test_protocol_violations(harness: Harness, script: Script) -> None:
    """Responses that are not HTTP/1.1 raise UpstreamProtocolError naming the upstream."""
    server = harness.serve(script)
    http = harness.client()
    with pytest.raises(UpstreamProtocolError) as caught:
        http.get(f"{server.url}/x")
    assert caught.value.upstream == server.url
    assert len(server.requests()) == 1
    harness.assert_intact(http)


def test_conflicting_content_lengths_are_refused(harness: Harness) -> None:
    """Two different Content-Length values (a smuggling vector) raise UpstreamHeaderError, an
    UpstreamProtocolError and the InvalidHeader requests raises for them."""
    server = harness.serve(conflicting_length)
    http = harness.client()
    with pytest.raises(UpstreamHeaderError) as caught:
        http.get(f"{server.url}/x")
    assert isinstance(caught.value, UpstreamProtocolError)
    assert isinstance(caught.value, requests.exceptions.InvalidHeader)
    harness.assert_intact(http)


def test_translate_names_what_failed() -> None:
    """Name resolution and other connect failures become UpstreamUnreachable; the rest a connection error."""
    pool = HTTPConnectionPool("example.invalid")
    conn = HTTPConnection("example.invalid")
    resolution = requests.exceptions.ConnectionError(
        MaxRetryError(
            pool, "/", NameResolutionError("example.invalid", conn, socket.gaierror("no"))
        )
    )
    unreachable = requests.exceptions.ConnectionError(
        MaxRetryError(pool, "/", NewConnectionError(conn, "Network is unreachable"))
    )
    other = requests.exceptions.ConnectionError("something else")
    found = [
        translate(exc, upstream="http://example.invalid:80", deadline=None, where="x")
        for exc in (resolution, unreachable, other)
    ]
    assert [type(error) for error in found] == [
        UpstreamUnreachable,
        UpstreamUnreachable,
        UpstreamConnectionError,
    ]
    assert "name resolution failed" in str(found[0])
    assert translate(found[2], upstream="-", deadline=None, where="x") is found[2]
    decoding = requests.exceptions.ContentDecodingError("bad gzip")
    assert translate(decoding, upstream="-", deadline=Deadline(0), where="x") is decoding
