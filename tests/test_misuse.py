"""Misuse that used to fail silently now fails loudly: a request's client, or a body it
streamed, used after the request ended."""

from __future__ import annotations

from typing import Any

import pytest
import requests

import wsgi_pool
from tests.support import wsgi_call
from wsgi_pool import PoolMiddleware, RequestEnded, WsgiPoolError
from wsgi_pool.testing import Upstream


def app_keeping(kept: dict[str, Any], url: str, *, stream: bool = False) -> Any:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        http = kept["client"] = wsgi_pool.client_from(environ)
        kept["response"] = http.get(url, stream=stream)
        start_response("200 OK", [])
        return [b"ok"]

    return PoolMiddleware(app)


def test_a_request_client_used_after_its_request_raises(upstream: Upstream) -> None:
    """It would carry the ended request's id and budget: it raises, naming the request."""
    kept: dict[str, Any] = {}
    wsgi_call(app_keeping(kept, f"{upstream.url}/a"), HTTP_X_REQUEST_ID="req-one")
    with pytest.raises(RequestEnded, match=r"the request req-one this client belonged to") as e:
        kept["client"].get(f"{upstream.url}/b")
    assert isinstance(e.value, WsgiPoolError | RuntimeError)
    assert len(upstream.seen("/b")) == 0


def test_a_streamed_body_read_after_its_request_raises(upstream: Upstream) -> None:
    """Closed with its request (its connection back in the pool): reading it raises, instead
    of an empty body under a Content-Length that promised more."""
    kept: dict[str, Any] = {}
    wsgi_call(app_keeping(kept, f"{upstream.url}/s?size=47", stream=True))
    response = kept["response"]
    assert response.headers["Content-Length"] == "47"
    with pytest.raises(RequestEnded, match="a streamed body read after its request ended"):
        response.content  # noqa: B018
    with pytest.raises(RequestEnded):
        next(response.iter_content(10))
    assert wsgi_pool.client().pools.stats()[upstream.url].in_use == 0


def test_a_body_read_within_the_request_stays_readable(upstream: Upstream) -> None:
    kept: dict[str, Any] = {}
    wsgi_call(app_keeping(kept, f"{upstream.url}/s?size=47"))
    assert kept["response"].content == b"x" * 47


def test_a_clients_own_close_keeps_requests_semantics(upstream: Upstream) -> None:
    """A client of one's own, closed, still sends (as a requests.Session does)."""
    http = wsgi_pool.client()
    http.close()
    assert http.get(f"{upstream.url}/a").status_code == 200
    with requests.Session() as session:
        session.close()
        assert session.get(f"{upstream.url}/a").status_code == 200


def test_every_way_of_reading_an_ended_body_raises(upstream: Upstream) -> None:
    kept: dict[str, Any] = {}
    wsgi_call(app_keeping(kept, f"{upstream.url}/s?size=47", stream=True))
    raw = kept["response"].raw
    for read in (
        lambda: raw.data,
        raw.read,
        lambda: raw.read1(10),
        lambda: raw.readinto(bytearray(10)),
        raw.readline,
        lambda: iter(raw),
        lambda: list(kept["response"].iter_lines()),
    ):
        with pytest.raises(RequestEnded):
            read()
    assert raw.status == 200  # what is not the body stays readable
