"""An SDK's own ``requests.Session`` with ``wsgi_pool.adapter()`` mounted: the process's pools and
policies, the session's own cookies, headers and auth, and inside a request the request's id,
trace context and budget."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import certifi
import google.auth.transport.requests
import google.oauth2.credentials
import pytest
import requests

import wsgi_pool
from tests.support import CONF, ROOT, get, wait_for_sizing_lines
from tests.support import wsgi_call as call
from wsgi_pool import PoolConfig
from wsgi_pool._propagation import from_environ
from wsgi_pool.testing import GunicornServer, Upstream


def no_start(status: str, headers: Any, exc_info: Any = None) -> Any:
    """A WSGI ``start_response`` that keeps nothing."""
    return None


def mounted(session: requests.Session, config: PoolConfig | None = None) -> requests.Session:
    """``session`` with wsgi_pool's adapter mounted for both schemes, as the docs show."""
    session.mount("http://", wsgi_pool.adapter(config))
    session.mount("https://", wsgi_pool.adapter(config))
    return session


@pytest.fixture
def sdk() -> Iterator[requests.Session]:
    with mounted(requests.Session()) as session:
        yield session


def test_a_cookie_auth_sdk_stays_logged_in(sdk: requests.Session, upstream: Upstream) -> None:
    """The SDK logs in once (the upstream sets a cookie): every later call carries it, over one
    pooled connection counted in the process's statistics."""
    sdk.post(f"{upstream.url}/login?set_cookie=sid=s3cret").raise_for_status()
    seen = [sdk.get(f"{upstream.url}/query/{n}").json()["cookie"] for n in range(20)]
    assert seen == ["sid=s3cret"] * 20
    assert upstream.stats().connections_opened == 1
    assert wsgi_pool.client().pools.stats()[upstream.url].calls == 21
    # The cookie is the session's own: a client of the same pools never sends it.
    assert wsgi_pool.client().get(f"{upstream.url}/other").json()["cookie"] is None


def test_a_header_auth_sdk_sends_its_own_headers_and_auth(
    sdk: requests.Session, upstream: Upstream
) -> None:
    sdk.headers["X-Api-Key"] = "k-123"
    sdk.auth = ("user", "pass")
    headers = sdk.get(f"{upstream.url}/me").json()["headers"]
    assert headers["X-Api-Key"] == "k-123"
    assert headers["Authorization"] == "Basic dXNlcjpwYXNz"
    assert "X-Api-Key" not in wsgi_pool.client().get(f"{upstream.url}/other").json()["headers"]


def test_google_auths_authorized_session(upstream: Upstream) -> None:
    """google-auth's ``AuthorizedSession`` (a ``requests.Session``) adds its bearer token."""
    credentials = google.oauth2.credentials.Credentials(token="ya29.token")  # noqa: S106  (a test token)
    with mounted(google.auth.transport.requests.AuthorizedSession(credentials)) as session:
        headers = session.get(f"{upstream.url}/v1/things").json()["headers"]
    assert headers["authorization"] == "Bearer ya29.token"
    assert wsgi_pool.client().pools.stats()[upstream.url].calls == 1


def test_an_sdk_sessions_own_ca_bundle_does_not_split_a_plain_http_pool(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that reads ``REQUESTS_CA_BUNDLE`` (``trust_env``, requests' default) passes a CA
    path with every call: over plain http it verifies nothing, so the upstream keeps one pool,
    and ``pool_maxsize`` bounds what the SDK and the clients keep together."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with mounted(requests.Session()) as session:
        assert session.trust_env
        session.get(f"{upstream.url}/sdk").raise_for_status()
        wsgi_pool.client().get(f"{upstream.url}/client").raise_for_status()
        session.get(f"{upstream.url}/sdk", verify=False).raise_for_status()  # nothing to verify
    assert upstream.stats().connections_opened == 1


def test_an_sdk_session_gets_the_policies(upstream: Upstream) -> None:
    """The adapter's config applies to the SDK's calls: timeouts named, the size cap, and the
    egress policy; a ``wsgi_pool.deadline()`` block bounds them."""
    config = PoolConfig(read_timeout=0.2, retries=0, max_response_bytes=100)
    with mounted(requests.Session(), config) as session:
        with pytest.raises(wsgi_pool.UpstreamReadTimeout):
            session.get(f"{upstream.url}/slow?delay=1")
        with pytest.raises(wsgi_pool.ResponseTooLarge):
            session.get(f"{upstream.url}/big?size=1000")
    denied = PoolConfig(egress_deny=("127.0.0.0/8",), egress_deny_private=False)
    with mounted(requests.Session(), denied) as session, pytest.raises(wsgi_pool.EgressDenied):
        session.get(f"{upstream.url}/x")
    # Only the block can end it so: the read timeout is 15 s, the upstream answers in 2 s.
    with (
        mounted(requests.Session()) as session,
        wsgi_pool.deadline(0.3),
        pytest.raises(wsgi_pool.DeadlineExceeded),
    ):
        session.get(f"{upstream.url}/slow?delay=2")
    assert upstream.stats().requests_served == 3  # the denied call never left


# -- inside a request -----------------------------------------------------------------------------


def sdk_view(session: requests.Session, target: str) -> Any:
    """A WSGI app whose handler calls ``target`` through an SDK's ``session``."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            answer = session.get(target)
        except wsgi_pool.DeadlineExceeded as exc:
            start_response("504 Gateway Timeout", [])
            return [str(exc).encode()]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [answer.content]

    return wsgi_pool.PoolMiddleware(app)


def test_inside_a_request_an_sdk_call_carries_its_id_and_trace_context(
    upstream: Upstream,
) -> None:
    with mounted(requests.Session(), PoolConfig(propagate=True)) as session:
        app = sdk_view(session, f"{upstream.url}/sdk")
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        status, body, _ = call(app, HTTP_X_REQUEST_ID="req-42", HTTP_TRACEPARENT=traceparent)
        headers = json.loads(body)["headers"]
        # Outside a request, the same session carries no request's id.
        outside = session.get(f"{upstream.url}/sdk").json()["headers"]
    assert status == "200 OK"
    assert headers["X-Request-ID"] == "req-42"
    assert headers["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert "X-Request-ID" not in outside


def test_inside_a_request_an_sdk_call_ends_within_the_request_budget(
    upstream: Upstream,
) -> None:
    """The caller gave the request 300 ms (``X-Request-Deadline``): the SDK's call ends then."""
    with mounted(requests.Session()) as session:
        app = sdk_view(session, f"{upstream.url}/slow?delay=2")
        status, body, _ = call(app, HTTP_X_REQUEST_DEADLINE="300")
    # Only the budget can end it so: the read timeout is 15 s, the upstream answers in 2 s.
    assert status == "504 Gateway Timeout", body
    assert re.search(rb"deadline of 0\.\d+ s exceeded", body)  # what was left of the 300 ms


def test_an_sdk_session_mounted_at_import_under_preload_shares_no_socket(
    upstream: Upstream,
) -> None:
    """gunicorn --preload: the app module mounts the adapter on an SDK session at import and calls
    through it in the master; two workers then call through it: no connection carries calls
    of two processes, and each request's id reaches the upstream."""
    env = {"UPSTREAM_URL": upstream.url, "WARM_IN_MASTER": "1", "WSGI_POOL_PROPAGATE": "1"}
    flags = ["-c", CONF, "--preload", "-k", "gthread", "-w", "2", "--threads", "2"]
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        wait_for_sizing_lines(server, 3)
        answers = [get(server, "/sdk", headers={"X-Request-ID": f"r{n}"}) for n in range(40)]
        server.stop()
    assert [status for status, _ in answers] == [200] * 40
    ids = [json.loads(body)["headers"]["X-Request-ID"] for _, body in answers]
    assert ids == [f"r{n}" for n in range(40)]
    assert upstream.shared_connections() == {}


def test_a_prepared_request_sent_again_carries_only_the_current_requests_id(
    upstream: Upstream,
) -> None:
    """An SDK that prepares a request once (at import) and sends it in each request: each send
    carries the id of the request being served, and none outside a request."""
    with mounted(requests.Session(), PoolConfig(propagate=True)) as session:
        ping = session.prepare_request(requests.Request("GET", f"{upstream.url}/ping"))

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [])
            return [session.send(ping).content]

        wrapped = wsgi_pool.PoolMiddleware(app)
        ids = [
            json.loads(call(wrapped, HTTP_X_REQUEST_ID=name)[1])["headers"]["X-Request-ID"]
            for name in ("request-a", "request-b")
        ]
        outside = session.send(ping).json()["headers"]
    assert ids == ["request-a", "request-b"]
    assert "X-Request-ID" not in outside
    assert "X-Request-ID" not in ping.headers  # the SDK's own request is left as it was


def test_a_streamed_response_body_calls_in_the_requests_context(upstream: Upstream) -> None:
    """A WSGI app whose body is a generator calling the SDK as the server iterates it (after
    the app returned): each call carries the request's id and budget."""
    with mounted(
        requests.Session(), PoolConfig(propagate=True, propagate_deadline=True)
    ) as session:

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [])
            for part in range(2):
                yield session.get(f"{upstream.url}/part/{part}").content + b"\n"

        wrapped = wsgi_pool.PoolMiddleware(app)
        _, body, _ = call(wrapped, HTTP_X_REQUEST_ID="streamed", HTTP_X_REQUEST_DEADLINE="1500")
    parts = [json.loads(line)["headers"] for line in body.splitlines()]
    assert [found["X-Request-ID"] for found in parts] == ["streamed", "streamed"]
    assert all(int(found["X-Request-Deadline"]) <= 1500 for found in parts)


def test_a_block_in_a_streamed_body_lasts_across_its_items(upstream: Upstream) -> None:
    """A generator body opens a ``wsgi_pool.deadline(0.5)`` block around a ``yield``, with a
    10 s incoming budget: the call after the yield is still cut at 0.5 s (the body has a
    context of its own, kept from one item to the next)."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        with wsgi_pool.deadline(0.5):
            yield b"first;"
            try:
                wsgi_pool.client_from(environ).get(f"{upstream.url}/slow?delay=3")
                yield b"not cut"
            except wsgi_pool.DeadlineExceeded:
                yield b"cut"

    _, body, _ = call(wsgi_pool.PoolMiddleware(app), HTTP_X_REQUEST_DEADLINE="10000")
    assert body == b"first;cut"  # before: "first;not cut" (the 10 s budget replaced the block)


def test_a_streamed_body_closed_early_cleans_up_in_the_requests_context(
    upstream: Upstream,
) -> None:
    """The server closes a generator body after its first item: the app's cleanup (its
    ``finally``) still calls with the request's id."""
    with mounted(requests.Session(), PoolConfig(propagate=True)) as session:
        cleanup: list[str] = []

        def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
            start_response("200 OK", [])
            try:
                yield b"a"
                yield b"b"  # pragma: no cover  (never reached: the server closes first)
            finally:
                answer = session.get(f"{upstream.url}/cleanup").json()
                cleanup.append(answer["headers"]["X-Request-ID"])

        environ: dict[str, Any] = {"HTTP_X_REQUEST_ID": "closed-early"}
        setup_testing_defaults(environ)
        body = wsgi_pool.PoolMiddleware(app)(environ, no_start)
        assert next(iter(body)) == b"a"
        body.close()  # type: ignore[attr-defined]  # what the server does
    assert cleanup == ["closed-early"]


class FileWrapper:
    """A server's ``wsgi.file_wrapper`` (as gunicorn's: ``close`` set on the instance)."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.filelike.read(8192), b"")


class SlotsWrapper:
    """A ``wsgi.file_wrapper`` whose instances take no new attribute."""

    __slots__ = ("filelike",)

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.filelike.read(8192), b"")


class BareWrapper:
    """A ``wsgi.file_wrapper`` with no ``close`` at all."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.filelike.read(8192), b"")


@pytest.mark.parametrize("wrapper", [FileWrapper, SlotsWrapper, BareWrapper])
def test_a_file_body_over_a_streamed_answer_is_sent_whole(
    upstream: Upstream, wrapper: type
) -> None:
    """The app returns the server's ``wsgi.file_wrapper`` over a streamed upstream answer: the
    server gets its own wrapper back (for sendfile) when it can take the release in its
    ``close``, the whole body arrives, and the client is released when the server closes it."""
    config = PoolConfig(pool_maxsize=2)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        answer = wsgi_pool.client_from(environ).get(f"{upstream.url}/big?size=200000", stream=True)
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](answer.raw, 8192)

    environ: dict[str, Any] = {"wsgi.file_wrapper": wrapper}
    setup_testing_defaults(environ)
    body = wsgi_pool.PoolMiddleware(app, config)(environ, no_start)
    assert isinstance(body, wrapper) is (wrapper is not SlotsWrapper)
    assert len(b"".join(body)) == 200000
    body.close()  # type: ignore[attr-defined]  # what the server does
    assert wsgi_pool.client(config).pools.stats()[upstream.url].in_use == 0


def test_one_request_object_sent_by_several_threads_carries_each_ones_id(
    upstream: Upstream,
) -> None:
    """Four request-scoped clients (four incoming requests) send one module-level prepared
    request 50 times each at once: every call carries its own request's id."""
    shared = requests.Request("GET", f"{upstream.url}/health").prepare()
    config = PoolConfig(propagate=True, pool_maxsize=8)
    wrong: list[tuple[str, str]] = []

    def worker(name: str) -> None:
        client = wsgi_pool.Client(
            config, propagation=from_environ({"HTTP_X_REQUEST_ID": name}, "X-Request-ID")
        )
        for _ in range(50):
            got = client.send(shared).json()["headers"]["X-Request-ID"]
            if got != name:
                wrong.append((name, got))  # pragma: no cover  (the failure being tested for)

    threads = [threading.Thread(target=worker, args=(f"req-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert wrong == []
    assert upstream.stats().requests_served == 200
