"""The root of wsgi_pool's exception tree, and the errors that need no HTTP library.

Every exception wsgi_pool raises is a :class:`WsgiPoolError`. Each leaf also subclasses
the builtin or requests exception a caller already catches: a bad setting is a
``ValueError``, a pool-wait timeout is a ``requests.Timeout`` (see ``_failures``). This
module imports nothing from requests or urllib3, so the configuration can be validated in
the gunicorn master before either is imported.
"""

from __future__ import annotations

from typing import TypeVar

_T = TypeVar("_T", bound=type)


def public(cls: _T) -> _T:
    """Name a class by where users import it from: ``wsgi_pool.UpstreamRefused`` in tracebacks."""
    cls.__module__ = "wsgi_pool"
    return cls


@public
class WsgiPoolError(Exception):
    """Base class of every error raised by wsgi_pool."""


@public
class ConfigError(WsgiPoolError, ValueError):
    """A setting has a bad value. Raised at start-up; the message names the setting and the value."""


@public
class MissingClientError(WsgiPoolError, LookupError):
    """The WSGI environ holds no wsgi_pool client: the app is not wrapped in ``PoolMiddleware``."""


@public
class SharedStateError(WsgiPoolError, AttributeError):
    """A handler tried to change what every request of the worker shares (its pools, their
    adapter, the environment policy). Change your own client instead, or the config."""


@public
class InsecureRequestRefused(WsgiPoolError, ValueError):
    """A call asked for ``verify=False`` and the config does not allow unverified TLS."""


@public
class RequestEnded(WsgiPoolError, RuntimeError):
    """A request-scoped client, or a body it streamed, was used after its request ended: its
    budget, id and cookies were that request's. Use ``wsgi_pool.client()`` outside a request,
    and read a streamed body before the response is returned."""
