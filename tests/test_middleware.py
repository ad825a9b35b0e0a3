"""The middleware called in-process, as a WSGI server calls it."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

import wsgi_pool
from tests.support import run_together
from tests.support import wsgi_call as call
from wsgi_pool import (
    ENVIRON_KEY,
    MissingClientError,
    PoolConfig,
    PoolMiddleware,
    _process,
    client_from,
)
from wsgi_pool.testing import Upstream

Handler = Callable[[Any], Any]


def make_app(
    handler: Handler, config: PoolConfig | None = None, body: str = "list"
) -> PoolMiddleware:
    """A WSGI app whose handler gets the request-scoped client; its body is a list or a generator."""

    def view(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        result = str(handler(client_from(environ))).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        if body == "list":
            return [result]
        return (chunk for chunk in [result])

    return PoolMiddleware(view, config)


def discard_start_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], object]:
    return lambda data: None


def test_the_client_is_in_environ_and_speaks_requests(upstream: Upstream) -> None:
    """Handlers find a Client under environ['wsgi_pool.client'] and client_from returns it."""
    seen: dict[str, Any] = {}

    def view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["client"] = environ[ENVIRON_KEY]
        seen["same"] = client_from(environ) is environ[ENVIRON_KEY]
        seen["status"] = client_from(environ).get(f"{upstream.url}/x").status_code
        start_response("204 No Content", [])
        return []

    status, _, _ = call(PoolMiddleware(view))
    assert status == "204 No Content"
    assert isinstance(seen["client"], wsgi_pool.Client)
    assert seen["same"] is True
    assert seen["status"] == 200


def test_wrapping_builds_no_pools() -> None:
    """Wrapping an app (in the gunicorn master under --preload) creates no pools; the first request does."""
    app = make_app(lambda http: "ok")
    assert _process._by_pid.get(os.getpid()) is None or not _process._by_pid[os.getpid()].by_shape
    assert call(app)[1] == b"ok"
    assert len(_process._by_pid[os.getpid()].by_shape) == 1


def test_client_from_without_middleware_explains() -> None:
    """client_from on an environ without a client raises MissingClientError (a LookupError)."""
    with pytest.raises(MissingClientError, match=r"wrap the app in wsgi_pool\.PoolMiddleware"):
        client_from({})
    with pytest.raises(LookupError, match=r"is 'x', not a wsgi_pool client"):
        client_from({ENVIRON_KEY: "x"})


def test_cookies_never_cross_between_requests(upstream: Upstream) -> None:
    """A Set-Cookie seen during one request is sent within it but never on another request's call."""

    def alice(http: wsgi_pool.Client) -> str:
        http.get(f"{upstream.url}/login?set_cookie=sid=alice")
        return str(http.get(f"{upstream.url}/me").json()["cookie"])

    def bob(http: wsgi_pool.Client) -> str:
        return str(http.get(f"{upstream.url}/me").json()["cookie"])

    assert call(make_app(alice))[1] == b"sid=alice"
    assert call(make_app(bob))[1] == b"None"


def test_cookies_never_cross_between_concurrent_requests(upstream: Upstream) -> None:
    """Concurrent requests through one middleware each see only their own upstream cookie."""

    def user(name: str) -> Callable[[], bytes]:
        def handler(http: wsgi_pool.Client) -> str:
            http.get(f"{upstream.url}/login?set_cookie=sid={name}&delay=0.05")
            return str(http.get(f"{upstream.url}/me?delay=0.05").json()["cookie"])

        app = make_app(handler)
        return lambda: call(app)[1]

    names = [f"user{n}" for n in range(8)]
    assert run_together(*(user(name) for name in names)) == [
        f"sid={name}".encode() for name in names
    ]


def test_headers_and_auth_changed_by_a_handler_stay_in_its_request(upstream: Upstream) -> None:
    """A handler's changes to its client's headers, auth and params are invisible to other requests."""

    def meddler(http: wsgi_pool.Client) -> str:
        http.headers["X-Api-Key"] = "secret"
        http.auth = ("user", "pass")
        http.params = {"debug": "1"}
        answer = http.get(f"{upstream.url}/m").json()
        return f"{answer['headers'].get('X-Api-Key')} {'Authorization' in answer['headers']} {answer['path']}"

    def bystander(http: wsgi_pool.Client) -> str:
        answer = http.get(f"{upstream.url}/b").json()
        return f"{answer['headers'].get('X-Api-Key')} {'Authorization' in answer['headers']} {answer['path']}"

    assert call(make_app(meddler))[1] == b"secret True /m?debug=1"
    assert call(make_app(bystander))[1] == b"None False /b"


def test_an_incoming_proxy_header_never_routes_calls(upstream: Upstream) -> None:
    """httpoxy: an incoming 'Proxy:' header (HTTP_PROXY in the environ) is ignored by outbound calls."""
    app = make_app(lambda http: http.get(f"{upstream.url}/direct").json()["path"])
    assert call(app, HTTP_PROXY="http://127.0.0.1:9")[1] == b"/direct"


@pytest.mark.parametrize("body", ["list", "generator"])
def test_a_leaked_stream_is_reclaimed_when_the_response_closes(
    upstream: Upstream, body: str
) -> None:
    """An unread stream=True response left by a handler returns its connection at response close."""
    config = PoolConfig(pool_maxsize=1, pool_timeout=0.2)
    kept: list[Any] = []

    def leaky(http: wsgi_pool.Client) -> str:
        kept.append(http.get(f"{upstream.url}/big?size=4000000", stream=True))
        return "leaked"

    app = make_app(leaky, config, body=body)
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    result = app(environ, discard_start_response)
    pools = wsgi_pool.client(config).pools
    if body == "generator":
        assert pools.stats()[upstream.url].in_use == 1
        assert b"".join(result) == b"leaked"
        result.close()  # type: ignore[attr-defined]
    assert pools.stats()[upstream.url].in_use == 0
    assert (
        call(make_app(lambda http: http.get(f"{upstream.url}/next").status_code, config))[1]
        == b"200"
    )


def test_the_apps_own_close_runs_before_release(upstream: Upstream) -> None:
    """The app's iterable close() is called, then the client is released, even if close() raises."""
    order: list[str] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"x"])

        def close(self) -> None:
            order.append("app close")
            raise RuntimeError("app close failed")

    def view(environ: dict[str, Any], start_response: Any) -> Body:
        http = client_from(environ)
        stream = http.get(f"{upstream.url}/big?size=4000000", stream=True)
        order.append("handled")
        environ["stream"] = stream
        start_response("200 OK", [])
        return Body()

    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    result = PoolMiddleware(view)(environ, discard_start_response)
    assert list(result) == [b"x"]
    with pytest.raises(RuntimeError, match="app close failed"):
        result.close()  # type: ignore[attr-defined]
    assert order == ["handled", "app close"]
    assert environ["stream"].raw.connection is None


def test_a_body_without_close_still_releases(upstream: Upstream) -> None:
    """A body iterable with no close() of its own still gets the client released at close."""
    config = PoolConfig(pool_maxsize=1, pool_timeout=0.2)

    def view(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        client_from(environ).get(f"{upstream.url}/big?size=4000000", stream=True)
        start_response("200 OK", [])
        return iter([b"done"])

    status, body, result = call(PoolMiddleware(view, config))
    assert (status, body) == ("200 OK", b"done")
    assert not hasattr(result._body._body, "close")  # the app's own iterable
    assert wsgi_pool.client(config).pools.stats()[upstream.url].in_use == 0


def test_an_app_exception_releases_the_client(upstream: Upstream) -> None:
    """When the app raises, its open streams are released and the error propagates."""
    config = PoolConfig(pool_maxsize=1, pool_timeout=0.2)

    def view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        client_from(environ).get(f"{upstream.url}/big?size=4000000", stream=True)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        call(PoolMiddleware(view, config))
    assert wsgi_pool.client(config).pools.stats()[upstream.url].in_use == 0


def test_requests_in_threads_share_the_process_pools(upstream: Upstream) -> None:
    """Requests served by several threads use one set of pools: connections <= threads."""
    config = PoolConfig(worker_class="gthread", threads=4)
    app = make_app(lambda http: http.get(f"{upstream.url}/t?delay=0.05").json()["method"], config)
    barrier = threading.Barrier(4)

    def serve() -> list[bytes]:
        barrier.wait(10)
        return [call(app)[1] for _ in range(5)]

    assert run_together(serve, serve, serve, serve) == [[b"GET"] * 5] * 4
    assert upstream.stats().connections_opened <= 4
    assert wsgi_pool.client(config).pools.sizing.pool_maxsize == 4


def test_settings_given_in_code_are_the_processs_own(caplog: pytest.LogCaptureFixture) -> None:
    """PoolMiddleware(app, config): wsgi_pool.client() and the requests share one set of pools;
    a second, different config in code is warned of (the last one is the process's)."""
    config = PoolConfig(read_timeout=3.0)
    seen: list[Any] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(wsgi_pool.client_from(environ).pools)
        start_response("200 OK", [])
        return [b""]

    call(PoolMiddleware(app, config))
    assert wsgi_pool.client().pools is seen[0]
    assert wsgi_pool.client().config == config
    with caplog.at_level(logging.WARNING, "wsgi_pool"):
        PoolMiddleware(app, config)  # the same again: nothing to say
        assert caplog.records == []
        PoolMiddleware(app, PoolConfig(read_timeout=4.0))
    assert "two different configs given in code in one process" in caplog.text
    assert wsgi_pool.client().config.read_timeout == 4.0


def test_a_middleware_without_settings_keeps_the_environments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another app in the process gave settings in code: a middleware given none still uses
    the WSGI_POOL_* variables (only wsgi_pool.client() follows the code's)."""
    monkeypatch.setenv("WSGI_POOL_READ_TIMEOUT", "3")
    seen: list[float] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(wsgi_pool.client_from(environ).config.read_timeout)
        start_response("200 OK", [])
        return [b""]

    from_env = PoolMiddleware(app)
    call(from_env)
    PoolMiddleware(app, PoolConfig(read_timeout=9.0))
    call(from_env)
    assert seen == [3.0, 3.0]
    assert wsgi_pool.client().config.read_timeout == 9.0


def test_the_missing_hooks_warning_knows_every_gunicorn_worker(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gevent_pywsgi names its socket gunicorn.sock; the others gunicorn.socket. Once every
    hook ran, nothing is said."""
    # gunicorn's own logging set up in this process (an earlier test) stops propagation.
    monkeypatch.setattr(logging.getLogger("gunicorn.error"), "propagate", True)
    monkeypatch.setattr(logging.getLogger("gunicorn.error"), "disabled", False)
    monkeypatch.setattr(_process, "_hooks_ran", set())  # earlier tests ran hooks here
    for key in ("gunicorn.socket", "gunicorn.sock"):
        monkey = pytest.MonkeyPatch()
        monkey.setattr(_process, "_hooks_checked", None)
        with caplog.at_level(logging.WARNING, "gunicorn.error"):
            _process.check_hooks({key: object()})
        monkey.undo()
    assert caplog.text.count("these gunicorn hooks of wsgi_pool did not run") == 2
    caplog.clear()
    monkeypatch.setattr(_process, "_hooks_checked", None)
    _process.check_hooks({"wsgi.version": (1, 0)})  # not gunicorn: nothing to say
    monkeypatch.setattr(_process, "_hooks_checked", None)
    monkeypatch.setattr(_process, "_hooks_ran", set(_process.GUNICORN_HOOKS))
    _process.check_hooks({"gunicorn.socket": object()})  # every hook ran
    assert caplog.records == []


def test_each_middleware_reads_requests_as_its_own_settings_say() -> None:
    """Two apps in one process whose settings name other request-id and budget headers, called
    in turn: each request's id and budget are read from its own app's headers."""
    seen: list[tuple[str | None, float | None]] = []

    def view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        http = client_from(environ)
        seen.append((http.request_id, http.not_after))
        start_response("204 No Content", [])
        return []

    plain = PoolMiddleware(view, PoolConfig())
    other = PoolMiddleware(
        view, PoolConfig(request_id_header="X-Correlation-ID", deadline_headers=("X-Budget-Ms",))
    )
    incoming = {
        "HTTP_X_REQUEST_ID": "plain-1",
        "HTTP_X_CORRELATION_ID": "other-1",
        "HTTP_X_REQUEST_DEADLINE": "60000",
        "HTTP_X_BUDGET_MS": "30000",
    }
    for _ in range(2):
        call(plain, **incoming)
        call(other, **incoming)
        call(other, HTTP_X_CORRELATION_ID="other-2")  # no budget header: none
    assert [found[0] for found in seen] == ["plain-1", "other-1", "other-2"] * 2
    budgets = [found[1] for found in seen]
    assert all(budget is not None for budget in budgets[0::3] + budgets[1::3])
    assert budgets[2::3] == [None, None]
    for plain_budget, other_budget in zip(budgets[0::3], budgets[1::3], strict=True):
        assert plain_budget - other_budget > 20  # type: ignore[operator]  # 60 s against 30 s


def test_a_tuple_body_releases_the_client_at_once(upstream: Upstream) -> None:
    """A body that is a tuple (a sequence, as a list) releases the request's client when the
    app returns, its streamed responses' connections back in the pool."""
    clients: list[wsgi_pool.Client] = []

    def view(environ: dict[str, Any], start_response: Any) -> tuple[bytes, ...]:
        http = client_from(environ)
        clients.append(http)
        http.get(f"{upstream.url}/streamed", stream=True)
        start_response("200 OK", [])
        return (b"a", b"b")

    status, body, _ = call(PoolMiddleware(view))
    assert (status, body) == ("200 OK", b"ab")
    assert clients[0].pools.stats()[upstream.url].in_use == 0
    with pytest.raises(wsgi_pool.RequestEnded):
        clients[0].get(f"{upstream.url}/late")
