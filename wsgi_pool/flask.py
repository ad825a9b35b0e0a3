"""Flask: an extension that wraps the app in :class:`~wsgi_pool.PoolMiddleware`, and ``http``,
the current request's client.

    from flask import Flask
    from wsgi_pool.flask import WsgiPool, http

    app = Flask(__name__)
    app.config["WSGI_POOL"] = {"read_timeout": 5.0}  # optional: PoolConfig fields
    WsgiPool(app)  # or: pool = WsgiPool(); pool.init_app(app)

    @app.get("/item")
    def item():
        return http.get("http://inventory.internal/items/42").json()

Limitations: ``http`` works inside a request (outside one Flask raises its "working outside
of request context" error); for start-up code and background threads use
:func:`wsgi_pool.client`. Settings: ``app.config["WSGI_POOL"]`` (a dict of
:class:`~wsgi_pool.PoolConfig` fields, or a ``PoolConfig``) over the ``WSGI_POOL_*``
variables; a bad one raises :class:`~wsgi_pool.ConfigError` from ``init_app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from werkzeug.local import LocalProxy

from ._client import Client
from ._config import SETTINGS_KEY, from_settings
from ._middleware import PoolMiddleware, client_from

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["WsgiPool", "http"]


class WsgiPool:
    """The Flask extension: ``WsgiPool(app)``, or ``WsgiPool()`` then ``init_app(app)``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app`` in the middleware, with ``app.config["WSGI_POOL"]``."""
        config = from_settings(SETTINGS_KEY, app.config.get(SETTINGS_KEY))
        app.wsgi_app = PoolMiddleware(app.wsgi_app, config)  # type: ignore[method-assign]
        app.extensions["wsgi_pool"] = self


def _current() -> Client:
    from flask import request  # noqa: PLC0415  (Flask is optional)

    return client_from(request.environ)


http: Client = LocalProxy(_current)  # type: ignore[assignment]
"""The current request's client (a proxy: use it inside a request)."""
