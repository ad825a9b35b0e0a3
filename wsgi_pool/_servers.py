"""What the server says of a worker's concurrency: gunicorn's configuration, uWSGI's options.

The pools are sized from how many WSGI calls one worker runs at once, and only the server
knows that. gunicorn's hooks hand over its ``Config``; inside uWSGI its options are read
(``--threads``); any other server reports nothing, and the settings (or requests' default)
decide. What is read here is a :class:`ServerReport`: facts, not settings; the config fills
its unset fields from it (``PoolConfig.completed_by``).

This module imports nothing from requests, urllib3 or gunicorn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

WORKER_CLASSES: Final = ("sync", "gthread", "gevent", "tornado")

# gunicorn's names for its worker classes (``-k`` values, entry points and class paths),
# mapped to the concurrency model that sizes the pools.
_WORKER_ALIASES: Final[Mapping[str, str]] = {
    "sync": "sync",
    "gunicorn.workers.sync.SyncWorker": "sync",
    "gthread": "gthread",
    "gunicorn.workers.gthread.ThreadWorker": "gthread",
    "gevent": "gevent",
    "gevent_wsgi": "gevent",
    "gevent_pywsgi": "gevent",
    "gunicorn.workers.ggevent.GeventWorker": "gevent",
    "gunicorn.workers.ggevent.GeventResponseWorker": "gevent",
    "gunicorn.workers.ggevent.GeventPyWSGIWorker": "gevent",
    "tornado": "tornado",
    "gunicorn.workers.gtornado.TornadoWorker": "tornado",
}


def normalize_worker_class(name: str) -> str | None:
    """gunicorn's name for a worker class -> ``sync``, ``gthread``, ``gevent``, ``tornado``, or None."""
    key = name.strip().removeprefix("egg:gunicorn#")
    return _WORKER_ALIASES.get(key) or _WORKER_ALIASES.get(key.lower())


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerReport:
    """A worker's concurrency as its server reports it; None where the server says nothing."""

    worker_class: str | None = None
    threads: int | None = None
    worker_connections: int | None = None
    worker_timeout: float | None = None
    workers: int | None = None


class GunicornConfig(Protocol):
    """What wsgi_pool reads from ``gunicorn.config.Config`` (``server.cfg``, ``worker.cfg``)."""

    @property
    def worker_class_str(self) -> str: ...

    @property
    def timeout(self) -> int: ...

    @property
    def threads(self) -> int: ...

    @property
    def worker_connections(self) -> int: ...

    @property
    def workers(self) -> int: ...


def gunicorn_report(cfg: GunicornConfig) -> ServerReport:
    """What a gunicorn configuration says of a worker's concurrency.

    gunicorn runs ``sync`` with threads > 1 as ``gthread``; the sizing rule applies the same
    rule. A worker class gunicorn does not ship (a subclass, a third-party worker) is matched
    by the gunicorn classes in its ancestry, and left unknown otherwise.
    """
    kind = normalize_worker_class(str(cfg.worker_class_str))
    if kind is None:
        kind = _kind_from_class(getattr(cfg, "worker_class", None))
    return ServerReport(
        worker_class=kind,
        threads=cfg.threads if kind is not None else None,
        worker_connections=cfg.worker_connections if kind is not None else None,
        worker_timeout=float(cfg.timeout),
        workers=cfg.workers,
    )


def uwsgi_report(options: Mapping[str, Any]) -> ServerReport:
    """What uWSGI's options (``uwsgi.opt``) say of a process's concurrency: its ``threads``
    (1 without ``--threads``)."""
    value = options.get("threads", b"1")
    if isinstance(value, list):  # an option given twice: the last one counts
        value = value[-1]
    text = value.decode() if isinstance(value, bytes) else str(value)
    return ServerReport(threads=int(text) if text.isdigit() and int(text) > 0 else 1)


def _kind_from_class(worker_cls: object) -> str | None:
    for ancestor in getattr(worker_cls, "__mro__", ()):
        kind = _WORKER_ALIASES.get(f"{ancestor.__module__}.{ancestor.__qualname__}")
        if kind is not None:
            return kind
    return None
