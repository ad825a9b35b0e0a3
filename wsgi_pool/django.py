"""Django: a middleware that gives each request its client as ``request.http``, settings in
``settings.py``, and system checks for bad ones.

    # settings.py
    INSTALLED_APPS = [..., "wsgi_pool.django.WsgiPoolAppConfig"]  # the system checks
    MIDDLEWARE = ["wsgi_pool.django.ClientMiddleware", ...]
    WSGI_POOL = {"read_timeout": 5.0}  # optional: PoolConfig fields, over WSGI_POOL_* variables

    # a view
    def item(request):
        return JsonResponse(request.http.get("http://inventory.internal/items/42").json())

Limitations: the client is released when Django closes the response (after a streamed body
is sent), as the WSGI middleware does; ``client_from(request.META)`` finds it too. A bad
``WSGI_POOL`` is reported by ``manage.py check`` (``wsgi_pool.E001``) and raises
:class:`~wsgi_pool.ConfigError` when Django loads the app (it builds its middleware then).
Code outside a request uses :func:`wsgi_pool.client`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from ._config import SETTINGS_KEY, from_settings
from ._errors import ConfigError
from ._middleware import Serves, Serving, bind_client, metrics_endpoint, within

if TYPE_CHECKING:
    from .prometheus import Exporter

__all__ = ["ClientMiddleware", "WsgiPoolAppConfig"]

MIDDLEWARE_PATH = "wsgi_pool.django.ClientMiddleware"


class ClientMiddleware(Serves):
    """Each request gets a client over the process's pools: ``request.http``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        super().__init__(from_settings(SETTINGS_KEY, getattr(settings, SETTINGS_KEY, None)))

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        config, pools = self.pools_for(request.META)
        exporter = metrics_endpoint(pools, request.META)
        if exporter is not None:
            return _metrics_response(exporter, request)
        client = request.http = bind_client(request.META, pools, config)
        try:
            with Serving(client):
                response = self.get_response(request)
        except BaseException:
            client.end()
            raise
        if (
            response.streaming
            and not getattr(response, "is_async", False)
            and getattr(response, "file_to_stream", None) is None  # a FileResponse: sendfile
        ):
            # Made as the server sends it, and closed, in the request's context too: the
            # app's iterator is closed by the wrapper, not by Django directly.
            iterator = response._iterator
            closers = response._resource_closers
            if getattr(iterator, "close", None) in closers:
                closers.remove(iterator.close)
            response.streaming_content = within(client, iterator)
        # Django closes the response when the server is done with it (a streamed body sent).
        response._resource_closers.append(client.end)
        return response


def _metrics_response(exporter: Exporter, request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition (``metrics_path``) as Django's response."""
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer.update(status=int(status.split(maxsplit=1)[0]), headers=headers)
        return None

    body = b"".join(exporter.serve(request.META, start_response))
    response = HttpResponse(body, status=answer["status"])
    for name, value in answer["headers"]:
        response[name] = value
    return response


class WsgiPoolAppConfig(AppConfig):  # type: ignore[misc]  # Django is untyped
    """Add ``"wsgi_pool.django.WsgiPoolAppConfig"`` to ``INSTALLED_APPS`` for the system checks."""

    name = "wsgi_pool"
    label = "wsgi_pool"
    verbose_name = "wsgi_pool"

    def ready(self) -> None:
        checks.register(check_settings)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``wsgi_pool.E001``: WSGI_POOL is not valid; ``wsgi_pool.W001``: the middleware is missing."""
    found: list[checks.CheckMessage] = []
    try:
        from_settings(SETTINGS_KEY, getattr(settings, SETTINGS_KEY, None))
    except ConfigError as exc:
        found.append(
            checks.Error(
                str(exc),
                hint="WSGI_POOL is a dict of wsgi_pool.PoolConfig fields (see "
                "docs/reference/settings.md).",
                id="wsgi_pool.E001",
            )
        )
    if MIDDLEWARE_PATH not in getattr(settings, "MIDDLEWARE", []):
        found.append(
            checks.Warning(
                f"{MIDDLEWARE_PATH} is not in MIDDLEWARE: requests get no client",
                hint=f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE.",
                id="wsgi_pool.W001",
            )
        )
    return found


def __getattr__(name: str) -> Any:
    if name == "WsgiPoolConfig":  # its name until 0.2: too close to wsgi_pool.PoolConfig
        warnings.warn(
            "wsgi_pool.django.WsgiPoolConfig is now WsgiPoolAppConfig; the old name goes in 1.0",
            DeprecationWarning,
            stacklevel=2,
        )
        return WsgiPoolAppConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
