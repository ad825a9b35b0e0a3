"""The WSGI middleware: a request-scoped client in ``environ``, released when the response closes.

    from wsgi_pool import PoolMiddleware, client_from

    def app(environ, start_response):
        r = client_from(environ).get("http://inventory.internal/items/42")
        ...

    app = PoolMiddleware(app)

The middleware finds this process's pools when a request arrives, never when it wraps the
app (under gunicorn's ``--preload`` that happens in the master, before the fork). When the
server closes the response, connections the handler left checked out (an unread
``stream=True`` response) go back to the pool.

With ``metrics_path`` set, it answers that path with the Prometheus exposition (see
``wsgi_pool.prometheus``) instead of calling the app.

It reads the incoming request id and trace context (validated; fresh ones when absent or
invalid, with a warning for a rejected value) and the incoming budget. The request id is
also left in ``environ["wsgi_pool.request_id"]`` for the app's own logs.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from . import _deadline, _integrations, _process, _propagation
from ._client import Client
from ._config import PoolConfig
from ._deadline import incoming_budget
from ._errors import MissingClientError
from ._worker import WorkerPools

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .prometheus import Exporter

ENVIRON_KEY: Final = "wsgi_pool.client"
"""The environ key under which handlers find their request-scoped :class:`Client`."""

REQUEST_ID_KEY: Final = "wsgi_pool.request_id"
"""The environ key of the request id (the incoming one if valid, else a fresh one)."""


class Serves:
    """What a middleware (the WSGI one, Django's) keeps of its settings: checked when it is
    made, the process's own if given in code, and the pools of each request.

    Mutable state: ``_pools``, the pools of its last request (replaced, never changed).
    """

    def __init__(self, config: PoolConfig | None) -> None:
        self.config = config
        self._pools: WorkerPools | None = None
        _integrations.check(_process.env_config() if config is None else config)
        if config is not None:
            _process.adopt(config)

    def pools_for(self, environ: Mapping[str, Any]) -> tuple[PoolConfig | None, WorkerPools]:
        """The config and the pools this request's calls use; on the process's first request
        (or when the pools changed), the gunicorn hooks are checked."""
        config = _process.own_config(self.config)
        pools = _process.current(self._pools, config)
        if pools is not self._pools:
            self._pools = pools
            _process.check_hooks(environ)
        return config, pools


class PoolMiddleware(Serves):
    """Wrap a WSGI app so each request finds a pooled, request-scoped client in its environ."""

    def __init__(self, app: WSGIApplication, config: PoolConfig | None = None) -> None:
        self.app = app
        super().__init__(config)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        config, pools = self.pools_for(environ)
        if pools.config.metrics_path is not None:
            exporter = metrics_endpoint(pools, environ)
            if exporter is not None:
                return exporter.serve(environ, start_response)
        client = bind_client(environ, pools, config)
        try:
            # What Serving does, written out: this runs for every request.
            ends = client.not_after
            block = None if ends is None else _deadline.enter_block(ends)
            serving = _propagation.serve(client.propagation)
            try:
                body = self.app(environ, start_response)
            finally:
                _propagation.stop_serving(serving)
                if block is not None:
                    _deadline.leave_block(block)
        except BaseException:
            client.end()
            raise
        if type(body) is list:  # the common body, released at once (as _release_after does)
            client.end()
            return body
        return _release_after(body, client, environ)


class _Reading:
    """How one config's settings say to read an incoming request: the environ keys of its id
    and of its budget headers."""

    __slots__ = ("budget_keys", "id_header", "id_key", "settings")

    def __init__(self, settings: PoolConfig) -> None:
        self.settings = settings
        self.id_header = settings.request_id_header
        self.id_key = _propagation.environ_key(self.id_header)
        self.budget_keys = _propagation.environ_keys(settings.deadline_headers)


_last_reading: _Reading | None = None
"""The reading of the last request's settings (one object, replaced whole)."""


def bind_client(environ: Any, pools: WorkerPools, config: PoolConfig | None) -> Client:
    """A request-scoped client for the request whose WSGI environ (Django: ``META``) this is:
    its id and trace context, its budget; left in the environ under :data:`ENVIRON_KEY`."""
    global _last_reading
    settings = _process.policy(config).config
    reading = _last_reading
    if reading is None or reading.settings is not settings:
        reading = _last_reading = _Reading(settings)
    propagation = _propagation.from_key(environ, reading.id_key, reading.id_header)
    environ[REQUEST_ID_KEY] = propagation.request_id
    not_after = None
    for key in reading.budget_keys:
        if key in environ:  # a budget header came: read them all, in order
            not_after = incoming_budget(environ, settings.deadline_headers)
            break
    client = environ[ENVIRON_KEY] = Client(
        config,
        pools=pools,
        keep_cookies=True,  # within this request only: the client ends with it
        not_after=not_after,
        propagation=propagation,
    )
    return client


class Serving:
    """While the app handles the request: its budget bounds every call in this thread (or
    greenlet), and a call that carries no id or trace context of its own (an SDK's session
    over ``wsgi_pool.adapter()``, ``wsgi_pool.client()``) passes on the request's. A class, not
    a generator: it runs for every request."""

    __slots__ = ("_block", "_client", "_serving")

    def __init__(self, client: Client) -> None:
        self._client = client

    def __enter__(self) -> None:
        ends = self._client.not_after
        self._block = None if ends is None else _deadline.enter_block(ends)
        self._serving = _propagation.serve(self._client.propagation)

    def __exit__(self, *exc: object) -> None:
        _propagation.stop_serving(self._serving)
        if self._block is not None:
            _deadline.leave_block(self._block)


def within(client: Client, body: Iterable[Any]) -> _Within:
    """``body``'s items, each made in a context of its own that holds the request's budget and
    id (see :class:`Serving`): a generator body that calls an upstream as the server iterates
    it (after the app returned) still carries them, and what the generator itself sets there
    (a ``wsgi_pool.deadline()`` block around a ``yield``) lasts from one item to the next."""
    return _Within(client, body)


class _Within:
    """An iterator over ``body`` run in its own copy of the context (``contextvars.Context``)."""

    __slots__ = ("_body", "_context", "_items")

    def __init__(self, client: Client, body: Iterable[Any]) -> None:
        self._context = contextvars.copy_context()
        self._context.run(Serving(client).__enter__)  # never left: the context is the body's own
        self._body = body
        self._items = self._context.run(iter, body)  # an __iter__ that calls runs there too

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self._context.run(next, self._items)

    def close(self) -> None:
        """Close the body the app returned (a generator's ``finally`` runs in its context too)."""
        close = getattr(self._body, "close", None)
        if close is not None:
            self._context.run(close)


def metrics_endpoint(pools: WorkerPools, environ: Mapping[str, Any]) -> Exporter | None:
    """The exporter that answers this request, if its path is the config's ``metrics_path``."""
    path = pools.config.metrics_path
    if path is None or environ.get("PATH_INFO") != path:
        return None
    from .prometheus import Exporter  # noqa: PLC0415  (prometheus_client is optional)

    return pools.extension(Exporter)


def _release_after(
    body: Iterable[bytes], client: Client, environ: WSGIEnvironment
) -> Iterable[bytes]:
    """``body``, with the client released when the server closes it (at once for a list). A
    file the server sends itself stays its ``wsgi.file_wrapper`` (hiding it would stop
    sendfile): the release is added to its own ``close``."""
    if isinstance(body, (list, tuple)):
        client.end()
        return body
    file_wrapper = environ.get("wsgi.file_wrapper")
    if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
        with contextlib.suppress(AttributeError):  # a wrapper with __slots__: wrapped below
            close = getattr(body, "close", _nothing)
            body.close = functools.partial(_close_then_release, close, client)  # type: ignore[attr-defined]
            return body
    return _ReleasingBody(body, client)


class _ReleasingBody:
    """A response body made in the request's context while the server iterates it (see
    :func:`within`), that releases the request's client after the app's own ``close()``."""

    __slots__ = ("_body", "_client")

    def __init__(self, body: Iterable[bytes], client: Client) -> None:
        self._body = within(client, body)
        self._client = client

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def close(self) -> None:
        _close_then_release(self._body.close, self._client)


def _close_then_release(close: Callable[[], object], client: Client) -> None:
    """The app's body closed (``close``), then the request's client released, even if that raised."""
    try:
        close()
    finally:
        client.end()


def client_from(environ: WSGIEnvironment) -> Client:
    """The request-scoped client that :class:`PoolMiddleware` put in ``environ``."""
    try:
        found = environ[ENVIRON_KEY]
    except KeyError:
        raise MissingClientError(
            f"no {ENVIRON_KEY!r} in the WSGI environ: wrap the app in wsgi_pool.PoolMiddleware"
        ) from None
    if not isinstance(found, Client):
        raise MissingClientError(f"environ[{ENVIRON_KEY!r}] is {found!r}, not a wsgi_pool client")
    return found


def client(config: PoolConfig | None = None) -> Client:
    """A client over this process's pools, for code outside a request (start-up, background threads).

    Safe anywhere, the gunicorn master under ``--preload`` included: it finds the pools of
    the process it is called in on every call, so one kept across a fork uses the child's
    pools. It never stores cookies an upstream sets, so keeping one at module level shares
    no user's state; close it (or use ``with``) to release streamed responses.
    """
    return Client(config, keep_cookies=False)


def _nothing() -> None:
    """The ``close`` of a body that has none."""
