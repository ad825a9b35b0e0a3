"""max_response_bytes: counted on the decoded body, so a gzip bomb stops early; redirect bodies are never decoded."""

from __future__ import annotations

import tracemalloc

import pytest

from tests.harness import Harness, declared_too_large, gzip_bomb
from wsgi_pool import (
    ResponseTooLarge,
    UpstreamSettings,
)


@pytest.mark.parametrize("stream", [False, True], ids=["read at once", "streamed"])
def test_gzip_bomb_stops_at_the_limit(harness: Harness, stream: bool) -> None:
    """64 MiB of zeros in 64 KB of gzip: decoding stops just past max_response_bytes."""
    server = harness.serve(gzip_bomb)
    http = harness.client(max_response_bytes=1024 * 1024)

    def read() -> None:
        response = http.get(f"{server.url}/bomb", stream=stream)
        for _ in response.iter_content(64 * 1024):
            pass

    with pytest.raises(ResponseTooLarge) as caught:
        read()
    assert caught.value.limit == 1024 * 1024
    assert caught.value.received <= 1024 * 1024 + 64 * 1024
    harness.assert_intact(http)


def test_gzip_bomb_on_a_redirect_is_never_decoded(harness: Harness) -> None:
    """requests decodes a redirect's body in full; here it is discarded undecoded, even with no cap."""
    server = harness.serve(gzip_bomb)
    http = harness.client(max_response_bytes=None)
    tracemalloc.start()
    try:
        answer = http.get(f"{server.url}/redirect")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 200
    assert [r.status_code for r in answer.history] == [302]
    assert answer.history[0].content == b""
    assert peak < 4 * 1024 * 1024, f"{peak} bytes allocated: the 64 MiB body was decoded"
    assert [s.path for s in server.requests()] == ["/redirect", "/ok"]
    harness.assert_intact(http)


def test_declared_length_over_the_limit_fails_before_reading(harness: Harness) -> None:
    """A Content-Length above the limit is refused at the headers, nothing of the body read."""
    server = harness.serve(declared_too_large)
    http = harness.client(max_response_bytes=1024 * 1024)
    with pytest.raises(ResponseTooLarge) as caught:
        http.get(f"{server.url}/big")
    assert caught.value.received == 0
    harness.assert_intact(http)


def test_per_upstream_limit_lifts_the_cap_for_one_upstream(harness: Harness) -> None:
    """upstreams[origin].max_response_bytes wins over the config's for that origin only."""
    http = harness.client(
        max_response_bytes=1000,
        upstreams={harness.healthy.url: UpstreamSettings(max_response_bytes=10_000_000)},
    )
    assert len(http.get(f"{harness.healthy.url}/big?size=100000").content) == 100000
    harness.assert_intact(http)
