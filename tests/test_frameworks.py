"""The Flask and Django adapters, in process (gunicorn serves both examples in test_gunicorn)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.core import checks
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.test import RequestFactory, override_settings
from flask import Flask

import wsgi_pool
from wsgi_pool import ConfigError, PoolConfig
from wsgi_pool._config import from_settings
from wsgi_pool.testing import Upstream

pytestmark = pytest.mark.usefixtures("django_settings")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param(["read_timeout"], "expected a dict of PoolConfig fields", id="not a dict"),
        pytest.param({"read_timout": 5}, "unknown setting(s): read_timout", id="unknown field"),
        pytest.param({"read_timeout": -1}, "WSGI_POOL: read_timeout", id="bad value"),
    ],
)
def test_bad_framework_settings_name_what_is_wrong(value: Any, error: str) -> None:
    """A framework's WSGI_POOL setting is checked like the config itself, naming the setting."""
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace(")", r"\)")):
        from_settings("WSGI_POOL", value)


def test_framework_settings_go_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dict sets the fields it names; the rest come from WSGI_POOL_* variables; a config is kept."""
    monkeypatch.setenv("WSGI_POOL_CONNECT_TIMEOUT", "1.5")
    config = from_settings("WSGI_POOL", {"read_timeout": 4.0})
    assert config is not None
    assert (config.read_timeout, config.connect_timeout) == (4.0, 1.5)
    given = PoolConfig(read_timeout=3.0)
    assert from_settings("WSGI_POOL", given) is given
    assert from_settings("WSGI_POOL", None) is None


# -- Flask ------------------------------------------------------------------------------------------


def _flask_app(upstream: Upstream, **config: Any) -> Flask:
    from wsgi_pool.flask import WsgiPool, http  # noqa: PLC0415

    app = Flask(__name__)
    app.config.update(config)
    pool = WsgiPool()
    pool.init_app(app)

    @app.get("/item")
    def item() -> dict[str, Any]:
        answer = http.get(f"{upstream.url}/items/42").json()
        return {
            "path": answer["path"],
            "request_id": http.request_id,
            "read": http.pools.config.read_timeout,
        }

    return app


def test_flask_views_use_the_current_requests_client(upstream: Upstream) -> None:
    """``http`` is the request's own client, carrying its request id, with the app's settings."""
    app = _flask_app(upstream, WSGI_POOL={"read_timeout": 4.0})
    with app.test_client() as browser:
        first = browser.get("/item", headers={"X-Request-ID": "req-1"}).get_json()
        second = browser.get("/item", headers={"X-Request-ID": "req-2"}).get_json()
    assert (first["path"], first["request_id"], first["read"]) == ("/items/42", "req-1", 4.0)
    assert second["request_id"] == "req-2"
    assert upstream.stats().connections_opened == 1
    from wsgi_pool.flask import WsgiPool  # noqa: PLC0415

    assert isinstance(app.extensions["wsgi_pool"], WsgiPool)


def test_flask_http_outside_a_request_says_so() -> None:
    """Outside a request ``http`` raises Flask's own error, not a stale client."""
    from wsgi_pool.flask import http  # noqa: PLC0415

    with pytest.raises(RuntimeError, match="request context"):
        http.get("http://127.0.0.1:9/")


def test_flask_bad_settings_fail_at_init_app(upstream: Upstream) -> None:
    """A bad app.config["WSGI_POOL"] raises ConfigError from init_app, naming it."""
    with pytest.raises(ConfigError, match="WSGI_POOL"):
        _flask_app(upstream, WSGI_POOL={"pool_maxsize": 0})


# -- Django -----------------------------------------------------------------------------------------


def _middleware(view: Any) -> Any:
    from wsgi_pool.django import ClientMiddleware  # noqa: PLC0415

    return ClientMiddleware(view)


def test_django_requests_get_their_client(upstream: Upstream) -> None:
    """``request.http`` is the request's client, with its request id; released when Django closes."""
    seen: list[Any] = []

    def view(request: Any) -> HttpResponse:
        seen.append(request.http)
        assert wsgi_pool.client_from(request.META) is request.http
        streamed = request.http.get(f"{upstream.url}/x", stream=True)
        return HttpResponse(f"{request.http.request_id} {streamed.status_code}")

    with override_settings(WSGI_POOL={"read_timeout": 4.0}):
        middleware = _middleware(view)
    request = RequestFactory().get("/", HTTP_X_REQUEST_ID="req-9")
    response = middleware(request)
    assert response.content == b"req-9 200"
    pools = seen[0].pools
    assert pools.config.read_timeout == 4.0
    assert pools.stats()[upstream.url].in_use == 1  # the unread streamed response
    response.close()  # what Django's WSGI handler does when the server is done
    assert pools.stats()[upstream.url].in_use == 0


def test_django_a_views_calls_keep_the_incoming_budget_and_only_there() -> None:
    """An incoming budget bounds the view's calls (a session's over the adapter too), and
    nothing after the view returns."""
    seen: list[float | None] = []

    def view(request: Any) -> HttpResponse:
        seen.append(request.http.not_after)
        seen.append(wsgi_pool._deadline._block_ends.get())
        return HttpResponse("ok")

    request = RequestFactory().get("/", HTTP_X_REQUEST_DEADLINE="30000")
    assert _middleware(view)(request).content == b"ok"
    assert seen[0] is not None
    assert seen[1] == seen[0]  # the block every call in the view is bounded by
    assert wsgi_pool._deadline._block_ends.get() is None  # left when the view returned


def test_django_streamed_responses_release_after_the_body(upstream: Upstream) -> None:
    """A streaming response keeps the client until Django closes it."""

    def view(request: Any) -> StreamingHttpResponse:
        upstream_response = request.http.get(f"{upstream.url}/x?size=10", stream=True)
        return StreamingHttpResponse(upstream_response.iter_content(4))

    response = _middleware(view)(RequestFactory().get("/"))
    assert b"".join(response.streaming_content) == b"x" * 10
    response.close()
    assert wsgi_pool.client().pools.stats()[upstream.url].in_use == 0


def test_django_a_streamed_body_calls_in_the_requests_context(upstream: Upstream) -> None:
    """A streaming response whose parts are made as Django sends them: an SDK's session (the
    adapter mounted) called then carries the request's id."""
    session = requests.Session()
    session.mount("http://", wsgi_pool.adapter(PoolConfig(propagate=True)))

    def parts() -> Iterator[bytes]:
        for part in range(2):
            yield session.get(f"{upstream.url}/part/{part}").content + b"\n"

    def view(request: Any) -> StreamingHttpResponse:
        return StreamingHttpResponse(parts())

    response = _middleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="django-streamed"))
    lines = b"".join(response.streaming_content).splitlines()
    response.close()
    session.close()
    assert [json.loads(line)["headers"]["X-Request-ID"] for line in lines] == [
        "django-streamed"
    ] * 2


def test_django_a_streamed_body_closed_early_cleans_up_in_the_requests_context(
    upstream: Upstream,
) -> None:
    """Django closes a streaming response after its first part: the generator's ``finally``
    runs in the request's context (its SDK call carries the request's id)."""
    session = requests.Session()
    session.mount("http://", wsgi_pool.adapter(PoolConfig(propagate=True)))
    cleanup: list[str] = []

    def parts() -> Iterator[bytes]:
        try:
            yield b"a"
            yield b"b"  # pragma: no cover  (never reached: closed first)
        finally:
            answer = session.get(f"{upstream.url}/cleanup").json()
            cleanup.append(answer["headers"]["X-Request-ID"])

    def view(request: Any) -> StreamingHttpResponse:
        return StreamingHttpResponse(parts())

    response = _middleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="django-early"))
    assert next(iter(response.streaming_content)) == b"a"
    response.close()
    session.close()
    assert cleanup == ["django-early"]


def test_django_a_streamed_list_is_sent_as_it_is() -> None:
    """Streaming content with no ``close`` of its own (a list): sent whole, nothing to close."""

    def view(request: Any) -> StreamingHttpResponse:
        return StreamingHttpResponse([b"a", b"b"])

    response = _middleware(view)(RequestFactory().get("/"))
    assert b"".join(response.streaming_content) == b"ab"
    response.close()


def test_django_a_file_response_keeps_its_file_for_the_server(tmp_path: Any) -> None:
    """A FileResponse through the middleware still hands the server its file (gunicorn sends
    it with sendfile through ``wsgi.file_wrapper``)."""
    page = tmp_path / "page.bin"
    page.write_bytes(b"x" * 100)

    def view(request: Any) -> FileResponse:
        return FileResponse(page.open("rb"))

    response = _middleware(view)(RequestFactory().get("/"))
    assert response.file_to_stream is not None
    response.close()


def test_django_a_failing_view_releases_its_client(upstream: Upstream) -> None:
    """A view that raises still gives back what its client held, and the error goes on."""

    def view(request: Any) -> HttpResponse:
        request.http.get(f"{upstream.url}/x", stream=True)
        raise ValueError("the view failed")

    with pytest.raises(ValueError, match="the view failed"):
        _middleware(view)(RequestFactory().get("/"))
    assert wsgi_pool.client().pools.stats()[upstream.url].in_use == 0


@pytest.mark.parametrize(
    ("overrides", "ids"),
    [
        pytest.param({"MIDDLEWARE": ["wsgi_pool.django.ClientMiddleware"]}, [], id="fine"),
        pytest.param({"MIDDLEWARE": []}, ["wsgi_pool.W001"], id="no middleware"),
        pytest.param(
            {"MIDDLEWARE": ["wsgi_pool.django.ClientMiddleware"], "WSGI_POOL": {"retries": -1}},
            ["wsgi_pool.E001"],
            id="bad value",
        ),
        pytest.param(
            {"MIDDLEWARE": ["wsgi_pool.django.ClientMiddleware"], "WSGI_POOL": "fast"},
            ["wsgi_pool.E001"],
            id="not a dict",
        ),
    ],
)
def test_django_system_checks(overrides: dict[str, Any], ids: list[str]) -> None:
    """The checks report a bad WSGI_POOL and a missing middleware, with stable ids."""
    import wsgi_pool  # noqa: PLC0415
    from wsgi_pool.django import WsgiPoolAppConfig, check_settings  # noqa: PLC0415

    WsgiPoolAppConfig("wsgi_pool", wsgi_pool).ready()
    assert check_settings in checks.registry.registry.registered_checks
    with override_settings(**overrides):
        assert [message.id for message in check_settings()] == ids


def test_the_old_app_config_name_still_works_and_warns() -> None:
    """``wsgi_pool.django.WsgiPoolConfig`` (0.1) is ``WsgiPoolAppConfig``, with a DeprecationWarning."""
    import wsgi_pool.django  # noqa: PLC0415

    with pytest.warns(DeprecationWarning, match="WsgiPoolAppConfig"):
        old = wsgi_pool.django.WsgiPoolConfig
    assert old is wsgi_pool.django.WsgiPoolAppConfig
    with pytest.raises(AttributeError):
        wsgi_pool.django.NoSuchName  # noqa: B018


def test_django_answers_the_metrics_path(upstream: Upstream) -> None:
    """WSGI_POOL's metrics_path is answered by the Django middleware too, with this worker's
    metrics; other paths reach the views."""

    def view(request: Any) -> HttpResponse:
        return HttpResponse(str(request.http.get(f"{upstream.url}/x").status_code))

    with override_settings(WSGI_POOL={"metrics_path": "/metrics"}):
        middleware = _middleware(view)
    assert middleware(RequestFactory().get("/")).content == b"200"
    metrics = middleware(RequestFactory().get("/metrics"))
    assert metrics.status_code == 200
    assert metrics["Content-Type"].startswith("text/plain")
    assert f'wsgi_pool_connections_opened_total{{upstream="{upstream.url}"}}' in (
        metrics.content.decode()
    )
